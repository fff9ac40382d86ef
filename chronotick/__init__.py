"""ChronoTick: a corrected clock with an honest error bar."""
