"""Real NTP clients (chronyd, ntpdig) agree with the offset the embedded server is told to serve.

chronyd -Q measures once and prints the offset without touching the clock; with directives on
its command line it reads no configuration file, and in this mode it writes no pidfile and
opens no command socket, so nothing of the host's own chrony is affected. ntpdig has no port
option (it always queries port 123), so its test needs port 123 on loopback, i.e. root.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from chronotick.clocks import SimulatedClock, SimulatedClockParams
from chronotick.ntp.server import NtpServer
from tests.conftest import free_udp_port, require_binary, unavailable
from tests.unit.test_ntp_server import best_offset

pytestmark = pytest.mark.integration

MS = 1_000_000
SERVED_OFFSET_S = 0.300
TOLERANCE_S = 0.005


def skewed_server(port: int) -> NtpServer:
    params = SimulatedClockParams(offset_ns=round(SERVED_OFFSET_S * 1e9), epoch_ns=time.time_ns())
    return NtpServer(SimulatedClock(params), host="127.0.0.1", port=port)


@pytest.fixture
def server() -> Iterator[NtpServer]:
    with skewed_server(0) as running:
        yield running


def test_chronyd_measures_the_served_offset(server: NtpServer) -> None:
    chronyd = require_binary("chronyd")
    port = server.address[1]
    # -t: chronyd gives up (exit 1, "Timeout reached") if the server never answers.
    done = subprocess.run(
        [chronyd, "-Q", "-t", "10", f"server 127.0.0.1 port {port} iburst maxsamples 1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    found = re.search(r"System clock wrong by (-?\d+\.\d+) seconds", output)
    assert found, output
    # chrony's sign: positive when the local clock is behind the server, as ours.
    assert abs(float(found.group(1)) - SERVED_OFFSET_S) < TOLERANCE_S, output
    assert server.stats.answered >= 1


def test_ntpdig_measures_the_served_offset() -> None:
    ntpdig = require_binary("ntpdig")
    try:
        running = skewed_server(123)
        running.start()
    except OSError as exc:
        unavailable(f"ntpdig only queries port 123, which cannot be bound here: {exc}")
    try:
        done = subprocess.run(
            [ntpdig, "--json", "-p", "1", "-t", "2", "127.0.0.1"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        running.stop()
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["stratum"] == 1 and report["leap"] == "no-leap", report
    assert abs(report["offset"] - SERVED_OFFSET_S) < TOLERANCE_S, report


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "chronotick.ntp.server_cli", *args]


def test_cli_serves_until_sigterm() -> None:
    port = free_udp_port()
    proc = subprocess.Popen(
        cli("--listen", f"127.0.0.1:{port}", "--offset-ms", "100"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()  # printed once the socket is bound
        assert banner.startswith("serving a simulated clock"), banner
        assert banner.rstrip().endswith(f"on 127.0.0.1:{port}"), banner
        assert abs(best_offset(("127.0.0.1", port)) - 100 * MS) < 2 * MS
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_refuses_a_port_in_use(server: NtpServer) -> None:
    done = subprocess.run(
        cli("--listen", f"127.0.0.1:{server.address[1]}"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0, done.stderr  # one line, no traceback
    assert "cannot listen on 127.0.0.1:" in done.stderr
    assert "in use" in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--listen", "bad"], "expected HOST:PORT"),
        (["--listen", "::1:123"], "put an IPv6 address in brackets"),
        (["--listen", "127.0.0.1:123", "--stratum", "16"], "stratum must be 1..15"),
        (["--listen", "127.0.0.1:123", "--ref-id", "TOOLONG"], "ref id must be 1 to 4"),
    ],
)
def test_cli_rejects_bad_flags(args: list[str], message: str) -> None:
    done = subprocess.run(cli(*args), capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
