"""The ClockBound segment: its bytes against ClockBound's PROTOCOL.md, the seqlock, the widened
bound, the writer's handling of the file, and the configuration that turns it on."""

from __future__ import annotations

import os
import struct
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chronotick.clockbound_segment import (
    SEGMENT_SIZE,
    ClockBoundRecord,
    ClockBoundWriter,
    coarse_monotonic_ns,
    decode,
    encode_body,
    encode_header,
    layout,
    next_generation,
    read_segment,
    record_for,
)
from chronotick.daemon.cli import load_config
from chronotick.daemon.config import ConfigError, build_config
from chronotick.model import NS_PER_S, ClockModel
from chronotick.status import ClockStatus
from tests.conftest import unavailable

S = NS_PER_S


def model(**changes: Any) -> ClockModel:
    fields: dict[str, Any] = {
        "as_of_ns": 1_700_000_000 * S,
        "offset_ns": -50_000_000,
        "drift_ppb": -100_000.0,
        "sigma_ns": 20_000.0,
        "sigma_cov_ns2_per_s": 0.0,
        "sigma_drift_ppb": 100.0,
        "wander_ns2_per_s": 0.0,
        "bound_ns": 150_000,
        "bound_rate_ppb": 5_300.0,
        "status": ClockStatus.SYNCHRONIZED,
    }
    fields.update(changes)
    return ClockModel(**fields)


def pypi_client() -> Any:
    try:
        import clockbound
    except ImportError:
        unavailable("the PyPI clockbound client is not installed (make venv installs it)")
    return clockbound


@pytest.fixture
def seg_path(tmp_path: Path) -> str:
    return str(tmp_path / "clockbound" / "shm0")


# -- the layout --------------------------------------------------------------------------------


def test_layout_is_protocol_md_version_2() -> None:
    # (offset, size) of each field as ClockBound's docs/PROTOCOL.md draws version 2
    protocol = [
        (0, 8, "magic"),
        (8, 4, "segment size"),
        (12, 2, "version"),
        (14, 2, "generation"),
        (16, 16, "as-of timestamp"),
        (32, 16, "void-after timestamp"),
        (48, 8, "bound"),
        (56, 8, "disruption marker"),
        (64, 4, "max drift"),
        (68, 4, "clock status"),
        (72, 1, "clock disruption support"),
    ]
    ours = layout()
    merged = {name: (off, size) for off, size, name in ours}
    # our table splits the u64 magic and the timespecs in two; join them back
    assert merged["magic_0"] == (0, 4) and merged["magic_1"] == (4, 4)
    assert merged["as_of_tv_sec"] == (16, 8) and merged["as_of_tv_nsec"] == (24, 8)
    assert merged["void_after_tv_sec"] == (32, 8) and merged["void_after_tv_nsec"] == (40, 8)
    joined = [(0, 8), (8, 4), (12, 2), (14, 2), (16, 16), (32, 16)] + [
        (off, size) for off, size, _ in ours[9:]
    ]
    assert joined == [(off, size) for off, size, _ in protocol]
    assert SEGMENT_SIZE == 80


def test_bytes_read_at_protocol_offsets(seg_path: str) -> None:
    """The file decoded by hand at PROTOCOL.md's offsets, not with this module's structs."""
    assert sys.byteorder == "little", "the literal bytes below are little-endian"
    writer = ClockBoundWriter(seg_path, 10 * S)
    record = ClockBoundRecord(
        as_of_ns=12_345 * S + 678_901_234,
        void_after_ns=12_355 * S + 678_901_234,
        bound_ns=50_150_373,
        max_drift_ppb=105_301,
        status=ClockStatus.FREE_RUNNING,
    )
    writer.write(record)
    raw = Path(seg_path).read_bytes()
    writer.close()
    assert len(raw) == 80
    assert raw[0:8] == bytes([0x4E, 0x5A, 0x4D, 0x41, 0x00, 0x02, 0x42, 0x43])
    assert struct.unpack_from("<I", raw, 8)[0] == 80
    assert struct.unpack_from("<H", raw, 12)[0] == 2
    generation = struct.unpack_from("<H", raw, 14)[0]
    assert generation and generation % 2 == 0
    assert struct.unpack_from("<qq", raw, 16) == (12_345, 678_901_234)
    assert struct.unpack_from("<qq", raw, 32) == (12_355, 678_901_234)
    assert struct.unpack_from("<q", raw, 48)[0] == 50_150_373
    assert struct.unpack_from("<Q", raw, 56)[0] == 0
    assert struct.unpack_from("<I", raw, 64)[0] == 105_301
    assert struct.unpack_from("<i", raw, 68)[0] == 2
    assert raw[72] == 0
    assert raw[73:80] == bytes(7)
    assert decode(raw) == (generation, record)


