"""Every built-in scenario, a whole simulated day each: the bound holds and σ is honest; the
forecasters (`fused`) beat the regression where the temperature moves the clock, do not
lose to it anywhere else, and their ±2σ holds 93-97 % everywhere."""

from __future__ import annotations

from typing import Any

import pytest

from chronotick.sim import runner, scenario

pytestmark = pytest.mark.slow


TEMPERATURE_SCENARIOS = ("temperature_cycles", "daily_temperature")


@pytest.fixture(scope="module")
def runs() -> dict[str, dict[str, dict[str, Any]]]:
    """Per scenario, the figures of the regression and of `fused`, from one run each (the
    regression drives the node in both, so its figures are the same as when run alone)."""
    out = {}
    for name in scenario.builtin_names():
        result = runner.run(scenario.load(name), ["regression", "fused"])
        out[name] = {row["predictor"]: row for row in result.figures}
    return out


@pytest.fixture(scope="module")
def figures(runs: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    return {name: rows["regression"] for name, rows in runs.items()}


def test_zero_bound_violations_in_every_scenario(figures: dict[str, dict[str, Any]]) -> None:
    for name, row in figures.items():
        assert row["bound_violations"] == 0, (name, row)
        assert row["trusted_instants"] > 0.9 * row["samples"], (name, row)


def test_two_sigma_coverage_is_honest(figures: dict[str, dict[str, Any]]) -> None:
    held = {name: row["coverage_2sigma"] for name, row in figures.items()}
    assert len(held) >= 13
    outside = {name: c for name, c in held.items() if not 0.90 <= c <= 0.99}
    assert not outside, outside


def test_fused_two_sigma_coverage_is_within_the_target_band(
    runs: dict[str, dict[str, dict[str, Any]]],
) -> None:
    """±2σ of `fused` holds 93-97 % of the true errors in every scenario: never too narrow
    (the regression falls to 0.92), and not so wide that the error bar says little (the
    regression reaches 0.99)."""
    held = {name: rows["fused"]["coverage_2sigma"] for name, rows in runs.items()}
    assert len(held) >= 13
    outside = {name: c for name, c in held.items() if not 0.93 <= c <= 0.97}
    assert not outside, outside


def test_fused_never_breaks_the_bound(runs: dict[str, dict[str, dict[str, Any]]]) -> None:
    for name, rows in runs.items():
        assert rows["fused"]["bound_violations"] == 0, (name, rows["fused"])


def test_fused_beats_the_regression_where_the_temperature_moves_the_clock(
    runs: dict[str, dict[str, dict[str, Any]]],
) -> None:
    for name in TEMPERATURE_SCENARIOS:
        ratio = runs[name]["fused"]["rms_error_us"] / runs[name]["regression"]["rms_error_us"]
        assert ratio <= 0.7, (name, ratio)


def test_fused_does_not_lose_to_the_regression_anywhere(
    runs: dict[str, dict[str, dict[str, Any]]],
) -> None:
    ratios = {
        name: rows["fused"]["rms_error_us"] / rows["regression"]["rms_error_us"]
        for name, rows in runs.items()
    }
    assert {name: r for name, r in ratios.items() if r > 1.05} == {}, ratios
