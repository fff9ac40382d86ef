"""The long-horizon member: a long line plus a zero-shot forecast of its residual."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pytest

from chronotick.estimation.estimator import EstimatorConfig, RegressionEstimator
from chronotick.estimation.forecast.foundation import ResidualForecast
from chronotick.estimation.forecast.fused import FusedPredictor
from chronotick.estimation.forecast.long_horizon import HORIZON_GAPS, fit_long_horizon
from chronotick.estimation.samples import Sample

S = 1_000_000_000
EPOCH = 1_760_000_000 * S
PERIOD_S = 1280.0
AMPLITUDE_NS = 200_000.0


def truth(t_s: float) -> float:
    """A clock 3 ppm slow with a 200 µs swing every 21 min 20 s."""
    return 3_000.0 * t_s + AMPLITUDE_NS * np.sin(2 * np.pi * t_s / PERIOD_S)


class Oracle:
    """Forecasts the residual of the long line as it will really be (what a perfect model
    would say), so the member's arithmetic is tested apart from any model's skill."""

    name = "oracle"

    def __init__(self) -> None:
        self.calls = 0

    def forecast(
        self, t_s: np.ndarray, residual_ns: np.ndarray, horizons_s: Sequence[float]
    ) -> ResidualForecast:
        self.calls += 1
        # the residual is the sine less the line's share of it; near enough for a long line
        now = self.now_s
        means = tuple(
            float(residual_ns[-1] + AMPLITUDE_NS * (np.sin(2 * np.pi * (now + h) / PERIOD_S)
                                                   - np.sin(2 * np.pi * now / PERIOD_S)))
            for h in horizons_s
        )  # fmt: skip
        return ResidualForecast(tuple(horizons_s), means, tuple(1000.0 for _ in horizons_s))

    now_s = 0.0


class Broken:
    name = "broken"

    def forecast(self, t_s: np.ndarray, residual_ns: np.ndarray, horizons_s: Sequence[float]):  # type: ignore[no-untyped-def]
        raise RuntimeError("weights corrupted")


def samples_until(end_s: int, step_s: int = 64) -> list[Sample]:
    return [Sample(EPOCH + t * S, round(truth(t)), 200_000, "a") for t in range(0, end_s, step_s)]


def test_too_few_samples_give_no_forecast() -> None:
    oracle = Oracle()
    assert fit_long_horizon(oracle, samples_until(640), [1.0] * 10) is None
    assert oracle.calls == 0


def test_the_member_is_the_line_plus_the_forecast_residual() -> None:
    oracle = Oracle()
    samples = samples_until(3 * 3600)
    oracle.now_s = (samples[-1].local_ns - EPOCH) / S
    fit = fit_long_horizon(oracle, samples, [1.0] * len(samples))
    assert fit is not None
    assert fit.forecast.horizons_s == pytest.approx([g * 64 for g in HORIZON_GAPS])
    for h in (32, 64, 128, 256):
        t = oracle.now_s + h
        offset, variance, drift = fit.predict(EPOCH + int(t * S))
        # within the line's misfit of the sine (a few per cent of its swing)
        assert offset == pytest.approx(truth(t), abs=0.1 * AMPLITUDE_NS)
        assert variance == pytest.approx(1000.0**2)
        assert np.isfinite(drift)


def test_a_failing_model_is_logged_once_and_left_out(caplog: pytest.LogCaptureFixture) -> None:
    fused = FusedPredictor(RegressionEstimator(EstimatorConfig()), zero_shot=Broken())
    with caplog.at_level(logging.WARNING):
        for sample in samples_until(2 * 3600):
            fused.add(sample)
    failures = [r for r in caplog.records if "weights corrupted" in r.getMessage()]
    assert len(failures) == 1
    assert fused.long_horizon is None
    model = fused.estimate(EPOCH + 2 * 3600 * S, 10**15)
    assert model.status.gives_interval


def test_fracast_earns_weight_on_a_periodic_residual() -> None:
    from chronotick.estimation.forecast.long_horizon import shared_model

    model = shared_model("fracast")
    assert model is not None, "fracast is in the dev extra: it must load"
    fused = FusedPredictor(RegressionEstimator(EstimatorConfig()), zero_shot=model)
    for sample in samples_until(4 * 3600):
        fused.add(sample)
    assert fused.long_horizon is not None
    assert len(fused.scores["long_horizon"]) >= 8
    weights = fused.weights(EPOCH + 4 * 3600 * S)
    assert "long_horizon" in weights


def test_samples_out_of_time_order_or_at_one_instant_are_put_in_order() -> None:
    """Polls of several servers finish in any order and may share an instant; the model is
    given strictly increasing times all the same."""
    seen: list[np.ndarray] = []

    class Recording:
        name = "recording"

        def forecast(
            self, t_s: np.ndarray, residual_ns: np.ndarray, horizons_s: Sequence[float]
        ) -> ResidualForecast:
            seen.append(np.asarray(t_s))
            flat = tuple(0.0 for _ in horizons_s)
            return ResidualForecast(tuple(horizons_s), flat, tuple(1000.0 for _ in horizons_s))

    samples = []
    for i in range(80):
        t = EPOCH + i * 64 * S
        samples.append(Sample(t, 1_000 * i, 200_000, "a"))
        samples.append(Sample(t, 1_000 * i + 50, 200_000, "b"))  # the same instant
    samples[10], samples[11], samples[12] = samples[12], samples[10], samples[11]
    fit = fit_long_horizon(Recording(), samples, [1.0] * len(samples))
    assert fit is not None
    assert np.all(np.diff(seen[0]) > 0)
