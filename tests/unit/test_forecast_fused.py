"""The response to temperature, its fusion with the regression, and training off the hot path.

The clocks here come from the simulator's oscillator (quartz with a parabolic temperature
response), sampled every 64 s with Gaussian noise, and scored against the truth between
samples, as the simulator scores whole scenarios.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading

import numpy as np
import pytest

from chronotick.estimation.estimator import EstimatorConfig, RegressionEstimator
from chronotick.estimation.forecast.covariates import CovariateHistory, CovariateReading
from chronotick.estimation.forecast.fused import FusedPredictor, FusionConfig, Trained
from chronotick.estimation.forecast.response import Grid, ResponseConfig, ResponseTrainer
from chronotick.estimation.forecast.training import ThreadTraining
from chronotick.estimation.predictor import make_predictor
from chronotick.estimation.samples import Sample
from chronotick.sim.oscillator import Oscillator
from chronotick.sim.scenario import ClockSpec, TemperatureSpec

S = 1_000_000_000
EPOCH = 1_760_000_000 * S
K_PPM_PER_C2 = -0.035
TURNOVER_C = 25.0


@dataclasses.dataclass
class Stream:
    """A simulated host: samples every `poll_s` (even), a temperature reading every 10 s."""

    oscillator: Oscillator
    poll_s: int
    noise_ns: float
    seed: int = 1
    sensor_offset_c: float = 0.0

    def local(self, t_s: float) -> int:
        return EPOCH + self.oscillator.local_ns(int(t_s * S))

    def true_offset(self, t_s: float) -> float:
        return -self.oscillator.raw_error_ns(int(t_s * S))

    def feed(
        self,
        predictors: list,
        start_s: int,
        end_s: int,
        temperature: bool = True,
        score_from_s: int | None = None,
    ) -> list[np.ndarray]:
        """Readings and samples from `start_s` to `end_s`; from `score_from_s` on, each
        predictor's error every 10 s between samples (as the simulator scores)."""
        rng = np.random.default_rng([self.seed, start_s])
        errors: list[list[float]] = [[] for _ in predictors]
        for t in range(start_s, end_s, 2):
            if temperature and t % 10 == 0:
                reading = CovariateReading(
                    self.local(t),
                    temperature_c=self.oscillator.temperature_at_c(t * S) + self.sensor_offset_c,
                )
                for p in predictors:
                    if isinstance(p, FusedPredictor):
                        p.observe_covariates(reading)
            if t % self.poll_s == 0:
                offset = round(self.true_offset(t) + rng.normal(0.0, self.noise_ns))
                sample = Sample(self.local(t), offset, 200_000, "a", precision_ns=100)
                for p in predictors:
                    p.add(sample)
            elif score_from_s is not None and t >= score_from_s and t % 10 == 0:
                for p, out in zip(predictors, errors, strict=True):
                    model = p.estimate(self.local(t), 10**15)
                    out.append(model.offset_at(self.local(t)) - self.true_offset(t))
        return [np.array(e) for e in errors]


def thermal_stream(hours: float = 6.0, noise_ns: float = 5_000.0, poll_s: int = 64) -> Stream:
    clock = ClockSpec(
        frequency_ppm=12.0,
        temperature_coefficient_ppm_per_c2=K_PPM_PER_C2,
        turnover_c=TURNOVER_C,
    )
    temperature = TemperatureSpec(profile="sine", mean_c=35.0, amplitude_c=5.0, period_s=1200.0)
    rng = np.random.default_rng(7)
    return Stream(Oscillator(clock, temperature, hours * 3600, rng), poll_s, noise_ns)


def steady_stream(hours: float = 3.0) -> Stream:
    clock = ClockSpec(frequency_ppm=-20.0, wander_ppm_per_sqrt_s=0.0005)
    rng = np.random.default_rng(3)
    return Stream(Oscillator(clock, TemperatureSpec(), hours * 3600, rng), 64, 10_000.0)


def rms(values: np.ndarray) -> float:
    return float(np.sqrt(np.mean(values**2)))


# -- the grid's integral ---------------------------------------------------------------------


