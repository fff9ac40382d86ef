"""ChronoTick: a corrected clock with an honest error bar, read from shared memory.

from chronotick import ChronoTickClient
with ChronoTickClient() as clock:
    info = clock.get_time()           # TimeInfo: corrected time, σ, bound, status, ...
    earliest, latest = clock.now()    # true time lies inside
"""

from chronotick.client import ChronoTickClient, TimeInfo, ToleranceError
from chronotick.shm import (
    ClockDisruptedError,
    IncompatibleLayoutError,
    NoDaemonError,
    NotSynchronizedError,
    ShmError,
    StaleDataError,
)
from chronotick.status import ClockStatus

__all__ = [
    "ChronoTickClient",
    "ClockDisruptedError",
    "ClockStatus",
    "IncompatibleLayoutError",
    "NoDaemonError",
    "NotSynchronizedError",
    "ShmError",
    "StaleDataError",
    "TimeInfo",
    "ToleranceError",
]
