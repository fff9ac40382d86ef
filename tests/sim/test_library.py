"""Every built-in scenario, a whole simulated day each: the bound holds and σ is honest."""

from __future__ import annotations

from typing import Any

import pytest

from chronotick.sim import runner, scenario

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def figures() -> dict[str, dict[str, Any]]:
    out = {}
    for name in scenario.builtin_names():
        result = runner.run(scenario.load(name), ["regression"])
        out[name] = result.figures[0]
    return out


def test_zero_bound_violations_in_every_scenario(figures: dict[str, dict[str, Any]]) -> None:
    for name, row in figures.items():
        assert row["bound_violations"] == 0, (name, row)
        assert row["trusted_instants"] > 0.9 * row["samples"], (name, row)


def test_two_sigma_coverage_is_honest(figures: dict[str, dict[str, Any]]) -> None:
    held = {name: row["coverage_2sigma"] for name, row in figures.items()}
    assert len(held) >= 13
    outside = {name: c for name, c in held.items() if not 0.90 <= c <= 0.99}
    assert not outside, outside
