"""NTP: packets (pure), the multi-server sampler, and an embedded server for tests and demos."""
