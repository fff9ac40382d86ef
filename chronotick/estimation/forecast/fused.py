"""The regression and the forecasters, fused and calibrated: the `fused` and `ml` predictors.

Each member predicts every new measurement before it learns from it; those out-of-sample
errors are all that decides how much a member counts. A member's weight is the inverse of its
own variance at the instant of publication, scaled by how far its recent errors exceeded
what that variance promised, so a forecaster that stops predicting well fades out by itself.
A forecaster counts only while it predicts the recent measurements significantly better than
the regression, on the same measurements; the regression always takes part: it is the
estimate every forecaster must beat, and what is published when they diverge from it, fail,
or are too slow.

Calibration: the fused σ is widened, when the recent out-of-sample errors ask for it, so that
±1.96σ covers 95 % of them once each sample's own noise is taken out (split-conformal on a
sliding window). It is not narrowed, for now: how much of an error is the sample's own noise
is itself an estimate, and narrowing on it made σ too small (docs/benchmarks.md,
"Forecasters", keeps what was tried). The bound keeps the regression's worst-case form and is
only widened, by as much as the fused centre departs from the regression's, so it holds
whenever the regression's does.

Pure, apart from `Training` strategies: the forecasters train synchronously in the simulator
and on a worker thread in the daemon (`chronotick.estimation.forecast.training`), and the
publishing path only evaluates the newest snapshot.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
from collections.abc import Callable
from typing import Protocol

import numpy as np

from chronotick.estimation.estimator import (
    EstimatorConfig,
    RegressionEstimator,
    Verdict,
    coverage_scale,
)
from chronotick.estimation.forecast.covariates import CovariateHistory, CovariateReading
from chronotick.estimation.forecast.foundation import ZeroShotModel
from chronotick.estimation.forecast.long_horizon import LongHorizonFit, fit_long_horizon
from chronotick.estimation.forecast.response import ResponseFit, ResponseTrainer
from chronotick.estimation.forecast.training import InlineTraining
from chronotick.estimation.samples import Sample
from chronotick.model import ClockModel

log = logging.getLogger(__name__)

#: a predictor's frequency beyond this is not a quartz clock's (chrony's maxdrift)
MAX_DRIFT_PPB = 500_000.0
#: the members: the regression; the response to the conditions (with the regression of what
#: it leaves unexplained); the zero-shot forecast of a long line's residual
MEMBERS = ("regression", "response", "long_horizon")
#: fresh_for long enough that the regression's own status does not matter when scoring
_SCORING_FRESH_NS = 10**18


@dataclasses.dataclass(frozen=True)
class FusionConfig:
    #: out-of-sample errors remembered per member, and needed before a forecaster counts
    score_depth: int = 32
    min_scores: int = 8
    #: errors remembered for the calibration of σ, and needed before it acts
    calibration_depth: int = 64
    min_calibration: int = 16
    #: the calibration may narrow σ to this share at most, and widen it this much at most.
    #: Not at all narrower, for now: how much of an error at a sample is the sample's own
    #: noise is an estimate, and where it came out high the calibration narrowed σ below
    #: what the truth showed (docs/benchmarks.md, "Forecasters", says what was tried)
    min_scale: float = 1.0
    max_scale: float = 10.0
    #: accepted samples kept for the forecasters
    max_history: int = 512
    #: the forecasters are retrained after this many accepted samples
    retrain_every: int = 8

    def __post_init__(self) -> None:
        if not (2 <= self.min_scores <= self.score_depth):
            raise ValueError("need 2 <= min_scores <= score_depth")
        if not (4 <= self.min_calibration <= self.calibration_depth):
            raise ValueError("need 4 <= min_calibration <= calibration_depth")
        if self.retrain_every < 1:
            raise ValueError("retrain_every must be >= 1")
        if not (0 < self.min_scale <= 1.0 <= self.max_scale):
            raise ValueError("need 0 < min_scale <= 1 <= max_scale")


#: a training result: the response and the regression of what it leaves unexplained
@dataclasses.dataclass(frozen=True)
class Trained:
    """What one training job made: the response to the conditions with the regression of what
    it leaves unexplained, and the long-horizon forecast (each None where it could not be)."""

    response: tuple[ResponseFit, RegressionEstimator] | None = None
    long_horizon: LongHorizonFit | None = None


class Training(Protocol):
    """Runs a training job and hands its result to `done` (see `training`)."""

    def submit(
        self, job: Callable[[], Trained], done: Callable[[Trained], None], key: str = ""
    ) -> None: ...

    def poll(self) -> None: ...

    def close(self) -> None: ...


class ErrorScores:
    """Recent out-of-sample errors of one predictor against the variance it promised, each
    with the variance of the stand-in for the truth it was measured against."""

    def __init__(self, depth: int) -> None:
        #: (error², promised variance, the truth's own variance)
        self.points: collections.deque[tuple[float, float, float]] = collections.deque(maxlen=depth)

    def __len__(self) -> int:
        return len(self.points)

    def add(self, error_ns: float, variance_ns2: float, truth_variance_ns2: float) -> None:
        self.points.append((error_ns * error_ns, max(variance_ns2, 1.0), truth_variance_ns2))

    def clear(self) -> None:
        self.points.clear()

    def excess_ratio(self) -> float:
        """How far the errors, less the truth's own variance, exceeded the promised variance
        (1: as promised); not below 1/16, so one lucky stretch cannot make a member
        dominate."""
        if not self.points:
            return 1.0
        errors = sum(e - n for e, _v, n in self.points)
        promised = sum(v for _e, v, _n in self.points)
        return max(1.0 / 16.0, errors / promised)

    def coverage_scale(self, coverage: float, low: float, high: float) -> float:
        """The smallest factor c in [low, high] on σ for which ±1.96·√(c²σ² + truth
        variance) holds `coverage` of the recorded errors."""
        return coverage_scale(self.points, coverage, low, high, steps=24)


@dataclasses.dataclass(frozen=True)
class Member:
    """One member's prediction at an instant."""

    name: str
    offset_ns: float
    variance_ns2: float
    drift_ppb: float


