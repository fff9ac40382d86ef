"""The shared-memory segment: its layout, its writer and its reader, in one place.

The daemon is the only writer; any number of local processes read. docs/shm-layout.md describes
the same layout byte by byte for readers in other languages; tests check the two agree.

Consistency: a seqlock. The generation at byte 16 is odd while the writer writes and a copy of it
(the tail, byte 88) closes the hot fields. The writer stores head := g+1, tail := g+1, then the
fields, then tail := g+2, head := g+2. A reader that loads head, the hot fields and tail in that
order (one `struct` unpack does) and finds head == tail, even and non-zero, read one record whole:
the tail still equal to head means the next write had not begun when the fields were read. The
classic reader (head, fields, head again; equal and even) also works, for every field.

Readers map the file under /dev/shm (or the configured directory) read-only with `mmap`:
`multiprocessing.shared_memory` registers readers with its resource tracker, which unlinks the
segment when a reader exits.

The hot read of `ChronoTickClient.now()` has a C version, the optional extension
`chronotick._fastread` (chronotick/_fastread.c). A reader hands it the mapping when the extension
is built and the segment's base clock is CLOCK_REALTIME; otherwise, or with the environment
variable CHRONOTICK_PURE_PYTHON=1, everything stays in Python, with the same answers.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import mmap
import os
import re
import struct
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from chronotick.clocks import SimulatedClock, SimulatedClockParams
from chronotick.model import NS_PER_S, ClockModel
from chronotick.status import ClockStatus

if TYPE_CHECKING:
    from chronotick._fastread import Reader as FastReader

MAGIC = b"CHRNTICK"
LAYOUT_VERSION = 1
SEGMENT_SIZE = 512
#: where segments live unless a directory is given (`shm_dir`) or $CHRONOTICK_SHM_DIR names one
SHM_DIR = "/dev/shm"
SHM_DIR_ENV = "CHRONOTICK_SHM_DIR"
DEFAULT_SHM_NAME = "chronotick"

#: bytes 0-15: identifies the segment; written once, before the segment becomes visible
HEADER = struct.Struct("<8sHHI")
#: bytes 16-95: what `now()` needs, between the two generation counters
HOT = struct.Struct("<QqqqqdqdIIQ")
HOT_OFFSET = 16
GENERATION = struct.Struct("<Q")
TAIL_OFFSET = 88
FLAGS_OFFSET = 84
#: bytes 96-255: the rest of the model and the daemon's description of itself
INFO = struct.Struct("<ddddqIHHqqqqII32s32s")
INFO_OFFSET = 96
#: bytes 256-511: the base clock's parameters as UTF-8 JSON, NUL padded; empty: CLOCK_REALTIME
CLOCK_PARAMS_OFFSET = 256
CLOCK_PARAMS_SIZE = 256

FLAG_CLOSED = 1  # the daemon shut down cleanly: the data will not be refreshed

CLOCK_REALTIME_KIND = 0
CLOCK_SIMULATED_KIND = 1

assert HEADER.size == HOT_OFFSET
assert HOT_OFFSET + HOT.size == INFO_OFFSET
assert INFO_OFFSET + INFO.size <= CLOCK_PARAMS_OFFSET

_NAME_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,199}\Z")

#: set to 1 to keep every read in Python even where the C extension is built
PURE_PYTHON_ENV = "CHRONOTICK_PURE_PYTHON"
#: the interface version of chronotick/_fastread.c this module drives
FASTREAD_API_VERSION = 1
#: CLOCK_REALTIME as the C reader reads it. A reader uses C only while its base clock is this
#: very function: a replaced `time.time_ns` (a test's fake clock) or `realtime_ns` stays in Python
SYSTEM_REALTIME_NS: Callable[[], int] = time.time_ns


def _load_fast_reader() -> type[FastReader] | None:
    """The C reader's class, or None to read in pure Python.

    None when CHRONOTICK_PURE_PYTHON is set (to anything but "" or "0"), when the extension is
    not built (the build is optional: no compiler, or an unsupported platform), or when the
    built module is for another version of its source (a stale build left in the tree).
    """
    if os.environ.get(PURE_PYTHON_ENV, "") not in ("", "0"):
        return None
    try:
        from chronotick import _fastread
    except ImportError:
        return None
    if getattr(_fastread, "API_VERSION", None) != FASTREAD_API_VERSION:
        return None
    return _fastread.Reader


#: what new SegmentReaders use for the hot read (None: pure Python); decided once, at import
fast_reader_class: type[FastReader] | None = _load_fast_reader()


class ShmError(Exception):
    """Base of the errors a reader can meet."""


class NoDaemonError(ShmError):
    """No segment, or the daemon that wrote it shut down."""


class StaleDataError(ShmError):
    """The segment exists but its data is past `void_after`: the daemon stopped publishing."""


class IncompatibleLayoutError(ShmError):
    """The file is not a ChronoTick segment, or has a layout version this reader cannot read."""


class ClockDisruptedError(ShmError):
    """The base clock stepped since the data was published, or the daemon says it did."""


class NotSynchronizedError(ShmError):
    """The daemon runs but has no usable model yet (warming up or restarting)."""

    def __init__(self, message: str, status: ClockStatus) -> None:
        super().__init__(message)
        self.status = status


def validate_name(name: str) -> str:
    if not _NAME_RE.fullmatch(name):
        raise ValueError(
            f"invalid shared-memory name {name!r}: use 1-200 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def segment_directory(directory: str | None = None) -> str:
    """The directory segments live in: `directory`, else $CHRONOTICK_SHM_DIR, else /dev/shm.

    Any tmpfs directory works (the segment is an ordinary file that readers map): a systemd
    RuntimeDirectory, or a volume shared between containers, where an application's own
    /dev/shm must stay its own.
    """
    chosen = directory or os.environ.get(SHM_DIR_ENV) or SHM_DIR
    if not os.path.isabs(chosen):
        raise ValueError(f"shared-memory directory {chosen!r} must be an absolute path")
    return chosen


def segment_path(name: str, directory: str | None = None) -> str:
    return os.path.join(segment_directory(directory), validate_name(name))


def default_name(node_id: str | None = None) -> str:
    """`chronotick`, or `chronotick-NODE` where several nodes share one machine."""
    return DEFAULT_SHM_NAME if not node_id else validate_name(f"{DEFAULT_SHM_NAME}-{node_id}")


@dataclasses.dataclass(frozen=True)
class DaemonInfo:
    """What the daemon says of itself (`get_daemon_info()`)."""

    node_id: str
    pid: int
    started_ns: int
    publish_interval_ns: int
    trusted_for_ns: int
    poll_interval_ns: int
    sources_configured: int
    sources_reachable: int
    clock_kind: int
    clock_params: SimulatedClockParams | None


@dataclasses.dataclass(frozen=True, slots=True)
class Record:
    """One consistent record, decoded. A reader keeps the last one and reuses it for as long as
    the generation stays the same: decoding costs far more than the read it saves."""

    generation: int
    model: ClockModel
    as_of_monotonic_ns: int
    void_after_monotonic_ns: int
    flags: int
    info: DaemonInfo


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """One consistent read of the whole record, with the clocks read right after it."""

    model: ClockModel
    as_of_monotonic_ns: int
    void_after_monotonic_ns: int
    flags: int
    info: DaemonInfo
    realtime_ns: int
    monotonic_ns: int


_I64_MAX = (1 << 63) - 1


def _clamp_i64(value: int) -> int:
    """Keep a value inside the int64 field it goes to (an absurd bound stays absurd, but fits)."""
    return max(-_I64_MAX, min(_I64_MAX, int(value)))


def _encode_text(text: str, size: int) -> bytes:
    # cut at a character boundary: drop a partial trailing UTF-8 sequence
    return text.encode("utf-8")[:size].decode("utf-8", "ignore").encode("utf-8")


def _decode_text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", errors="replace")


class SegmentWriter:
    """The daemon's side. Creates the segment atomically and holds a lock so there is one writer."""

    def __init__(
        self,
        name: str,
        node_id: str = "",
        clock_params: SimulatedClockParams | None = None,
        publish_interval_ns: int = NS_PER_S // 10,
        trusted_for_ns: int = NS_PER_S,
        void_after_ns: int = 10 * NS_PER_S,
        directory: str | None = None,
    ) -> None:
        self.name = validate_name(name)
        self.directory = segment_directory(directory)
        if not os.path.isdir(self.directory):
            raise FileNotFoundError(
                errno.ENOENT, f"no directory {self.directory} for the segment", self.directory
            )
        self.path = segment_path(name, self.directory)
        self.node_id = node_id
        self.clock_params = clock_params
        self.publish_interval_ns = publish_interval_ns
        self.trusted_for_ns = trusted_for_ns
        self.void_after_ns = void_after_ns
        self._started_ns = time.time_ns()
        self._base_clock_ns: Callable[[], int] = (
            SimulatedClock(clock_params).now_ns if clock_params is not None else time.time_ns
        )
        self._generation = 0
        self._lock_fd = self._take_lock()
        try:
            self._mm, self._inode = self._create()
        except BaseException:
            os.close(self._lock_fd)
            raise

    @property
    def lock_path(self) -> str:
        return os.path.join(self.directory, f".{self.name}.lock")

    def _take_lock(self) -> int:
        """An exclusive flock on `.NAME.lock`, which a writer removes when it closes.

        A lock file that was removed between our open and our flock is not the lock any more
        (its last holder just closed): the lock taken is checked to still be the file under
        the name, and taken again on the new file otherwise.
        """
        lock_path = self.lock_path
        for _ in range(100):
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise RuntimeError(
                        f"another chronotick daemon is writing segment {self.name!r} "
                        f"(lock {lock_path} is held)"
                    ) from exc
                raise
            try:
                if os.stat(lock_path).st_ino == os.fstat(fd).st_ino:
                    return fd
            except FileNotFoundError:
                pass
            os.close(fd)
        raise RuntimeError(f"cannot take the lock {lock_path}: it keeps being replaced")

    def _close_previous(self) -> None:
        """Mark a segment left by a crashed daemon closed, so its readers move on at once."""
        try:
            fd = os.open(self.path, os.O_RDWR)
        except OSError:
            return
        try:
            if os.fstat(fd).st_size < SEGMENT_SIZE:
                return
            with mmap.mmap(fd, SEGMENT_SIZE) as old:
                magic, version, _hot, _size = HEADER.unpack_from(old, 0)
                if magic != MAGIC or version != LAYOUT_VERSION:
                    return
                g = GENERATION.unpack_from(old, HOT_OFFSET)[0] | 1  # odd: writing
                GENERATION.pack_into(old, HOT_OFFSET, g)
                GENERATION.pack_into(old, TAIL_OFFSET, g)
                struct.pack_into("<I", old, FLAGS_OFFSET, FLAG_CLOSED)
                GENERATION.pack_into(old, TAIL_OFFSET, g + 1)
                GENERATION.pack_into(old, HOT_OFFSET, g + 1)
        finally:
            os.close(fd)

    def _create(self) -> tuple[mmap.mmap, int]:
        self._close_previous()
        params = b""
        if self.clock_params is not None:
            params = self.clock_params.to_json().encode("utf-8")
            if len(params) > CLOCK_PARAMS_SIZE:
                raise ValueError("simulated clock parameters do not fit the segment (256 bytes)")
        tmp = os.path.join(self.directory, f".{self.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.ftruncate(fd, SEGMENT_SIZE)
            mm = mmap.mmap(fd, SEGMENT_SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            inode = os.fstat(fd).st_ino
        finally:
            os.close(fd)
        HEADER.pack_into(mm, 0, MAGIC, LAYOUT_VERSION, HOT_OFFSET, SEGMENT_SIZE)
        mm[CLOCK_PARAMS_OFFSET : CLOCK_PARAMS_OFFSET + len(params)] = params
        self._mm = mm
        self.publish(ClockModel.unknown(self._base_clock_ns()), 0, 0, 0)
        # Readers only ever see a complete segment: it appears under its name whole.
        os.rename(tmp, self.path)
        return mm, inode

    def publish(
        self,
        model: ClockModel,
        poll_interval_ns: int,
        sources_configured: int,
        sources_reachable: int,
        monotonic_ns: int | None = None,
        flags: int = 0,
    ) -> None:
        """Write one record under the seqlock.

        `model.as_of_ns` is a base-clock reading and `monotonic_ns` CLOCK_MONOTONIC at that same
        instant (readers compare the two to notice steps). Without it, the instant is carried
        over from a fresh reading of the base clock.
        """
        if monotonic_ns is None:
            monotonic_ns = time.monotonic_ns() - (self._base_clock_ns() - model.as_of_ns)
        mono = monotonic_ns
        void_after = mono + self.void_after_ns if not flags & FLAG_CLOSED else mono
        bound = _clamp_i64(model.bound_ns) if model.status.gives_interval else 0
        clock_kind = CLOCK_REALTIME_KIND if self.clock_params is None else CLOCK_SIMULATED_KIND
        # Everything is packed before the segment is touched: a value that does not fit
        # raises here, never between the two generation writes (which would leave the record
        # marked as being written for ever).
        hot = HOT.pack(
            0,
            _clamp_i64(model.as_of_ns),
            _clamp_i64(mono),
            _clamp_i64(void_after),
            _clamp_i64(model.offset_ns),
            model.drift_ppb,
            bound,
            model.bound_rate_ppb,
            int(model.status),
            flags,
            0,
        )[8:-8]
        info = INFO.pack(
            model.sigma_ns if model.status.gives_interval else float("inf"),
            model.sigma_cov_ns2_per_s,
            model.sigma_drift_ppb,
            model.wander_ns2_per_s,
            _clamp_i64(model.last_sample_ns),
            min(max(model.samples_used, 0), 0xFFFFFFFF),
            min(sources_configured, 0xFFFF),
            min(sources_reachable, 0xFFFF),
            _clamp_i64(poll_interval_ns),
            self.publish_interval_ns,
            self.trusted_for_ns,
            self._started_ns,
            os.getpid(),
            clock_kind,
            _encode_text(model.source, 32),
            _encode_text(self.node_id, 32),
        )
        mm = self._mm
        g = self._generation
        GENERATION.pack_into(mm, HOT_OFFSET, g + 1)
        GENERATION.pack_into(mm, TAIL_OFFSET, g + 1)
        mm[HOT_OFFSET + 8 : TAIL_OFFSET] = hot
        mm[INFO_OFFSET : INFO_OFFSET + INFO.size] = info
        GENERATION.pack_into(mm, TAIL_OFFSET, g + 2)
        GENERATION.pack_into(mm, HOT_OFFSET, g + 2)
        self._generation = g + 2

    def close(self, unlink: bool = True) -> None:
        """Mark the data stale and closed (readers stop at once), then remove the segment."""
        if self._mm.closed:
            return
        self.publish(ClockModel.unknown(self._base_clock_ns()), 0, 0, 0, flags=FLAG_CLOSED)
        self._mm.close()
        if unlink:
            try:
                if os.stat(self.path).st_ino == self._inode:
                    os.unlink(self.path)
            except FileNotFoundError:
                pass
            # Removed while still held: a writer starting now either fails to lock this file
            # or finds it gone and takes a new one (see _take_lock).
            try:
                os.unlink(self.lock_path)
            except FileNotFoundError:
                pass
        os.close(self._lock_fd)


#: a reader spins this many times, then yields the CPU between attempts for up to
#: WRITER_STALL_NS before it calls the writer stuck (a preempted writer can take tens of ms)
SPINS = 100
WRITER_STALL_NS = NS_PER_S


def _keep_waiting(deadline: int) -> bool:
    """Yield the CPU (and the GIL); False once `deadline` (0: not started) has passed."""
    if deadline and time.monotonic_ns() > deadline:
        return False
    time.sleep(0)
    return True


class SegmentReader:
    """A read-only view of a segment; re-attaches when the daemon replaced it.

    `fast_path=False` keeps the hot read in Python even where the C extension is available
    (to compare the two, or to rule the extension out).
    """

    def __init__(
        self, name: str = DEFAULT_SHM_NAME, fast_path: bool = True, directory: str | None = None
    ) -> None:
        self.name = validate_name(name)
        self.path = segment_path(name, directory)
        self._mm: mmap.mmap | None = None
        self._inode = -1
        self._realtime_ns: Callable[[], int] = time.time_ns
        self._fast_class = fast_reader_class if fast_path else None
        #: the C hot reader of the current mapping, when it computes what Python would
        self.fast: FastReader | None = None
        self._record: Record | None = None
        self.clock_params: SimulatedClockParams | None = None
        #: taken to swap or close the mapping, so that threads sharing a reader never see a
        #: half-replaced one
        self._lock = threading.Lock()

    @property
    def realtime_ns(self) -> Callable[[], int]:
        """The segment's base clock: CLOCK_REALTIME, or the simulated clock it describes."""
        return self._realtime_ns

    @realtime_ns.setter
    def realtime_ns(self, clock: Callable[[], int]) -> None:
        # a property so that replacing the clock (tests do) also retires the C reader, which
        # reads CLOCK_REALTIME itself
        self._realtime_ns = clock
        self._sync_fast()

    def _sync_fast(self) -> None:
        """Give the hot path a C reader exactly when it would read what Python reads."""
        self._release_fast()
        if (
            self._fast_class is not None
            and self._mm is not None
            and self.clock_params is None
            and self._realtime_ns is SYSTEM_REALTIME_NS
        ):
            self.fast = self._fast_class(self._mm)

    def _release_fast(self) -> None:
        # the C reader holds a buffer export of the mapping: mmap.close() refuses until it goes
        if self.fast is not None:
            self.fast.release()
            self.fast = None

    @property
    def attached(self) -> bool:
        return self._mm is not None

    def attach(self) -> None:
        """Map the segment; raise NoDaemonError or IncompatibleLayoutError with the reason."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            raise NoDaemonError(
                f"no ChronoTick segment at {self.path}: is chronotick-daemon running "
                f"with --shm-name {self.name}?"
            ) from None
        except PermissionError as exc:
            raise NoDaemonError(f"cannot open {self.path}: {exc.strerror}") from None
        try:
            st = os.fstat(fd)
            if st.st_size < HEADER.size:
                raise IncompatibleLayoutError(
                    f"{self.path} is {st.st_size} bytes: too small to be a ChronoTick segment"
                )
            mm = mmap.mmap(fd, st.st_size, mmap.MAP_SHARED, mmap.PROT_READ)
        finally:
            os.close(fd)
        magic, version, _hot_offset, size = HEADER.unpack_from(mm, 0)
        if magic != MAGIC:
            mm.close()
            raise IncompatibleLayoutError(
                f"{self.path} is not a ChronoTick segment (magic {magic!r}, expected {MAGIC!r})"
            )
        if version != LAYOUT_VERSION or size < SEGMENT_SIZE or st.st_size < SEGMENT_SIZE:
            mm.close()
            raise IncompatibleLayoutError(
                f"{self.path} has layout version {version} ({size} bytes); this client reads "
                f"version {LAYOUT_VERSION} ({SEGMENT_SIZE} bytes): upgrade the older side"
            )
        raw = bytes(mm[CLOCK_PARAMS_OFFSET : CLOCK_PARAMS_OFFSET + CLOCK_PARAMS_SIZE])
        try:
            params_text = raw.split(b"\0", 1)[0].decode("utf-8")
            params = SimulatedClockParams.from_json(params_text) if params_text else None
        except (ValueError, TypeError, KeyError) as exc:
            mm.close()
            raise IncompatibleLayoutError(
                f"{self.path}: unreadable simulated clock parameters ({exc})"
            ) from None
        with self._lock:
            # The old mapping is not closed here: another thread may be reading it right now.
            # Dropping the references lets it close once nobody holds it.
            self._release_fast()
            self._record = None
            self._mm = mm
            self._inode = st.st_ino
            self.clock_params = params
            # last: the setter makes the C reader, which needs the mapping and the clock kind
            self.realtime_ns = SimulatedClock(params).now_ns if params else time.time_ns

    def close(self) -> None:
        """Unmap now. Only for a reader that no other thread is using any more."""
        with self._lock:
            self._release_fast()
            self._record = None
            if self._mm is not None:
                self._mm.close()
                self._mm = None

    def replaced(self) -> bool:
        """Whether the name now points to another segment than the one mapped."""
        try:
            return os.stat(self.path).st_ino != self._inode
        except FileNotFoundError:
            return False

    def mapping(self) -> mmap.mmap:
        """The mapped segment, attaching (or re-attaching after a restart) when needed."""
        if self._mm is None or self.replaced():
            self.attach()
        assert self._mm is not None
        return self._mm

    def read_hot(self) -> tuple[Any, ...]:
        """A consistent copy of the hot fields (retries while the writer writes)."""
        mm = self._mm if self._mm is not None else self.mapping()
        deadline = 0
        while True:
            for _ in range(SPINS):
                fields = HOT.unpack_from(mm, HOT_OFFSET)
                gen = fields[0]
                if gen == fields[10] and not gen & 1 and gen:
                    return fields
            if not _keep_waiting(deadline):
                break
            deadline = deadline or time.monotonic_ns() + WRITER_STALL_NS
        raise StaleDataError(f"{self.path}: the writer never finished a record (stuck mid-write)")

    def read(self) -> tuple[Record, int, int]:
        """The current record, then the base clock and CLOCK_MONOTONIC read right after it.

        The record is decoded once per generation: while the generation in the segment still
        equals the one of the last record decoded, that record is the segment's content (a
        writer changes the generation before anything else, and a new segment is a new
        mapping). So a repeated read costs one 8-byte load; `struct` reads a "<Q" with one
        aligned load on a little-endian machine, as the seqlock needs anyway.
        Checked for staleness, and re-attached if the daemon replaced the segment.
        """
        for attempt in range(2):
            mm = self.mapping() if attempt or self._mm is None else self._mm
            record = self._record
            if record is None or GENERATION.unpack_from(mm, HOT_OFFSET)[0] != record.generation:
                record = self._read_record(mm)
            realtime = self._realtime_ns()
            mono = time.monotonic_ns()
            if (
                record.flags & FLAG_CLOSED or mono > record.void_after_monotonic_ns
            ) and self.replaced():
                continue  # the daemon restarted: the next attempt maps its new segment
            return record, realtime, mono
        raise NoDaemonError(f"{self.path}: the segment keeps changing under the reader")

    def snapshot(self) -> Snapshot:
        """A consistent copy of every field, checked for staleness and re-attached if replaced."""
        record, realtime, mono = self.read()
        return Snapshot(
            model=record.model,
            as_of_monotonic_ns=record.as_of_monotonic_ns,
            void_after_monotonic_ns=record.void_after_monotonic_ns,
            flags=record.flags,
            info=record.info,
            realtime_ns=realtime,
            monotonic_ns=mono,
        )

    def _read_record(self, mm: mmap.mmap) -> Record:
        """The whole-record read of docs/shm-layout.md, decoded, and kept for the next read."""
        deadline = 0
        while True:
            g1 = GENERATION.unpack_from(mm, HOT_OFFSET)[0]
            hot = HOT.unpack_from(mm, HOT_OFFSET)
            info = INFO.unpack_from(mm, INFO_OFFSET)
            if not g1 & 1 and g1 and GENERATION.unpack_from(mm, HOT_OFFSET)[0] == g1:
                break
            if not _keep_waiting(deadline):
                raise StaleDataError(f"{self.path}: the writer never finished a record")
            deadline = deadline or time.monotonic_ns() + WRITER_STALL_NS
        record = self._decode(g1, hot, info)
        self._record = record
        return record

    def _decode(self, generation: int, hot: tuple[Any, ...], info: tuple[Any, ...]) -> Record:
        (_g, as_of, as_of_mono, void_after, offset, drift, bound, rate, status, flags, _t) = hot
        (sigma, cov, sigma_drift, wander, last_sample, used, configured, reachable, poll,
         publish, trusted, started, pid, clock_kind, source, node_id) = info  # fmt: skip
        model = ClockModel(
            as_of_ns=int(as_of),
            offset_ns=int(offset),
            drift_ppb=float(drift),
            sigma_ns=float(sigma),
            sigma_cov_ns2_per_s=float(cov),
            sigma_drift_ppb=float(sigma_drift),
            wander_ns2_per_s=float(wander),
            bound_ns=int(bound),
            bound_rate_ppb=float(rate),
            status=ClockStatus(status)
            if status in ClockStatus._value2member_map_
            else (ClockStatus.UNKNOWN),
            last_sample_ns=int(last_sample),
            samples_used=int(used),
            source=_decode_text(source),
        )
        daemon = DaemonInfo(
            node_id=_decode_text(node_id),
            pid=int(pid),
            started_ns=int(started),
            publish_interval_ns=int(publish),
            trusted_for_ns=int(trusted),
            poll_interval_ns=int(poll),
            sources_configured=int(configured),
            sources_reachable=int(reachable),
            clock_kind=int(clock_kind),
            clock_params=self.clock_params,
        )
        return Record(
            generation=generation,
            model=model,
            as_of_monotonic_ns=int(as_of_mono),
            void_after_monotonic_ns=int(void_after),
            flags=int(flags),
            info=daemon,
        )


def describe_layout() -> list[tuple[int, int, str, str]]:
    """(offset, size, struct code, field) of every field; docs/shm-layout.md must agree."""
    rows: list[tuple[int, int, str, str]] = []
    groups = [
        (0, HEADER, ["magic", "layout_version", "hot_offset", "segment_size"]),
        (HOT_OFFSET, HOT, ["generation", "as_of_realtime_ns", "as_of_monotonic_ns",
                           "void_after_monotonic_ns", "offset_ns", "drift_ppb", "bound_ns",
                           "bound_rate_ppb", "status", "flags", "generation_tail"]),
        (INFO_OFFSET, INFO, ["sigma_ns", "sigma_cov_ns2_per_s", "sigma_drift_ppb",
                             "wander_ns2_per_s", "last_sample_realtime_ns", "samples_used",
                             "sources_configured", "sources_reachable", "poll_interval_ns",
                             "publish_interval_ns", "trusted_for_ns", "daemon_started_realtime_ns",
                             "writer_pid", "clock_kind", "source", "node_id"]),
    ]  # fmt: skip
    for base, st, names in groups:
        offset = base
        codes = re.findall(r"\d*[a-zA-Z]", st.format[1:])
        for code, field in zip(codes, names, strict=True):
            size = struct.calcsize("<" + code)
            rows.append((offset, size, code, field))
            offset += size
    rows.append(
        (CLOCK_PARAMS_OFFSET, CLOCK_PARAMS_SIZE, f"{CLOCK_PARAMS_SIZE}s", "clock_params_json")
    )
    return rows
