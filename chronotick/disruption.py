"""Clock step and suspend detection. No clock reads: the daemon passes the readings.

CLOCK_REALTIME is stepped by `date` or by an NTP daemon, and jumps forward by the length of a
suspend. CLOCK_MONOTONIC is slewed exactly as CLOCK_REALTIME is (adjtimex acts on both) but
never stepped, and stops while the host sleeps. Their difference therefore moves only on a step
or a suspend, however fast chronyd slews (up to 83 ms/s): comparing with CLOCK_MONOTONIC_RAW,
which is not slewed, would mistake a fast slew for a step and restart the model every tick.
A jump means every sample taken before it describes another clock, and the model must restart.
CLOCK_BOOTTIME, which keeps counting during suspend, tells a suspend from a step.
"""

from __future__ import annotations

import dataclasses

#: a jump of the realtime/monotonic difference above this counts as a step
STEP_THRESHOLD_NS = 1_000_000
#: allowance for the readings not being taken at the same instant, per unit of elapsed time
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
        elapsed = now.monotonic_ns - last.monotonic_ns
        jump = (now.realtime_ns - last.realtime_ns) - elapsed
        allowance = self.threshold_ns + abs(elapsed) * SLEW_ALLOWANCE_PPM // 1_000_000
        if abs(jump) <= allowance:
            return None
        slept = (now.boottime_ns - last.boottime_ns) - elapsed
        kind = "suspend" if slept > self.threshold_ns else "step"
        return Disruption(kind, jump, now.realtime_ns)
