"""The shared-memory segment: docs/shm-layout.md against chronotick/shm.py, writer and reader.

Every test uses its own segment name and removes what it created under /dev/shm (the segment,
the writer's `.NAME.lock` and any `.NAME.PID.tmp` left behind), even when it fails.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import math
import os
import re
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chronotick.client import ChronoTickClient
from chronotick.clocks import ClockStep, SimulatedClock, SimulatedClockParams
from chronotick.model import NS_PER_S, ClockModel
from chronotick.shm import (
    CLOCK_PARAMS_OFFSET,
    CLOCK_PARAMS_SIZE,
    CLOCK_REALTIME_KIND,
    CLOCK_SIMULATED_KIND,
    FLAG_CLOSED,
    FLAGS_OFFSET,
    GENERATION,
    HEADER,
    HOT,
    HOT_OFFSET,
    INFO_OFFSET,
    LAYOUT_VERSION,
    MAGIC,
    SEGMENT_SIZE,
    SHM_DIR,
    TAIL_OFFSET,
    IncompatibleLayoutError,
    NoDaemonError,
    SegmentReader,
    SegmentWriter,
    StaleDataError,
    default_name,
    describe_layout,
    segment_path,
)
from chronotick.status import ClockStatus

MS = 1_000_000
S = NS_PER_S
DOC = Path(__file__).resolve().parents[2] / "docs" / "shm-layout.md"

# --------------------------------------------------------------------------------------------
# helpers (names and cleanup: tests/helpers/segments.py; `seg_name`: tests/conftest.py)


def close_leaked_fds(name: str) -> None:
    """Close descriptors of this process that still point at files of segment `name`."""
    for fd_name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd_name}")
        except OSError:
            continue
        if target.startswith(SHM_DIR + "/") and name in target:
            with contextlib.suppress(OSError):
                os.close(int(fd_name))


def clock_model(as_of_ns: int, **changes: Any) -> ClockModel:
    """A SYNCHRONIZED model in which every field has a distinct, unround value."""
    model = ClockModel(
        as_of_ns=as_of_ns,
        offset_ns=-12_345_678,
        drift_ppb=123.456,
        sigma_ns=789.25,
        sigma_cov_ns2_per_s=-3.5,
        sigma_drift_ppb=0.75,
        wander_ns2_per_s=42.125,
        bound_ns=987_654,
        bound_rate_ppb=15_000.5,
        status=ClockStatus.SYNCHRONIZED,
        last_sample_ns=as_of_ns - 2_500_000_001,
        samples_used=77_777,
        source="ntp-b.example.org:123",
    )
    return dataclasses.replace(model, **changes)


@pytest.fixture
def make_writer(seg_name: str) -> Iterator[Callable[..., SegmentWriter]]:
    """SegmentWriter factory on `seg_name`; closes (and unlinks) every writer it made."""
    made: list[SegmentWriter] = []

    def make(**kwargs: Any) -> SegmentWriter:
        writer = SegmentWriter(seg_name, **kwargs)
        made.append(writer)
        return writer

    try:
        yield make
    finally:
        for writer in reversed(made):
            writer.close()


@pytest.fixture
def reader(seg_name: str) -> Iterator[SegmentReader]:
    r = SegmentReader(seg_name)
    try:
        yield r
    finally:
        r.close()


def write_file(name: str, data: bytes) -> None:
    with open(os.path.join(SHM_DIR, name), "wb") as f:
        f.write(data)


# --------------------------------------------------------------------------------------------
# docs/shm-layout.md is the contract

DOC_TYPES = {"u16": "H", "u32": "I", "u64": "Q", "i64": "q", "f64": "d"}
ROW = re.compile(r"^\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\w+)\s*\|\s*`(\w+)`\s*\|(.*)\|\s*$")


@dataclasses.dataclass(frozen=True)
class DocRow:
    offset: int
    size: int
    code: str
    field: str
    meaning: str


def doc_rows() -> list[DocRow]:
    rows = []
    for line in DOC.read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if match is None:
            continue
        offset, size, doc_type, field, meaning = match.groups()
        code = f"{size}s" if doc_type == "bytes" else DOC_TYPES[doc_type]
        rows.append(DocRow(int(offset), int(size), code, field, meaning.strip()))
    return rows


def test_doc_table_equals_describe_layout() -> None:
    """Every field of the doc is a field of the module, same offset, size and type, in order.

    Rows named `reserved` are padding: the module has no field there.
    """
    rows = [r for r in doc_rows() if not r.field.startswith("reserved")]
    assert len(rows) == len(describe_layout()) == 32
    assert [(r.offset, r.size, r.code, r.field) for r in rows] == describe_layout()


def test_doc_table_covers_the_segment_byte_by_byte() -> None:
    """Sizes agree with the types, fields are naturally aligned and tile bytes 0-511."""
    rows = doc_rows()
    end = 0
    for row in rows:
        assert struct.calcsize("<" + row.code) == row.size, row
        if not row.code.endswith("s"):
            assert row.offset % row.size == 0, f"{row.field} is not naturally aligned"
        assert row.offset == end, f"{row.field}: gap or overlap at byte {end}"
        end = row.offset + row.size
    assert end == SEGMENT_SIZE
    by_field = {r.field: r for r in rows}
    assert by_field["clock_params_json"].offset == CLOCK_PARAMS_OFFSET == 256
    module_end = max(offset + size for offset, size, _, field in describe_layout()[:-1])
    assert module_end == 248  # then `reserved` up to clock_params_json


def test_doc_constants_match_the_module() -> None:
    text = DOC.read_text(encoding="utf-8")
    size = re.search(r"The segment is (\d+) bytes", text)
    assert size is not None and int(size.group(1)) == SEGMENT_SIZE == 512
    assert re.search(r"\(version (\d+)\)", text.splitlines()[0]) is not None
    assert f"(version {LAYOUT_VERSION})" in text.splitlines()[0]
    by_field = {r.field: r for r in doc_rows()}
    assert f"`{MAGIC.decode('ascii')}`" in by_field["magic"].meaning
    assert by_field["layout_version"].meaning.startswith(f"`{LAYOUT_VERSION}`")
    assert by_field["hot_offset"].meaning.startswith(f"`{HOT_OFFSET}`")
    assert by_field["generation"].offset == HOT_OFFSET
    assert by_field["segment_size"].meaning.startswith(f"`{SEGMENT_SIZE}`")
    assert by_field["generation_tail"].offset == TAIL_OFFSET
    assert by_field["flags"].offset == FLAGS_OFFSET
    assert by_field["sigma_ns"].offset == INFO_OFFSET == HOT_OFFSET + HOT.size
    assert by_field["clock_params_json"].size == CLOCK_PARAMS_SIZE
    # the hot one-pass read covers bytes 16-95, generation first and its tail last
    assert "bytes 16-95" in text
    assert HOT_OFFSET == 16 and TAIL_OFFSET + GENERATION.size == 96
    for status in ClockStatus:
        assert f"{status.value} {status.name}" in by_field["status"].meaning
    assert "bit 0" in by_field["flags"].meaning and FLAG_CLOSED == 1


def test_a_reader_written_from_the_doc_alone_decodes_a_live_segment(
    seg_name: str, make_writer: Callable[..., SegmentWriter]
) -> None:
    writer = make_writer(node_id="node-7", publish_interval_ns=250 * MS, trusted_for_ns=3 * S)
    model = clock_model(1_700_000_000_123_456_789)
    writer.publish(model, 64 * S, 5, 3, monotonic_ns=5_000_000_123)
    with open(os.path.join(SHM_DIR, seg_name), "rb") as f:
        raw = f.read()
    assert len(raw) == SEGMENT_SIZE
    v = {r.field: struct.unpack_from("<" + r.code, raw, r.offset)[0] for r in doc_rows()}
    assert v["magic"] == b"CHRNTICK"
    assert (v["layout_version"], v["hot_offset"], v["segment_size"]) == (1, 16, 512)
    assert v["generation"] == v["generation_tail"] and v["generation"] % 2 == 0
    assert v["generation"] > 0
    assert v["as_of_realtime_ns"] == model.as_of_ns
    assert v["as_of_monotonic_ns"] == 5_000_000_123
    assert v["void_after_monotonic_ns"] == 5_000_000_123 + writer.void_after_ns
    assert v["offset_ns"] == model.offset_ns
    assert v["drift_ppb"] == model.drift_ppb
    assert v["bound_ns"] == model.bound_ns
    assert v["bound_rate_ppb"] == model.bound_rate_ppb
    assert v["status"] == 1 and v["flags"] == 0
    assert v["sigma_ns"] == model.sigma_ns
    assert v["sigma_cov_ns2_per_s"] == model.sigma_cov_ns2_per_s
    assert v["sigma_drift_ppb"] == model.sigma_drift_ppb
    assert v["wander_ns2_per_s"] == model.wander_ns2_per_s
    assert v["last_sample_realtime_ns"] == model.last_sample_ns
    assert v["samples_used"] == model.samples_used
    assert (v["sources_configured"], v["sources_reachable"]) == (5, 3)
    assert v["poll_interval_ns"] == 64 * S
    assert v["publish_interval_ns"] == 250 * MS
    assert v["trusted_for_ns"] == 3 * S
    assert v["writer_pid"] == os.getpid()
    assert v["clock_kind"] == 0
    assert v["source"].rstrip(b"\0").decode("utf-8") == model.source
    assert v["node_id"].rstrip(b"\0").decode("utf-8") == "node-7"
    assert v["clock_params_json"] == b"\0" * 256
    assert all(v[r.field] == bytes(r.size) for r in doc_rows() if r.field.startswith("reserved"))


# --------------------------------------------------------------------------------------------
# round trips


def test_round_trip_of_every_model_and_daemon_field(
    seg_name: str, make_writer: Callable[..., SegmentWriter], reader: SegmentReader
) -> None:
    before = time.time_ns()
    writer = make_writer(
        node_id="node-ä",
        publish_interval_ns=250 * MS + 1,
        trusted_for_ns=3 * S + 7,
        void_after_ns=20 * S + 11,
    )
    after = time.time_ns()
    model = clock_model(1_700_000_000_123_456_789, status=ClockStatus.FREE_RUNNING)
    mono = time.monotonic_ns() - 3 * MS
    writer.publish(model, 64 * S + 3, 9, 4, monotonic_ns=mono)

    snap = reader.snapshot()
    assert snap.model == model
    assert snap.as_of_monotonic_ns == mono
    assert snap.void_after_monotonic_ns == mono + 20 * S + 11
    assert snap.flags == 0
    info = snap.info
    assert info.node_id == "node-ä"
    assert info.pid == os.getpid()
    assert before <= info.started_ns <= after
    assert info.publish_interval_ns == 250 * MS + 1
    assert info.trusted_for_ns == 3 * S + 7
    assert info.poll_interval_ns == 64 * S + 3
    assert (info.sources_configured, info.sources_reachable) == (9, 4)
    assert info.clock_kind == CLOCK_REALTIME_KIND
    assert info.clock_params is None
    assert reader.clock_params is None

    # a second record replaces every field of the first
    model2 = clock_model(
        1_700_000_001_000_000_003,
        offset_ns=555,
        drift_ppb=-0.5,
        sigma_ns=1.0,
        sigma_cov_ns2_per_s=2.0,
        sigma_drift_ppb=3.0,
        wander_ns2_per_s=4.0,
        bound_ns=6,
        bound_rate_ppb=7.0,
        last_sample_ns=8,
        samples_used=2**32 - 1,
        source="x",
    )
    writer.publish(model2, 1, 0xFFFF, 70_000, monotonic_ns=mono + 1)
    snap2 = reader.snapshot()
    assert snap2.model == model2
    assert snap2.as_of_monotonic_ns == mono + 1
    assert (snap2.info.sources_configured, snap2.info.sources_reachable) == (0xFFFF, 0xFFFF)
    assert snap2.info.poll_interval_ns == 1

    # the hot one-pass read agrees with the snapshot
    g, as_of, as_of_mono, void_after, offset, drift, bound, rate, status, flags, tail = (
        reader.read_hot()
    )
    assert g == tail and g % 2 == 0 and g > 0
    assert (as_of, as_of_mono, void_after) == (model2.as_of_ns, mono + 1, mono + 1 + 20 * S + 11)
    assert (offset, drift, bound, rate) == (555, -0.5, 6, 7.0)
    assert (status, flags) == (ClockStatus.SYNCHRONIZED, 0)


@pytest.mark.parametrize("status", [ClockStatus.UNKNOWN, ClockStatus.DISRUPTED])
def test_a_status_without_interval_publishes_no_bound_and_infinite_sigma(
    make_writer: Callable[..., SegmentWriter], reader: SegmentReader, status: ClockStatus
) -> None:
    writer = make_writer()
    writer.publish(clock_model(time.time_ns(), status=status), 0, 0, 0)
    snap = reader.snapshot()
    assert snap.model.status is status
    assert snap.model.bound_ns == 0
    assert snap.model.sigma_ns == math.inf
    assert snap.model.offset_ns == -12_345_678  # the rest is published as given


def test_text_fields_are_truncated_to_32_bytes(
    make_writer: Callable[..., SegmentWriter], reader: SegmentReader
) -> None:
    writer = make_writer(node_id="n" * 32)
    writer.publish(clock_model(time.time_ns(), source="s" * 40), 0, 0, 0)
    snap = reader.snapshot()
    assert snap.model.source == "s" * 32
    assert snap.info.node_id == "n" * 32


def test_text_truncation_keeps_valid_utf8(
    seg_name: str, make_writer: Callable[..., SegmentWriter], reader: SegmentReader
) -> None:
    """BUG: the writer cuts UTF-8 text at byte 32, possibly inside a character.

    The doc promises "UTF-8, NUL padded"; a strict decoder in another language fails, and the
    Python reader shows U+FFFD. Expected: the longest prefix of whole characters that fits.
    """
    writer = make_writer(node_id="a" + "é" * 20)
    writer.publish(clock_model(time.time_ns(), source="b" + "ü" * 20), 0, 0, 0)
    snap = reader.snapshot()
    with open(os.path.join(SHM_DIR, seg_name), "rb") as f:
        raw = f.read()
    raw[184:216].rstrip(b"\0").decode("utf-8")  # strict: raises on a cut character
    raw[216:248].rstrip(b"\0").decode("utf-8")
    assert snap.model.source == "b" + "ü" * 15
    assert snap.info.node_id == "a" + "é" * 15


def test_simulated_clock_params_round_trip(
    seg_name: str, make_writer: Callable[..., SegmentWriter], reader: SegmentReader
) -> None:
    params = SimulatedClockParams(
        offset_ns=-1_234_567_890,
        drift_ppm=37.5,
        epoch_ns=time.time_ns() - 3600 * S,
        wander_ppm_per_sqrt_s=0.0,
        seed=11,
        steps=(ClockStep(at_s=1800.0, step_ns=5 * MS), ClockStep(at_s=1e9, step_ns=-1)),
    )
    sim = SimulatedClock(params)
    writer = make_writer(clock_params=params)
    writer.publish(clock_model(sim.now_ns()), 0, 0, 0)

    with open(os.path.join(SHM_DIR, seg_name), "rb") as f:
        raw = f.read()
    stored = raw[CLOCK_PARAMS_OFFSET:].rstrip(b"\0").decode("utf-8")
    assert SimulatedClockParams.from_json(stored) == params

    before = time.time_ns()
    snap = reader.snapshot()
    after = time.time_ns()
    assert reader.clock_params == params
    assert snap.info.clock_kind == CLOCK_SIMULATED_KIND
    assert snap.info.clock_params == params
    # the reader's base clock is the simulated one, ~1.2 s behind CLOCK_REALTIME
    assert sim.at(before) <= snap.realtime_ns <= sim.at(after)
    before = time.time_ns()
    value = reader.realtime_ns()
    after = time.time_ns()
    assert sim.at(before) <= value <= sim.at(after)
    expected_shift = -1_234_567_890 + 37.5e-6 * 3600 * S + 5 * MS
    assert abs((value - before) - expected_shift) < 50 * MS


def test_reattaching_to_a_realtime_segment_forgets_the_simulated_clock(
    seg_name: str, reader: SegmentReader
) -> None:
    params = SimulatedClockParams(offset_ns=7 * S, epoch_ns=time.time_ns())
    first = SegmentWriter(seg_name, clock_params=params)
    try:
        first.publish(clock_model(SimulatedClock(params).now_ns()), 0, 0, 0)
        assert reader.snapshot().info.clock_params == params
    finally:
        first.close()
    second = SegmentWriter(seg_name)
    try:
        second.publish(clock_model(time.time_ns()), 0, 0, 0)
        snap = reader.snapshot()
        assert snap.info.clock_kind == CLOCK_REALTIME_KIND
        assert reader.clock_params is None
        assert abs(reader.realtime_ns() - time.time_ns()) < S
    finally:
        second.close()


def test_clock_params_too_large_for_the_segment_are_refused(seg_name: str) -> None:
    big = SimulatedClockParams(steps=tuple(ClockStep(float(i), i) for i in range(40)))
    assert len(big.to_json()) > CLOCK_PARAMS_SIZE
    try:
        with pytest.raises(ValueError, match="do not fit"):
            SegmentWriter(seg_name, clock_params=big)
        assert not os.path.exists(segment_path(seg_name))
    finally:
        close_leaked_fds(seg_name)


def test_a_failed_writer_leaves_no_temporary_file_and_no_lock(seg_name: str) -> None:
    """BUG: SegmentWriter.__init__ leaks its temporary file and its lock when _create fails.

    `_create` raises ValueError (parameters too large) after it created `.NAME.PID.tmp` and
    after `_take_lock` took the flock, and nothing releases either: the file stays in /dev/shm
    and the process cannot start another writer on that name.
    """
    big = SimulatedClockParams(steps=tuple(ClockStep(float(i), i) for i in range(40)))
    try:
        with pytest.raises(ValueError):
            SegmentWriter(seg_name, clock_params=big)
        leftovers = glob.glob(os.path.join(SHM_DIR, f".{seg_name}.*.tmp"))
        assert leftovers == [], "temporary segment left in /dev/shm"
        writer = SegmentWriter(seg_name)  # RuntimeError while the leaked lock is held
        writer.close()
    finally:
        close_leaked_fds(seg_name)


# --------------------------------------------------------------------------------------------
# errors a reader reports


def test_reader_before_any_writer_says_no_daemon_and_names_the_path(seg_name: str) -> None:
    reader = SegmentReader(seg_name)
    with pytest.raises(NoDaemonError, match=re.escape(f"/dev/shm/{seg_name}")):
        reader.snapshot()
    with pytest.raises(NoDaemonError, match=re.escape(f"/dev/shm/{seg_name}")):
        reader.attach()
    assert not reader.attached


def test_wrong_magic_is_incompatible(seg_name: str) -> None:
    write_file(seg_name, HEADER.pack(b"NOTCHRNT", 1, 16, 512) + bytes(496))
    with pytest.raises(IncompatibleLayoutError, match="not a ChronoTick segment"):
        SegmentReader(seg_name).attach()


def test_other_layout_version_is_incompatible_and_says_which(seg_name: str) -> None:
    write_file(seg_name, HEADER.pack(MAGIC, 2, 16, 512) + bytes(496))
    with pytest.raises(IncompatibleLayoutError) as excinfo:
        SegmentReader(seg_name).snapshot()
    message = str(excinfo.value)
    assert "version 2" in message and f"version {LAYOUT_VERSION}" in message
    assert seg_name in message


def test_truncated_file_is_incompatible(seg_name: str) -> None:
    write_file(seg_name, b"CHR")
    with pytest.raises(IncompatibleLayoutError, match="3 bytes"):
        SegmentReader(seg_name).attach()


def test_right_header_but_short_file_is_incompatible(seg_name: str) -> None:
    write_file(seg_name, HEADER.pack(MAGIC, 1, 16, 512) + bytes(80))
    with pytest.raises(IncompatibleLayoutError):
        SegmentReader(seg_name).attach()


def test_incompatible_layout_is_reported_by_the_client(seg_name: str) -> None:
    write_file(seg_name, HEADER.pack(MAGIC, 2, 16, 512) + bytes(496))
    with ChronoTickClient(seg_name) as client:
        with pytest.raises(IncompatibleLayoutError):
            client.now()
        with pytest.raises(IncompatibleLayoutError):
            client.get_time()
        assert client.is_daemon_ready() is False


@pytest.mark.parametrize("name", ["", "a/b", "../x", ".hidden", "a b", "x" * 201])
def test_invalid_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="invalid shared-memory name"):
        SegmentReader(name)
    with pytest.raises(ValueError, match="invalid shared-memory name"):
        SegmentWriter(name)
    with pytest.raises(ValueError):
        segment_path(name)


def test_default_names() -> None:
    assert default_name() == "chronotick"
    assert default_name("n1") == "chronotick-n1"
    with pytest.raises(ValueError):
        default_name("a/b")


# --------------------------------------------------------------------------------------------
# one writer, its lifetime


def test_a_second_writer_on_the_same_name_is_refused(
    seg_name: str, make_writer: Callable[..., SegmentWriter]
) -> None:
    first = make_writer()
    with pytest.raises(RuntimeError, match=re.escape(repr(seg_name))):
        SegmentWriter(seg_name)
    assert os.path.exists(segment_path(seg_name))  # the refused writer touched nothing
    first.close()
    make_writer().publish(clock_model(time.time_ns()), 0, 0, 0)  # free again


def test_close_marks_the_record_closed_and_unlinks(
    seg_name: str, make_writer: Callable[..., SegmentWriter], reader: SegmentReader
) -> None:
    writer = make_writer()
    writer.publish(clock_model(time.time_ns()), 0, 0, 0)
    assert reader.snapshot().flags == 0
    writer.close()
    assert not os.path.exists(segment_path(seg_name))
    snap = reader.snapshot()  # the mapping outlives the name
    assert snap.flags & FLAG_CLOSED
    assert snap.model.status is ClockStatus.UNKNOWN
    assert snap.void_after_monotonic_ns == snap.as_of_monotonic_ns
    writer.close()  # idempotent
    with ChronoTickClient(seg_name) as client:
        with pytest.raises(NoDaemonError):
            client.get_time()


def test_close_without_unlink_keeps_a_closed_segment(
    seg_name: str, make_writer: Callable[..., SegmentWriter], reader: SegmentReader
) -> None:
    writer = make_writer()
    writer.publish(clock_model(time.time_ns()), 0, 0, 0)
    writer.close(unlink=False)
    assert os.path.exists(segment_path(seg_name))
    assert reader.snapshot().flags & FLAG_CLOSED
    with ChronoTickClient(seg_name) as client:
        with pytest.raises(NoDaemonError, match="shut down"):
            client.now()


def test_a_new_writer_after_an_in_process_crash_closes_the_old_record(
    seg_name: str, reader: SegmentReader
) -> None:
    """Simulated crash: the writer's lock is dropped, its mapping and file stay behind."""
    old = SegmentWriter(seg_name)
    new: SegmentWriter | None = None
    try:
        old.publish(clock_model(time.time_ns(), offset_ns=111), 0, 0, 0)
        assert reader.snapshot().model.offset_ns == 111
        old_inode = os.stat(segment_path(seg_name)).st_ino
        g_before = GENERATION.unpack_from(old._mm, HOT_OFFSET)[0]
        os.close(old._lock_fd)  # the crash: the kernel releases the flock

        new = SegmentWriter(seg_name)
        # the old mapping says closed, under a completed (even, newer) generation
        g_after = GENERATION.unpack_from(old._mm, HOT_OFFSET)[0]
        assert g_after > g_before and g_after % 2 == 0
        assert GENERATION.unpack_from(old._mm, TAIL_OFFSET)[0] == g_after
        assert struct.unpack_from("<I", old._mm, FLAGS_OFFSET)[0] & FLAG_CLOSED

        new.publish(clock_model(time.time_ns(), offset_ns=222), 0, 0, 0)
        new_inode = os.stat(segment_path(seg_name)).st_ino
        assert new_inode != old_inode
        assert reader.snapshot().model.offset_ns == 222  # re-attached by itself
        assert reader._inode == new_inode
    finally:
        old._mm.close()  # makes old.close() a no-op: its lock fd is already closed
        if new is not None:
            new.close()


