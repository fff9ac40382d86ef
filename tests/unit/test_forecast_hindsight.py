"""Hindsight: the offset at a past instant from the samples on both sides of it, and the
calibration of the fused σ that it makes possible where the noise dwarfs the model's error."""

from __future__ import annotations

import numpy as np
import pytest

from chronotick.estimation.estimator import EstimatorConfig, RegressionEstimator
from chronotick.estimation.forecast.fused import FusedPredictor
from chronotick.estimation.forecast.hindsight import HALF_WIDTH, hindsight_at
from chronotick.estimation.samples import Sample

S = 1_000_000_000
EPOCH = 1_760_000_000 * S
N = 2 * HALF_WIDTH + 1


def samples_of(offsets_ns: np.ndarray, poll_s: int = 64) -> list[Sample]:
    return [
        Sample(EPOCH + i * poll_s * S, round(float(y)), 200_000, "a", precision_ns=100)
        for i, y in enumerate(offsets_ns)
    ]


def test_its_variance_is_honest_where_the_offset_is_a_line() -> None:
    """Over many noisy windows, (hindsight − truth)² / variance averages about 1, and the
    variance is far below the noise's (a two-sided fit of 33 samples)."""
    rng = np.random.default_rng(1)
    noise_ns = 50_000.0
    z2, ratios = [], []
    for _ in range(400):
        slope_ns_per_s = rng.normal(0, 1_000)
        truth = 3_000 + slope_ns_per_s * np.arange(N) * 64
        samples = samples_of(truth + rng.normal(0, noise_ns, N))
        at = samples[HALF_WIDTH].local_ns + 20 * S  # between two samples
        true_at = 3_000 + slope_ns_per_s * (HALF_WIDTH * 64 + 20)
        h = hindsight_at(samples, [1.0] * N, at)
        assert h is not None
        z2.append((h.offset_ns - true_at) ** 2 / h.variance_ns2)
        ratios.append(h.variance_ns2 / noise_ns**2)
    assert 0.8 < float(np.mean(z2)) < 1.25
    assert float(np.median(ratios)) < 0.05


def test_a_curving_offset_falls_back_to_a_parabola() -> None:
    """Where a line through ±16 samples would miss the curve by far more than the noise, the
    runs test sends it to a parabola, which follows it."""
    x = np.arange(N) - HALF_WIDTH
    truth = 400.0 * x**2  # 0.1 ms at the window's edges, against 2 µs of noise
    rng = np.random.default_rng(2)
    samples = samples_of(truth + rng.normal(0, 2_000, N))
    h = hindsight_at(samples, [1.0] * N, samples[HALF_WIDTH].local_ns)
    assert h is not None
    line_miss = float(np.mean(truth))  # a line's value at the centre of a symmetric parabola
    assert abs(h.offset_ns) < 3 * h.variance_ns2**0.5 + 1_000
    assert abs(h.offset_ns) < line_miss / 10


def test_what_the_conditions_explain_is_taken_out_and_put_back() -> None:
    x = np.arange(N) - HALF_WIDTH
    explained = 30_000.0 * np.sin(x / 2.0)  # what a learnt response says
    samples = samples_of(1_000.0 * x + explained)
    at = samples[HALF_WIDTH].local_ns
    h = hindsight_at(samples, [1.0] * N, at, list(explained), float(explained[HALF_WIDTH]))
    assert h is not None
    assert h.offset_ns == pytest.approx(explained[HALF_WIDTH], abs=1.0)


def test_it_needs_a_full_window() -> None:
    samples = samples_of(np.zeros(N - 1))
    assert hindsight_at(samples, [1.0] * (N - 1), samples[HALF_WIDTH].local_ns) is None


@pytest.mark.parametrize("sources", [1, 3])
def test_with_heavy_tailed_noise_fused_narrows_sigma_and_still_covers(sources: int) -> None:
    """Noise 50 times the model's error, with a heavy tail (Student's t, 3 degrees of
    freedom): the errors at samples alone could only keep σ where the regression put it;
    hindsight narrows it, and ±2σ still holds about 95 % of the true errors, early, half way
    and late in the poll interval alike (with one server, and with three polled together)."""
    rng = np.random.default_rng(3)
    regression = RegressionEstimator(EstimatorConfig())
    fused = FusedPredictor(RegressionEstimator(EstimatorConfig()))
    drift_ns_per_s = 20_000.0
    phases = (0.1, 0.5, 0.95)
    errors: dict[tuple[str, float], list[tuple[float, float]]] = {}
    for i in range(2_400 // sources):
        t_s = i * 16 * sources
        for k in range(sources):
            at_ns = EPOCH + t_s * S + k * 10_000_000  # the servers 10 ms apart
            true_offset = drift_ns_per_s * (at_ns - EPOCH) / S
            offset = true_offset + 200_000.0 * rng.standard_t(3) / 3**0.5
            sample = Sample(at_ns, round(offset), 200_000, "abc"[k], precision_ns=100)
            regression.add(sample)
            fused.add(sample)
        if i < 400 // sources:
            continue
        for phase in phases:
            at_s = t_s + phase * 16 * sources
            at = EPOCH + round(at_s * S)
            for name, predictor in (("regression", regression), ("fused", fused)):
                model = predictor.estimate(at, 10**15)
                error = model.offset_at(at) - drift_ns_per_s * at_s
                errors.setdefault((name, phase), []).append((error, model.sigma_ns))
    coverage = {
        key: float(np.mean([abs(e) <= 2 * s for e, s in pairs])) for key, pairs in errors.items()
    }
    assert fused.sigma_scale < 0.9
    for phase in phases:
        assert 0.90 <= coverage["fused", phase] <= 0.99, coverage
    fused_mean = float(np.mean([coverage["fused", p] for p in phases]))
    regression_mean = float(np.mean([coverage["regression", p] for p in phases]))
    assert 0.92 <= fused_mean <= 0.985, coverage
    assert fused_mean < regression_mean, coverage
