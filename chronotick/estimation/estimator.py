"""The regression estimator: accepted samples in, a `ClockModel` out.

Pure code: it is given samples and the current base-clock time and never reads a clock, so the
daemon, the simulator and the tests drive the very same object. Forecasters (their own issue)
plug in beside it by producing a `ClockModel` from the same inputs.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math

import numpy as np

from chronotick.estimation.regression import LineFit, fit_line, runs_look_random
from chronotick.estimation.samples import Sample
from chronotick.model import NS_PER_S, ClockModel
from chronotick.status import ClockStatus

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class EstimatorConfig:
    #: samples kept at most (chrony keeps up to 64 per source)
    max_samples: int = 64
    #: samples needed before the model is published as usable
    min_samples: int = 3
    #: per-sample noise floor: timestamping jitter that no delay shows
    noise_floor_ns: int = 20_000
    #: how far the frequency may depart from its estimate between measurements (bound term);
    #: 5 ppm covers quartz over temperature swings of about ±10 °C
    drift_tolerance_ppb: float = 5_000.0
    #: frequency random walk assumed for σ growth (variance per second of extrapolation)
    wander_ns2_per_s: float = 100.0
    #: σ multiplier of the drift estimate's error inside the bound rate
    bound_drift_sigmas: float = 4.0
    #: a sample this many σ from the prediction is an outlier (until `outlier_run` in a row)
    outlier_sigmas: float = 6.0
    outlier_run: int = 3

    def __post_init__(self) -> None:
        if self.min_samples < 2:
            raise ValueError("min_samples must be at least 2 (a line needs two points)")
        if self.max_samples < self.min_samples:
            raise ValueError("max_samples must be >= min_samples")
        for name in ("noise_floor_ns", "drift_tolerance_ppb", "outlier_sigmas"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive finite number, got {value}")


@dataclasses.dataclass(frozen=True)
class Verdict:
    accepted: bool
    reason: str = ""


class RegressionEstimator:
    """Weighted regression over a window of samples; the estimate every other one must beat."""

    has_uncertainty = True

    def __init__(self, config: EstimatorConfig | None = None) -> None:
        self.config = config or EstimatorConfig()
        self._samples: collections.deque[Sample] = collections.deque(maxlen=self.config.max_samples)
        self._fit: LineFit | None = None
        self._fit_origin_ns = 0
        self._rejected_in_row = 0
        self._outliers: list[Sample] = []
        self._disrupted = False

    @property
    def samples(self) -> tuple[Sample, ...]:
        return tuple(self._samples)

    def reset(self, disrupted: bool = True) -> None:
        """Forget every sample: the clock stepped or slept and old samples no longer apply."""
        self._samples.clear()
        self._fit = None
        self._rejected_in_row = 0
        self._outliers.clear()
        self._disrupted = disrupted

    def add(self, sample: Sample) -> Verdict:
        """Take a measurement, or reject it as an outlier against the current line."""
        if any(s.local_ns == sample.local_ns and s.source == sample.source for s in self._samples):
            return Verdict(False, "duplicate")
        if (
            len(self._samples) == self._samples.maxlen
            and sample.local_ns < self._samples[0].local_ns
        ):
            return Verdict(False, "too_old")
        if self._fit is not None and len(self._samples) >= self.config.min_samples:
            x = (sample.local_ns - self._fit_origin_ns) / NS_PER_S
            residual = sample.offset_ns - self._fit.predict_ns(x)
            spread = math.sqrt(
                self._fit.var_at_ns2(x) + self._fit.noise_scale2 * self._variance_ns2(sample)
            )
            if abs(residual) > self.config.outlier_sigmas * spread and abs(residual) > (
                sample.half_width_ns
            ):
                self._rejected_in_row += 1
                if self._rejected_in_row < self.config.outlier_run:
                    self._outliers.append(sample)
                    return Verdict(False, "outlier")
                # Several in a row agree with each other, not with the line: the clock changed.
                # Restart from those outliers, which describe the clock as it is now.
                log.info("%d outliers in a row: restarting the fit", self._rejected_in_row)
                self._samples.clear()
                self._samples.extend(sorted(self._outliers, key=lambda s: s.local_ns))
        self._rejected_in_row = 0
        self._outliers.clear()
        # Polls of several servers finish in any order: keep the window sorted by time.
        if self._samples and sample.local_ns < self._samples[-1].local_ns:
            ordered = sorted([*self._samples, sample], key=lambda s: s.local_ns)
            self._samples.clear()
            self._samples.extend(ordered[-self.config.max_samples :])
        else:
            self._samples.append(sample)
        self._refit()
        if len(self._samples) >= self.config.min_samples:
            self._disrupted = False
        return Verdict(True)

    def _min_delay_ns(self, source: str) -> int:
        return min((s.delay_ns for s in self._samples if s.source == source), default=0)

    def _variance_ns2(self, sample: Sample) -> float:
        excess = max(0, sample.delay_ns - self._min_delay_ns(sample.source))
        floor = max(self.config.noise_floor_ns, sample.precision_ns)
        return float(floor) ** 2 + (excess / 2.0) ** 2

    def _refit(self) -> None:
        samples = list(self._samples)
        origin = samples[-1].local_ns
        x = np.array([(s.local_ns - origin) / NS_PER_S for s in samples])
        y = np.array([float(s.offset_ns) for s in samples])
        v = np.array([self._variance_ns2(s) for s in samples])
        fit = fit_line(x, y, v)
        # Drop old samples while the residuals stop looking random (chrony's runs test).
        while len(samples) > self.config.min_samples and not runs_look_random(fit.residuals_ns):
            drop = max(1, len(samples) // 4)
            samples, x, y, v = samples[drop:], x[drop:], y[drop:], v[drop:]
            fit = fit_line(x, y, v)
        if len(samples) < len(self._samples):
            log.debug("runs test dropped %d old samples", len(self._samples) - len(samples))
            self._samples.clear()
            self._samples.extend(samples)
        self._fit = fit
        self._fit_origin_ns = origin

    def estimate(self, now_ns: int, fresh_for_ns: int) -> ClockModel:
        """The model at base-clock time `now_ns`.

        `fresh_for_ns` is how long after the newest sample the daemon still calls the clock
        synchronized (a few poll intervals); past it the status is FREE_RUNNING and only the
        growing bound and σ speak for the estimate.
        """
        cfg = self.config
        fit = self._fit
        if fit is None or len(self._samples) < cfg.min_samples:
            status = ClockStatus.DISRUPTED if self._disrupted else ClockStatus.UNKNOWN
            return ClockModel.unknown(now_ns, status)
        last = self._samples[-1]
        x_now = (now_ns - self._fit_origin_ns) / NS_PER_S
        offset = fit.predict_ns(x_now)
        slope_sigma = math.sqrt(fit.var_slope_ppb2)
        since_last_s = max(0.0, (now_ns - last.local_ns) / NS_PER_S)
        var_now = fit.var_at_ns2(x_now) + cfg.wander_ns2_per_s * since_last_s
        floor = float(max(last.precision_ns, 1))
        sigma = math.sqrt(max(var_now, floor * floor))
        # d(var)/dΔ / 2 of the fitted line, continued from now
        cov_now = fit.cov_ns2_per_s + x_now * fit.var_slope_ppb2
        bound_rate = cfg.drift_tolerance_ppb + cfg.bound_drift_sigmas * slope_sigma
        bound = self._bound_ns(fit, now_ns, bound_rate)
        status = (
            ClockStatus.SYNCHRONIZED
            if now_ns - last.local_ns <= fresh_for_ns
            else ClockStatus.FREE_RUNNING
        )
        return ClockModel(
            as_of_ns=now_ns,
            offset_ns=round(offset),
            drift_ppb=fit.slope_ppb,
            sigma_ns=sigma,
            sigma_cov_ns2_per_s=cov_now,
            sigma_drift_ppb=slope_sigma,
            wander_ns2_per_s=cfg.wander_ns2_per_s,
            bound_ns=bound,
            bound_rate_ppb=bound_rate,
            status=status,
            last_sample_ns=last.local_ns,
            samples_used=len(self._samples),
            source=last.source,
        )

    def _bound_ns(self, fit: LineFit, now_ns: int, bound_rate_ppb: float) -> int:
        """Smallest worst-case error over the recent samples, each carried forward to now.

        For sample i the true offset was within its root distance λᵢ of the measured θᵢ, the
        line is |θ̂(tᵢ) − θᵢ| away from that measurement, and since tᵢ the error can have grown
        by at most the bound rate × elapsed time. Each sample gives a bound; the tightest holds.
        """
        best = math.inf
        for sample in list(self._samples)[-8:]:
            x = (sample.local_ns - self._fit_origin_ns) / NS_PER_S
            miss = abs(fit.predict_ns(x) - sample.offset_ns)
            age_s = max(0.0, (now_ns - sample.local_ns) / NS_PER_S)
            best = min(best, miss + sample.half_width_ns + bound_rate_ppb * age_s)
        return math.ceil(best)
