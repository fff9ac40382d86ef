"""ChronoTickClient: the corrected clock for any local process, read from shared memory.

A read costs a few loads from the segment and two clock reads (CLOCK_REALTIME for the time,
CLOCK_MONOTONIC for the data's age and to notice a clock step the daemon has not seen yet).
No system call beyond the clock reads (vDSO on Linux), no socket, no lock.

`now()` and `now_ns()` run in C (chronotick/_fastread.c) when that optional extension is built,
and in Python otherwise or with CHRONOTICK_PURE_PYTHON=1; the answers are the same to the
nanosecond. The C reader answers None for anything but a plain interval, and the Python path
then decides (and raises the right exception). `get_time()` reuses the decoded record while
the segment's generation is unchanged, so a read between two publications decodes nothing.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from types import TracebackType
from typing import Any

from chronotick.model import NS_PER_S, ClockModel
from chronotick.shm import (
    DEFAULT_SHM_NAME,
    FLAG_CLOSED,
    HOT,
    HOT_OFFSET,
    LAYOUT_VERSION,
    ClockDisruptedError,
    IncompatibleLayoutError,
    NoDaemonError,
    NotSynchronizedError,
    Record,
    SegmentReader,
    ShmError,
    StaleDataError,
)
from chronotick.status import ClockStatus

__all__ = [
    "ChronoTickClient",
    "ClockDisruptedError",
    "IncompatibleLayoutError",
    "NoDaemonError",
    "NotSynchronizedError",
    "ShmError",
    "StaleDataError",
    "TimeInfo",
    "ToleranceError",
]

#: a clock step the reader notices by itself: realtime and monotonic disagree by more than this
#: plus 500 ppm of the data's age (their rates differ by at most the slew of an NTP daemon)
STEP_TOLERANCE_NS = 1_000_000

# Looked up once: on Python 3.11 an enum member or property access through the class costs
# more than the arithmetic of a read.
_unpack_hot = HOT.unpack_from
_SQRT2 = math.sqrt(2.0)
_GIVES_INTERVAL = frozenset(status for status in ClockStatus if status.gives_interval)
_SYNCHRONIZED = ClockStatus.SYNCHRONIZED
_FREE_RUNNING = ClockStatus.FREE_RUNNING
_DISRUPTED = ClockStatus.DISRUPTED


@dataclasses.dataclass(frozen=True)
class TimeInfo:
    """One corrected reading.

    Times are seconds since the Unix epoch as floats (like `time.time()`) and as integer
    nanoseconds. `uncertainty_seconds` is σ: about 68 % of true errors lie within ±σ and 95 %
    within ±2σ. `error_bound_seconds` is the half-width of an interval that contains true time
    as long as the servers' own error bounds hold. `confidence` is the probability, under the
    σ model, that true time lies inside that interval (erf(bound / σ√2)); 0 when the status
    gives no interval. `offset_correction` is what was added to the raw clock, `drift_rate`
    the estimated rate of the raw clock's error (seconds per second; 1e-6 is 1 ppm), and
    `data_age_seconds` the age of the newest measurement behind the model.
    """

    corrected_timestamp: float
    corrected_time_ns: int
    system_timestamp: float
    system_time_ns: int
    uncertainty_seconds: float
    error_bound_seconds: float
    earliest_timestamp: float
    latest_timestamp: float
    confidence: float
    source: str
    status: ClockStatus
    offset_correction: float
    drift_rate: float
    data_age_seconds: float
    samples_used: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: status by name, infinite figures as None."""
        out: dict[str, Any] = dataclasses.asdict(self)
        out["status"] = self.status.name
        for key, value in out.items():
            if isinstance(value, float) and not math.isfinite(value):
                out[key] = None
        return out


_new_object = object.__new__
_set_attribute = object.__setattr__


def _new_time_info(**fields: Any) -> TimeInfo:
    """TimeInfo(**fields), in a third of the time.

    A frozen dataclass's __init__ stores each field with its own object.__setattr__ call: for
    TimeInfo's 15 fields that was most of what get_time() cost. This gives the new instance its
    field dict in one step instead. The object is the same (equal, same repr and hash, still
    frozen: tests check), as long as TimeInfo has no __post_init__ and no slots.
    """
    info: TimeInfo = _new_object(TimeInfo)
    _set_attribute(info, "__dict__", fields)
    return info


