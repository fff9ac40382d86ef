"""The simulator against its promises: determinism, chrony's limits, honest bounds."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from chronotick.sim import runner, scenario
from chronotick.sim.oscillator import Oscillator
from chronotick.sim.scenario import ClockSpec, TemperatureSpec

ROOT = Path(__file__).resolve().parents[2]


def short(name: str, hours: float = 2.0) -> scenario.Scenario:
    return dataclasses.replace(scenario.load(name), duration_s=hours * 3600)


def test_same_scenario_and_seed_give_identical_figures() -> None:
    first = runner.run(short("falseticker"))
    second = runner.run(short("falseticker"))
    assert first.figures == second.figures
    reseeded = runner.run(dataclasses.replace(short("falseticker"), seed=99))
    assert reseeded.figures != first.figures


def test_regression_meets_chronys_limits_on_the_default_case() -> None:
    """chrony's own simulation tests: synced within 210 s, then RMS ≤ 300 µs, max ≤ 1 ms."""
    result = runner.run(scenario.load("default"), ["regression"])
    figures = result.figures[0]
    assert figures["time_to_sync_s"] is not None and figures["time_to_sync_s"] <= 210
    assert figures["rms_error_us"] <= 300
    assert figures["max_abs_error_us"] <= 1000
    assert figures["bound_violations"] == 0
    assert figures["samples"] > 40_000  # a whole day scored every 2 s


def test_the_regression_beats_every_baseline_on_the_default_case() -> None:
    result = runner.run(short("default", 6))
    rms = {f["predictor"]: f["rms_error_us"] for f in result.figures}
    assert rms["regression"] < rms["two_point"] < rms["hold_last"] < rms["uncorrected"]


def test_a_falseticker_is_outvoted() -> None:
    result = runner.run(short("falseticker"), ["regression"])
    assert result.rejected.get("falseticker", 0) > 50
    assert result.figures[0]["max_abs_error_us"] < 1000  # the liar is 30 ms off


def test_the_bound_holds_through_a_ten_minute_outage_of_every_server() -> None:
    result = runner.run(scenario.load("outage"), ["regression"])
    figures = result.figures[0]
    assert figures["bound_violations"] == 0
    series = result.series["regression"]
    t = np.asarray(series.t_s)
    bound = np.asarray(series.bound_ns)
    during = (t > 20_000) & (t < 20_600)
    assert bound[during].max() > 2 * np.median(bound), "the bound must grow while unreachable"


def test_a_clock_step_restarts_the_model_and_it_recovers() -> None:
    result = runner.run(scenario.load("clock_step"), ["regression"])
    series = result.series["regression"]
    t = np.asarray(series.t_s)
    err = np.abs(np.asarray(series.error_ns))
    assert result.figures[0]["bound_violations"] == 0
    for step_at in (21_600, 64_800):
        after = (t > step_at + 120) & (t < step_at + 3_600)
        assert np.nanmax(err[after]) < 1e6, (
            f"not recovered within 2 minutes of the step at {step_at}"
        )


def test_oscillator_integrates_frequency_and_temperature() -> None:
    rng = np.random.default_rng(1)
    plain = Oscillator(ClockSpec(initial_offset_ms=5.0, frequency_ppm=100.0), TemperatureSpec(),
                       1000, rng)  # fmt: skip
    assert plain.local_ns(0) == 5_000_000
    assert plain.local_ns(1000 * 10**9) == 1000 * 10**9 + 5_000_000 + 100_000_000
    hot = Oscillator(
        ClockSpec(temperature_coefficient_ppm_per_c2=-0.04, turnover_c=25.0),
        TemperatureSpec(profile="constant", mean_c=35.0),
        100,
        rng,
    )
    assert hot.frequency_at_ppm(10**9) == pytest.approx(-4.0)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chronotick.sim.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


def test_cli_json_has_every_figure(tmp_path: Path) -> None:
    path = tmp_path / "tiny.toml"
    path.write_text(
        'name = "tiny"\nduration_s = 1800\n[clock]\nfrequency_ppm = 20.0\n[[servers]]\nname = "a"\n'
    )
    result = run_cli("run", str(path), "--json")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["predictor"] for r in rows] == ["uncorrected", "hold_last", "two_point", "regression"]
    keys = {"scenario", "predictor", "samples", "mean_abs_error_us", "rms_error_us",
            "p99_abs_error_us", "max_abs_error_us", "coverage_1sigma", "coverage_2sigma",
            "bound_violations", "median_bound_us", "time_to_sync_s"}  # fmt: skip
    assert all(keys <= set(r) for r in rows)
    assert rows[0]["coverage_2sigma"] is None and rows[3]["coverage_2sigma"] is not None


def test_cli_table_list_plot_and_errors(tmp_path: Path) -> None:
    listing = run_cli("list")
    assert listing.returncode == 0 and "default" in listing.stdout
    png = tmp_path / "plot.png"
    table = run_cli("run", "default", "--predictor", "regression", "--plot", str(png))
    assert table.returncode == 0 and "regression" in table.stdout and "±2σ" in table.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    missing = run_cli("run", "no-such-scenario")
    assert missing.returncode == 2 and "neither a built-in scenario" in missing.stderr
    unknown = run_cli("run", "default", "--predictor", "oracle")
    assert unknown.returncode == 2 and "unknown predictor 'oracle'" in unknown.stderr
