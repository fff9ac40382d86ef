"""A node: the daemon, the gRPC peer service, discovery and the peer measurements, in one
process.

Threads: the daemon's publish loop (the caller's thread), gRPC's handler pool, zeroconf's own
threads, and one peer loop that measures every discovered peer each `peer_poll_s`, a short
thread per peer so that a peer that hangs costs its own deadline and nobody else's. Waits use
the daemon's select-based Stopper, which works under libfaketime.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import importlib.metadata
import logging
import sys
import threading
import time

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from chronotick.daemon.service import Daemon
from chronotick.daemon.stopper import Stopper
from chronotick.engine import SourceReport
from chronotick.estimation.fusion import ExternalEstimate
from chronotick.history import History
from chronotick.model import ClockModel
from chronotick.precise_sleep import from_realtime_ns, to_realtime_ns
from coordinator import protocol
from coordinator.agreement_service import AgreementService
from coordinator.config import NodeConfig
from coordinator.discovery import Discovery, Endpoint, parse_host_port
from coordinator.exchange import ExchangeError, PeerClient
from coordinator.metrics import node_families, read_node
from coordinator.peer_events import PeerStateLog
from coordinator.peer_table import ConsensusResult, Exchange, PeerEntry, PeerTable, StackBias
from coordinator.proto.chronotick.v1 import agreement_pb2
from coordinator.service import SERVICE_NAME, PeerService, add_to_server

log = logging.getLogger("chronotick.node")

GIL_SWITCH_INTERVAL_S = 0.0002


def software_version() -> str:
    try:
        return importlib.metadata.version("chronotick")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@dataclasses.dataclass
class _PeerState:
    """What the peer loop remembers of an address between rounds (for quiet logs)."""

    node_id: str = ""
    failing: bool = False
    is_self: bool = False
    #: the reason of the last failure, logged again only when it changes
    last_error: str = ""


class Node:
    def __init__(self, config: NodeConfig, daemon: Daemon | None = None) -> None:
        self.config = config
        self.node_id = config.node_id
        self.cluster = config.cluster
        self.daemon = daemon if daemon is not None else Daemon(config.daemon)
        self.shm_name = config.daemon.segment_name
        self.started_monotonic_ns = time.monotonic_ns()
        self.table = PeerTable(config.peer_expiry_s, self.daemon.engine.drift_tolerance_ppb)
        self._lock = threading.Lock()
        self._peer_states: dict[str, _PeerState] = {}
        self._peer_log = PeerStateLog()
        self.stack_bias = StackBias()
        self._addresses: dict[str, str] = {}
        self.stop_flag = Stopper()
        self.port = 0
        self.health = health.HealthServicer()
        self._server: grpc.Server | None = None
        self._health_server: grpc.Server | None = None
        self.discovery: Discovery | None = None
        channel_credentials = None
        if config.tls:
            channel_credentials = grpc.ssl_channel_credentials(
                root_certificates=_read(config.tls_ca),
                private_key=_read(config.tls_key),
                certificate_chain=_read(config.tls_cert),
            )
        self.client = PeerClient(
            self.node_id,
            self.cluster,
            self.base_now_ns,
            config.peer_timeout_s,
            channel_credentials,
            config.tls_server_name,
        )
        if config.use_peers:
            self.daemon.external = self._external
        self.agreement = AgreementService(
            self, require_identity=config.tls, execute_priority=config.execute_priority
        )
        # one endpoint per process: the node's families beside the daemon's
        self.daemon.metrics.add("node", lambda: node_families(read_node(self)))

    # -- NodeView ----------------------------------------------------------------------------

    def base_now_ns(self) -> int:
        return self.daemon.clock.now_ns()

    def own_model(self) -> ClockModel:
        return self.daemon.model

    def published_model(self) -> ClockModel:
        return self.daemon.published

    def sources(self) -> tuple[int, int]:
        return len(self.daemon.addresses), self.daemon.engine.sources_reachable

    def source_reports(self) -> list[SourceReport]:
        return self.daemon.engine.source_reports()

    def poll_interval_ns(self) -> int:
        return self.daemon.engine.poll_interval_ns

    def history(self) -> History:
        return self.daemon.history

    def peer_snapshot(self) -> tuple[list[PeerEntry], ConsensusResult, dict[str, str]]:
        now = self.base_now_ns()
        own = self.own_model()
        drift = own.drift_ppb if own.status.gives_interval else 0.0
        with self._lock:
            self.table.expire(time.monotonic_ns())
            return self.table.entries(), self.table.consensus(now, drift), dict(self._addresses)

    def peer_addresses(self) -> dict[str, str]:
        """node id -> address of every peer in the table (answered within the expiry)."""
        with self._lock:
            self.table.expire(time.monotonic_ns())
            return {e.node_id: self._addresses[e.node_id] for e in self.table.entries()}

    def realtime_for_base(self, base_ns: int) -> int:
        return to_realtime_ns(self.daemon.clock, base_ns)

    def base_for_realtime(self, realtime_ns: int) -> int:
        return from_realtime_ns(self.daemon.clock, realtime_ns)

    def falsetickers(self) -> set[str]:
        """Peers whose intervals miss the majority's in the consensus right now."""
        _, result, _ = self.peer_snapshot()
        return {n for n, state in result.states.items() if state == "falseticker"}

    def _external(self, at_ns: int, own: ClockModel) -> ExternalEstimate | None:
        drift = own.drift_ppb if own.status.gives_interval else 0.0
        with self._lock:
            self.table.expire(time.monotonic_ns())
            result = self.table.consensus(at_ns, drift)
        return result.consensus.as_external() if result.consensus else None

    # -- lifecycle ---------------------------------------------------------------------------

    def start_service(self) -> int:
        """Bind the gRPC server (and the health port); returns the bound port."""
        config = self.config
        host, port = config.listen_address
        server = grpc.server(
            concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="grpc"),
            options=[
                ("grpc.max_receive_message_length", protocol.GRPC_MESSAGE_LIMIT_BYTES),
                ("grpc.max_send_message_length", protocol.GRPC_MESSAGE_LIMIT_BYTES),
            ],
            maximum_concurrent_rpcs=256,
        )
        add_to_server(PeerService(self, software_version(), require_identity=config.tls), server)
        add_to_server(self.agreement, server, agreement_pb2, "AgreementService")
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if config.tls:
            credentials = grpc.ssl_server_credentials(
                [(_read(config.tls_key), _read(config.tls_cert))],
                root_certificates=_read(config.tls_ca),
                require_client_auth=True,
            )
            bound = server.add_secure_port(target, credentials)
        else:
            bound = server.add_insecure_port(target)
        if not bound:
            raise OSError(f"cannot listen on {config.listen}")
        server.start()
        self._server = server
        self.port = bound
        if config.health_listen:
            self._health_server = self._start_health_port(config.health_listen)
        for name in ("", SERVICE_NAME):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "node %s of cluster %s: peer service on %s:%d (%s)",
            self.node_id,
            self.cluster,
            host,
            bound,
            "mutual TLS" if config.tls else "plaintext",
        )
        return bound

    def _start_health_port(self, listen: str) -> grpc.Server:
        host, port = parse_host_port(listen)
        server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=2))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        if not server.add_insecure_port(f"{host}:{port}"):
            raise OSError(f"cannot listen on {listen} (health)")
        server.start()
        return server

    def start_discovery(self) -> None:
        config = self.config
        self.discovery = Discovery(
            node_id=self.node_id,
            cluster=self.cluster,
            protocol_version=protocol.PROTOCOL_VERSION,
            grpc_port=self.port,
            advertise_addresses=config.advertise_addresses,
            zeroconf_enabled=config.discovery,
            static_peers=config.peers,
            dns_names=config.dns_peers,
        )
        self.discovery.start()

    def run(self) -> None:
        """Serve until `stop()`; always unregisters and closes what it opened."""
        # A thread waking for a sync point must get the interpreter at once, not after another
        # thread's 5 ms slice: hand the GIL over every 0.2 ms (a little CPU for punctuality).
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        peer_thread = None
        try:
            self.daemon.start_metrics()
            self.start_service()
            self.start_discovery()
            peer_thread = threading.Thread(target=self._peer_loop, name="peers", daemon=True)
            peer_thread.start()
            self.daemon.run(self.stop_flag)
        finally:
            self.stop_flag.set()
            for name in ("", SERVICE_NAME):
                self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
            if self.discovery is not None:
                self.discovery.close()
            if peer_thread is not None:
                peer_thread.join()
            for server in (self._server, self._health_server):
                if server is not None:
                    server.stop(grace=0.5)
            self.client.close()
            self.daemon.metrics.stop()  # when the daemon never ran (a port taken at start)
            self.stop_flag.close()
            log.info("node %s stopped", self.node_id)

    def stop(self) -> None:
        self.stop_flag.set()

    # -- the peer loop -----------------------------------------------------------------------

    def _peer_loop(self) -> None:
        while not self.stop_flag.is_set():
            started = time.monotonic()
            try:
                self.measure_peers()
                self.agreement.housekeeping()
            except Exception:
                log.exception("peer round failed; trying again next round")
            remaining = self.config.peer_poll_s - (time.monotonic() - started)
            self.stop_flag.wait(max(0.05, remaining))

    def measure_peers(self) -> None:
        """One round: a burst with every discovered peer, concurrently; then expiry."""
        assert self.discovery is not None
        listed = self.discovery.endpoints()
        current = {_address(e) for e in listed}
        for address in [a for a in self._peer_states if a not in current]:
            # gone from discovery (a pod replaced, a goodbye): no channel kept reconnecting
            self.client.forget(address)
            del self._peer_states[address]
        endpoints = self._dedupe(listed)
        threads = [
            threading.Thread(target=self._measure, args=(e,), name=f"peer {e.host}", daemon=True)
            for e in endpoints
        ]
        if endpoints:  # beside them, under the same load: how biased our own stack reads
            threads.append(threading.Thread(target=self._measure_self, name="self", daemon=True))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        with self._lock:
            for node_id in self.table.expire(time.monotonic_ns()):
                log.warning(
                    "peer %s expired: no good exchange for %.0f s",
                    node_id,
                    self.config.peer_expiry_s,
                )
        entries, result, _ = self.peer_snapshot()
        for level, message in self._peer_log.update(result, entries):
            log.log(level, message)

    def _dedupe(self, endpoints: list[Endpoint]) -> list[Endpoint]:
        """One endpoint per peer (zeroconf and a static entry may name the same node), none of
        them ourselves."""
        chosen: dict[str, Endpoint] = {}
        for endpoint in endpoints:
            address = _address(endpoint)
            state = self._peer_states.setdefault(address, _PeerState(endpoint.node_id))
            if state.is_self or endpoint.node_id == self.node_id:
                continue
            key = endpoint.node_id or state.node_id or address
            if key not in chosen or endpoint.via == "zeroconf":
                chosen[key] = endpoint
        return list(chosen.values())

    def _measure(self, endpoint: Endpoint) -> None:
        address = _address(endpoint)
        state = self._peer_states[address]
        config = self.config
        try:
            exchange = self.client.burst(
                address, endpoint.via, config.peer_burst, 0.05, self.stop_flag.wait
            )
        except ExchangeError as exc:
            if str(exc) != state.last_error:
                log.warning("peer %s (%s): %s", state.node_id or address, endpoint.via, exc)
            state.failing = True
            state.last_error = str(exc)
            return
        except Exception:
            log.exception("exchange with %s failed unexpectedly", address)
            state.failing = True
            return
        if exchange.node_id == self.node_id:
            log.info("%s is this node itself; not measured again", address)
            state.is_self = True
            return
        if state.failing or not state.node_id:
            log.info(
                "peer %s at %s (%s): offset %+.3f ms, round trip %.3f ms",
                exchange.node_id,
                address,
                endpoint.via,
                exchange.offset_ns / 1e6,
                exchange.rtt_ns / 1e6,
            )
        state.failing = False
        state.last_error = ""
        state.node_id = exchange.node_id
        self._record(exchange, address)

    def _measure_self(self) -> None:
        host, _ = self.config.listen_address
        address = _address(Endpoint(self.config.advertise_addresses[0], self.port, "self"))
        if host not in ("0.0.0.0", "::"):
            address = _address(Endpoint(host, self.port, "self"))
        try:
            exchange = self.client.burst(
                address, "self", self.config.peer_burst, 0.05, self.stop_flag.wait
            )
        except ExchangeError as exc:
            log.debug("self-exchange failed: %s", exc)
            return
        if exchange.node_id == self.node_id:
            with self._lock:
                self.stack_bias.add(exchange)

    def _record(self, exchange: Exchange, address: str) -> None:
        own = self.own_model()
        own_drift = own.drift_ppb if own.status.gives_interval else None
        with self._lock:
            self.table.update(exchange, time.monotonic_ns(), own_drift, self.stack_bias.bias_ns)
            self._addresses[exchange.node_id] = address


def _address(endpoint: Endpoint) -> str:
    host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
    return f"{host}:{endpoint.port}"


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()
