"""Estimation: pure code that turns measurements and a time into a clock model. No I/O, no
clock reads: the daemon, the simulator and the tests drive it with the same calls."""
