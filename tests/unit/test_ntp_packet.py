"""NTP packet handling: timestamps, the on-wire formulas, and what a client must refuse."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chronotick.ntp.packet import (
    KissCode,
    KissOfDeath,
    ReplyError,
    ServerIdentity,
    build_reply,
    build_request,
    ns_to_ntp64,
    ntp64_to_ns,
    offset_and_delay,
    parse_reply,
)

S = 1_000_000_000
MS = 1_000_000
NTP_UNIX_DELTA_S = 2_208_988_800
ERA1_START_UNIX_S = (1 << 32) - NTP_UNIX_DELTA_S  # 2036-02-07T06:28:16Z
NOW = 1_780_000_000 * S + 123_456_789  # a fixed "now" in 2026
NONCE = 0x0123_4567_89AB_CDEF


# --- timestamps ------------------------------------------------------------------------------


def test_known_timestamps() -> None:
    assert ns_to_ntp64(0) == NTP_UNIX_DELTA_S << 32
    assert ns_to_ntp64(S // 2) == (NTP_UNIX_DELTA_S << 32) | 0x8000_0000
    assert ntp64_to_ns((NTP_UNIX_DELTA_S << 32) | 0x4000_0000, pivot_unix_ns=0) == S // 4


def test_fraction_rounds_to_the_nearest_nanosecond() -> None:
    base = NTP_UNIX_DELTA_S << 32  # 1970-01-01, one NTP fraction unit is about 0.233 ns
    assert ntp64_to_ns(base | 1, 0) == 0  # 0.23 ns
    assert ntp64_to_ns(base | 2, 0) == 0  # 0.47 ns
    assert ntp64_to_ns(base | 3, 0) == 1  # 0.70 ns
    assert ntp64_to_ns(base | 0xFFFF_FFFF, 0) == S  # 999 999 999.77 ns carries into the second
    assert ns_to_ntp64(1) & 0xFFFF_FFFF == 4  # 1 ns is 4.29 units, truncated


@given(
    unix_ns=st.integers(min_value=0, max_value=200 * 365 * 86_400 * S),  # 1970 to 2169
    pivot_shift_ns=st.integers(min_value=-60 * 365 * 86_400 * S, max_value=60 * 365 * 86_400 * S),
)
def test_round_trip_is_below_one_nanosecond(unix_ns: int, pivot_shift_ns: int) -> None:
    # The pivot (the receiver's clock) may be decades off and still pick the right era.
    back = ntp64_to_ns(ns_to_ntp64(unix_ns), pivot_unix_ns=unix_ns + pivot_shift_ns)
    assert abs(back - unix_ns) < 1


def test_era_pivot_around_2036() -> None:
    wrap_ns = ERA1_START_UNIX_S * S
    assert ns_to_ntp64(wrap_ns) == 0  # era 1 starts with an all-zero timestamp
    last_of_era0 = ns_to_ntp64(wrap_ns - 1)
    assert last_of_era0 >> 32 == 0xFFFF_FFFF
    # The same 64 bits mean 2036 or 1900 depending on the receiver's clock.
    assert ntp64_to_ns(0, pivot_unix_ns=wrap_ns + S) == wrap_ns
    assert ntp64_to_ns(0, pivot_unix_ns=wrap_ns - S) == wrap_ns
    assert ntp64_to_ns(0, pivot_unix_ns=-NTP_UNIX_DELTA_S * S) == -NTP_UNIX_DELTA_S * S
    assert ntp64_to_ns(last_of_era0, pivot_unix_ns=wrap_ns + S) == wrap_ns - 1
    assert ntp64_to_ns(ns_to_ntp64(wrap_ns + 10 * S), pivot_unix_ns=NOW) == wrap_ns + 10 * S


# --- offset and delay ------------------------------------------------------------------------


def test_offset_and_delay_with_symmetric_paths() -> None:
    # Client 100 ms behind the server, 10 ms each way, 1 ms inside the server.
    t1 = 5 * S
    t2 = t1 + 10 * MS + 100 * MS
    t3 = t2 + 1 * MS
    t4 = t3 - 100 * MS + 10 * MS
    assert offset_and_delay(t1, t2, t3, t4) == (100 * MS, 20 * MS)


def test_asymmetric_paths_cost_half_the_asymmetry() -> None:
    # Same clocks, 30 ms out and 10 ms back: the offset is off by (30 − 10) / 2 = 10 ms.
    t1 = 0
    t2 = t1 + 30 * MS - 40 * MS  # server 40 ms behind the client
    t3 = t2
    t4 = t3 + 40 * MS + 10 * MS
    assert offset_and_delay(t1, t2, t3, t4) == (-40 * MS + 10 * MS, 40 * MS)


# --- request, reply, parse -------------------------------------------------------------------


def reply_to(
    identity: ServerIdentity = ServerIdentity(),  # noqa: B008
    receive_ns: int = NOW + 7 * MS,
    transmit_ns: int = NOW + 7 * MS + 42_000,
    request: bytes | None = None,
) -> bytes:
    return build_reply(
        build_request(NONCE) if request is None else request,
        receive_ns,
        transmit_ns,
        NOW - S,
        identity,
    )


def test_request_round_trip_through_a_server_reply() -> None:
    request = build_request(NONCE)
    assert len(request) == 48
    assert request[0] & 0x7 == 3 and (request[0] >> 3) & 0x7 == 4
    assert struct.unpack_from("!Q", request, 40)[0] == NONCE

    identity = ServerIdentity(
        stratum=2,
        ref_id=b"GPS",
        precision_log2=-23,
        root_delay_ns=1_500_000,
        root_dispersion_ns=250_000,
    )
    reply = parse_reply(reply_to(identity), NONCE, pivot_unix_ns=NOW)
    assert reply.receive_ns == NOW + 7 * MS
    assert reply.transmit_ns == NOW + 7 * MS + 42_000
    assert reply.reference_ns == NOW - S
    assert (reply.leap, reply.version, reply.stratum) == (0, 4, 2)
    assert reply.precision_log2 == -23
    assert reply.ref_id == int.from_bytes(b"GPS\0", "big")
    # Root delay and dispersion are 16.16 fixed point: 15.3 µs resolution.
    assert abs(reply.root_delay_ns - 1_500_000) < 16_000
    assert abs(reply.root_dispersion_ns - 250_000) < 16_000


def test_reply_echoes_version_and_poll_of_the_request() -> None:
    request = bytearray(build_request(NONCE, version=3))
    request[2] = 0xFA  # poll −6, a signed byte
    reply = parse_reply(reply_to(request=bytes(request)), NONCE, NOW)
    assert reply.version == 3
    assert reply.poll_log2 == -6


@pytest.mark.parametrize(
    ("request_bytes", "reason"),
    [
        (build_request(NONCE)[:47], "malformed"),
        (b"", "malformed"),
        (bytes([0x24]) + build_request(NONCE)[1:], "bad_mode"),  # v4 server mode
        (bytes([0x21]) + build_request(NONCE)[1:], "bad_mode"),  # v4 symmetric active
        (bytes([0x03]) + build_request(NONCE)[1:], "bad_version"),  # v0 client
        (bytes([0x2B]) + build_request(NONCE)[1:], "bad_version"),  # v5 client
    ],
)
def test_server_refuses_what_is_not_a_client_request(request_bytes: bytes, reason: str) -> None:
    with pytest.raises(ReplyError) as caught:
        reply_to(request=request_bytes)
    assert caught.value.reason == reason


def test_client_refuses_short_data() -> None:
    with pytest.raises(ReplyError) as caught:
        parse_reply(reply_to()[:47], NONCE, NOW)
    assert caught.value.reason == "malformed"


def test_client_refuses_a_non_server_mode() -> None:
    # A request looped back to us (mode 3, as a reflector would send) is not a reply.
    looped = bytearray(build_request(NONCE))
    struct.pack_into("!Q", looped, 24, NONCE)
    with pytest.raises(ReplyError) as caught:
        parse_reply(bytes(looped), NONCE, NOW)
    assert caught.value.reason == "bad_mode"


def test_client_refuses_a_reply_to_another_request() -> None:
    with pytest.raises(ReplyError) as caught:
        parse_reply(reply_to(), NONCE + 1, NOW)
    assert caught.value.reason == "bogus_origin"


@pytest.mark.parametrize(
    ("ref_id", "code"),
    [
        (b"RATE", KissCode.RATE),
        (b"DENY", KissCode.DENY),
        (b"RSTR", KissCode.RSTR),
        (b"XYZW", KissCode.OTHER),
    ],
)
def test_client_recognizes_kiss_of_death(ref_id: bytes, code: KissCode) -> None:
    with pytest.raises(KissOfDeath) as caught:
        parse_reply(reply_to(ServerIdentity(stratum=0, ref_id=ref_id)), NONCE, NOW)
    assert caught.value.code is code
    assert caught.value.reason == "kiss_of_death"


@pytest.mark.parametrize(
    "identity", [ServerIdentity(stratum=16), ServerIdentity(leap=3)], ids=["stratum16", "leap3"]
)
def test_client_refuses_an_unsynchronized_server(identity: ServerIdentity) -> None:
    with pytest.raises(ReplyError) as caught:
        parse_reply(reply_to(identity), NONCE, NOW)
    assert caught.value.reason == "unsynchronized"


def test_client_refuses_transmit_before_receive() -> None:
    with pytest.raises(ReplyError) as caught:
        parse_reply(reply_to(receive_ns=NOW, transmit_ns=NOW - 1), NONCE, NOW)
    assert caught.value.reason == "malformed"


@pytest.mark.parametrize(
    ("identity", "reason"),
    [
        (ServerIdentity(precision_log2=40), "malformed"),
        (ServerIdentity(root_dispersion_ns=4 * S), "root_distance"),
        (ServerIdentity(root_delay_ns=7 * S), "root_distance"),
    ],
    ids=["precision", "dispersion", "delay"],
)
def test_client_refuses_a_server_too_far_from_its_reference(
    identity: ServerIdentity, reason: str
) -> None:
    """Absurd figures from one server must not reach the estimator (they once overflowed the
    bound's int64 field and crashed the daemon)."""
    with pytest.raises(ReplyError) as caught:
        parse_reply(reply_to(identity), NONCE, NOW)
    assert caught.value.reason == reason
    parse_reply(reply_to(ServerIdentity(root_dispersion_ns=S)), NONCE, NOW)  # 1 s is usable
