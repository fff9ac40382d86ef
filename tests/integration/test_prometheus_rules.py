"""deploy/prometheus/alerts.yml: valid for Prometheus (`promtool check rules`), each alert quiet
while healthy and firing after its `for` (`promtool test rules` on alerts_test.yml), and built
only on metrics the daemon and node export, with the labels they carry."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from chronotick.metrics import DAEMON_METRICS, MetricSpec
from coordinator.metrics import NODE_METRICS
from tests.conftest import require_binary

pytestmark = pytest.mark.integration

RULES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = RULES_DIR / "alerts.yml"
RULES_TEST = RULES_DIR / "alerts_test.yml"
#: every series name a metric family exports (a histogram's too) -> its spec
EXPORTED: dict[str, MetricSpec] = {}
for _spec in (*DAEMON_METRICS, *NODE_METRICS):
    EXPORTED[_spec.name] = _spec
    if _spec.type == "histogram":
        for _suffix in ("_bucket", "_sum", "_count"):
            EXPORTED[_spec.name + _suffix] = _spec
#: labels Prometheus adds to every scraped series
TARGET_LABELS = {"job", "instance"}


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_binary("promtool"), *args],
        capture_output=True, text=True, timeout=60, cwd=RULES_DIR,
    )  # fmt: skip


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_promtool_accepts_the_rules() -> None:
    result = _promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout


def test_promtool_unit_tests_of_the_alerts_pass() -> None:
    result = _promtool("test", "rules", str(RULES_TEST))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_tested_firing_and_quiet() -> None:
    tests = yaml.safe_load(RULES_TEST.read_text())["tests"]
    cases = [case for test in tests for case in test["alert_rule_test"]]
    firing = {c["alertname"] for c in cases if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    alerts = {rule["alert"] for rule in _rules()}
    assert alerts == firing == quiet


def test_the_rules_use_only_exported_metrics_and_labels() -> None:
    for rule in _rules():
        expr = rule["expr"]
        for name, matchers in re.findall(r"(chronotick_\w+)(\{[^}]*\})?", expr):
            assert name in EXPORTED, f"{rule['alert']}: {name} is not exported"
            labels = set(re.findall(r"(\w+)\s*=~?", matchers))
            assert labels <= set(EXPORTED[name].labels) | TARGET_LABELS, (rule["alert"], labels)
    tests = yaml.safe_load(RULES_TEST.read_text())["tests"]
    for test in tests:
        for series in test["input_series"]:
            name, _, labels = series["series"].partition("{")
            if name.startswith("chronotick_"):
                spec = EXPORTED.get(name)
                assert spec is not None, f"{name} in alerts_test.yml is not exported"
                given = set(re.findall(r"(\w+)=", labels)) - TARGET_LABELS
                assert given == set(spec.labels), (name, given)
