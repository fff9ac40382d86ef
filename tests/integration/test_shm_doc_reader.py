"""A shared-memory reader written from docs/shm-layout.md alone, checked against the real thing.

The page claims to be the whole contract ("a reader written from it alone, in any language, must
work"). The reader below was written from that page only: the field table, the two ways of
reading a consistent record, and the rules under "Using a record". It does not import or copy
anything from chronotick/shm.py or chronotick/client.py; those are used only as the writer that
creates a segment and as the official reader the numbers are compared with.

Tests that fail here are places where the page and the code disagree or where the page is not
enough to write a reader; each says so in its docstring and its failure message.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import mmap
import multiprocessing
import os
import struct
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from chronotick.client import ChronoTickClient
from chronotick.model import ClockModel
from chronotick.shm import NoDaemonError, SegmentWriter, StaleDataError
from chronotick.status import ClockStatus

pytestmark = pytest.mark.integration

SHM_DIR = "/dev/shm"
MS = 1_000_000
S = 1_000_000_000

# -- the reader, from docs/shm-layout.md only ---------------------------------------------------

MAGIC = b"CHRNTICK"
LAYOUT_VERSION = 1
SEGMENT_SIZE = 512
#: "The writer of a record does ...": generation at 16, generation_tail at 88.
GENERATION_OFFSET = 16
TAIL_OFFSET = 88
#: "Whole record (any field) ... copy bytes 16-255"
RECORD_START, RECORD_END = 16, 256
#: "Hot fields in one pass (bytes 16-95, what now() needs)"
HOT_START, HOT_END = 16, 96

UNKNOWN, SYNCHRONIZED, FREE_RUNNING, DISRUPTED = 0, 1, 2, 3
FLAG_SHUT_DOWN = 1  # "bit 0: the daemon shut down"

#: The page's "Fields" table: (offset, struct code, name). Little-endian throughout.
HEADER_FIELDS = (
    (0, "8s", "magic"),
    (8, "H", "layout_version"),
    (10, "H", "hot_offset"),
    (12, "I", "segment_size"),
)
RECORD_FIELDS = (
    (16, "Q", "generation"),
    (24, "q", "as_of_realtime_ns"),
    (32, "q", "as_of_monotonic_ns"),
    (40, "q", "void_after_monotonic_ns"),
    (48, "q", "offset_ns"),
    (56, "d", "drift_ppb"),
    (64, "q", "bound_ns"),
    (72, "d", "bound_rate_ppb"),
    (80, "I", "status"),
    (84, "I", "flags"),
    (88, "Q", "generation_tail"),
    (96, "d", "sigma_ns"),
    (104, "d", "sigma_cov_ns2_per_s"),
    (112, "d", "sigma_drift_ppb"),
    (120, "d", "wander_ns2_per_s"),
    (128, "q", "last_sample_realtime_ns"),
    (136, "I", "samples_used"),
    (140, "H", "sources_configured"),
    (142, "H", "sources_reachable"),
    (144, "q", "poll_interval_ns"),
    (152, "q", "publish_interval_ns"),
    (160, "q", "trusted_for_ns"),
    (168, "q", "daemon_started_realtime_ns"),
    (176, "I", "writer_pid"),
    (180, "I", "clock_kind"),
    (184, "32s", "source"),
    (216, "32s", "node_id"),
)
HOT_FIELDS = tuple(f for f in RECORD_FIELDS if f[0] < HOT_END)
CLOCK_PARAMS_FIELD = (256, "256s", "clock_params_json")


def _check_table() -> None:
    """The table as transcribed is contiguous, naturally aligned and inside its byte ranges."""
    position = 0
    for offset, code, _ in (*HEADER_FIELDS, *RECORD_FIELDS):
        size = struct.calcsize("<" + code)
        assert offset >= position, offset
        if not code.endswith("s"):
            assert offset % size == 0, offset
        position = offset + size
    assert position <= RECORD_END
    assert sum(struct.calcsize("<" + c) for o, c, _ in HOT_FIELDS) == HOT_END - HOT_START


_check_table()


class DocReaderError(Exception):
    pass


class IncompatibleSegment(DocReaderError):
    """magic, layout_version or size differ."""


class NoConsistentRecord(DocReaderError):
    """No consistent copy within the retry budget (or nothing ever written: generation 0)."""


class DaemonShutDown(DocReaderError):
    """flags bit 0: the daemon shut down."""


class StaleRecord(DocReaderError):
    """CLOCK_MONOTONIC is past void_after_monotonic_ns."""


class DocInsufficient(DocReaderError):
    """The page does not say enough to do this."""


@dataclasses.dataclass(frozen=True)
class Record:
    generation: int
    as_of_realtime_ns: int
    as_of_monotonic_ns: int
    void_after_monotonic_ns: int
    offset_ns: int
    drift_ppb: float
    bound_ns: int
    bound_rate_ppb: float
    status: int
    flags: int
    generation_tail: int
    sigma_ns: float
    sigma_cov_ns2_per_s: float
    sigma_drift_ppb: float
    wander_ns2_per_s: float
    last_sample_realtime_ns: int
    samples_used: int
    sources_configured: int
    sources_reachable: int
    poll_interval_ns: int
    publish_interval_ns: int
    trusted_for_ns: int
    daemon_started_realtime_ns: int
    writer_pid: int
    clock_kind: int
    source: str
    node_id: str


@dataclasses.dataclass(frozen=True)
class HotRecord:
    generation: int
    as_of_realtime_ns: int
    as_of_monotonic_ns: int
    void_after_monotonic_ns: int
    offset_ns: int
    drift_ppb: float
    bound_ns: int
    bound_rate_ppb: float
    status: int
    flags: int
    generation_tail: int


def _nul_padded_utf8(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8")


def _decode(fields: tuple[tuple[int, str, str], ...], raw: bytes, base: int) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for offset, code, name in fields:
        (value,) = struct.unpack_from("<" + code, raw, offset - base)
        values[name] = _nul_padded_utf8(value) if code.endswith("s") else value
    return values


def _consistent(generation: int) -> bool:
    return generation % 2 == 0 and generation != 0


@dataclasses.dataclass(frozen=True)
class DocTime:
    """What "Using a record" says a read gives; corrected/bound are None without an interval."""

    status: int
    #: t + offset_ns + drift term, the drift term truncated toward zero (as the page says)
    corrected_ns: int | None
    bound_ns: int | None
    sigma_ns: float
    t_ns: int


def evaluate(record: Record | HotRecord, t_ns: int, m_ns: int, trusted_for_ns: int) -> DocTime:
    """The rules of "Using a record", in the page's order, at base-clock t and monotonic m."""
    if record.flags & FLAG_SHUT_DOWN:
        raise DaemonShutDown("flags bit 0: the daemon shut down; re-open the file")
    if m_ns > record.void_after_monotonic_ns:
        raise StaleRecord("m > void_after_monotonic_ns: the daemon stopped publishing")
    age_realtime = t_ns - record.as_of_realtime_ns
    age_monotonic = m_ns - record.as_of_monotonic_ns
    status = record.status
    if abs(age_realtime - age_monotonic) > 1 * MS + age_monotonic / 2048:
        status = DISRUPTED
    elif status == SYNCHRONIZED and age_monotonic > trusted_for_ns:
        status = FREE_RUNNING
    if status not in (SYNCHRONIZED, FREE_RUNNING):
        return DocTime(status, None, None, math.inf, t_ns)
    delta = max(0, age_realtime)
    drift_term = math.trunc(record.drift_ppb * delta * 1e-9)
    bound = record.bound_ns + math.trunc(record.bound_rate_ppb * delta * 1e-9)
    sigma = math.inf
    if isinstance(record, Record):
        s = delta / 1e9
        variance = (
            record.sigma_ns**2
            + 2 * s * record.sigma_cov_ns2_per_s
            + s**2 * record.sigma_drift_ppb**2
            + s * record.wander_ns2_per_s
        )
        sigma = math.sqrt(max(variance, record.sigma_ns**2))
    return DocTime(
        status=status,
        corrected_ns=t_ns + record.offset_ns + drift_term,
        bound_ns=bound,
        sigma_ns=sigma,
        t_ns=t_ns,
    )


