"""The regression and the forecasters, fused and calibrated: the `fused` and `ml` predictors.

Each member predicts every new measurement before it learns from it; those out-of-sample
errors are all that decides how much a member counts. A member's weight is the inverse of its
own variance at the instant of publication, scaled by how far its recent errors exceeded
what that variance promised, so a forecaster that stops predicting well fades out by itself.
A forecaster counts only while it predicts the recent measurements significantly better than
the regression, on the same measurements (absolute errors, paired: with heavy-tailed noise a
squared error is decided by its few spikes); the regression always takes part: it is the
estimate every forecaster must beat, and what is published when they diverge from it, fail,
or are too slow.

Calibration (split-conformal on sliding windows, `_calibrated_scale`): the fused σ is
widened when the out-of-sample errors at samples ask for it, once each sample's own noise is
taken out, so that ±1.96σ covers 95 % of them. Those errors cannot narrow it: where the
noise dominates, its estimate decides, not the model (narrowing on them made σ too small).
What narrows it is hindsight (`hindsight.py`): predictions at instants spread evenly over
time, scored once the samples on both sides of each instant have arrived against a line
through them, which averages the noise away. The bound keeps the regression's worst-case
form and is only widened, by as much as the fused centre departs from the regression's, so
it holds whenever the regression's does.

Pure, apart from `Training` strategies: the forecasters train synchronously in the simulator
and on a worker thread in the daemon (`chronotick.estimation.forecast.training`), and the
publishing path only evaluates the newest snapshot.
"""

from __future__ import annotations

import bisect
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
from chronotick.estimation.forecast.hindsight import HALF_WIDTH, hindsight_at
from chronotick.estimation.forecast.long_horizon import LongHorizonFit, fit_long_horizon
from chronotick.estimation.forecast.response import ResponseFit, ResponseTrainer
from chronotick.estimation.forecast.training import InlineTraining
from chronotick.estimation.samples import Sample
from chronotick.model import NS_PER_S, ClockModel

log = logging.getLogger(__name__)

#: a predictor's frequency beyond this is not a quartz clock's (chrony's maxdrift)
MAX_DRIFT_PPB = 500_000.0
#: the members: the regression; the response to the conditions (with the regression of what
#: it leaves unexplained); the zero-shot forecast of a long line's residual; the median of the
#: newest samples at the regression's frequency
MEMBERS = ("regression", "response", "long_horizon", "robust")
#: samples whose median the robust member takes: on the real traces 5-9 all beat holding the
#: last measurement; 15 lagged
ROBUST_SAMPLES = 7
#: the golden ratio's fraction: k·φ mod 1 spreads instants evenly over an interval
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
#: instants scored per interval between samples at most (a long gap is scored at its start)
_MAX_POINTS_PER_INTERVAL = 4
#: fresh_for long enough that the regression's own status does not matter when scoring
_SCORING_FRESH_NS = 10**18


