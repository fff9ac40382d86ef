"""The history ring: a point per interval (and at every status change), bounded by age and by
count, read back by age with points thinned evenly."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from chronotick.estimation.samples import Sample
from chronotick.history import History, thin
from chronotick.model import ClockModel
from chronotick.status import ClockStatus
from tests.helpers.segments import model_at

S = 1_000_000_000
T0 = 1_760_000_000 * S


def test_one_point_per_interval_and_one_at_every_status_change() -> None:
    history = History(span_s=60, point_interval_s=1.0)
    kept = []
    for k in range(50):  # 10 Hz for 5 s
        mono = k * S // 10
        status = ClockStatus.FREE_RUNNING if k >= 23 else ClockStatus.SYNCHRONIZED
        kept.append(history.add_point(mono, T0 + mono, model_at(T0 + mono, status=status)))
    points = history.snapshot(5 * S).points
    # at 0, 1, 2 s, the change at 2.3 s, then 3.3 and 4.3 s
    assert [p.monotonic_ns for p in points] == [0, S, 2 * S, 23 * S // 10, 33 * S // 10,
                                                43 * S // 10]  # fmt: skip
    assert sum(kept) == 6
    assert [p.status for p in points[2:4]] == [ClockStatus.SYNCHRONIZED, ClockStatus.FREE_RUNNING]


def test_a_point_is_the_model_read_at_its_instant() -> None:
    history = History()
    model = model_at(T0)
    at = T0 + 2 * S
    history.add_point(7, at, model, consensus_offset_ns=-1234)
    (point,) = history.snapshot(7).points
    assert point.offset_ns == model.offset_at(at)
    assert point.sigma_ns == round(model.sigma_at(at))
    assert point.bound_ns == model.bound_at(at)
    assert (point.base_ns, point.source, point.consensus_offset_ns) == (at, model.source, -1234)
    # no interval: no σ or bound (σ is infinite in such a model)
    history.add_point(8, at, ClockModel.unknown(at, ClockStatus.DISRUPTED))
    last = history.snapshot(8).points[-1]
    assert (last.status, last.sigma_ns, last.bound_ns) == (ClockStatus.DISRUPTED, 0, 0)


def test_memory_is_bounded_by_age_and_by_count() -> None:
    history = History(span_s=100, point_interval_s=1.0, max_samples=50, max_changes=4)
    for k in range(1000):
        mono = k * S
        history.add_point(mono, T0 + mono, model_at(T0 + mono))
        history.add_sample(mono, Sample(T0 + mono, k, 100_000, "a"), "")
        history.add_change(mono, T0 + mono, ClockStatus.UNKNOWN, ClockStatus.SYNCHRONIZED, "x")
    snap = history.snapshot(999 * S)
    # by age: the last 100 s of points; by count: 50 samples, 4 changes
    assert [p.monotonic_ns for p in snap.points] == [k * S for k in range(899, 1000)]
    assert [s.offset_ns for s in snap.samples] == list(range(950, 1000))
    assert len(snap.changes) == 4
    # and the deques themselves hold no more than that
    assert len(history._points) <= 101 and len(history._samples) == 50


def test_snapshot_since_and_limits() -> None:
    history = History(span_s=3600)
    for k in range(600):
        history.add_point(k * S, T0 + k * S, model_at(T0 + k * S))
        history.add_sample(k * S, Sample(T0 + k * S, k, 1, "a"), "outlier" if k % 2 else "")
    snap = history.snapshot(599 * S, since_s=10.0)
    assert [p.monotonic_ns // S for p in snap.points] == list(range(589, 600))
    assert [s.rejected for s in snap.samples[:2]] == ["outlier", ""]
    capped = history.snapshot(599 * S, max_points=100, max_samples=7)
    assert len(capped.points) == 100
    assert capped.points[0].monotonic_ns == 0 and capped.points[-1].monotonic_ns == 599 * S
    assert [s.offset_ns for s in capped.samples] == list(range(593, 600))


def test_thin_spreads_evenly_and_keeps_both_ends() -> None:
    items = list(range(1001))
    assert thin(items, 0) == items and thin(items, 2000) == items
    assert thin(items, 11) == list(range(0, 1001, 100))
    assert thin(items, 1) == [1000]
    assert thin([], 5) == []


def test_readers_and_a_writer_at_once() -> None:
    """The gRPC threads read while the daemon's thread writes: no error, no torn snapshot."""
    history = History(span_s=5, point_interval_s=0.001)
    errors: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        try:
            while not stop.is_set():
                snap = history.snapshot(10**12)
                times = [p.monotonic_ns for p in snap.points]
                assert times == sorted(times)
        except BaseException as exc:  # reported below
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(2)]
    for r in readers:
        r.start()
    model = model_at(T0)
    for k in range(20_000):
        history.add_point(k * 1_000_000, T0, dataclasses.replace(model, offset_ns=k))
    stop.set()
    for r in readers:
        r.join()
    assert errors == []


@pytest.mark.parametrize(
    "kwargs",
    [{"span_s": 0}, {"span_s": float("nan")}, {"point_interval_s": 0},
     {"span_s": 10, "point_interval_s": 11}, {"max_samples": 0}],
)  # fmt: skip
def test_bad_sizes_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        History(**kwargs)  # type: ignore[arg-type]
