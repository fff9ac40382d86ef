"""The clock simulator: oscillators, networks and servers in virtual time, driving the real
`SyncEngine` and predictors, and scoring them against the known truth."""
