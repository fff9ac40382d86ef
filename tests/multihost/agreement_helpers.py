"""Agreement measured against the truth: rounds and commit bursts on namespace clusters.

Shared by tests/multihost/test_agreement.py and benchmarks/agreement_cluster.py, so that the
test's promise and the benchmark's figures are computed the same way.

The test process sits on the bridge and on the true clock. A node's report names the instant it
ran on its *base* clock (`base_time_ns`, the faked CLOCK_REALTIME of its host); the launcher's
record of that clock against a raw syscall (`Proc.true_ns_at`) maps it to true time to within
~20 µs, far tighter than the ~1 ms window of a gRPC call on the bridge. That is what makes
"spread of actual execution instants, against the true clock" measurable at all.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Sequence
from typing import Any

from coordinator.commits import CommitRecord, check_ordering
from coordinator.commits import commit_burst as shared_commit_burst
from coordinator.sync import DistributedSyncCoordinator, RoundResult, SyncAborted
from tests.multihost.nodes import PORT, Node, wait_full_mesh, wait_serving, wait_status

NS_PER_S = 1_000_000_000
#: `NodeExecution.executed_at` and `RoundResult.target_time` are float seconds: at 1.7e9 s a
#: double resolves 2^-22 s ≈ 238 ns, so converting back to ns may be off by up to ~120 ns.
#: Comparisons of those values allow this much and no more (a representation error, not a
#: tolerance on the clock).
FLOAT_NS = 250


def nearest_rank(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in (0, 1]): the value itself, never an interpolation."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def ready_cluster(nodes: Sequence[Node], sync_timeout_s: float = 120.0) -> dict[str, float]:
    """Wait until every node serves, is SYNCHRONIZED, and lists every other one.

    Agreement rounds go to "every known peer", so a round started before the full mesh would
    quietly leave nodes out. Returns how long each step took (s), for the reports.
    """
    start = time.monotonic()
    wait_serving(nodes, timeout_s=60.0)
    serving = time.monotonic()
    wait_status(list(nodes), "SYNCHRONIZED", timeout_s=sync_timeout_s)
    synced = time.monotonic()
    mesh_s = wait_full_mesh(nodes, timeout_s=60.0)
    if mesh_s is None:
        raise AssertionError("nodes never all listed each other")
    return {
        "serving_s": serving - start,
        "synchronized_s": synced - start,
        "mesh_s": time.monotonic() - start,
    }


def attach(nodes: Sequence[Node]) -> list[DistributedSyncCoordinator]:
    """One coordinator per node, over the bridge (the test process is an application)."""
    return [DistributedSyncCoordinator(connect=f"{n.host.address}:{PORT}") for n in nodes]


# -- sync points -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ActionOutcome:
    """One round, every participant's report mapped to true time."""

    action_id: str
    initiator: str
    committed: bool
    reasons: tuple[str, ...]
    participants: tuple[str, ...]
    target_ns: int
    #: the StartRound call as seen by the test process (true clock), s
    start_round_s: float
    #: node id -> report phase, and why not executed (for the nodes that did not run)
    phases: dict[str, str]
    not_run: dict[str, str]
    #: node id -> true instant it ran
    true_ns: dict[str, int]
    #: node id -> its corrected reading then, and its bound then
    executed_at_ns: dict[str, int]
    bound_ns: dict[str, int]
    #: node id -> widest bound it voted with at the target
    vote_bound_ns: dict[str, int]

    @property
    def executed(self) -> list[str]:
        return sorted(self.true_ns)

    @property
    def spread_ns(self) -> int | None:
        """Latest minus earliest true execution instant (None with fewer than two)."""
        if len(self.true_ns) < 2:
            return None
        return max(self.true_ns.values()) - min(self.true_ns.values())

    def lateness_ns(self) -> dict[str, int]:
        """True instant minus target: how late each node really ran."""
        return {n: t - self.target_ns for n, t in self.true_ns.items()}

    def wake_ns(self) -> dict[str, int]:
        """Corrected reading minus target: how late each node *thinks* it ran (its wake-up
        latency); lateness = wake − clock error, which splits a spread into its two causes."""
        return {n: e - self.target_ns for n, e in self.executed_at_ns.items()}

    def clock_error_ns(self) -> dict[str, int]:
        """Corrected reading minus true instant: the node's clock error when it ran."""
        return {n: self.executed_at_ns[n] - t for n, t in self.true_ns.items()}

    def bound_misses(self) -> dict[str, tuple[int, int]]:
        """node id -> (|error|, bound) where the reported bound did not contain the truth."""
        out = {}
        for n, err in self.clock_error_ns().items():
            if abs(err) > self.bound_ns[n] + FLOAT_NS:
                out[n] = (abs(err), self.bound_ns[n])
        return out


