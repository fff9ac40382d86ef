"""The peer service and the reply checks against bad input, in process, through real gRPC.

DESIGN.md ("Peers and agreement", Security): every request is validated (finite numbers,
ranges, sizes); bad input gets INVALID_ARGUMENT and never takes the service down. The server
here is a `grpc.server` on 127.0.0.1:0 carrying `PeerService` with the message limits the node
gives its own server (node.py, `start_service`), over a fake node, so that what reaches the
handlers is what would reach a real node's. The calling side is tested too: a peer's reply is
input as well, and `check_reply` / `peer_clock_from_wire` must turn a liar's reply into an
`ExchangeError` / `InvalidMessage`, never a crash or a poisoned peer table.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import logging
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chronotick.engine import SourceReport
from chronotick.estimation.samples import Sample
from chronotick.history import History
from chronotick.model import ClockModel
from chronotick.status import ClockStatus
from coordinator import protocol
from coordinator.exchange import ExchangeError, check_reply
from coordinator.peer_table import ConsensusResult, Exchange, PeerClock, PeerEntry, PeerTable
from coordinator.proto.chronotick.v1 import peer_pb2 as pb
from coordinator.proto.chronotick.v1 import peer_pb2_grpc as pb_grpc
from coordinator.service import NodeView, PeerService, add_to_server
from tests.helpers.segments import model_at

T0 = 1_760_000_000 * 1_000_000_000
CLUSTER = "unit-cluster"
NODE_ID = "unit-node"
#: the node's own gRPC limit (node.py passes 4 × MAX_MESSAGE_BYTES to grpc.server)
GRPC_LIMIT = 4 * protocol.MAX_MESSAGE_BYTES
#: every call has a deadline: a hang is a failure, never a stuck test run
DEADLINE_S = 5.0
INT64 = (-(2**63), 2**63 - 1)
UINT32 = (0, 2**32 - 1)
SERVICE = "/chronotick.v1.PeerService"
#: request type of each method, for raw calls and for parsing what was sent
METHODS: dict[str, Any] = {
    "Exchange": pb.ExchangeRequest,
    "GetStatus": pb.StatusRequest,
    "ListPeers": pb.ListPeersRequest,
    "GetTime": pb.TimeRequest,
    "GetHistory": pb.HistoryRequest,
}
OK = grpc.StatusCode.OK
INVALID = grpc.StatusCode.INVALID_ARGUMENT


@dataclasses.dataclass
class FakeNode:
    """A NodeView with a synchronized model and one peer that has no estimate of its own.

    The unusable peer matters: its σ is infinite, the one value the ListPeers handler must not
    put on the wire as is (an int64 field), so every fuzzed ListPeers exercises that path.
    """

    node_id: str = NODE_ID
    cluster: str = CLUSTER
    shm_name: str = "unit-shm"
    started_monotonic_ns: int = dataclasses.field(default_factory=time.monotonic_ns)
    model: ClockModel = dataclasses.field(default_factory=lambda: model_at(time.time_ns()))
    table: PeerTable = dataclasses.field(default_factory=lambda: PeerTable(60.0, 5000.0))
    #: ten seconds of history: a point a second, a sample every 2 s (every third refused)
    recent: History = dataclasses.field(default_factory=History)

    def __post_init__(self) -> None:
        now = time.time_ns()
        mono = time.monotonic_ns()
        for k in range(10, 0, -1):
            at_mono, at = mono - k * 1_000_000_000, now - k * 1_000_000_000
            self.recent.add_point(at_mono, at, self.model, consensus_offset_ns=-k)
            if k % 2 == 0:
                sample = Sample(at, 1_000 * k, 90_000, "ntp-a.example:123")
                self.recent.add_sample(at_mono, sample, "outlier" if k % 3 == 0 else "")
        self.recent.add_change(
            mono - 10_000_000_000,
            now - 10_000_000_000,
            ClockStatus.UNKNOWN,
            ClockStatus.SYNCHRONIZED,
            "the model fits 4 samples",
        )
        unusable = PeerClock(0, math.inf, 0, ClockStatus.UNKNOWN)
        self.table.update(
            Exchange(
                "peer-1", "127.0.0.1:1", "static", now, now + 10, now + 20, now + 1000, unusable
            ),
            time.monotonic_ns(),
        )

    def base_now_ns(self) -> int:
        return time.time_ns()

    def own_model(self) -> ClockModel:
        return self.model

    def published_model(self) -> ClockModel:
        return self.model

    def sources(self) -> tuple[int, int]:
        return 2, 1

    def source_reports(self) -> list[SourceReport]:
        now = time.time_ns()
        return [
            SourceReport("ntp-a.example:123", 0o377, "used", 2, -3_000, 90_000, now - 2 * 10**9,
                         64 * 10**9),
            SourceReport("10.0.0.9:123", 0, "waiting", 0, None, None, None, 64 * 10**9),
        ]  # fmt: skip

    def poll_interval_ns(self) -> int:
        return 64 * 10**9

    def history(self) -> History:
        return self.recent

    def peer_snapshot(self) -> tuple[list[PeerEntry], ConsensusResult, dict[str, str]]:
        return self.table.entries(), self.table.consensus(time.time_ns(), 0.0), {}


def _start_server(node: NodeView, require_identity: bool) -> tuple[grpc.Server, int]:
    server = grpc.server(
        concurrent.futures.ThreadPoolExecutor(max_workers=4),
        options=[
            ("grpc.max_receive_message_length", GRPC_LIMIT),
            ("grpc.max_send_message_length", GRPC_LIMIT),
        ],
    )
    add_to_server(PeerService(node, "test", require_identity), server)
    port = server.add_insecure_port("127.0.0.1:0")
    assert port, "cannot bind 127.0.0.1:0"
    server.start()
    return server, port


@pytest.fixture(scope="module")
def node() -> FakeNode:
    return FakeNode()


@pytest.fixture(scope="module")
def channel(node: FakeNode) -> Iterator[grpc.Channel]:
    """One server and channel for the module: the fuzz tests also show that the same server
    keeps serving after everything thrown at it."""
    server, port = _start_server(node, require_identity=False)
    chan = grpc.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 4 * GRPC_LIMIT)]
    )
    try:
        yield chan
    finally:
        chan.close()
        server.stop(grace=None)


@pytest.fixture(scope="module")
def stub(channel: grpc.Channel) -> pb_grpc.PeerServiceStub:
    return pb_grpc.PeerServiceStub(channel)


def good_request(**changes: Any) -> pb.ExchangeRequest:
    fields: dict[str, Any] = {
        "protocol_version": protocol.PROTOCOL_VERSION,
        "node_id": "caller-1",
        "cluster": CLUSTER,
        "client_send_ns": time.time_ns(),
    }
    fields.update(changes)
    return pb.ExchangeRequest(**fields)


def code_of(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    """The status code and details of one call (OK, "" when it succeeded)."""
    try:
        call()
    except grpc.RpcError as exc:
        assert isinstance(exc, grpc.Call)
        return exc.code(), exc.details() or ""
    return OK, ""


def assert_still_serving(stub: pb_grpc.PeerServiceStub) -> None:
    reply = stub.Exchange(good_request(), timeout=DEADLINE_S)
    assert reply.node_id == NODE_ID


# -- the good path -----------------------------------------------------------------------------


def test_good_exchange_gets_t2_t3_and_the_estimate_at_t2(
    stub: pb_grpc.PeerServiceStub, node: FakeNode
) -> None:
    t1 = time.time_ns()
    reply = stub.Exchange(good_request(client_send_ns=t1), timeout=DEADLINE_S)
    t4 = time.time_ns()
    assert reply.protocol_version == protocol.PROTOCOL_VERSION
    assert reply.node_id == NODE_ID
    assert reply.client_send_ns == t1
    # the fake's base clock is time.time_ns(), so T2 and T3 fall between T1 and T4, in order
    assert t1 <= reply.server_receive_ns <= reply.server_send_ns <= t4
    estimate = reply.estimate
    t2 = reply.server_receive_ns
    assert estimate.status == pb.CLOCK_STATUS_SYNCHRONIZED
    assert estimate.correction_ns == node.model.offset_at(t2)
    assert estimate.sigma_ns == round(node.model.sigma_at(t2))
    assert estimate.bound_ns == node.model.bound_at(t2)
    assert estimate.drift_ppb == node.model.drift_ppb
    assert estimate.source == node.model.source
    # and what a caller makes of it is a usable measurement
    exchange = check_reply(reply, "127.0.0.1:1", "static", t1, t4)
    assert exchange.rtt_ns >= 0 and exchange.peer_clock.usable


def test_status_peers_and_time_answer(stub: pb_grpc.PeerServiceStub) -> None:
    v = protocol.PROTOCOL_VERSION
    status = stub.GetStatus(pb.StatusRequest(protocol_version=v), timeout=DEADLINE_S)
    assert (status.node_id, status.cluster, status.peers_known) == (NODE_ID, CLUSTER, 1)
    assert (status.sources_configured, status.sources_reachable) == (2, 1)
    assert status.poll_interval_s == 64.0
    assert 0.7 <= status.last_sample_age_s < 5.0  # the fake model's newest sample: 0.7 s old
    used, waiting = status.sources
    assert (used.server, used.reach, used.state, used.stratum) == ("ntp-a.example:123", 255,
                                                                   "used", 2)  # fmt: skip
    assert (used.offset_ns, used.delay_ns, used.poll_interval_s) == (-3_000, 90_000, 64.0)
    assert 1.5 <= used.sample_age_s < 5.0  # its sample: 2 s before the fake was asked
    assert (waiting.state, waiting.reach) == ("waiting", 0)
    assert not waiting.HasField("offset_ns") and not waiting.HasField("sample_age_s")
    peers = stub.ListPeers(pb.ListPeersRequest(protocol_version=v), timeout=DEADLINE_S)
    assert [(p.node_id, p.state) for p in peers.peers] == [("peer-1", "unusable")]
    assert peers.consensus.peers_used == 0
    now = stub.GetTime(pb.TimeRequest(protocol_version=v), timeout=DEADLINE_S)
    assert now.earliest_ns < now.corrected_ns < now.latest_ns


# -- bad requests ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [0, 2, UINT32[1]])
def test_unknown_protocol_version_is_invalid_argument_naming_it(
    stub: pb_grpc.PeerServiceStub, version: int
) -> None:
    requests: list[tuple[Any, Any]] = [
        (stub.Exchange, good_request(protocol_version=version)),
        (stub.GetStatus, pb.StatusRequest(protocol_version=version)),
        (stub.ListPeers, pb.ListPeersRequest(protocol_version=version)),
        (stub.GetTime, pb.TimeRequest(protocol_version=version)),
        (stub.GetHistory, pb.HistoryRequest(protocol_version=version)),
    ]
    for method, request in requests:
        code, details = code_of(functools.partial(method, request, timeout=DEADLINE_S))
        assert code is INVALID
        assert f"protocol_version {version} is not supported" in details


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"node_id": ""}, "node_id ''"),
        ({"node_id": "n" * 65}, "node_id"),
        ({"node_id": "has space"}, "node_id 'has space'"),
        ({"node_id": "slash/ed"}, "node_id"),
        ({"node_id": "naïve"}, "node_id"),
        ({"node_id": "new\nline"}, "node_id"),
        ({"cluster": ""}, "cluster ''"),
        ({"cluster": "c" * 65}, "cluster"),
        ({"cluster": "bad;cluster"}, "cluster 'bad;cluster'"),
        ({"cluster": "other-cluster"}, "cluster 'other-cluster' is not this node's"),
    ],
)
def test_bad_names_and_other_clusters_are_invalid_argument(
    stub: pb_grpc.PeerServiceStub, changes: dict[str, str], named: str
) -> None:
    code, details = code_of(lambda: stub.Exchange(good_request(**changes), timeout=DEADLINE_S))
    assert code is INVALID
    assert named in details


# Year 2300 in ns does not fit in an int64 (whose largest value is in 2262): the largest
# int64 and 2250 stand for "far in the future"; both are beyond the protocol's 2200.
YEAR_2250_NS = 8_835_955_200 * 1_000_000_000


@pytest.mark.parametrize(
    "t1_ns",
    [0, -1, INT64[0], protocol.MIN_TIME_NS - 1, protocol.MAX_TIME_NS + 1, YEAR_2250_NS, INT64[1]],
)
def test_client_send_ns_outside_2000_2200_is_invalid_argument(
    stub: pb_grpc.PeerServiceStub, t1_ns: int
) -> None:
    code, details = code_of(
        lambda: stub.Exchange(good_request(client_send_ns=t1_ns), timeout=DEADLINE_S)
    )
    assert code is INVALID
    assert f"client_send_ns {t1_ns} is not a time" in details


def test_oversized_requests_are_refused_and_the_service_keeps_serving(
    stub: pb_grpc.PeerServiceStub,
) -> None:
    # Two different refusals, by size. Up to the node's gRPC limit (4 × 64 KiB) a message
    # reaches the handler, whose size check answers INVALID_ARGUMENT with the size; beyond it,
    # gRPC's transport refuses the message before any handler runs and answers
    # RESOURCE_EXHAUSTED itself (our code never sees it, so it cannot say anything else).
    mid = good_request(node_id="n" * (100 * 1024))
    code, details = code_of(lambda: stub.Exchange(mid, timeout=DEADLINE_S))
    assert code is INVALID
    assert f"exceeds {protocol.MAX_MESSAGE_BYTES}" in details
    huge = good_request(node_id="n" * (GRPC_LIMIT + 1024))
    code, details = code_of(lambda: stub.Exchange(huge, timeout=DEADLINE_S))
    assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert_still_serving(stub)


def test_an_invalid_request_is_logged_with_the_reason(
    stub: pb_grpc.PeerServiceStub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chronotick.peers")
    code_of(lambda: stub.Exchange(good_request(cluster="elsewhere"), timeout=DEADLINE_S))
    lines = [r.getMessage() for r in caplog.records if r.name == "chronotick.peers"]
    assert any("invalid request from" in m and "'elsewhere'" in m for m in lines), lines


def test_require_identity_refuses_callers_without_a_certificate() -> None:
    """With mutual TLS the handlers also refuse a caller that showed no certificate (a
    plaintext caller here); even a perfectly good request gets UNAUTHENTICATED."""
    server, port = _start_server(FakeNode(), require_identity=True)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as chan:
            stub = pb_grpc.PeerServiceStub(chan)
            code, details = code_of(lambda: stub.Exchange(good_request(), timeout=DEADLINE_S))
            assert code is grpc.StatusCode.UNAUTHENTICATED
            assert "certificate" in details
            v = protocol.PROTOCOL_VERSION
            code, _ = code_of(
                lambda: stub.GetTime(pb.TimeRequest(protocol_version=v), timeout=DEADLINE_S)
            )
            assert code is grpc.StatusCode.UNAUTHENTICATED
            code, _ = code_of(
                lambda: stub.GetHistory(pb.HistoryRequest(protocol_version=v), timeout=DEADLINE_S)
            )
            assert code is grpc.StatusCode.UNAUTHENTICATED
    finally:
        server.stop(grace=None)


# -- history -----------------------------------------------------------------------------------


def test_history_answers_points_samples_and_changes(
    stub: pb_grpc.PeerServiceStub, node: FakeNode
) -> None:
    v = protocol.PROTOCOL_VERSION
    reply = stub.GetHistory(pb.HistoryRequest(protocol_version=v), timeout=DEADLINE_S)
    assert reply.node_id == NODE_ID and reply.kept_s == 3600.0
    assert len(reply.points) == 10
    ages = [p.age_s for p in reply.points]
    assert ages == sorted(ages, reverse=True) and 9.0 < ages[0] < 15.0
    first = reply.points[0]
    assert first.offset_ns == node.model.offset_at(first.base_time_ns)
    assert first.bound_ns == node.model.bound_at(first.base_time_ns)
    assert first.status == pb.CLOCK_STATUS_SYNCHRONIZED and first.consensus_offset_ns == -10
    assert list(reply.servers) == ["ntp-a.example:123"]
    assert [(s.server, s.offset_ns, s.rejected) for s in reply.samples] == [
        (0, 10_000, ""), (0, 8_000, ""), (0, 6_000, "outlier"), (0, 4_000, ""), (0, 2_000, "")
    ]  # fmt: skip
    (change,) = reply.status_changes
    assert (change.old_status, change.new_status, change.reason) == (
        pb.CLOCK_STATUS_UNKNOWN,
        pb.CLOCK_STATUS_SYNCHRONIZED,
        "the model fits 4 samples",
    )
    # the newest four points (the window ends half way to the fifth: the history is as old as
    # the module's node, seconds on a loaded machine), at most 3: both ends and the middle
    since_s = ages[-1] + 3.5
    recent = stub.GetHistory(pb.HistoryRequest(protocol_version=v, since_s=since_s, max_points=3),
                             timeout=DEADLINE_S)  # fmt: skip
    newest_s = recent.points[-1].age_s
    assert [round(p.age_s - newest_s) for p in recent.points] == [3, 1, 0]
    assert [s.offset_ns for s in recent.samples] == [4_000, 2_000]
    assert not recent.status_changes


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"since_s": -1.0}, "since_s -1.0 is not between 0 and 86400 s"),
        ({"since_s": math.nan}, "since_s nan"),
        ({"since_s": math.inf}, "since_s inf"),
        ({"since_s": 86_401.0}, "since_s 86401.0"),
        ({"max_points": protocol.MAX_HISTORY_POINTS + 1}, "max_points 1501 exceeds 1500"),
    ],
)
def test_bad_history_requests_are_invalid_argument(
    stub: pb_grpc.PeerServiceStub, changes: dict[str, Any], named: str
) -> None:
    request = pb.HistoryRequest(protocol_version=protocol.PROTOCOL_VERSION, **changes)
    code, details = code_of(lambda: stub.GetHistory(request, timeout=DEADLINE_S))
    assert code is INVALID
    assert named in details


def test_the_fullest_history_reply_fits_the_grpc_limit() -> None:
    """An hour of history with every field at its widest (long names and reasons, offsets
    and bounds at the protocol's limits) still goes out in one reply: the reply limits are
    what keep it under the server's send limit, and this fills them."""
    huge = protocol.MAX_ERROR_NS
    model = model_at(T0, offset_ns=-huge, sigma_ns=float(huge), bound_ns=huge, source="s" * 200)
    history = History()
    servers = [f"{k}-{'n' * 60}.example:123" for k in range(16)]
    mono0 = time.monotonic_ns() - 3590 * 10**9
    for k in range(3590):
        mono, at = mono0 + k * 10**9, T0 + k * 10**9
        history.add_point(mono, at, model, consensus_offset_ns=-huge)
        sample = Sample(at, -huge, huge, servers[k % 16])
        history.add_sample(mono, sample, "r" * 100)
        if k % 10 == 0:
            history.add_change(mono, at, ClockStatus.SYNCHRONIZED, ClockStatus.FREE_RUNNING,
                               "x" * 1000)  # fmt: skip
    server, port = _start_server(FakeNode(recent=history), require_identity=False)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as chan:
            reply = pb_grpc.PeerServiceStub(chan).GetHistory(
                pb.HistoryRequest(protocol_version=protocol.PROTOCOL_VERSION),
                timeout=DEADLINE_S,
            )
    finally:
        server.stop(grace=None)
    assert len(reply.points) == protocol.MAX_HISTORY_POINTS
    assert len(reply.samples) == protocol.MAX_HISTORY_SAMPLES
    assert len(reply.status_changes) == protocol.MAX_HISTORY_CHANGES
    size = reply.ByteSize()
    print(f"fullest history reply: {size} bytes of {GRPC_LIMIT}")
    assert size < GRPC_LIMIT


# -- fuzzing -----------------------------------------------------------------------------------

#: text protobuf can carry (no lone surrogates: those cannot even be put in a message), biased
#: towards the valid names so that some examples get past validation
any_text = st.one_of(
    st.sampled_from([CLUSTER, "caller-1", "", "x" * 64, "x" * 65]),
    st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=80),
)
any_version = st.one_of(st.just(protocol.PROTOCOL_VERSION), st.integers(*UINT32))
any_time = st.one_of(
    st.integers(protocol.MIN_TIME_NS, protocol.MAX_TIME_NS),
    st.sampled_from([0, *INT64, protocol.MIN_TIME_NS - 1, protocol.MAX_TIME_NS + 1]),
    st.integers(*INT64),
)
any_request = st.one_of(
    st.builds(
        pb.ExchangeRequest,
        protocol_version=any_version,
        node_id=any_text,
        cluster=any_text,
        client_send_ns=any_time,
    ),
    st.builds(pb.StatusRequest, protocol_version=any_version),
    st.builds(pb.ListPeersRequest, protocol_version=any_version),
    st.builds(pb.TimeRequest, protocol_version=any_version),
    st.builds(
        pb.HistoryRequest,
        protocol_version=any_version,
        since_s=st.one_of(st.floats(), st.sampled_from([0.0, 5.0, protocol.MAX_HISTORY_S])),
        max_points=st.one_of(st.integers(*UINT32), st.integers(0, protocol.MAX_HISTORY_POINTS)),
    ),
)
FUZZ = settings(
    max_examples=150,
    deadline=None,  # each call has its own gRPC deadline
    derandomize=True,  # the same examples every run: a failure here is reproducible
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _method_of(request: Any) -> str:
    return next(name for name, kind in METHODS.items() if isinstance(request, kind))


@FUZZ
@given(request=any_request)
def test_fuzzed_requests_get_ok_or_invalid_argument(
    stub: pb_grpc.PeerServiceStub, request: Any
) -> None:
    """Any message a client can build: OK exactly when validation passes, INVALID_ARGUMENT
    otherwise; never INTERNAL/UNKNOWN, never a hang."""
    method = getattr(stub, _method_of(request))
    code, details = code_of(lambda: method(request, timeout=DEADLINE_S))
    try:
        protocol.check_version(request.protocol_version)
        if isinstance(request, pb.ExchangeRequest):
            protocol.check_exchange_request(request, CLUSTER)
        if isinstance(request, pb.HistoryRequest):
            protocol.check_history_request(request)
    except protocol.InvalidMessage as exc:
        assert (code, details) == (INVALID, str(exc))
    else:
        assert code is OK, details
    assert_still_serving(stub)


#: bytes: random, and valid messages with random bytes after them (unknown fields, truncated
#: fields, bad wire types), which get much further into the parser than pure noise
raw_bytes = st.one_of(
    st.binary(max_size=300),
    st.builds(
        lambda request, tail: request.SerializeToString() + tail,
        any_request,
        st.binary(max_size=40),
    ),
)


def _parses(kind: Any, data: bytes) -> bool:
    try:
        kind.FromString(data)
    except DecodeError:
        return False
    return True


@FUZZ
@given(method=st.sampled_from(sorted(METHODS)), data=raw_bytes)
def test_raw_bytes_never_crash_a_handler_or_hang(
    channel: grpc.Channel, stub: pb_grpc.PeerServiceStub, method: str, data: bytes
) -> None:
    """Raw bytes through a generic call with identity serializers. What parses as the
    request is answered OK or INVALID_ARGUMENT; what does not parse, INVALID_ARGUMENT.
    Either way the answer comes within the deadline and the server answers the next call."""
    call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
        f"{SERVICE}/{method}", request_serializer=None, response_deserializer=None
    )
    code, details = code_of(lambda: call(data, timeout=DEADLINE_S))
    if _parses(METHODS[method], data):
        assert code in (OK, INVALID), (code, details)
    else:
        assert code is INVALID and "not a" in details, (code, details)
    assert_still_serving(stub)


