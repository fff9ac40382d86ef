"""The daemon against a real reference: chronyd serves true time, the daemon's clock is skewed.

The daemon and the reader run under libfaketime, 50 ms ahead and 100 ppm fast; this test runs
outside it and reads the true time around each request, so every check is against the truth.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_udp_port, libfaketime_path
from tests.helpers.chrony import ChronyServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
PROBE = ROOT / "tests" / "helpers" / "faked_probe.py"
MS = 1_000_000


class FakedNode:
    """The faked probe process: a daemon and a reader sharing one skewed clock."""

    def __init__(self, port: int, shm_name: str) -> None:
        env = dict(os.environ)
        env.update(
            LD_PRELOAD=libfaketime_path(),
            FAKETIME="+0.05 x1.0001",
            FAKETIME_DONT_RESET="1",
            PYTHONPATH=str(ROOT),
        )
        self.shm_name = shm_name
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(PROBE),
                "--shm-name",
                shm_name,
                "--",
                "--server",
                f"127.0.0.1:{port}",
                "--min-poll",
                "1",
                "--max-poll",
                "2",
                "--burst",
                "3",
                "--burst-spacing",
                "0.1",
                "--timeout",
                "0.5",
                "--log-level",
                "debug",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=open(f"/tmp/{shm_name}.log", "w"),
            text=True,
            env=env,
            cwd=ROOT,
        )

    def read(self) -> tuple[int, dict[str, Any], int]:
        """(true time before, the reading, true time after)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        before = time.time_ns()
        self.proc.stdin.write("read\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        after = time.time_ns()
        if not line:
            raise AssertionError(f"probe exited: {self.log()}")
        return before, json.loads(line), after

    def wait_for(self, status: str, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        seen = None
        while time.monotonic() < deadline:
            _b, reading, _a = self.read()
            seen = reading.get("status", reading.get("error"))
            if seen == status:
                return reading
            time.sleep(0.25)
        raise AssertionError(f"status never became {status} (last: {seen}); log:\n{self.log()}")

    def log(self) -> str:
        return Path(f"/tmp/{self.shm_name}.log").read_text()[-4000:]

    def quit(self) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            out = self.proc.stdout.read()
            self.proc.wait(timeout=15)
        except (BrokenPipeError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
            return -1
        return int(json.loads(out.strip().splitlines()[-1])["daemon_exit"])


@pytest.fixture
def chrony() -> Iterator[ChronyServer]:
    server = ChronyServer(free_udp_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def node(chrony: ChronyServer) -> Iterator[FakedNode]:
    name = f"test-ft-{uuid.uuid4().hex[:8]}"
    probe = FakedNode(chrony.port, name)
    try:
        yield probe
    finally:
        if probe.proc.poll() is None:
            probe.quit()
        Path(f"/tmp/{name}.log").unlink(missing_ok=True)


def check_truth(before: int, reading: dict[str, Any], after: int) -> tuple[int, int]:
    """The reading against true time.

    The probe reads the true clock by a raw system call right around one faked clock reading
    (libfaketime cannot intercept the system call) and applies the reading's correction to it,
    so true time is known within a few µs; `before` and `after` (this process's clock around
    the request through the pipe) are the fallback where the system call is not available.
    Checks that the corrected time is within 1 ms of the truth and that [corrected ± bound]
    contains it, and returns (error bound, the raw clock's own error) in ns.
    """
    corrected = reading["corrected_time_ns"]
    paired = reading.get("paired")
    if paired and paired["true_before_ns"] and paired["true_after_ns"]:
        before, after = paired["true_before_ns"], paired["true_after_ns"]
        corrected = paired["corrected_ns"]
    assert before - MS <= corrected <= after + MS, (
        f"corrected time off by more than 1 ms: {(corrected - before) / 1e6:+.3f} ms after "
        f"the earliest true time, {(corrected - after) / 1e6:+.3f} ms from the latest"
    )
    bound_ns = round(reading["error_bound_seconds"] * 1e9)
    assert corrected - bound_ns <= after and corrected + bound_ns >= before, (
        f"the bound ±{bound_ns / 1e3:.1f} µs does not contain true time: error "
        f"{(corrected - (before + after) // 2) / 1e3:+.1f} µs (±{(after - before) / 2e3:.1f})"
    )
    if reading["now_ns"] is not None:
        earliest, latest = reading["now_ns"]
        assert earliest <= after + 10 * MS and latest >= before - 10 * MS
    print(
        f"{reading['status']:<13} error {(corrected - (before + after) // 2) / 1e3:+9.1f} µs "
        f"(±{(after - before) / 2e3:.1f}) bound ±{bound_ns / 1e3:8.1f} µs "
        f"σ {reading['uncertainty_seconds'] * 1e6:7.1f} µs"
    )
    return bound_ns, reading["system_time_ns"] - before


def test_tracks_chrony_through_an_outage(chrony: ChronyServer, node: FakedNode) -> None:
    node.wait_for("SYNCHRONIZED", timeout_s=30)
    time.sleep(6)  # warm-up: let the drift estimate settle over a few polls

    raw_errors = []
    for _ in range(20):
        before, reading, after = node.read()
        assert reading["status"] == "SYNCHRONIZED", reading
        _bound, raw_error = check_truth(before, reading, after)
        raw_errors.append(raw_error)
        time.sleep(0.5)
    # The skew really is there (50 ms ahead, growing at 100 ppm): the daemon corrected it.
    assert min(raw_errors) > 45 * MS, raw_errors
    assert 80 < node.read()[1]["drift_rate"] * -1e6 < 120

    chrony.stop()
    reading = node.wait_for("FREE_RUNNING", timeout_s=30)
    bounds = []
    for _ in range(10):
        before, reading, after = node.read()
        assert reading["status"] == "FREE_RUNNING", reading
        bound, _raw = check_truth(before, reading, after)
        bounds.append(bound)
        time.sleep(0.5)
    assert bounds[-1] > bounds[0], f"the bound must grow while free running: {bounds}"

    chrony.start()
    node.wait_for("SYNCHRONIZED", timeout_s=30)
    for _ in range(6):
        before, reading, after = node.read()
        check_truth(before, reading, after)
        time.sleep(0.5)
    assert node.quit() == 0
    assert not Path(f"/dev/shm/{node.shm_name}").exists(), "the daemon must unlink its segment"
