"""NTP packet fields, timestamps and the on-wire offset/delay arithmetic. No I/O.

ntplib encodes and decodes the header fields. Its timestamps are floats of NTP-era seconds
(about 0.5 µs resolution at today's dates), so the four timestamps are also read and written
here as exact 64-bit fixed-point integers and converted to integer nanoseconds.

The client puts a random nonce, not its clock, in the transmit timestamp (as chrony does): the
server echoes it as the originate timestamp, which rejects stale, duplicated and spoofed
replies, and the local send time never leaves the host.
"""

from __future__ import annotations

import dataclasses
import enum
import struct

import ntplib

NTP_UNIX_DELTA_S = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01
NTP_PACKET_LEN = 48
_ERA_NS = (1 << 32) * 1_000_000_000
_TIMESTAMPS = struct.Struct("!4Q")  # reference, originate, receive, transmit at byte 16
_TX_TIMESTAMP = struct.Struct("!Q")
_TX_OFFSET = 40
_ORIG_OFFSET = 24

MODE_CLIENT = 3
MODE_SERVER = 4
LEAP_UNSYNCHRONIZED = 3
MAX_STRATUM = 15
#: chrony's `maxdistance` default: a server whose own error may be larger is not used
MAX_ROOT_DISTANCE_S = 3.0


