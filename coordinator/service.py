"""The gRPC peer service: thin handlers over the node's state, every request validated.

Handlers never raise past themselves: a request that breaks the protocol gets
INVALID_ARGUMENT with the field named, a caller that is not a member of the cluster gets
UNAUTHENTICATED, and anything unforeseen gets INTERNAL with a log line; the server keeps
serving either way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any, Protocol, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message

from chronotick.engine import SourceReport
from chronotick.history import History
from chronotick.model import NS_PER_S, ClockModel
from coordinator import protocol
from coordinator.peer_table import ConsensusResult, PeerEntry
from coordinator.proto.chronotick.v1 import peer_pb2 as pb
from coordinator.proto.chronotick.v1 import peer_pb2_grpc as pb_grpc

log = logging.getLogger("chronotick.peers")

_Request = TypeVar("_Request")
_Reply = TypeVar("_Reply")


class NodeView(Protocol):
    """What the service may see of the node; the node implements it."""

    node_id: str
    cluster: str
    shm_name: str
    started_monotonic_ns: int

    def base_now_ns(self) -> int: ...
    def own_model(self) -> ClockModel: ...
    def published_model(self) -> ClockModel: ...
    def sources(self) -> tuple[int, int]: ...
    def source_reports(self) -> list[SourceReport]: ...
    def poll_interval_ns(self) -> int: ...
    def history(self) -> History: ...
    def peer_snapshot(self) -> tuple[list[PeerEntry], ConsensusResult, dict[str, str]]: ...


class PeerService(pb_grpc.PeerServiceServicer):
    def __init__(self, node: NodeView, software_version: str, require_identity: bool) -> None:
        self.node = node
        self.software_version = software_version
        #: with mutual TLS, only callers that showed a certificate of the cluster's CA pass
        self.require_identity = require_identity

    # -- calls -------------------------------------------------------------------------------

    def Exchange(
        self, request: pb.ExchangeRequest, context: grpc.ServicerContext
    ) -> pb.ExchangeReply:
        t2 = self.node.base_now_ns()  # as near the wire as a Python handler gets
        return self._guard(context, request, lambda: self._exchange(request, t2))

    def GetStatus(self, request: pb.StatusRequest, context: grpc.ServicerContext) -> pb.StatusReply:
        return self._guard(context, request, self._status)

    def ListPeers(
        self, request: pb.ListPeersRequest, context: grpc.ServicerContext
    ) -> pb.ListPeersReply:
        return self._guard(context, request, self._list_peers)

    def GetTime(self, request: pb.TimeRequest, context: grpc.ServicerContext) -> pb.TimeReply:
        return self._guard(context, request, self._time)

    def GetHistory(
        self, request: pb.HistoryRequest, context: grpc.ServicerContext
    ) -> pb.HistoryReply:
        return self._guard(context, request, lambda: self._history(request))

    # -- the work ----------------------------------------------------------------------------

    def _exchange(self, request: pb.ExchangeRequest, t2_ns: int) -> pb.ExchangeReply:
        protocol.check_exchange_request(request, self.node.cluster)
        estimate = protocol.estimate_to_wire(self.node.own_model(), t2_ns)
        reply = pb.ExchangeReply(
            protocol_version=protocol.PROTOCOL_VERSION,
            node_id=self.node.node_id,
            client_send_ns=request.client_send_ns,
            server_receive_ns=t2_ns,
            estimate=estimate,
        )
        reply.server_send_ns = self.node.base_now_ns()
        return reply

    def _status(self) -> pb.StatusReply:
        node = self.node
        now = node.base_now_ns()
        entries, result, _ = node.peer_snapshot()
        configured, reachable = node.sources()
        reply = pb.StatusReply(
            protocol_version=protocol.PROTOCOL_VERSION,
            node_id=node.node_id,
            cluster=node.cluster,
            software_version=self.software_version,
            estimate=protocol.estimate_to_wire(node.published_model(), now),
            base_time_ns=now,
            sources_configured=configured,
            sources_reachable=reachable,
            peers_known=len(entries),
            peers_used=len(result.consensus.used) if result.consensus else 0,
            uptime_s=(time.monotonic_ns() - node.started_monotonic_ns) / 1e9,
            shm_name=node.shm_name,
            poll_interval_s=node.poll_interval_ns() / NS_PER_S,
        )
        own = node.own_model()
        if own.last_sample_ns:
            reply.last_sample_age_s = max(0.0, (now - own.last_sample_ns) / NS_PER_S)
        for source in node.source_reports():
            row = pb.SourceEntry(
                server=source.name,
                reach=source.reach,
                state=source.state,
                stratum=source.stratum,
                poll_interval_s=source.poll_interval_ns / NS_PER_S,
            )
            if source.offset_ns is not None and source.sample_ns is not None:
                row.offset_ns = source.offset_ns
                row.delay_ns = source.delay_ns or 0
                row.sample_age_s = max(0.0, (now - source.sample_ns) / NS_PER_S)
            reply.sources.append(row)
        return reply

    def _list_peers(self) -> pb.ListPeersReply:
        node = self.node
        entries, result, addresses = node.peer_snapshot()
        mono = time.monotonic_ns()
        reply = pb.ListPeersReply(protocol_version=protocol.PROTOCOL_VERSION, node_id=node.node_id)
        for entry in entries:
            ex = entry.exchange
            reply.peers.append(
                pb.PeerEntry(
                    node_id=entry.node_id,
                    address=addresses.get(entry.node_id, ex.address),
                    discovered_by=ex.discovered_by,
                    offset_ns=entry.offset_ns,
                    sigma_ns=round(entry.sigma_ns),
                    rtt_ns=entry.rtt_ns,
                    measured_at_ns=entry.measured_at_ns,
                    age_s=max(0.0, (mono - entry.monotonic_ns) / 1e9),
                    expires_in_s=max(0.0, (entry.expires_monotonic_ns - mono) / 1e9),
                    peer_estimate=_peer_clock_to_wire(entry),
                    true_offset_ns=entry.true_offset_ns,
                    true_sigma_ns=_finite_ns(entry.true_sigma_ns),
                    state=result.states.get(entry.node_id, "unusable"),
                )
            )
        consensus = result.consensus
        if consensus is not None:
            reply.consensus.CopyFrom(
                pb.Consensus(
                    offset_ns=consensus.offset_ns,
                    sigma_ns=_finite_ns(consensus.sigma_ns),
                    bound_ns=consensus.bound_ns,
                    peers_used=len(consensus.used),
                    falsetickers=list(consensus.falsetickers),
                )
            )
        return reply

    def _time(self) -> pb.TimeReply:
        node = self.node
        now = node.base_now_ns()
        model = node.published_model()
        reply = pb.TimeReply(
            protocol_version=protocol.PROTOCOL_VERSION,
            node_id=node.node_id,
            status=protocol.estimate_to_wire(model, now).status,
            source=model.source,
            base_time_ns=now,
        )
        if model.status.gives_interval:
            corrected = model.corrected_ns(now)
            bound = model.bound_at(now)
            reply.corrected_ns = corrected
            reply.earliest_ns = corrected - bound
            reply.latest_ns = corrected + bound
            reply.sigma_ns = _finite_ns(model.sigma_at(now))
        return reply

    def _history(self, request: pb.HistoryRequest) -> pb.HistoryReply:
        protocol.check_history_request(request)
        node = self.node
        history = node.history()
        mono = time.monotonic_ns()
        snapshot = history.snapshot(
            mono,
            request.since_s,
            request.max_points or protocol.MAX_HISTORY_POINTS,
            protocol.MAX_HISTORY_SAMPLES,
        )
        reply = pb.HistoryReply(
            protocol_version=protocol.PROTOCOL_VERSION,
            node_id=node.node_id,
            base_time_ns=node.base_now_ns(),
            kept_s=history.span_s,
        )
        for p in snapshot.points:
            point = pb.HistoryPoint(
                age_s=(mono - p.monotonic_ns) / NS_PER_S,
                base_time_ns=p.base_ns,
                offset_ns=p.offset_ns,
                sigma_ns=_finite_ns(p.sigma_ns),
                bound_ns=_finite_ns(p.bound_ns),
                status=protocol.status_to_wire(p.status),
                source=p.source[:32],
            )
            if p.consensus_offset_ns is not None:
                point.consensus_offset_ns = p.consensus_offset_ns
            reply.points.append(point)
        servers: dict[str, int] = {}
        for r in snapshot.samples:
            index = servers.setdefault(r.server, len(servers))
            reply.samples.append(
                pb.HistorySample(
                    age_s=(mono - r.monotonic_ns) / NS_PER_S,
                    base_time_ns=r.base_ns,
                    server=index,
                    offset_ns=r.offset_ns,
                    delay_ns=r.delay_ns,
                    rejected=r.rejected[:24],
                )
            )
        reply.servers.extend(servers)
        for c in snapshot.changes[-protocol.MAX_HISTORY_CHANGES :]:
            reply.status_changes.append(
                pb.StatusChange(
                    age_s=(mono - c.monotonic_ns) / NS_PER_S,
                    base_time_ns=c.base_ns,
                    old_status=protocol.status_to_wire(c.old),
                    new_status=protocol.status_to_wire(c.new),
                    reason=c.reason[:160],
                )
            )
        return reply

    # -- guard -------------------------------------------------------------------------------

    def _guard(
        self, context: grpc.ServicerContext, request: _Request, work: Callable[[], _Reply]
    ) -> _Reply:
        return guarded(context, request, work, self.require_identity)


class Refusal(Exception):
    """A handler's answer other than OK or INVALID_ARGUMENT (a deadline it cannot meet, a
    round it does not know), raised inside `work` and turned into that status."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def guarded(
    context: grpc.ServicerContext,
    request: _Request,
    work: Callable[[], _Reply],
    require_identity: bool,
) -> _Reply:
    """Authorise, check the size and version, run `work`; turn failures into statuses.

    Every handler of every service runs through this, so that no request skips a check and
    no exception reaches gRPC as UNKNOWN.
    """
    if require_identity and not context.peer_identities():
        log.warning("refused %s: no client certificate of this cluster", context.peer())
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "a cluster certificate is required")
    size = request.ByteSize()  # type: ignore[attr-defined]
    if size > protocol.MAX_MESSAGE_BYTES:
        context.abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"request of {size} bytes exceeds {protocol.MAX_MESSAGE_BYTES}",
        )
    try:
        protocol.check_version(request.protocol_version)  # type: ignore[attr-defined]
        return work()
    except protocol.InvalidMessage as exc:
        log.info("invalid request from %s: %s", context.peer(), exc)
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
    except Refusal as exc:
        log.info("refused a request from %s: %s", context.peer(), exc.message)
        context.abort(exc.code, exc.message)
    except Exception:
        log.exception("handler failed on a request from %s", context.peer())
        context.abort(grpc.StatusCode.INTERNAL, "internal error; see the node's log")
    raise AssertionError("unreachable: abort raises")


