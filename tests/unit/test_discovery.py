"""Static peers, DNS names and address parsing of coordinator.discovery, with a fake resolver.

Zeroconf is off in these tests (it has its own integration tests); the resolver is injected, so
nothing here touches the network.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from coordinator.discovery import (
    SERVICE_TYPE,
    Discovery,
    Endpoint,
    instance_label,
    parse_host_port,
)


class FakeResolver:
    """Answers from a table the test edits; a name mapped to an exception raises it."""

    def __init__(self, table: dict[str, list[str] | Exception]) -> None:
        self.table = table
        self.calls: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, name: str) -> list[str]:
        with self.lock:
            self.calls.append(name)
            answer = self.table.get(name, OSError(f"no such name {name}"))
        if isinstance(answer, Exception):
            raise answer
        return list(answer)

    def set(self, name: str, answer: list[str] | Exception) -> None:
        with self.lock:
            self.table[name] = answer
            self.calls.clear()

    def wait_calls(self, name: str, count: int, timeout_s: float = 2.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if self.calls.count(name) >= count:
                    return
            time.sleep(0.005)
        raise AssertionError(f"{name} looked up fewer than {count} times")


def make(
    resolver: FakeResolver | Callable[[str], list[str]],
    *,
    static: tuple[str, ...] = (),
    dns: tuple[str, ...] = (),
    grpc_port: int = 7820,
    advertise: tuple[str, ...] = ("10.0.0.1",),
    interval_s: float = 3600.0,
) -> Discovery:
    return Discovery(
        node_id="self",
        cluster="c",
        protocol_version=1,
        grpc_port=grpc_port,
        advertise_addresses=list(advertise),
        zeroconf_enabled=False,
        static_peers=static,
        dns_names=dns,
        dns_interval_s=interval_s,
        resolve=resolver,
    )


@pytest.fixture
def closing() -> Iterator[list[Discovery]]:
    """Discovery objects appended here are closed after the test, whatever happens."""
    made: list[Discovery] = []
    try:
        yield made
    finally:
        for d in made:
            d.close()


def eventually(check: Callable[[], bool], timeout_s: float = 2.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


def hosts(d: Discovery) -> set[tuple[str, int, str]]:
    return {(e.host, e.port, e.via) for e in d.endpoints()}


# ------------------------------------------------------------------ parse_host_port


@pytest.mark.parametrize(
    ("text", "default", "expected"),
    [
        ("10.0.0.2:7820", None, ("10.0.0.2", 7820)),
        ("  10.0.0.2:1 ", None, ("10.0.0.2", 1)),
        ("[fd00::2]:65535", None, ("fd00::2", 65535)),
        ("[FD00:0:0::2]:80", None, ("fd00::2", 80)),
        ("[fe80::1%eth0]:80", None, ("fe80::1%eth0", 80)),
        (
            "Node-1.Chronotick.svc.cluster.local.:7820",
            None,
            ("node-1.chronotick.svc.cluster.local", 7820),
        ),
        ("localhost:7820", None, ("localhost", 7820)),
        ("peer", 7820, ("peer", 7820)),
        ("[::1]", 7820, ("::1", 7820)),
        ("10.0.0.2", 9, ("10.0.0.2", 9)),
        ("1.2.3.4.nip.io:5", None, ("1.2.3.4.nip.io", 5)),
    ],
)
def test_parse_host_port_accepts(text: str, default: int | None, expected: tuple[str, int]) -> None:
    assert parse_host_port(text, default) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("peer", "missing ':PORT'"),
        ("peer:", "is not a number"),
        ("peer:abc", "is not a number"),
        ("peer:-1", "is not a number"),
        ("peer:0", "not in 1-65535"),
        ("peer:65536", "not in 1-65535"),
        ("peer:٣", "is not a number"),  # a non-ASCII digit
        (":7820", "empty host"),
        ("fd00::2:7820", "must be in brackets"),
        ("::1", "must be in brackets"),
        ("[fd00::2:7820", "missing ']'"),
        ("[fd00::2]7820", "expected ':PORT'"),
        ("[10.0.0.1]:7820", "not an IPv6 address"),
        ("[nope]:1", "not an IPv6 address"),
        ("300.1.1.1:7820", "neither an IPv4 address nor a host name"),
        ("10.0.0:7820", "neither an IPv4 address nor a host name"),
        ("bad..name:1", "neither an IPv4 address nor a host name"),
        ("-bad.name:1", "neither an IPv4 address nor a host name"),
        ("bad name:1", "neither an IPv4 address nor a host name"),
        ("bad/name:1", "neither an IPv4 address nor a host name"),
        (f"{'a' * 64}.example:1", "neither an IPv4 address nor a host name"),
    ],
)
def test_parse_host_port_rejects_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        parse_host_port(text)
    if text.strip():
        assert repr(text) in str(info.value)  # the message names what was wrong


def test_bad_configuration_fails_at_construction() -> None:
    resolver = FakeResolver({})
    with pytest.raises(ValueError, match=r"static peer: .*missing ':PORT'"):
        make(resolver, static=("peer",))
    with pytest.raises(ValueError, match=r"DNS name: .*must be in brackets"):
        make(resolver, dns=("fd00::1:7820",))
    with pytest.raises(ValueError, match="not an IP address literal"):
        make(resolver, advertise=("myhost",))
    with pytest.raises(ValueError, match="at least one advertise address"):
        Discovery(
            node_id="n",
            cluster="c",
            protocol_version=1,
            grpc_port=1,
            advertise_addresses=[],
        )


def test_instance_labels_fit_one_dns_label_and_stay_distinct() -> None:
    assert instance_label("node-1") == "chronotick-node-1"
    odd = [instance_label(n) for n in ("a.b", "a_b", "a b", "ä", "x" * 200, "x" * 201)]
    assert len(set(odd)) == len(odd)
    for label in odd:
        assert len(label.encode()) <= 63
        assert f"{label}.{SERVICE_TYPE}".endswith("._chronotick._tcp.local.")


# ------------------------------------------------------------------ static peers


def test_static_literals_are_listed_without_any_lookup(closing: list[Discovery]) -> None:
    resolver = FakeResolver({})
    d = make(resolver, static=("10.0.0.2:7820", "[fd00::2]:7821"))
    closing.append(d)
    d.start()
    assert d.endpoints() == [
        Endpoint("10.0.0.2", 7820, "static"),
        Endpoint("fd00::2", 7821, "static"),
    ]
    assert resolver.calls == []


def test_static_name_is_resolved_at_start_and_kept_when_a_later_lookup_fails(
    closing: list[Discovery], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="chronotick.discovery")
    resolver = FakeResolver({"peer.example": ["10.0.0.7", "10.0.0.8"]})
    d = make(resolver, static=("peer.example:7820",), interval_s=0.02)
    closing.append(d)
    d.start()
    # Resolved before start() returned; one static peer is one node: the preferred address.
    assert d.endpoints() == [Endpoint("10.0.0.7", 7820, "static")]

    resolver.set("peer.example", OSError("temporary failure in name resolution"))
    resolver.wait_calls("peer.example", 3)
    assert d.endpoints() == [Endpoint("10.0.0.7", 7820, "static")]
    failures = [r for r in caplog.records if "lookup failed" in r.getMessage()]
    assert [r.levelno for r in failures].count(logging.WARNING) == 1  # once per outage
    assert "temporary failure" in failures[0].getMessage()

    resolver.set("peer.example", ["10.0.0.9"])
    eventually(lambda: d.endpoints() == [Endpoint("10.0.0.9", 7820, "static")])
    assert any("works again" in r.getMessage() for r in caplog.records)


def test_a_static_name_that_never_resolved_is_not_listed_and_does_not_raise(
    closing: list[Discovery],
) -> None:
    resolver = FakeResolver({"gone.example": OSError("NXDOMAIN")})
    d = make(resolver, static=("gone.example:7820", "10.0.0.3:7820"), interval_s=0.02)
    closing.append(d)
    d.start()
    resolver.wait_calls("gone.example", 2)
    assert d.endpoints() == [Endpoint("10.0.0.3", 7820, "static")]


# ------------------------------------------------------------------ DNS names


def test_every_address_of_a_dns_name_is_a_peer_and_follows_the_answer(
    closing: list[Discovery], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="chronotick.discovery")
    name = "chronotick.default.svc.cluster.local"
    resolver = FakeResolver({name: ["10.1.0.1", "10.1.0.2", "10.1.0.3", "10.1.0.2"]})
    d = make(resolver, dns=(f"{name}:7820",), interval_s=0.02)
    closing.append(d)
    d.start()
    assert d.endpoints() == [
        Endpoint("10.1.0.1", 7820, "dns"),
        Endpoint("10.1.0.2", 7820, "dns"),
        Endpoint("10.1.0.3", 7820, "dns"),
    ]

    # A pod went away, another came: the answer is the truth.
    resolver.set(name, ["10.1.0.3", "10.1.0.4"])
    eventually(lambda: hosts(d) == {("10.1.0.3", 7820, "dns"), ("10.1.0.4", 7820, "dns")})

    # Failures and empty answers keep the previous answer.
    resolver.set(name, OSError("SERVFAIL"))
    resolver.wait_calls(name, 3)
    resolver.set(name, [])
    resolver.wait_calls(name, 3)
    assert hosts(d) == {("10.1.0.3", 7820, "dns"), ("10.1.0.4", 7820, "dns")}
    assert any("SERVFAIL" in r.getMessage() for r in caplog.records)


def test_junk_from_the_resolver_is_skipped(closing: list[Discovery]) -> None:
    resolver = FakeResolver({"svc.example": ["not-an-ip", "10.1.0.1", "FD00:0::5"]})
    d = make(resolver, dns=("svc.example:7820",))
    closing.append(d)
    d.start()
    assert hosts(d) == {("10.1.0.1", 7820, "dns"), ("fd00::5", 7820, "dns")}


def test_we_are_never_our_own_peer(closing: list[Discovery]) -> None:
    name = "chronotick.ns.svc.cluster.local"
    # The headless Service lists every pod, us (10.0.0.1 and fd00::1) included.
    resolver = FakeResolver({name: ["10.0.0.1", "10.0.0.2", "fd00:0::1"]})
    d = make(
        resolver,
        dns=(f"{name}:7820",),
        static=("127.0.0.1:7820", "127.0.0.1:7821", "10.0.0.1:9999"),
        advertise=("10.0.0.1", "fd00::1"),
        grpc_port=7820,
    )
    closing.append(d)
    d.start()
    assert hosts(d) == {
        ("10.0.0.2", 7820, "dns"),
        ("127.0.0.1", 7821, "static"),  # another node on this host
        ("10.0.0.1", 9999, "static"),  # ditto: same address, other port
    }


def test_a_peer_known_twice_is_listed_once_static_before_dns(closing: list[Discovery]) -> None:
    resolver = FakeResolver({"svc.example": ["10.0.0.5", "fd00::5"], "p.example": ["10.0.0.5"]})
    d = make(
        resolver,
        static=("p.example:7820", "[fd00:0::5]:7820"),
        dns=("svc.example:7820",),
    )
    closing.append(d)
    d.start()
    assert d.endpoints() == [
        Endpoint("10.0.0.5", 7820, "static"),
        Endpoint("fd00::5", 7820, "static"),
    ]


# ------------------------------------------------------------------ lifecycle


def test_close_is_idempotent_and_safe_before_start() -> None:
    d = make(FakeResolver({}), static=("10.0.0.2:1",))
    d.close()
    d.close()
    with pytest.raises(RuntimeError, match="closed"):
        d.start()
    d2 = make(FakeResolver({}))
    d2.start()
    with pytest.raises(RuntimeError, match="already started"):
        d2.start()
    d2.close()
    d2.close()


def test_a_hanging_resolver_neither_hangs_start_nor_close() -> None:
    release = threading.Event()

    def hanging(name: str) -> list[str]:
        release.wait(30)
        return ["10.0.0.9"]

    d = make(hanging, static=("slow.example:7820", "10.0.0.2:7820"))
    try:
        t0 = time.monotonic()
        d.start()
        assert time.monotonic() - t0 < 2.5
        assert d.endpoints() == [Endpoint("10.0.0.2", 7820, "static")]
        t1 = time.monotonic()
        d.close()
        assert time.monotonic() - t1 < 1.0
    finally:
        release.set()


def test_endpoints_is_safe_to_poll_from_threads_while_answers_change(
    closing: list[Discovery],
) -> None:
    resolver = FakeResolver({"svc.example": ["10.0.0.1", "10.0.0.2"]})
    d = make(resolver, dns=("svc.example:7820",), advertise=("10.9.9.9",), interval_s=0.001)
    closing.append(d)
    d.start()
    errors: list[BaseException] = []
    stop = threading.Event()

    def poll() -> None:
        try:
            while not stop.is_set():
                got = d.endpoints()
                assert len({(e.host, e.port) for e in got}) == len(got)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=poll) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(200):
        resolver.set("svc.example", [f"10.0.{i % 7}.{j}" for j in range(1, 4)])
        time.sleep(0.001)
    stop.set()
    for t in threads:
        t.join()
    assert not errors