def test_decode_refuses_what_is_not_a_version_2_segment() -> None:
    body = encode_body(ClockBoundRecord(S, 2 * S, 0, 0, ClockStatus.UNKNOWN))
    assert decode(encode_header(2) + body)[0] == 2
    with pytest.raises(ValueError, match="magic"):
        decode(b"CHRNTICK" + encode_header(2)[8:] + body)
    with pytest.raises(ValueError, match="version 1"):
        decode(encode_header(2)[:12] + struct.pack("=HH", 1, 2) + body)
    with pytest.raises(ValueError, match="80"):
        decode(encode_header(2))


# -- the generation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "expected"),
    [
        (0, (1, 2)),  # a fresh segment
        (2, (3, 4)),
        (0xFFFC, (0xFFFD, 0xFFFE)),
        (0xFFFE, (0xFFFF, 2)),  # wraps past 0, which means "never written"
        (7, (7, 8)),  # a writer died mid-write: the mark stays odd
        (0xFFFF, (0xFFFF, 2)),
    ],
)
def test_generation_rules(current: int, expected: tuple[int, int]) -> None:
    assert next_generation(current) == expected


def test_generation_wraps_in_place_and_an_attached_reader_follows(seg_path: str) -> None:
    clockbound = pypi_client()
    os.makedirs(os.path.dirname(seg_path))
    now = coarse_monotonic_ns()
    old = ClockBoundRecord(now, now + 10 * S, 1_000, 50_000, ClockStatus.SYNCHRONIZED)
    Path(seg_path).write_bytes(encode_header(0xFFFC) + encode_body(old))
    inode = os.stat(seg_path).st_ino
    client = clockbound.Clockbound(seg_path)  # attached before the writer starts
    assert client.snapshot().bound == 1_000

    writer = ClockBoundWriter(seg_path, 10 * S)
    assert os.stat(seg_path).st_ino == inode, "a valid segment is continued in place"
    seen = []
    for bound in (2_000, 3_000, 4_000):
        writer.write(ClockBoundRecord(now, now + 10 * S, bound, 50_000, ClockStatus.SYNCHRONIZED))
        snap = client.snapshot()
        seen.append((snap.generation, snap.bound))
    assert seen == [(0xFFFE, 2_000), (2, 3_000), (4, 4_000)]
    writer.close()
    assert read_segment(seg_path)[0] == 6
    client.close()


def test_a_write_left_half_done_is_finished_by_the_next(seg_path: str) -> None:
    os.makedirs(os.path.dirname(seg_path))
    now = coarse_monotonic_ns()
    torn = ClockBoundRecord(now, now + S, 7, 7, ClockStatus.SYNCHRONIZED)
    Path(seg_path).write_bytes(encode_header(7) + encode_body(torn))
    writer = ClockBoundWriter(seg_path, 10 * S)
    writer.write(ClockBoundRecord(now, now + S, 9, 9, ClockStatus.SYNCHRONIZED))
    assert read_segment(seg_path) == (
        8,
        ClockBoundRecord(now, now + S, 9, 9, ClockStatus.SYNCHRONIZED),
    )
    writer.close()


