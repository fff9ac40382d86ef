"""`DistributedSyncCoordinator`: what an application calls to act together with other hosts.

It talks to the node of its own host over gRPC: the node is the initiator of every round it
asks for, and its peers (whatever discovery found) are the participants. Waiting for a sync
point happens locally, on this host's published clock.

    from coordinator import DistributedSyncCoordinator

    with DistributedSyncCoordinator(connect="127.0.0.1:7820") as sync:
        target, uncertainty = sync.schedule_synchronized_action(5.0, tolerance_ms=1.0)
        sync.wait_for_sync_point(target, tolerance_ms=1.0)   # every node wakes at `target`
        report = sync.verify_synchronization_quality(sync.execution_times(), target)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import grpc

from chronotick.client import ChronoTickClient
from coordinator import protocol
from coordinator.agreement import MAX_DELAY_NS, MIN_DELAY_NS
from coordinator.exchange import describe_rpc_error, open_channel
from coordinator.proto.chronotick.v1 import agreement_pb2 as apb
from coordinator.proto.chronotick.v1 import agreement_pb2_grpc as apb_grpc
from coordinator.proto.chronotick.v1 import peer_pb2 as pb
from coordinator.proto.chronotick.v1 import peer_pb2_grpc as pb_grpc

NS_PER_S = 1_000_000_000
V = protocol.PROTOCOL_VERSION


class SyncError(RuntimeError):
    """The node could not be asked (unreachable, refused, bad reply)."""


class SyncAborted(SyncError):
    """The round aborted; `reasons` says why, one line per participant."""

    def __init__(self, action_id: str, reasons: list[str]) -> None:
        super().__init__(f"{action_id} aborted: " + "; ".join(reasons))
        self.action_id = action_id
        self.reasons = reasons


@dataclasses.dataclass(frozen=True)
class NodeExecution:
    node_id: str
    phase: str
    #: corrected instant it ran (s since the epoch), its bound then (s); None if it did not
    executed_at: float | None
    bound_s: float | None
    base_time_ns: int
    host_time_ns: int
    detail: str
    #: the same instant and bound in integer nanoseconds (0 when it did not run)
    executed_at_ns: int = 0
    bound_ns: int = 0


@dataclasses.dataclass(frozen=True)
class RoundResult:
    action_id: str
    target_time: float
    tolerance_ms: float
    target_ns: int
    committed: bool
    participants: tuple[str, ...]
    reasons: tuple[str, ...]
    #: node id -> (accepted, reason, bound at target in s)
    votes: dict[str, tuple[bool, str, float]]
    executions: dict[str, NodeExecution]

    @property
    def uncertainty(self) -> float:
        """The widest bound at the target any participant voted with (s)."""
        return max((b for _, _, b in self.votes.values()), default=math.inf)


@dataclasses.dataclass(frozen=True)
class SyncQualityReport:
    target_time: float
    #: node id -> executed instant minus the target (s)
    errors: dict[str, float]
    spread_s: float
    max_error_s: float
    tolerance_ms: float | None
    within_tolerance: bool | None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class CommitResult:
    timestamp_ns: int
    participants: tuple[str, ...]
    commit_wait_ns: int
    max_bound_ns: int
    started_ns: int
    acknowledged_ns: int


class DistributedSyncCoordinator:
    def __init__(
        self,
        node_id: str | None = None,
        connect: str = "127.0.0.1:7820",
        *,
        credentials: grpc.ChannelCredentials | None = None,
        server_name: str = "",
        timeout_s: float = 10.0,
    ) -> None:
        """Attach to the node at `connect`; `node_id`, when given, must be that node's."""
        self._channel = open_channel(connect, credentials, server_name)
        self._agreement = apb_grpc.AgreementServiceStub(self._channel)
        self._peers = pb_grpc.PeerServiceStub(self._channel)
        self.timeout_s = timeout_s
        try:
            status = self._call(self._peers.GetStatus, pb.StatusRequest(protocol_version=V))
        except SyncError:
            self.close()
            raise
        if node_id is not None and status.node_id != node_id:
            self.close()
            raise SyncError(f"{connect} is node {status.node_id!r}, not {node_id!r}")
        self.node_id = status.node_id
        self.shm_name = status.shm_name
        self.last_round: RoundResult | None = None

    def __enter__(self) -> DistributedSyncCoordinator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: Any, request: Any, timeout_s: float | None = None) -> Any:
        try:
            return method(request, timeout=timeout_s or self.timeout_s)
        except grpc.RpcError as exc:
            raise SyncError(describe_rpc_error(exc)) from None

    # -- sync points -------------------------------------------------------------------------

    def schedule_synchronized_action(
        self,
        delay_seconds: float,
        tolerance_ms: float,
        action: str = "mark",
        participants: Sequence[str] = (),
    ) -> tuple[float, float]:
        """Agree with the peers on an instant `delay_seconds` ahead.

        Returns `(target_time, uncertainty)`: the target in seconds since the epoch on the
        corrected clock, and the widest error bound (s) any participant expects at it. Raises
        SyncAborted with every participant's reason when the round aborts.
        """
        low_s, high_s = MIN_DELAY_NS / NS_PER_S, MAX_DELAY_NS / NS_PER_S
        if not math.isfinite(delay_seconds) or not low_s <= delay_seconds <= high_s:
            raise ValueError(
                f"delay_seconds must be between {low_s:g} and {high_s:g}, got {delay_seconds}"
            )
        if not math.isfinite(tolerance_ms) or not 0 < tolerance_ms <= 60_000:
            raise ValueError(f"tolerance_ms must be in (0, 60000], got {tolerance_ms}")
        request = apb.StartRoundRequest(
            protocol_version=V,
            delay_ns=round(delay_seconds * NS_PER_S),
            tolerance_ns=round(tolerance_ms * 1e6),
            action=action,
            participants=list(participants),
        )
        reply = self._call(self._agreement.StartRound, request, delay_seconds + self.timeout_s)
        result = _round_result(reply)
        self.last_round = result
        if not result.committed:
            raise SyncAborted(result.action_id, list(result.reasons))
        return result.target_time, result.uncertainty

    def wait_for_sync_point(
        self, target_time: float, tolerance_ms: float, spin_ms: float = 0.3
    ) -> float:
        """Sleep until `target_time` on this host's corrected clock; returns how late it woke
        (s). Raises ToleranceError when the bound cannot hold `tolerance_ms`.

        It spins only the last `spin_ms` (see `ChronoTickClient.wait_until`): the node on
        this host is waking for the same instant, and a long spin would take its CPU.
        """
        with ChronoTickClient(self.shm_name) as clock:
            return clock.wait_until(target_time, tolerance_ms=tolerance_ms, spin_ms=spin_ms)

    def round_result(self, action_id: str | None = None, wait_s: float = 5.0) -> RoundResult:
        """A round's decision and every participant's report, waiting up to `wait_s` for the
        reports of the ones still to run."""
        if action_id is None:
            if self.last_round is None:
                raise SyncError("no round started by this coordinator yet")
            action_id = self.last_round.action_id
        request = apb.GetRoundRequest(
            protocol_version=V,
            action_id=action_id,
            wait_reports=wait_s > 0,
            timeout_ms=round(wait_s * 1000),
        )
        return _round_result(self._call(self._agreement.GetRound, request, wait_s + 5.0))

    def execution_times(
        self, action_id: str | None = None, wait_s: float = 5.0
    ) -> dict[str, float]:
        """node id -> corrected instant the action ran there, for the nodes that ran it."""
        result = self.round_result(action_id, wait_s)
        return {n: e.executed_at for n, e in result.executions.items() if e.executed_at}

    def verify_synchronization_quality(
        self,
        execution_times: Mapping[str, float] | Sequence[float],
        target_time: float,
        tolerance_ms: float | None = None,
    ) -> SyncQualityReport:
        return verify_synchronization_quality(execution_times, target_time, tolerance_ms)

    # -- commit timestamps -------------------------------------------------------------------

    def commit_timestamp(self, participants: Sequence[str] = ()) -> CommitResult:
        """A TrueTime-style commit timestamp across the participants (default: every peer),
        returned after commit wait: by then true time has passed it on every participant."""
        request = apb.CommitTimestampRequest(protocol_version=V, participants=list(participants))
        reply = self._call(self._agreement.CommitTimestamp, request, 30.0)
        return CommitResult(
            timestamp_ns=reply.timestamp_ns,
            participants=tuple(reply.participants),
            commit_wait_ns=reply.commit_wait_ns,
            max_bound_ns=reply.max_bound_ns,
            started_ns=reply.started_ns,
            acknowledged_ns=reply.acknowledged_ns,
        )


