"""The peer protocol's version, limits and request validation, and the conversions between
the wire messages (protos/chronotick/v1/peer.proto) and the values the node computes with.

Validation lives here, apart from the gRPC handlers, so that every field is checked by one
function that the fuzz tests call directly as well as through the service.
"""

from __future__ import annotations

import math
import re

from chronotick.model import ClockModel
from chronotick.status import ClockStatus
from coordinator.peer_table import PeerClock
from coordinator.proto.chronotick.v1 import peer_pb2 as pb

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = frozenset({PROTOCOL_VERSION})
#: a request larger than this gets INVALID_ARGUMENT from the handler; gRPC's own limit is 4x
#: this, beyond which the transport refuses it first (RESOURCE_EXHAUSTED)
MAX_MESSAGE_BYTES = 64 * 1024
GRPC_MESSAGE_LIMIT_BYTES = 4 * MAX_MESSAGE_BYTES
NAME_RE = re.compile(r"\A[A-Za-z0-9._-]{1,64}\Z")
#: 2000-01-01 and 2200-01-01: a timestamp outside is a broken clock or a forged field
MIN_TIME_NS = 946_684_800 * 1_000_000_000
MAX_TIME_NS = 7_258_118_400 * 1_000_000_000
#: an estimate wider than this (1 day) is no estimate
MAX_ERROR_NS = 86_400 * 1_000_000_000
#: GetHistory: the furthest back a request may ask, and what one reply carries at most (the
#: largest reply stays under the gRPC send limit; a unit test fills one to check)
MAX_HISTORY_S = 86_400.0
MAX_HISTORY_POINTS = 1500
MAX_HISTORY_SAMPLES = 1000
MAX_HISTORY_CHANGES = 64

_STATUS_TO_WIRE: dict[ClockStatus, pb.ClockStatus] = {
    ClockStatus.UNKNOWN: pb.CLOCK_STATUS_UNKNOWN,
    ClockStatus.SYNCHRONIZED: pb.CLOCK_STATUS_SYNCHRONIZED,
    ClockStatus.FREE_RUNNING: pb.CLOCK_STATUS_FREE_RUNNING,
    ClockStatus.DISRUPTED: pb.CLOCK_STATUS_DISRUPTED,
}
_STATUS_FROM_WIRE: dict[int, ClockStatus] = {v: k for k, v in _STATUS_TO_WIRE.items()}


class InvalidMessage(ValueError):
    """A request or reply that breaks the protocol; the message names the field."""


def check_version(version: int) -> None:
    if version not in SUPPORTED_VERSIONS:
        raise InvalidMessage(
            f"protocol_version {version} is not supported (this node speaks "
            f"{', '.join(map(str, sorted(SUPPORTED_VERSIONS)))})"
        )


def check_name(field: str, value: str) -> None:
    if not NAME_RE.match(value):
        raise InvalidMessage(f"{field} {value[:80]!r}: 1-64 letters, digits, '.', '_' or '-'")


def check_time(field: str, value_ns: int) -> None:
    if not MIN_TIME_NS <= value_ns <= MAX_TIME_NS:
        raise InvalidMessage(f"{field} {value_ns} is not a time between 2000 and 2200 (ns)")


def check_exchange_request(request: pb.ExchangeRequest, cluster: str) -> None:
    check_version(request.protocol_version)
    check_name("node_id", request.node_id)
    check_name("cluster", request.cluster)
    if request.cluster != cluster:
        raise InvalidMessage(f"cluster {request.cluster!r} is not this node's ({cluster!r})")
    check_time("client_send_ns", request.client_send_ns)


def check_history_request(request: pb.HistoryRequest) -> None:
    check_version(request.protocol_version)
    since = request.since_s
    if not (math.isfinite(since) and 0.0 <= since <= MAX_HISTORY_S):
        raise InvalidMessage(f"since_s {since} is not between 0 and {MAX_HISTORY_S:.0f} s")
    if request.max_points > MAX_HISTORY_POINTS:
        raise InvalidMessage(
            f"max_points {request.max_points} exceeds {MAX_HISTORY_POINTS} (0: that many)"
        )


def estimate_to_wire(model: ClockModel, at_ns: int) -> pb.ClockEstimate:
    """The model at base-clock instant `at_ns`; no interval is sent as status UNKNOWN."""
    if not model.status.gives_interval or not math.isfinite(model.sigma_at(at_ns)):
        return pb.ClockEstimate(
            status=_STATUS_TO_WIRE.get(model.status, pb.CLOCK_STATUS_UNKNOWN),
            source=model.source if model.source != "none" else "",
        )
    return pb.ClockEstimate(
        correction_ns=model.offset_at(at_ns),
        sigma_ns=min(MAX_ERROR_NS, max(0, round(model.sigma_at(at_ns)))),
        bound_ns=min(MAX_ERROR_NS, max(0, model.bound_at(at_ns))),
        status=_STATUS_TO_WIRE[model.status],
        drift_ppb=model.drift_ppb,
        source=model.source,
    )


def status_to_wire(status: ClockStatus) -> pb.ClockStatus:
    return _STATUS_TO_WIRE[status]


def status_from_wire(value: int) -> ClockStatus:
    return _STATUS_FROM_WIRE.get(value, ClockStatus.UNKNOWN)


def status_name(value: int) -> str:
    return status_from_wire(value).name


def peer_clock_from_wire(estimate: pb.ClockEstimate) -> PeerClock:
    """A peer's estimate, checked: a reply is input too, and a liar must not crash us."""
    status = status_from_wire(estimate.status)
    if not math.isfinite(estimate.drift_ppb) or abs(estimate.drift_ppb) > 1e7:
        raise InvalidMessage(f"drift_ppb {estimate.drift_ppb} is not a frequency error")
    for field in ("correction_ns", "sigma_ns", "bound_ns"):
        value = getattr(estimate, field)
        if abs(value) > MAX_ERROR_NS:
            raise InvalidMessage(f"{field} {value} is out of range (|x| <= 1 day)")
    if estimate.sigma_ns < 0 or estimate.bound_ns < 0:
        raise InvalidMessage("sigma_ns and bound_ns must be >= 0")
    if status.gives_interval:
        sigma: float = float(max(1, estimate.sigma_ns))
    else:
        sigma = math.inf
    return PeerClock(
        correction_ns=estimate.correction_ns,
        sigma_ns=sigma,
        bound_ns=estimate.bound_ns,
        status=status,
        drift_ppb=estimate.drift_ppb,
        source=estimate.source[:32],
    )
