"""The agreement service in one process: two nodes' services on 127.0.0.1, real gRPC, real
shared memory (each node's clock is a hand-made model published in its own segment).

What the pure state machine cannot show: that the service validates what arrives, that a round
runs end to end over gRPC (propose, vote, decide, wait for the target on the published clock,
report), that a participant that does not answer makes the round abort with its reason within
the vote deadline, and that commit wait returns only once every participant's earliest has
passed the timestamp.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from chronotick.daemon.stopper import Stopper
from chronotick.model import ClockModel
from chronotick.shm import SegmentWriter
from coordinator import protocol
from coordinator.agreement_service import AgreementService, deadlines
from coordinator.exchange import PeerClient
from coordinator.peer_table import ConsensusResult, PeerEntry
from coordinator.proto.chronotick.v1 import agreement_pb2 as apb
from coordinator.proto.chronotick.v1 import agreement_pb2_grpc as apb_grpc
from coordinator.service import PeerService, add_to_server
from tests.helpers.segments import model_at, remove_segment_files, unique_name

S = 1_000_000_000
MS = 1_000_000
V = protocol.PROTOCOL_VERSION
CLUSTER = "unit"


@dataclasses.dataclass
class FakeNode:
    """The AgreementNode protocol over a fixed model published in a segment of its own."""

    node_id: str
    shm_name: str
    model: ClockModel
    client: PeerClient
    stop_flag: Stopper
    peers: dict[str, str]
    cluster: str = CLUSTER
    suspects: tuple[str, ...] = ()

    def base_now_ns(self) -> int:
        return time.time_ns()

    def published_model(self) -> ClockModel:
        return self.model

    def peer_addresses(self) -> dict[str, str]:
        return dict(self.peers)

    def falsetickers(self) -> set[str]:
        return set(self.suspects)

    def realtime_for_base(self, base_ns: int) -> int:
        return base_ns

    def base_for_realtime(self, realtime_ns: int) -> int:
        return realtime_ns

    # PeerService's view too: commit wait reads the participants' intervals through GetTime
    started_monotonic_ns: int = 0

    def own_model(self) -> ClockModel:
        return self.model

    def sources(self) -> tuple[int, int]:
        return 1, 1

    def peer_snapshot(self) -> tuple[list[PeerEntry], ConsensusResult, dict[str, str]]:
        return [], ConsensusResult(None, {}), {}


@dataclasses.dataclass
class Served:
    node: FakeNode
    service: AgreementService
    server: grpc.Server
    writer: SegmentWriter
    address: str

    @property
    def stub(self) -> apb_grpc.AgreementServiceStub:
        return apb_grpc.AgreementServiceStub(self.node.client.channel(self.address))


def serve(node_id: str, bound_ns: int = 100_000) -> Served:
    """A node whose clock is right (offset 0) with the given bound, served on a free port."""
    now = time.time_ns()
    model = model_at(now, offset_ns=0, drift_ppb=0.0, bound_ns=bound_ns, bound_rate_ppb=0.0,
                     sigma_ns=bound_ns / 3, sigma_cov_ns2_per_s=0.0, sigma_drift_ppb=0.0,
                     wander_ns2_per_s=0.0)  # fmt: skip
    name = unique_name("agree")
    writer = SegmentWriter(name, trusted_for_ns=3600 * S, void_after_ns=3600 * S)
    writer.publish(model, poll_interval_ns=S, sources_configured=1, sources_reachable=1)
    node = FakeNode(node_id, name, model, PeerClient(node_id, CLUSTER, time.time_ns, 1.0),
                    Stopper(), {})  # fmt: skip
    service = AgreementService(node, require_identity=False)
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=8))
    add_to_server(service, server, apb, "AgreementService")
    add_to_server(PeerService(node, "test", require_identity=False), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return Served(node, service, server, writer, f"127.0.0.1:{port}")


@pytest.fixture
def pair() -> Iterator[tuple[Served, Served]]:
    a, b = serve("a"), serve("b")
    a.node.peers = {"b": b.address}
    b.node.peers = {"a": a.address}
    try:
        yield a, b
    finally:
        for s in (a, b):
            s.server.stop(0)
            s.node.client.close()
            s.writer.close()
            s.node.stop_flag.close()
            remove_segment_files(s.node.shm_name)


def outcomes(served: Served) -> dict[str, int]:
    """The node's participant outcomes counted so far (the non-zero ones)."""
    return {k: v for k, v in served.service.stats.actions.snapshot().items() if v}


