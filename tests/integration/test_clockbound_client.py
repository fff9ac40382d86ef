"""The ClockBound segment read by a ClockBound client this project did not write.

The client is `clockbound` from PyPI (a pure-Python reader of ClockBound's layout 2). In the
main test the daemon's clock is 50 ms ahead and 100 ppm fast (libfaketime) and the client runs
on the same faked clock, as any application on that host would: its intervals are centred on
the wrong clock, so only the widening by our offset makes them hold. True time comes from a
raw system call that libfaketime cannot intercept.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chronotick.clockbound_segment import read_segment
from chronotick.status import ClockStatus
from tests.conftest import free_udp_port, libfaketime_path, unavailable
from tests.helpers.chrony import ChronyServer
from tests.helpers.daemon import running_daemon, wait_for
from tests.helpers.fake_ntp import FakeNtpServer, honest_reply
from tests.helpers.segments import remove_segment_files, unique_name

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PROBE = ROOT / "tests" / "helpers" / "clockbound_probe.py"
MS = 1_000_000
SYNC, FREE_RUNNING = 1, 2
#: the daemon of the faked test: polls every 1-2 s, a short warm-up, void 2 s after a publish
FAST_CONFIG = """
min_poll_s = 1.0
max_poll_s = 2.0
burst_size = 2
burst_spacing_s = 0.05
warmup_interval_s = 0.5
timeout_s = 0.3
void_after_s = 2.0
log_level = "debug"
"""


def require_clockbound_client() -> Any:
    try:
        import clockbound
    except ImportError:
        unavailable("the PyPI clockbound client is not installed (make venv installs it)")
    return clockbound


class FakedClockBound:
    """The probe: a faked daemon writing a ClockBound segment, and the PyPI client reading it."""

    def __init__(self, port: int, directory: Path) -> None:
        self.path = str(directory / "clockbound" / "shm0")
        self.shm_name = unique_name("test-cb")
        self.log_path = directory / "daemon.log"
        config = directory / "daemon.toml"
        config.write_text(FAST_CONFIG)
        env = dict(os.environ)
        env.update(
            LD_PRELOAD=libfaketime_path(),
            FAKETIME="+0.05 x1.0001",
            FAKETIME_DONT_RESET="1",
            PYTHONPATH=str(ROOT),
        )
        self.proc = subprocess.Popen(
            [
                *(sys.executable, str(PROBE), "--path", self.path, "--shm-name", self.shm_name),
                *("--", "--config", str(config), "--server", f"127.0.0.1:{port}"),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=open(self.log_path, "w"),
            text=True,
            env=env,
            cwd=ROOT,
        )

    def command(self, line: str) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        if not answer:
            raise AssertionError(f"probe exited: {self.log()}")
        result: dict[str, Any] = json.loads(answer)
        return result

    def wait_for(self, predicate: Any, timeout_s: float, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        reading: dict[str, Any] = {}
        while time.monotonic() < deadline:
            reading = self.command("read")
            if predicate(reading):
                return reading
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what} (last: {reading}); log:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text()[-4000:]

    def quit(self) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=15)
        except (BrokenPipeError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        finally:
            remove_segment_files(self.shm_name)


def check_contains_truth(reading: dict[str, Any]) -> tuple[int, int]:
    """The client's interval holds the true time of its clock reading; returns (the faked
    clock's error, the interval's half-width) in ns."""
    assert "interval" in reading, reading
    earliest, latest = reading["interval"]
    before, after = reading["true_before"], reading["true_after"]
    assert before is not None and after is not None, "no raw clock_gettime on this machine"
    assert earliest <= before and latest >= after, (
        f"[{earliest}, {latest}] misses the truth in [{before}, {after}]: "
        f"{(before - earliest) / 1e6:+.3f} ms from earliest, "
        f"{(latest - after) / 1e6:+.3f} ms from latest"
    )
    raw_error = reading["faked"] - (before + after) // 2
    half_width = (latest - earliest) // 2
    print(
        f"status {reading['status']} raw clock error {raw_error / 1e6:+8.3f} ms, ClockBound "
        f"±{half_width / 1e6:.3f} ms, our own bound ±{reading.get('own_bound_ns', 0) / 1e6:.3f} ms"
    )
    return raw_error, half_width


@pytest.fixture
def chrony() -> Iterator[ChronyServer]:
    server = ChronyServer(free_udp_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_pypi_client_bounds_a_wrong_clock_until_the_daemon_dies(
    chrony: ChronyServer, tmp_path: Path
) -> None:
    require_clockbound_client()
    probe = FakedClockBound(chrony.port, tmp_path)
    try:
        probe.wait_for(lambda r: r.get("status") == SYNC, 30, "SYNCHRONIZED")
        # The clock is tens of ms wrong and our bound is far tighter than that: an interval
        # of our bound's width around the uncorrected clock would miss the truth. The
        # ClockBound interval holds because it is widened by the offset.
        for _ in range(8):
            reading = probe.command("read")
            assert reading["status"] == SYNC, reading
            raw_error, half_width = check_contains_truth(reading)
            assert raw_error > 40 * MS, raw_error
            assert 0 < reading["own_bound_ns"] < raw_error / 2, reading
            assert half_width < raw_error + 10 * MS, "the widening should not be much looser"
            time.sleep(0.2)

        chrony.stop()
        probe.wait_for(lambda r: r.get("status") == FREE_RUNNING, 20, "FREE_RUNNING")
        widths = []
        for _ in range(4):
            reading = probe.command("read")
            assert reading["status"] == FREE_RUNNING, reading
            widths.append(check_contains_truth(reading)[1])
            time.sleep(0.3)
        assert widths[-1] > widths[0], f"the interval must grow while free running: {widths}"

        # A daemon that dies without a word: its last record holds until void_after (2 s
        # after its last publish), then the client refuses it.
        assert probe.command("kill") == {"killed": True}
        killed_at = time.monotonic()
        check_contains_truth(probe.command("read"))
        voided = probe.wait_for(lambda r: r.get("error") == "TimeVoidedError", 5, "void_after")
        assert "interval" not in voided
        assert time.monotonic() - killed_at > 1.0, "voided long before void_after"
    finally:
        probe.quit()


def test_clean_shutdown_says_unknown_and_a_restart_reuses_the_file(tmp_path: Path) -> None:
    """The in-process daemon (true clock): the flag writes the segment, a clean stop marks it
    UNKNOWN at once, and a restarted daemon writes the same file, which a client that
    attached to the first one keeps reading (ClockBound's clients never re-open it)."""
    clockbound = require_clockbound_client()
    path = str(tmp_path / "run" / "clockbound" / "shm0")
    with FakeNtpServer(lambda r: [honest_reply(r)]) as server:
        settings = {"clockbound_path": path, "timeout_s": 0.3}
        with running_daemon([server.address], settings, name_prefix="test-cb"):
            # the daemon thread opens it just after its own segment, which is what the block
            # waited for (the file appears whole: it is linked in once its header is written)
            wait_for(lambda: os.path.exists(path), 10, "the ClockBound segment")
            client = clockbound.Clockbound(path)
            wait_for(lambda: client.snapshot().clock_status == SYNC, 20, "SYNCHRONIZED")
            before = time.time_ns()
            bound = client.now()
            after = time.time_ns()
            assert bound.earliest <= before and bound.latest >= after
            inode = os.stat(path).st_ino
        assert read_segment(path)[1].status is ClockStatus.UNKNOWN
        with pytest.raises(clockbound.errors.ClockStatusError):
            client.now()

        with running_daemon([server.address], settings, name_prefix="test-cb"):
            assert os.stat(path).st_ino == inode, "a restart must keep the file clients mapped"
            wait_for(lambda: client.snapshot().clock_status == SYNC, 20, "SYNCHRONIZED again")
            assert client.now().error_ns > 0
    client.close()


@pytest.mark.parametrize("case", ["parent_is_a_file", "foreign_file"])
def test_daemon_refuses_an_unusable_path_at_startup(tmp_path: Path, case: str) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory, not a segment\n")
    path = blocker / "shm0" if case == "parent_is_a_file" else blocker
    name = unique_name("test-cb-bad")
    try:
        done = subprocess.run(
            [
                *(sys.executable, "-m", "chronotick.daemon.cli", "--shm-name", name),
                *("--server", "127.0.0.1:9", "--clockbound-path", str(path)),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert done.returncode == 1, done.stderr
        assert str(blocker) in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert not os.path.exists(f"/dev/shm/{name}"), "our own segment must go too"
        assert blocker.read_text() == "not a directory, not a segment\n"
    finally:
        remove_segment_files(name)