def _time_info(model: ClockModel, status: ClockStatus, system_ns: int) -> TimeInfo:
    if status not in _GIVES_INTERVAL:
        system_s = system_ns / NS_PER_S
        return _new_time_info(
            corrected_timestamp=system_s,
            corrected_time_ns=system_ns,
            system_timestamp=system_s,
            system_time_ns=system_ns,
            uncertainty_seconds=math.inf,
            error_bound_seconds=math.inf,
            earliest_timestamp=-math.inf,
            latest_timestamp=math.inf,
            confidence=0.0,
            source=model.source,
            status=status,
            offset_correction=0.0,
            drift_rate=0.0,
            data_age_seconds=math.inf,
            samples_used=model.samples_used,
        )
    # ClockModel.corrected_ns and bound_at, inlined as in interval_from_hot (tests hold them
    # equal); sigma_at stays a call
    dt = system_ns - model.as_of_ns if system_ns > model.as_of_ns else 0
    corrected = system_ns + model.offset_ns + int(model.drift_ppb * dt * 1e-9)
    bound = model.bound_ns + int(model.bound_rate_ppb * dt * 1e-9)
    sigma = model.sigma_at(system_ns)
    confidence = math.erf(bound / (sigma * _SQRT2)) if sigma > 0 else 1.0
    return _new_time_info(
        corrected_timestamp=corrected / NS_PER_S,
        corrected_time_ns=corrected,
        system_timestamp=system_ns / NS_PER_S,
        system_time_ns=system_ns,
        uncertainty_seconds=sigma / NS_PER_S,
        error_bound_seconds=bound / NS_PER_S,
        earliest_timestamp=(corrected - bound) / NS_PER_S,
        latest_timestamp=(corrected + bound) / NS_PER_S,
        confidence=confidence,
        source=model.source,
        status=status,
        offset_correction=(corrected - system_ns) / NS_PER_S,
        drift_rate=model.drift_ppb * 1e-9,
        data_age_seconds=max(0, system_ns - model.last_sample_ns) / NS_PER_S,
        samples_used=model.samples_used,
    )


def _interval(model: ClockModel, t: int) -> tuple[int, int]:
    corrected, half = model.corrected_ns(t), model.bound_at(t)
    return corrected - half, corrected + half


def interval_from_hot(fields: tuple[Any, ...], t: int, m: int) -> tuple[int, int] | None:
    """(earliest, latest) from a consistent copy of the hot fields (`HOT`), a base-clock
    reading `t` and a CLOCK_MONOTONIC reading `m` taken after the copy; None when the record
    gives no interval then (status, closed, stale, or a clock step since it was written).

    The rules of docs/shm-layout.md, "Using a record", with ClockModel.corrected_ns and bound_at
    inlined for speed (tests hold them equal). The C reader (chronotick/_fastread.c) computes
    the same thing with the same double operations in the same order, and is tested against
    this function to the nanosecond.
    """
    (_g, as_of, as_of_mono, void_after, offset, drift, bound, rate, status, flags, _tail) = fields
    age = m - as_of_mono
    if (
        (status == 1 or status == 2)
        and m <= void_after
        and not flags & FLAG_CLOSED
        and abs(t - as_of - age) <= (STEP_TOLERANCE_NS + (abs(age) >> 11))
    ):
        dt = t - as_of if t > as_of else 0
        corrected = t + offset + int(drift * dt * 1e-9)
        half = bound + int(rate * dt * 1e-9)
        return corrected - half, corrected + half
    return None


class ToleranceError(ShmError, ValueError):
    """The clock's error bound is wider than the tolerance a caller asked for."""


def _check_tolerance(info: TimeInfo, tolerance_ms: float) -> None:
    if not info.status.gives_interval:
        raise NotSynchronizedError(
            f"no interval to wait on (status {info.status.name})", info.status
        )
    if info.error_bound_seconds * 1000.0 > tolerance_ms:
        raise ToleranceError(
            f"error bound ±{info.error_bound_seconds * 1e3:.3f} ms exceeds the tolerance "
            f"±{tolerance_ms:.3f} ms (status {info.status.name})"
        )


