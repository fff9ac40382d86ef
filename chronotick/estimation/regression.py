"""Weighted least squares of offset against time, with the statistics chrony relies on.

A straight line is the right model for a quartz oscillator over minutes: offset grows with the
frequency error. Samples are weighted by how much queueing their round trip shows (excess delay
over the best one), because queueing turns into offset error of up to half the excess. The
weights are relative: the residuals set the absolute noise scale, as chrony does.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclasses.dataclass(frozen=True)
class LineFit:
    """offset(x) = intercept_ns + slope_ppb·x, x in seconds from the fit's origin."""

    intercept_ns: float
    slope_ppb: float
    var_intercept_ns2: float
    var_slope_ppb2: float
    cov_ns2_per_s: float
    residuals_ns: FloatArray
    noise_scale2: float  # s², the weighted residual variance per unit weight
    n: int

    def predict_ns(self, x_s: float) -> float:
        return self.intercept_ns + self.slope_ppb * x_s

    def var_at_ns2(self, x_s: float) -> float:
        """Variance of the fitted line at x (not of a new measurement)."""
        return (
            self.var_intercept_ns2 + 2 * x_s * self.cov_ns2_per_s + x_s * x_s * self.var_slope_ppb2
        )


def fit_line(x_s: FloatArray, y_ns: FloatArray, variance_ns2: FloatArray) -> LineFit:
    """Weighted linear fit; `variance_ns2` are per-sample noise variances up to a common scale.

    With one sample the slope is unknown (infinite variance); with two the line is exact and
    the noise scale falls back to the given variances.
    """
    n = len(x_s)
    if n == 0:
        raise ValueError("fit_line needs at least one sample")
    w = 1.0 / variance_ns2
    sw = float(w.sum())
    xm = float((w * x_s).sum() / sw)
    ym = float((w * y_ns).sum() / sw)
    dx = x_s - xm
    sxx = float((w * dx * dx).sum())
    if n == 1 or sxx <= 0.0:
        residuals = y_ns - ym
        return LineFit(ym, 0.0, 1.0 / sw, math.inf, 0.0, residuals, 1.0, n)
    slope = float((w * dx * (y_ns - ym)).sum() / sxx)
    intercept = ym - slope * xm
    residuals = y_ns - (intercept + slope * x_s)
    if n > 2:
        s2 = float((w * residuals * residuals).sum()) / (n - 2)
        # Few samples make s² itself noisy: do not let it fall far below the prior scale.
        s2 = max(s2, 1.0 / (n - 1))
    else:
        s2 = 1.0
    var_slope = s2 / sxx
    var_mean = s2 / sw
    var_intercept = var_mean + xm * xm * var_slope
    cov = -xm * var_slope
    return LineFit(intercept, slope, var_intercept, var_slope, cov, residuals, s2, n)


def runs_count(residuals: FloatArray) -> int:
    """Number of runs of equal sign: few runs mean the residuals are not random."""
    signs = residuals >= 0
    return 1 + int(np.count_nonzero(signs[1:] != signs[:-1]))


def runs_look_random(residuals: FloatArray) -> bool:
    """Wald-Wolfowitz runs test at about 2.5σ: False when a straight line stopped fitting."""
    n = len(residuals)
    if n < 8:
        return True
    pos = int(np.count_nonzero(residuals >= 0))
    neg = n - pos
    if pos == 0 or neg == 0:
        return False
    expected = 2.0 * pos * neg / n + 1.0
    var = (expected - 1.0) * (expected - 2.0) / (n - 1.0)
    return runs_count(residuals) >= expected - 2.5 * math.sqrt(max(var, 0.0))
