"""Weighted line fit and the runs test the estimator relies on."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chronotick.estimation.regression import fit_line, runs_count, runs_look_random


def arr(values: list[float]) -> np.ndarray:
    return np.array(values, dtype=np.float64)


@given(
    intercept=st.floats(-1e8, 1e8),
    slope=st.floats(-1e6, 1e6),
    n=st.integers(2, 64),
    spacing=st.floats(1.0, 1024.0),
    variances=st.lists(st.floats(1.0, 1e10), min_size=64, max_size=64),
)
def test_exact_line_is_recovered_from_noiseless_data(
    intercept: float, slope: float, n: int, spacing: float, variances: list[float]
) -> None:
    # the newest sample at x = 0, as the estimator places them
    x = -spacing * np.arange(n, dtype=np.float64)[::-1]
    y = intercept + slope * x
    fit = fit_line(x, y, arr(variances[:n]))
    scale = abs(intercept) + abs(slope) * spacing * n + 1.0
    assert fit.n == n
    assert fit.intercept_ns == pytest.approx(intercept, abs=1e-6 * scale)
    assert fit.slope_ppb == pytest.approx(slope, abs=1e-6 * scale / (spacing * n))
    assert np.all(np.abs(fit.residuals_ns) <= 1e-6 * scale)
    assert fit.predict_ns(100.0) == pytest.approx(intercept + slope * 100.0, abs=1e-5 * scale)
    assert math.isfinite(fit.var_slope_ppb2)


def test_a_high_variance_outlier_barely_moves_the_fit() -> None:
    x = np.arange(-20.0, 1.0) * 16.0
    y = 1_000.0 + 50.0 * x
    variances = np.full(len(x), 1e8)
    y_spiked = y.copy()
    y_spiked[-1] += 1e6  # 1 ms off at the newest sample
    trusted = fit_line(x, y_spiked, variances)
    variances_down = variances.copy()
    variances_down[-1] = 1e14  # the same point, known to be a million times noisier
    weighted = fit_line(x, y_spiked, variances_down)
    assert abs(trusted.intercept_ns - 1_000.0) > 1e5  # an equally weighted spike drags the line
    assert abs(weighted.intercept_ns - 1_000.0) < 1e3  # the down-weighted one does not
    assert abs(weighted.slope_ppb - 50.0) < 5.0
    assert abs(trusted.slope_ppb - 50.0) > 500.0


def test_one_sample_gives_an_unknown_slope() -> None:
    fit = fit_line(arr([0.0]), arr([1234.0]), arr([100.0]))
    assert fit.n == 1
    assert fit.intercept_ns == 1234.0
    assert fit.slope_ppb == 0.0
    assert math.isinf(fit.var_slope_ppb2)
    assert math.isinf(fit.var_at_ns2(10.0))
    assert fit.var_intercept_ns2 == pytest.approx(100.0)


def test_samples_at_one_instant_give_an_unknown_slope() -> None:
    fit = fit_line(arr([5.0, 5.0, 5.0]), arr([1.0, 2.0, 3.0]), arr([1.0, 1.0, 1.0]))
    assert math.isinf(fit.var_slope_ppb2)
    assert fit.predict_ns(5.0) == pytest.approx(2.0)


def test_two_samples_give_the_exact_line_with_the_given_noise_scale() -> None:
    fit = fit_line(arr([-16.0, 0.0]), arr([0.0, 1_600.0]), arr([400.0, 400.0]))
    assert fit.slope_ppb == pytest.approx(100.0)
    assert fit.intercept_ns == pytest.approx(1_600.0)
    assert fit.noise_scale2 == 1.0
    # var(slope) = (σ1² + σ2²)/Δx² for two points
    assert fit.var_slope_ppb2 == pytest.approx(800.0 / 256.0)


def test_no_samples_is_an_error() -> None:
    with pytest.raises(ValueError):
        fit_line(arr([]), arr([]), arr([]))


def test_reported_variances_match_the_scatter_of_the_estimates() -> None:
    """The fit's own variances are honest: z-scores of slope and intercept have unit spread."""
    rng = np.random.default_rng(42)
    x = np.arange(-29.0, 1.0) * 16.0
    sigma = rng.uniform(10.0, 100.0, size=len(x))
    z_slope, z_intercept = [], []
    for _ in range(2_000):
        y = 500.0 - 3.0 * x + rng.normal(0.0, sigma)
        fit = fit_line(x, y, sigma**2)
        z_slope.append((fit.slope_ppb + 3.0) / math.sqrt(fit.var_slope_ppb2))
        z_intercept.append((fit.intercept_ns - 500.0) / math.sqrt(fit.var_intercept_ns2))
    # Student's t with 28 degrees of freedom has a spread of 1.04
    assert 0.95 < float(np.std(z_slope)) < 1.12
    assert 0.95 < float(np.std(z_intercept)) < 1.12
    assert abs(float(np.mean(z_slope))) < 0.1


def test_var_at_is_smallest_near_the_weighted_centre() -> None:
    x = np.arange(-10.0, 1.0)
    fit = fit_line(x, 2.0 * x + np.sin(x), np.ones(len(x)))
    centre = fit.var_at_ns2(-5.0)
    assert centre < fit.var_at_ns2(0.0) < fit.var_at_ns2(60.0)
    assert centre < fit.var_at_ns2(-10.0)


# --- runs test -----------------------------------------------------------------------------------


def test_residuals_of_a_line_fitted_to_a_parabola_are_not_random() -> None:
    x = np.arange(-31.0, 1.0)
    fit = fit_line(x, 0.5 * x * x, np.ones(len(x)))
    assert runs_count(fit.residuals_ns) == 3  # + − + : the line cuts the parabola twice
    assert not runs_look_random(fit.residuals_ns)


def test_alternating_residuals_look_random() -> None:
    residuals = arr([(-1.0) ** k for k in range(32)])
    assert runs_count(residuals) == 32
    assert runs_look_random(residuals)


def test_residuals_of_a_noisy_line_look_random() -> None:
    rng = np.random.default_rng(7)
    x = np.arange(-63.0, 1.0)
    fit = fit_line(x, 3.0 * x + rng.normal(0.0, 10.0, size=len(x)), np.ones(len(x)))
    assert runs_look_random(fit.residuals_ns)


def test_runs_test_needs_eight_residuals_and_rejects_one_sign() -> None:
    assert runs_look_random(arr([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]))  # too few to judge
    assert not runs_look_random(arr([1.0] * 8))
    assert not runs_look_random(arr([-1.0] * 20))
    assert not runs_look_random(arr([1.0] * 10 + [-1.0] * 10))  # two runs of ten
