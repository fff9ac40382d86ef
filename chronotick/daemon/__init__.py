"""The predictor daemon: samples servers, runs the estimator, publishes to shared memory."""
