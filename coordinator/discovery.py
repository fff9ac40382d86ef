"""Finding peer nodes: zeroconf (mDNS/DNS-SD), static peers and DNS names, behind one snapshot.

The node polls `Discovery.endpoints()`; discovery only says where peers may be. Whether a peer
answers, and for how long it is trusted, is the peer table's business: it expires a peer after a
few failed exchanges, much faster than anything here. So this module errs on the side of listing
an address a little too long rather than dropping a live one.

Three sources, merged and deduplicated by (host, port):

- zeroconf: we register `_chronotick._tcp.local.` with TXT `node_id`, `cluster`, `version`,
  `grpc_port` and browse for the others. Peers of another cluster or protocol version, or with a
  TXT record we cannot read, are left out, logged once per instance and listed in `ignored()`.
  Where a (host, port) is known from several sources, the zeroconf entry wins because it carries
  the node id; then static; then DNS.
- static peers (`HOST:PORT`): always listed. A host name is resolved at start and every
  `dns_interval_s`; when a lookup fails the last good address is kept.
- DNS names (`NAME:PORT`, e.g. a Kubernetes headless Service): every address the name resolves
  to is a peer; re-resolved every `dns_interval_s`, so addresses that leave the answer leave the
  list. A failed lookup keeps the previous answer.

Our own endpoint is never listed: not our node id, not (one of our advertise addresses, our gRPC
port), not (a loopback address, our gRPC port), which in our own network namespace can only be us.

Timings on zeroconf (measured on loopback, see tests/integration/test_discovery_zeroconf.py):

- Appearing: registration skips the RFC 6762 probing phase (`cooperating_responders=True`): the
  instance name is derived from the node id, which is unique in a cluster by configuration, so
  the ~1.7 s probe (random 150-250 ms wait and three probes 500 ms apart) buys nothing here. The
  first announcement leaves at once (three in all, 225 ms apart) and start() does not wait for
  them. A browsing peer resolves the announced records from its cache, so a peer appears in the
  others' `endpoints()` within a few hundred milliseconds (5 s is the contract).
- Goodbye: close() sends the goodbye (TTL 0) three times 125 ms apart; the others drop the peer
  as soon as the first one arrives (well under the 2 s contract). close() itself is bounded
  (`_CLOSE_BUDGET_S`) even when zeroconf's loop is stuck.
- Killed without goodbye: all our records (PTR, SRV, TXT, A/AAAA) carry a TTL of
  `RECORD_TTL_S` = 30 s instead of zeroconf's 120 s / 75 min. python-zeroconf raises any PTR TTL
  it receives to at least 1125 s and its browser only reports a removal when the PTR expires, so
  we do not wait for the browser: every `_MAINTENANCE_PERIOD_S` (1 s) we look at each peer's SRV
  record in zeroconf's cache. Once it is past half of its TTL we ask for SRV, TXT and addresses
  again (RFC 6762 section 5.2 cache maintenance; at most every `_REFRESH_QUERY_GAP_S`), which a
  live peer answers, refreshing everyone's cache. A dead peer does not answer, its records
  expire, and it leaves `endpoints()` at most `RECORD_TTL_S` + 1 s after its last answer, i.e.
  between about 12 and 31 s after it died.

Threads: zeroconf runs its own event loop thread and a browser thread. The browser callback only
schedules work on zeroconf's loop (resolving is a coroutine there, never a blocking call in
zeroconf's threads); static and DNS lookups run in a thread of our own, since
`socket.getaddrinfo` blocks and may hang. Shared state is guarded by one lock, held only to read
or replace small dicts. No public call waits on the network without a bound.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import hashlib
import ipaddress
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Coroutine, MutableMapping, Sequence
from typing import Any, Final

from zeroconf import (
    IPVersion,
    ServiceBrowser,
    ServiceInfo,
    ServiceStateChange,
    Zeroconf,
    current_time_millis,
)

# DNSOutgoing and DNSQuestion are importable from `zeroconf` but not re-exported for type
# checkers; their defining modules are stable across releases (the version is pinned).
from zeroconf._dns import DNSQuestion
from zeroconf._protocol.outgoing import DNSOutgoing
from zeroconf.asyncio import AsyncServiceInfo

log = logging.getLogger("chronotick.discovery")

SERVICE_TYPE: Final = "_chronotick._tcp.local."
"""The DNS-SD service type every ChronoTick node registers and browses."""

RECORD_TTL_S: Final = 30
"""TTL of every record we announce: a peer killed without goodbye vanishes within this + 1 s."""

TXT_NODE_ID: Final = "node_id"
TXT_CLUSTER: Final = "cluster"
TXT_VERSION: Final = "version"
TXT_GRPC_PORT: Final = "grpc_port"

VIA_ZEROCONF: Final = "zeroconf"
VIA_STATIC: Final = "static"
VIA_DNS: Final = "dns"

_MAINTENANCE_PERIOD_S: Final = 1.0
"""How often the zeroconf peers' records are checked for expiry and refreshed."""
_REFRESH_QUERY_GAP_S: Final = 3.0
"""Minimum time between two refresh queries for the same peer (15, 18, 21, 24, 27 s of 30)."""
_RESOLVE_TIMEOUT_MS: Final = 3000
"""How long one attempt to fetch a browsed instance's SRV/TXT/addresses may take."""
_RETRY_MIN_S: Final = 1.0
_RETRY_MAX_S: Final = 30.0
"""Back-off for instances that are browsed but cannot be resolved (e.g. dead, PTR still cached)."""
_CLOSE_BUDGET_S: Final = 0.8
"""close() returns after at most about this long, whatever zeroconf is doing."""
_GOODBYE_BUDGET_S: Final = 0.5
"""Time allowed for the three goodbyes (sent at 0, 125 and 250 ms)."""
_START_RESOLVE_WAIT_S: Final = 2.0
"""start() waits this long at most for the first static/DNS lookups, so it never hangs."""