UNDECODABLE = [
    b"\xff\xff\xff",  # field 0x1fffff... with wire type 7, which does not exist
    b"\x08",  # a varint tag and no varint
    b"\x08\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",  # an 11-byte varint
    b"\x12\x05ab",  # node_id says 5 bytes, 2 follow
    b"\x12\x02\xff\xfe",  # node_id that is not UTF-8 (proto3 strings must be)
]


@pytest.mark.parametrize("data", UNDECODABLE)
def test_undecodable_bytes_get_invalid_argument(
    channel: grpc.Channel, stub: pb_grpc.PeerServiceStub, data: bytes
) -> None:
    assert not _parses(pb.ExchangeRequest, data)
    call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
        f"{SERVICE}/Exchange", request_serializer=None, response_deserializer=None
    )
    code, details = code_of(lambda: call(data, timeout=DEADLINE_S))
    assert_still_serving(stub)
    assert code is INVALID, (code, details)


# -- the calling side: replies are input too ---------------------------------------------------

T1 = 1_700_000_000_000_000_000
T2 = T1 + 1_000_000  # the peer's clock is ahead of ours
T3 = T2 + 100_000  # the peer held the request 100 µs
T4 = T1 + 2_000_000


def good_estimate(**changes: Any) -> pb.ClockEstimate:
    fields: dict[str, Any] = {
        "correction_ns": -250_000,
        "sigma_ns": 50_000,
        "bound_ns": 120_000,
        "status": pb.CLOCK_STATUS_SYNCHRONIZED,
        "drift_ppb": 1_500.0,
        "source": "ntp",
    }
    fields.update(changes)
    return pb.ClockEstimate(**fields)