def simulated_base_clock(clock_params_json: str, realtime_ns: int) -> int:
    """Base-clock reading for clock_kind 1, from the page's formula (offset, drift, steps).

    The page says a reader in another language must refuse a segment with wander (only Python's
    random.Random reproduces it); this reader plays that role.
    """
    params = json.loads(clock_params_json)
    if params.get("wander_ppm_per_sqrt_s", 0.0) != 0.0:
        raise IncompatibleSegment("simulated clock with wander: only a Python reader can follow it")
    r = realtime_ns
    elapsed = r - params["epoch_ns"]
    t = r + params["offset_ns"] + math.trunc(params["drift_ppm"] * 1e-6 * elapsed)
    for step in params.get("steps", []):
        if step["at_s"] * 1e9 <= elapsed:
            t += step["step_ns"]
    return t


class DocReader:
    """Maps /dev/shm/NAME read-only and reads it the way docs/shm-layout.md says."""

    def __init__(self, name: str) -> None:
        if sys.byteorder != "little":
            raise DocReaderError("this reader loads native words; it assumes a little-endian host")
        fd = os.open(os.path.join(SHM_DIR, name), os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            if size < SEGMENT_SIZE:
                raise IncompatibleSegment(f"file is {size} bytes, the layout needs {SEGMENT_SIZE}")
            self._mm = mmap.mmap(fd, SEGMENT_SIZE, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        header = _decode(HEADER_FIELDS, self._mm[:16], 0)
        try:
            if header["magic"] != MAGIC.decode():
                raise IncompatibleSegment(f"magic {header['magic']!r}")
            if header["layout_version"] != LAYOUT_VERSION:
                raise IncompatibleSegment(f"layout_version {header['layout_version']}")
            if header["segment_size"] != SEGMENT_SIZE:
                raise IncompatibleSegment(f"segment_size {header['segment_size']}")
            if header["hot_offset"] != GENERATION_OFFSET:
                raise IncompatibleSegment(f"hot_offset {header['hot_offset']}")
        except BaseException:
            self._mm.close()
            raise
        self.header = header
        # One native 8-byte load per element: the page relies on aligned 8-byte loads being
        # atomic and performed in program order (x86-64).
        self._words = memoryview(self._mm).cast("Q")
        self.retries = 0

    def close(self) -> None:
        self._words.release()
        self._mm.close()

    def __enter__(self) -> DocReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def clock_params_json(self) -> str:
        offset, code, _ = CLOCK_PARAMS_FIELD
        (raw,) = struct.unpack_from("<" + code, self._mm, offset)
        return _nul_padded_utf8(raw)

    def read_record_raw(self, max_tries: int = 100_000) -> bytes:
        """Method 1: load generation (g1); copy bytes 16-255; load generation again (g2)."""
        words, mm, index = self._words, self._mm, GENERATION_OFFSET // 8
        for _ in range(max_tries):
            g1 = words[index]
            raw = mm[RECORD_START:RECORD_END]
            g2 = words[index]
            if g1 == g2 and _consistent(g1):
                return raw
            self.retries += 1
            if self.retries % 64 == 0:
                time.sleep(0)  # let a preempted writer finish its record
        raise NoConsistentRecord(f"no consistent record after {max_tries} tries")

    def read_hot_raw(self, max_tries: int = 100_000) -> bytes:
        """Method 2: copy bytes 16-95 in increasing address order; generation == tail."""
        words = self._words
        first, last = HOT_START // 8, HOT_END // 8
        head, tail = 0, (TAIL_OFFSET - HOT_START) // 8
        for _ in range(max_tries):
            copy = [words[i] for i in range(first, last)]  # ascending, one aligned load each
            if copy[head] == copy[tail] and _consistent(copy[head]):
                return struct.pack("<10Q", *copy)
            self.retries += 1
            if self.retries % 64 == 0:
                time.sleep(0)  # let a preempted writer finish its record
        raise NoConsistentRecord(f"no consistent hot copy after {max_tries} tries")

    def read_record(self) -> Record:
        return Record(**_decode(RECORD_FIELDS, self.read_record_raw(), RECORD_START))

    def read_hot(self) -> HotRecord:
        return HotRecord(**_decode(HOT_FIELDS, self.read_hot_raw(), HOT_START))

    def base_clock_ns(self, clock_kind: int) -> int:
        r = time.clock_gettime_ns(time.CLOCK_REALTIME)
        if clock_kind == 0:
            return r
        if clock_kind == 1:
            return simulated_base_clock(self.clock_params_json, r)
        raise IncompatibleSegment(f"clock_kind {clock_kind}")

    def now(self) -> DocTime:
        """A read with fresh clock readings (whole record, so σ and trusted_for are known)."""
        record = self.read_record()
        t = self.base_clock_ns(record.clock_kind)
        m = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        return evaluate(record, t, m, record.trusted_for_ns)


# -- fixtures -----------------------------------------------------------------------------------


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


@pytest.fixture
def shm_name() -> Iterator[str]:
    name = f"ct-docreader-{uuid.uuid4().hex}"
    yield name
    _unlink_quietly(os.path.join(SHM_DIR, name))
    _unlink_quietly(os.path.join(SHM_DIR, f".{name}.lock"))


@pytest.fixture
def make_writer(shm_name: str) -> Iterator[Callable[..., SegmentWriter]]:
    writers: list[SegmentWriter] = []

    def make(**kwargs: Any) -> SegmentWriter:
        kwargs.setdefault("node_id", "n1")
        writer = SegmentWriter(shm_name, **kwargs)
        writers.append(writer)
        return writer

    yield make
    for writer in writers:
        with contextlib.suppress(Exception):
            writer.close()


@pytest.fixture
def scratch_files() -> Iterator[Callable[[bytes], str]]:
    """Hand-made segments under /dev/shm, removed afterwards."""
    names: list[str] = []

    def write(content: bytes) -> str:
        name = f"ct-docreader-scratch-{uuid.uuid4().hex}"
        names.append(name)
        path = os.path.join(SHM_DIR, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, content)
        finally:
            os.close(fd)
        return name

    yield write
    for name in names:
        _unlink_quietly(os.path.join(SHM_DIR, name))


NODE_ID = "rack7-ñode-Ω"
SOURCE = "ntp-b.example.net"
OFFSET_NS = 123_456_789  # +123.456789 ms
DRIFT_PPB = -37_500.0  # -37.5 ppm
BOUND_NS = 5_432_109
BOUND_RATE_PPB = 15_250.5
SIGMA_NS = 850.25
SIGMA_COV = 12_345.6
SIGMA_DRIFT_PPB = 987.6
WANDER = 54_321.0
POLL_INTERVAL_NS = 64 * S
PUBLISH_INTERVAL_NS = 250 * MS


def distinctive_model(
    as_of_ns: int, status: ClockStatus = ClockStatus.SYNCHRONIZED, **changes: Any
) -> ClockModel:
    fields: dict[str, Any] = {
        "as_of_ns": as_of_ns,
        "offset_ns": OFFSET_NS,
        "drift_ppb": DRIFT_PPB,
        "sigma_ns": SIGMA_NS,
        "sigma_cov_ns2_per_s": SIGMA_COV,
        "sigma_drift_ppb": SIGMA_DRIFT_PPB,
        "wander_ns2_per_s": WANDER,
        "bound_ns": BOUND_NS,
        "bound_rate_ppb": BOUND_RATE_PPB,
        "status": status,
        "last_sample_ns": as_of_ns - 3 * S - 17,
        "samples_used": 29,
        "source": SOURCE,
    }
    fields.update(changes)
    return ClockModel(**fields)


def publish_now(writer: SegmentWriter, **changes: Any) -> ClockModel:
    """Publish a model computed now (as_of within microseconds of the writer's own stamp)."""
    model = distinctive_model(time.time_ns(), **changes)
    writer.publish(model, POLL_INTERVAL_NS, 5, 4)
    return model


def client_time(name: str) -> tuple[Any, int]:
    """ChronoTickClient.get_time() and a CLOCK_MONOTONIC reading taken right after it."""
    info = ChronoTickClient(shm_name=name).get_time()
    return info, time.monotonic_ns()


def assert_agrees_with_client(doc: DocTime, info: Any) -> None:
    assert doc.status == info.status, (doc.status, info.status)
    assert doc.corrected_ns is not None and doc.bound_ns is not None
    assert abs(info.corrected_time_ns - doc.corrected_ns) <= 1, (
        "corrected time: docs/shm-layout.md formula gives "
        f"{doc.corrected_ns}, ChronoTickClient {info.corrected_time_ns}"
    )
    assert abs(info.error_bound_seconds * 1e9 - doc.bound_ns) <= 2, (
        f"bound: docs formula {doc.bound_ns} ns, client {info.error_bound_seconds * 1e9} ns"
    )
    assert info.uncertainty_seconds * 1e9 == pytest.approx(doc.sigma_ns, rel=1e-6), (
        f"σ: docs formula {doc.sigma_ns} ns, client {info.uncertainty_seconds * 1e9} ns"
    )


# -- tests --------------------------------------------------------------------------------------


def test_header_and_segment_match_the_page(make_writer: Any, shm_name: str) -> None:
    make_writer()
    path = os.path.join(SHM_DIR, shm_name)
    assert os.path.getsize(path) == SEGMENT_SIZE
    with DocReader(shm_name) as reader:
        assert reader.header == {
            "magic": "CHRNTICK",
            "layout_version": 1,
            "hot_offset": 16,
            "segment_size": 512,
        }
        record = reader.read_record()
        assert record.clock_kind == 0
        assert reader.clock_params_json == ""
        assert record.generation == record.generation_tail


def test_synchronized_record_matches_client(make_writer: Any, shm_name: str) -> None:
    """Corrected time, bound and σ from the page's formulas equal the official client's."""
    started = time.time_ns()
    writer = make_writer(
        node_id=NODE_ID,
        publish_interval_ns=PUBLISH_INTERVAL_NS,
        trusted_for_ns=30 * S,
        void_after_ns=60 * S,
    )
    model = publish_now(writer)
    time.sleep(0.5)  # an age that makes every rate term visible
    client = ChronoTickClient(shm_name=shm_name)
    with DocReader(shm_name) as reader:
        for _ in range(5):
            info = client.get_time()
            m = time.monotonic_ns()
            record = reader.read_record()
            doc = evaluate(record, info.system_time_ns, m, record.trusted_for_ns)
            assert doc.status == SYNCHRONIZED
            assert_agrees_with_client(doc, info)
            # the age makes the drift, bound-rate and σ-growth terms matter
            assert doc.corrected_ns - (info.system_time_ns + OFFSET_NS) < -15_000
            assert doc.sigma_ns > SIGMA_NS * 1.05

        # earliest/latest from now_ns() lie between the doc interval at readings around it
        t1 = time.time_ns()
        m1 = time.monotonic_ns()
        earliest, latest = client.now_ns()
        t2 = time.time_ns()
        m2 = time.monotonic_ns()
        record = reader.read_record()
        lo = evaluate(record, t1, m1, record.trusted_for_ns)
        hi = evaluate(record, t2, m2, record.trusted_for_ns)
        assert lo.corrected_ns is not None and lo.bound_ns is not None
        assert hi.corrected_ns is not None and hi.bound_ns is not None
        # differences of integers first: a float cannot hold a ns timestamp exactly
        assert earliest - lo.corrected_ns >= -lo.bound_ns - 2
        assert earliest - hi.corrected_ns <= -hi.bound_ns + 2
        assert latest - lo.corrected_ns >= lo.bound_ns - 2
        assert latest - hi.corrected_ns <= hi.bound_ns + 2

        # every field reads back as published
        assert record.as_of_realtime_ns == model.as_of_ns
        assert record.offset_ns == OFFSET_NS
        assert record.drift_ppb == DRIFT_PPB
        assert record.bound_ns == BOUND_NS
        assert record.bound_rate_ppb == BOUND_RATE_PPB
        assert record.status == SYNCHRONIZED
        assert record.flags == 0
        assert record.sigma_ns == SIGMA_NS
        assert record.sigma_cov_ns2_per_s == SIGMA_COV
        assert record.sigma_drift_ppb == SIGMA_DRIFT_PPB
        assert record.wander_ns2_per_s == WANDER
        assert record.last_sample_realtime_ns == model.last_sample_ns
        assert record.samples_used == 29 == info.samples_used
        assert (record.sources_configured, record.sources_reachable) == (5, 4)
        assert record.poll_interval_ns == POLL_INTERVAL_NS
        assert record.publish_interval_ns == PUBLISH_INTERVAL_NS
        assert record.trusted_for_ns == 30 * S
        assert record.void_after_monotonic_ns - record.as_of_monotonic_ns == 60 * S
        assert started <= record.daemon_started_realtime_ns <= model.as_of_ns
        assert record.writer_pid == os.getpid()
        assert record.clock_kind == 0
        assert record.source == SOURCE == info.source
        assert record.node_id == NODE_ID


def test_hot_pass_and_whole_record_agree(make_writer: Any, shm_name: str) -> None:
    writer = make_writer(trusted_for_ns=30 * S, void_after_ns=60 * S)
    publish_now(writer)
    with DocReader(shm_name) as reader:
        whole = reader.read_record()
        hot = reader.read_hot()
        assert dataclasses.asdict(hot) == {
            name: getattr(whole, name) for name in HotRecord.__dataclass_fields__
        }
        t, m = time.time_ns() + 250 * MS, time.monotonic_ns() + 250 * MS
        from_whole = evaluate(whole, t, m, whole.trusted_for_ns)
        from_hot = evaluate(hot, t, m, whole.trusted_for_ns)
        assert (from_hot.status, from_hot.corrected_ns, from_hot.bound_ns) == (
            from_whole.status,
            from_whole.corrected_ns,
            from_whole.bound_ns,
        )
        assert math.isinf(from_hot.sigma_ns)  # σ's terms are outside bytes 16-95


@pytest.mark.parametrize("status", list(ClockStatus))
def test_published_status_reads_back(make_writer: Any, shm_name: str, status: ClockStatus) -> None:
    writer = make_writer(trusted_for_ns=30 * S, void_after_ns=60 * S)
    publish_now(writer, status=status)
    with DocReader(shm_name) as reader:
        record = reader.read_record()
        assert record.status == int(status)
        info, m = client_time(shm_name)
        doc = evaluate(record, info.system_time_ns, m, record.trusted_for_ns)
        assert doc.status == info.status == status
        if status.gives_interval:
            assert_agrees_with_client(doc, info)
        else:
            # "σ ... infinite when the status gives no interval"
            assert math.isinf(record.sigma_ns)
            assert doc.corrected_ns is None and doc.bound_ns is None
            assert math.isinf(info.error_bound_seconds)


def test_trusted_for_then_void_after(make_writer: Any, shm_name: str) -> None:
    """SYNCHRONIZED older than trusted_for reads FREE_RUNNING; past void_after it is stale."""
    writer = make_writer(trusted_for_ns=60 * MS, void_after_ns=600 * MS)
    publish_now(writer)
    with DocReader(shm_name) as reader:
        info, m = client_time(shm_name)
        record = reader.read_record()
        assert evaluate(record, info.system_time_ns, m, record.trusted_for_ns).status == 1
        time.sleep(0.15)
        info, m = client_time(shm_name)
        doc = evaluate(record, info.system_time_ns, m, record.trusted_for_ns)
        assert doc.status == FREE_RUNNING
        assert_agrees_with_client(doc, info)
        assert reader.now().status == FREE_RUNNING
        time.sleep(0.6)
        with pytest.raises(StaleRecord):
            reader.now()
        with pytest.raises(StaleDataError):
            ChronoTickClient(shm_name=shm_name).get_time()


def test_closed_flag_after_close(make_writer: Any, shm_name: str) -> None:
    writer = make_writer()
    publish_now(writer)
    with DocReader(shm_name) as reader:
        assert reader.read_record().flags == 0
        writer.close()
        assert not os.path.exists(os.path.join(SHM_DIR, shm_name))
        record = reader.read_record()  # still mapped: the last record is still consistent
        assert record.flags & FLAG_SHUT_DOWN
        assert reader.read_hot().flags & FLAG_SHUT_DOWN
        with pytest.raises(DaemonShutDown):
            reader.now()
    with pytest.raises(FileNotFoundError):
        DocReader(shm_name)
    with pytest.raises(NoDaemonError):
        ChronoTickClient(shm_name=shm_name).get_time()


def test_step_rule_matches_client(
    make_writer: Any, shm_name: str, scratch_files: Callable[[bytes], str]
) -> None:
    """A record whose realtime and monotonic stamps disagree by 50 ms reads DISRUPTED."""
    writer = make_writer(trusted_for_ns=30 * S, void_after_ns=60 * S)
    publish_now(writer)
    with open(os.path.join(SHM_DIR, shm_name), "rb") as f:
        image = bytearray(f.read())
    (as_of,) = struct.unpack_from("<q", image, 24)
    struct.pack_into("<q", image, 24, as_of + 50 * MS)  # as if the base clock stepped back
    stepped = scratch_files(bytes(image))
    with DocReader(stepped) as reader:
        info, m = client_time(stepped)
        record = reader.read_record()
        assert evaluate(record, info.system_time_ns, m, record.trusted_for_ns).status == DISRUPTED
        assert info.status == ClockStatus.DISRUPTED
    with open(os.path.join(SHM_DIR, shm_name), "rb") as f:
        unchanged = scratch_files(f.read())
    with DocReader(unchanged) as reader:
        assert reader.now().status == SYNCHRONIZED


@pytest.mark.parametrize(
    ("offset", "packed", "what"),
    [
        (0, b"CHRNTOCK", "magic"),
        (8, struct.pack("<H", 2), "layout_version"),
        (12, struct.pack("<I", 1024), "segment_size"),
    ],
)
def test_incompatible_header_refused(
    make_writer: Any,
    shm_name: str,
    scratch_files: Callable[[bytes], str],
    offset: int,
    packed: bytes,
    what: str,
) -> None:
    writer = make_writer()
    publish_now(writer)
    with open(os.path.join(SHM_DIR, shm_name), "rb") as f:
        image = bytearray(f.read())
    DocReader(scratch_files(bytes(image))).close()  # the unchanged copy is accepted
    image[offset : offset + len(packed)] = packed
    with pytest.raises(IncompatibleSegment, match=what):
        DocReader(scratch_files(bytes(image)))
    with pytest.raises(IncompatibleSegment):
        DocReader(scratch_files(bytes(image[:256])))


# -- consistency under concurrent publishing ----------------------------------------------------

PUBLISHES = 50_000
READS = 100_000
VOID_AFTER_NS = 600 * S


def counter_model(base_ns: int, k: int) -> ClockModel:
    """Every field a function of k, so a mixed copy cannot pass check_counter_record."""
    return ClockModel(
        as_of_ns=base_ns + k,
        offset_ns=k,
        drift_ppb=k * 0.5,
        sigma_ns=k + 0.25,
        sigma_cov_ns2_per_s=-float(k),
        sigma_drift_ppb=k / 8,
        wander_ns2_per_s=2.0 * k,
        bound_ns=3 * k,
        bound_rate_ppb=k * 0.75,
        status=ClockStatus.SYNCHRONIZED if k % 2 else ClockStatus.FREE_RUNNING,
        last_sample_ns=base_ns - k,
        samples_used=k,
        source=f"s{k}",
    )


def publish_counter(writer: SegmentWriter, base_ns: int, k: int) -> None:
    writer.publish(counter_model(base_ns, k), 10 * k, k & 0xFFFF, (k >> 1) & 0xFFFF)


def check_counter_hot(hot: HotRecord | Record, base_ns: int) -> int:
    k = hot.offset_ns
    assert hot.generation == hot.generation_tail
    assert hot.as_of_realtime_ns == base_ns + k
    assert hot.drift_ppb == k * 0.5
    assert hot.bound_ns == 3 * k
    assert hot.bound_rate_ppb == k * 0.75
    assert hot.status == (SYNCHRONIZED if k % 2 else FREE_RUNNING)
    assert hot.flags == 0
    assert hot.void_after_monotonic_ns - hot.as_of_monotonic_ns == VOID_AFTER_NS
    return k


def check_counter_record(record: Record, base_ns: int) -> int:
    k = check_counter_hot(record, base_ns)
    assert record.sigma_ns == k + 0.25
    assert record.sigma_cov_ns2_per_s == -float(k)
    assert record.sigma_drift_ppb == k / 8
    assert record.wander_ns2_per_s == 2.0 * k
    assert record.last_sample_realtime_ns == base_ns - k
    assert record.samples_used == k
    assert record.sources_configured == k & 0xFFFF
    assert record.sources_reachable == (k >> 1) & 0xFFFF
    assert record.poll_interval_ns == 10 * k
    assert record.source == f"s{k}"
    return k


def check_close_record(hot: HotRecord | Record) -> None:
    """What SegmentWriter.close() leaves: a last record, flags bit 0, no interval, void now."""
    assert hot.generation == hot.generation_tail
    assert hot.flags & FLAG_SHUT_DOWN
    assert hot.status == UNKNOWN
    assert hot.void_after_monotonic_ns == hot.as_of_monotonic_ns


def hammer(reader: DocReader, base_ns: int, writer_done: Callable[[], bool]) -> dict[str, int]:
    """Alternate the two read methods until READS reads are done and the writer has finished."""
    reads = distinct = during = last_k = last_generation = 0
    while reads < READS or not writer_done():
        if not writer_done():
            during += 1
        record: Record | HotRecord = reader.read_hot() if reads % 2 else reader.read_record()
        assert record.generation >= last_generation  # the record never goes back in time
        last_generation = record.generation
        reads += 1
        if record.flags & FLAG_SHUT_DOWN:
            check_close_record(record)
            continue
        if isinstance(record, Record):
            k = check_counter_record(record, base_ns)
        else:
            k = check_counter_hot(record, base_ns)
        assert k >= last_k
        distinct += k != last_k
        last_k = k
    return {"reads": reads, "during": during, "distinct": distinct, "last_k": last_k}


def test_consistent_reads_while_a_thread_republishes(make_writer: Any, shm_name: str) -> None:
    writer = make_writer(trusted_for_ns=600 * S, void_after_ns=VOID_AFTER_NS)
    base_ns = time.time_ns()
    publish_counter(writer, base_ns, 1)
    failures: list[BaseException] = []
    done = threading.Event()

    def republish() -> None:
        try:
            for k in range(2, PUBLISHES + 1):
                publish_counter(writer, base_ns, k)
        except BaseException as error:
            failures.append(error)
        finally:
            done.set()

    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # let the reader run in the middle of a publish
    try:
        with DocReader(shm_name) as reader:
            thread = threading.Thread(target=republish)
            thread.start()
            try:
                stats = hammer(reader, base_ns, done.is_set)
            finally:
                thread.join()
            stats["retries"] = reader.retries
    finally:
        sys.setswitchinterval(switch_interval)
    assert not failures
    assert stats["last_k"] == PUBLISHES
    assert stats["reads"] >= READS
    assert stats["during"] > 1000, stats
    assert stats["distinct"] > 20, stats  # scheduling-dependent: overlap, not a rate, matters
    print("thread writer:", stats)


def _publish_in_child(name: str, base_ns: int, ready: Any, go: Any) -> None:
    writer = SegmentWriter(name, node_id="child", trusted_for_ns=600 * S, void_after_ns=600 * S)
    try:
        publish_counter(writer, base_ns, 1)
        ready.set()
        go.wait(30)
        for k in range(2, PUBLISHES + 1):
            publish_counter(writer, base_ns, k)
    finally:
        writer.close()


def test_consistent_reads_while_another_process_republishes(shm_name: str) -> None:
    """The same with the writer in another process, so loads and stores really overlap."""
    context = multiprocessing.get_context("fork")
    ready, go = context.Event(), context.Event()
    base_ns = time.time_ns()
    child = context.Process(target=_publish_in_child, args=(shm_name, base_ns, ready, go))
    child.start()
    try:
        assert ready.wait(30), "the child did not create the segment"
        with DocReader(shm_name) as reader:
            assert reader.read_record().writer_pid == child.pid
            go.set()
            stats = hammer(reader, base_ns, lambda: not child.is_alive())
            stats["retries"] = reader.retries
            assert reader.read_record().flags & FLAG_SHUT_DOWN
    finally:
        child.join(60)
        if child.is_alive():
            child.kill()
            child.join()
    assert child.exitcode == 0
    # How far the reader gets while the child writes depends on scheduling (2 noisy cores): ask
    # only that reads really overlapped many writes.
    assert stats["during"] > 1000, stats
    assert stats["distinct"] > 20, stats
    print("process writer:", stats)


# -- simulated base clock -----------------------------------------------------------------------


def _simulated_writer(make_writer: Any, **params: Any) -> Any:
    from chronotick.clocks import SimulatedClockParams

    clock_params = SimulatedClockParams(**params)
    return make_writer(clock_params=clock_params, trusted_for_ns=30 * S, void_after_ns=60 * S)


def _bracket_client_base_clock(reader: DocReader, shm_name: str) -> tuple[int, int, int]:
    client = ChronoTickClient(shm_name=shm_name)
    client.get_time()  # warm up
    r1 = time.clock_gettime_ns(time.CLOCK_REALTIME)
    info = client.get_time()
    r2 = time.clock_gettime_ns(time.CLOCK_REALTIME)
    params = reader.clock_params_json
    return simulated_base_clock(params, r1), info.system_time_ns, simulated_base_clock(params, r2)


def test_simulated_base_clock_formula(make_writer: Any, shm_name: str) -> None:
    epoch = time.time_ns() - 40 * S
    writer = _simulated_writer(make_writer, offset_ns=250 * MS, drift_ppm=80.0, epoch_ns=epoch)
    with DocReader(shm_name) as reader:
        assert reader.read_record().clock_kind == 1
        params = json.loads(reader.clock_params_json)
        assert set(params) == {
            "offset_ns",
            "drift_ppm",
            "epoch_ns",
            "wander_ppm_per_sqrt_s",
            "seed",
            "steps",
        }
        t = reader.base_clock_ns(1)
        writer.publish(distinctive_model(t), POLL_INTERVAL_NS, 5, 4)
        lo, client_t, hi = _bracket_client_base_clock(reader, shm_name)
        assert lo <= client_t <= hi
        assert reader.now().status == SYNCHRONIZED


def test_simulated_base_clock_with_wander_is_refused(make_writer: Any, shm_name: str) -> None:
    """The page: a reader in another language must refuse a simulated clock with wander."""
    epoch = time.time_ns() - 100 * S
    _simulated_writer(
        make_writer, offset_ns=0, drift_ppm=0.0, epoch_ns=epoch, wander_ppm_per_sqrt_s=20.0, seed=7
    )
    with DocReader(shm_name) as reader, pytest.raises(IncompatibleSegment, match="wander"):
        reader.base_clock_ns(1)


# -- places where the page and the code once disagreed ------------------------------------------


def test_as_of_monotonic_is_taken_at_the_as_of_instant(make_writer: Any, shm_name: str) -> None:
    """The page says as_of_monotonic_ns is CLOCK_MONOTONIC "at the same instant" as
    as_of_realtime_ns, also when publish() is not told the monotonic time: a model computed 2 s
    before it is published must not read as DISRUPTED by the page's step rule.
    """
    writer = make_writer(trusted_for_ns=30 * S, void_after_ns=60 * S)
    t0, m0 = time.time_ns(), time.monotonic_ns()
    writer.publish(distinctive_model(t0 - 2 * S), POLL_INTERVAL_NS, 5, 4)
    with DocReader(shm_name) as reader:
        record = reader.read_record()
        info, m = client_time(shm_name)
        doc = evaluate(record, info.system_time_ns, m, record.trusted_for_ns)
    realtime_minus_monotonic = (t0 - record.as_of_realtime_ns) - (m0 - record.as_of_monotonic_ns)
    assert abs(realtime_minus_monotonic) < 1 * MS, (
        "docs/shm-layout.md, field as_of_monotonic_ns ('CLOCK_MONOTONIC at the same instant'): "
        f"the two stamps of one record are {realtime_minus_monotonic / 1e6:.3f} ms apart; the "
        "writer stamps CLOCK_MONOTONIC at publish, not at as_of_realtime_ns. Consequence: the "
        f"page's step rule gives status {doc.status} and the client {int(info.status)} for a "
        "SYNCHRONIZED model that is 2 s old."
    )


def test_sigma_formula_matches_client_with_a_negative_cross_term(
    make_writer: Any, shm_name: str
) -> None:
    """The cross term may be negative (it is a covariance): σ is floored at sigma_ns, as the
    page says and the client does."""
    writer = make_writer(trusted_for_ns=30 * S, void_after_ns=60 * S)
    publish_now(writer, sigma_cov_ns2_per_s=-1e6, sigma_drift_ppb=0.0, wander_ns2_per_s=0.0)
    time.sleep(0.1)
    with DocReader(shm_name) as reader:
        record = reader.read_record()
        info, m = client_time(shm_name)
        doc = evaluate(record, info.system_time_ns, m, record.trusted_for_ns)
    assert doc.sigma_ns == SIGMA_NS  # the floor: the unfloored formula gives less at s ≈ 0.1 s
    client_sigma = info.uncertainty_seconds * 1e9
    assert client_sigma == pytest.approx(doc.sigma_ns, rel=1e-6), (
        "docs/shm-layout.md, 'Using a record', σ(Δ)²: the page's formula gives "
        f"{doc.sigma_ns:.3f} ns, ChronoTickClient {client_sigma:.3f} ns (= sigma_ns "
        f"{SIGMA_NS}); the page does not say σ is floored at sigma_ns"
    )


def test_older_model_with_its_own_monotonic_stamp(make_writer: Any, shm_name: str) -> None:
    """With monotonic_ns given for the as_of instant, a 2 s old model reads as the page says.

    The 2 s age makes the drift (-75 µs), bound-rate (+30.5 µs) and σ-growth terms large, so the
    page's formulas are checked far from Δ = 0.
    """
    writer = make_writer(trusted_for_ns=30 * S, void_after_ns=60 * S)
    t0, m0 = time.time_ns(), time.monotonic_ns()
    model = distinctive_model(t0 - 2 * S)
    writer.publish(model, POLL_INTERVAL_NS, 5, 4, monotonic_ns=m0 - 2 * S)
    with DocReader(shm_name) as reader:
        record = reader.read_record()
        assert record.as_of_monotonic_ns == m0 - 2 * S
        assert record.void_after_monotonic_ns == m0 - 2 * S + 60 * S
        client = ChronoTickClient(shm_name=shm_name)
        for _ in range(5):
            info = client.get_time()
            doc = evaluate(record, info.system_time_ns, time.monotonic_ns(), record.trusted_for_ns)
            assert doc.status == SYNCHRONIZED
            assert_agrees_with_client(doc, info)
            assert doc.corrected_ns is not None and doc.bound_ns is not None
            assert doc.corrected_ns - info.system_time_ns - OFFSET_NS < -74_000
            assert doc.bound_ns - BOUND_NS > 30_000
