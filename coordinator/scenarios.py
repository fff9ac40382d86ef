"""The three scenarios users run first: one action, a periodic one, a replicated write.

Each asks the local node to agree with its peers on instants, waits for them on this host's
clock, gathers what every participant reports, and judges the result by the spread of the
corrected instants the nodes ran at (what a node can know of itself; the demo and the
namespace tests also judge against the true clock, which only they know).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from coordinator.sync import DistributedSyncCoordinator, RoundResult, SyncAborted

NAMES = ("simple", "periodic", "write")
REPORT_DELAY_S = 0.05


@dataclasses.dataclass(frozen=True)
class ScenarioSpec:
    name: str
    actions: int
    delay_s: float
    tolerance_ms: float
    what: str


SPECS = {
    "simple": ScenarioSpec("simple", 1, 5.0, 1.0, "one action 5 s ahead"),
    "periodic": ScenarioSpec("periodic", 5, 2.0, 1.0, "five actions 2 s apart"),
    "write": ScenarioSpec(
        "write", 1, 3.0, 0.5, "a write every replica applies at one timestamp (±0.5 ms)"
    ),
}


@dataclasses.dataclass(frozen=True)
class ScenarioResult:
    name: str
    description: str
    tolerance_ms: float
    rounds: tuple[RoundResult, ...]

    @property
    def actions(self) -> int:
        return len(self.rounds)

    @property
    def spreads_us(self) -> list[float]:
        """Per committed round: latest − earliest corrected execution instant (µs)."""
        out = []
        for r in self.rounds:
            times_ns = [
                e.executed_at_ns for e in r.executions.values() if e.executed_at is not None
            ]
            if r.committed and times_ns:
                out.append((max(times_ns) - min(times_ns)) / 1e3)
        return out

    @property
    def max_spread_us(self) -> float | None:
        return max(self.spreads_us, default=None)

    @property
    def within_tolerance(self) -> bool:
        """Every round committed, every participant ran it, and each within the tolerance of
        the target by its own clock."""
        for r in self.rounds:
            if not r.committed:
                return False
            for node_id in r.participants:
                e = r.executions.get(node_id)
                if e is None or e.executed_at is None:
                    return False
                if abs(e.executed_at_ns - r.target_ns) > self.tolerance_ms * 1e6:
                    return False
        return True

    @property
    def verdict(self) -> str:
        if self.within_tolerance:
            return f"OK: every node acted within ±{self.tolerance_ms:g} ms of every target"
        aborted = [r for r in self.rounds if not r.committed]
        if aborted:
            return f"FAILED: {len(aborted)} round(s) aborted: " + "; ".join(aborted[0].reasons)
        return "FAILED: a node did not act, or acted outside the tolerance"

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.name,
            "description": self.description,
            "tolerance_ms": self.tolerance_ms,
            "actions": self.actions,
            "max_spread_us": self.max_spread_us,
            "within_tolerance": self.within_tolerance,
            "verdict": self.verdict,
            "rounds": [
                {
                    "action_id": r.action_id,
                    "target_ns": r.target_ns,
                    "committed": r.committed,
                    "reasons": list(r.reasons),
                    "nodes": {
                        n: {
                            "phase": e.phase,
                            "error_us": None
                            if e.executed_at is None
                            else round((e.executed_at_ns - r.target_ns) / 1e3, 1),
                            "bound_us": None if e.bound_s is None else round(e.bound_ns / 1e3, 1),
                            "base_time_ns": e.base_time_ns,
                            "host_time_ns": e.host_time_ns,
                        }
                        for n, e in sorted(r.executions.items())
                    },
                }
                for r in self.rounds
            ],
        }


def run(sync: DistributedSyncCoordinator, name: str) -> ScenarioResult:
    """Run scenario `name` through the node `sync` is attached to."""
    spec = SPECS[name]
    rounds = []
    for k in range(spec.actions):
        action = f"write scenario-{k}={sync.node_id}" if name == "write" else "mark"
        try:
            target, _ = sync.schedule_synchronized_action(spec.delay_s, spec.tolerance_ms, action)
        except SyncAborted:
            assert sync.last_round is not None
            rounds.append(sync.last_round)
            continue
        try:
            sync.wait_for_sync_point(target, spec.tolerance_ms)
        except ValueError:
            pass  # this host's bound grew past the tolerance: its report says so
        # ask for the reports a little later: a call landing on the node while its action
        # thread wakes would compete with it for the interpreter
        time.sleep(REPORT_DELAY_S)
        rounds.append(sync.round_result(wait_s=5.0))
    return ScenarioResult(spec.name, spec.what, spec.tolerance_ms, tuple(rounds))


def describe(result: ScenarioResult) -> str:
    """The human report: what was scheduled, each node's error, the verdict."""
    lines = [f"scenario {result.name}: {result.description}"]
    for r in result.rounds:
        state = "committed" if r.committed else "ABORTED"
        lines.append(f"  {r.action_id}: target {r.target_time:.6f} ({state})")
        for reason in r.reasons:
            lines.append(f"    reason: {reason}")
        for node_id, e in sorted(r.executions.items()):
            if e.executed_at is None:
                lines.append(f"    {node_id:<16} {e.phase:<10} {e.detail}")
            else:
                error_us = (e.executed_at_ns - r.target_ns) / 1e3
                bound_us = e.bound_ns / 1e3
                lines.append(f"    {node_id:<16} ran {error_us:+9.1f} µs  bound ±{bound_us:.1f} µs")
    spread = result.max_spread_us
    lines.append(f"  max spread {spread:.1f} µs" if spread is not None else "  no spread")
    lines.append(f"  {result.verdict}")
    return "\n".join(lines)
