"""ChronoTickClient: the corrected clock for any local process, read from shared memory.

A read costs one `struct` unpack of the segment and two clock reads (CLOCK_REALTIME for the
time, CLOCK_MONOTONIC for the data's age and to notice a clock step the daemon has not seen yet).
No system call beyond the clock reads, no socket, no lock.
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
    SegmentReader,
    ShmError,
    Snapshot,
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
]

#: a clock step the reader notices by itself: realtime and monotonic disagree by more than this
#: plus 500 ppm of the data's age (their rates differ by at most the slew of an NTP daemon)
STEP_TOLERANCE_NS = 1_000_000
#: wait_until sleeps until this close to the target, then spins
SPIN_NS = 2_000_000


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


def _time_info(model: ClockModel, status: ClockStatus, system_ns: int) -> TimeInfo:
    if not status.gives_interval:
        system_s = system_ns / NS_PER_S
        return TimeInfo(
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
    corrected = model.corrected_ns(system_ns)
    sigma = model.sigma_at(system_ns)
    bound = model.bound_at(system_ns)
    confidence = math.erf(bound / (sigma * math.sqrt(2.0))) if sigma > 0 else 1.0
    return TimeInfo(
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


class ChronoTickClient:
    """Reads the daemon's segment. Safe to construct before the daemon starts.

    `shm_name=None` reads $CHRONOTICK_SHM_NAME, else the default segment `chronotick`.
    Errors: NoDaemonError (no segment, or its daemon shut down), StaleDataError (the daemon
    stopped publishing), IncompatibleLayoutError (another layout version), and from `now()`
    NotSynchronizedError / ClockDisruptedError when no interval can be given.
    """

    def __init__(self, shm_name: str | None = None) -> None:
        name = shm_name or os.environ.get("CHRONOTICK_SHM_NAME") or DEFAULT_SHM_NAME
        self._reader = SegmentReader(name)
        self.shm_name = name

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

    def _snapshot(self) -> tuple[Snapshot, ClockStatus]:
        snap = self._reader.snapshot()
        if snap.flags & FLAG_CLOSED:
            raise NoDaemonError(f"the daemon of segment {self.shm_name!r} has shut down")
        if snap.monotonic_ns > snap.void_after_monotonic_ns:
            age_s = (snap.monotonic_ns - snap.as_of_monotonic_ns) / NS_PER_S
            raise StaleDataError(
                f"segment {self.shm_name!r} was last written {age_s:.1f} s ago: "
                "the daemon stopped publishing (hung or killed)"
            )
        status = snap.model.status
        elapsed_real = snap.realtime_ns - snap.model.as_of_ns
        elapsed_mono = snap.monotonic_ns - snap.as_of_monotonic_ns
        if status.gives_interval and abs(elapsed_real - elapsed_mono) > STEP_TOLERANCE_NS + (
            abs(elapsed_mono) >> 11
        ):
            status = ClockStatus.DISRUPTED
        elif status is ClockStatus.SYNCHRONIZED and elapsed_mono > snap.info.trusted_for_ns:
            status = ClockStatus.FREE_RUNNING
        return snap, status

    def get_time(self) -> TimeInfo:
        snap, status = self._snapshot()
        return _time_info(snap.model, status, snap.realtime_ns)

    def get_future_time(self, seconds: float) -> TimeInfo:
        """The reading projected `seconds` ahead: corrected time, σ and bound at that instant."""
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"seconds must be finite and >= 0, got {seconds}")
        snap, status = self._snapshot()
        return _time_info(snap.model, status, snap.realtime_ns + round(seconds * NS_PER_S))

    # -- the hot path -------------------------------------------------------------------------

    def now_ns(self) -> tuple[int, int]:
        """(earliest, latest) in integer nanoseconds: true time lies inside.

        Inlines ClockModel.corrected_ns and bound_at for speed (tests hold them equal).
        """
        reader = self._reader
        mm = reader._mm
        if mm is None:
            mm = reader.mapping()
        (g, as_of, as_of_mono, void_after, offset, drift, bound, rate, status, flags, tail) = (
            HOT.unpack_from(mm, HOT_OFFSET)
        )
        t = reader.realtime_ns()
        m = time.monotonic_ns()
        if g != tail or g & 1 or not g:  # mid-write: wait for a whole record
            (g, as_of, as_of_mono, void_after, offset, drift, bound, rate, status, flags, tail) = (
                reader.read_hot()
            )
            t = reader.realtime_ns()
            m = time.monotonic_ns()
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
        return self._refuse()

    def now(self) -> tuple[float, float]:
        """(earliest, latest) in seconds since the epoch, like TrueTime's TT.now()."""
        earliest, latest = self.now_ns()
        return earliest / NS_PER_S, latest / NS_PER_S

    def _refuse(self) -> tuple[int, int]:
        """Why the hot path could not give an interval, as the matching exception."""
        snap, status = self._snapshot()  # raises for closed, stale, replaced segments
        if status is ClockStatus.DISRUPTED:
            raise ClockDisruptedError(
                "the clock stepped or the host slept: the daemon is restarting its model"
            )
        if not status.gives_interval:
            raise NotSynchronizedError(
                f"the daemon has no usable model yet (status {status.name}, "
                f"{snap.model.samples_used} samples)",
                status,
            )
        # the hot path refused but the full read accepts (a record that changed in between):
        # answer from the full read rather than calling the hot path again
        return _interval(snap.model, snap.realtime_ns)

    # -- waiting ----------------------------------------------------------------------------

    def wait_until(self, target: float, tolerance_ms: float = 1.0) -> float:
        """Sleep until corrected time reaches `target` (seconds since the epoch), then spin.

        Returns how late (positive) or early (negative) it woke, in seconds of corrected time.
        The model is re-read while sleeping, so a correction that arrives meanwhile is obeyed.
        Raises ValueError if the clock's error bound at the target exceeds `tolerance_ms`
        (the wake-up could not be trusted to that tolerance).
        """
        if not math.isfinite(target):
            raise ValueError(f"target must be a finite number of seconds, got {target}")
        if not math.isfinite(tolerance_ms) or tolerance_ms <= 0:
            raise ValueError(f"tolerance_ms must be a positive finite number, got {tolerance_ms}")
        target_ns = round(target * NS_PER_S)
        info = self.get_time()
        ahead_s = max(0.0, (target_ns - info.corrected_time_ns) / NS_PER_S)
        projected = self.get_future_time(ahead_s)
        if projected.error_bound_seconds * 1000.0 > tolerance_ms:
            raise ValueError(
                f"error bound at the target ±{projected.error_bound_seconds * 1e3:.3f} ms "
                f"exceeds the tolerance ±{tolerance_ms:.3f} ms (status {projected.status.name})"
            )
        while True:
            remaining = target_ns - self.get_time().corrected_time_ns
            if remaining <= SPIN_NS:
                break
            time.sleep(min((remaining - SPIN_NS) / NS_PER_S, 1.0))
        while True:
            corrected = self.get_time().corrected_time_ns
            if corrected >= target_ns:
                return (corrected - target_ns) / NS_PER_S

    # -- daemon ------------------------------------------------------------------------------

    def is_daemon_ready(self) -> bool:
        """True when a daemon publishes a usable model (SYNCHRONIZED or FREE_RUNNING)."""
        try:
            _snap, status = self._snapshot()
        except ShmError:
            return False
        return status.gives_interval

    def get_daemon_info(self) -> dict[str, Any]:
        """What the daemon says of itself, plus the status a read would have now."""
        snap, status = self._snapshot()
        info = snap.info
        return {
            "shm_name": self.shm_name,
            "segment_path": self._reader.path,
            "layout_version": LAYOUT_VERSION,
            "node_id": info.node_id,
            "pid": info.pid,
            "status": status.name,
            "published_status": snap.model.status.name,
            "uptime_seconds": (snap.realtime_ns - info.started_ns) / NS_PER_S,
            "publish_interval_seconds": info.publish_interval_ns / NS_PER_S,
            "poll_interval_seconds": info.poll_interval_ns / NS_PER_S,
            "sources_configured": info.sources_configured,
            "sources_reachable": info.sources_reachable,
            "samples_used": snap.model.samples_used,
            "source": snap.model.source,
            "publish_age_seconds": (snap.monotonic_ns - snap.as_of_monotonic_ns) / NS_PER_S,
            "simulated_clock": info.clock_params.to_json() if info.clock_params else None,
        }
