"""Scenario files: the documented keys load, and every mistake is refused by name."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chronotick.sim import scenario
from chronotick.sim.scenario import ScenarioError

REQUIRED = {
    "default",
    "large_frequency",
    "temperature_cycles",
    "heavy_jitter",
    "asymmetric",
    "packet_loss",
    "outage",
    "falseticker",
    "clock_step",
    "internet",
}

EXAMPLE = """
name = "example"
duration_s = 86400
seed = 1
poll_interval_s = 16
[clock]
initial_offset_ms = 100.0
frequency_ppm = 100.0
wander_ppm_per_sqrt_s = 0.0001
temperature_coefficient_ppm_per_c2 = 0.0
turnover_c = 25.0
[temperature]
profile = "sine"
mean_c = 30.0
amplitude_c = 5.0
period_s = 1200.0
[[servers]]
name = "a"
delay_ms = 0.1
jitter_ms = 0.1
asymmetry_ms = 0.0
loss = 0.0
error_ms = 0.0
outages = [[3600.0, 4200.0]]
"""


def test_the_library_covers_the_required_cases() -> None:
    assert set(scenario.builtin_names()) >= REQUIRED
    for name in scenario.builtin_names():
        loaded = scenario.load(name)
        assert loaded.name == name and loaded.description


def test_the_default_scenario_is_chronys_default_case() -> None:
    s = scenario.load("default")
    assert s.clock.frequency_ppm == 100.0 and s.clock.initial_offset_ms == 100.0
    assert s.servers[0].delay_ms == 0.1 and s.servers[0].jitter_ms == 0.1
    assert s.duration_s == 86_400


def test_the_documented_example_loads_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "example.toml"
    path.write_text(EXAMPLE)
    s = scenario.load(str(path))
    assert s.poll_interval_s == 16.0
    assert s.temperature.profile == "sine" and s.temperature.period_s == 1200.0
    assert s.servers[0].outages == ((3600.0, 4200.0),)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (EXAMPLE.replace("seed = 1", "seed = 1\nsede = 2"), "unknown keys in scenario: sede"),
        (EXAMPLE.replace("jitter_ms = 0.1", "jiter_ms = 0.1"), "unknown keys in servers.a"),
        (EXAMPLE.replace("frequency_ppm = 100.0", 'frequency_ppm = "fast"'),
         "clock.frequency_ppm must be a finite number"),
        (EXAMPLE.replace('profile = "sine"', 'profile = "tropical"'), "temperature.profile"),
        (EXAMPLE.replace("loss = 0.0", "loss = 1.5"), "servers.a.loss must be in [0, 1)"),
        (EXAMPLE.replace("asymmetry_ms = 0.0", "asymmetry_ms = 0.5"), "must not exceed delay_ms"),
        (EXAMPLE.replace("duration_s = 86400", "duration_s = -1"), "duration_s must be"),
        (EXAMPLE.replace("poll_interval_s = 16", "poll_interval_s = 0.1"), "at least 1 s"),
        (EXAMPLE.replace("outages = [[3600.0, 4200.0]]", "outages = [[10.0]]"),
         "servers.a.outages must be a list of [number, number] pairs"),
        (EXAMPLE.split("[[servers]]")[0], "at least one [[servers]]"),
        ("name = [", "not valid TOML"),
    ],
)  # fmt: skip
def test_mistakes_are_refused_by_name(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ScenarioError, match=re.escape(message)):
        scenario.load(str(path))


def test_an_unknown_name_lists_the_built_in_ones() -> None:
    with pytest.raises(ScenarioError, match="neither a built-in scenario"):
        scenario.load("no-such-scenario")