def ns_to_ntp64(unix_ns: int) -> int:
    """Unix nanoseconds to a 64-bit NTP timestamp (32.32 fixed point, era folded)."""
    ntp_ns = unix_ns + NTP_UNIX_DELTA_S * 1_000_000_000
    seconds, frac_ns = divmod(ntp_ns, 1_000_000_000)
    return ((seconds & 0xFFFFFFFF) << 32) | ((frac_ns << 32) // 1_000_000_000)


def ntp64_to_ns(value: int, pivot_unix_ns: int) -> int:
    """A 64-bit NTP timestamp to Unix nanoseconds, in the era closest to `pivot_unix_ns`.

    NTP timestamps wrap every 136 years (era 1 starts in 2036); the pivot (the local clock)
    resolves which era a server meant, as RFC 5905 suggests.
    """
    seconds = value >> 32
    frac_ns = ((value & 0xFFFFFFFF) * 1_000_000_000 + (1 << 31)) >> 32
    in_era_ns = seconds * 1_000_000_000 + frac_ns
    pivot_ntp_ns = pivot_unix_ns + NTP_UNIX_DELTA_S * 1_000_000_000
    era = round((pivot_ntp_ns - in_era_ns) / _ERA_NS)
    return in_era_ns + era * _ERA_NS - NTP_UNIX_DELTA_S * 1_000_000_000


def short_to_ns(value: float) -> int:
    """An NTP short-format value (ntplib gives it as float seconds) to nanoseconds."""
    return round(value * 1_000_000_000)


class KissCode(enum.Enum):
    """Kiss-o'-Death codes a client must act on (RFC 5905 §7.4)."""

    RATE = "RATE"  # slow down
    DENY = "DENY"  # access denied: stop
    RSTR = "RSTR"  # access restricted: stop
    OTHER = "OTHER"  # any other code: treat the reply as unusable


class ReplyError(ValueError):
    """A reply that must not be used as a measurement; `reason` is a short stable label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class KissOfDeath(ReplyError):
    def __init__(self, code: KissCode, raw: str) -> None:
        super().__init__("kiss_of_death", f"server sent Kiss-o'-Death {raw!r}")
        self.code = code


@dataclasses.dataclass(frozen=True)
class ServerReply:
    """The fields of a valid server reply that measurement needs, in integer nanoseconds."""

    leap: int
    version: int
    stratum: int
    poll_log2: int
    precision_log2: int
    root_delay_ns: int
    root_dispersion_ns: int
    ref_id: int
    reference_ns: int
    receive_ns: int  # T2, server clock
    transmit_ns: int  # T3, server clock


def build_request(nonce: int, version: int = 4) -> bytes:
    """A client-mode request whose transmit timestamp is `nonce` (64 random bits)."""
    packet = ntplib.NTPPacket(version=version, mode=MODE_CLIENT)
    data = bytearray(packet.to_data())
    _TX_TIMESTAMP.pack_into(data, _TX_OFFSET, nonce)
    return bytes(data)


def parse_reply(data: bytes, nonce: int, pivot_unix_ns: int) -> ServerReply:
    """Validate a reply to the request carrying `nonce`; raise ReplyError when unusable."""
    if len(data) < NTP_PACKET_LEN:
        raise ReplyError("malformed", f"{len(data)} bytes, an NTP reply has at least 48")
    packet = ntplib.NTPPacket()
    try:
        packet.from_data(data)
    except ntplib.NTPException as exc:
        raise ReplyError("malformed", str(exc)) from exc
    reference, originate, receive, transmit = _TIMESTAMPS.unpack_from(data, 16)
    if packet.mode != MODE_SERVER:
        raise ReplyError("bad_mode", f"mode {packet.mode}, expected {MODE_SERVER} (server)")
    if originate != nonce:
        raise ReplyError("bogus_origin", "originate timestamp does not match our request")
    if packet.stratum == 0:
        raw = struct.pack("!I", packet.ref_id).decode("ascii", errors="replace")
        code = KissCode(raw) if raw in KissCode._value2member_map_ else KissCode.OTHER
        raise KissOfDeath(code, raw)
    if packet.stratum > MAX_STRATUM:
        raise ReplyError("unsynchronized", f"stratum {packet.stratum}")
    if packet.leap == LEAP_UNSYNCHRONIZED:
        raise ReplyError("unsynchronized", "leap indicator says the server is not synchronized")
    if transmit == 0 or receive == 0:
        raise ReplyError("malformed", "zero receive or transmit timestamp")
    if packet.precision > 0:
        raise ReplyError("malformed", f"precision 2^{packet.precision} s is over a second")
    if packet.root_delay / 2 + packet.root_dispersion > MAX_ROOT_DISTANCE_S:
        raise ReplyError(
            "root_distance",
            f"root distance {packet.root_delay / 2 + packet.root_dispersion:.3f} s exceeds "
            f"{MAX_ROOT_DISTANCE_S} s: the server is too far from its reference to be used",
        )
    receive_ns = ntp64_to_ns(receive, pivot_unix_ns)
    transmit_ns = ntp64_to_ns(transmit, pivot_unix_ns)
    if transmit_ns < receive_ns:
        raise ReplyError("malformed", "server transmit time precedes its receive time")
    return ServerReply(
        leap=packet.leap,
        version=packet.version,
        stratum=packet.stratum,
        poll_log2=struct.unpack_from("!b", data, 2)[0],  # signed; ntplib reads it unsigned
        precision_log2=packet.precision,
        root_delay_ns=short_to_ns(packet.root_delay),
        root_dispersion_ns=short_to_ns(packet.root_dispersion),
        ref_id=packet.ref_id,
        reference_ns=ntp64_to_ns(reference, pivot_unix_ns) if reference else 0,
        receive_ns=receive_ns,
        transmit_ns=transmit_ns,
    )


def offset_and_delay(t1_ns: int, t2_ns: int, t3_ns: int, t4_ns: int) -> tuple[int, int]:
    """NTP's on-wire formulas: offset = ((T2−T1)+(T3−T4))/2, delay = (T4−T1)−(T3−T2).

    T1 and T4 are the client's send and receive times, T2 and T3 the server's receive and send
    times. The offset is `reference − local`: positive when the local clock is behind.
    """
    offset = ((t2_ns - t1_ns) + (t3_ns - t4_ns)) // 2
    delay = (t4_ns - t1_ns) - (t3_ns - t2_ns)
    return offset, delay


@dataclasses.dataclass(frozen=True)
class ServerIdentity:
    """What a server says of itself in every reply."""

    stratum: int = 1
    ref_id: bytes = b"CTCK"
    precision_log2: int = -20
    root_delay_ns: int = 0
    root_dispersion_ns: int = 0
    leap: int = 0


def build_reply(
    request: bytes, receive_ns: int, transmit_ns: int, reference_ns: int, identity: ServerIdentity
) -> bytes:
    """A server-mode reply to a client request; raise ReplyError for requests not to answer.

    The request's transmit timestamp is copied verbatim into the originate field, as RFC 5905
    requires, so that clients can match the reply (whatever they put there).
    """
    if len(request) < NTP_PACKET_LEN:
        raise ReplyError("malformed", f"{len(request)} bytes, a request has at least 48")
    first = request[0]
    version = (first >> 3) & 0x7
    mode = first & 0x7
    if mode != MODE_CLIENT:
        raise ReplyError("bad_mode", f"mode {mode}: only client requests are answered")
    if not 1 <= version <= 4:
        raise ReplyError("bad_version", f"version {version}")
    packet = ntplib.NTPPacket(version=version, mode=MODE_SERVER)
    packet.leap = identity.leap
    packet.stratum = identity.stratum
    # Echo the client's poll byte verbatim. ntplib packs poll as an unsigned byte, so a signed
    # (negative) value would make it raise NTPException instead of building the reply.
    packet.poll = request[2]
    packet.precision = identity.precision_log2
    packet.root_delay = identity.root_delay_ns / 1e9
    packet.root_dispersion = identity.root_dispersion_ns / 1e9
    packet.ref_id = struct.unpack("!I", identity.ref_id.ljust(4, b"\0")[:4])[0]
    data = bytearray(packet.to_data())
    _TIMESTAMPS.pack_into(
        data,
        16,
        ns_to_ntp64(reference_ns),
        _TX_TIMESTAMP.unpack_from(request, _TX_OFFSET)[0],
        ns_to_ntp64(receive_ns),
        ns_to_ntp64(transmit_ns),
    )
    return bytes(data)
