"""Prometheus metrics of a node, beside the daemon's (chronotick.metrics) on the same endpoint:
the peers and their consensus, sync-point agreement by outcome, commit timestamps and their
commit wait.

`NODE_METRICS` is the one catalog of these families (the docs render it with
`chronotick.metrics.markdown_table`). Peers are read from the peer table at scrape time; the
agreement's events are counted as they happen in `AgreementStats` (a lock and an add per
round, far from any hot path), since rounds are forgotten long before anyone asks.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING

from prometheus_client.core import Metric

from chronotick.metrics import Counts, Histogram, HistogramCounts, MetricSpec
from chronotick.model import NS_PER_S
from coordinator.peer_table import Consensus, PeerEntry

if TYPE_CHECKING:
    from coordinator.node import Node

#: how an initiated round ended
ROUND_OUTCOMES = ("committed", "aborted")
#: how a proposal this node was asked to vote on ended here
ACTION_OUTCOMES = ("refused", "executed", "failed", "aborted", "expired")
#: how a commit timestamp asked of this node ended
COMMIT_OUTCOMES = ("committed", "failed")
#: peer states in the consensus (PeerTable.consensus)
PEER_STATES = ("used", "falseticker", "unusable")

#: commit wait is about twice the widest bound: 0.1 ms on a quiet LAN up to the 10 s limit
COMMIT_WAIT_BUCKETS_S = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
)  # fmt: skip

PEERS = MetricSpec(
    "chronotick_peers", "gauge", "Peers in the table (a good exchange within the expiry)."
)
PEER_OFFSET = MetricSpec(
    "chronotick_peer_offset_seconds",
    "gauge",
    "The peer's base clock minus this node's, from the exchange with the shortest round trip.",
    ("peer",),
)
PEER_TRUE_OFFSET = MetricSpec(
    "chronotick_peer_true_offset_seconds",
    "gauge",
    "True time minus this node's base clock according to the peer (its offset plus its own "
    "NTP correction); compare with chronotick_clock_offset_seconds. Absent while the peer's "
    "clock gives no interval.",
    ("peer",),
)
PEER_UNCERTAINTY = MetricSpec(
    "chronotick_peer_uncertainty_seconds",
    "gauge",
    "σ of the peer offset (path asymmetry within the round trip, timestamping noise).",
    ("peer",),
)
PEER_ROUND_TRIP = MetricSpec(
    "chronotick_peer_round_trip_seconds",
    "gauge",
    "Round trip of the exchange the peer offset comes from.",
    ("peer",),
)
PEER_AGE = MetricSpec(
    "chronotick_peer_last_exchange_age_seconds",
    "gauge",
    "Time since the newest good exchange with the peer.",
    ("peer",),
)
PEER_STATE = MetricSpec(
    "chronotick_peer_state",
    "gauge",
    "1 for the peer's state in the consensus, 0 for the others: used, falseticker (its "
    "interval misses the majority's), unusable (its clock gives no interval).",
    ("peer", "state"),
)
CONSENSUS_OFFSET = MetricSpec(
    "chronotick_peer_consensus_offset_seconds",
    "gauge",
    "True time minus this node's base clock by the peers' weighted consensus. Absent without "
    "a consensus.",
)
CONSENSUS_UNCERTAINTY = MetricSpec(
    "chronotick_peer_consensus_uncertainty_seconds",
    "gauge",
    "σ of the peers' consensus. Absent without a consensus.",
)
CONSENSUS_BOUND = MetricSpec(
    "chronotick_peer_consensus_bound_seconds",
    "gauge",
    "Half-width of the interval the agreeing peers share. Absent without a consensus.",
)
CONSENSUS_PEERS = MetricSpec(
    "chronotick_peer_consensus_peers", "gauge", "Peers whose intervals agree (the ones used)."
)
ROUNDS = MetricSpec(
    "chronotick_agreement_rounds_total",
    "counter",
    "Sync-point rounds this node initiated, by decision: committed (every participant "
    "accepted) or aborted.",
    ("outcome",),
)
ACTIONS = MetricSpec(
    "chronotick_agreement_actions_total",
    "counter",
    "Sync-point proposals this node was asked to vote on (its own included), by how they ended "
    "here: refused (it voted no), executed, failed (committed, but the tolerance could not be "
    "held at the target), aborted, expired (no decision by the commit deadline).",
    ("outcome",),
)
COMMITS = MetricSpec(
    "chronotick_commits_total",
    "counter",
    "Commit timestamps asked of this node, by outcome: committed, or failed (a participant "
    "could not answer or wait).",
    ("outcome",),
)
COMMIT_WAIT = MetricSpec(
    "chronotick_commit_wait_seconds",
    "histogram",
    "Commit wait of the commits this node acknowledged: from choosing the timestamp until "
    "every participant's earliest possible time has passed it (about twice the widest bound).",
    buckets=COMMIT_WAIT_BUCKETS_S,
)

NODE_METRICS: tuple[MetricSpec, ...] = (
    PEERS,
    PEER_OFFSET,
    PEER_TRUE_OFFSET,
    PEER_UNCERTAINTY,
    PEER_ROUND_TRIP,
    PEER_AGE,
    PEER_STATE,
    CONSENSUS_OFFSET,
    CONSENSUS_UNCERTAINTY,
    CONSENSUS_BOUND,
    CONSENSUS_PEERS,
    ROUNDS,
    ACTIONS,
    COMMITS,
    COMMIT_WAIT,
)


class AgreementStats:
    """What the agreement service did, counted as it happens."""

    def __init__(self) -> None:
        self.rounds = Counts(ROUND_OUTCOMES)
        self.actions = Counts(ACTION_OUTCOMES)
        self.commits = Counts(COMMIT_OUTCOMES)
        self.commit_wait = Histogram(COMMIT_WAIT.buckets)


@dataclasses.dataclass(frozen=True)
class NodeReading:
    """The node's state at one scrape, in plain values."""

    #: our monotonic clock at the scrape (peer entries carry theirs)
    monotonic_ns: int
    peers: tuple[PeerEntry, ...]
    #: node id -> "used", "falseticker" or "unusable"
    states: dict[str, str]
    consensus: Consensus | None
    rounds: dict[str, int]
    actions: dict[str, int]
    commits: dict[str, int]
    commit_wait: HistogramCounts


