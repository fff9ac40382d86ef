"""Sleeping until an instant, and knowing exactly when the sleep ended.

A thread that wakes in Python must win the interpreter back before it can read the clock; on a
host where several processes wake for the same instant, or where the process has other busy
threads, that costs hundreds of microseconds and shows as lateness. The C extension waits and
reads CLOCK_REALTIME with the GIL released, so the reading is the wake-up itself; without it
(no compiler where it was installed) the same loop runs in Python.

The base clock a daemon measures is CLOCK_REALTIME, or a simulated clock computed from it
(tests, the demo); `to_realtime_ns` / `from_realtime_ns` convert between the two.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from chronotick.clocks import Clock, SimulatedClock

_c_sleep: Callable[[int, int], int] | None
try:
    from chronotick._fastread import sleep_until_realtime_ns as _c_sleep
except ImportError:  # the optional extension is not built
    _c_sleep = None

#: the C wait refuses targets further ahead than this; sleep in Python first
MAX_PRECISE_WAIT_NS = 10_000_000_000


def sleep_until_realtime_ns(target_ns: int, spin_ns: int = 50_000) -> int:
    """Sleep until CLOCK_REALTIME reads `target_ns` (spinning the last `spin_ns`); returns the
    reading at which the wait ended (>= target_ns)."""
    if target_ns - time.time_ns() > MAX_PRECISE_WAIT_NS:
        raise ValueError("target more than 10 s ahead: sleep in Python first")
    if _c_sleep is not None:
        return _c_sleep(target_ns, spin_ns)
    while True:
        now = time.time_ns()
        left = target_ns - now
        if left <= 0:
            return now
        if left > spin_ns:
            time.sleep((left - spin_ns) / 1e9)


def has_gil_free_wait() -> bool:
    return _c_sleep is not None


def from_realtime_ns(clock: Clock, realtime_ns: int) -> int:
    """The base clock's reading at the instant CLOCK_REALTIME reads `realtime_ns`."""
    if isinstance(clock, SimulatedClock):
        return clock.at(realtime_ns)
    return realtime_ns


def to_realtime_ns(clock: Clock, base_ns: int) -> int:
    """The CLOCK_REALTIME reading at which the base clock reads `base_ns` (a simulated clock
    is inverted by two fixed-point steps: its rate is within a few hundred ppm of 1)."""
    if not isinstance(clock, SimulatedClock):
        return base_ns
    realtime = base_ns
    for _ in range(3):
        realtime += base_ns - clock.at(realtime)
    return realtime