def verify_synchronization_quality(
    execution_times: Mapping[str, float] | Sequence[float],
    target_time: float,
    tolerance_ms: float | None = None,
) -> SyncQualityReport:
    """Spread (latest − earliest execution) and worst |error| against the target; within
    tolerance when every execution is within `tolerance_ms` of it."""
    if isinstance(execution_times, Mapping):
        times = {str(k): float(v) for k, v in execution_times.items()}
    else:
        times = {str(i): float(v) for i, v in enumerate(execution_times)}
    if not times:
        raise ValueError("no execution times to verify")
    if not all(math.isfinite(t) for t in times.values()) or not math.isfinite(target_time):
        raise ValueError("execution and target times must be finite")
    errors = {node: t - target_time for node, t in times.items()}
    max_error = max(abs(e) for e in errors.values())
    within = None if tolerance_ms is None else max_error <= tolerance_ms / 1000
    return SyncQualityReport(
        target_time=target_time,
        errors=errors,
        spread_s=max(times.values()) - min(times.values()),
        max_error_s=max_error,
        tolerance_ms=tolerance_ms,
        within_tolerance=within,
    )


def _round_result(reply: apb.RoundReply) -> RoundResult:
    executions = {
        r.node_id: NodeExecution(
            node_id=r.node_id,
            phase=r.phase,
            executed_at=r.executed_at_ns / NS_PER_S if r.phase == "executed" else None,
            bound_s=r.bound_ns / NS_PER_S if r.phase == "executed" else None,
            base_time_ns=r.base_time_ns,
            host_time_ns=r.host_time_ns,
            detail=r.detail,
            executed_at_ns=r.executed_at_ns if r.phase == "executed" else 0,
            bound_ns=r.bound_ns if r.phase == "executed" else 0,
        )
        for r in reply.reports
    }
    return RoundResult(
        action_id=reply.action_id,
        target_time=reply.target_ns / NS_PER_S,
        tolerance_ms=reply.tolerance_ns / 1e6,
        target_ns=reply.target_ns,
        committed=reply.committed,
        participants=tuple(reply.participants),
        reasons=tuple(reply.reasons),
        votes={
            v.node_id: (v.accept, v.reason, v.bound_at_target_ns / NS_PER_S) for v in reply.votes
        },
        executions=executions,
    )


def spread_percentile(spreads: Sequence[float], q: float) -> float:
    """Nearest-rank percentile, for the benchmark and tests (q in (0, 1])."""
    ordered = sorted(spreads)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else math.nan


__all__ = [
    "CommitResult",
    "DistributedSyncCoordinator",
    "NodeExecution",
    "RoundResult",
    "SyncAborted",
    "SyncError",
    "SyncQualityReport",
    "spread_percentile",
    "verify_synchronization_quality",
]