def start(served: Served, delay_s: float = 0.5, tolerance_ms: float = 1.0, **kw: object) -> Any:
    request = apb.StartRoundRequest(protocol_version=V, delay_ns=int(delay_s * S),
                                    tolerance_ns=int(tolerance_ms * MS), **kw)  # fmt: skip
    return served.stub.StartRound(request, timeout=10)


def test_a_round_commits_runs_at_the_target_on_both_nodes_and_reports(
    pair: tuple[Served, Served],
) -> None:
    a, b = pair
    reply = start(a, action="write color=blue")
    assert reply.committed and reply.phase == "committed"
    assert list(reply.participants) == ["a", "b"]
    assert {v.node_id: v.accept for v in reply.votes} == {"a": True, "b": True}
    result = a.stub.GetRound(
        apb.GetRoundRequest(protocol_version=V, action_id=reply.action_id, wait_reports=True,
                            timeout_ms=5000), timeout=10)  # fmt: skip
    reports = {r.node_id: r for r in result.reports}
    assert set(reports) == {"a", "b"}
    for report in reports.values():
        assert report.phase == "executed", report
        # the clocks are right (offset 0): the corrected instant is the true one, give or
        # take the wake-up of a thread on a shared machine
        assert 0 <= report.executed_at_ns - reply.target_ns < 20 * MS
        assert report.bound_ns == 100_000
    assert a.service.replica["color"] == ("blue", reply.target_ns)
    assert b.service.replica["color"] == ("blue", reply.target_ns)
    # what the metrics count: one round committed by its initiator, one execution on each node
    assert a.service.stats.rounds.snapshot() == {"committed": 1, "aborted": 0}
    assert b.service.stats.rounds.snapshot() == {"committed": 0, "aborted": 0}
    for served in (a, b):
        assert outcomes(served) == {"executed": 1}


def test_a_participant_whose_bound_is_too_wide_refuses_with_its_reason() -> None:
    a, wide = serve("a"), serve("wide", bound_ns=3_100_000)
    a.node.peers = {"wide": wide.address}
    try:
        reply = start(a, tolerance_ms=1.0)
        assert not reply.committed and reply.phase == "aborted"
        assert list(reply.reasons) == ["wide: bound at target ±3.1 ms exceeds tolerance ±1.0 ms"]
        time.sleep(0.7)
        request = apb.ReportRequest(protocol_version=V, action_id=reply.action_id)
        report = wide.stub.GetReport(request, timeout=5)
        assert report.phase == "aborted"
        assert a.service.stats.rounds.snapshot() == {"committed": 0, "aborted": 1}
        assert outcomes(wide) == {"refused": 1}  # it voted no: not aborted a second time
        assert outcomes(a) == {"aborted": 1}  # the initiator had voted yes
    finally:
        for s in (a, wide):
            s.server.stop(0)
            s.writer.close()
            remove_segment_files(s.node.shm_name)


def test_a_participant_that_does_not_answer_aborts_the_round_by_the_vote_deadline(
    pair: tuple[Served, Served],
) -> None:
    a, b = pair
    b.server.stop(0)
    started = time.monotonic()
    reply = start(a, delay_s=2.0)
    elapsed = time.monotonic() - started
    vote_deadline, commit_deadline, _ = deadlines(0, 2 * S)
    assert not reply.committed
    assert len(reply.reasons) == 1 and reply.reasons[0].startswith("b: UNAVAILABLE")
    assert elapsed < commit_deadline / S  # the round ended within its deadlines
    time.sleep(2.2)
    own = a.stub.GetReport(apb.ReportRequest(protocol_version=V, action_id=reply.action_id),
                           timeout=5)  # fmt: skip
    assert own.phase == "aborted"  # the initiator did not execute either
    assert a.service.stats.rounds.snapshot() == {"committed": 0, "aborted": 1}
    assert vote_deadline < commit_deadline