@dataclasses.dataclass(frozen=True)
class FusionConfig:
    #: out-of-sample errors remembered per member, and needed before a forecaster counts
    score_depth: int = 32
    min_scores: int = 8
    #: errors at samples remembered for the calibration of σ (a memory and a recent part of
    #: it: where the error follows a temperature cycle, the recent part asks for more within
    #: the cycle), and needed before it acts
    calibration_depth: int = 64
    calibration_recent: int = 32
    min_calibration: int = 16
    #: differences from hindsight remembered, the same way (the long memory's quantile is
    #: steady, the recent part catches a change of regime); 256 at a 64 s poll is 4.5 h, and
    #: 512 carried a day's first hours, before the response was learnt, into its afternoon
    hindsight_depth: int = 256
    hindsight_recent: int = 64
    #: hindsight may narrow σ to this share at most; either calibration widens it this much
    #: at most
    min_scale: float = 0.25
    max_scale: float = 10.0
    #: accepted samples kept for the forecasters
    max_history: int = 512
    #: the forecasters are retrained after this many accepted samples
    retrain_every: int = 8

    def __post_init__(self) -> None:
        if not (2 <= self.min_scores <= self.score_depth):
            raise ValueError("need 2 <= min_scores <= score_depth")
        if not (4 <= self.min_calibration <= self.calibration_recent <= self.calibration_depth):
            raise ValueError("need 4 <= min_calibration <= calibration_recent <= calibration_depth")
        if not (self.min_calibration <= self.hindsight_recent <= self.hindsight_depth):
            raise ValueError("need min_calibration <= hindsight_recent <= hindsight_depth")
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

    def coverage_scale(self, coverage: float, low: float, high: float, recent: int = 0) -> float:
        """The smallest factor c in [low, high] on σ for which ±1.96·√(c²σ² + truth
        variance) holds `coverage` of the recorded errors, and (`recent` > 0) of the newest
        `recent` of them too."""
        scale = coverage_scale(self.points, coverage, low, high, steps=24)
        if 0 < recent < len(self.points):
            newest = list(self.points)[-recent:]
            scale = max(scale, coverage_scale(newest, coverage, low, high, steps=24))
        return scale


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
        #: per forecaster: (its absolute error, the regression's) at the same samples
        self._paired: dict[str, collections.deque[tuple[float, float]]] = {
            name: collections.deque(maxlen=cfg.score_depth) for name in MEMBERS[1:]
        }
        self.calibration = ErrorScores(cfg.calibration_depth)
        #: predictions waiting for the samples after them: (the instant, the fused offset
        #: predicted there, the fused variance promised there before the scale)
        self._pending: collections.deque[tuple[int, float, float]] = collections.deque(
            maxlen=cfg.max_history
        )
        #: the calibration's instants: where the last interval scored ended, the instants
        #: owed (one per mean gap of time), and how many were placed
        self._grid_from_ns = 0
        self._grid_credit = 0.0
        self._grid_count = 0
        self.hindsight = ErrorScores(cfg.hindsight_depth)
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
        self._pending.clear()
        self._grid_from_ns = 0
        self._grid_credit = 0.0
        self.hindsight.clear()
        self._scale = 1.0
        self._floor_variance = 0.0
        self._generation += 1

    def add(self, sample: Sample) -> Verdict:
        self.training.poll()
        # every member predicts the sample before anything learns from it
        base = self.regression.estimate(sample.local_ns, _SCORING_FRESH_NS)
        members = self._members(sample.local_ns, base)
        between = self._predictions_between(sample.local_ns) if members else []
        verdict = self.regression.add(sample)
        # published before the sample came, whatever is made of it: an interval that ends in
        # an outlier is scored like any other
        self._pending.extend(between)
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
                    self._paired[member.name].append((abs(error), abs(regression_error)))
        self._history.append((sample, relative))
        if members:
            self._score_in_hindsight()
            self._scale = self._calibrated_scale()
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

    def _mean_recent_gap_ns(self) -> int | None:
        """The mean gap between the regression's newest samples (None with fewer than 3):
        with several servers polled together most gaps are milliseconds, so a median or the
        newest gap would not say how often samples come."""
        recent = self.regression.samples[-9:]
        if len(recent) < 3:
            return None
        return max(1, (recent[-1].local_ns - recent[0].local_ns) // (len(recent) - 1))

    def _predictions_between(self, next_ns: int) -> list[tuple[int, float, float]]:
        """(instant, the fused offset there, its variance before the scale) at the instants
        the calibration scores between the newest sample and `next_ns`, as published there.

        What a reader is promised is coverage at whatever instant it reads, and the error
        grows from each sample to the next: the calibration scores instants spread evenly in
        time, not the samples, where the error is largest. An interval earns instants in
        proportion to its length (one per mean gap, carried over from short intervals: with
        several servers polled together most intervals last milliseconds), and the k-th
        instant sits at the fraction k·φ mod 1 of its interval, a sequence that fills every
        part of an interval evenly whatever the poll's rhythm.
        """
        samples = self.regression.samples
        gap = self._mean_recent_gap_ns()
        if gap is None:
            return []
        start = max(samples[-1].local_ns, self._grid_from_ns)
        if start >= next_ns:
            return []
        self._grid_from_ns = next_ns
        self._grid_credit = min(
            self._grid_credit + (next_ns - start) / gap, float(_MAX_POINTS_PER_INTERVAL)
        )
        points: list[tuple[int, float, float]] = []
        while self._grid_credit >= 1.0:
            self._grid_credit -= 1.0
            self._grid_count += 1
            fraction = (self._grid_count * _GOLDEN) % 1.0
            at = start + max(1, round(fraction * (next_ns - start)))
            base = self.regression.estimate(at, _SCORING_FRESH_NS)
            members = self._members(at, base)
            if members:
                fused = self._combine(members, base.bound_ns)
                points.append((at, fused.offset_ns, max(fused.variance_ns2, self._floor_variance)))
        return points

    def _score_in_hindsight(self) -> None:
        """Score the predictions that now have `HALF_WIDTH` samples after them against the
        line through the samples around them (`hindsight`)."""
        if not self._pending:
            return
        ordered = sorted(self._history, key=lambda pair: pair[0].local_ns)
        path_bias = self.regression.path_bias_variance_ns2()
        times = [s.local_ns for s, _v in ordered]
        while self._pending:
            at_ns, predicted_ns, variance = self._pending[0]
            at = bisect.bisect_left(times, at_ns)
            if at + HALF_WIDTH >= len(ordered):
                return  # not yet enough samples after it
            self._pending.popleft()
            if at < HALF_WIDTH:
                continue  # too early in the history
            around = ordered[at - HALF_WIDTH : at + HALF_WIDTH + 1]
            less, less_at = None, 0.0
            if self.fit is not None:
                explained, _rates = self.fit.conditions_many(
                    [s.local_ns for s, _v in around] + [at_ns], self.covariates
                )
                if np.isfinite(explained).all():
                    less, less_at = [float(x) for x in explained[:-1]], float(explained[-1])
            truth = hindsight_at(
                [s for s, _v in around], [v for _s, v in around], at_ns, less, less_at
            )
            if truth is None:
                continue
            # Var(prediction's error) = Var(difference) + Var(hindsight): the hindsight's
            # variance goes with the difference, not against it as a sample's noise would,
            # and so does the path bias that it shares with the prediction
            miss = predicted_ns - truth.offset_ns
            unseen = truth.variance_ns2 + path_bias
            self.hindsight.add(math.sqrt(miss * miss + unseen), variance, 0.0)

    def _calibrated_scale(self) -> float:
        """The factor on σ: the smallest that makes ±1.96σ cover 95 % of the recent errors at
        samples (net of their noise), and, once enough predictions were scored in hindsight,
        no more than what they ask for.

        The errors at samples see a model's miss where it is large against the noise; they
        only ever widen σ, because where the noise dominates its estimate decides and not
        the model. Hindsight sees the model's miss whatever the noise, unless the line around
        an instant misfits (which can only make it ask for more): it may narrow σ. Its
        factor is the larger of a long memory's (steady) and a recent one's (a change of
        regime shows within `hindsight_recent` predictions)."""
        cfg = self.config
        scale = 1.0
        if len(self.calibration) >= cfg.min_calibration:
            scale = self.calibration.coverage_scale(
                0.95, 1.0, cfg.max_scale, recent=cfg.calibration_recent
            )
        if len(self.hindsight) >= cfg.min_calibration:
            hindsight = self.hindsight.coverage_scale(
                0.95, cfg.min_scale, cfg.max_scale, recent=cfg.hindsight_recent
            )
            scale = min(scale, hindsight)
        return scale

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
        gap = self._mean_recent_gap_ns()
        if gap is None:
            return 0.0
        at = last_ns + gap
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
        if len(self.regression.samples) >= ROBUST_SAMPLES:
            members.append(self._robust(now_ns, base))
        return members

    def _robust(self, now_ns: int, base: ClockModel) -> Member:
        """The median of the newest samples, each carried to `now_ns` at the regression's
        frequency: where the noise has a heavy or one-sided tail (Internet paths, a queue that
        fills now and then), a median is not pulled by the spikes that pull a least-squares
        line. It promises the regression's σ; its errors decide whether it counts."""
        # the regression's samples: in time order, and restarted with it after a step
        recent = self.regression.samples[-ROBUST_SAMPLES:]
        carried = [s.offset_ns + base.drift_ppb * (now_ns - s.local_ns) / NS_PER_S for s in recent]
        return Member("robust", float(np.median(carried)), base.sigma_ns**2, base.drift_ppb)

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
        regression, paired over the same samples (its mean absolute error lower by more than
        twice the standard error of the difference; squared errors let a few spikes decide
        where the noise has a heavy tail): one that does not, earns no weight at all. At a
        sample the two may look alike under its noise while between samples the regression,
        with its own window, is the safer one; weighting every close call cost up to 10 % RMS
        in the scenarios with nothing to learn."""
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
        # weighted mean of their σs is the σ of fully correlated errors; each is widened by
        # its excess ratio but never narrowed by it.
        sigma = sum(
            weights[m.name] / total * math.sqrt(m.variance_ns2 * max(1.0, self._ratio(m.name)))
            for m in members
        )
        variance = sigma * sigma
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