def test_integral_weights_integrate_a_step_function_exactly() -> None:
    grid = Grid(np.array([-100.0, -40.0, 0.0, 30.0]), np.array([60.0, 40.0, 30.0, np.inf]),
                np.zeros((4, 2)))  # fmt: skip
    f = np.array([1.0, 2.0, 3.0, 4.0])
    weights = grid.integral_weights(np.array([-130.0, -50.0, 0.0, 10.0, 50.0]))
    # backwards from 0: negative spans; the first cell's value also holds before it
    assert weights @ f == pytest.approx([-(40 * 2 + 90 * 1), -(40 * 2 + 10 * 1), 0.0, 30.0,
                                          30 * 3 + 20 * 4])  # fmt: skip


# -- what the response learns ----------------------------------------------------------------


def test_the_response_learns_the_crystals_parabola() -> None:
    stream = thermal_stream(hours=4.0)
    history = CovariateHistory()
    samples: list[Sample] = []
    rng = np.random.default_rng(5)
    for t in range(0, 4 * 3600, 10):
        history.add(CovariateReading(stream.local(t), stream.oscillator.temperature_at_c(t * S)))
        if t % 64 == 0:
            offset = round(stream.true_offset(t) + rng.normal(0, 5_000))
            samples.append(Sample(stream.local(t), offset, 200_000, "a"))
    fit = ResponseTrainer().fit(samples, [1.0] * len(samples), history)
    assert fit is not None and fit.explains
    learnt = fit.temperature_response()
    assert learnt is not None
    k, turnover = learnt
    assert k == pytest.approx(K_PPM_PER_C2, rel=0.1)
    assert turnover == pytest.approx(TURNOVER_C, abs=1.5)


def test_without_covariates_the_response_explains_nothing() -> None:
    samples = [Sample(EPOCH + i * 64 * S, 1000 * i, 200_000, "a") for i in range(40)]
    fit = ResponseTrainer().fit(samples, [1.0] * 40, CovariateHistory())
    assert fit is not None and not fit.explains
    assert fit.conditions_ns(EPOCH + 10_000 * S, CovariateHistory()) == (0.0, 0.0)


def test_the_torch_network_trains_without_spoiling_the_fit() -> None:
    stream = thermal_stream(hours=3.0)
    history = CovariateHistory()
    samples: list[Sample] = []
    for t in range(0, 3 * 3600, 10):
        history.add(CovariateReading(stream.local(t), stream.oscillator.temperature_at_c(t * S)))
        if t % 64 == 0:
            samples.append(Sample(stream.local(t), round(stream.true_offset(t)), 200_000, "a"))
    trainer = ResponseTrainer(ResponseConfig(hidden_units=8, train_steps=20))
    first = trainer.fit(samples, [1.0] * len(samples), history)
    second = trainer.fit(samples, [1.0] * len(samples), history)
    assert first is not None and second is not None and second.mlp is not None
    polynomial = ResponseTrainer(ResponseConfig(hidden_units=0)).fit(
        samples, [1.0] * len(samples), history
    )
    assert polynomial is not None
    # noise-free samples: both fit to a small fraction of the 600 µs temperature swing
    assert second.rms_ns < 20_000
    assert second.rms_ns <= 2 * polynomial.rms_ns + 1_000


# -- fusion ----------------------------------------------------------------------------------


def test_fused_follows_the_temperature_the_regression_cannot() -> None:
    stream = thermal_stream(hours=5.0)
    config = EstimatorConfig()
    regression = RegressionEstimator(config)
    fused = FusedPredictor(RegressionEstimator(config))
    regression_errors, fused_errors = stream.feed(
        [regression, fused], 0, 3 * 3600, score_from_s=2 * 3600
    )
    assert rms(fused_errors) < 0.5 * rms(regression_errors), (rms(fused_errors),
                                                              rms(regression_errors))  # fmt: skip
    assert fused.weights(stream.local(3 * 3600))["response"] > 0.5