def run_action(
    sync: DistributedSyncCoordinator,
    by_id: dict[str, Node],
    delay_s: float,
    tolerance_ms: float,
    report_wait_s: float = 5.0,
) -> ActionOutcome:
    """Schedule one action from `sync`'s node, wait for every report, map them to true time."""
    t0 = time.monotonic()
    try:
        sync.schedule_synchronized_action(delay_s, tolerance_ms)
    except SyncAborted:
        pass  # the round is recorded in last_round; the caller asserts on `committed`
    start_round_s = time.monotonic() - t0
    assert sync.last_round is not None
    wait_s = max(0.0, sync.last_round.target_time - time.time()) + report_wait_s
    result = sync.round_result(wait_s=wait_s if sync.last_round.committed else 0.0)
    return outcome_of(result, sync.node_id, by_id, start_round_s)


def outcome_of(
    result: RoundResult, initiator: str, by_id: dict[str, Node], start_round_s: float
) -> ActionOutcome:
    true_ns: dict[str, int] = {}
    executed_at: dict[str, int] = {}
    bounds: dict[str, int] = {}
    for node_id, ex in result.executions.items():
        if ex.phase != "executed" or ex.executed_at is None or ex.bound_s is None:
            continue
        true_ns[node_id] = by_id[node_id].proc.true_ns_at(ex.base_time_ns)
        executed_at[node_id] = round(ex.executed_at * NS_PER_S)
        bounds[node_id] = round(ex.bound_s * NS_PER_S)
    return ActionOutcome(
        action_id=result.action_id,
        initiator=initiator,
        committed=result.committed,
        reasons=result.reasons,
        participants=result.participants,
        target_ns=round(result.target_time * NS_PER_S),
        start_round_s=start_round_s,
        phases={n: e.phase for n, e in result.executions.items()},
        not_run={
            n: f"{e.phase}: {e.detail}" if n in result.executions else "no report"
            for n, e in ((n, result.executions.get(n)) for n in result.participants)
            if e is None or e.phase != "executed"
        },
        true_ns=true_ns,
        executed_at_ns=executed_at,
        bound_ns=bounds,
        vote_bound_ns={n: round(b * NS_PER_S) for n, (_, _, b) in result.votes.items()},
    )


def run_actions(
    syncs: Sequence[DistributedSyncCoordinator],
    nodes: Sequence[Node],
    count: int,
    delay_s: float,
    tolerance_ms: float,
) -> list[ActionOutcome]:
    """`count` rounds back to back, the initiator rotating over the nodes (each node's
    StartRound path and clock gets to be the one the others follow)."""
    by_id = {n.node_id: n for n in nodes}
    return [run_action(syncs[i % len(syncs)], by_id, delay_s, tolerance_ms) for i in range(count)]


