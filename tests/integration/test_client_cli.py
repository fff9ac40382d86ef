"""`chronotick-client`, the example and the demo, run as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from chronotick.client import TimeInfo
from chronotick.status import ClockStatus
from tests.helpers.daemon import running_daemon, wait_for
from tests.helpers.fake_ntp import FakeNtpServer, honest_reply
from tests.helpers.segments import unique_name

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def synced_segment() -> Iterator[str]:
    """A daemon synchronized to an honest local server, for the whole module."""
    with (
        FakeNtpServer(lambda r: [honest_reply(r, offset_ns=20_000_000)]) as server,
        running_daemon([server.address], name_prefix="test-cli") as daemon,
    ):
        wait_for(lambda: daemon.model.status is ClockStatus.SYNCHRONIZED, 20, "the daemon to sync")
        yield daemon.config.segment_name


def client(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chronotick.client_cli", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )


def test_time_json_is_one_object_with_every_timeinfo_field(synced_segment: str) -> None:
    result = client("--shm-name", synced_segment, "--json", "time")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    reading = json.loads(lines[0])
    expected = {f for f in TimeInfo.__dataclass_fields__}
    assert expected <= set(reading), expected - set(reading)
    assert reading["status"] == "SYNCHRONIZED"
    assert abs(reading["offset_correction"] - 0.020) < 0.001
    assert reading["error_bound_seconds"] > 0 and reading["uncertainty_seconds"] > 0
    assert abs(reading["corrected_time_ns"] - reading["system_time_ns"] - 20_000_000) < 1_000_000


def test_time_status_and_watch_in_text(synced_segment: str) -> None:
    result = client("--shm-name", synced_segment, "time")
    assert result.returncode == 0 and "SYNCHRONIZED" in result.stdout and "bound ±" in result.stdout
    status = client("--shm-name", synced_segment, "--json", "status")
    assert status.returncode == 0
    info = json.loads(status.stdout)
    assert info["status"] == "SYNCHRONIZED" and info["sources_configured"] == 1
    watch = client("--shm-name", synced_segment, "watch", "--count", "3", "--interval", "0.1")
    assert watch.returncode == 0 and watch.stdout.count("SYNCHRONIZED") == 3


def test_no_daemon_is_a_clear_error() -> None:
    name = unique_name("test-none")
    result = client("--shm-name", name, "time")
    assert result.returncode == 1
    assert f"no ChronoTick segment at /dev/shm/{name}" in result.stderr
    as_json = client("--shm-name", name, "--json", "time")
    assert json.loads(as_json.stdout)["error"] == "NoDaemonError"
    assert client("--shm-name", "bad/name", "time").returncode == 2


def test_a_segment_in_another_directory(tmp_path: Path) -> None:
    """`shm_dir`: the daemon publishes into a directory of the operator's choice (a shared
    volume, a RuntimeDirectory) and readers find it there by flag or $CHRONOTICK_SHM_DIR."""
    with (
        FakeNtpServer(lambda r: [honest_reply(r, offset_ns=-7_000_000)]) as server,
        running_daemon([server.address], {"shm_dir": str(tmp_path)}) as daemon,
    ):
        name = daemon.config.segment_name
        assert (tmp_path / name).exists()
        wait_for(lambda: daemon.model.status is ClockStatus.SYNCHRONIZED, 20, "the daemon to sync")
        result = client("--shm-dir", str(tmp_path), "--shm-name", name, "--json", "time")
        assert result.returncode == 0, result.stderr
        assert abs(json.loads(result.stdout)["offset_correction"] + 0.007) < 0.001
        elsewhere = client("--shm-name", name, "time")  # /dev/shm has no such segment
        assert elsewhere.returncode == 1 and f"/dev/shm/{name}" in elsewhere.stderr
        relative = client("--shm-dir", "shm", "--shm-name", name, "time")
        assert relative.returncode == 2 and "absolute" in relative.stderr


def test_simple_client_example_runs(synced_segment: str) -> None:
    result = subprocess.run(
        [sys.executable, "examples/simple_client_example.py", "--shm-name", synced_segment],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for label in ("corrected time", "uncertainty σ", "error bound", "status", "woke at target"):
        assert label in result.stdout


@pytest.mark.slow
def test_demo_runs_and_its_bound_holds() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "chronotick.demo", "--seconds", "12"],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SYNCHRONIZED" in result.stdout
    assert "bound violations 0" in result.stdout