# -- what is written ---------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    offset_ns=st.integers(-(10**12), 10**12),
    drift_ppb=st.floats(-500_000.0, 500_000.0),
    bound_ns=st.integers(0, 10**9),
    rate_ppb=st.floats(0.0, 200_000.0),
    gap_ns=st.integers(0, 10_000_000),
    fine_after_coarse_ns=st.integers(0, 10_000_000),
    reader_age_ns=st.integers(0, 3600 * S),
)
def test_the_interval_around_the_raw_clock_holds_wherever_ours_does(
    offset_ns: int,
    drift_ppb: float,
    bound_ns: int,
    rate_ppb: float,
    gap_ns: int,
    fine_after_coarse_ns: int,
    reader_age_ns: int,
) -> None:
    """For every reader instant after `as_of`, ClockBound's [raw − B, raw + B] contains our
    interval [raw + offset − bound, raw + offset + bound] (the linear model, continued before
    the model's instant too: the reader may read between the coarse and the realtime reading).
    """
    fine_after_coarse_ns = min(fine_after_coarse_ns, gap_ns)  # the realtime read lies in the gap
    m = model(offset_ns=offset_ns, drift_ppb=drift_ppb, bound_ns=bound_ns, bound_rate_ppb=rate_ppb)
    as_of = 5_000 * S
    record = record_for(m, m.as_of_ns, as_of, gap_ns, 10 * S)
    assert record.status is ClockStatus.SYNCHRONIZED
    reader_mono = as_of + reader_age_ns
    # the realtime clock advances with the monotonic one
    dt = Fraction(reader_mono - (as_of + fine_after_coarse_ns), S)
    ours = abs(offset_ns + Fraction(drift_ppb) * dt) + bound_ns + Fraction(rate_ppb) * max(dt, 0)
    assert record.bound_at(reader_mono) >= ours


def test_bound_is_offset_plus_bound_and_grows_at_drift_plus_rate() -> None:
    m = model()
    record = record_for(m, m.as_of_ns + 2 * S, as_of_ns=7 * S, read_gap_ns=0, void_after_ns=3 * S)
    offset_then = -50_000_000 - 200_000  # -100 ppm over 2 s
    bound_then = 150_000 + 10_600  # 5.3 ppm over 2 s
    assert record.bound_ns - (abs(offset_then) + bound_then) in range(0, 4)
    assert record.max_drift_ppb == 105_300
    assert (record.as_of_ns, record.void_after_ns) == (7 * S, 10 * S)
    assert record.status is ClockStatus.SYNCHRONIZED
    assert not record.disruption_support and record.disruption_marker == 0
    # a positive offset is widened alike
    flipped = record_for(model(offset_ns=50_000_000, drift_ppb=100_000.0), m.as_of_ns, 0, 0, S)
    assert flipped.bound_ns - 50_150_000 in range(0, 4)


@pytest.mark.parametrize("status", list(ClockStatus))
def test_statuses_map_and_only_intervals_carry_a_bound(status: ClockStatus) -> None:
    m = model(status=status) if status.gives_interval else ClockModel.unknown(0, status)
    record = record_for(m, m.as_of_ns, S, 0, S)
    assert int(record.status) == {"UNKNOWN": 0, "SYNCHRONIZED": 1}.get(
        status.name, {"FREE_RUNNING": 2, "DISRUPTED": 3}.get(status.name)
    )
    assert decode(encode_header(2) + encode_body(record))[1].status is status
    if not status.gives_interval:
        assert (record.bound_ns, record.max_drift_ppb) == (0, 0)


def test_a_rate_clockbound_calls_malformed_is_published_as_unknown() -> None:
    record = record_for(model(bound_rate_ppb=2e9), 1_700_000_000 * S, S, 0, S)
    assert record.status is ClockStatus.UNKNOWN and record.bound_ns == 0
    for bad in ({"drift_ppb": float("nan")}, {"bound_rate_ppb": float("inf")}):
        record = record_for(model(**bad), 1_700_000_000 * S, S, 0, S)
        assert record.status is ClockStatus.UNKNOWN