class ChronoTickClient:
    """Reads the daemon's segment. Safe to construct before the daemon starts.

    `shm_name=None` reads $CHRONOTICK_SHM_NAME, else the default segment `chronotick`;
    `shm_dir=None` reads $CHRONOTICK_SHM_DIR, else /dev/shm (the daemon's `shm_dir`).
    Errors: NoDaemonError (no segment, or its daemon shut down), StaleDataError (the daemon
    stopped publishing), IncompatibleLayoutError (another layout version), and from `now()`
    NotSynchronizedError / ClockDisruptedError when no interval can be given.
    """

    def __init__(
        self, shm_name: str | None = None, *, shm_dir: str | None = None, fast_path: bool = True
    ) -> None:
        """`fast_path=False` keeps `now()` in Python even where the C extension is built."""
        name = shm_name or os.environ.get("CHRONOTICK_SHM_NAME") or DEFAULT_SHM_NAME
        self._reader = SegmentReader(name, fast_path=fast_path, directory=shm_dir)
        self.shm_name = name

    @property
    def uses_fast_path(self) -> bool:
        """Whether `now()` currently reads in C (after the first read has attached)."""
        return self._reader.fast is not None

    def __enter__(self) -> ChronoTickClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._reader.close()

    # -- full reads -------------------------------------------------------------------------

    def _read(self) -> tuple[Record, ClockStatus, int, int]:
        """The current record, the status a read has now, and the clock readings after it."""
        record, realtime, mono = self._reader.read()
        if record.flags & FLAG_CLOSED:
            raise NoDaemonError(f"the daemon of segment {self.shm_name!r} has shut down")
        if mono > record.void_after_monotonic_ns:
            age_s = (mono - record.as_of_monotonic_ns) / NS_PER_S
            raise StaleDataError(
                f"segment {self.shm_name!r} was last written {age_s:.1f} s ago: "
                "the daemon stopped publishing (hung or killed)"
            )
        model = record.model
        status = model.status
        elapsed_real = realtime - model.as_of_ns
        elapsed_mono = mono - record.as_of_monotonic_ns
        if status in _GIVES_INTERVAL and abs(elapsed_real - elapsed_mono) > STEP_TOLERANCE_NS + (
            abs(elapsed_mono) >> 11
        ):
            status = _DISRUPTED
        elif status is _SYNCHRONIZED and elapsed_mono > record.info.trusted_for_ns:
            status = _FREE_RUNNING
        return record, status, realtime, mono

    def get_time(self) -> TimeInfo:
        record, status, realtime, _mono = self._read()
        return _time_info(record.model, status, realtime)

    def get_future_time(self, seconds: float) -> TimeInfo:
        """The reading projected `seconds` ahead: corrected time, σ and bound at that instant."""
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"seconds must be finite and >= 0, got {seconds}")
        record, status, realtime, _mono = self._read()
        return _time_info(record.model, status, realtime + round(seconds * NS_PER_S))

    # -- the hot path -------------------------------------------------------------------------

    def now_ns(self) -> tuple[int, int]:
        """(earliest, latest) in integer nanoseconds: true time lies inside."""
        fast = self._reader.fast
        if fast is not None:
            interval = fast.now_ns()
            if interval is not None:
                return interval
        return self._now_ns_python()

    def now(self) -> tuple[float, float]:
        """(earliest, latest) in seconds since the epoch, like TrueTime's TT.now()."""
        fast = self._reader.fast
        if fast is not None:
            interval = fast.now()
            if interval is not None:
                return interval
        earliest, latest = self._now_ns_python()
        return earliest / NS_PER_S, latest / NS_PER_S

    def _now_ns_python(self) -> tuple[int, int]:
        """The hot read in Python: everything the C reader leaves to Python ends here."""
        reader = self._reader
        mm = reader._mm
        if mm is None:
            mm = reader.mapping()
        fields = _unpack_hot(mm, HOT_OFFSET)
        t = reader._realtime_ns()
        m = time.monotonic_ns()
        g = fields[0]
        if g != fields[10] or g & 1 or not g:  # mid-write: wait for a whole record
            fields = reader.read_hot()
            t = reader._realtime_ns()
            m = time.monotonic_ns()
        interval = interval_from_hot(fields, t, m)
        return interval if interval is not None else self._refuse()

    def _refuse(self) -> tuple[int, int]:
        """Why the hot path could not give an interval, as the matching exception."""
        record, status, realtime, _mono = self._read()  # raises: closed, stale, replaced
        if status is ClockStatus.DISRUPTED:
            raise ClockDisruptedError(
                "the clock stepped or the host slept: the daemon is restarting its model"
            )
        if not status.gives_interval:
            raise NotSynchronizedError(
                f"the daemon has no usable model yet (status {status.name}, "
                f"{record.model.samples_used} samples)",
                status,
            )
        # the hot path refused but the full read accepts (a record that changed in between):
        # answer from the full read rather than calling the hot path again
        return _interval(record.model, realtime)

    # -- waiting ----------------------------------------------------------------------------

    def wait_until(self, target: float, tolerance_ms: float = 1.0, spin_ms: float = 2.0) -> float:
        """Sleep until corrected time reaches `target` (seconds since the epoch), then spin.

        The last `spin_ms` are spun (microsecond precision on an idle host). With `spin_ms=0`
        it sleeps to the target instead (about 0.1 ms late): on a host where many processes
        wake for the same instant, spinners would take the CPU from each other.

        Returns how late (positive) or early (negative) it woke, in seconds of corrected time.
        The model is re-read while sleeping, so a correction that arrives meanwhile is obeyed.
        Raises ToleranceError (a ValueError) if the clock's error bound at the target exceeds
        `tolerance_ms`, before sleeping or at the wake-up, and NotSynchronizedError or
        ClockDisruptedError if the clock stops giving an interval while waiting: a caller is
        never woken by a clock that can no longer be trusted without being told.
        """
        if not math.isfinite(target):
            raise ValueError(f"target must be a finite number of seconds, got {target}")
        if not math.isfinite(tolerance_ms) or tolerance_ms <= 0:
            raise ValueError(f"tolerance_ms must be a positive finite number, got {tolerance_ms}")
        if not math.isfinite(spin_ms) or spin_ms < 0:
            raise ValueError(f"spin_ms must be a finite number >= 0, got {spin_ms}")
        spin_ns = round(spin_ms * 1e6)
        target_ns = round(target * NS_PER_S)
        info = self.get_time()
        ahead_s = max(0.0, (target_ns - info.corrected_time_ns) / NS_PER_S)
        projected = self.get_future_time(ahead_s)
        _check_tolerance(projected, tolerance_ms)
        while True:
            remaining = target_ns - self._trusted_time(tolerance_ms).corrected_time_ns
            if remaining <= spin_ns:
                break
            time.sleep(min((remaining - spin_ns) / NS_PER_S, 1.0))
        while True:
            info = self.get_time()
            if info.corrected_time_ns >= target_ns:
                _check_tolerance(self._trusted_time(tolerance_ms), tolerance_ms)
                return (info.corrected_time_ns - target_ns) / NS_PER_S
            if not spin_ns:
                time.sleep((target_ns - info.corrected_time_ns) / NS_PER_S)

    def _trusted_time(self, tolerance_ms: float) -> TimeInfo:
        info = self.get_time()
        if info.status is ClockStatus.DISRUPTED:
            raise ClockDisruptedError("the clock stepped while waiting: the wait is void")
        if not info.status.gives_interval:
            raise NotSynchronizedError(
                f"the clock lost its model while waiting (status {info.status.name})",
                info.status,
            )
        return info

    # -- daemon ------------------------------------------------------------------------------

    def is_daemon_ready(self) -> bool:
        """True when a daemon publishes a usable model (SYNCHRONIZED or FREE_RUNNING)."""
        try:
            _record, status, _realtime, _mono = self._read()
        except ShmError:
            return False
        return status.gives_interval

    def get_daemon_info(self) -> dict[str, Any]:
        """What the daemon says of itself, plus the status a read would have now."""
        record, status, realtime, mono = self._read()
        info, model = record.info, record.model
        return {
            "shm_name": self.shm_name,
            "segment_path": self._reader.path,
            "layout_version": LAYOUT_VERSION,
            "node_id": info.node_id,
            "pid": info.pid,
            "status": status.name,
            "published_status": model.status.name,
            "uptime_seconds": (realtime - info.started_ns) / NS_PER_S,
            "publish_interval_seconds": info.publish_interval_ns / NS_PER_S,
            "poll_interval_seconds": info.poll_interval_ns / NS_PER_S,
            "sources_configured": info.sources_configured,
            "sources_reachable": info.sources_reachable,
            "samples_used": model.samples_used,
            "source": model.source,
            "publish_age_seconds": (mono - record.as_of_monotonic_ns) / NS_PER_S,
            "simulated_clock": info.clock_params.to_json() if info.clock_params else None,
        }