class FusedPredictor:
    """`fused`: regression and forecasters weighted by their out-of-sample errors.
    `ml` (`forecasters_only=True`): the forecasters alone once they have earned it, the
    regression until then and whenever they diverge."""

    has_uncertainty = True

    def __init__(
        self,
        regression: RegressionEstimator,
        trainer: ResponseTrainer | None = None,
        config: FusionConfig | None = None,
        training: Training | None = None,
        *,
        zero_shot: ZeroShotModel | None = None,
        forecasters_only: bool = False,
    ) -> None:
        self.regression = regression
        self.trainer = trainer or ResponseTrainer()
        self.config = config or FusionConfig()
        self.training: Training = training or InlineTraining()
        self.forecasters_only = forecasters_only
        self.zero_shot = zero_shot
        self._zero_shot_error = ""
        self.long_horizon: LongHorizonFit | None = None
        cfg = self.config
        self.covariates = CovariateHistory()
        self._history: collections.deque[tuple[Sample, float]] = collections.deque(
            maxlen=cfg.max_history
        )
        self.fit: ResponseFit | None = None
        #: the regression of the offsets less what the conditions explain, per `fit`
        self._detrended: RegressionEstimator | None = None
        self._since_training = 0
        self._trainings = 0
        self.scores = {name: ErrorScores(cfg.score_depth) for name in MEMBERS}
        #: per forecaster: (its squared error, the regression's) at the same samples
        self._paired: dict[str, collections.deque[tuple[float, float]]] = {
            name: collections.deque(maxlen=cfg.score_depth) for name in MEMBERS[1:]
        }
        self.calibration = ErrorScores(cfg.calibration_depth)
        self._scale = 1.0
        #: the fused variance at the next sample's horizon (see `_variance_at_next_sample`)
        self._floor_variance = 0.0
        self._diverged: dict[str, bool] = {}
        #: bumped by reset: a training result from before a reset is dropped
        self._generation = 0

    @property
    def samples(self) -> tuple[Sample, ...]:
        return self.regression.samples

    @property
    def sigma_scale(self) -> float:
        """The calibration's factor on σ (1: none yet)."""
        return self._scale

    def observe_covariates(self, reading: CovariateReading) -> None:
        self.covariates.add(reading)

    def reset(self, disrupted: bool = True) -> None:
        self.regression.reset(disrupted)
        self._history.clear()
        self.covariates.clear()
        self.fit = None
        self._detrended = None
        self.long_horizon = None
        self._since_training = 0
        self._trainings = 0
        self.trainer = ResponseTrainer(self.trainer.config)
        self._diverged.clear()
        for pairs in self._paired.values():
            pairs.clear()
        for scores in self.scores.values():
            scores.clear()
        self.calibration.clear()
        self._scale = 1.0
        self._floor_variance = 0.0
        self._generation += 1

    def add(self, sample: Sample) -> Verdict:
        self.training.poll()
        # every member predicts the sample before anything learns from it
        base = self.regression.estimate(sample.local_ns, _SCORING_FRESH_NS)
        members = self._members(sample.local_ns, base)
        verdict = self.regression.add(sample)
        if not verdict.accepted:
            return verdict
        relative, noise = self.regression.sample_variance_ns2(sample)
        if members:
            noise = self._noise_ns2(sample, noise)
            fused = self._combine(members, base.bound_ns)
            regression_error = sample.offset_ns - members[0].offset_ns
            for member in (*members, fused):
                scores = self.calibration if member.name == "fused" else self.scores[member.name]
                variance = member.variance_ns2
                if member.name == "fused":
                    variance = max(variance, self._floor_variance)
                error = sample.offset_ns - member.offset_ns
                scores.add(error, variance, noise)
                if member.name in self._paired:
                    self._paired[member.name].append((error * error, regression_error**2))
            if len(self.calibration) >= self.config.min_calibration:
                cfg = self.config
                self._scale = self.calibration.coverage_scale(0.95, cfg.min_scale, cfg.max_scale)
        self._history.append((sample, relative))
        if self.fit is not None and self._detrended is not None:
            self._detrended.add(_less_conditions(sample, self.fit, self.covariates))
        self._since_training += 1
        cfg = self.config
        if self._since_training >= cfg.retrain_every:
            self._since_training = 0
            self._train(response=True, long_horizon=False)
        elif self._since_training == cfg.retrain_every // 2 and self.zero_shot is not None:
            # The zero-shot model costs about 40 ms a call: it forecasts every other round,
            # half way between the response's trainings, so no one cycle pays for both (its
            # horizons reach well past the samples until its next forecast).
            self._trainings += 1
            if self._trainings % 2 == 1:
                self._train(response=False, long_horizon=True)
        self._floor_variance = self._variance_at_next_sample(sample.local_ns)
        return verdict

    def _noise_ns2(self, sample: Sample, regression_noise_ns2: float) -> float:
        """The sample's own noise variance: the smaller of the regression's estimate and that
        of the regression of what the conditions leave unexplained (the regression's
        residuals also hold the curvature its line misses, which is what the forecasters
        are for)."""
        noise = regression_noise_ns2
        if self._detrended is not None and self._detrended.samples:
            noise = min(noise, self._detrended.sample_variance_ns2(sample)[1])
        return noise

    def _variance_at_next_sample(self, last_ns: int) -> float:
        """The fused variance where the next sample is expected (the mean recent gap on).

        The calibration sees errors only where samples arrive, at the end of each poll
        interval, where σ is widest; a model's σ shrinks toward the newest sample faster than
        its real error does (the level of a line is as uncertain just after a sample as its
        errors over the interval suggest). σ is therefore held at least at its value at the
        next sample's horizon, the one the calibration measures.
        """
        times = [s.local_ns for s, _v in list(self._history)[-9:]]
        if len(times) < 3:
            return 0.0
        # the mean gap: with several servers polled together, most gaps are milliseconds
        at = last_ns + (times[-1] - times[0]) // (len(times) - 1)
        base = self.regression.estimate(at, _SCORING_FRESH_NS)
        members = self._members(at, base)
        return self._combine(members, base.bound_ns).variance_ns2 if members else 0.0

    def _train(self, *, response: bool, long_horizon: bool) -> None:
        history = tuple(self._history)
        covariates = self.covariates.copy()
        generation = self._generation
        config = self.regression.config
        # the trainer of this generation: a reset gives the next jobs a fresh one, so a job
        # still running on old samples cannot carry its network over
        trainer = self.trainer

        def job() -> Trained:
            samples = [s for s, _v in history]
            variances = [v for _s, v in history]
            return Trained(
                self._train_response(trainer, samples, variances, covariates, config)
                if response
                else None,
                self._train_long_horizon(samples, variances) if long_horizon else None,
            )

        def done(result: Trained) -> None:
            if generation != self._generation:
                return
            if result.response is not None:
                fit, detrended = result.response
                # samples that arrived while it trained (the daemon trains on another thread)
                newest = history[-1][0].local_ns if history else 0
                for sample, _v in list(self._history):
                    if sample.local_ns > newest:
                        detrended.add(_less_conditions(sample, fit, self.covariates))
                self.fit, self._detrended = fit, detrended
            if result.long_horizon is not None:
                self.long_horizon = result.long_horizon

        self.training.submit(job, done, "response" if response else "long_horizon")

    @staticmethod
    def _train_response(
        trainer: ResponseTrainer,
        samples: list[Sample],
        variances: list[float],
        covariates: CovariateHistory,
        config: EstimatorConfig,
    ) -> tuple[ResponseFit, RegressionEstimator] | None:
        fit = trainer.fit(samples, variances, covariates)
        if fit is None or not fit.explains:
            return None
        detrended = RegressionEstimator(config)
        recent = samples[-config.max_samples :]
        explained, _rates = fit.conditions_many([s.local_ns for s in recent], covariates)
        if not np.isfinite(explained).all():
            return None
        for sample, explained_ns in zip(recent, explained, strict=True):
            detrended.add(
                dataclasses.replace(sample, offset_ns=sample.offset_ns - round(explained_ns))
            )
        return fit, detrended

    def _train_long_horizon(
        self, samples: list[Sample], variances: list[float]
    ) -> LongHorizonFit | None:
        if self.zero_shot is None:
            return None
        try:
            return fit_long_horizon(self.zero_shot, samples, variances)
        except Exception as exc:  # a failing model costs its member, not the predictor
            if str(exc) != self._zero_shot_error:
                log.warning("zero-shot model %s failed (%s); fused without it",
                            self.zero_shot.name, exc)  # fmt: skip
            self._zero_shot_error = str(exc)
            return None

    # -- members and their fusion -----------------------------------------------------------

    def _members(self, now_ns: int, base: ClockModel) -> list[Member]:
        if not base.status.gives_interval:
            return []
        members = [Member("regression", float(base.offset_ns), base.sigma_ns**2, base.drift_ppb)]
        fit, detrended = self.fit, self._detrended
        if fit is not None and detrended is not None:
            rest = detrended.estimate(now_ns, _SCORING_FRESH_NS)
            if rest.status.gives_interval:
                explained_ns, rate_ppb = fit.conditions_ns(now_ns, self.covariates)
                offset = rest.offset_ns + explained_ns
                drift = rest.drift_ppb + rate_ppb
                if math.isfinite(offset) and abs(drift) <= MAX_DRIFT_PPB:
                    members.append(Member("response", offset, rest.sigma_ns**2, drift))
        if self.long_horizon is not None and now_ns >= self.long_horizon.origin_ns:
            offset, variance, drift = self.long_horizon.predict(now_ns)
            if math.isfinite(offset) and abs(drift) <= MAX_DRIFT_PPB:
                members.append(Member("long_horizon", offset, variance, drift))
        return members

    def _weights(
        self, members: list[Member], bound_ns: int, record: bool = False
    ) -> dict[str, float]:
        """Inverse variances, each scaled by its recent excess error; 0 for a forecaster that
        has not yet predicted `min_scores` measurements or that left the regression's bound.
        `record`: this is what is published, so a forecaster leaving or rejoining is logged."""
        base = members[0]
        weights: dict[str, float] = {}
        for member in members:
            scores = self.scores[member.name]
            if member.name == "regression":
                weights[member.name] = 1.0 / (member.variance_ns2 * self._ratio(member.name))
                continue
            if len(scores) < self.config.min_scores or not self._beats_regression(member.name):
                weights[member.name] = 0.0
                continue
            diverged = abs(member.offset_ns - base.offset_ns) > bound_ns
            if record and diverged != self._diverged.get(member.name, False):
                log.info(
                    "forecaster %s %s the regression's bound: %s",
                    member.name,
                    "left" if diverged else "is back inside",
                    "falling back to the regression" if diverged else "fused again",
                )
                self._diverged[member.name] = diverged
            if diverged:
                weights[member.name] = 0.0
            else:
                weights[member.name] = 1.0 / (member.variance_ns2 * self._ratio(member.name))
        if self.forecasters_only and any(w > 0 for n, w in weights.items() if n != "regression"):
            weights["regression"] = 0.0
        return weights

    def _ratio(self, name: str) -> float:
        scores = self.scores[name]
        return scores.excess_ratio() if len(scores) >= self.config.min_scores else 1.0

    def _beats_regression(self, name: str) -> bool:
        """Whether the forecaster predicted the recent samples significantly better than the
        regression, paired over the same samples (its mean squared error lower by more than
        twice the standard error of the difference): one that does not, earns no weight at
        all. At a sample the two may look alike under its noise while between samples the
        regression, with its own window, is the safer one; weighting every close call cost up
        to 10 % RMS in the scenarios with nothing to learn."""
        pairs = self._paired[name]
        n = len(pairs)
        if n < self.config.min_scores:
            return False
        diffs = [mine - theirs for mine, theirs in pairs]
        mean = sum(diffs) / n
        var = sum((d - mean) ** 2 for d in diffs) / (n - 1)
        return mean + 2.0 * math.sqrt(var / n) < 0.0

    def _combine(self, members: list[Member], bound_ns: int, record: bool = False) -> Member:
        weights = self._weights(members, bound_ns, record)
        total = sum(weights.values())
        offset = sum(weights[m.name] * m.offset_ns for m in members) / total
        drift = sum(weights[m.name] * m.drift_ppb for m in members) / total
        drift = max(-MAX_DRIFT_PPB, min(MAX_DRIFT_PPB, drift))
        # The members learn from the same samples, so their errors are far from independent:
        # 1/Σw, the variance of independent ones, promised up to twice too little. The
        # weighted mean of their variances holds for fully correlated errors; each variance
        # is widened by its excess ratio but never narrowed by it (the ratio's noise share is
        # an estimate: narrowing on it made σ too small, as the calibration's notes say).
        variance = sum(
            weights[m.name] / total * m.variance_ns2 * max(1.0, self._ratio(m.name))
            for m in members
        )
        return Member("fused", offset, variance, drift)

    def weights(self, now_ns: int) -> dict[str, float]:
        """The members' shares in the estimate at `now_ns` (for reports and tests)."""
        base = self.regression.estimate(now_ns, _SCORING_FRESH_NS)
        members = self._members(now_ns, base)
        if not members:
            return {}
        weights = self._weights(members, base.bound_ns)
        total = sum(weights.values())
        return {name: w / total for name, w in weights.items()}

    def estimate(self, now_ns: int, fresh_for_ns: int) -> ClockModel:
        self.training.poll()
        base = self.regression.estimate(now_ns, fresh_for_ns)
        members = self._members(now_ns, base)
        if not members:
            return base
        fused = self._combine(members, base.bound_ns, record=True)
        sigma = self._scale * math.sqrt(max(fused.variance_ns2, self._floor_variance))
        if not (math.isfinite(fused.offset_ns) and math.isfinite(sigma)):
            return base  # a forecaster gone wrong never reaches the segment
        growth = (sigma / base.sigma_ns) ** 2 if base.sigma_ns > 0 else 1.0
        departure = abs(fused.offset_ns - base.offset_ns)
        return dataclasses.replace(
            base,
            offset_ns=round(fused.offset_ns),
            drift_ppb=fused.drift_ppb,
            sigma_ns=max(sigma, 1.0),
            sigma_cov_ns2_per_s=base.sigma_cov_ns2_per_s * growth,
            sigma_drift_ppb=base.sigma_drift_ppb * math.sqrt(growth),
            wander_ns2_per_s=base.wander_ns2_per_s * growth,
            bound_ns=base.bound_ns + math.ceil(departure),
            bound_rate_ppb=base.bound_rate_ppb + abs(fused.drift_ppb - base.drift_ppb),
        )


def _less_conditions(sample: Sample, fit: ResponseFit, history: CovariateHistory) -> Sample:
    """The sample with what the conditions explain taken out of its offset (unchanged where
    that is not a number: a fit's covariate gone missing must not cost a sample)."""
    explained_ns, _rate = fit.conditions_ns(sample.local_ns, history)
    if not math.isfinite(explained_ns):
        return sample
    return dataclasses.replace(sample, offset_ns=sample.offset_ns - round(explained_ns))
