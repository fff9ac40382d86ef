"""Code generated from protos/ (package `chronotick.v1`); regenerate with `make protos`."""