def test_a_new_writer_after_a_crash_mid_write_completes_the_old_record(
    seg_name: str, reader: SegmentReader
) -> None:
    old = SegmentWriter(seg_name)
    new: SegmentWriter | None = None
    try:
        old.publish(clock_model(time.time_ns()), 0, 0, 0)
        reader.attach()
        g = GENERATION.unpack_from(old._mm, HOT_OFFSET)[0]
        GENERATION.pack_into(old._mm, HOT_OFFSET, g + 1)  # died inside publish()
        GENERATION.pack_into(old._mm, TAIL_OFFSET, g + 1)
        os.close(old._lock_fd)

        new = SegmentWriter(seg_name)
        g_after = GENERATION.unpack_from(old._mm, HOT_OFFSET)[0]
        assert g_after == g + 2
        assert struct.unpack_from("<I", old._mm, FLAGS_OFFSET)[0] & FLAG_CLOSED
        new.publish(clock_model(time.time_ns(), offset_ns=333), 0, 0, 0)
        assert reader.snapshot().model.offset_ns == 333
    finally:
        old._mm.close()
        if new is not None:
            new.close()


CRASHING_WRITER = """
import sys, time
from chronotick.model import ClockModel
from chronotick.shm import SegmentWriter
from chronotick.status import ClockStatus
writer = SegmentWriter(sys.argv[1])
model = ClockModel(time.time_ns(), 444, 0.0, 10.0, 0.0, 0.0, 0.0, 1000, 0.0,
                   ClockStatus.SYNCHRONIZED)
writer.publish(model, 0, 0, 0)
print("ready", flush=True)
time.sleep(60)
"""