# RFC 1035 / RFC 2782 / RFC 3596 record types and the IN class, for refresh queries.
_DNS_TYPE_A: Final = 1
_DNS_TYPE_TXT: Final = 16
_DNS_TYPE_AAAA: Final = 28
_DNS_TYPE_SRV: Final = 33
_DNS_CLASS_IN: Final = 1
_DNS_FLAGS_QUERY: Final = 0x0000

_HOST_LABEL = re.compile(r"\A[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\Z")
_NOT_LABEL_CHARS = re.compile(r"[^A-Za-z0-9-]")

Resolver = Callable[[str], list[str]]


class _NodeLog(logging.LoggerAdapter[logging.Logger]):
    """Prefixes each message with the node id."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = self.extra or {}
        return f"{extra.get('node', '?')}: {msg}", kwargs


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """Where a peer's gRPC service may be reached, and how we learned of it."""

    host: str
    """An IP address literal (v4 or v6), never a name."""
    port: int
    """The peer's gRPC port."""
    via: str
    """`"zeroconf"`, `"static"` or `"dns"`."""
    node_id: str = ""
    """Known from the zeroconf TXT record; "" for static and DNS peers until contacted."""


@dataclasses.dataclass(frozen=True)
class _Target:
    """A configured static peer or DNS name: `host` is a name or an IP literal."""

    host: str
    port: int
    literal: bool


