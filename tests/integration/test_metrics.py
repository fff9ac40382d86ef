"""`--metrics-address` on real processes: a `chronotick-daemon` and two `chronotick-node`s
scraped over HTTP, their bodies checked by `promtool check metrics`, their figures against
what the shared-memory segment, the peer service and the CLI report.

The promise: one endpoint per process (port 0 picks a free one, logged); it answers before the
daemon has a model; its clock figures agree with what a reader of the segment sees; the peers,
agreement rounds by outcome and commit waits of a node show there; the endpoint goes away with
the process; and a bad address or a taken port stops the process at start with a clear error.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import pytest

from chronotick.client import ChronoTickClient
from chronotick.shm import NoDaemonError, segment_path
from chronotick.status import ClockStatus
from coordinator.sync import DistributedSyncCoordinator, SyncAborted
from tests.helpers.daemon import wait_for
from tests.helpers.fake_ntp import FakeNtpServer, honest_reply, silent
from tests.helpers.metrics import (
    Series,
    parse,
    promtool_check,
    samples_of,
    scrape,
    value,
    wait_for_log,
)
from tests.helpers.node import (
    FAST_TOML,
    ROOT,
    NodeProcess,
    free_tcp_port,
    node_processes,
    start_cli,
    wait_until,
)
from tests.helpers.segments import remove_segment_files, unique_name

pytestmark = pytest.mark.integration

PORT_LOG = r"metrics on http://127\.0\.0\.1:(\d+)/metrics"
OFFSET_NS = 20_000_000


def _daemon(args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "chronotick.daemon.cli", *args],
            stdout=log, stderr=log, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip


@pytest.fixture
def daemon_args(tmp_path: Path) -> Iterator[tuple[list[str], str]]:
    """Flags for a daemon polling an honest reference 20 ms ahead and a silent one (its polls
    time out after 1 s, so no model can exist before the first second has passed)."""
    name = unique_name("test-metrics")
    config = tmp_path / "fast.toml"
    config.write_text(FAST_TOML)
    with (
        FakeNtpServer(lambda r: [honest_reply(r, offset_ns=OFFSET_NS)]) as honest,
        FakeNtpServer(silent) as dead,
    ):
        yield [
            "--config", str(config), "--server", honest.address, "--server", dead.address,
            "--min-poll", "1", "--max-poll", "2", "--timeout", "1", "--shm-name", name,
        ], name  # fmt: skip
    remove_segment_files(name)


def test_daemon_metrics_agree_with_the_segment_and_pass_promtool(
    tmp_path: Path, daemon_args: tuple[list[str], str]
) -> None:
    args, name = daemon_args
    honest, dead = args[3], args[5]
    log = tmp_path / "daemon.log"
    process = _daemon([*args, "--metrics-address", "127.0.0.1:0"], log)
    try:
        port = int(wait_for_log(log, PORT_LOG, 15, lambda: process.poll() is None))
        # before any model: answered, well formed, status unknown like the segment
        early = scrape(port)
        promtool_check(early)
        s = parse(early)
        assert value(s, "chronotick_clock_status", status="unknown") == 1
        assert not samples_of(s, "chronotick_clock_offset_seconds")
        assert value(s, "chronotick_servers_configured") == 2

        with ChronoTickClient(name) as client:
            wait_for(
                lambda: client.get_time().status is ClockStatus.SYNCHRONIZED, 20, "the daemon sync"
            )
            body = scrape(port)
            reading, info = client.get_time(), client.get_daemon_info()
        promtool_check(body)
        s = parse(body)
        assert value(s, "chronotick_clock_status", status="synchronized") == 1
        offset = value(s, "chronotick_clock_offset_seconds")
        assert offset == pytest.approx(reading.offset_correction, abs=0.0005)
        assert offset == pytest.approx(OFFSET_NS / 1e9, abs=0.001)
        bound = value(s, "chronotick_clock_error_bound_seconds")
        assert bound == pytest.approx(reading.error_bound_seconds, abs=0.0005) and bound > 0
        assert value(s, "chronotick_clock_uncertainty_seconds") > 0
        assert value(s, "chronotick_servers_configured") == info["sources_configured"] == 2
        assert value(s, "chronotick_servers_reachable") == info["sources_reachable"] == 1
        _check_servers(s, honest, dead)
    finally:
        process.terminate()
        process.wait(timeout=15)
    assert process.returncode == 0, log.read_text()
    assert not os.path.exists(segment_path(name))
    with pytest.raises(urllib.error.URLError):  # the endpoint went away with the daemon
        scrape(port, timeout_s=1)


def _check_servers(s: Series, honest: str, dead: str) -> None:
    assert value(s, "chronotick_server_reachable", server=honest) == 1
    assert value(s, "chronotick_server_reachable", server=dead) == 0
    assert value(s, "chronotick_server_reach_register", server=honest) > 0
    assert value(s, "chronotick_server_reach_register", server=dead) == 0
    assert 0 < value(s, "chronotick_server_delay_seconds", server=honest) < 0.05
    assert value(s, "chronotick_server_offset_seconds", server=honest) == pytest.approx(
        OFFSET_NS / 1e9, abs=0.001
    )
    assert 0 <= value(s, "chronotick_server_last_sample_age_seconds", server=honest) < 5
    assert frozenset({("server", dead)}) not in samples_of(s, "chronotick_server_delay_seconds")
    assert value(s, "chronotick_server_polls_total", server=dead) >= 1
    assert value(s, "chronotick_rejected_samples_total", reason="timeout") >= 2


def test_a_bad_address_or_a_taken_port_stops_the_daemon_at_start(
    tmp_path: Path, daemon_args: tuple[list[str], str]
) -> None:
    args, name = daemon_args
    bad = subprocess.run(
        [sys.executable, "-m", "chronotick.daemon.cli", *args, "--metrics-address", "9100"],
        capture_output=True, text=True, timeout=30, cwd=ROOT,
    )  # fmt: skip
    assert bad.returncode == 2
    assert "configuration error: metrics_address: expected HOST:PORT" in bad.stderr
    node_shm = unique_name("test-metrics-node")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "chronotick.daemon.cli", *args,
             "--metrics-address", f"127.0.0.1:{port}"],
            capture_output=True, text=True, timeout=30, cwd=ROOT,
        )  # fmt: skip
        try:
            node = start_cli(
                "--node-id", "n1", "--server", "127.0.0.1:9", "--no-discovery",
                "--listen", f"127.0.0.1:{free_tcp_port()}", "--shm-name", node_shm,
                "--metrics-address", f"127.0.0.1:{port}",
            )  # fmt: skip
        finally:
            remove_segment_files(node_shm)
    message = f"cannot serve metrics on 127.0.0.1:{port}: Address already in use"
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert not os.path.exists(segment_path(name))  # and it left nothing behind
    # a node stops before opening its peer port or writing its segment
    assert node.returncode == 1 and message in node.stderr, node.stderr
    assert "peer service on" not in node.stderr and not os.path.exists(segment_path(node_shm))
    bad_node = start_cli("--node-id", "n1", "--server", "127.0.0.1", "--metrics-address", "[::1]")
    assert bad_node.returncode == 2, bad_node.stderr
    assert "metrics_address: expected [IPV6]:PORT" in bad_node.stderr


# -- a node --------------------------------------------------------------------------------


def _metrics_port(node: NodeProcess) -> int:
    return int(wait_for_log(node.log_path, PORT_LOG, 20, lambda: node.process.poll() is None))


def _checked(port: int) -> Series:
    body = scrape(port)
    promtool_check(body)
    return parse(body)


def _outcomes(s: Series, name: str) -> dict[str, float]:
    return {dict(labels)["outcome"]: v for labels, v in samples_of(s, name).items() if v}


def test_two_nodes_export_peers_rounds_and_commit_waits(tmp_path: Path) -> None:
    port_a, port_b = free_tcp_port(), free_tcp_port()
    metrics = ["--metrics-address", "127.0.0.1:0"]
    with node_processes(tmp_path) as procs:
        ntp = procs.ntp_server()
        a = procs.node(unique_name("a"), port_a, ntp, peers=[port_b], extra=metrics)
        b = procs.node(unique_name("b"), port_b, ntp, peers=[port_a], extra=metrics)
        port = {node.node_id: _metrics_port(node) for node in (a, b)}
        for node in (a, b):
            node.wait_synchronized()
        wait_until(
            lambda: all([p.state for p in n.list_peers().peers] == ["used"] for n in (a, b)),
            20, lambda: "each node to use the other's clock",
        )  # fmt: skip

        s = _checked(port[a.node_id])
        # the daemon's families and the node's, on one endpoint
        assert value(s, "chronotick_scrape_collector_success", collector="daemon") == 1
        assert value(s, "chronotick_scrape_collector_success", collector="node") == 1
        assert value(s, "chronotick_clock_status", status="synchronized") == 1
        assert value(s, "chronotick_peers") == 1
        listed = {p.node_id: p for p in a.list_peers().peers}
        # both base clocks are this host's: the offset is within the round trip of zero
        offset = value(s, "chronotick_peer_offset_seconds", peer=b.node_id)
        assert abs(offset - listed[b.node_id].offset_ns / 1e9) < 0.002
        assert abs(offset) < 0.005
        assert value(s, "chronotick_peer_round_trip_seconds", peer=b.node_id) > 0
        assert value(s, "chronotick_peer_state", peer=b.node_id, state="used") == 1
        assert _outcomes(s, "chronotick_agreement_rounds_total") == {}
        assert value(s, "chronotick_commit_wait_seconds_count") == 0

        # a round through the public API (a wide tolerance: it commits unless a clock is far
        # off); whatever its outcome, each node must count what its report or vote says
        with DistributedSyncCoordinator(connect=a.address) as sync:
            try:
                sync.schedule_synchronized_action(1.0, 50.0)
            except SyncAborted:
                pass
            result = sync.round_result(wait_s=5.0)
        decided = "committed" if result.committed else "aborted"
        s_a, s_b = _checked(port[a.node_id]), _checked(port[b.node_id])
        assert _outcomes(s_a, "chronotick_agreement_rounds_total") == {decided: 1}
        assert _outcomes(s_b, "chronotick_agreement_rounds_total") == {}  # a initiated it
        for node, s in ((a, s_a), (b, s_b)):
            if result.committed:
                expected = result.executions[node.node_id].phase  # executed or failed
            else:
                expected = "aborted" if result.votes[node.node_id][0] else "refused"
            assert _outcomes(s, "chronotick_agreement_actions_total") == {expected: 1}, result

        commits = subprocess.run(
            [sys.executable, "-m", "coordinator.cli", "commit", "--count", "3",
             "--connect", a.address, "--json"],
            capture_output=True, text=True, timeout=60, cwd=ROOT,
        )  # fmt: skip
        assert commits.returncode == 0, commits.stderr
        waits_ms = [json.loads(line)["commit_wait_ms"] for line in commits.stdout.splitlines()]
        s = _checked(port[a.node_id])
        assert _outcomes(s, "chronotick_commits_total") == {"committed": 3}
        assert value(s, "chronotick_commit_wait_seconds_count") == 3
        assert value(s, "chronotick_commit_wait_seconds_sum") == pytest.approx(
            sum(waits_ms) / 1000, abs=0.00001
        )
        assert value(s, "chronotick_commit_wait_seconds_bucket", le="+Inf") == 3
    with pytest.raises(urllib.error.URLError):  # stopped with the node
        scrape(port[a.node_id], timeout_s=1)
    with pytest.raises(NoDaemonError):
        ChronoTickClient(a.shm_name).get_time()