def test_a_reader_moves_to_the_segment_of_a_daemon_restarted_after_sigkill(
    seg_name: str, reader: SegmentReader
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASHING_WRITER, seg_name],
        stdout=subprocess.PIPE,
        text=True,
    )
    new: SegmentWriter | None = None
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        snap = reader.snapshot()
        assert (snap.info.pid, snap.model.offset_ns) == (proc.pid, 444)
        old_mapping = reader._mm
        assert old_mapping is not None
        old_inode = os.stat(segment_path(seg_name)).st_ino

        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert reader.snapshot().info.pid == proc.pid  # a crash alone changes nothing yet

        new = SegmentWriter(seg_name)  # the lock died with the process
        assert struct.unpack_from("<I", old_mapping, FLAGS_OFFSET)[0] & FLAG_CLOSED
        new.publish(clock_model(time.time_ns(), offset_ns=555), 0, 0, 0)
        snap = reader.snapshot()
        assert (snap.info.pid, snap.model.offset_ns) == (os.getpid(), 555)
        assert reader._inode == os.stat(segment_path(seg_name)).st_ino != old_inode
        # the reader let go of the dead daemon's segment (it is unmapped once no thread holds
        # it any more: closing it under another thread's read would break that read)
        assert reader._mm is not old_mapping
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
        if new is not None:
            new.close()