def summarize_actions(outcomes: Sequence[ActionOutcome]) -> dict[str, Any]:
    """Spreads, per-node lateness, wake-up latency and clock error, and bound containment.

    The per-node split is what a fix needs: a spread made of wake-up latency (the node ran
    late by its own clock) calls for a different remedy than one made of clock error.
    """
    spreads = [o.spread_ns for o in outcomes if o.spread_ns is not None]
    per_node: dict[str, dict[str, list[int]]] = {}
    misses = []
    for o in outcomes:
        late, wake, err = o.lateness_ns(), o.wake_ns(), o.clock_error_ns()
        for n in o.true_ns:
            row = per_node.setdefault(n, {"late": [], "wake": [], "err": [], "bound": []})
            row["late"].append(late[n])
            row["wake"].append(wake[n])
            row["err"].append(err[n])
            row["bound"].append(o.bound_ns[n])
        misses.extend((o.action_id, n, e, b) for n, (e, b) in o.bound_misses().items())
    latency = [o.start_round_s for o in outcomes]

    def stats_us(values: Sequence[int]) -> dict[str, float]:
        return {
            "min": min(values) / 1e3,
            "p50": nearest_rank(values, 0.5) / 1e3,
            "p99": nearest_rank(values, 0.99) / 1e3,
            "max": max(values) / 1e3,
        }

    return {
        "actions": len(outcomes),
        "committed": sum(o.committed for o in outcomes),
        "fully_executed": sum(
            o.committed and len(o.true_ns) == len(o.participants) for o in outcomes
        ),
        "spread_ms": {
            "p50": nearest_rank(spreads, 0.5) / 1e6,
            "p99": nearest_rank(spreads, 0.99) / 1e6,
            "max": max(spreads, default=math.nan) / 1e6,
            "mean": statistics.fmean(spreads) / 1e6 if spreads else math.nan,
        },
        "over_1ms": sum(s > 1_000_000 for s in spreads),
        "not_run": [(o.action_id, o.not_run) for o in outcomes if o.not_run][:5],
        "round_latency_ms": {
            "p50": nearest_rank(latency, 0.5) * 1e3,
            "p99": nearest_rank(latency, 0.99) * 1e3,
        },
        "reports": sum(len(o.true_ns) for o in outcomes),
        "bound_misses": misses,
        "per_node_us": {
            n: {k: stats_us(v) for k, v in sorted(row.items())}
            for n, row in sorted(per_node.items())
        },
    }


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable block for `pytest -s` and the benchmark: spreads, then one line per
    node (true lateness, wake-up latency, clock error, bound; µs)."""
    s = summary["spread_ms"]
    lines = [
        f"{summary['actions']} actions, {summary['committed']} committed, "
        f"{summary['fully_executed']} executed by every participant; spread (true clock) "
        f"p50 {s['p50']:.3f} ms, p99 {s['p99']:.3f} ms, max {s['max']:.3f} ms, "
        f"mean {s['mean']:.3f} ms; {summary['over_1ms']} over 1 ms",
        f"StartRound p50 {summary['round_latency_ms']['p50']:.1f} ms, "
        f"p99 {summary['round_latency_ms']['p99']:.1f} ms; "
        f"bound misses {len(summary['bound_misses'])} of {summary['reports']} reports",
        "node   true lateness µs (min/p50/p99/max) | wake by own clock µs | clock error µs"
        " | bound µs (p50/max)",
    ]

    def q(r: dict[str, float]) -> str:
        return f"{r['min']:7.0f} {r['p50']:6.0f} {r['p99']:6.0f} {r['max']:6.0f}"

    for n, row in summary["per_node_us"].items():
        lines.append(
            f"{n:<5} {q(row['late'])} | {q(row['wake'])} | {q(row['err'])} | "
            f"{row['bound']['p50']:6.0f} {row['bound']['max']:6.0f}"
        )
    for miss in summary["bound_misses"][:10]:
        lines.append(f"bound miss: {miss[0]} {miss[1]}: |error| {miss[2]} ns > bound {miss[3]} ns")
    return "\n".join(lines)


# -- commit timestamps -------------------------------------------------------------------------


def commit_burst(nodes: Sequence[Node], total: int) -> tuple[list[CommitRecord], list[str], float]:
    """`total` commits from every node at once (coordinator.commits.commit_burst), judged on
    this process's clock, which is the true one."""
    return shared_commit_burst({n.node_id: n.address for n in nodes}, total)


def summarize_commits(
    records: Sequence[CommitRecord], errors: Sequence[str], elapsed_s: float
) -> dict[str, Any]:
    check = check_ordering(records)
    call = [r.true_ack_ns - r.true_start_ns for r in records]
    return {
        "commits": len(records),
        "errors": len(errors),
        "first_errors": list(errors[:3]),
        "nodes": len({r.node_id for r in records}),
        "commits_per_s": len(records) / elapsed_s if elapsed_s > 0 else math.nan,
        "ordering_violations": check.violations,
        "min_margin_us": None if check.min_margin_ns is None else check.min_margin_ns / 1e3,
        "outside_true_window": check.outside_window,
        "mean_commit_wait_ms": statistics.fmean(r.commit_wait_ns for r in records) / 1e6
        if records
        else math.nan,
        "mean_max_bound_ms": statistics.fmean(r.max_bound_ns for r in records) / 1e6
        if records
        else math.nan,
        "mean_call_ms": statistics.fmean(call) / 1e6 if call else math.nan,
    }


def format_commits(summary: dict[str, Any]) -> str:
    return (
        f"{summary['commits']} commits from {summary['nodes']} nodes "
        f"({summary['commits_per_s']:.0f}/s, {summary['errors']} errors); "
        f"ordering violations {summary['ordering_violations']} (closest margin "
        f"{summary['min_margin_us']} µs); outside [true start, true ack] "
        f"{summary['outside_true_window']}; mean commit wait "
        f"{summary['mean_commit_wait_ms']:.3f} ms vs mean max bound "
        f"{summary['mean_max_bound_ms']:.3f} ms (whole call {summary['mean_call_ms']:.3f} ms)"
    )
