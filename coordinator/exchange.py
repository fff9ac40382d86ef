"""The calling side of the offset exchange: channels to peers, bursts, and reply checks.

A reply is input like any request: a peer that lies about its timestamps or sends numbers out
of range gets an `ExchangeError`, never a crash, and a peer that hangs costs one deadline.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import grpc

from coordinator import protocol
from coordinator.peer_table import Exchange, best_of_burst
from coordinator.proto.chronotick.v1 import peer_pb2 as pb
from coordinator.proto.chronotick.v1 import peer_pb2_grpc as pb_grpc

log = logging.getLogger("chronotick.peers")

CHANNEL_OPTIONS: list[tuple[str, str | int]] = [
    ("grpc.max_receive_message_length", protocol.GRPC_MESSAGE_LIMIT_BYTES),
    ("grpc.max_send_message_length", protocol.GRPC_MESSAGE_LIMIT_BYTES),
    # fail fast while a peer is down instead of backing off for up to two minutes
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
]


class ExchangeError(Exception):
    """An exchange that gave no usable measurement; the message says why, for the log."""


class PeerClient:
    def __init__(
        self,
        node_id: str,
        cluster: str,
        base_now_ns: Callable[[], int],
        timeout_s: float,
        credentials: grpc.ChannelCredentials | None = None,
        server_name: str = "",
    ) -> None:
        self.node_id = node_id
        self.cluster = cluster
        self.base_now_ns = base_now_ns
        self.timeout_s = timeout_s
        self.credentials = credentials
        self.server_name = server_name
        self._channels: dict[str, grpc.Channel] = {}
        self._lock = threading.Lock()

    def channel(self, address: str) -> grpc.Channel:
        with self._lock:
            channel = self._channels.get(address)
            if channel is None:
                channel = open_channel(address, self.credentials, self.server_name)
                self._channels[address] = channel
            return channel

    def forget(self, address: str) -> None:
        with self._lock:
            channel = self._channels.pop(address, None)
        if channel is not None:
            channel.close()

    def close(self) -> None:
        with self._lock:
            channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            channel.close()

    def exchange(self, address: str, discovered_by: str) -> Exchange:
        stub = pb_grpc.PeerServiceStub(self.channel(address))
        request = pb.ExchangeRequest(
            protocol_version=protocol.PROTOCOL_VERSION,
            node_id=self.node_id,
            cluster=self.cluster,
        )
        t1 = self.base_now_ns()
        request.client_send_ns = t1
        try:
            reply = stub.Exchange(request, timeout=self.timeout_s)
        except grpc.RpcError as exc:
            raise ExchangeError(describe_rpc_error(exc)) from None
        t4 = self.base_now_ns()
        return check_reply(reply, address, discovered_by, t1, t4)

    def burst(
        self, address: str, discovered_by: str, count: int, spacing_s: float,
        sleep: Callable[[float], object],
    ) -> Exchange:  # fmt: skip
        """`count` exchanges; the one with the shortest round trip. The first failure ends
        the burst (a dead peer costs one deadline, not `count`)."""
        exchanges = []
        for k in range(count):
            if k:
                sleep(spacing_s)
            exchanges.append(self.exchange(address, discovered_by))
        best = best_of_burst(exchanges)
        if best is None:
            raise ExchangeError("every exchange of the burst had a negative round trip")
        return best


def credentials_from_files(cert: str, key: str, ca: str) -> grpc.ChannelCredentials | None:
    """Mutual-TLS channel credentials from PEM files (all three, or none for plaintext)."""
    files = (cert, key, ca)
    if not any(files):
        return None
    if not all(files):
        raise ValueError("TLS needs all three of --tls-cert, --tls-key and --tls-ca")
    cert_pem, key_pem, ca_pem = (_read(path) for path in files)
    return grpc.ssl_channel_credentials(
        root_certificates=ca_pem, private_key=key_pem, certificate_chain=cert_pem
    )


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def open_channel(
    address: str, credentials: grpc.ChannelCredentials | None, server_name: str = ""
) -> grpc.Channel:
    if credentials is None:
        return grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
    options: list[tuple[str, str | int]] = list(CHANNEL_OPTIONS)
    if server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
    return grpc.secure_channel(address, credentials, options=options)


def check_reply(
    reply: pb.ExchangeReply, address: str, discovered_by: str, t1_ns: int, t4_ns: int
) -> Exchange:
    try:
        protocol.check_version(reply.protocol_version)
        protocol.check_name("node_id", reply.node_id)
        protocol.check_time("server_receive_ns", reply.server_receive_ns)
        protocol.check_time("server_send_ns", reply.server_send_ns)
        peer_clock = protocol.peer_clock_from_wire(reply.estimate)
    except protocol.InvalidMessage as exc:
        raise ExchangeError(f"bad reply: {exc}") from None
    if reply.client_send_ns != t1_ns:
        raise ExchangeError("bad reply: client_send_ns does not echo our request")
    if reply.server_send_ns < reply.server_receive_ns:
        raise ExchangeError("bad reply: server_send_ns is before server_receive_ns")
    exchange = Exchange(
        node_id=reply.node_id,
        address=address,
        discovered_by=discovered_by,
        t1_ns=t1_ns,
        t2_ns=reply.server_receive_ns,
        t3_ns=reply.server_send_ns,
        t4_ns=t4_ns,
        peer_clock=peer_clock,
    )
    if exchange.rtt_ns < 0:
        raise ExchangeError("bad reply: the peer held the request longer than the round trip")
    return exchange


def describe_rpc_error(exc: grpc.RpcError) -> str:
    code = exc.code() if isinstance(exc, grpc.Call) else None
    details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
    name = code.name if code is not None else "ERROR"
    return f"{name}: {details}"
