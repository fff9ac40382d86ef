"""ChronoTick across hosts: discovery, peers, agreement (see DESIGN.md).

`coordinator` imports `chronotick`, never the reverse.
"""