def good_reply(estimate: pb.ClockEstimate | None = None, **changes: Any) -> pb.ExchangeReply:
    fields: dict[str, Any] = {
        "protocol_version": protocol.PROTOCOL_VERSION,
        "node_id": "peer-7",
        "client_send_ns": T1,
        "server_receive_ns": T2,
        "server_send_ns": T3,
        "estimate": estimate if estimate is not None else good_estimate(),
    }
    fields.update(changes)
    return pb.ExchangeReply(**fields)


def test_check_reply_turns_a_good_reply_into_ntp_offset_and_delay() -> None:
    exchange = check_reply(good_reply(), "127.0.0.1:9", "static", T1, T4)
    assert (exchange.node_id, exchange.address, exchange.discovered_by) == (
        "peer-7",
        "127.0.0.1:9",
        "static",
    )
    assert exchange.offset_ns == ((T2 - T1) + (T3 - T4)) // 2 == 50_000
    assert exchange.rtt_ns == (T4 - T1) - (T3 - T2) == 1_900_000
    clock = exchange.peer_clock
    assert (clock.correction_ns, clock.sigma_ns, clock.bound_ns) == (-250_000, 50_000.0, 120_000)
    assert clock.status is ClockStatus.SYNCHRONIZED and clock.usable


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (good_reply(client_send_ns=T1 + 1), "client_send_ns does not echo our request"),
        (good_reply(server_send_ns=T2 - 1), "server_send_ns is before server_receive_ns"),
        (good_reply(server_send_ns=T2 + 3_000_000), "held the request longer than the round"),
        (good_reply(good_estimate(drift_ppb=math.nan)), "drift_ppb nan is not a frequency"),
        (good_reply(good_estimate(drift_ppb=math.inf)), "drift_ppb inf is not a frequency"),
        (good_reply(good_estimate(drift_ppb=-math.inf)), "drift_ppb -inf is not a frequency"),
        (good_reply(good_estimate(drift_ppb=2e7)), "drift_ppb 20000000.0 is not a frequency"),
        (good_reply(good_estimate(sigma_ns=2**62)), f"sigma_ns {2**62} is out of range"),
        (good_reply(good_estimate(bound_ns=-1)), "sigma_ns and bound_ns must be >= 0"),
        (good_reply(good_estimate(sigma_ns=-5)), "sigma_ns and bound_ns must be >= 0"),
        (good_reply(good_estimate(correction_ns=INT64[0])), "correction_ns"),
        (good_reply(protocol_version=2), "protocol_version 2 is not supported"),
        (good_reply(node_id=""), "node_id ''"),
        (good_reply(node_id="a b"), "node_id 'a b'"),
        (good_reply(server_receive_ns=0), "server_receive_ns 0 is not a time"),
        (good_reply(server_send_ns=INT64[1]), "server_send_ns"),
    ],
)
def test_check_reply_refuses_lying_or_malformed_replies(
    reply: pb.ExchangeReply, message: str
) -> None:
    with pytest.raises(ExchangeError) as caught:
        check_reply(reply, "127.0.0.1:9", "static", T1, T4)
    text = str(caught.value)
    assert text.startswith("bad reply: ") and message in text, text


