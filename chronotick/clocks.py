"""Clocks that the daemon measures and that readers correct.

A `Clock` returns integer nanoseconds since the Unix epoch. The system clock is CLOCK_REALTIME.
The simulated clock is a deterministic function of the system clock, so that every process that
knows its parameters (`SimulatedClockParams`, published in the shared-memory header and passed
to the embedded NTP server by flags) reads the same skewed clock without talking to the others.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import threading
import time
from collections.abc import Callable
from typing import Protocol

NS_PER_S = 1_000_000_000


class Clock(Protocol):
    """Anything that reads a wall-clock time in integer nanoseconds."""

    def now_ns(self) -> int: ...


class SystemClock:
    """CLOCK_REALTIME, the host's base clock."""

    __slots__ = ()

    def now_ns(self) -> int:
        return time.time_ns()


@dataclasses.dataclass(frozen=True)
class ClockStep:
    """A step of `step_ns` applied from `at_s` seconds after the epoch of the simulated clock."""

    at_s: float
    step_ns: int


@dataclasses.dataclass(frozen=True)
class SimulatedClockParams:
    """Parameters of a skewed clock, relative to the system clock.

    value(t) = t + offset_ns + drift_ppm·(t − epoch_ns)·1e-6 + wander(t) + steps(t), where the
    wander is a random walk of frequency (ppm per √s), generated from `seed` in fixed one-second
    increments from the epoch, so that any process can reproduce it.
    """

    offset_ns: int = 0
    drift_ppm: float = 0.0
    epoch_ns: int = 0
    wander_ppm_per_sqrt_s: float = 0.0
    seed: int = 0
    steps: tuple[ClockStep, ...] = ()

    def __post_init__(self) -> None:
        if not math.isfinite(self.drift_ppm) or abs(self.drift_ppm) > 10_000:
            raise ValueError(f"drift_ppm must be finite and within ±10000, got {self.drift_ppm}")
        if not math.isfinite(self.wander_ppm_per_sqrt_s) or self.wander_ppm_per_sqrt_s < 0:
            raise ValueError("wander_ppm_per_sqrt_s must be finite and >= 0")
        if abs(self.offset_ns) > 10 * 365 * 86400 * NS_PER_S:
            raise ValueError("offset_ns is beyond ten years")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SimulatedClockParams:
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError("simulated clock parameters must be a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown simulated clock parameters: {sorted(unknown)}")
        steps = tuple(ClockStep(float(s["at_s"]), int(s["step_ns"])) for s in raw.pop("steps", []))
        return cls(steps=steps, **raw)


class SimulatedClock:
    """A clock skewed from a base clock by `SimulatedClockParams`."""

    def __init__(
        self, params: SimulatedClockParams, base: Callable[[], int] = time.time_ns
    ) -> None:
        self.params = params
        self._base = base
        self._drift = params.drift_ppm * 1e-6
        self._wander_phase_ns: list[float] = [0.0]  # integrated wander at whole seconds
        self._wander_freq: list[float] = [0.0]  # wander frequency (dimensionless) per second
        self._rng = random.Random(params.seed)
        # the daemon's loop and its poll threads read the clock at once; the wander path is
        # generated lazily and must come out the same as in any other process
        self._lock = threading.Lock()

    def _wander_ns(self, elapsed_s: float) -> float:
        sigma = self.params.wander_ppm_per_sqrt_s * 1e-6
        if sigma == 0.0 or elapsed_s <= 0:
            return 0.0
        whole = int(elapsed_s)
        with self._lock:
            while len(self._wander_freq) <= whole + 1:
                freq = self._wander_freq[-1] + self._rng.gauss(0.0, sigma)
                phase = self._wander_phase_ns[-1] + self._wander_freq[-1] * 1e9
                self._wander_phase_ns.append(phase)
                self._wander_freq.append(freq)
            phase, freq = self._wander_phase_ns[whole], self._wander_freq[whole]
        return phase + freq * (elapsed_s - whole) * 1e9

    def at(self, base_ns: int) -> int:
        """The simulated reading that corresponds to a base-clock reading."""
        p = self.params
        elapsed_ns = base_ns - p.epoch_ns
        value = base_ns + p.offset_ns + int(self._drift * elapsed_ns)
        if p.wander_ppm_per_sqrt_s:
            value += int(self._wander_ns(elapsed_ns / NS_PER_S))
        for step in p.steps:
            if elapsed_ns >= step.at_s * NS_PER_S:
                value += step.step_ns
        return value

    def now_ns(self) -> int:
        return self.at(self._base())