# --------------------------------------------------------------------------------------------
# stale data and a stalled writer


def test_stale_after_void_after(make_writer: Callable[..., SegmentWriter], seg_name: str) -> None:
    writer = make_writer(void_after_ns=50 * MS)
    writer.publish(clock_model(time.time_ns(), offset_ns=0), 0, 0, 0)
    with ChronoTickClient(seg_name) as client:
        earliest, latest = client.now()
        assert earliest < latest
        assert client.is_daemon_ready() is True
        time.sleep(0.08)
        with pytest.raises(StaleDataError, match="stopped publishing"):
            client.now()
        with pytest.raises(StaleDataError):
            client.now_ns()
        with pytest.raises(StaleDataError):
            client.get_time()
        assert client.is_daemon_ready() is False
        writer.publish(clock_model(time.time_ns(), offset_ns=0), 0, 0, 0)  # publishing again
        assert client.is_daemon_ready() is True


STALL_S = 0.05


@pytest.mark.parametrize("path", ["read_hot", "snapshot"])
def test_a_writer_descheduled_mid_write_does_not_fail_readers(
    make_writer: Callable[..., SegmentWriter], reader: SegmentReader, path: str
) -> None:
    """BUG: readers give up after 10 000 spins (2-5 ms) when a write is in progress.

    A writer preempted between `generation := g+1` and `generation := g+2` (a busy host, a
    CPU-throttled container) stalls for milliseconds to tens of milliseconds; read_hot() and
    snapshot() then raise StaleDataError "the writer never finished a record". Expected: wait
    (bounded by time, not by a spin count) and return the record the writer finishes.
    """
    writer = make_writer()
    writer.publish(clock_model(time.time_ns(), offset_ns=1), 0, 0, 0)
    reader.attach()
    g = writer._generation
    mm = writer._mm
    GENERATION.pack_into(mm, HOT_OFFSET, g + 1)
    GENERATION.pack_into(mm, TAIL_OFFSET, g + 1)

    def finish() -> None:
        time.sleep(STALL_S)
        GENERATION.pack_into(mm, TAIL_OFFSET, g + 2)
        GENERATION.pack_into(mm, HOT_OFFSET, g + 2)

    thread = threading.Thread(target=finish)
    thread.start()
    try:
        if path == "read_hot":
            assert reader.read_hot()[0] == g + 2
        else:
            assert reader.snapshot().model.offset_ns == 1
    finally:
        thread.join()
        writer._generation = g + 2
