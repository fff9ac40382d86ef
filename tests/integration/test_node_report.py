"""`chronotick-node status` and `report` against real nodes on 127.0.0.1.

The promise (issue 7, observability for people): `status` reads like `chronyc tracking` +
`sources` + the peers, with the same values `--json` prints; the node keeps a bounded history
of its published offset, σ and bound and of its NTP samples, which `report` summarizes and
plots; the log says once what changed and why. One scene: node `a` with a real NTP reference
and a server that never answers, peering with node `b`; after about 12 s of history both
commands run as a user would run them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.fake_ntp import FakeNtpServer, silent
from tests.helpers.node import ROOT, free_tcp_port, node_processes, wait_until
from tests.helpers.segments import unique_name

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: seconds of history the node gathers (after it synchronized) before the report
HISTORY_S = 12.0


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coordinator.cli", *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip


def test_status_table_report_and_plot_of_a_running_node(tmp_path: Path) -> None:
    with FakeNtpServer(silent) as dead_server, node_processes(tmp_path) as procs:
        dead = dead_server.address
        ntp = procs.ntp_server()
        port_a, port_b = free_tcp_port(), free_tcp_port()
        a = procs.node(unique_name("a"), port_a, ntp, peers=[port_b],
                       extra=["--server", dead])  # fmt: skip
        b = procs.node(unique_name("b"), port_b, ntp, peers=[port_a])
        a.wait_synchronized()
        synced = time.monotonic()
        wait_until(
            lambda: a.status().peers_used == 1 and a.status().sources[1].state == "unreachable",
            15,
            lambda: f"a to use b and call {dead} unreachable:\n{a.log()}",
        )
        time.sleep(max(0.0, HISTORY_S - (time.monotonic() - synced)))

        table = run_cli("status", "--connect", a.address)
        status_run = run_cli("status", "--connect", a.address, "--json")
        png = tmp_path / "out.png"
        report_run = run_cli("report", "--connect", a.address, "--plot", str(png), "--json")
        log_a = a.log()

    # -- the table: header, sources with reach, peers -------------------------------------
    assert table.returncode == 0, table.stderr
    status: dict[str, Any] = json.loads(status_run.stdout)
    lines = table.stdout.splitlines()
    assert lines[0].startswith(f"Node          : {a.node_id} (cluster default), chronotick ")
    assert lines[1].startswith("Status        : SYNCHRONIZED")
    header = lines.index(next(line for line in lines if line.startswith("SERVER")))
    real, unanswered = (lines[header + 1].split(), lines[header + 2].split())
    by_server = {s["server"]: s for s in status["sources"]}
    assert real[:3] == [ntp, "used", f"{by_server[ntp]['reach']:03o}"]
    assert by_server[ntp]["reach"] & 0b111 == 0b111  # its last three polls were answered
    assert unanswered[:3] == [dead, "unreachable", "000"]
    assert by_server[dead]["offset_ns"] is None
    peer_rows = [line.split() for line in lines if line.startswith(b.node_id)]
    assert len(peer_rows) == 1 and peer_rows[0][1:4] == [b.address, "static", "used"]
    assert "Sources       : 1 of 2 reachable" in table.stdout
    # the JSON keeps every older field and adds the new ones
    assert {
        "node_id",
        "status",
        "correction_ns",
        "sigma_ns",
        "bound_ns",
        "drift_ppb",
        "sources_configured",
        "sources_reachable",
        "peers_known",
        "peers_used",
    } <= set(status)
    assert status["peers"][0]["node_id"] == b.node_id and status["consensus"]["peers_used"] == 1
    assert 0 <= status["last_sample_age_s"] < 5 and status["poll_interval_s"] >= 1  # fmt: skip

    # -- the report: points agree with the status -----------------------------------------
    assert report_run.returncode == 0, report_run.stderr
    report: dict[str, Any] = json.loads(report_run.stdout)
    points = report["points"]
    synced_points = [p for p in points if p["status"] == "SYNCHRONIZED"]
    assert len(synced_points) >= HISTORY_S - 1  # about one a second
    ages = [p["age_s"] for p in points]
    assert ages == sorted(ages, reverse=True) and ages[-1] < 1.5
    newest = points[-1]
    assert newest["status"] == status["status"] and newest["source"] == status["source"]
    # taken a second or so apart from the same model: within each other's bound
    assert abs(newest["offset_ns"] - status["correction_ns"]) <= max(
        newest["bound_ns"], status["bound_ns"]
    )
    assert 0.2 < newest["sigma_ns"] / status["sigma_ns"] < 5
    assert 0.2 < newest["bound_ns"] / status["bound_ns"] < 5
    assert any(p["consensus_offset_ns"] is not None for p in points[-5:])  # b is used
    samples = report["samples"]
    assert {s["server"] for s in samples} == {ntp}  # the dead one never gave a sample
    assert len(samples) >= HISTORY_S / 2  # polled every 1-2 s
    # the reference serves this host's own clock: its samples sit inside the bound
    assert all(abs(s["offset_ns"]) < p["bound_ns"] + 1_000_000 for s, p in
               zip(samples[-5:], synced_points[-5:], strict=False))  # fmt: skip
    changes = report["status_changes"]
    assert changes[0]["from"] == "UNKNOWN" and changes[0]["to"] == "SYNCHRONIZED"
    # by its own NTP model, or first by b's (a waits for the dead server's first poll)
    reason = changes[0]["reason"]
    assert reason.startswith("the model fits") or reason == (
        "the NTP estimate is UNKNOWN, the consensus of 1 peer is synchronized"
    ), reason
    assert f"-> SYNCHRONIZED: {reason}" in log_a  # the log said the same, when it happened
    summary = report["summary"]
    assert summary["points"] == len(points) and summary["status"] == "SYNCHRONIZED"
    assert summary["offset_min_ns"] <= newest["offset_ns"] <= summary["offset_max_ns"]

    # -- the plot ---------------------------------------------------------------------------
    import matplotlib.image

    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 20_000
    pixels = matplotlib.image.imread(str(png))
    colours = {tuple(p) for p in pixels.reshape(-1, pixels.shape[2])[::7].tolist()}
    assert len(colours) > 50

    # -- the log: each change once, with its reason ------------------------------------------
    unreachable = [line for line in log_a.splitlines() if f"{dead} unreachable" in line]
    assert len(unreachable) == 1, log_a
    assert "none of its 3 polls was answered (timeout ×" in unreachable[0]
    assert log_a.count("status UNKNOWN -> SYNCHRONIZED: the model fits") == 1, log_a
    assert log_a.count(f"peer {b.node_id} at 127.0.0.1:{port_b} (static)") == 1, log_a
    assert "Traceback" not in log_a
