"""One poll of one server over UDP: a burst of exchanges, the minimum-delay one kept.

This is the only NTP code that does I/O. It timestamps with the daemon's clock right around
send and receive, matches replies by a random nonce, and reports every unusable reply by reason
instead of raising, so one bad server never disturbs the others.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import secrets
import socket
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from chronotick.estimation.samples import Sample, sample_from_exchange
from chronotick.ntp.packet import (
    KissCode,
    KissOfDeath,
    ReplyError,
    build_request,
    parse_reply,
)
from chronotick.ntp.poll import PollResult

NTP_PORT = 123


@dataclasses.dataclass(frozen=True)
class ServerAddress:
    host: str
    port: int = NTP_PORT

    @classmethod
    def parse(cls, text: str) -> ServerAddress:
        """`HOST`, `HOST:PORT`, `[V6]:PORT` or a bare IPv6 literal."""
        text = text.strip()
        if not text:
            raise ValueError("empty server address")
        host, port = text, NTP_PORT
        if text.startswith("["):
            end = text.find("]")
            if end < 0:
                raise ValueError(f"invalid server address {text!r}: missing ']'")
            host, rest = text[1:end], text[end + 1 :]
            if rest:
                if not rest.startswith(":"):
                    raise ValueError(f"invalid server address {text!r}")
                port = _port(rest[1:], text)
        elif text.count(":") == 1:
            host, port_text = text.split(":")
            port = _port(port_text, text)
        elif text.count(":") > 1:
            ipaddress.IPv6Address(text)  # bare IPv6 literal, default port
        if not host:
            raise ValueError(f"invalid server address {text!r}: empty host")
        return cls(host, port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == NTP_PORT else f"{host}:{self.port}"


def _port(text: str, whole: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise ValueError(f"invalid port in server address {whole!r}") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"port out of range in server address {whole!r}")
    return port


class Resolver:
    """Keeps the address a server name resolved to, as long as that address answers.

    A pool name (`pool.ntp.org`) resolves to a different server at every lookup; resolving
    it for every poll would make one "source" a mix of servers, whose delays and path biases
    the estimator must not mix. Like chrony, the address is kept while it answers and looked
    up again once a poll gets no usable answer.
    """

    def __init__(self) -> None:
        self._cache: dict[ServerAddress, tuple[int, tuple[Any, ...]]] = {}

    def lookup(self, address: ServerAddress) -> tuple[int, tuple[Any, ...]]:
        """(address family, socket address); raises socket.gaierror or UnicodeError."""
        cached = self._cache.get(address)
        if cached is None:
            infos = socket.getaddrinfo(address.host, address.port, type=socket.SOCK_DGRAM)
            family, _type, _proto, _canon, sockaddr = infos[0]
            cached = (int(family), tuple(sockaddr))
            self._cache[address] = cached
        return cached

    def forget(self, address: ServerAddress) -> None:
        self._cache.pop(address, None)


def poll_server(
    address: ServerAddress,
    clock_ns: Callable[[], int],
    burst_size: int,
    burst_spacing_s: float,
    timeout_s: float,
    sleep: Callable[[float], object] = time.sleep,
    resolver: Resolver | None = None,
) -> PollResult:
    """Run one burst against `address`; never raises for network or protocol trouble.

    With a `resolver`, the address it keeps is used, and forgotten when the poll gets no
    usable answer; without one, the name is resolved afresh.
    """
    name = str(address)
    failures: Counter[str] = Counter()
    resolver = resolver or Resolver()
    try:
        family, sockaddr = resolver.lookup(address)
    except (socket.gaierror, UnicodeError) as exc:
        return PollResult(name, None, {f"resolve_failed: {exc}": 1})
    result = _burst(name, family, sockaddr, clock_ns, burst_size, burst_spacing_s, timeout_s,
                    sleep, failures)  # fmt: skip
    if result.sample is None and result.kiss is None:
        resolver.forget(address)
    return result


def _burst(
    name: str,
    family: int,
    sockaddr: tuple[Any, ...],
    clock_ns: Callable[[], int],
    burst_size: int,
    burst_spacing_s: float,
    timeout_s: float,
    sleep: Callable[[float], object],
    failures: Counter[str],
) -> PollResult:
    """The exchanges of one poll over one connected socket; the fastest sample is kept."""
    best: Sample | None = None
    kiss: KissCode | None = None
    stratum = 0
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(sockaddr)
        except OSError as exc:
            return PollResult(name, None, {f"unreachable: {exc.strerror}": 1})
        for k in range(burst_size):
            if k:
                sleep(burst_spacing_s)
            try:
                sample, stratum = _exchange(sock, name, clock_ns, timeout_s, failures)
            except KissOfDeath as kod:
                kiss = kod.code
                failures[kod.reason + ":" + kod.code.value] += 1
                break
            except ReplyError as exc:
                failures[exc.reason] += 1
                continue
            if best is None or sample.delay_ns < best.delay_ns:
                best = sample
    return PollResult(name, best, dict(failures), kiss, stratum)


def _exchange(
    sock: socket.socket,
    name: str,
    clock_ns: Callable[[], int],
    timeout_s: float,
    ignored: Counter[str],
) -> tuple[Sample, int]:
    """One request and its reply; datagrams that are not our answer are counted and skipped."""
    nonce = secrets.randbits(64)
    request = build_request(nonce)
    deadline = time.monotonic() + timeout_s
    t1 = clock_ns()
    try:
        sock.send(request)
    except OSError as exc:
        raise ReplyError("send_failed", exc.strerror or str(exc)) from None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ReplyError("timeout", f"no reply within {timeout_s} s")
        sock.settimeout(remaining)
        try:
            data = sock.recv(1024)
        except TimeoutError:
            raise ReplyError("timeout", f"no reply within {timeout_s} s") from None
        except OSError as exc:  # e.g. ICMP port unreachable on a connected socket
            raise ReplyError("unreachable", exc.strerror or str(exc)) from None
        t4 = clock_ns()
        try:
            reply = parse_reply(data, nonce, t4)
        except KissOfDeath:
            raise
        except ReplyError as exc:
            if exc.reason in ("bogus_origin", "malformed", "bad_mode"):
                ignored[exc.reason] += 1  # not our answer (late, duplicated, forged)
                continue
            raise
        sample = sample_from_exchange(
            name,
            t1,
            reply.receive_ns,
            reply.transmit_ns,
            t4,
            stratum=reply.stratum,
            root_delay_ns=reply.root_delay_ns,
            root_dispersion_ns=reply.root_dispersion_ns,
            precision_ns=max(1, int(2.0**reply.precision_log2 * 1e9)),
        )
        if sample is None:
            raise ReplyError("negative_delay", "round trip below zero")
        return sample, reply.stratum
