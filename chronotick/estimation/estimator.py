"""The regression estimator: accepted samples in, a `ClockModel` out.

Pure code: it is given samples and the current base-clock time and never reads a clock, so the
daemon, the simulator and the tests drive the very same object. Forecasters (their own issue)
plug in beside it by producing a `ClockModel` from the same inputs.

How many samples to fit is a trade: more average the network noise away, fewer follow a
frequency that wanders (temperature, ageing). Instead of guessing, lines over several windows
(the last 4, 8, … 64 samples) are kept, each predicts every new sample before it is added, and
the window whose recent predictions were best is used. The same out-of-sample errors calibrate
σ: when the line's own statistics promise less error than its predictions show, σ is widened
to what they show (the line cannot see the curvature it misses).

Those errors hold the new sample's own noise as well as the line's error, and σ is about the
line's error only (it is scored against true time), so the noise has to be taken out, and how
well it is estimated decides whether σ comes out honest. Two estimates of it are used, each
where it is least biased: per unit weight for the inflation (the fit's noise scale is a mean
of residual² / variance, so that is the scale on which it is unbiased), and from short lines
for the tail factor (a long line's residuals also hold the curvature it misses, which is
exactly the error σ must cover, not noise).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
from collections.abc import Iterable

import numpy as np

from chronotick.estimation.regression import LineFit, fit_line, runs_look_random
from chronotick.estimation.samples import Sample
from chronotick.model import NS_PER_S, ClockModel
from chronotick.status import ClockStatus

log = logging.getLogger(__name__)

_Z95 = 1.96
_BIAS_PRIOR_DOF = 2

#: two-sided 95 % quantiles of Student's t by degrees of freedom (beyond 30: within 2 % of z)
_T975 = {
    1: 12.71, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
    10: 2.228, 12: 2.179, 14: 2.145, 16: 2.120, 20: 2.086, 25: 2.060, 30: 2.042,
}  # fmt: skip
for _dof in range(1, 31):
    _T975.setdefault(_dof, _T975[max(k for k in _T975 if k <= _dof)])


def coverage_scale(
    points: Iterable[tuple[float, float, float]],
    coverage: float,
    low: float,
    high: float,
    steps: int = 20,
) -> float:
    """The smallest factor c in [low, high] on σ for which ±1.96·√(c²σ² + n²) holds
    `coverage` of the (error², σ², n²) points, by bisection (`high` when even it does not).

    Split-conformal calibration of σ, shared by the regression's tail factor and the fused
    predictor's scale: n² is the part of each error that is not the model's (a sample's own
    noise), which any factor on σ leaves alone.
    """
    table = np.array(list(points), dtype=float).reshape(-1, 3)
    e2, s2, n2 = table[:, 0] / _Z95**2, table[:, 1], table[:, 2]

    def covered(c: float) -> float:
        return float(np.count_nonzero(e2 <= c * c * s2 + n2)) / len(table)

    if covered(low) >= coverage:
        return low
    if covered(high) < coverage:
        return high
    for _ in range(steps):
        mid = (low + high) / 2
        if covered(mid) >= coverage:
            high = mid
        else:
            low = mid
    return high


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
    #: candidate windows (numbers of newest samples) for the line
    windows: tuple[int, ...] = (4, 8, 16, 32, 64)
    #: out-of-sample predictions remembered per window, to choose it and calibrate σ
    scoring_depth: int = 24

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
    #: how far the sample fell from the prediction, in units of the expected spread (0: no
    #: prediction yet); the poll schedule tightens when measurements keep surprising
    surprise: float = 0.0


class RegressionEstimator:
    """Weighted regression over an adaptively chosen window of samples; the estimate every
    other predictor must beat."""

    has_uncertainty = True

    def __init__(self, config: EstimatorConfig | None = None) -> None:
        self.config = config or EstimatorConfig()
        cfg = self.config
        self._samples: collections.deque[Sample] = collections.deque(maxlen=cfg.max_samples)
        self._windows = sorted({min(max(w, cfg.min_samples), cfg.max_samples) for w in cfg.windows})
        self._fits: dict[int, LineFit] = {}
        self._fit_origin_ns = 0
        #: per window: (squared prediction error, predicted line variance, the line's noise
        #: scale s², the sample's relative noise variance v); the noise variance is s²·v
        self._scores: dict[int, collections.deque[tuple[float, float, float, float]]] = {
            w: collections.deque(maxlen=cfg.scoring_depth) for w in self._windows
        }
        #: per source: (minimum delay, hidden queueing); cleared whenever the window changes
        self._delays: dict[str, tuple[int, float]] = {}
        self._rejected_in_row = 0
        self._outliers: list[Sample] = []
        self._disrupted = False
        #: (squared prediction error, published σ² there, the sample's noise variance)
        #: as many as the window scores: where the frequency wanders with temperature, the
        #: error regime changes within hours, and a longer memory (at long polls, most of a
        #: day) spreads the factor of one regime over the next
        self._calibration: collections.deque[tuple[float, float, float]] = collections.deque(
            maxlen=2 * cfg.scoring_depth
        )
        self._tail = 1.0
        #: recent noise scales s² of the line of 8 samples: the noise estimate of the tail
        self._short_noise: collections.deque[float] = collections.deque(maxlen=16)
        #: values that change only when a sample is taken (cleared by `add` and `reset`)
        self._memo: dict[str, float] = {}

    @property
    def samples(self) -> tuple[Sample, ...]:
        return tuple(self._samples)

    def reset(self, disrupted: bool = True) -> None:
        """Forget every sample: the clock stepped or slept and old samples no longer apply."""
        self._memo.clear()
        self._samples.clear()
        self._delays.clear()
        self._fits = {}
        for scores in self._scores.values():
            scores.clear()
        self._rejected_in_row = 0
        self._outliers.clear()
        self._calibration.clear()
        self._short_noise.clear()
        self._tail = 1.0
        self._disrupted = disrupted

    # -- the window in use and its calibration -----------------------------------------------

    def _chosen_window(self) -> int:
        """`_choose_window`, computed once per change of the samples (publishing asks for it
        at every estimate)."""
        if "window" not in self._memo:
            self._memo["window"] = self._choose_window()
        return int(self._memo["window"])

    def _choose_window(self) -> int:
        """The largest window, unless a smaller one predicted the recent samples significantly
        better (paired over the same samples, by more than twice the standard error): a small
        window must clearly earn its extra noise."""
        usable = [w for w in self._windows if w in self._fits]
        if not usable:
            return 0
        largest = usable[-1]
        reference = [e for e, _v, _s2, _n in self._scores[largest]]
        if len(reference) < 8:
            return largest
        best, best_mse = largest, sum(reference) / len(reference)
        for window in usable[:-1]:
            errors = [e for e, _v, _s2, _n in self._scores[window]]
            n = min(len(errors), len(reference))
            if n < 8:
                continue
            diffs = [a - b for a, b in zip(errors[-n:], reference[-n:], strict=True)]
            mean = sum(diffs) / n
            var = sum((d - mean) ** 2 for d in diffs) / (n - 1)
            mse = sum(errors[-n:]) / n
            if mean + 2.0 * math.sqrt(var / n) < 0 and mse < best_mse:
                best, best_mse = window, mse
        return best

    def _inflation(self, window: int) -> float:
        """The factor on the line's variance that makes σ honest (≥ 1).

        Two reasons the line's own statistics promise too little: with few samples the noise
        scale is itself uncertain (Student's t, not the normal, gives the 95 % interval), and
        the line cannot see the curvature it misses, which shows as out-of-sample prediction
        errors beyond the line's variance plus the new sample's own noise.
        """
        fit = self._fits.get(window)
        dof = max(1, fit.n - 2) if fit is not None else 1
        student = (_T975.get(dof, 1.96) / 1.96) ** 2
        scores = self._scores.get(window)
        if not scores or len(scores) < 8:
            return student
        n = len(scores)
        mean_err = sum(e for e, _v, _s2, _n in scores) / n
        mean_line = sum(v for _e, v, _s2, _n in scores) / n
        mean_noise = sum(s2 * nv for _e, _v, s2, nv in scores) / n
        if mean_line <= 0:
            return student
        return max(student, (mean_err - mean_noise) / mean_line)

    def _sigma_inflation(self, window: int) -> float:
        key = f"sigma_inflation_{window}"
        if key not in self._memo:
            self._memo[key] = self._compute_sigma_inflation(window)
        return self._memo[key]

    def _compute_sigma_inflation(self, window: int) -> float:
        """The factor on the line's variance inside σ (≥ 1): `_inflation`, with the errors
        compared per unit weight.

        The fit's noise scale s² is a weighted mean of residual² / v, so it estimates the
        noise of a new sample as s²·v only on average over residual² / v; where the delay-based
        v is a rough guide to a sample's real noise (heavy queueing: v follows the excess
        delay, the offset error only part of it), the plain mean of s²·v misses the mean
        noise² by a few per cent. With noise fifty times the line's variance, those few per
        cent, read as line error, made σ three times too wide. Dividing each error by its v
        compares like with like. The outlier test keeps `_inflation`: its spread decides
        which samples are taken, and so the estimate itself.
        """
        fit = self._fits.get(window)
        dof = max(1, fit.n - 2) if fit is not None else 1
        student = (_T975.get(dof, 1.96) / 1.96) ** 2
        scores = self._scores.get(window)
        if not scores or len(scores) < 8:
            return student
        excess = sum(e / nv - s2 for e, _v, s2, nv in scores)
        line = sum(v / nv for _e, v, _s2, nv in scores)
        if line <= 0:
            return student
        return max(student, excess / line)

    # -- samples ------------------------------------------------------------------------------

    def add(self, sample: Sample) -> Verdict:
        """Take a measurement, or reject it as an outlier against the current line."""
        try:
            return self._add(sample)
        finally:
            self._memo.clear()

    def _add(self, sample: Sample) -> Verdict:
        if any(s.local_ns == sample.local_ns and s.source == sample.source for s in self._samples):
            return Verdict(False, "duplicate")
        if (
            len(self._samples) == self._samples.maxlen
            and sample.local_ns < self._samples[0].local_ns
        ):
            return Verdict(False, "too_old")
        window = self._chosen_window()
        fit = self._fits.get(window)
        surprise = 0.0
        if fit is not None and len(self._samples) >= self.config.min_samples:
            x = (sample.local_ns - self._fit_origin_ns) / NS_PER_S
            residual = sample.offset_ns - fit.predict_ns(x)
            spread = math.sqrt(
                self._inflation(window) * fit.var_at_ns2(x)
                + fit.noise_scale2 * self._variance_ns2(sample)
            )
            surprise = abs(residual) / spread if spread > 0 else 0.0
            if abs(residual) > self.config.outlier_sigmas * spread and abs(residual) > (
                sample.half_width_ns
            ):
                self._rejected_in_row += 1
                if self._rejected_in_row < self.config.outlier_run:
                    self._outliers.append(sample)
                    return Verdict(False, "outlier", surprise)
                # Several in a row agree with each other, not with the line: the clock changed.
                # Restart from those outliers, which describe the clock as it is now.
                log.info("%d outliers in a row: restarting the fit", self._rejected_in_row)
                self._samples.clear()
                self._samples.extend(sorted(self._outliers, key=lambda s: s.local_ns))
                self._delays.clear()
                for scores in self._scores.values():
                    scores.clear()
                self._memo.clear()
            elif sample.local_ns > self._samples[-1].local_ns:
                self._score_windows(sample, x)
                since_s = (sample.local_ns - self._samples[-1].local_ns) / NS_PER_S
                # The sample's own noise, scaled by the residuals of a line of 16 samples: a
                # long line's residuals also hold the curvature it misses, which is model
                # error, and a short one's scale is held up by its prior.
                self._calibration.append(
                    (
                        residual * residual,
                        self._variance_at_ns2(window, fit, x, since_s),
                        self._noise_scale2() * self._variance_ns2(sample),
                    )
                )
                self._tail = self._tail_factor()
        self._rejected_in_row = 0
        self._outliers.clear()
        # Polls of several servers finish in any order: keep the window sorted by time.
        if self._samples and sample.local_ns < self._samples[-1].local_ns:
            ordered = sorted([*self._samples, sample], key=lambda s: s.local_ns)
            self._samples.clear()
            self._samples.extend(ordered[-self.config.max_samples :])
        else:
            self._samples.append(sample)
        self._delays.clear()
        self._refit()
        if len(self._samples) >= self.config.min_samples:
            self._disrupted = False
        return Verdict(True, "", surprise)

    def _score_windows(self, sample: Sample, x: float) -> None:
        """Each window's line predicted this sample before seeing it: remember how well."""
        self._memo.clear()
        noise_var = self._variance_ns2(sample)
        for window, fit in self._fits.items():
            error = sample.offset_ns - fit.predict_ns(x)
            self._scores[window].append(
                (error * error, fit.var_at_ns2(x), fit.noise_scale2, noise_var)
            )

    def _noise_scale2(self) -> float:
        """The noise scale s² of a new sample, for the tail factor: as little model error in
        it as the data allow.

        A line's residuals hold the sample noise and the curvature the line misses. The line
        of 16 samples was the compromise, but where the frequency follows the temperature
        its s² came out five times the real noise, so the tail factor explained the model's
        misses as noise and σ stayed too small. The line of 8 samples holds much less
        curvature; its s² on 6 degrees of freedom scatters, so the median of its recent values
        is used (a noisy noise estimate would blunt the tail factor: an error looks covered
        whenever its noise estimate happens to be high). It never exceeds the 16-sample s².
        """
        short = self._fits.get(8)
        if short is not None and short.n >= 8:
            self._short_noise.append(short.noise_scale2)
        return self._current_noise_scale2()

    def _current_noise_scale2(self) -> float:
        longer = self._fits[min((w for w in self._fits if w >= 16), default=max(self._fits))]
        if len(self._short_noise) < 8:
            return longer.noise_scale2
        ordered = sorted(self._short_noise)
        return min(longer.noise_scale2, ordered[len(ordered) // 2])

    def sample_variance_ns2(self, sample: Sample) -> tuple[float, float]:
        """(relative variance used to weight the sample, estimated noise variance ns² of its
        offset) as this estimator sees them now; what a forecaster fitting the same samples
        weights them by, and what its calibration takes out of its errors."""
        relative = self._variance_ns2(sample)
        if not self._fits:
            return relative, relative
        return relative, self._current_noise_scale2() * relative

    def _source_delays(self, source: str) -> tuple[int, float]:
        """(minimum delay, hidden queueing) of a source, computed once per window content.

        The hidden queueing is the queueing that even the fastest sample of a source carries,
        which no delay shows: half the lower-quartile excess delay of the source's samples.
        Where delays scatter widely, the fastest one is not free of queueing either, and
        weighting it as if it were exact would let one sample carry the whole fit.
        """
        cached = self._delays.get(source)
        if cached is None:
            delays = sorted(s.delay_ns for s in self._samples if s.source == source)
            minimum = delays[0] if delays else 0
            hidden = (delays[len(delays) // 4] - minimum) / 2.0 if len(delays) >= 4 else 0.0
            cached = self._delays[source] = (minimum, hidden)
        return cached

    def _variance_ns2(self, sample: Sample) -> float:
        minimum, hidden = self._source_delays(sample.source)
        excess = max(0, sample.delay_ns - minimum)
        floor = max(self.config.noise_floor_ns, sample.precision_ns)
        return float(floor) ** 2 + hidden**2 + (excess / 2.0) ** 2

    def _refit(self) -> None:
        self._memo.clear()
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
            self._delays.clear()
        fits: dict[int, LineFit] = {}
        n = len(samples)
        for window in self._windows:
            size = min(window, n)
            fits[window] = fit if size == n else fit_line(x[-size:], y[-size:], v[-size:])
            if window >= n:
                break  # larger windows would fit the same samples
        self._fits = fits
        self._fit_origin_ns = origin

    def estimate(self, now_ns: int, fresh_for_ns: int) -> ClockModel:
        """The model at base-clock time `now_ns`.

        `fresh_for_ns` is how long after the newest sample the daemon still calls the clock
        synchronized (a few poll intervals); past it the status is FREE_RUNNING and only the
        growing bound and σ speak for the estimate.
        """
        cfg = self.config
        window = self._chosen_window()
        fit = self._fits.get(window)
        if fit is None or len(self._samples) < cfg.min_samples:
            status = ClockStatus.DISRUPTED if self._disrupted else ClockStatus.UNKNOWN
            return ClockModel.unknown(now_ns, status)
        inflation = self._sigma_inflation(window)
        tail = self._tail**2
        last = self._samples[-1]
        x_now = (now_ns - self._fit_origin_ns) / NS_PER_S
        offset = fit.predict_ns(x_now)
        slope_sigma = math.sqrt(fit.var_slope_ppb2 * inflation * tail)
        since_last_s = max(0.0, (now_ns - last.local_ns) / NS_PER_S)
        var_now = tail * self._variance_at_ns2(window, fit, x_now, since_last_s)
        floor = float(max(last.precision_ns, 1))
        sigma = math.sqrt(max(var_now, floor * floor))
        # d(var)/dΔ / 2 of the fitted line, continued from now
        cov_now = tail * inflation * (fit.cov_ns2_per_s + x_now * fit.var_slope_ppb2)
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
            wander_ns2_per_s=tail * cfg.wander_ns2_per_s,
            bound_ns=bound,
            bound_rate_ppb=bound_rate,
            status=status,
            last_sample_ns=last.local_ns,
            samples_used=min(window, len(self._samples)),
            source=last.source,
        )

    def _variance_at_ns2(self, window: int, fit: LineFit, x_s: float, since_last_s: float) -> float:
        """σ² before the tail calibration: the line's (inflated) variance at x, the wander
        since the last sample, and the path bias that several sources reveal."""
        return (
            self._sigma_inflation(window) * fit.var_at_ns2(x_s)
            + self.config.wander_ns2_per_s * since_last_s
            + self._path_bias_var_ns2(window, fit)
        )

    def _tail_factor(self) -> float:
        """The factor (≥ 1) on σ that makes ±2σ cover 95 % of what recent samples showed.

        Each new sample was predicted before it was added; its deviation is the model's error
        there plus the sample's own noise. The factor is the smallest c for which 95 % of
        recent deviations fall within 1.96·√(c²σ² + noise²): it fixes the tails that a
        variance, dominated by the middle of the distribution, gets wrong.
        """
        points = self._calibration
        if len(points) < 16:
            return 1.0

        return coverage_scale(points, 0.95, 1.0, 10.0)

    def path_bias_variance_ns2(self) -> float:
        """The variance of the error a path's asymmetry leaves in the line in use (0 with
        fewer than two sources), from the sources' means weighted as the fit weights them:
        the part of the error that no fit through these samples can check.

        A path that queues one way only drags its plain mean toward its slow samples, which
        the fit hardly counts: on `asymmetric` two sources whose weighted means were 0.13 ms
        apart had plain means within 0.03 ms. σ itself keeps the plain means, with which its
        tail factor was calibrated (with the weighted ones, its ±2σ there held 0.998).
        """
        window = self._chosen_window()
        fit = self._fits.get(window)
        return self._path_bias_var_ns2(window, fit, weighted=True) if fit is not None else 0.0

    def _path_bias_var_ns2(self, window: int, fit: LineFit, weighted: bool = False) -> float:
        """Variance of the error that path asymmetry leaves, as far as several sources show it.

        An asymmetric path biases every sample of its source alike, which no amount of
        averaging removes and a single source cannot reveal. With several sources, each one's
        mean residual estimates its bias relative to the others; taking those biases as
        independent draws, their spread over √(number of sources) is the error left in a line
        that averages them.
        """
        key = f"path_bias_{window}_{weighted}"
        if key in self._memo:
            return self._memo[key]
        samples = list(self._samples)[-min(window, len(self._samples)) :]
        # per source: (Σ w·residual, Σ w, count)
        by_source: dict[str, tuple[float, float, int]] = {}
        for sample, residual in zip(samples, fit.residuals_ns, strict=False):
            weight = 1.0 / self._variance_ns2(sample) if weighted else 1.0
            total, weights, count = by_source.get(sample.source, (0.0, 0.0, 0))
            by_source[sample.source] = (total + weight * residual, weights + weight, count + 1)
        means = [total / weights for total, weights, count in by_source.values() if count >= 2]
        variance = 0.0
        if len(means) >= 2:
            centre = sum(means) / len(means)
            # A prior of two degrees of freedom at zero bias: two or three sources say little
            # about the spread of path biases, and one unlucky pair must not dominate σ.
            spread = sum((m - centre) ** 2 for m in means) / (len(means) - 1 + _BIAS_PRIOR_DOF)
            variance = spread / len(means)
        self._memo[key] = variance
        return variance

    def _bound_ns(self, fit: LineFit, now_ns: int, bound_rate_ppb: float) -> int:
        """Smallest worst-case error over the recent samples, each carried forward to now.

        For sample i the true offset was within its root distance λᵢ of the measured θᵢ, the
        line is |θ̂(tᵢ) − θᵢ| away from that measurement, and since tᵢ the error can have grown
        by at most the bound rate × elapsed time. Each sample gives a bound; the tightest holds.

        Outliers held back (waiting to see whether the clock really changed) may be the honest
        ones: until they are judged, the bound also covers the case that they are right, so it
        holds whichever way the judgement goes.
        """

        def carried(sample: Sample) -> float:
            x = (sample.local_ns - self._fit_origin_ns) / NS_PER_S
            miss = abs(fit.predict_ns(x) - sample.offset_ns)
            age_s = max(0.0, (now_ns - sample.local_ns) / NS_PER_S)
            return miss + sample.half_width_ns + bound_rate_ppb * age_s

        best = min(carried(s) for s in list(self._samples)[-4:])
        for outlier in self._outliers:
            best = max(best, carried(outlier))
        return math.ceil(best)
