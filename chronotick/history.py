"""What the clock did recently, kept in memory for people to look at. No I/O.

The daemon records its published model about once a second, every NTP sample with the verdict
it got, and every change of the published status with its reason; `chronotick-node report`
reads them back over the peer service to summarize and plot them. Nothing here feeds the
estimation: the ring only looks back.

Memory is bounded twice: by age (`span_s`, an hour by default) and by count (deques with a
maximum length), so that a fast publish rate or a burst of samples cannot make it grow. Times
are kept on two clocks: the monotonic one orders and ages entries (a step of the base clock
must not drop or reorder them), the base clock says when, for a plot and for the logs.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import threading
from collections.abc import Sequence
from typing import TypeVar

from chronotick.estimation.samples import Sample
from chronotick.model import NS_PER_S, ClockModel
from chronotick.status import ClockStatus

#: how far back the daemon keeps its history
DEFAULT_SPAN_S = 3600.0
#: one point of the published model per this many seconds (and one at every status change)
DEFAULT_POINT_INTERVAL_S = 1.0
DEFAULT_MAX_SAMPLES = 4096
DEFAULT_MAX_CHANGES = 256

_T = TypeVar("_T")


@dataclasses.dataclass(frozen=True, slots=True)
class HistoryPoint:
    """The published model at one instant: correction (true − base clock), σ, bound."""

    monotonic_ns: int
    base_ns: int
    offset_ns: int
    #: 0 when the status gives no interval
    sigma_ns: int
    bound_ns: int
    status: ClockStatus
    source: str
    #: the peers' consensus of true − base clock at `base_ns`; None without one
    consensus_offset_ns: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class SampleRecord:
    """One NTP sample and the verdict it got: "" taken, else why it was refused."""

    monotonic_ns: int
    base_ns: int
    server: str
    offset_ns: int
    delay_ns: int
    rejected: str


@dataclasses.dataclass(frozen=True, slots=True)
class StatusChangeRecord:
    monotonic_ns: int
    base_ns: int
    old: ClockStatus
    new: ClockStatus
    reason: str


@dataclasses.dataclass(frozen=True)
class HistorySnapshot:
    """A consistent copy of part of the history, oldest first."""

    points: tuple[HistoryPoint, ...]
    samples: tuple[SampleRecord, ...]
    changes: tuple[StatusChangeRecord, ...]


class History:
    """Bounded rings of points, samples and status changes; safe to read from other threads
    while the daemon's thread writes."""

    def __init__(
        self,
        span_s: float = DEFAULT_SPAN_S,
        point_interval_s: float = DEFAULT_POINT_INTERVAL_S,
        max_samples: int = DEFAULT_MAX_SAMPLES,
        max_changes: int = DEFAULT_MAX_CHANGES,
    ) -> None:
        if not (math.isfinite(span_s) and span_s > 0):
            raise ValueError(f"span_s must be positive, not {span_s}")
        if not (math.isfinite(point_interval_s) and 0 < point_interval_s <= span_s):
            raise ValueError(f"point_interval_s must be in (0, span_s], not {point_interval_s}")
        if max_samples < 1 or max_changes < 1:
            raise ValueError("max_samples and max_changes must be at least 1")
        self.span_ns = int(span_s * NS_PER_S)
        self.point_interval_ns = int(point_interval_s * NS_PER_S)
        # status changes add points beyond one per interval: room for them too
        max_points = math.ceil(span_s / point_interval_s) + max_changes
        self._points: collections.deque[HistoryPoint] = collections.deque(maxlen=max_points)
        self._samples: collections.deque[SampleRecord] = collections.deque(maxlen=max_samples)
        self._changes: collections.deque[StatusChangeRecord] = collections.deque(maxlen=max_changes)
        self._lock = threading.Lock()

    @property
    def span_s(self) -> float:
        return self.span_ns / NS_PER_S

    def add_point(
        self,
        monotonic_ns: int,
        base_ns: int,
        model: ClockModel,
        consensus_offset_ns: int | None = None,
    ) -> bool:
        """The published `model` read at base-clock `base_ns`, kept when a point interval has
        passed since the last one or the status changed; returns whether it was kept."""
        with self._lock:
            last = self._points[-1] if self._points else None
            if (
                last is not None
                and last.status is model.status
                and monotonic_ns - last.monotonic_ns < self.point_interval_ns
            ):
                return False
            if model.status.gives_interval and math.isfinite(model.sigma_at(base_ns)):
                offset, sigma, bound = (
                    model.offset_at(base_ns),
                    round(model.sigma_at(base_ns)),
                    model.bound_at(base_ns),
                )
            else:
                offset, sigma, bound = model.offset_ns, 0, 0
            self._points.append(
                HistoryPoint(
                    monotonic_ns,
                    base_ns,
                    offset,
                    sigma,
                    bound,
                    model.status,
                    model.source,
                    consensus_offset_ns,
                )
            )
            self._prune(monotonic_ns)
            return True

    def add_sample(self, monotonic_ns: int, sample: Sample, rejected: str) -> None:
        with self._lock:
            self._samples.append(
                SampleRecord(
                    monotonic_ns,
                    sample.local_ns,
                    sample.source,
                    sample.offset_ns,
                    sample.delay_ns,
                    rejected,
                )
            )
            self._prune(monotonic_ns)

    def add_change(
        self, monotonic_ns: int, base_ns: int, old: ClockStatus, new: ClockStatus, reason: str
    ) -> None:
        with self._lock:
            self._changes.append(StatusChangeRecord(monotonic_ns, base_ns, old, new, reason))
            self._prune(monotonic_ns)

    def _prune(self, now_monotonic_ns: int) -> None:
        horizon = now_monotonic_ns - self.span_ns
        for ring in (self._points, self._samples, self._changes):
            while ring and ring[0].monotonic_ns < horizon:
                ring.popleft()

    def snapshot(
        self,
        now_monotonic_ns: int,
        since_s: float = 0.0,
        max_points: int = 0,
        max_samples: int = 0,
    ) -> HistorySnapshot:
        """What happened in the last `since_s` seconds (0: all kept): points thinned evenly
        to at most `max_points` (0: all), the newest `max_samples` samples (0: all)."""
        horizon = now_monotonic_ns - self.span_ns
        if since_s > 0:
            horizon = max(horizon, now_monotonic_ns - int(since_s * NS_PER_S))
        with self._lock:
            points = [p for p in self._points if p.monotonic_ns >= horizon]
            samples = [s for s in self._samples if s.monotonic_ns >= horizon]
            changes = [c for c in self._changes if c.monotonic_ns >= horizon]
        if max_samples > 0:
            samples = samples[-max_samples:]
        return HistorySnapshot(tuple(thin(points, max_points)), tuple(samples), tuple(changes))


def thin(items: Sequence[_T], limit: int) -> list[_T]:
    """At most `limit` items spread evenly, the first and the last always among them (a
    plot of the thinned points spans the same time); `limit` 0 keeps them all."""
    n = len(items)
    if limit <= 0 or n <= limit:
        return list(items)
    if limit == 1:
        return [items[-1]]
    return [items[round(k * (n - 1) / (limit - 1))] for k in range(limit)]
