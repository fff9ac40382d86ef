"""The clock status every read carries.

The numeric values are part of the shared-memory contract (docs/shm-layout.md) and follow AWS
ClockBound's order so that the same small integers mean the same thing to both.
"""

from __future__ import annotations

import enum


class ClockStatus(enum.IntEnum):
    """What a reader may conclude from a published model."""

    #: No usable model: daemon not warmed up, stale, or gone. Do not use the time.
    UNKNOWN = 0
    #: Fresh measurements agree with the model; the bound holds.
    SYNCHRONIZED = 1
    #: No fresh measurement for a while; the bound keeps growing with age but still holds.
    FREE_RUNNING = 2
    #: A clock step or suspend was detected; the model restarts and gives no interval yet.
    DISRUPTED = 3

    @property
    def gives_interval(self) -> bool:
        """Whether a read in this status returns a trustworthy [earliest, latest]."""
        return self in (ClockStatus.SYNCHRONIZED, ClockStatus.FREE_RUNNING)
