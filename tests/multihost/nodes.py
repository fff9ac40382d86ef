"""ChronoTick nodes on the hosts of a `Cluster`: start them under skewed clocks, ask them over
gRPC from the test process (through the bridge), and compare what they say with the truth.

The test process runs on the true clock, so the true instant of a node's answer lies between
the two `time.time_ns()` readings around the call; on the bridge that window is about a
millisecond.
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

import grpc

from coordinator import protocol
from coordinator.exchange import open_channel
from coordinator.proto.chronotick.v1 import peer_pb2 as pb
from coordinator.proto.chronotick.v1 import peer_pb2_grpc as pb_grpc
from tests.multihost.netns import Cluster, Host, Proc

PORT = 7820
V = protocol.PROTOCOL_VERSION


@dataclasses.dataclass
class Node:
    node_id: str
    host: Host
    proc: Proc
    offset_s: float
    rate: float

    @property
    def address(self) -> str:
        return f"{self.host.address}:{PORT}"

    def stub(self) -> pb_grpc.PeerServiceStub:
        return pb_grpc.PeerServiceStub(_channel(self.address))

    def peers(self, timeout_s: float = 2.0) -> pb.ListPeersReply:
        return self.stub().ListPeers(pb.ListPeersRequest(protocol_version=V), timeout=timeout_s)

    def status(self, timeout_s: float = 2.0) -> pb.StatusReply:
        return self.stub().GetStatus(pb.StatusRequest(protocol_version=V), timeout=timeout_s)

    def timed_time(self, timeout_s: float = 2.0) -> tuple[int, pb.TimeReply, int]:
        """(true time before, the node's answer, true time after)."""
        stub = self.stub()
        before = time.time_ns()
        reply = stub.GetTime(pb.TimeRequest(protocol_version=V), timeout=timeout_s)
        return before, reply, time.time_ns()

    def skew_ns(self, true_ns: int) -> int:
        return self.proc.skew_ns(true_ns)


_channels: dict[str, grpc.Channel] = {}


def _channel(address: str) -> grpc.Channel:
    if address not in _channels:
        _channels[address] = open_channel(address, None)
    return _channels[address]


def close_channels() -> None:
    for channel in _channels.values():
        channel.close()
    _channels.clear()


def start_nodes(
    cluster: Cluster,
    skews: Sequence[tuple[float, float]],
    *,
    servers: Sequence[str] | None = None,
    extra: Sequence[str] = (),
    per_node_servers: dict[int, Sequence[str]] | None = None,
) -> list[Node]:
    """One node per host, host i under libfaketime with `skews[i]` = (offset s, rate)."""
    nodes = []
    if servers is None:
        assert cluster.reference is not None
        servers = [cluster.reference.address]
    for i, (host, (offset_s, rate)) in enumerate(zip(cluster.hosts, skews, strict=False)):
        node_id = f"n{i}"
        node_servers = (per_node_servers or {}).get(i, servers)
        argv = [
            sys.executable, "-m", "coordinator.cli", "start",
            "--node-id", node_id, "--cluster", "mh",
            "--listen", f"{host.address}:{PORT}", "--insecure",
            "--shm-name", f"{cluster.prefix}-{node_id}",
            *[a for s in node_servers for a in ("--server", s)],
            "--min-poll", "2", "--max-poll", "16",
            *extra,
        ]  # fmt: skip
        proc = host.popen(
            argv, faketime_offset_s=offset_s, faketime_rate=rate, log_name=f"node-{node_id}"
        )
        nodes.append(Node(node_id, host, proc, offset_s, rate))
    return nodes


def wait_serving(nodes: Sequence[Node], timeout_s: float = 20.0) -> float:
    """Wait until every node answers GetStatus; returns the monotonic time it happened."""
    deadline = time.monotonic() + timeout_s
    pending = list(nodes)
    while pending:
        for node in list(pending):
            try:
                node.status(timeout_s=0.5)
                pending.remove(node)
            except grpc.RpcError:
                if node.proc.poll() is not None:
                    raise AssertionError(
                        f"{node.node_id} exited:\n{node.proc.log_tail()}"
                    ) from None
        if pending and time.monotonic() > deadline:
            raise AssertionError(f"not serving after {timeout_s} s: {[n.node_id for n in pending]}")
        time.sleep(0.05)
    return time.monotonic()


def peer_ids(node: Node) -> set[str]:
    try:
        return {p.node_id for p in node.peers(timeout_s=1.0).peers}
    except grpc.RpcError:
        return set()


def wait_full_mesh(nodes: Sequence[Node], timeout_s: float) -> float | None:
    """Seconds until every node lists every other one, or None when `timeout_s` passes."""
    start = time.monotonic()
    everyone = {n.node_id for n in nodes}
    while time.monotonic() - start < timeout_s:
        if all(peer_ids(n) == everyone - {n.node_id} for n in nodes):
            return time.monotonic() - start
        time.sleep(0.05)
    return None


def wait_status(nodes: Sequence[Node], status: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    for node in nodes:
        while protocol.status_name(node.status().estimate.status) != status:
            if time.monotonic() > deadline:
                raise AssertionError(f"{node.node_id} never {status}:\n{node.proc.log_tail()}")
            time.sleep(0.5)


def offset_errors_ns(nodes: Sequence[Node]) -> dict[tuple[str, str], list[int]]:
    """For each (node, peer): the measured offset minus the true one, per table row read.

    The row's `measured_at_ns` is on the node's base clock; its true instant follows from the
    node's skew, and the truth is the difference of the two skews at that instant.
    """
    by_id = {n.node_id: n for n in nodes}
    errors: dict[tuple[str, str], list[int]] = {}
    for node in nodes:
        for row in node.peers().peers:
            peer = by_id.get(row.node_id)
            if peer is None:
                continue
            true_at = node.proc.true_ns_at(row.measured_at_ns)
            truth = peer.skew_ns(true_at) - node.skew_ns(true_at)
            errors.setdefault((node.node_id, row.node_id), []).append(row.offset_ns - truth)
    return errors


def median_abs(values: Sequence[int]) -> float:
    return float(statistics.median(abs(v) for v in values))


def exchange_rtts_ns(node: Node) -> list[int]:
    return [p.rtt_ns for p in node.peers().peers]


def time_errors(nodes: Sequence[Node]) -> list[dict[str, Any]]:
    """Each node's corrected time and interval against the truth, read one after another.

    The reply names the node's base-clock instant of the read, whose true instant follows from
    the node's known skew: exact to the launcher's ~20 µs, where the window of the call (about
    a millisecond on the bridge) would blur it.
    """
    out = []
    for node in nodes:
        before, reply, after = node.timed_time()
        true_ns = node.proc.true_ns_at(reply.base_time_ns)
        assert before - 1_000_000 <= true_ns <= after + 1_000_000, (before, true_ns, after)
        out.append(
            {
                "node_id": node.node_id,
                "status": protocol.status_name(reply.status),
                "source": reply.source,
                "error_ns": reply.corrected_ns - true_ns if reply.corrected_ns else None,
                "contains_truth": bool(reply.corrected_ns)
                and reply.earliest_ns <= true_ns <= reply.latest_ns,
                "bound_ns": (reply.latest_ns - reply.earliest_ns) // 2,
            }
        )
    return out
