"""A node's metrics on a hand-made peer table and agreement counts: every catalog family, the
peers' offsets and states (a falseticker among three), the consensus, and counters that exist
at zero before anything happened."""

from __future__ import annotations

import pytest

from chronotick.metrics import MetricsEndpoint, markdown_table
from chronotick.status import ClockStatus
from coordinator.metrics import (
    ACTION_OUTCOMES,
    NODE_METRICS,
    AgreementStats,
    NodeReading,
    node_families,
)
from coordinator.peer_table import Exchange, PeerClock, PeerTable
from tests.helpers.metrics import families_of, parse, promtool_check, samples_of, value

S = 1_000_000_000
T0 = 1_790_000_000 * S
MONO = 50 * S


def _exchange(node_id: str, skew_ns: int, clock: PeerClock) -> Exchange:
    t1 = T0
    t2 = t1 + 100_000 + skew_ns
    t3 = t2 + 10_000
    t4 = t3 - skew_ns + 100_000
    return Exchange(node_id, f"{node_id}:1", "static", t1, t2, t3, t4, clock)


def _reading(stats: AgreementStats, with_peers: bool = True) -> NodeReading:
    table = PeerTable(expiry_s=10.0, drift_tolerance_ppb=5000.0)
    if with_peers:
        synced = PeerClock(0, 50_000.0, 200_000, ClockStatus.SYNCHRONIZED)
        liar = PeerClock(40_000_000, 50_000.0, 200_000, ClockStatus.SYNCHRONIZED)
        warming = PeerClock(0, float("inf"), 0, ClockStatus.UNKNOWN)
        table.update(_exchange("a", 3_000_000, synced), MONO - 2 * S)
        table.update(_exchange("b", 3_000_000, synced), MONO - S)
        table.update(_exchange("liar", 0, liar), MONO - S)
        table.update(_exchange("new", 0, warming), MONO - S)
    result = table.consensus(T0 + 110_000, own_drift_ppb=0.0)
    return NodeReading(
        monotonic_ns=MONO,
        peers=tuple(table.entries()),
        states=result.states,
        consensus=result.consensus,
        rounds=stats.rounds.snapshot(),
        actions=stats.actions.snapshot(),
        commits=stats.commits.snapshot(),
        commit_wait=stats.commit_wait.snapshot(),
    )


def _render(r: NodeReading) -> str:
    endpoint = MetricsEndpoint()
    endpoint.add("node", lambda: node_families(r))
    return endpoint.render().decode()


def _busy_stats() -> AgreementStats:
    stats = AgreementStats()
    stats.rounds.add("committed")
    stats.actions.add("executed")
    stats.commits.add("committed")
    stats.commit_wait.observe(0.0004)
    return stats


@pytest.mark.parametrize(
    ("stats", "with_peers"),
    [(AgreementStats(), True), (AgreementStats(), False), (_busy_stats(), True)],
    ids=["peers", "alone", "after-rounds"],
)
def test_promtool_finds_no_problem(stats: AgreementStats, with_peers: bool) -> None:
    promtool_check(_render(_reading(stats, with_peers)))


def test_the_node_catalog_is_exported_whole() -> None:
    body = _render(_reading(AgreementStats()))
    assert families_of(body) - {"chronotick_scrape_collector_success"} == {
        spec.name for spec in NODE_METRICS
    }
    table = markdown_table(NODE_METRICS)
    assert all(f"`{spec.name}`" in table for spec in NODE_METRICS)


def test_peers_their_offsets_and_states() -> None:
    s = parse(_render(_reading(AgreementStats())))
    assert value(s, "chronotick_peers") == 4
    assert value(s, "chronotick_peer_offset_seconds", peer="a") == pytest.approx(0.003)
    assert value(s, "chronotick_peer_true_offset_seconds", peer="liar") == pytest.approx(0.04)
    assert value(s, "chronotick_peer_round_trip_seconds", peer="a") == pytest.approx(0.0002)
    assert value(s, "chronotick_peer_uncertainty_seconds", peer="a") > 0
    assert value(s, "chronotick_peer_last_exchange_age_seconds", peer="a") == 2
    assert value(s, "chronotick_peer_last_exchange_age_seconds", peer="b") == 1
    # a peer without an interval has no true offset to show
    assert frozenset({("peer", "new")}) not in samples_of(s, "chronotick_peer_true_offset_seconds")
    states = {
        peer: state
        for (name, labels), v in s.items()
        if name == "chronotick_peer_state" and v == 1
        for peer, state in [(dict(labels)["peer"], dict(labels)["state"])]
    }
    assert states == {"a": "used", "b": "used", "liar": "falseticker", "new": "unusable"}
    assert len(samples_of(s, "chronotick_peer_state")) == 4 * 3  # one-hot over three states
    assert value(s, "chronotick_peer_consensus_peers") == 2
    assert value(s, "chronotick_peer_consensus_offset_seconds") == pytest.approx(0.003, abs=1e-6)
    assert value(s, "chronotick_peer_consensus_bound_seconds") > 0


def test_without_peers_there_is_no_consensus_and_counters_start_at_zero() -> None:
    body = _render(_reading(AgreementStats(), with_peers=False))
    s = parse(body)
    assert value(s, "chronotick_peers") == 0
    assert value(s, "chronotick_peer_consensus_peers") == 0
    assert not samples_of(s, "chronotick_peer_consensus_offset_seconds")
    for outcome in ("committed", "aborted"):
        assert value(s, "chronotick_agreement_rounds_total", outcome=outcome) == 0
    for outcome in ACTION_OUTCOMES:
        assert value(s, "chronotick_agreement_actions_total", outcome=outcome) == 0
    assert value(s, "chronotick_commit_wait_seconds_count") == 0


def test_agreement_counts_and_the_commit_wait_histogram() -> None:
    stats = AgreementStats()
    stats.rounds.add("committed")
    stats.rounds.add("aborted")
    stats.rounds.add("committed")
    stats.actions.add("executed", 2)
    stats.actions.add("refused")
    stats.commits.add("committed", 2)
    stats.commits.add("failed")
    stats.commit_wait.observe(0.0004)
    stats.commit_wait.observe(0.03)
    body = _render(_reading(stats))
    s = parse(body)
    assert value(s, "chronotick_agreement_rounds_total", outcome="committed") == 2
    assert value(s, "chronotick_agreement_rounds_total", outcome="aborted") == 1
    assert value(s, "chronotick_agreement_actions_total", outcome="executed") == 2
    assert value(s, "chronotick_agreement_actions_total", outcome="refused") == 1
    assert value(s, "chronotick_commits_total", outcome="failed") == 1
    assert value(s, "chronotick_commit_wait_seconds_bucket", le="0.0005") == 1
    assert value(s, "chronotick_commit_wait_seconds_bucket", le="0.025") == 1
    assert value(s, "chronotick_commit_wait_seconds_bucket", le="0.05") == 2
    assert value(s, "chronotick_commit_wait_seconds_count") == 2
    assert value(s, "chronotick_commit_wait_seconds_sum") == pytest.approx(0.0304)
