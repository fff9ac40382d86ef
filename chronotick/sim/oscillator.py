"""A simulated quartz oscillator: the host clock as a function of true time.

The frequency error (ppm) is the sum of a constant, a random walk (wander) and a temperature
term k·(T − turnover)², the parabola of an AT-cut crystal. It is integrated on a one-second grid
so that any instant's reading is an interpolation; steps are added on top (someone set the
clock), while the "raw" reading (CLOCK_MONOTONIC_RAW's view) has no steps.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from chronotick.sim.scenario import ClockSpec, TemperatureSpec

NS_PER_S = 1_000_000_000
FloatArray = npt.NDArray[np.float64]


def temperature_c(spec: TemperatureSpec, t_s: FloatArray) -> FloatArray:
    """Temperature at true times `t_s` (seconds from the start)."""
    if spec.profile == "constant":
        return np.full_like(t_s, spec.mean_c)
    if spec.profile == "sine":
        return spec.mean_c + spec.amplitude_c * np.sin(2 * math.pi * t_s / spec.period_s)
    if spec.profile == "daily":
        daily = spec.amplitude_c * np.sin(2 * math.pi * t_s / spec.period_s)
        hvac = spec.hvac_amplitude_c * np.sign(np.sin(2 * math.pi * t_s / spec.hvac_period_s))
        return spec.mean_c + daily + hvac
    # steps: the mean until the first step, then each step's temperature
    out = np.full_like(t_s, spec.mean_c)
    for at_s, value in sorted(spec.steps):
        out[t_s >= at_s] = value
    return out


class Oscillator:
    def __init__(
        self,
        clock: ClockSpec,
        temperature: TemperatureSpec,
        duration_s: float,
        rng: np.random.Generator,
    ) -> None:
        seconds = math.ceil(duration_s) + 2
        t_s = np.arange(seconds, dtype=np.float64)
        self.temperature_c = temperature_c(temperature, t_s)
        wander = np.zeros(seconds)
        if clock.wander_ppm_per_sqrt_s:
            steps = rng.normal(0.0, clock.wander_ppm_per_sqrt_s, seconds)
            steps[0] = 0.0
            wander = np.cumsum(steps)
        thermal = (
            clock.temperature_coefficient_ppm_per_c2 * (self.temperature_c - clock.turnover_c) ** 2
        )
        #: frequency error at each whole second, ppm (positive: the clock runs fast)
        self.frequency_ppm = clock.frequency_ppm + wander + thermal
        phase = np.concatenate(([0.0], np.cumsum(self.frequency_ppm[:-1] * 1e-6 * NS_PER_S)))
        #: local − true at each whole second, ns, without steps
        self._phase_ns = clock.initial_offset_ms * 1e6 + phase
        self._steps = sorted((int(at * NS_PER_S), int(step * 1e6)) for at, step in clock.steps)

    def raw_error_ns(self, true_ns: int) -> float:
        """local − true without steps (what MONOTONIC_RAW would show relative to truth)."""
        whole, frac = divmod(true_ns, NS_PER_S)
        whole = min(whole, len(self._phase_ns) - 2)
        a = self._phase_ns[whole]
        return float(a + (self._phase_ns[whole + 1] - a) * (frac / NS_PER_S))

    def step_ns(self, true_ns: int) -> int:
        return sum(step for at, step in self._steps if true_ns >= at)

    def local_ns(self, true_ns: int) -> int:
        """The host clock (CLOCK_REALTIME) at true time `true_ns` (both from the start)."""
        return true_ns + round(self.raw_error_ns(true_ns)) + self.step_ns(true_ns)

    def raw_ns(self, true_ns: int) -> int:
        return true_ns + round(self.raw_error_ns(true_ns))

    def frequency_at_ppm(self, true_ns: int) -> float:
        return float(self.frequency_ppm[min(true_ns // NS_PER_S, len(self.frequency_ppm) - 1)])

    def temperature_at_c(self, true_ns: int) -> float:
        """The temperature at true time `true_ns`, as the host's sensor reports it."""
        return float(self.temperature_c[min(true_ns // NS_PER_S, len(self.temperature_c) - 1)])