def test_without_structure_fused_is_the_regression() -> None:
    stream = steady_stream()
    config = EstimatorConfig()
    regression = RegressionEstimator(config)
    fused = FusedPredictor(RegressionEstimator(config))
    stream.feed([regression, fused], 0, 2 * 3600, temperature=False)
    for t in range(2 * 3600 - 300, 2 * 3600, 30):
        mine, theirs = (
            fused.estimate(stream.local(t), 10**15),
            regression.estimate(stream.local(t), 10**15),
        )
        assert mine.offset_ns == theirs.offset_ns
        assert mine.bound_ns == theirs.bound_ns
    weights = fused.weights(stream.local(2 * 3600))
    assert {name: w for name, w in weights.items() if w} == {"regression": 1.0}, weights


def test_a_forecaster_that_stops_predicting_fades_out_and_the_bound_holds() -> None:
    stream = thermal_stream(hours=6.0)
    fused = FusedPredictor(RegressionEstimator(EstimatorConfig()))
    stream.feed([fused], 0, 3 * 3600)
    assert fused.weights(stream.local(3 * 3600))["response"] > 0.5
    # the sensor goes wrong: it reads 15 °C too high from now on, the clock does not care
    stream.sensor_offset_c = 15.0
    bounds: list[float] = []

    class Bounds:
        """Records the bound next to each error the stream scores."""

        def add(self, sample: Sample) -> None:
            pass

        def estimate(self, now_ns: int, fresh_for_ns: int):  # type: ignore[no-untyped-def]
            model = fused.estimate(now_ns, fresh_for_ns)
            bounds.append(model.bound_at(now_ns))
            return model

    errors, _same = stream.feed([Bounds(), fused], 3 * 3600, 4 * 3600, score_from_s=3 * 3600)
    assert len(errors) == len(bounds) > 300
    assert (np.abs(errors) <= np.array(bounds)).all()
    weights = fused.weights(stream.local(4 * 3600))
    assert weights["response"] < 0.5, weights


def test_ml_uses_the_forecaster_alone_once_it_earned_it() -> None:
    stream = thermal_stream(hours=4.0)
    ml = make_predictor("ml", EstimatorConfig())
    assert isinstance(ml, FusedPredictor)
    stream.feed([ml], 0, 3 * 3600)
    weights = ml.weights(stream.local(3 * 3600))
    assert weights["regression"] == 0.0
    assert weights["response"] > 0.5, weights


def test_reset_forgets_the_forecasters_and_drops_results_trained_before_it() -> None:
    held: list[tuple] = []

    class Held:
        def submit(self, job, done, key="") -> None:  # type: ignore[no-untyped-def]
            held.append((job, done))

        def poll(self) -> None:
            pass

        def close(self) -> None:
            pass

    stream = thermal_stream(hours=2.0)
    fused = FusedPredictor(RegressionEstimator(EstimatorConfig()), training=Held())
    stream.feed([fused], 0, 3600)
    assert held and fused.fit is None
    job, done = held[-1]
    result = job()
    assert result is not None
    fused.reset()
    done(result)  # trained on the samples before the reset: dropped
    assert fused.fit is None
    assert not fused.samples


def test_bad_fusion_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        FusionConfig(min_scores=1)
    with pytest.raises(ValueError):
        FusionConfig(min_scale=2.0)
    with pytest.raises(ValueError):
        FusionConfig(calibration_recent=128)
    with pytest.raises(ValueError):
        FusionConfig(hindsight_recent=512)
    with pytest.raises(ValueError):
        FusionConfig(retrain_every=0)
    with pytest.raises(ValueError, match="unknown predictor"):
        make_predictor("oracle", EstimatorConfig())


# -- training off the hot path ---------------------------------------------------------------


