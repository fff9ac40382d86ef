"""Clock step and suspend detection. No clock reads: the daemon passes the readings.

CLOCK_MONOTONIC_RAW is never stepped or slewed and stops while the host sleeps; CLOCK_REALTIME
is stepped by `date`, by an NTP daemon, or jumps forward by the length of a suspend. Their
difference therefore stays put except for slewing (at most a few hundred ppm). A change beyond
that means every sample taken before it describes another clock, and the model must restart.
CLOCK_BOOTTIME, which keeps counting during suspend, tells a suspend from a step.
"""

from __future__ import annotations

import dataclasses

#: a jump of the realtime/raw difference above this counts as a step
STEP_THRESHOLD_NS = 1_000_000
#: allowance for slewing between two readings (NTP daemons slew at most 500 ppm)
SLEW_ALLOWANCE_PPM = 1000


@dataclasses.dataclass(frozen=True)
class ClockReadings:
    realtime_ns: int
    monotonic_raw_ns: int
    boottime_ns: int
    monotonic_ns: int


@dataclasses.dataclass(frozen=True)
class Disruption:
    kind: str  # "step" or "suspend"
    jump_ns: int
    at_realtime_ns: int

    def describe(self) -> str:
        return f"clock {self.kind} of {self.jump_ns / 1e6:+.3f} ms detected"


class DisruptionDetector:
    def __init__(self, threshold_ns: int = STEP_THRESHOLD_NS) -> None:
        self.threshold_ns = threshold_ns
        self._last: ClockReadings | None = None

    def observe(self, now: ClockReadings) -> Disruption | None:
        last, self._last = self._last, now
        if last is None:
            return None
        elapsed_raw = now.monotonic_raw_ns - last.monotonic_raw_ns
        jump = (now.realtime_ns - last.realtime_ns) - elapsed_raw
        allowance = self.threshold_ns + abs(elapsed_raw) * SLEW_ALLOWANCE_PPM // 1_000_000
        if abs(jump) <= allowance:
            return None
        slept = (now.boottime_ns - last.boottime_ns) - (now.monotonic_ns - last.monotonic_ns)
        kind = "suspend" if slept > self.threshold_ns else "step"
        return Disruption(kind, jump, now.realtime_ns)
