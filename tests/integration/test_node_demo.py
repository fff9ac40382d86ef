"""`chronotick-node demo`, the README's main job: a local cluster that converges, runs the three
scenarios and a burst of commits, judged against the true clock, and leaves nothing behind.

Also the example a user copies (examples/distributed_sync_example.py), against a small cluster
of real nodes, and the ordering-violation count the demo reports, against a brute force.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from chronotick.shm import SHM_DIR
from coordinator.demo import READY_BOUND_NS, READY_HORIZON_S, projected_bound_ns
from tests.helpers.node import FAST_TOML, free_tcp_port, node_processes, wait_until

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "distributed_sync_example.py"
DEMO_TIMEOUT_S = 180
#: `--commits N` is the number of commits in all, shared out over the nodes
COMMITS = 60


def _run(args: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    """Run a program; on timeout, SIGTERM it first so that it stops what it started (a
    SIGKILL would orphan the demo's nodes), then SIGKILL."""
    process = subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        out, err = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)
        try:
            out, err = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
        pytest.fail(f"{args} did not finish within {timeout_s} s; stderr:\n{err[-4000:]}")
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def _alive(pid: int) -> bool:
    """True if `pid` runs (a zombie counts as gone: it runs nothing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in args:
            found.append(f"{cmdline.parent.name}: {args}")
    return found


@pytest.fixture(scope="module")
def demo() -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    started = time.monotonic()
    result = _run(
        ["-m", "coordinator.cli", "demo", "--json", "--commits", str(COMMITS)], DEMO_TIMEOUT_S
    )
    lines = result.stdout.strip().splitlines()
    assert lines, f"no output; exit {result.returncode}; stderr:\n{result.stderr[-4000:]}"
    summary: dict[str, Any] = json.loads(lines[-1])
    summary["_wall_s"] = time.monotonic() - started
    return result, summary


@pytest.mark.integration
@pytest.mark.slow
def test_demo_json_summary(demo: tuple[subprocess.CompletedProcess[str], dict[str, Any]]) -> None:
    result, s = demo
    context = f"summary: {json.dumps(s)}\nstderr (tail):\n{result.stderr[-3000:]}"
    assert "error" not in s, context
    assert s["nodes"] == 3
    assert set(s["scenarios"]) == {"simple", "periodic", "write"}
    for name, actions in (("simple", 1), ("periodic", 5), ("write", 1)):
        sc = s["scenarios"][name]
        assert sc["actions"] == actions, context
        assert isinstance(sc["max_spread_us"], float), context
        assert isinstance(sc["within_tolerance"], bool), context
    assert s["commits"] == COMMITS and s["commit_failures"] == 0, context
    assert isinstance(s["ordering_violations"], int)
    assert isinstance(s["mean_commit_wait_ms"], float) and s["mean_commit_wait_ms"] > 0
    assert isinstance(s["mean_bound_ms"], float) and s["mean_bound_ms"] > 0


@pytest.mark.integration
@pytest.mark.slow
def test_demo_holds_its_promises_in_true_time(
    demo: tuple[subprocess.CompletedProcess[str], dict[str, Any]],
) -> None:
    """Every node acted within every tolerance of the target on the host's real clock, all
    within 1 ms of each other, and no commit that finished before another began got the
    larger timestamp. A miss names its cause: `max_clock_error_us` is the clocks' share,
    the rest is how late a node's thread woke on this machine."""
    result, s = demo
    context = f"summary: {json.dumps(s)}\nstderr (tail):\n{result.stderr[-3000:]}"
    for name, sc in s["scenarios"].items():
        assert sc["within_tolerance"], f"{name} out of tolerance in true time\n{context}"
        assert sc["max_spread_us"] < 1000, f"{name}: spread {sc['max_spread_us']} µs\n{context}"
    assert s["ordering_violations"] == 0, context
    assert s["ok"] is True and result.returncode == 0, context


@pytest.mark.integration
@pytest.mark.slow
def test_demo_leaves_no_process_or_segment(
    demo: tuple[subprocess.CompletedProcess[str], dict[str, Any]],
) -> None:
    _, s = demo
    assert s["pids"] and len(s["pids"]) == s["nodes"] + 1  # the nodes and the NTP reference
    assert [pid for pid in s["pids"] if _alive(pid)] == []
    assert _processes_mentioning(s["cluster"]) == []
    token = s["cluster"].removeprefix("demo-")
    assert [f for f in os.listdir(SHM_DIR) if token in f] == []
    assert "logs" not in s  # a passing run removes its log directory


@pytest.mark.integration
@pytest.mark.slow
def test_demo_takes_about_a_minute(
    demo: tuple[subprocess.CompletedProcess[str], dict[str, Any]],
) -> None:
    _, s = demo
    assert s["_wall_s"] < 120, f"the demo took {s['_wall_s']:.0f} s"


@pytest.mark.integration
def test_demo_refuses_bad_arguments() -> None:
    for args in (["--nodes", "1"], ["--nodes", "9"], ["--commits", "0"]):
        result = _run(["-m", "coordinator.cli", "demo", *args], 30)
        assert result.returncode == 2, (args, result.stderr)
        assert "demo" in result.stderr


# -- the example program -----------------------------------------------------------------------


@pytest.mark.integration
def test_example_says_when_no_node_runs_there() -> None:
    port = free_tcp_port()
    result = _run([str(EXAMPLE), "--node-id", "x", "--connect", f"127.0.0.1:{port}"], 30)
    assert result.returncode == 1
    assert f"127.0.0.1:{port}" in result.stderr and "running there?" in result.stderr


@pytest.mark.integration
@pytest.mark.slow
def test_example_runs_a_scenario_on_real_nodes(tmp_path: Path) -> None:
    """Two real nodes with simulated clocks, as in the demo; the example attached to one."""
    with node_processes(tmp_path) as procs:
        ntp = procs.ntp_server()
        ports = [free_tcp_port(), free_tcp_port()]
        nodes = []
        for i, (offset_ms, drift_ppm) in enumerate(((-20.0, 30.0), (35.0, -15.0))):
            config = tmp_path / f"e{i}.toml"
            config.write_text(
                FAST_TOML + f"\n[simulated_clock]\noffset_ms = {offset_ms}\n"
                f"drift_ppm = {drift_ppm}\nseed = {i}\n"
            )
            node = procs.node(f"e{i}", ports[i], ntp, peers=[ports[1 - i]],
                              extra=["--config", str(config)])  # fmt: skip
            nodes.append(node)
        for node in nodes:
            node.wait_synchronized()

        def ready() -> bool:
            # as the demo waits: the peer known, and room under the tolerance at the target
            for node in nodes:
                bound = projected_bound_ns(node.shm_name, READY_HORIZON_S)
                if node.status().peers_known != 1 or bound is None or bound > READY_BOUND_NS:
                    return False
            return True

        wait_until(ready, 45, lambda: f"the nodes to be ready: {[n.status() for n in nodes]}")
        wrong = _run([str(EXAMPLE), "--node-id", "e1", "--connect", nodes[0].address], 30)
        assert wrong.returncode == 1 and "not 'e1'" in wrong.stderr
        result = _run(
            [str(EXAMPLE), "--node-id", "e0", "--scenario", "simple", "--connect",
             nodes[0].address],
            60,
        )  # fmt: skip
    assert "scenario simple" in result.stdout, result.stderr
    assert "e0" in result.stdout and "e1" in result.stdout
    assert result.returncode == 0 and "OK:" in result.stdout, result.stdout + result.stderr
