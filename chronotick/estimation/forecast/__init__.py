"""Forecasters of what the regression's straight line misses, and their fusion with it."""
