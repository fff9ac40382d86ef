"""Hindsight: the offset at a past sample, as the samples on both sides of it tell it.

Calibrating σ needs the error of a prediction against the truth, and a single measurement is
a poor stand-in: where the network noise is much larger than the model's error (a congested
path, a lossy link), a prediction's miss of the next sample is nearly all that sample's noise,
and no estimate of the noise is good enough to subtract it (its heavy tail alone decides the
95 % quantile). Once `HALF_WIDTH` more samples have arrived, a weighted line through the
samples around a past instant averages that noise away; its own variance, at the centre of a
two-sided fit, is about an eighth of a one-sided prediction's. The difference between the
prediction made then and this hindsight is then mostly the prediction's own error, and
(Hausman's lemma: a better-informed estimate is uncorrelated with the difference) its
variance plus the hindsight's own is about the prediction's. About: the hindsight is not
strictly better informed, since the prediction saw up to 64 older samples and the two share
the 16 before the instant, which makes the difference a little smaller than the error; the
simulator's truth put the factor it asks for within 0-14 % above the true one.

A line through ±`HALF_WIDTH` samples misses whatever curves faster than that (an air
conditioner cycling within the window, at long polls): the caller takes out what the
conditions explain first, where a response to them has been learnt, and where the residuals
still run in long stretches of one sign (chrony's runs test) a parabola is fitted instead,
then over fewer samples (`_SHAPES`). What misfit remains inflates the differences, which can
only make the calibration wider, never narrower.

What no line through the samples can see is a bias they all share: a path's asymmetry. The
caller adds its variance, as the regression estimates it from the spread between sources.

Pure: samples, their relative variances and the offsets to take out in; a number out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from chronotick.estimation.regression import runs_look_random
from chronotick.estimation.samples import Sample
from chronotick.model import NS_PER_S

#: samples on each side of the instant; 16 (an eighth of the one-sided variance at 64-sample
#: windows) came closest to the truth in the simulator's noise-dominated scenarios
HALF_WIDTH = 16
#: (samples on each side, polynomial degree) tried in turn until the residuals look random:
#: a line averages the noise best; a parabola, then fewer samples, where the offset curves
_SHAPES = ((HALF_WIDTH, 1), (HALF_WIDTH, 2), (HALF_WIDTH // 2, 2), (HALF_WIDTH // 4, 2))


@dataclasses.dataclass(frozen=True)
class Hindsight:
    """The offset at a past instant and the variance of that estimate."""

    offset_ns: float
    variance_ns2: float


def hindsight_at(
    samples: Sequence[Sample],
    relative_variances: Sequence[float],
    at_ns: int,
    less_ns: Sequence[float] | None = None,
    less_at_ns: float = 0.0,
) -> Hindsight | None:
    """The weighted line (or parabola: `_SHAPES`) through `samples` (time-ordered,
    2·`HALF_WIDTH` + 1 of them around `at_ns`), evaluated at `at_ns`, with `less_ns[i]` taken
    out of each offset first and `less_at_ns` put back at `at_ns` (None: nothing taken out);
    None with too few samples."""
    if len(samples) != 2 * HALF_WIDTH + 1:
        return None
    for half, degree in _SHAPES:
        window = range(HALF_WIDTH - half, HALF_WIDTH + half + 1)
        x = np.array([(samples[i].local_ns - at_ns) / NS_PER_S for i in window])
        y = np.array([float(samples[i].offset_ns) for i in window])
        if less_ns is not None:
            y -= np.array([less_ns[i] for i in window])
        v = np.array([max(float(relative_variances[i]), 1.0) for i in window])
        fitted = _fit_polynomial(x, y, v, degree)
        if fitted is None:
            return None
        # Spikes (a queue that filled for one exchange) pull a least-squares line; the
        # prediction it scores may not be pulled (the robust member takes medians), so
        # samples beyond 3.5 robust σ are left out once
        standardized = fitted[2] / np.sqrt(v)
        spread = 1.4826 * float(np.median(np.abs(standardized - np.median(standardized))))
        keep = np.abs(standardized) <= 3.5 * spread
        if spread > 0 and degree + 3 <= keep.sum() < len(keep):
            refitted = _fit_polynomial(x[keep], y[keep], v[keep], degree)
            if refitted is not None:
                fitted = (refitted[0], refitted[1], fitted[2])
        value, variance, residuals = fitted
        if runs_look_random(residuals):
            break
    if not (np.isfinite(value) and np.isfinite(variance)):
        return None
    return Hindsight(value + (less_at_ns if less_ns is not None else 0.0), variance)


def _fit_polynomial(
    x_s: npt.NDArray[np.float64],
    y_ns: npt.NDArray[np.float64],
    variance: npt.NDArray[np.float64],
    degree: int,
) -> tuple[float, float, npt.NDArray[np.float64]] | None:
    """(value at x = 0, its variance, residuals) of the weighted polynomial fit."""
    scale = max(float(np.abs(x_s).max()), 1e-9)
    u = x_s / scale
    design = np.vstack([u**p for p in range(degree + 1)]).T
    w = 1.0 / variance
    normal = (design.T * w) @ design
    try:
        inverse = np.linalg.inv(normal)
    except np.linalg.LinAlgError:
        return None
    coef = inverse @ ((design.T * w) @ y_ns)
    residuals = y_ns - design @ coef
    dof = len(x_s) - degree - 1
    s2 = max(float((w * residuals * residuals).sum()) / dof, 1.0 / dof) if dof > 0 else 1.0
    return float(coef[0]), s2 * float(inverse[0, 0]), residuals
