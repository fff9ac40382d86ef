"""Bad servers and bad input: each gets a clear message; nothing crashes or hangs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from chronotick.client import ChronoTickClient
from chronotick.daemon.service import Daemon
from chronotick.ntp.poll import ServerHealth
from chronotick.shm import NoDaemonError
from chronotick.status import ClockStatus
from tests.conftest import free_udp_port
from tests.helpers.daemon import running_daemon as daemon_in_thread
from tests.helpers.daemon import wait_for
from tests.helpers.fake_ntp import FakeNtpServer, garbage, honest_reply, kiss, lying, silent
from tests.helpers.segments import remove_segment_files, unique_name

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
#: a short timeout (most servers here never answer) and the warm-up these tests were tuned to
BAD_SERVER_SETTINGS = {"timeout_s": 0.3, "warmup_interval_s": 1.0}


def running_daemon(servers: list[str], **overrides: object) -> AbstractContextManager[Daemon]:
    """tests/helpers/daemon.py's daemon in a thread, with BAD_SERVER_SETTINGS."""
    return daemon_in_thread(servers, {**BAD_SERVER_SETTINGS, **overrides}, name_prefix="test-bad")


def test_garbage_replies_are_counted_and_an_honest_server_still_syncs() -> None:
    with (
        FakeNtpServer(garbage()) as junk,
        FakeNtpServer(lambda r: [honest_reply(r)]) as honest,
        running_daemon([junk.address, honest.address]) as daemon,
    ):
        wait_for(lambda: daemon.model.status is ClockStatus.SYNCHRONIZED, 20, "sync")
        assert junk.requests >= 2
        # Every garbage datagram was recognised for what it is, and the junk server never
        # produced a sample: its polls end in a timeout after the junk.
        for reason in ("malformed", "bogus_origin", "bad_mode", "timeout"):
            assert daemon.rejected.get(reason, 0) > 0, (reason, daemon.rejected)
        assert abs(daemon.model.offset_ns) < 1_000_000
        assert daemon.engine.servers[junk.address].latest is None


def test_one_liar_among_three_is_rejected_as_falseticker() -> None:
    with (
        FakeNtpServer(lambda r: [honest_reply(r)]) as a,
        FakeNtpServer(lambda r: [honest_reply(r)]) as b,
        FakeNtpServer(lying(100_000_000)) as liar,
        running_daemon([a.address, b.address, liar.address]) as daemon,
    ):
        wait_for(lambda: daemon.rejected.get("falseticker", 0) >= 3, 20, "falseticker rejections")
        wait_for(lambda: daemon.model.status is ClockStatus.SYNCHRONIZED, 20, "sync")
        # The host clock is the truth here: the model must not lean towards the liar.
        assert abs(daemon.model.offset_ns) < 1_000_000, daemon.model
        assert all(s.source != liar.address for s in daemon.engine.predictor.samples)


def test_kiss_of_death_rate_slows_down_and_deny_retires() -> None:
    with (
        FakeNtpServer(kiss(b"RATE")) as rate,
        FakeNtpServer(kiss(b"DENY")) as deny,
        FakeNtpServer(lambda r: [honest_reply(r)]) as honest,
        running_daemon([rate.address, deny.address, honest.address]) as daemon,
    ):
        deny_schedule = daemon.engine.servers[deny.address].schedule
        wait_for(lambda: deny_schedule.health is ServerHealth.RETIRED, 10, "DENY to retire it")
        wait_for(lambda: rate.requests >= 1, 10, "a request to the RATE server")
        time.sleep(4)
        # The RATE server's floor doubled from 1 s: it is asked far less than the honest one.
        assert daemon.engine.servers[rate.address].schedule.floor_ns >= 2_000_000_000
        assert rate.requests <= 3, rate.requests
        assert deny.requests == 1, "a server that said DENY must never be asked again"
        assert honest.requests > rate.requests