def test_a_slow_training_job_does_not_hold_up_the_estimate() -> None:
    training: ThreadTraining[Trained] = ThreadTraining()
    release = threading.Event()
    started = threading.Event()
    trained = FusedPredictor(RegressionEstimator(EstimatorConfig()))  # inline, for a result
    stream = thermal_stream(hours=2.0)
    stream.feed([trained], 0, 3600)
    assert trained.fit is not None
    fused = FusedPredictor(RegressionEstimator(EstimatorConfig()), training=training)
    stream.feed([fused], 0, 600)
    results: list[Trained] = []

    def slow() -> Trained:
        started.set()
        release.wait(10)
        return None

    try:
        training.submit(slow, results.append)
        assert started.wait(5)
        # the worker is busy: the estimate is still served, from the regression
        model = fused.estimate(stream.local(600), 10**15)
        assert model.status.gives_interval
        assert math.isfinite(model.sigma_ns)
        release.set()
        for _ in range(500):
            training.poll()
            if results:
                break
            threading.Event().wait(0.01)
        assert results == [None]
    finally:
        release.set()
        training.close()


def test_a_failing_training_job_is_logged_once_and_the_regression_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    training: ThreadTraining[Trained] = ThreadTraining()

    def broken() -> Trained:
        raise RuntimeError("model exploded")

    try:
        with caplog.at_level(logging.WARNING):
            for _ in range(3):
                training.submit(broken, lambda _r: None)
                for _ in range(200):
                    if len(caplog.records) and not training._pending:
                        break
                    threading.Event().wait(0.01)
        training.poll()
        messages = [r.getMessage() for r in caplog.records if "model exploded" in r.getMessage()]
        assert len(messages) == 1
    finally:
        training.close()


def _noisy_line(noise: str, seed: int = 4) -> tuple[FusedPredictor, list[float], list[float]]:
    """A clock 20 ppm fast polled every 16 s, with Gaussian noise or with a one-sided queue
    (most exchanges clean, one in four delayed by up to 2 ms one way); the fused predictor's
    and the regression's absolute errors at the samples they had not yet seen."""
    rng = np.random.default_rng(seed)
    fused = FusedPredictor(RegressionEstimator(EstimatorConfig()))
    fused_errors, regression_errors = [], []
    for i in range(1_200):
        t_s = i * 16
        true_offset = 20_000.0 * t_s
        if noise == "gaussian":
            error = rng.normal(0, 30_000)
        else:
            error = -float(rng.uniform(0, 2_000_000)) / 2 if rng.random() < 0.25 else 0.0
            error += rng.normal(0, 5_000)
        local = EPOCH + t_s * S
        if i > 200:
            model = fused.estimate(local, 10**15)
            base = fused.regression.estimate(local, 10**15)
            fused_errors.append(abs(model.offset_at(local) - true_offset))
            regression_errors.append(abs(base.offset_at(local) - true_offset))
        fused.add(Sample(local, round(true_offset + error), 200_000, "a", precision_ns=100))
    return fused, fused_errors, regression_errors


def test_the_robust_member_counts_where_the_noise_has_a_one_sided_tail() -> None:
    fused, mine, regression = _noisy_line("queue")
    assert fused.weights(EPOCH + 1_200 * 16 * S)["robust"] > 0.2
    assert np.mean(mine) < 0.9 * np.mean(regression)


def test_the_robust_member_stays_out_where_the_noise_is_gaussian() -> None:
    fused, mine, regression = _noisy_line("gaussian")
    assert fused.weights(EPOCH + 1_200 * 16 * S).get("robust", 0.0) == 0.0
    assert np.mean(mine) <= 1.02 * np.mean(regression)


def test_an_interval_ending_in_a_rejected_sample_is_still_scored() -> None:
    """The calibration scores what was published between samples; a reader read it whether
    or not the sample that ended the interval turned out to be an outlier, so the instants
    of that interval wait for their hindsight like any others."""
    stream = steady_stream()
    fused = FusedPredictor(RegressionEstimator(EstimatorConfig()))
    stream.feed([fused], 0, 3600, temperature=False)
    pending = len(fused._pending)
    t = 3600 + stream.poll_s
    outlier = Sample(stream.local(t), round(stream.true_offset(t)) + 50_000_000, 200_000, "a")
    verdict = fused.add(outlier)
    assert not verdict.accepted, verdict
    assert len(fused._pending) > pending, "the rejected sample's interval was not kept"
    assert all(stream.local(3600) < at <= outlier.local_ns for at, _o, _v in
               list(fused._pending)[pending:])  # fmt: skip