@FUZZ
@given(
    reply=st.builds(
        good_reply,
        st.builds(
            pb.ClockEstimate,
            correction_ns=st.integers(*INT64),
            sigma_ns=st.integers(*INT64),
            bound_ns=st.integers(*INT64),
            status=st.integers(0, 6),
            drift_ppb=st.floats(),
            source=any_text,
        ),
        protocol_version=any_version,
        node_id=any_text,
        client_send_ns=st.sampled_from([T1, T1 + 1, 0]),
        server_receive_ns=any_time,
        server_send_ns=any_time,
    ),
    t4=st.integers(T1, T1 + 10**10),
)
def test_check_reply_on_any_reply_gives_a_sane_exchange_or_an_exchange_error(
    reply: pb.ExchangeReply, t4: int
) -> None:
    """Whatever a peer sends, the caller gets an ExchangeError or an exchange whose numbers
    the peer table can use: a round trip >= 0, finite bounded figures."""
    try:
        exchange = check_reply(reply, "127.0.0.1:9", "static", T1, t4)
    except ExchangeError as exc:
        assert str(exc).startswith("bad reply: ")
        return
    clock = exchange.peer_clock
    assert exchange.rtt_ns >= 0
    assert math.isfinite(clock.drift_ppb)
    assert 0 <= clock.bound_ns <= protocol.MAX_ERROR_NS
    assert clock.sigma_ns >= 1 and abs(clock.correction_ns) <= protocol.MAX_ERROR_NS
    assert clock.usable == (clock.status in (ClockStatus.SYNCHRONIZED, ClockStatus.FREE_RUNNING))


