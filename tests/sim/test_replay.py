"""Replay of the real traces the earlier prototype recorded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from chronotick.sim import replay

ROOT = Path(__file__).resolve().parents[2]
TRACES = sorted((ROOT.parent / "shared" / "traces").glob("*.csv"))


def test_the_traces_are_there() -> None:
    assert len(TRACES) == 4, f"expected the four traces beside the repo, found {TRACES}"


@pytest.mark.parametrize("trace", TRACES, ids=lambda p: p.stem)
def test_regression_beats_the_prototype_on_its_own_traces(trace: Path) -> None:
    figures, _series = replay.replay(trace, every=2)
    mae = {f["predictor"]: f["mean_abs_error_us"] for f in figures}
    assert mae["regression"] < mae["prototype"]
    assert mae["regression"] < mae["uncorrected"] * 1.1
    regression = next(f for f in figures if f["predictor"] == "regression")
    assert regression["bound_violations"] == 0
    assert regression["samples"] >= 50


def test_replay_scores_only_rows_it_was_not_given() -> None:
    rows = replay.read_trace(TRACES[0])
    figures, series = replay.replay(TRACES[0], every=3, predictors=["hold_last"])
    assert len(series["hold_last"].t_s) == len(rows) - len(rows[::3])
    assert figures[0]["predictor"] == "hold_last"


def test_bad_traces_and_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(replay.TraceError, match="no trace at"):
        replay.read_trace(tmp_path / "missing.csv")
    odd = tmp_path / "odd.csv"
    odd.write_text("a,b\n1,2\n")
    with pytest.raises(replay.TraceError, match="unknown trace format"):
        replay.read_trace(odd)
    with pytest.raises(ValueError, match="at least 2"):
        replay.replay(TRACES[0], every=1)


def test_cli_replay_json() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "chronotick.sim.cli", "replay", str(TRACES[0]), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    names = [json.loads(line)["predictor"] for line in result.stdout.splitlines()]
    assert names == ["uncorrected", "hold_last", "two_point", "regression", "prototype"]
