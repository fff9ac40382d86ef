"""Sync-point spread, round latency and commit throughput for N nodes in network namespaces.

    sudo .venv/bin/python -m benchmarks.agreement_cluster [--sizes 2 4 8 16] [--actions K]
        [--commits C] [--json]

For each N: a bridge, N namespaces each running `chronotick-node start` under its own skewed
clock (libfaketime, offsets over ±200 ms, rates over ±100 ppm) and chronyd as the NTP
reference. Once every node is SYNCHRONIZED and lists every other one, the benchmark runs K
sync-point rounds back to back (1 s ahead, the initiator rotating over the nodes) and reports

- the spread of the true execution instants (each node's report mapped to true time through
  its launcher's clock record): p50, p99 (nearest rank), max;
- round latency: the StartRound call (propose, vote, decide, tell) as the caller sees it;
- a commit burst (one thread per node, up to 4): commits/s, mean commit wait beside the mean
  largest bound (TrueTime waits about twice the bound; the rest is RPC and scheduling).

Ratios are to the first size, measured in the same run (this machine is shared and noisy: read
the ratios, not the absolute times). Last, the wall time of `python -m coordinator.cli demo
--json`, run as a subprocess, or why it could not be timed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

from benchmarks.peer_cluster import skews
from tests.conftest import libfaketime_path
from tests.multihost.agreement_helpers import (
    attach,
    commit_burst,
    ready_cluster,
    run_actions,
    summarize_actions,
    summarize_commits,
)
from tests.multihost.netns import Cluster, cleanup_stale
from tests.multihost.nodes import close_channels, start_nodes

DELAY_S = 1.0
#: the bound a voter may have (see tests/multihost/test_agreement.py): admits every round, so
#: the spread, not the vote, is what is measured
TOLERANCE_MS = 20.0
COMMIT_THREADS = 4
DEMO_TIMEOUT_S = 300.0


def measure(n: int, actions: int, commits: int) -> dict[str, Any]:
    """One cluster of `n` nodes: rounds, then a commit burst. Failures become fields (a
    benchmark that dies at N = 16 would lose the figures of N = 2 to 8)."""
    row: dict[str, Any] = {"nodes": n}
    with Cluster(n, reference=True, libfaketime=libfaketime_path()) as cluster:
        nodes = start_nodes(cluster, skews(n), extra=["--peer-poll", "2", "--peer-expiry", "10"])
        try:
            steps = ready_cluster(nodes, sync_timeout_s=180.0)
            row["ready_s"] = round(steps["mesh_s"], 1)
            syncs = attach(nodes)
            try:
                outcomes = run_actions(syncs, nodes, actions, DELAY_S, TOLERANCE_MS)
                s = summarize_actions(outcomes)
                row.update(
                    actions=s["actions"],
                    committed=s["committed"],
                    fully_executed=s["fully_executed"],
                    spread_p50_ms=round(s["spread_ms"]["p50"], 3),
                    spread_p99_ms=round(s["spread_ms"]["p99"], 3),
                    spread_max_ms=round(s["spread_ms"]["max"], 3),
                    over_1ms=s["over_1ms"],
                    not_run=s["not_run"],
                    bound_misses=len(s["bound_misses"]),
                    round_p50_ms=round(s["round_latency_ms"]["p50"], 1),
                    round_p99_ms=round(s["round_latency_ms"]["p99"], 1),
                    wake_p50_us={k: v["wake"]["p50"] for k, v in s["per_node_us"].items()},
                )
                records, errors, elapsed = commit_burst(nodes[:COMMIT_THREADS], commits)
                c = summarize_commits(records, errors, elapsed)
                row.update(
                    commits=c["commits"],
                    commit_errors=c["errors"],
                    commits_per_s=round(c["commits_per_s"], 1),
                    ordering_violations=c["ordering_violations"],
                    mean_commit_wait_ms=round(c["mean_commit_wait_ms"], 3),
                    mean_max_bound_ms=round(c["mean_max_bound_ms"], 3),
                )
            finally:
                for sync in syncs:
                    sync.close()
        except (AssertionError, RuntimeError) as exc:
            row["error"] = str(exc).splitlines()[0][:200]
        finally:
            close_channels()
    return row


def time_demo() -> dict[str, Any]:
    """Wall time of the demo as a user runs it; a failing demo is reported, not raised."""
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "coordinator.cli", "demo", "--json"],
            capture_output=True,
            text=True,
            timeout=DEMO_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return {"demo_s": None, "demo_error": f"no result within {DEMO_TIMEOUT_S:.0f} s"}
    elapsed = round(time.monotonic() - t0, 1)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no stderr)"])[-1][:200]
        return {"demo_s": None, "demo_error": f"exit {proc.returncode} after {elapsed} s: {tail}"}
    return {"demo_s": elapsed}


RATIO_KEYS = (
    "spread_p50_ms",
    "spread_p99_ms",
    "round_p50_ms",
    "commits_per_s",
    "mean_commit_wait_ms",
)


def add_ratios(rows: list[dict[str, Any]]) -> None:
    base = rows[0]
    for row in rows:
        for key in RATIO_KEYS:
            b, v = base.get(key), row.get(key)
            row[f"{key}_ratio"] = round(v / b, 2) if b and v is not None else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 4, 8, 16])
    parser.add_argument("--actions", type=int, default=30, help="rounds per size (default 30)")
    parser.add_argument("--commits", type=int, default=300, help="commits per size")
    parser.add_argument("--no-demo", action="store_true", help="skip timing the demo")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    cleanup_stale()
    rows = [measure(n, args.actions, args.commits) for n in args.sizes]
    add_ratios(rows)
    demo = {"demo_s": None, "demo_error": "skipped"} if args.no_demo else time_demo()
    if args.json:
        for row in rows:
            print(json.dumps(row))
        print(json.dumps(demo))
        return 0
    print(
        f"{'N':>3} {'ready s':>7} {'ok':>7} {'spread p50':>10} {'p99':>7} {'max ms':>7}"
        f" {'×N0 p99':>7} {'>1ms':>4} {'round p50':>9} {'p99 ms':>7} {'×N0':>5}"
        f" {'commit/s':>8} {'×N0':>5} {'wait ms':>7} {'bound ms':>8} {'order':>5}"
    )
    for r in rows:
        if "error" in r and "spread_p50_ms" not in r:
            print(f"{r['nodes']:>3} failed: {r['error']}")
            continue
        print(
            f"{r['nodes']:>3} {r['ready_s']:>7} {r['fully_executed']:>3}/{r['actions']:<3}"
            f" {r['spread_p50_ms']:>10.3f} {r['spread_p99_ms']:>7.3f} {r['spread_max_ms']:>7.3f}"
            f" {r['spread_p99_ms_ratio']!s:>7} {r['over_1ms']:>4}"
            f" {r['round_p50_ms']:>9.1f} {r['round_p99_ms']:>7.1f} {r['round_p50_ms_ratio']!s:>5}"
            f" {r.get('commits_per_s', '-')!s:>8} {r.get('commits_per_s_ratio', '-')!s:>5}"
            f" {r.get('mean_commit_wait_ms', '-')!s:>7} {r.get('mean_max_bound_ms', '-')!s:>8}"
            f" {r.get('ordering_violations', '-')!s:>5}"
        )
        if "error" in r:
            print(f"    error: {r['error']}")
        for action_id, why in r.get("not_run", []):
            print(f"    {action_id} not run everywhere: {why}")
    for r in rows:
        if "wake_p50_us" in r:
            wakes = " ".join(f"{k} {v:.0f}" for k, v in r["wake_p50_us"].items())
            print(f"N={r['nodes']} wake-up lateness by own clock, p50 µs: {wakes}")
    if demo["demo_s"] is not None:
        print(f"demo (python -m coordinator.cli demo --json): {demo['demo_s']} s")
    else:
        print(f"demo not timed: {demo['demo_error']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
