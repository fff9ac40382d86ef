"""The embedded NTP server, queried by our own client code over real loopback UDP sockets."""

from __future__ import annotations

import collections
import random
import socket
import struct
import time
from collections.abc import Iterator

import pytest

from chronotick.clocks import SimulatedClock, SimulatedClockParams, SystemClock
from chronotick.ntp.packet import (
    ReplyError,
    ServerIdentity,
    ServerReply,
    build_reply,
    build_request,
    offset_and_delay,
    parse_reply,
)
from chronotick.ntp.server import REFERENCE_AGE_NS, NtpServer

S = 1_000_000_000
MS = 1_000_000


def query(address: tuple[str, int], timeout_s: float = 1.0) -> tuple[int, int, ServerReply]:
    """One NTP exchange: (offset, delay, reply). Raises TimeoutError when nothing answers."""
    nonce = random.getrandbits(64)
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout_s)
        t1 = time.time_ns()
        sock.sendto(build_request(nonce), address)
        data = sock.recv(1024)
        t4 = time.time_ns()
    reply = parse_reply(data, nonce, pivot_unix_ns=t4)
    offset, delay = offset_and_delay(t1, reply.receive_ns, reply.transmit_ns, t4)
    return offset, delay, reply


def best_offset(address: tuple[str, int], samples: int = 5) -> int:
    """The offset of the exchange with the smallest delay, as NTP clients select it."""
    results = [query(address) for _ in range(samples)]
    return min(results, key=lambda r: r[1])[0]


@pytest.fixture
def skewed_server() -> Iterator[NtpServer]:
    clock = SimulatedClock(SimulatedClockParams(offset_ns=250 * MS, epoch_ns=time.time_ns()))
    with NtpServer(clock, port=0, identity=ServerIdentity(stratum=2, ref_id=b"TEST")) as server:
        yield server


@pytest.mark.parametrize("offset_ns", [250 * MS, -1500 * MS])
def test_serves_the_offset_of_a_simulated_clock(offset_ns: int) -> None:
    clock = SimulatedClock(SimulatedClockParams(offset_ns=offset_ns, epoch_ns=time.time_ns()))
    with NtpServer(clock, port=0) as server:
        assert server.address[0] == "127.0.0.1" and server.address[1] != 0
        offset = best_offset(server.address)
        assert abs(offset - offset_ns) < 2 * MS
        assert server.stats.answered == 5
        assert server.stats.ignored == {}


def test_serves_drift() -> None:
    # 2000 ppm is 2 ms per second: visible over 1.5 s through loopback noise.
    clock = SimulatedClock(SimulatedClockParams(drift_ppm=2000.0, epoch_ns=time.time_ns()))
    with NtpServer(clock, port=0) as server:
        before = best_offset(server.address)
        time.sleep(1.5)
        after = best_offset(server.address)
    assert abs((after - before) - 3 * MS) < 1 * MS


def test_reply_carries_identity_and_recent_reference(skewed_server: NtpServer) -> None:
    _, _, reply = query(skewed_server.address)
    assert reply.stratum == 2
    assert reply.ref_id == int.from_bytes(b"TEST", "big")
    assert reply.reference_ns == reply.receive_ns - REFERENCE_AGE_NS


class TickingClock:
    """Advances 1 ms on every read, to show which reads the server makes and in what order."""

    def __init__(self) -> None:
        self.value = time.time_ns()

    def now_ns(self) -> int:
        self.value += MS
        return self.value


def test_receive_and_transmit_are_separate_reads() -> None:
    with NtpServer(TickingClock(), port=0) as server:
        _, _, reply = query(server.address)
    # One read on receipt, one just before sending: the transmit timestamp is not a copy of the
    # receive timestamp nor taken before the reply was built.
    assert reply.transmit_ns - reply.receive_ns == MS


class FailingOnceClock:
    def __init__(self) -> None:
        self.failed = False

    def now_ns(self) -> int:
        if not self.failed:
            self.failed = True
            raise RuntimeError("injected clock failure")
        return time.time_ns()


def test_an_unexpected_error_costs_one_reply_not_the_server() -> None:
    with NtpServer(FailingOnceClock(), port=0) as server:
        with pytest.raises(TimeoutError):
            query(server.address, timeout_s=0.3)
        offset, _, _ = query(server.address)
        assert abs(offset) < 2 * MS
        assert server.stats.ignored == {"internal_error": 1}
        assert server.stats.answered == 1


def garbage_datagrams() -> list[bytes]:
    request = build_request(12345)
    rng = random.Random(20240601)
    fixed = [
        b"",
        b"\x23",
        request[:47],
        bytes([0x24]) + request[1:],  # mode 4: a reply, never answered (no reflection loops)
        bytes([0x03]) + request[1:],  # version 0
        bytes([0x3B]) + request[1:],  # version 7
    ]
    return fixed + [rng.randbytes(rng.randrange(0, 100)) for _ in range(120)]


def test_ignores_garbage_and_keeps_serving(skewed_server: NtpServer) -> None:
    datagrams = garbage_datagrams()
    # What the server should do with each, by the packet rules: random bytes sometimes form a
    # valid client request (mode 3, version 1-4, 48 bytes or more), which it answers.
    expected_ignored: collections.Counter[str] = collections.Counter()
    expected_answered = 0
    for data in datagrams:
        try:
            build_reply(data, 1, 1, 0, ServerIdentity())
            expected_answered += 1
        except ReplyError as exc:
            expected_ignored[exc.reason] += 1
    assert {"malformed", "bad_mode", "bad_version"} <= set(expected_ignored)

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for data in datagrams:
            sock.sendto(data, skewed_server.address)
    # The server handles datagrams in order, so once this is answered all garbage was seen.
    offset, _, _ = query(skewed_server.address)
    assert abs(offset - 250 * MS) < 2 * MS

    stats = skewed_server.stats
    assert stats.ignored == dict(expected_ignored)
    assert stats.total_ignored == sum(expected_ignored.values())
    assert stats.answered == expected_answered + 1


def test_stop_is_prompt_and_releases_the_port() -> None:
    server = NtpServer(SystemClock(), port=0)
    server.start()
    address = server.address
    query(address)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 1.0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(address)  # raises if the server still held the port
    with pytest.raises(TimeoutError):
        query(address, timeout_s=0.2)


def test_start_fails_on_a_port_in_use() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        server = NtpServer(SystemClock(), port=taken.getsockname()[1])
        with pytest.raises(OSError):
            server.start()


def test_serves_ipv6() -> None:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    clock = SimulatedClock(SimulatedClockParams(offset_ns=-40 * MS, epoch_ns=time.time_ns()))
    with NtpServer(clock, host="::1", port=0) as server:
        assert server.address[0] == "::1"
        offset, _, reply = query(server.address)
    assert abs(offset + 40 * MS) < 2 * MS
    assert struct.pack("!I", reply.ref_id) == b"CTCK"
