"""AWS ClockBound's shared-memory segment (layout version 2), written beside our own.

An application already written against ClockBound (its Rust or C client, or a third-party one)
can read this host's ChronoTick daemon without changing a line. This module is the one place
that knows that layout: the struct formats, the pure computation of what goes in it, the writer,
and a small decoder for our own tests and tools. docs/clockbound.md says why it is version 2.

What is widened, and why: ClockBound's interval is centred on the *uncorrected* system clock,
`[CLOCK_REALTIME − B, CLOCK_REALTIME + B]`, while ours is centred on the corrected time. For the
ClockBound interval to hold wherever ours does, B must cover our own offset as well as our bound:
B = |offset| + bound, growing at |drift| + our bound's rate (ClockBound grows B by `max_drift`
per second since `as_of`, like our bound grows by its rate). So B is as large as the clock is
wrong; a client gets a tight interval only from a host whose clock is already disciplined.

The layout, in the CPU's native byte order (little-endian on every machine this project runs
on); offsets as in ClockBound's docs/PROTOCOL.md, version 2:

    0  u32 ×2  magic 0x414D5A4E, 0x43420200      14 u16  generation (seqlock)
    8  u32     segment size (80)                 16 i64 ×2  as_of (CLOCK_MONOTONIC_COARSE)
    12 u16     layout version (2)                32 i64 ×2  void_after (same clock)
    48 i64     bound_nsec                        56 u64  disruption marker
    64 u32     max_drift_ppb                     68 i32  clock status (0-3)
    72 u8      clock disruption support          73-79   padding (zero)

PROTOCOL.md lists the magic as the bytes 41 4D 5A 4E 43 42 02 00; ClockBound's own writer and
reader handle it as the two native u32 values above, so on a little-endian machine the file
holds 4E 5A 4D 41 00 02 42 43, and that is what its reader compares. We follow the code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import math
import mmap
import os
import struct
import sys
import time

from chronotick.model import NS_PER_S, ClockModel
from chronotick.status import ClockStatus

DEFAULT_PATH = "/var/run/clockbound/shm0"
MAGIC = (0x414D5A4E, 0x43420200)
LAYOUT_VERSION = 2
SEGMENT_SIZE = 80

#: bytes 0-15, native order ("=": standard sizes, no padding)
HEADER = struct.Struct("=IIIHH")
GENERATION_OFFSET = 14
#: bytes 16-79: as_of (s, ns), void_after (s, ns), bound, disruption marker, max drift, status,
#: disruption support, padding
BODY = struct.Struct("=qqqqqQIiB7x")
BODY_OFFSET = 16
assert HEADER.size == BODY_OFFSET and BODY_OFFSET + BODY.size == SEGMENT_SIZE

#: ClockBound's reader calls a segment with this much drift or more malformed
MAX_DRIFT_LIMIT_PPB = 1_000_000_000
_I64_MAX = (1 << 63) - 1
#: Linux's id of CLOCK_MONOTONIC_COARSE (the time module names it on few builds)
CLOCK_MONOTONIC_COARSE: int = getattr(time, "CLOCK_MONOTONIC_COARSE", 6)

#: the clock status values are the same small integers in both layouts (chronotick/status.py
#: chose them so); the table says so explicitly rather than trusting it
_STATUS_CODE = {
    ClockStatus.UNKNOWN: 0,
    ClockStatus.SYNCHRONIZED: 1,
    ClockStatus.FREE_RUNNING: 2,
    ClockStatus.DISRUPTED: 3,
}


def coarse_monotonic_ns() -> int:
    """CLOCK_MONOTONIC_COARSE, the clock of `as_of` and `void_after`.

    It lags CLOCK_MONOTONIC by up to a kernel tick, so an `as_of` read from it is never later
    than a reader's fine or coarse monotonic reading made afterwards (ClockBound's reader
    refuses one more than 1 µs in its future). An earlier `as_of` only grows B a little more.
    """
    return time.clock_gettime_ns(CLOCK_MONOTONIC_COARSE)


class ClockBoundLayoutError(ValueError):
    """The bytes are not a ClockBound version-2 segment (or not a finished one)."""


@dataclasses.dataclass(frozen=True)
class ClockBoundRecord:
    """The body of the segment. Times are CLOCK_MONOTONIC_COARSE nanoseconds."""

    as_of_ns: int
    void_after_ns: int
    bound_ns: int
    max_drift_ppb: int
    status: ClockStatus
    disruption_marker: int = 0
    #: true would tell ClockBound's clients to check the marker against a VMClock device, which
    #: this daemon does not read; it detects steps and suspends itself and says DISRUPTED
    disruption_support: bool = False

    def bound_at(self, monotonic_ns: int) -> int:
        """B at a reader's monotonic time, grown as ClockBound's clients grow it."""
        age_ns = max(0, monotonic_ns - self.as_of_ns)
        return self.bound_ns + age_ns * self.max_drift_ppb // NS_PER_S


def record_for(
    model: ClockModel,
    realtime_ns: int,
    as_of_ns: int,
    read_gap_ns: int,
    void_after_ns: int,
) -> ClockBoundRecord:
    """The record that bounds the uncorrected system clock with `model`.

    `realtime_ns` is the CLOCK_REALTIME reading the model is evaluated at; `as_of_ns` a
    CLOCK_MONOTONIC_COARSE reading taken before it, and `read_gap_ns` the fine monotonic time
    from that coarse reading to just after `realtime_ns`. B is |offset| + bound at `realtime_ns`;
    between `as_of_ns` and that instant |offset| may have been larger by up to |drift| × the
    gap, which the margin covers. Both clocks advance at one rate (the kernel slews them alike;
    a step of CLOCK_REALTIME is a disruption, which the daemon reports).
    """
    void_after = as_of_ns + void_after_ns
    status = model.status
    if not status.gives_interval:
        return ClockBoundRecord(as_of_ns, void_after, 0, 0, status)
    if not (math.isfinite(model.drift_ppb) and math.isfinite(model.bound_rate_ppb)):
        return ClockBoundRecord(as_of_ns, void_after, 0, 0, ClockStatus.UNKNOWN)
    drift = abs(model.drift_ppb)
    rate = drift + max(0.0, model.bound_rate_ppb)
    offset = model.offset_at(realtime_ns)
    bound = model.bound_at(realtime_ns)
    if bound < 0:
        return ClockBoundRecord(as_of_ns, void_after, 0, 0, ClockStatus.UNKNOWN)
    margin = math.ceil(drift * max(0, read_gap_ns) / NS_PER_S)
    # + 3: the model's two int() truncations and the reader's, each under 1 ns
    total = abs(offset) + bound + margin + 3
    max_drift = math.ceil(rate)
    if max_drift >= MAX_DRIFT_LIMIT_PPB or total > _I64_MAX // 2:
        # Nothing a ClockBound client would call a bound: say so instead of publishing one.
        return ClockBoundRecord(as_of_ns, void_after, 0, 0, ClockStatus.UNKNOWN)
    return ClockBoundRecord(as_of_ns, void_after, total, max_drift, status)


def next_generation(current: int) -> tuple[int, int]:
    """(odd value marking the write, even value closing it) after `current`.

    ClockBound's rules: odd while writing, even when done, 0 only for never written, so the
    closing value skips 0 on wrap (to 2). A writer that died mid-write left an odd value;
    the next write keeps it (it already says "being written").
    """
    begin = current if current & 1 else (current + 1) & 0xFFFF
    end = (begin + 1) & 0xFFFF
    return begin, end or 2


def encode_body(record: ClockBoundRecord) -> bytes:
    """The 64 bytes after the header; raises (struct.error, KeyError) before anything is written."""
    return BODY.pack(
        record.as_of_ns // NS_PER_S,
        record.as_of_ns % NS_PER_S,
        record.void_after_ns // NS_PER_S,
        record.void_after_ns % NS_PER_S,
        record.bound_ns,
        record.disruption_marker,
        record.max_drift_ppb,
        _STATUS_CODE[record.status],
        1 if record.disruption_support else 0,
    )


def encode_header(generation: int) -> bytes:
    return HEADER.pack(MAGIC[0], MAGIC[1], SEGMENT_SIZE, LAYOUT_VERSION, generation)


def decode(data: bytes) -> tuple[int, ClockBoundRecord]:
    """(generation, record) of one copy of a segment; ClockBoundLayoutError if it is not one."""
    if len(data) < SEGMENT_SIZE:
        raise ClockBoundLayoutError(f"{len(data)} bytes: a ClockBound v2 segment has 80")
    magic0, magic1, size, version, generation = HEADER.unpack_from(data, 0)
    if (magic0, magic1) != MAGIC:
        raise ClockBoundLayoutError(f"not a ClockBound segment (magic {magic0:#x} {magic1:#x})")
    if version != LAYOUT_VERSION or size < SEGMENT_SIZE:
        raise ClockBoundLayoutError(f"layout version {version}, size {size}: expected 2 and 80")
    (as_s, as_ns, void_s, void_ns, bound, marker, drift, status, support) = BODY.unpack_from(
        data, BODY_OFFSET
    )
    record = ClockBoundRecord(
        as_of_ns=as_s * NS_PER_S + as_ns,
        void_after_ns=void_s * NS_PER_S + void_ns,
        bound_ns=bound,
        max_drift_ppb=drift,
        status=ClockStatus(status) if status in (0, 1, 2, 3) else ClockStatus.UNKNOWN,
        disruption_marker=marker,
        disruption_support=bool(support),
    )
    return generation, record


def read_segment(path: str, attempts: int = 10_000) -> tuple[int, ClockBoundRecord]:
    """One consistent (generation, record) of the segment at `path`, by ClockBound's rules:
    generation read, body copied, generation read again; both equal, even and non-zero."""
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        for _ in range(attempts):
            first = int.from_bytes(mm[GENERATION_OFFSET : GENERATION_OFFSET + 2], sys.byteorder)
            data = bytes(mm[:SEGMENT_SIZE])
            second = int.from_bytes(mm[GENERATION_OFFSET : GENERATION_OFFSET + 2], sys.byteorder)
            if first == second and first and not first & 1:
                generation, record = decode(data)
                if generation == first:
                    return generation, record
            time.sleep(0)
    raise ClockBoundLayoutError(f"{path}: no finished record (the writer stopped mid-write)")


class ClockBoundWriter:
    """Writes the ClockBound segment at `path`; one writer per path (an flock on the file).

    A valid version-2 segment already at `path` is written in place, not replaced: ClockBound's
    clients map the file once and never re-open it, so a daemon restart must keep the file they
    mapped. Anything else that looks like a ClockBound segment (another version, a torn file)
    is replaced whole; a file that does not is refused, so a mistyped path never clobbers one.
    On close the record says UNKNOWN and is void at once; the file stays for the next start.
    """

    def __init__(self, path: str, void_after_ns: int) -> None:
        if not os.path.isabs(path) or "\0" in path or path.endswith("/"):
            raise ValueError(f"ClockBound segment path {path!r}: give an absolute file path")
        self.path = path
        self.void_after_ns = void_after_ns
        self._fd = self._open()
        try:
            self._mm = mmap.mmap(self._fd, SEGMENT_SIZE, mmap.MAP_SHARED)
        except BaseException:
            os.close(self._fd)
            raise
        # A native u16 view, so the generation changes in one 2-byte store (a torn store
        # could show readers a transient 0 or a wrong even value).
        self._generation = memoryview(self._mm).cast("H")
        self._index = GENERATION_OFFSET // 2

    # -- opening -----------------------------------------------------------------------------

    def _open(self) -> int:
        """A locked descriptor of the file now under `path`, holding a usable segment."""
        directory = os.path.dirname(self.path)
        try:
            os.makedirs(directory, mode=0o755, exist_ok=True)
        except OSError as exc:
            raise RuntimeError(
                f"cannot create the ClockBound directory {directory}: {exc.strerror}"
            ) from None
        for _ in range(20):
            try:
                fd = os.open(self.path, os.O_RDWR)
            except FileNotFoundError:
                fd = -1
            except OSError as exc:
                raise RuntimeError(
                    f"cannot open the ClockBound segment {self.path}: {exc.strerror}"
                ) from None
            if fd < 0:
                new_fd = self._fresh_file(link=True)
                if new_fd >= 0:
                    return new_fd
                continue  # someone created it meanwhile: look again
            try:
                self._lock(fd)
                if not self._is_current(fd):
                    os.close(fd)
                    continue  # replaced between our open and our lock
                if self._usable(fd):
                    return fd
                new_fd = self._fresh_file(link=False)
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
            return new_fd
        raise RuntimeError(f"cannot take the ClockBound segment {self.path}: it keeps changing")

    def _lock(self, fd: int) -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise RuntimeError(
                    f"another chronotick daemon is writing the ClockBound segment {self.path}"
                ) from None
            raise

    def _is_current(self, fd: int) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def _usable(self, fd: int) -> bool:
        """Whether the file is a version-2 segment to continue in place; refuse a foreign one."""
        size = os.fstat(fd).st_size
        head = os.pread(fd, HEADER.size, 0)
        if size == SEGMENT_SIZE and len(head) == HEADER.size:
            magic0, magic1, seg_size, version, _generation = HEADER.unpack(head)
            if (magic0, magic1) == MAGIC and version == LAYOUT_VERSION and seg_size == size:
                return True
        if size == 0 or (len(head) >= 8 and struct.unpack_from("=II", head) == MAGIC):
            return False  # empty, or another ClockBound layout: ours to replace
        raise RuntimeError(
            f"{self.path} exists and is not a ClockBound segment; remove it or choose another "
            "--clockbound-path"
        )

    def _fresh_file(self, link: bool) -> int:
        """A new, complete segment (UNKNOWN, generation 2) put under `path` in one step.

        Built under a temporary name and locked before it appears, so readers never see a
        partial header and no second writer can take it. `link`: only if nothing is at `path`
        (returns -1 if something appeared); otherwise it replaces what is there.
        """
        directory, base = os.path.split(self.path)
        tmp = os.path.join(directory, f".{base}.{os.getpid()}.tmp")
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        except OSError as exc:
            raise RuntimeError(
                f"cannot create the ClockBound segment in {directory}: {exc.strerror}"
            ) from None
        try:
            os.fchmod(fd, 0o644)  # readable by every local user, whatever the umask
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            now = coarse_monotonic_ns()
            first = ClockBoundRecord(now, now + self.void_after_ns, 0, 0, ClockStatus.UNKNOWN)
            os.pwrite(fd, encode_header(2) + encode_body(first), 0)
            if link:
                try:
                    os.link(tmp, self.path)
                except FileExistsError:
                    os.close(fd)
                    return -1
            else:
                os.replace(tmp, self.path)
            return fd
        except OSError as exc:
            os.close(fd)
            raise RuntimeError(
                f"cannot create the ClockBound segment {self.path}: {exc.strerror}"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    # -- writing -----------------------------------------------------------------------------

    @property
    def generation(self) -> int:
        return int(self._generation[self._index])

    def publish(
        self, model: ClockModel, realtime_ns: int, as_of_ns: int, read_gap_ns: int
    ) -> ClockBoundRecord:
        """Write what `model` says of the uncorrected clock (see `record_for`)."""
        record = record_for(model, realtime_ns, as_of_ns, read_gap_ns, self.void_after_ns)
        self.write(record)
        return record

    def write(self, record: ClockBoundRecord) -> None:
        """One record under ClockBound's seqlock: generation odd, body, generation even."""
        body = encode_body(record)  # packed first: nothing can fail between the two marks
        begin, end = next_generation(self.generation)
        self._generation[self._index] = begin
        self._mm[BODY_OFFSET:SEGMENT_SIZE] = body
        self._generation[self._index] = end

    def close(self) -> None:
        """Say UNKNOWN, void from now, and let go of the file (kept for the next writer)."""
        if self._mm.closed:
            return
        now = coarse_monotonic_ns()
        self.write(ClockBoundRecord(now, now, 0, 0, ClockStatus.UNKNOWN))
        self._generation.release()
        self._mm.close()
        os.close(self._fd)


def layout() -> list[tuple[int, int, str]]:
    """(offset, size, field) of every field, from the struct formats (tests hold them against
    PROTOCOL.md's offsets)."""
    names = [
        "magic_0", "magic_1", "segment_size", "version", "generation",
        "as_of_tv_sec", "as_of_tv_nsec", "void_after_tv_sec", "void_after_tv_nsec",
        "bound_nsec", "disruption_marker", "max_drift_ppb", "clock_status",
        "clock_disruption_support",
    ]  # fmt: skip
    codes = list(HEADER.format[1:]) + [c for c in BODY.format[1:] if c != "7" and c != "x"]
    rows: list[tuple[int, int, str]] = []
    offset = 0
    for code, name in zip(codes, names, strict=True):
        size = struct.calcsize("=" + code)
        rows.append((offset, size, name))
        offset += size
    return rows
