"""ChronoTick across hosts: discovery, peers, agreement (see DESIGN.md). Imports chronotick, never the reverse."""