def parse_host_port(text: str, default_port: int | None = None) -> tuple[str, int]:
    """Parse `HOST:PORT`, `[V6]:PORT`, or (given `default_port`) `HOST` / `[V6]`.

    HOST is an IPv4 literal or a DNS name; an IPv6 literal must be in brackets, so that its
    colons are never mistaken for the port separator. IP literals come back in canonical form,
    names in lower case without a trailing dot. Raises ValueError saying what is wrong.
    """
    original = text
    text = text.strip()
    if not text:
        raise ValueError("empty peer address: expected HOST:PORT or [IPV6]:PORT")
    port_text: str | None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"invalid peer address {original!r}: missing ']' after IPv6 address")
        host, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError(f"invalid peer address {original!r}: expected ':PORT' after ']'")
        port_text = rest[1:] if rest else None
        try:
            host = str(ipaddress.IPv6Address(host))
        except ValueError:
            raise ValueError(
                f"invalid peer address {original!r}: {host!r} in brackets is not an IPv6 address"
            ) from None
    else:
        if text.count(":") > 1:
            raise ValueError(
                f"invalid peer address {original!r}: an IPv6 address must be in brackets,"
                " as in [fd00::1]:50051"
            )
        host, sep, port_text_or_empty = text.partition(":")
        port_text = port_text_or_empty if sep else None
        host = _validate_host(host, original)
    if port_text is None:
        if default_port is None:
            raise ValueError(f"invalid peer address {original!r}: missing ':PORT'")
        port = default_port
    else:
        if not port_text.isascii() or not port_text.isdigit():
            raise ValueError(
                f"invalid peer address {original!r}: port {port_text!r} is not a number"
            )
        port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"invalid peer address {original!r}: port {port} is not in 1-65535")
    return host, port


def _validate_host(host: str, original: str) -> str:
    """An IPv4 literal (canonical) or a DNS name (lower case), else ValueError."""
    if not host:
        raise ValueError(f"invalid peer address {original!r}: empty host")
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        pass
    name = host[:-1] if host.endswith(".") else host
    labels = name.split(".")
    if (
        len(name) > 253
        or not all(_HOST_LABEL.match(label) for label in labels)
        # RFC 3696 section 2: a top-level label is never all digits, so "300.1.1.1" is a typo'd
        # address, not a name.
        or labels[-1].isdigit()
    ):
        raise ValueError(
            f"invalid peer address {original!r}: {host!r} is neither an IPv4 address"
            " nor a host name"
        )
    return name.lower()


def instance_label(node_id: str) -> str:
    """The DNS label our service instance and host records use, derived from the node id.

    Kept readable (`chronotick-<node id>`) when the node id is a plain label; otherwise the
    characters DNS host names do not allow are replaced and a hash of the node id keeps distinct
    ids distinct. At most 63 bytes (one DNS label). The node id itself travels in TXT.
    """
    cleaned = _NOT_LABEL_CHARS.sub("-", node_id)
    if cleaned == node_id and len(cleaned) <= 40:
        return f"chronotick-{cleaned}"
    digest = hashlib.sha256(node_id.encode()).hexdigest()[:8]
    return f"chronotick-{cleaned[:40].strip('-')}-{digest}"


def default_resolver(name: str) -> list[str]:
    """Every address `name` resolves to, in the resolver's order, without duplicates."""
    infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    seen: dict[str, None] = {}
    for _family, _type, _proto, _canon, sockaddr in infos:
        seen.setdefault(str(sockaddr[0]), None)
    return list(seen)


