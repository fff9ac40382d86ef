"""Sync points and commit timestamps across namespace hosts, judged by the true clock.

Each host runs `chronotick-node start` under libfaketime (offsets up to ±200 ms, drifts up to
±100 ppm) with chronyd -x as the NTP reference. The test process, on the true clock, attaches a
`DistributedSyncCoordinator` to a node over the bridge and asks for rounds; every participant
reports the base-clock instant it ran at, which the launcher's clock record maps to true time.

What the issue promises, checked here as stated:

- spread of the true execution instants ≤ 1 ms at the 99th percentile over ≥ 50 actions, for 3
  and for 8 nodes, and every reported bound contains that node's true error;
- over ≥ 1000 commits started from several nodes at once, no commit acknowledged before
  another began (true time) has the larger timestamp; mean commit wait beside mean bound.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.multihost.agreement_helpers import (
    ActionOutcome,
    attach,
    commit_burst,
    format_commits,
    format_summary,
    ready_cluster,
    run_actions,
    summarize_actions,
    summarize_commits,
)
from tests.multihost.conftest import ClusterFactory
from tests.multihost.nodes import close_channels, start_nodes
from tests.multihost.test_nodes import SKEWS

pytestmark = [pytest.mark.multihost, pytest.mark.slow]

#: node flags: the peer cadence of test_nodes.py
EXTRA = ["--peer-poll", "2", "--peer-expiry", "10"]
#: rounds back to back; 1 s is the shortest delay the issue allows, and keeps 60 rounds ~70 s
DELAY_S = 1.0
#: the bound a participant may have at the target to vote yes. Not the spread promise (that is
#: measured on the true clock, below): it only has to admit the bounds these clocks really have
#: (a few hundred µs to a few ms on the veth reference), so that every round commits.
TOLERANCE_MS = 20.0
#: 100 rounds: the 99th percentile (nearest rank) is then the 99th spread, not the largest
ACTIONS = 100
SPREAD_P99_NS = 1_000_000
COMMITS = 1000


@pytest.fixture(autouse=True)
def _channels() -> Iterator[None]:
    yield
    close_channels()


def _check_spread(outcomes: list[ActionOutcome], n_nodes: int) -> None:
    """The assertions shared by the 3- and 8-node tests, after printing everything a fix
    needs (the distribution, per node)."""
    summary = summarize_actions(outcomes)
    print(f"\n--- {n_nodes} nodes ---\n{format_summary(summary)}")
    aborted = [(o.action_id, o.reasons) for o in outcomes if not o.committed]
    assert not aborted, f"rounds aborted: {aborted[:5]}"
    for o in outcomes:
        assert len(o.participants) == n_nodes, (o.action_id, o.participants)
        assert set(o.true_ns) == set(o.participants), (o.action_id, o.not_run)
    assert not summary["bound_misses"], summary["bound_misses"][:10]
    assert summary["spread_ms"]["p99"] * 1e6 <= SPREAD_P99_NS, (
        f"spread p99 {summary['spread_ms']['p99']:.3f} ms > 1 ms over {len(outcomes)} actions"
    )


def _spread_test(cluster_factory: ClusterFactory, n_nodes: int) -> None:
    cluster = cluster_factory(n_nodes, reference=True, faketime=True)
    t0 = time.monotonic()
    nodes = start_nodes(cluster, SKEWS[:n_nodes], extra=EXTRA)
    steps = ready_cluster(nodes)
    syncs = attach(nodes)
    try:
        outcomes = run_actions(syncs, nodes, ACTIONS, DELAY_S, TOLERANCE_MS)
    finally:
        for s in syncs:
            s.close()
    print(
        f"\nready after {steps['mesh_s']:.1f} s (synchronized {steps['synchronized_s']:.1f} s); "
        f"{ACTIONS} rounds took {time.monotonic() - t0 - steps['mesh_s']:.1f} s"
    )
    _check_spread(outcomes, n_nodes)


def test_three_nodes_execute_within_a_millisecond_of_each_other(
    cluster_factory: ClusterFactory,
) -> None:
    _spread_test(cluster_factory, 3)


def test_eight_nodes_execute_within_a_millisecond_of_each_other(
    cluster_factory: ClusterFactory,
) -> None:
    _spread_test(cluster_factory, 8)


def test_commits_from_several_nodes_keep_true_time_order(
    cluster_factory: ClusterFactory,
) -> None:
    """≥ 1000 commits, one thread per node issuing them concurrently; ordering is judged on
    the test process's true clock (start before the call, ack after it returned)."""
    cluster = cluster_factory(3, reference=True, faketime=True)
    nodes = start_nodes(cluster, SKEWS[:3], extra=EXTRA)
    ready_cluster(nodes)
    records, errors, elapsed = commit_burst(nodes, COMMITS)
    summary = summarize_commits(records, errors, elapsed)
    print(f"\n{format_commits(summary)}")
    assert not errors, errors[:5]
    assert summary["commits"] >= COMMITS
    assert summary["nodes"] == 3
    assert summary["ordering_violations"] == 0, summary
    # the per-commit form: with true bounds each timestamp lies in its own true window
    assert summary["outside_true_window"] == 0, summary
