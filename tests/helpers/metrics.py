"""Reading and checking Prometheus exposition text in tests: scrape an endpoint, parse its body
into (name, labels) -> value, and run `promtool check metrics` on it (promtool comes from
Debian's prometheus package; missing, it skips here and fails in CI)."""

from __future__ import annotations

import re
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import require_binary

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int, host: str = "127.0.0.1", timeout_s: float = 5.0) -> str:
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=timeout_s) as reply:
        assert reply.status == 200
        body: bytes = reply.read()
        return body.decode()


def parse(body: str) -> Series:
    """Every sample of the body: (sample name, its labels) -> value."""
    series: Series = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in series, f"{key} exported twice"
            series[key] = sample.value
    return series


def value(series: Series, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    assert key in series, f"{name}{labels} not exported; got {sorted(k[0] for k in series)}"
    return series[key]


def samples_of(series: Series, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in series.items() if n == name}


def families_of(body: str) -> set[str]:
    """Names of the families the body declares (its # TYPE lines)."""
    return set(re.findall(r"^# TYPE (\S+) ", body, flags=re.MULTILINE))


def promtool_check(body: str) -> None:
    """`promtool check metrics` must accept the body without a single lint problem."""
    promtool = require_binary("promtool")
    result = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, text=True, timeout=30
    )
    problems = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and not problems, f"promtool: {problems}\n--- body:\n{body}"


def wait_for_log(path: Path, pattern: str, timeout_s: float, alive: Callable[[], bool]) -> str:
    """The first match of `pattern` (group 1) in the log at `path`, waiting for it to appear."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace") if path.exists() else ""
        found = re.search(pattern, text)
        if found:
            return found.group(1)
        assert alive(), f"the process exited before logging {pattern!r}:\n{text}"
        time.sleep(0.05)
    raise AssertionError(f"no {pattern!r} in {path} within {timeout_s} s")