def _canonical_ip(text: str) -> str | None:
    """The canonical text of an IP literal (a v6 scope id kept), or None if it is not one."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


@dataclasses.dataclass(frozen=True)
class _PeerTxt:
    node_id: str
    cluster: str
    version: int
    grpc_port: int


def _parse_txt(properties: dict[str, str | None]) -> _PeerTxt | str:
    """The TXT keys we need, or a reason why they cannot be used."""
    missing = [
        key
        for key in (TXT_NODE_ID, TXT_CLUSTER, TXT_VERSION, TXT_GRPC_PORT)
        if properties.get(key) is None
    ]
    if missing:
        return f"bad TXT: missing {', '.join(missing)}"
    node_id = properties[TXT_NODE_ID] or ""
    cluster = properties[TXT_CLUSTER] or ""
    version_text = properties[TXT_VERSION] or ""
    port_text = properties[TXT_GRPC_PORT] or ""
    if not node_id:
        return "bad TXT: empty node_id"
    if not version_text.isascii() or not version_text.isdigit():
        return f"bad TXT: version {version_text!r} is not an integer"
    if not port_text.isascii() or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        return f"bad TXT: grpc_port {port_text!r} is not a port number"
    return _PeerTxt(node_id, cluster, int(version_text), int(port_text))


class Discovery:
    """Discovers peer nodes by zeroconf, static addresses and DNS names; see the module doc.

    Thread-safe. `start()` once, poll `endpoints()`, `close()` when done (also idempotent and
    safe before `start()`).
    """

    def __init__(
        self,
        *,
        node_id: str,
        cluster: str,
        protocol_version: int,
        grpc_port: int,
        advertise_addresses: list[str],
        zeroconf_enabled: bool = True,
        static_peers: Sequence[str] = (),
        dns_names: Sequence[str] = (),
        dns_interval_s: float = 15.0,
        resolve: Resolver | None = None,
    ) -> None:
        if not node_id:
            raise ValueError("node_id must not be empty")
        if not 1 <= grpc_port <= 65535:
            raise ValueError(f"grpc_port {grpc_port} is not in 1-65535")
        if protocol_version < 0:
            raise ValueError(f"protocol_version {protocol_version} is negative")
        if not dns_interval_s > 0:
            raise ValueError(f"dns_interval_s must be positive, not {dns_interval_s}")
        addresses: list[str] = []
        for address in advertise_addresses:
            canonical = _canonical_ip(address)
            if canonical is None:
                raise ValueError(f"advertise address {address!r} is not an IP address literal")
            addresses.append(canonical)
        if zeroconf_enabled and not addresses:
            raise ValueError("zeroconf needs at least one advertise address to bind to")
        self.node_id = node_id
        self.cluster = cluster
        self.protocol_version = protocol_version
        self.grpc_port = grpc_port
        self.advertise_addresses = addresses
        self.zeroconf_enabled = zeroconf_enabled
        self.dns_interval_s = dns_interval_s
        self._resolve: Resolver = resolve or default_resolver
        self._static = [self._target(spec, "static peer") for spec in static_peers]
        self._dns = [self._target(spec, "DNS name") for spec in dns_names]
        self._instance_name = f"{instance_label(node_id)}.{SERVICE_TYPE}"

        # Several nodes share a process in tests and the demo: every line says whose it is.
        self._log = _NodeLog(log, {"node": node_id})
        self._lock = threading.Lock()
        # Guarded by _lock: everything endpoints() and ignored() read.
        self._zc_peers: dict[str, Endpoint] = {}
        self._ignored: dict[str, str] = {}
        self._browsed: set[str] = set()
        self._static_hosts: dict[_Target, str] = {t: t.host for t in self._static if t.literal}
        self._dns_hosts: dict[_Target, list[str]] = {t: [t.host] for t in self._dns if t.literal}
        self._lookup_failing: set[_Target] = set()
        self._started = False
        self._closed = False

        # Touched only on zeroconf's event loop.
        self._loop_tasks: set[asyncio.Task[None]] = set()
        self._resolving: set[str] = set()
        self._retry_at_s: dict[str, float] = {}
        self._retry_delay_s: dict[str, float] = {}
        self._last_refresh_s: dict[str, float] = {}
        self._warned_duplicate: set[str] = set()

        self._zc: Zeroconf | None = None
        self._browser: ServiceBrowser | None = None
        self._stop = threading.Event()
        self._first_lookup_done = threading.Event()
        self._lookup_thread: threading.Thread | None = None

    @staticmethod
    def _target(spec: str, what: str) -> _Target:
        try:
            host, port = parse_host_port(spec)
        except ValueError as exc:
            raise ValueError(f"{what}: {exc}") from None
        return _Target(host, port, _canonical_ip(host) is not None)

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Register our service, start browsing, and do the first static/DNS lookups.

        Returns once zeroconf is listening and the first lookups are done, or after
        `_START_RESOLVE_WAIT_S` if the resolver is slow (the lookups then finish in the
        background).
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("Discovery was closed")
            if self._started:
                raise RuntimeError("Discovery was already started")
            self._started = True
        if any(not t.literal for t in (*self._static, *self._dns)):
            self._lookup_thread = threading.Thread(
                target=self._lookup_loop, name=f"discovery-dns-{self.node_id}", daemon=True
            )
            self._lookup_thread.start()
        if self.zeroconf_enabled:
            self._start_zeroconf()
        if self._lookup_thread is not None:
            self._first_lookup_done.wait(_START_RESOLVE_WAIT_S)

    def close(self) -> None:
        """Say goodbye on zeroconf and stop every thread; idempotent, returns within ~1 s.

        The zeroconf teardown (goodbyes, then closing its sockets and loop) runs in a helper
        thread that we wait for at most `_CLOSE_BUDGET_S`: if zeroconf's loop is stuck, the
        node's shutdown must not be.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            zc, browser = self._zc, self._browser
        self._stop.set()
        if zc is not None:
            teardown = threading.Thread(
                target=self._teardown_zeroconf,
                args=(zc, browser),
                name=f"discovery-close-{self.node_id}",
                daemon=True,
            )
            teardown.start()
            teardown.join(_CLOSE_BUDGET_S)
            if teardown.is_alive():
                self._log.warning(
                    "zeroconf did not shut down within %.1f s; leaving it", _CLOSE_BUDGET_S
                )
        if self._lookup_thread is not None:
            # A lookup stuck in getaddrinfo cannot be interrupted; the thread is a daemon.
            self._lookup_thread.join(0.1)

    def __enter__(self) -> Discovery:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---------------------------------------------------------------- snapshot

    def endpoints(self) -> list[Endpoint]:
        """The peers known now: zeroconf, then static, then DNS; never ourselves, no duplicates."""
        merged: dict[tuple[str, int], Endpoint] = {}
        with self._lock:
            for name in sorted(self._zc_peers):
                endpoint = self._zc_peers[name]
                merged.setdefault((endpoint.host, endpoint.port), endpoint)
            for target in self._static:
                host = self._static_hosts.get(target)
                if host is not None:
                    merged.setdefault((host, target.port), Endpoint(host, target.port, VIA_STATIC))
            for target in self._dns:
                for host in self._dns_hosts.get(target, ()):
                    merged.setdefault((host, target.port), Endpoint(host, target.port, VIA_DNS))
        return [e for e in merged.values() if not self._is_self(e)]

    def ignored(self) -> dict[str, str]:
        """Zeroconf instance name -> why it is ignored (other cluster / version, bad TXT)."""
        with self._lock:
            return dict(self._ignored)

    def _is_self(self, endpoint: Endpoint) -> bool:
        if endpoint.node_id == self.node_id:
            return True
        if endpoint.port != self.grpc_port:
            return False
        if endpoint.host in self.advertise_addresses:
            return True
        # A loopback address with our port, in our own network namespace, is our own socket.
        return ipaddress.ip_address(endpoint.host.split("%")[0]).is_loopback

    # ---------------------------------------------------------------- static and DNS lookups

    def _lookup_loop(self) -> None:
        """Look up every static name and DNS name now and every `dns_interval_s`."""
        while not self._stop.is_set():
            for target in self._static:
                if not target.literal and not self._stop.is_set():
                    self._lookup(target, static=True)
            for target in self._dns:
                if not target.literal and not self._stop.is_set():
                    self._lookup(target, static=False)
            self._first_lookup_done.set()
            self._stop.wait(self.dns_interval_s)

    def _lookup(self, target: _Target, *, static: bool) -> None:
        """Resolve one name; on failure keep what we had and log (a warning once per outage)."""
        what = "static peer" if static else "DNS name"
        try:
            answer = self._resolve(target.host)
            addresses: list[str] = []
            for address in answer:
                canonical = _canonical_ip(address)
                if canonical is None:
                    self._log.warning(
                        "%s %s: resolver returned %r, not an IP", what, target.host, address
                    )
                elif canonical not in addresses:
                    addresses.append(canonical)
            if not addresses:
                raise LookupError("no addresses")
        except Exception as exc:
            with self._lock:
                first = target not in self._lookup_failing
                self._lookup_failing.add(target)
                kept = self._static_hosts.get(target) if static else self._dns_hosts.get(target)
            level = logging.WARNING if first else logging.DEBUG
            self._log.log(
                level, "%s %s: lookup failed (%s); keeping %s", what, target.host, exc, kept
            )
            return
        with self._lock:
            recovered = target in self._lookup_failing
            self._lookup_failing.discard(target)
            if static:
                # One static peer is one node: its first address (the resolver's preferred one).
                previous: object = self._static_hosts.get(target)
                self._static_hosts[target] = addresses[0]
                changed = previous != addresses[0]
            else:
                previous = self._dns_hosts.get(target)
                self._dns_hosts[target] = addresses
                changed = previous != addresses
        if recovered:
            self._log.info("%s %s: lookup works again", what, target.host)
        if changed:
            self._log.info("%s %s:%d resolves to %s", what, target.host, target.port, addresses)

    # ---------------------------------------------------------------- zeroconf

    def _start_zeroconf(self) -> None:
        zc = Zeroconf(interfaces=list(self.advertise_addresses))
        info = ServiceInfo(
            SERVICE_TYPE,
            self._instance_name,
            port=self.grpc_port,
            properties={
                TXT_NODE_ID: self.node_id,
                TXT_CLUSTER: self.cluster,
                TXT_VERSION: str(self.protocol_version),
                TXT_GRPC_PORT: str(self.grpc_port),
            },
            server=f"{instance_label(self.node_id)}.local.",
            host_ttl=RECORD_TTL_S,
            other_ttl=RECORD_TTL_S,
            parsed_addresses=list(self.advertise_addresses),
        )
        with self._lock:
            self._zc = zc
        self._submit(self._async_register(zc, info))
        self._submit(self._async_maintain(zc))
        browser = ServiceBrowser(zc, SERVICE_TYPE, handlers=[self._on_state_change])
        with self._lock:
            self._browser = browser
            closed = self._closed
        if closed:
            # close() ran between our two lock sections and did not see the browser.
            browser.cancel()

    def _submit(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run `coro` on zeroconf's loop without waiting; a no-op once closing."""
        zc = self._zc
        if zc is None or zc.loop is None or self._stop.is_set():
            coro.close()
            return
        try:
            future = asyncio.run_coroutine_threadsafe(self._tracked(coro), zc.loop)
        except RuntimeError:  # the loop is already closed
            coro.close()
            return
        future.add_done_callback(_log_failure)

    async def _tracked(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run `coro` as a task close() can cancel, so that zeroconf's shutdown never waits."""
        task = asyncio.current_task()
        assert task is not None
        self._loop_tasks.add(task)
        try:
            await coro
        finally:
            self._loop_tasks.discard(task)

    async def _async_register(self, zc: Zeroconf, info: ServiceInfo) -> None:
        # No probing (see the module doc): the name is ours by configuration.
        announcements = await zc.async_register_service(info, cooperating_responders=True)
        await announcements
        self._log.info(
            "registered %s (cluster %r, version %d) on %s",
            info.name,
            self.cluster,
            self.protocol_version,
            ", ".join(self.advertise_addresses),
        )

    def _on_state_change(
        self,
        zeroconf: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        """Browser callback (zeroconf's browser thread): record and schedule, never block."""
        if state_change is ServiceStateChange.Removed:
            with self._lock:
                self._browsed.discard(name)
                gone = self._zc_peers.pop(name, None)
                self._ignored.pop(name, None)
            if gone is not None:
                self._log.info("peer %s (%s) said goodbye", gone.node_id, name)
            return
        with self._lock:
            self._browsed.add(name)
        self._submit(self._async_resolve(zeroconf, name, reset_backoff=True))

    async def _async_resolve(self, zc: Zeroconf, name: str, *, reset_backoff: bool) -> None:
        """Fetch SRV/TXT/addresses (from the cache if there, else by query) and take them in."""
        if reset_backoff:
            self._retry_delay_s.pop(name, None)
            self._retry_at_s.pop(name, None)
        if name in self._resolving or name == self._instance_name:
            return
        self._resolving.add(name)
        try:
            info = AsyncServiceInfo(SERVICE_TYPE, name)
            found = await info.async_request(zc, _RESOLVE_TIMEOUT_MS)
        finally:
            self._resolving.discard(name)
        if found and self._srv_alive(zc, name):
            self._take(name, info)
        else:
            self._schedule_retry(name)

    def _schedule_retry(self, name: str) -> None:
        delay_s = min(_RETRY_MAX_S, 2 * self._retry_delay_s.get(name, _RETRY_MIN_S / 2))
        self._retry_delay_s[name] = delay_s
        self._retry_at_s[name] = time.monotonic() + delay_s

    @staticmethod
    def _srv_alive(zc: Zeroconf, name: str) -> bool:
        srv = zc.cache.get_by_details(name, _DNS_TYPE_SRV, _DNS_CLASS_IN)
        return srv is not None and not srv.is_expired(current_time_millis())

    def _take(self, name: str, info: ServiceInfo) -> None:
        """Accept a resolved instance as a peer, or note why it is ignored."""
        parsed = _parse_txt(info.decoded_properties)
        if isinstance(parsed, _PeerTxt) and parsed.node_id == self.node_id:
            self._check_duplicate(name, parsed, info)
            return
        reason: str | None = None
        endpoint: Endpoint | None = None
        if isinstance(parsed, str):
            reason = parsed
        elif parsed.cluster != self.cluster:
            reason = f"other cluster {parsed.cluster!r} (ours is {self.cluster!r})"
        elif parsed.version != self.protocol_version:
            reason = f"other protocol version {parsed.version} (ours is {self.protocol_version})"
        else:
            host = self._pick_address(info.parsed_scoped_addresses())
            if host is None:
                reason = "no usable address"
            else:
                endpoint = Endpoint(host, parsed.grpc_port, VIA_ZEROCONF, parsed.node_id)
        with self._lock:
            if name not in self._browsed:
                return  # removed while we resolved it
            if endpoint is not None:
                previous = self._zc_peers.get(name)
                self._zc_peers[name] = endpoint
                self._ignored.pop(name, None)
                logged_reason = None
            else:
                assert reason is not None
                previous = self._zc_peers.pop(name, None)
                logged_reason = None if self._ignored.get(name) == reason else reason
                self._ignored[name] = reason
        if endpoint is not None and previous != endpoint:
            self._log.info(
                "peer %s at %s:%d (zeroconf)", endpoint.node_id, endpoint.host, endpoint.port
            )
        if logged_reason is not None:
            level = logging.INFO if logged_reason.startswith("other cluster") else logging.WARNING
            self._log.log(level, "ignoring zeroconf instance %s: %s", name, logged_reason)

    def _check_duplicate(self, name: str, txt: _PeerTxt, info: ServiceInfo) -> None:
        """Warn (once) when another node announces our node id: a configuration error."""
        ours = name == self._instance_name and txt.grpc_port == self.grpc_port
        addresses = {_canonical_ip(a) for a in info.parsed_addresses()}
        if ours and addresses <= set(self.advertise_addresses):
            return
        if name not in self._warned_duplicate:
            self._warned_duplicate.add(name)
            self._log.warning(
                "zeroconf instance %s at %s port %d announces our node id %r: node ids must be"
                " unique",
                name,
                sorted(a for a in addresses if a),
                txt.grpc_port,
                self.node_id,
            )

    def _pick_address(self, announced: list[str]) -> str | None:
        """One address per zeroconf peer: the first announced in a family we also use."""
        canonical = [c for c in (_canonical_ip(a) for a in announced) if c is not None]
        if not canonical:
            return None
        our_versions = {
            ipaddress.ip_address(a.split("%")[0]).version for a in self.advertise_addresses
        }
        for address in canonical:
            if ipaddress.ip_address(address.split("%")[0]).version in our_versions:
                return address
        return canonical[0]

    async def _async_maintain(self, zc: Zeroconf) -> None:
        """Every second: refresh stale peer records, drop expired ones, retry unresolved ones."""
        while True:
            await asyncio.sleep(_MAINTENANCE_PERIOD_S)
            try:
                self._maintain_once(zc)
            except Exception:
                self._log.exception("zeroconf maintenance failed")

    def _maintain_once(self, zc: Zeroconf) -> None:
        now_ms = current_time_millis()
        now_s = time.monotonic()
        with self._lock:
            browsed = sorted(self._browsed - {self._instance_name})
            own_seen = self._instance_name in self._browsed
        if own_seen:
            # Another host with our node id would announce our very instance name.
            own = AsyncServiceInfo(SERVICE_TYPE, self._instance_name)
            if own.load_from_cache(zc, now_ms):
                parsed = _parse_txt(own.decoded_properties)
                if isinstance(parsed, _PeerTxt):
                    self._check_duplicate(self._instance_name, parsed, own)
        for name in browsed:
            info = AsyncServiceInfo(SERVICE_TYPE, name)
            srv = zc.cache.get_by_details(name, _DNS_TYPE_SRV, _DNS_CLASS_IN)
            if info.load_from_cache(zc, now_ms) and srv is not None and not srv.is_expired(now_ms):
                self._take(name, info)
                if srv.is_stale(now_ms) and (
                    now_s - self._last_refresh_s.get(name, -_REFRESH_QUERY_GAP_S)
                    >= _REFRESH_QUERY_GAP_S
                ):
                    self._last_refresh_s[name] = now_s
                    zc.async_send(self._refresh_query(info))
                continue
            with self._lock:
                gone = self._zc_peers.pop(name, None)
                self._ignored.pop(name, None)
            if gone is not None:
                self._log.info(
                    "peer %s (%s) vanished: its records expired without goodbye", gone.node_id, name
                )
            if name not in self._resolving and now_s >= self._retry_at_s.get(name, 0.0):
                # Sets the next retry time itself when this attempt fails.
                self._retry_at_s[name] = now_s + _RETRY_MAX_S
                self._submit(self._async_resolve(zc, name, reset_backoff=False))
        # Forget per-name state of instances the browser no longer reports.
        for table in (self._retry_at_s, self._retry_delay_s, self._last_refresh_s):
            for name in [n for n in table if n not in browsed]:
                del table[name]

    @staticmethod
    def _refresh_query(info: ServiceInfo) -> DNSOutgoing:
        """A query for a peer's SRV, TXT and address records (RFC 6762 section 5.2)."""
        out = DNSOutgoing(_DNS_FLAGS_QUERY)
        out.add_question(DNSQuestion(info.name, _DNS_TYPE_SRV, _DNS_CLASS_IN))
        out.add_question(DNSQuestion(info.name, _DNS_TYPE_TXT, _DNS_CLASS_IN))
        server = info.server or info.name
        if info.parsed_addresses(IPVersion.V4Only):
            out.add_question(DNSQuestion(server, _DNS_TYPE_A, _DNS_CLASS_IN))
        if info.parsed_addresses(IPVersion.V6Only):
            out.add_question(DNSQuestion(server, _DNS_TYPE_AAAA, _DNS_CLASS_IN))
        return out

    def _teardown_zeroconf(self, zc: Zeroconf, browser: ServiceBrowser | None) -> None:
        """Stop browsing, cancel our tasks, say goodbye, close zeroconf (in a helper thread)."""
        try:
            if browser is not None:
                browser.cancel()
            if zc.loop is not None and zc.loop.is_running():
                goodbye = asyncio.run_coroutine_threadsafe(self._async_goodbye(zc), zc.loop)
                try:
                    goodbye.result(_GOODBYE_BUDGET_S)
                except concurrent.futures.TimeoutError:
                    self._log.warning("zeroconf goodbye took longer than %.1f s", _GOODBYE_BUDGET_S)
            zc.close()
        except Exception:
            self._log.exception("closing zeroconf failed")

    async def _async_goodbye(self, zc: Zeroconf) -> None:
        for task in list(self._loop_tasks):
            task.cancel()
        if self._loop_tasks:
            await asyncio.wait(list(self._loop_tasks), timeout=0.1)
        await zc.async_unregister_all_services()


def _log_failure(future: concurrent.futures.Future[None]) -> None:
    if future.cancelled():
        return
    exc = future.exception()
    if exc is not None:
        log.error("zeroconf task failed: %s", exc, exc_info=exc)
