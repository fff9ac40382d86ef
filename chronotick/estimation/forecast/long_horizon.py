"""The long-horizon forecaster: a pretrained model, zero-shot, on what a long line misses.

Over hours, the offset departs from any straight line by the frequency's slow swings
(temperature cycles, ageing). A long weighted line through the recent samples takes out the
mean frequency; the residuals are handed to a foundation model (`foundation`), which has
never seen this clock and forecasts them from their shape alone. The member predicts the
line plus the forecast residual, with the model's own spread as its variance; the fusion
then decides from its out-of-sample errors whether it has earned any weight.

Pure apart from the model call (which the daemon makes on its training thread).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import numpy as np

from chronotick.estimation.forecast.foundation import (
    MIN_POINTS,
    ResidualForecast,
    ZeroShotModel,
    load_zero_shot,
)
from chronotick.estimation.regression import fit_line
from chronotick.estimation.samples import Sample
from chronotick.model import NS_PER_S

#: samples the line and the model see at most
MAX_POINTS = 256
#: horizons forecast, in units of the median gap between samples
HORIZON_GAPS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 24.0)


@dataclasses.dataclass(frozen=True)
class LongHorizonFit:
    """A long line and the zero-shot forecast of its residual from the newest sample on."""

    origin_ns: int
    intercept_ns: float
    slope_ppb: float
    forecast: ResidualForecast

    def predict(self, now_ns: int) -> tuple[float, float, float]:
        """(offset ns, variance ns², drift ppb) at `now_ns`. Before the first horizon the
        first forecast holds (the model's view, not the newest sample's noise); beyond the
        last, the last value holds and its spread keeps growing linearly."""
        h = max(0.0, (now_ns - self.origin_ns) / NS_PER_S)
        horizons = np.array(self.forecast.horizons_s)
        means = np.array(self.forecast.mean_ns)
        sigma = float(np.interp(h, horizons, np.array(self.forecast.sigma_ns)))
        if h > horizons[-1]:
            sigma *= h / horizons[-1]
        k = int(np.clip(np.searchsorted(horizons, h), 1, len(horizons) - 1))
        inside = horizons[0] <= h <= horizons[-1]
        rate = (means[k] - means[k - 1]) / (horizons[k] - horizons[k - 1]) if inside else 0.0
        offset = self.intercept_ns + self.slope_ppb * h + float(np.interp(h, horizons, means))
        return offset, sigma * sigma, self.slope_ppb + float(rate)


def fit_long_horizon(
    model: ZeroShotModel, samples: Sequence[Sample], variances_ns2: Sequence[float]
) -> LongHorizonFit | None:
    """The line and forecast for the newest samples (None: too few of them)."""
    # Samples come in the order their polls finished, not always in time order, and two
    # servers' samples may share an instant: the model needs strictly increasing times
    by_time: dict[int, tuple[Sample, float]] = {}
    for sample, variance in list(zip(samples, variances_ns2, strict=True))[-MAX_POINTS:]:
        by_time.setdefault(sample.local_ns, (sample, variance))
    chosen = [by_time[t] for t in sorted(by_time)]
    if len(chosen) < 2 * MIN_POINTS:
        return None
    origin = chosen[-1][0].local_ns
    t_s = np.array([(s.local_ns - origin) / NS_PER_S for s, _v in chosen])
    y = np.array([float(s.offset_ns - chosen[-1][0].offset_ns) for s, _v in chosen])
    line = fit_line(t_s, y, np.array([max(v, 1.0) for _s, v in chosen]))
    residual = line.residuals_ns
    # the typical poll spacing: with several servers polled together, most gaps between
    # samples are milliseconds, which are left out
    gaps = np.diff(t_s)
    gap = float(np.median(gaps[gaps >= 0.1 * float(gaps.mean())]))
    forecast = model.forecast(t_s, residual, [g * gap for g in HORIZON_GAPS])
    return LongHorizonFit(
        origin_ns=origin,
        intercept_ns=float(chosen[-1][0].offset_ns) + line.intercept_ns,
        slope_ppb=line.slope_ppb,
        forecast=forecast,
    )


@functools.cache
def shared_model(name: str) -> ZeroShotModel | None:
    """One loaded model per process and name (loading fracast takes a second and 80 MB)."""
    return load_zero_shot(name)
