"""Mutual TLS between real nodes, run as `chronotick-node start` subprocesses on 127.0.0.1.

The promise (DESIGN.md, "Peers and agreement", Security): nodes of a cluster authenticate each
other with certificates of the cluster's CA; a node without that CA can neither join (be
measured, or measure) nor query a node for anything but its health, which a separate plaintext
port serves to probes; plaintext is allowed on loopback or with --insecure only, and half a
TLS configuration is refused at start.

One module fixture runs an NTP reference, two cluster nodes (`a`, `b`) and an intruder whose
certificate and CA are well formed but foreign, so that each test reads the state of the same
small cluster. The intruder starts once `a` and `b` serve, so that its first failed exchange is
the TLS one and the reason it logs is the certificate (see
`test_node_logs_a_reason_that_changes_while_a_peer_keeps_failing` for what happens otherwise).

"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from coordinator import protocol
from coordinator.proto.chronotick.v1 import peer_pb2 as pb
from coordinator.proto.chronotick.v1 import peer_pb2_grpc as pb_grpc
from tests.helpers.certs import TestPki, make_pki
from tests.helpers.node import (
    ROOT,
    NodeProcess,
    free_tcp_port,
    node_processes,
    start_cli,
    wait_until,
)
from tests.helpers.segments import remove_segment_files, unique_name

pytestmark = pytest.mark.integration

# -- the cluster -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SecureCluster:
    pki: TestPki
    a: NodeProcess
    b: NodeProcess
    intruder: NodeProcess
    #: a's plaintext health port
    health_port: int


def _peer_ids(node: NodeProcess) -> set[str]:
    return {p.node_id for p in node.list_peers().peers}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureCluster]:
    directory = tmp_path_factory.mktemp("secure-cluster")
    ids = {name: unique_name(name) for name in ("a", "b", "intruder")}
    pki = make_pki(directory, [ids["a"], ids["b"]], foreign_node_id=ids["intruder"])
    port_a, port_b, port_i, health = (free_tcp_port() for _ in range(4))
    with node_processes(directory) as procs:
        ntp = procs.ntp_server()
        a = procs.node(
            ids["a"], port_a, ntp, peers=[port_b], tls_flags=pki.nodes[ids["a"]].flags(pki.ca),
            extra=["--health-listen", f"127.0.0.1:{health}"],
        )  # fmt: skip
        # b also dials the intruder: the refusal must show on the dialling side too
        b = procs.node(
            ids["b"], port_b, ntp, peers=[port_a, port_i],
            tls_flags=pki.nodes[ids["b"]].flags(pki.ca),
        )  # fmt: skip
        a.wait_synchronized()
        b.wait_synchronized()
        wait_until(
            lambda: _peer_ids(a) == {b.node_id} and _peer_ids(b) == {a.node_id},
            15,
            lambda: f"a and b to measure each other:\n{a.log()}\n{b.log()}",
        )
        intruder = procs.node(
            ids["intruder"], port_i, ntp, peers=[port_a, port_b],
            tls_flags=pki.foreign_node.flags(pki.foreign_ca),
        )  # fmt: skip
        # until it has tried both, and b has tried it
        wait_until(
            lambda: (
                len(intruder.log_lines("WARNING", "chronotick.node: peer 127.0.0.1:")) >= 2
                and bool(b.log_lines("WARNING", f"peer 127.0.0.1:{port_i}"))
            ),
            15,
            lambda: f"the intruder's failed exchanges:\n{intruder.log()}\n{b.log()}",
        )
        yield SecureCluster(pki, a, b, intruder, health)


# -- tests -------------------------------------------------------------------------------------


@pytest.mark.slow  # the module's cluster takes ~5 s to start
def test_cluster_nodes_measure_each_other_over_mutual_tls(cluster: SecureCluster) -> None:
    a, b = cluster.a, cluster.b
    assert a.log_lines(f"peer service on {a.address} (mutual TLS)")
    for me, other in ((a, b), (b, a)):
        out = me.peers_json()
        assert out["node_id"] == me.node_id
        peers = out["peers"]
        assert isinstance(peers, list)
        assert [p["node_id"] for p in peers] == [other.node_id]  # the intruder is not there
        entry = peers[0]
        assert entry["address"] == other.address and entry["discovered_by"] == "static"
        assert entry["state"] == "used" and entry["peer_status"] == "SYNCHRONIZED"
        # one host, one system clock: the offset is the measurement noise, well under 5 ms
        assert abs(entry["offset_ns"]) < 5_000_000
        assert 0 < entry["rtt_ns"] < 100_000_000
        assert 0 < entry["sigma_ns"] < 50_000_000
        assert 0 <= entry["age_s"] < 3.0  # the expiry: the entry is being kept fresh
        consensus = out["consensus"]
        assert isinstance(consensus, dict) and consensus["peers_used"] == 1


@pytest.mark.slow  # the module's cluster takes ~5 s to start
def test_node_with_a_foreign_ca_cannot_join(cluster: SecureCluster) -> None:
    a, b, intruder = cluster.a, cluster.b, cluster.intruder
    # never in the others' tables, over several peer rounds of everyone
    for _ in range(4):
        assert _peer_ids(a) == {b.node_id}
        assert _peer_ids(b) == {a.node_id}
        time.sleep(0.4)
    assert a.status().peers_known == 1 and b.status().peers_known == 1
    # and its own table, read with its own (foreign) identity, is empty: it measured nobody
    out = intruder.peers_json()
    assert out["node_id"] == intruder.node_id and out["peers"] == []
    # its log says why, once per peer: the cluster node's certificate does not verify
    for node in (a, b):
        lines = intruder.log_lines("WARNING", f"peer {node.address} (static)")
        assert len(lines) == 1, intruder.log()
        assert "CERTIFICATE_VERIFY_FAILED" in lines[0], lines[0]
    assert intruder.process.poll() is None, "the refused node must keep running"


@pytest.mark.slow
def test_node_logs_a_reason_that_changes_while_a_peer_keeps_failing(
    cluster: SecureCluster,
) -> None:
    """The dialling side must say why too. b started before the intruder, so its first
    exchange with it met a closed port; every later one met the foreign certificate."""
    b, intruder = cluster.b, cluster.intruder
    lines = b.log_lines("WARNING", f"peer {intruder.address} (static)")
    assert any("Connection refused" in line for line in lines), b.log()  # the set-up held
    assert any("CERTIFICATE_VERIFY_FAILED" in line for line in lines), b.log()


@pytest.mark.slow  # the module's cluster takes ~5 s to start
@pytest.mark.parametrize("command", ["status", "peers", "time"])
def test_foreign_certificate_cannot_query_a_cluster_node(
    cluster: SecureCluster, command: str
) -> None:
    foreign = cluster.pki.foreign_node
    a = cluster.a
    # with its own CA: it cannot verify the node's certificate
    result = a.cli(command, tls_flags=foreign.flags(cluster.pki.foreign_ca))
    assert result.returncode == 1 and result.stdout == ""
    assert f"chronotick-node: {a.address}: UNAVAILABLE" in result.stderr
    assert "CERTIFICATE_VERIFY_FAILED" in result.stderr
    # trusting the cluster CA does not help: the node refuses the foreign client certificate
    result = a.cli(command, tls_flags=foreign.flags(cluster.pki.ca))
    assert result.returncode == 1 and result.stdout == ""
    assert f"chronotick-node: {a.address}: UNAVAILABLE" in result.stderr


@pytest.mark.slow  # the module's cluster takes ~5 s to start
def test_client_without_a_certificate_cannot_query_the_tls_port(cluster: SecureCluster) -> None:
    a = cluster.a
    result = a.cli("status", tls_flags=[])
    assert result.returncode == 1 and result.stdout == ""
    assert f"chronotick-node: {a.address}: UNAVAILABLE" in result.stderr
    # not even the health service: on the TLS port everything needs the cluster's certificate
    with grpc.insecure_channel(a.address) as channel:
        with pytest.raises(grpc.RpcError) as caught:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE


@pytest.mark.slow  # the module's cluster takes ~5 s to start
def test_plaintext_health_port_answers_serving_and_nothing_else(cluster: SecureCluster) -> None:
    """What a load balancer or a prober without the CA may ask: the standard health check."""
    with grpc.insecure_channel(f"127.0.0.1:{cluster.health_port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "chronotick.v1.PeerService"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=3)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, service
        with pytest.raises(grpc.RpcError) as caught:
            pb_grpc.PeerServiceStub(channel).GetStatus(
                pb.StatusRequest(protocol_version=protocol.PROTOCOL_VERSION), timeout=3
            )
    assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED


# -- flags refused at start (nothing is bound) -------------------------------------------------


@pytest.mark.parametrize(
    "listen",
    [
        ["--listen", "192.0.2.10:7820"],
        # a wildcard listens on every interface, loopback among them: still not loopback only
        ["--listen", "0.0.0.0:7820", "--advertise", "192.0.2.10"],
        ["--listen", "[::]:7820", "--advertise", "2001:db8::1"],
    ],
)
def test_plaintext_on_a_non_loopback_address_needs_insecure(listen: list[str]) -> None:
    name = unique_name("test-refused")
    try:
        result = start_cli("--node-id", "n1", *listen, "--no-discovery",
                           "--server", "127.0.0.1:9", "--shm-name", name)  # fmt: skip
    finally:
        remove_segment_files(name)
    assert result.returncode == 2, result.stderr
    assert "plaintext is allowed only on loopback" in result.stderr
    assert "--insecure" in result.stderr


def _partial_tls_sets(pki: TestPki) -> list[list[str]]:
    node = next(iter(pki.nodes.values()))
    return [
        ["--tls-cert", str(node.cert)],
        ["--tls-cert", str(node.cert), "--tls-key", str(node.key)],
        ["--tls-ca", str(pki.ca)],
    ]


def test_half_a_tls_configuration_exits_2(tmp_path: Path) -> None:
    pki = make_pki(tmp_path, ["n1"])
    for flags in _partial_tls_sets(pki):
        result = start_cli("--node-id", "n1", "--listen", "127.0.0.1:7820", "--no-discovery",
                           "--server", "127.0.0.1:9", *flags)  # fmt: skip
        assert result.returncode == 2, (flags, result.stderr)
        assert "TLS needs all three of tls_cert, tls_key and tls_ca" in result.stderr
    # the query commands refuse it the same way, before dialling anything
    query = subprocess.run(
        [sys.executable, "-m", "coordinator.cli", "status", "--connect", "127.0.0.1:9",
         "--tls-cert", str(pki.nodes["n1"].cert)],
        capture_output=True, text=True, timeout=30, cwd=ROOT,
    )  # fmt: skip
    assert query.returncode == 2 and "TLS needs all three" in query.stderr
    # and TLS with --insecure is a contradiction, not a choice
    node = pki.nodes["n1"]
    result = start_cli("--node-id", "n1", "--no-discovery", "--server", "127.0.0.1:9",
                       "--insecure", *node.flags(pki.ca))  # fmt: skip
    assert result.returncode == 2 and "--insecure and the TLS files exclude" in result.stderr