SERVICE_NAME = "chronotick.v1.PeerService"


def add_to_server(
    service: object, server: grpc.Server, module: ModuleType = pb, name: str = "PeerService"
) -> None:
    """Register `service` (service `name` of the generated `module`), decoding requests inside
    the handler.

    The generated registration decodes before any handler runs, so bytes that are not a
    message would come back as INTERNAL; here they are the caller's error, INVALID_ARGUMENT.
    """
    descriptor = module.DESCRIPTOR.services_by_name[name]
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for method in descriptor.methods:
        request_class = getattr(module, method.input_type.name)
        reply_class = getattr(module, method.output_type.name)
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            _decoding(getattr(service, method.name), request_class),
            request_deserializer=None,
            response_serializer=reply_class.SerializeToString,
        )
    generic = grpc.method_handlers_generic_handler(descriptor.full_name, handlers)
    server.add_generic_rpc_handlers((generic,))


def _decoding(
    handler: Callable[[Any, grpc.ServicerContext], Message], request_class: type[Message]
) -> Callable[[bytes, grpc.ServicerContext], Message]:
    def handle(raw: bytes, context: grpc.ServicerContext) -> Message:
        try:
            request = request_class.FromString(raw)
        except DecodeError as exc:
            log.info("undecodable %s from %s: %s", request_class.__name__, context.peer(), exc)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"not a {request_class.__name__} message: {exc}")  # fmt: skip
        return handler(request, context)

    return handle


def _finite_ns(value: float) -> int:
    if value != value or value in (float("inf"), float("-inf")):
        return 0
    return min(protocol.MAX_ERROR_NS, max(0, round(value)))


def _peer_clock_to_wire(entry: PeerEntry) -> pb.ClockEstimate:
    clock = entry.exchange.peer_clock
    return pb.ClockEstimate(
        correction_ns=clock.correction_ns,
        sigma_ns=_finite_ns(clock.sigma_ns),
        bound_ns=clock.bound_ns,
        status=protocol.status_to_wire(clock.status),
        drift_ppb=clock.drift_ppb,
        source=clock.source,
    )