# -- the PyPI client on the writer -------------------------------------------------------------


def test_pypi_client_reads_the_writer_and_stops_at_close_and_void_after(seg_path: str) -> None:
    clockbound = pypi_client()
    writer = ClockBoundWriter(seg_path, S // 5)
    assert os.stat(seg_path).st_mode & 0o777 == 0o644
    client = clockbound.Clockbound(seg_path)
    with pytest.raises(clockbound.errors.ClockStatusError):
        client.now()  # a new segment says UNKNOWN until the first model
    m = model(as_of_ns=time.time_ns())
    coarse = coarse_monotonic_ns()
    record = writer.publish(m, m.as_of_ns, coarse, time.monotonic_ns() - coarse)
    before = time.time_ns()
    bound = client.now()
    after = time.time_ns()
    # centred on the raw clock read inside now(), B wide, grown by max_drift for a moment only
    assert before <= (bound.earliest + bound.latest) // 2 <= after
    assert record.bound_ns <= bound.error_ns < record.bound_ns + 1_000_000
    time.sleep(0.3)  # past void_after, no new write: the daemon hung or died
    with pytest.raises(clockbound.errors.TimeVoidedError):
        client.now()
    fresh = writer.publish(m, m.as_of_ns, coarse_monotonic_ns(), 0)  # the daemon is back
    assert client.now().error_ns >= fresh.bound_ns
    writer.close()
    with pytest.raises(clockbound.errors.ClockStatusError):
        client.now()
    assert os.path.exists(seg_path), "the file stays for clients that mapped it"
    client.close()


# -- the file ----------------------------------------------------------------------------------


def test_one_writer_per_path(seg_path: str) -> None:
    writer = ClockBoundWriter(seg_path, S)
    with pytest.raises(RuntimeError, match="another chronotick daemon"):
        ClockBoundWriter(seg_path, S)
    writer.close()
    ClockBoundWriter(seg_path, S).close()  # free again once closed


def test_a_foreign_file_is_refused_and_left_alone(seg_path: str) -> None:
    os.makedirs(os.path.dirname(seg_path))
    Path(seg_path).write_text("important\n")
    with pytest.raises(RuntimeError, match="not a ClockBound segment"):
        ClockBoundWriter(seg_path, S)
    assert Path(seg_path).read_text() == "important\n"
    assert os.listdir(os.path.dirname(seg_path)) == ["shm0"], "no temporary file left"


@pytest.mark.parametrize("content", [b"", encode_header(2)[:12] + struct.pack("=HH", 1, 4)])
def test_an_empty_file_or_another_clockbound_layout_is_replaced(
    seg_path: str, content: bytes
) -> None:
    os.makedirs(os.path.dirname(seg_path))
    Path(seg_path).write_bytes(content + bytes(56 if content else 0))
    writer = ClockBoundWriter(seg_path, S)
    generation, record = read_segment(seg_path)
    assert generation == 2 and record.status is ClockStatus.UNKNOWN
    writer.close()


def test_unusable_paths_say_why(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RuntimeError, match=f"cannot create the ClockBound directory {blocker}"):
        ClockBoundWriter(str(blocker / "shm0"), S)
    with pytest.raises(ValueError, match="absolute"):
        ClockBoundWriter("relative/shm0", S)


# -- configuration -----------------------------------------------------------------------------


def test_the_flag_and_the_key() -> None:
    assert build_config({}, {}).clockbound_path == ""
    assert load_config(["--clockbound-path", "/run/cb/shm0"]).clockbound_path == "/run/cb/shm0"
    assert build_config({"clockbound_path": "/var/run/clockbound/shm0"}, {}).clockbound_path
    for bad in ("shm0", "/var/run/clockbound/", "/a\0b"):
        with pytest.raises(ConfigError, match="clockbound_path"):
            build_config({"clockbound_path": bad}, {})
    with pytest.raises(ConfigError, match="simulated_clock"):
        build_config({"clockbound_path": "/x/shm0", "simulated_clock": {"offset_ms": 5.0}}, {})