# -- peer_clock_from_wire ----------------------------------------------------------------------


def test_peer_clock_from_wire_carries_a_good_estimate() -> None:
    clock = protocol.peer_clock_from_wire(good_estimate(source="s" * 100))
    assert clock == PeerClock(
        -250_000, 50_000.0, 120_000, ClockStatus.SYNCHRONIZED, 1_500.0, "s" * 32
    )
    # a σ of 0 would give the peer infinite weight in the inverse-variance mean: floored to 1 ns
    assert protocol.peer_clock_from_wire(good_estimate(sigma_ns=0)).sigma_ns == 1.0
    free = protocol.peer_clock_from_wire(good_estimate(status=pb.CLOCK_STATUS_FREE_RUNNING))
    assert free.status is ClockStatus.FREE_RUNNING and free.usable


@pytest.mark.parametrize(
    "status", [pb.CLOCK_STATUS_UNSPECIFIED, pb.CLOCK_STATUS_UNKNOWN, pb.CLOCK_STATUS_DISRUPTED, 99]
)
def test_peer_clock_without_an_interval_is_unusable(status: int) -> None:
    """UNSPECIFIED and values from a newer protocol are read as UNKNOWN; none of these may
    enter the consensus, whatever σ the peer claims."""
    clock = protocol.peer_clock_from_wire(good_estimate(status=status))
    assert clock.sigma_ns == math.inf and not clock.usable
    expected = ClockStatus.DISRUPTED if status == pb.CLOCK_STATUS_DISRUPTED else ClockStatus.UNKNOWN
    assert clock.status is expected


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"drift_ppb": math.nan}, "drift_ppb nan"),
        ({"drift_ppb": 1e7 + 1}, "drift_ppb"),
        ({"drift_ppb": -1e300}, "drift_ppb"),
        ({"correction_ns": protocol.MAX_ERROR_NS + 1}, "correction_ns"),
        ({"correction_ns": -protocol.MAX_ERROR_NS - 1}, "correction_ns"),
        ({"bound_ns": INT64[1]}, "bound_ns"),
        ({"sigma_ns": INT64[0]}, "sigma_ns"),
        ({"sigma_ns": -1}, ">= 0"),
        ({"bound_ns": -1, "status": pb.CLOCK_STATUS_UNKNOWN}, ">= 0"),
    ],
)
def test_peer_clock_from_wire_refuses_out_of_range_numbers(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(protocol.InvalidMessage, match=message):
        protocol.peer_clock_from_wire(good_estimate(**changes))


def test_peer_clock_from_wire_accepts_the_limits_themselves() -> None:
    day = protocol.MAX_ERROR_NS
    clock = protocol.peer_clock_from_wire(
        good_estimate(drift_ppb=-1e7, correction_ns=-day, sigma_ns=day, bound_ns=day)
    )
    assert (clock.drift_ppb, clock.correction_ns, clock.bound_ns) == (-1e7, -day, day)