def test_silent_and_closed_ports_back_off_and_the_daemon_keeps_publishing() -> None:
    closed_port = free_udp_port()  # nothing listens: ICMP port unreachable
    with (
        FakeNtpServer(silent) as mute,
        running_daemon([mute.address, f"127.0.0.1:{closed_port}"], max_poll_s=4.0) as daemon,
    ):
        client = ChronoTickClient(daemon.config.segment_name)
        for _ in range(30):  # 6 s of reads: always a clear status, never a hang or crash
            assert client.get_time().status is ClockStatus.UNKNOWN
            time.sleep(0.2)
        assert daemon.rejected.get("timeout", 0) > 0
        assert daemon.rejected.get("unreachable", 0) > 0, daemon.rejected
        # Back-off: without it, 1 s polls would have asked at least 5 times in 6 s.
        assert mute.requests <= 4 * 2, mute.requests
        assert not daemon.engine.servers[mute.address].schedule.reachable


def test_unresolvable_name_is_reported_not_fatal() -> None:
    with running_daemon(["no-such-host.invalid"]) as daemon:
        wait_for(lambda: any(k.startswith("resolve_failed") for k in daemon.rejected), 10,
                 "a resolve failure")  # fmt: skip
        assert daemon.model.status is ClockStatus.UNKNOWN


def test_a_reader_started_before_the_daemon_attaches_later() -> None:
    with FakeNtpServer(lambda r: [honest_reply(r)]) as honest:
        name = unique_name("test-early")
        client = ChronoTickClient(name)
        with pytest.raises(NoDaemonError, match="no ChronoTick segment"):
            client.get_time()
        assert not client.is_daemon_ready()
        with running_daemon([honest.address], shm_name=name):
            wait_for(client.is_daemon_ready, 20, "the early client to see a ready daemon")
            assert abs(client.get_time().offset_correction) < 0.001


def run_cli(*args: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chronotick.daemon.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--min-poll", "0"], "min_poll_s must be at least 1 s"),
        (["--min-poll", "8", "--max-poll", "4"], "must be >= min_poll_s"),
        (["--server", "host:99999"], "port out of range"),
        (["--shm-name", "a/b"], "invalid shared-memory name"),
        (["--publish-rate", "nan"], "publish_rate_hz must be between"),
        (["--config", "/nonexistent/chronotick.toml"], "does not exist"),
    ],
)
def test_cli_refuses_bad_flags(args: list[str], message: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2, result
    assert message in result.stderr, result.stderr


def test_cli_refuses_unknown_keys_and_bad_values_in_the_config(tmp_path: Path) -> None:
    bad_key = tmp_path / "bad-key.toml"
    bad_key.write_text('servers = ["127.0.0.1"]\npoll_minimum = 3\n')
    result = run_cli("--config", str(bad_key))
    assert result.returncode == 2 and "unknown configuration keys: poll_minimum" in result.stderr
    bad_type = tmp_path / "bad-type.toml"
    bad_type.write_text('min_poll_s = "fast"\n')
    result = run_cli("--config", str(bad_type))
    assert result.returncode == 2 and "min_poll_s must be a number" in result.stderr
    not_toml = tmp_path / "not.toml"
    not_toml.write_bytes(b"\x00\xff garbage = = =")
    result = run_cli("--config", str(not_toml))
    assert result.returncode == 2 and str(not_toml) in result.stderr


def test_cli_second_daemon_on_one_segment_is_refused_and_sigterm_cleans_up() -> None:
    name = unique_name("test-cli")
    with FakeNtpServer(lambda r: [honest_reply(r)]) as honest:
        args = ["--server", honest.address, "--min-poll", "1", "--shm-name", name]
        first = subprocess.Popen(
            [sys.executable, "-m", "chronotick.daemon.cli", *args],
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        try:
            wait_for(lambda: os.path.exists(f"/dev/shm/{name}"), 10, "the segment")
            second = run_cli(*args)
            assert second.returncode == 1
            assert "another chronotick daemon is writing segment" in second.stderr
        finally:
            first.terminate()
            _out, err = first.communicate(timeout=10)
        assert first.returncode == 0, err
        assert "SIGTERM received" in err
        assert not os.path.exists(f"/dev/shm/{name}")
        remove_segment_files(name)