def read_node(node: Node) -> NodeReading:
    entries, result, _ = node.peer_snapshot()
    stats = node.agreement.stats
    return NodeReading(
        monotonic_ns=time.monotonic_ns(),
        peers=tuple(entries),
        states=dict(result.states),
        consensus=result.consensus,
        rounds=stats.rounds.snapshot(),
        actions=stats.actions.snapshot(),
        commits=stats.commits.snapshot(),
        commit_wait=stats.commit_wait.snapshot(),
    )


def _s(ns: float) -> float:
    return ns / NS_PER_S


def node_families(r: NodeReading) -> list[Metric]:
    """Every family of NODE_METRICS."""
    peers = r.peers
    consensus = r.consensus

    def state(entry: PeerEntry) -> str:
        return r.states.get(entry.node_id, "unusable")

    def one(value: float | None) -> list[tuple[tuple[()], float]]:
        return [] if value is None else [((), value)]

    return [
        PEERS.family(one(len(peers))),
        PEER_OFFSET.family(((e.node_id,), _s(e.offset_ns)) for e in peers),
        PEER_TRUE_OFFSET.family(
            ((e.node_id,), _s(e.true_offset_ns)) for e in peers if e.exchange.peer_clock.usable
        ),
        PEER_UNCERTAINTY.family(((e.node_id,), _s(e.sigma_ns)) for e in peers),
        PEER_ROUND_TRIP.family(((e.node_id,), _s(e.rtt_ns)) for e in peers),
        PEER_AGE.family(((e.node_id,), _s(max(0, r.monotonic_ns - e.monotonic_ns))) for e in peers),
        PEER_STATE.family(
            ((e.node_id, s), float(state(e) == s)) for e in peers for s in PEER_STATES
        ),
        CONSENSUS_OFFSET.family(one(None if consensus is None else _s(consensus.offset_ns))),
        CONSENSUS_UNCERTAINTY.family(one(None if consensus is None else _s(consensus.sigma_ns))),
        CONSENSUS_BOUND.family(one(None if consensus is None else _s(consensus.bound_ns))),
        CONSENSUS_PEERS.family(one(0 if consensus is None else len(consensus.used))),
        ROUNDS.family(((o,), r.rounds[o]) for o in ROUND_OUTCOMES),
        ACTIONS.family(((o,), r.actions[o]) for o in ACTION_OUTCOMES),
        COMMITS.family(((o,), r.commits[o]) for o in COMMIT_OUTCOMES),
        COMMIT_WAIT.histogram(r.commit_wait),
    ]
