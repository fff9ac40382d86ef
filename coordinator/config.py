"""The node's configuration: its own keys plus every key of the daemon's, in one flat TOML file
and one set of flags, validated before anything starts (same rules as `chronotick-daemon`).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
from typing import Any

from chronotick.daemon.config import ConfigError, DaemonConfig, build_config, coerce
from chronotick.shm import validate_name
from coordinator.discovery import parse_host_port
from coordinator.protocol import NAME_RE

DEFAULT_PORT = 7820


@dataclasses.dataclass(frozen=True)
class NodeConfig:
    node_id: str = ""
    cluster: str = "default"
    #: the gRPC peer service's address; plaintext is allowed only on loopback (or --insecure)
    listen: str = f"127.0.0.1:{DEFAULT_PORT}"
    #: addresses zeroconf binds to and announces; empty: the listen address
    advertise: tuple[str, ...] = ()
    #: static peers, HOST:PORT; a name resolving to several addresses is several peers
    peers: tuple[str, ...] = ()
    #: NAME:PORT whose every address is a peer, re-resolved (a Kubernetes headless Service)
    dns_peers: tuple[str, ...] = ()
    discovery: bool = True
    insecure: bool = False
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""
    #: the name peers' certificates are checked against, when it is not their address
    tls_server_name: str = ""
    #: a plaintext port serving only the gRPC health service (load balancers, probes)
    health_listen: str = ""
    #: how often each peer is measured, the exchanges per burst, and the deadline of each
    peer_poll_s: float = 2.0
    peer_burst: int = 3
    peer_timeout_s: float = 1.0
    #: a peer without a good exchange for this long leaves the table
    peer_expiry_s: float = 10.0
    #: fuse the peers' consensus into the published clock
    use_peers: bool = True
    #: SCHED_FIFO priority of the thread that waits for a sync point (0: normal scheduling);
    #: used when the node may (root or CAP_SYS_NICE), like chronyd's -P
    execute_priority: int = 1
    daemon: DaemonConfig = dataclasses.field(default_factory=DaemonConfig)

    def __post_init__(self) -> None:
        if not NAME_RE.match(self.node_id):
            raise ConfigError(
                f"node_id {self.node_id!r}: required; 1-64 letters, digits, '.', '_' or '-'"
            )
        if not NAME_RE.match(self.cluster):
            raise ConfigError(f"cluster {self.cluster!r}: 1-64 letters, digits, '.', '_' or '-'")
        host, _ = self.listen_address
        for text in self.peers:
            _parse("peers", text)
        for text in self.dns_peers:
            _parse("dns_peers", text)
        for address in self.advertise_addresses:
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise ConfigError(f"advertise: {address!r} is not an IP address") from None
        if self.health_listen:
            _parse("health_listen", self.health_listen)
        tls = (self.tls_cert, self.tls_key, self.tls_ca)
        if any(tls) and not all(tls):
            raise ConfigError("TLS needs all three of tls_cert, tls_key and tls_ca")
        for name, path in zip(("tls_cert", "tls_key", "tls_ca"), tls, strict=True):
            if path and not os.access(path, os.R_OK):
                raise ConfigError(f"{name}: cannot read {path}")
        if not self.tls and not self.insecure and not _is_loopback(host):
            raise ConfigError(
                f"listen {self.listen}: plaintext is allowed only on loopback; give "
                "--tls-cert, --tls-key and --tls-ca, or --insecure"
            )
        if self.tls and self.insecure:
            raise ConfigError("--insecure and the TLS files exclude each other")
        _check("peer_poll_s", self.peer_poll_s, 0.1, 3600.0)
        _check("peer_timeout_s", self.peer_timeout_s, 0.01, 60.0)
        _check("peer_expiry_s", self.peer_expiry_s, 0.5, 86400.0)
        if not 1 <= self.peer_burst <= 16:
            raise ConfigError(f"peer_burst must be between 1 and 16, got {self.peer_burst}")
        if not 0 <= self.execute_priority <= 99:
            raise ConfigError(
                f"execute_priority must be between 0 and 99, got {self.execute_priority}"
            )
        if self.peer_expiry_s <= self.peer_poll_s:
            raise ConfigError("peer_expiry_s must be longer than peer_poll_s")

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert)

    @property
    def listen_address(self) -> tuple[str, int]:
        return _parse("listen", self.listen)

    @property
    def advertise_addresses(self) -> list[str]:
        if self.advertise:
            return list(self.advertise)
        host, _ = self.listen_address
        if host in ("0.0.0.0", "::"):
            raise ConfigError(f"listen {self.listen}: a wildcard address needs --advertise ADDR")
        return [host]


def _parse(name: str, text: str) -> tuple[str, int]:
    try:
        return parse_host_port(text)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _check(name: str, value: float, low: float, high: float) -> None:
    if not math.isfinite(value) or not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")


def build_node_config(file_values: dict[str, Any], overrides: dict[str, Any]) -> NodeConfig:
    """Defaults, then the file, then the flags (`None`: not given); node keys and daemon keys
    share one namespace, and a key that is neither is refused by name."""
    node_fields = {f.name: f.type for f in dataclasses.fields(NodeConfig) if f.name != "daemon"}
    daemon_fields = {f.name for f in dataclasses.fields(DaemonConfig)}
    unknown = sorted(set(file_values) - set(node_fields) - daemon_fields)
    if unknown:
        known = sorted(set(node_fields) | daemon_fields)
        raise ConfigError(
            f"unknown configuration keys: {', '.join(unknown)} (known: {', '.join(known)})"
        )
    given = {k: v for k, v in overrides.items() if v is not None}
    node_values: dict[str, Any] = {}
    for source in (file_values, given):
        for key, value in source.items():
            if key in node_fields:
                node_values[key] = coerce(key, node_fields[key], value)
    daemon_file = {k: v for k, v in file_values.items() if k in daemon_fields}
    daemon_flags = {k: v for k, v in given.items() if k in daemon_fields}
    node_id = node_values.get("node_id", "")
    if node_id and "node_id" not in daemon_file and "node_id" not in daemon_flags:
        try:
            validate_name(node_id)
        except ValueError:
            pass  # NodeConfig names the problem
        else:
            daemon_flags["node_id"] = node_id
    daemon = build_config(daemon_file, daemon_flags)
    return NodeConfig(**node_values, daemon=daemon)