def test_commit_wait_returns_once_every_earliest_is_past_the_timestamp(
    pair: tuple[Served, Served],
) -> None:
    a, _ = pair
    started = time.time_ns()
    reply = a.stub.CommitTimestamp(apb.CommitTimestampRequest(protocol_version=V), timeout=10)
    acked = time.time_ns()
    assert sorted(reply.participants) == ["a", "b"]
    # every clock is exact here, so latest = true time + 100 µs at the start
    assert started + 100_000 <= reply.timestamp_ns <= acked + 100_000
    # the acknowledgement came after true time passed the timestamp by a bound (earliest)
    assert acked >= reply.timestamp_ns + 100_000
    assert reply.max_bound_ns == 100_000
    assert 150_000 <= reply.commit_wait_ns < 50 * MS  # about twice the bound, plus calls
    with pytest.raises(grpc.RpcError):
        a.stub.CommitTimestamp(
            apb.CommitTimestampRequest(protocol_version=V, participants=["nobody"]), timeout=10
        )
    assert a.service.stats.commits.snapshot() == {"committed": 1, "failed": 1}
    waits = a.service.stats.commit_wait.snapshot()
    assert waits.count == 1 and waits.sum == reply.commit_wait_ns / S


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"protocol_version": 2}, "protocol_version"),
        ({"cluster": "other"}, "cluster"),
        ({"initiator": "bad id"}, "initiator"),
        ({"action_id": "x\n"}, "action_id"),
        ({"participants": []}, "participants"),
        ({"participants": ["b", "b"]}, "participants"),
        ({"target_ns": 0}, "target_ns"),
        ({"tolerance_ns": 0}, "tolerance_ns"),
        ({"tolerance_ns": 61 * S}, "tolerance_ns"),
        ({"action": "format c:"}, "action"),
        ({"vote_deadline_ns": 2_000_000_000 * S}, "deadlines"),
    ],
)
def test_bad_proposals_get_invalid_argument_naming_the_field(
    pair: tuple[Served, Served], change: dict[str, object], message: str
) -> None:
    a, _ = pair
    now = time.time_ns()
    fields: dict[str, object] = {
        "protocol_version": V, "cluster": CLUSTER, "initiator": "b", "action_id": "act-1",
        "participants": ["a", "b"], "target_ns": now + 2 * S, "tolerance_ns": MS,
        "vote_deadline_ns": now + S, "commit_deadline_ns": now + S, "action": "mark",
    }  # fmt: skip
    fields.update(change)
    with pytest.raises(grpc.RpcError) as caught:
        a.stub.Propose(apb.ProposeRequest(**fields), timeout=5)  # type: ignore[arg-type]
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert message in (caught.value.details() or "")
    # and it keeps serving
    assert a.stub.GetReport(apb.ReportRequest(protocol_version=V, action_id="act-1"),
                            timeout=5).phase == "unknown"  # fmt: skip


def test_a_late_or_unknown_decision_never_executes(pair: tuple[Served, Served]) -> None:
    _, b = pair
    now = time.time_ns()
    propose = apb.ProposeRequest(protocol_version=V, cluster=CLUSTER, initiator="a",
                                 action_id="late-1", participants=["a", "b"],
                                 target_ns=now + 400 * MS, tolerance_ns=MS,
                                 vote_deadline_ns=now + 100 * MS,
                                 commit_deadline_ns=now + 200 * MS, action="mark")  # fmt: skip
    vote = b.stub.Propose(propose, timeout=5)
    assert vote.accept
    assert b.stub.Propose(propose, timeout=5) == vote  # a retried proposal: the same vote
    time.sleep(0.25)  # past the commit deadline
    decide = apb.DecideRequest(protocol_version=V, cluster=CLUSTER, initiator="a",
                               action_id="late-1", commit=True)  # fmt: skip
    assert b.stub.Decide(decide, timeout=5).phase == "expired"
    assert b.stub.Decide(decide, timeout=5).phase == "expired"  # retried: counted once
    assert outcomes(b) == {"expired": 1}
    unknown = apb.DecideRequest(protocol_version=V, cluster=CLUSTER, initiator="a",
                                action_id="never-proposed", commit=True)  # fmt: skip
    assert b.stub.Decide(unknown, timeout=5).phase == "unknown"
    time.sleep(0.3)
    report = b.stub.GetReport(apb.ReportRequest(protocol_version=V, action_id="late-1"), timeout=5)
    assert report.phase == "expired" and report.executed_at_ns == 0


def test_start_round_checks_its_arguments(pair: tuple[Served, Served]) -> None:
    a, _ = pair
    for kwargs, message in (
        ({"delay_s": 0.1}, "delay_ns"),
        ({"tolerance_ms": 0.0}, "tolerance_ns"),
        ({"action": "rm -rf"}, "action"),
        ({"participants": ["nobody"]}, "not in this node's peer table"),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            start(a, **kwargs)  # type: ignore[arg-type]
        assert message in (caught.value.details() or ""), kwargs


def test_falsetickers_are_left_out_and_naming_one_aborts(pair: tuple[Served, Served]) -> None:
    a, _ = pair
    a.node.suspects = ("b",)
    alone = start(a)
    assert alone.committed and list(alone.participants) == ["a"]
    named = start(a, participants=["b"])
    assert not named.committed
    assert a.service.stats.rounds.snapshot() == {"committed": 1, "aborted": 1}
    assert list(named.reasons) == [
        "a: not asked: another participant is a falseticker",
        "b: falseticker in the initiator's peer table (its clock disagrees with the majority)",
    ]
