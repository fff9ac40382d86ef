"""A real node among faulty peers: one that hangs, one that lies by 100 ms, and two that send
garbage estimates, next to two honest real nodes.

The promise (DESIGN.md, "Peers and agreement"): no crash, slow peer or lost message may hang a
node; a reply is input like any request; peers that disagree with the majority beyond their
intervals are falsetickers. The faulty peers are gRPC servers in this test process
implementing `PeerServiceServicer`; the node under test and its honest peers are
`chronotick-node start` subprocesses, synchronized to an NTP reference on 127.0.0.1 so that
their estimates are usable. One module fixture builds the whole scene once; each test reads
one aspect of it.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import math
import threading
import time
from collections.abc import Callable, Iterator

import grpc
import pytest

from chronotick.client import ChronoTickClient
from coordinator import protocol
from coordinator.proto.chronotick.v1 import peer_pb2 as pb
from coordinator.proto.chronotick.v1 import peer_pb2_grpc as pb_grpc
from tests.helpers.node import (
    NodeProcess,
    free_tcp_port,
    node_processes,
    wait_until,
)
from tests.helpers.segments import unique_name

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LIE_NS = 100_000_000
#: far beyond the node's --peer-timeout of 0.3 s
HANG_S = 30.0


class FakePeer(pb_grpc.PeerServiceServicer):
    """A peer whose Exchange replies are made by `reply(request, t2_ns)`; it counts calls."""

    def __init__(self, node_id: str, reply: Callable[[pb.ExchangeRequest, int], pb.ExchangeReply]):
        self.node_id = node_id
        self.reply = reply
        self.calls = 0
        self.release = threading.Event()
        self.port = 0
        self._server: grpc.Server | None = None

    def Exchange(
        self, request: pb.ExchangeRequest, context: grpc.ServicerContext
    ) -> pb.ExchangeReply:
        t2 = time.time_ns()
        self.calls += 1
        return self.reply(request, t2)

    def start(self) -> FakePeer:
        # many workers: a hanging handler holds its thread for HANG_S, one per peer round
        server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=64))
        pb_grpc.add_PeerServiceServicer_to_server(self, server)
        self.port = server.add_insecure_port("127.0.0.1:0")
        assert self.port
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        self.release.set()
        if self._server is not None:
            self._server.stop(grace=None)


def honest_estimate() -> pb.ClockEstimate:
    return pb.ClockEstimate(
        correction_ns=0,
        sigma_ns=20_000,
        bound_ns=50_000,
        status=pb.CLOCK_STATUS_SYNCHRONIZED,
        drift_ppb=0.0,
        source="ntp",
    )


def make_reply(
    node_id: str,
    lie_ns: int = 0,
    estimate: Callable[[], pb.ClockEstimate] = honest_estimate,
) -> Callable[[pb.ExchangeRequest, int], pb.ExchangeReply]:
    """Replies stamped on this process's clock (the host's, as the nodes' base clocks are),
    plus `lie_ns` on both T2 and T3: the peer claims a clock 100 ms ahead and an estimate
    that says its clock is right."""

    def reply(request: pb.ExchangeRequest, t2_ns: int) -> pb.ExchangeReply:
        return pb.ExchangeReply(
            protocol_version=protocol.PROTOCOL_VERSION,
            node_id=node_id,
            client_send_ns=request.client_send_ns,
            server_receive_ns=t2_ns + lie_ns,
            server_send_ns=time.time_ns() + lie_ns,
            estimate=estimate(),
        )

    return reply


@dataclasses.dataclass(frozen=True)
class Scene:
    node: NodeProcess
    honest: tuple[NodeProcess, NodeProcess]
    liar: FakePeer
    hanger: FakePeer
    nan_drift: FakePeer
    negative_sigma: FakePeer


def _states(node: NodeProcess) -> dict[str, str]:
    return {p.node_id: p.state for p in node.list_peers().peers}


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    directory = tmp_path_factory.mktemp("bad-peers")
    liar_id, hanger_id = unique_name("liar"), unique_name("hanger")
    nan_id, neg_id = unique_name("nan"), unique_name("negsigma")
    liar = FakePeer(liar_id, make_reply(liar_id, lie_ns=LIE_NS))
    nan_drift = FakePeer(
        nan_id,
        make_reply(nan_id, estimate=lambda: pb.ClockEstimate(
            sigma_ns=20_000, bound_ns=50_000, status=pb.CLOCK_STATUS_SYNCHRONIZED,
            drift_ppb=math.nan,
        )),
    )  # fmt: skip
    negative_sigma = FakePeer(
        neg_id,
        make_reply(neg_id, estimate=lambda: pb.ClockEstimate(
            sigma_ns=-20_000, bound_ns=50_000, status=pb.CLOCK_STATUS_SYNCHRONIZED,
        )),
    )  # fmt: skip
    honest_reply = make_reply(hanger_id)

    def hang(request: pb.ExchangeRequest, t2_ns: int) -> pb.ExchangeReply:
        hanger.release.wait(HANG_S)
        return honest_reply(request, t2_ns)

    hanger = FakePeer(hanger_id, hang)
    fakes = [liar, hanger, nan_drift, negative_sigma]
    try:
        for fake in fakes:
            fake.start()
        with node_processes(directory) as procs:
            ntp = procs.ntp_server()
            ports = [free_tcp_port() for _ in range(3)]
            honest = (
                procs.node(unique_name("honest1"), ports[1], ntp),
                procs.node(unique_name("honest2"), ports[2], ntp),
            )
            node = procs.node(
                unique_name("node"),
                ports[0],
                ntp,
                peers=[ports[1], ports[2], *(f.port for f in fakes)],
            )
            for n in (node, *honest):
                n.wait_synchronized()
            wanted = {honest[0].node_id: "used", honest[1].node_id: "used", liar_id: "falseticker"}
            wait_until(
                lambda: _states(node) == wanted,
                20,
                lambda: f"the node's table to be {wanted}, not {_states(node)}:\n{node.log()}",
            )
            yield Scene(node, honest, liar, hanger, nan_drift, negative_sigma)
    finally:
        for fake in fakes:
            fake.stop()


def test_hanging_peer_costs_only_its_deadline(scene: Scene) -> None:
    node = scene.node
    hanger = f"127.0.0.1:{scene.hanger.port}"
    # the node keeps trying it (each round gives up at the deadline and moves on)...
    calls = scene.hanger.calls
    wait_until(lambda: scene.hanger.calls >= calls + 2, 5, lambda: "two more rounds")
    # ...says why, once...
    lines = node.log_lines("WARNING", f"peer {hanger} (static): DEADLINE_EXCEEDED")
    assert len(lines) == 1, node.log()
    # ...never lists it...
    peers = node.list_peers().peers
    assert scene.hanger.node_id not in {p.node_id for p in peers}
    assert hanger not in {p.address for p in peers}
    # ...answers its own status at once while a hung exchange is outstanding...
    for _ in range(5):
        t0 = time.monotonic()
        status = node.status(timeout_s=2.0)
        assert time.monotonic() - t0 < 0.5
        assert status.estimate.status == pb.CLOCK_STATUS_SYNCHRONIZED
    # ...and keeps publishing its clock
    with ChronoTickClient(node.shm_name) as client:
        info = client.get_daemon_info()
        assert info["status"] == "SYNCHRONIZED"
        assert info["publish_age_seconds"] < 1.0
        first = client.get_time()
        time.sleep(0.3)
        assert client.get_time().corrected_time_ns > first.corrected_time_ns
    assert node.process.poll() is None


def test_peer_lying_by_100_ms_is_a_falseticker_outside_the_consensus(scene: Scene) -> None:
    out = scene.node.peers_json()
    peers = out["peers"]
    assert isinstance(peers, list)
    by_id = {p["node_id"]: p for p in peers}
    liar = by_id[scene.liar.node_id]
    assert liar["state"] == "falseticker"
    assert abs(liar["offset_ns"] - LIE_NS) < 5_000_000  # it was measured, and is 100 ms off
    for honest in scene.honest:
        assert by_id[honest.node_id]["state"] == "used"
        assert abs(by_id[honest.node_id]["offset_ns"]) < 5_000_000
    consensus = out["consensus"]
    assert isinstance(consensus, dict)
    assert consensus["peers_used"] == 2
    assert consensus["falsetickers"] == [scene.liar.node_id]
    # a third of the peers 100 ms away would pull a plain mean by 33 ms; it pulls nothing
    assert abs(consensus["offset_ns"]) < 5_000_000
    status = scene.node.status()
    assert status.peers_used == 2
    assert abs(status.estimate.correction_ns) < 5_000_000


@pytest.mark.parametrize(
    ("fake", "reason"),
    [
        ("nan_drift", "bad reply: drift_ppb nan is not a frequency error"),
        ("negative_sigma", "bad reply: sigma_ns and bound_ns must be >= 0"),
    ],
)
def test_garbage_estimates_are_logged_and_never_listed(
    scene: Scene, fake: str, reason: str
) -> None:
    peer: FakePeer = getattr(scene, fake)
    node = scene.node
    calls = peer.calls
    wait_until(lambda: peer.calls >= calls + 2, 5, lambda: f"two more exchanges with {fake}")
    lines = node.log_lines("WARNING", f"peer 127.0.0.1:{peer.port} (static): {reason}")
    assert len(lines) == 1, node.log()
    assert peer.node_id not in {p.node_id for p in node.list_peers().peers}
    assert node.process.poll() is None


def test_no_fault_reached_the_node_as_an_exception(scene: Scene) -> None:
    """Every fault above was an expected, handled case: no traceback, no 'unexpectedly'."""
    log = scene.node.log()
    assert "Traceback" not in log and "unexpectedly" not in log and "peer round failed" not in log
    assert scene.node.status().estimate.status == pb.CLOCK_STATUS_SYNCHRONIZED
