"""The C hot read (chronotick/_fastread.c) against the Python one, and the fallback between them.

The C reader must give the very answer of the Python path (`interval_from_hot`, which the
client tests hold to the ClockModel formulas) for the same record and the same clock readings,
to the nanosecond and to the last bit of the floats; and where it cannot, answer None so that
Python decides. The readings are passed in, so both paths see the same instant. Around that:
the client raises the same exceptions on both paths, falls back to Python silently when the
extension is missing, stale or switched off, and the C seqlock read never returns a torn record.

`get_time()`'s faster path (a decoded record reused while the generation is unchanged, TimeInfo
built without its frozen __init__) is checked here too.
"""

from __future__ import annotations

import dataclasses
import math
import mmap
import multiprocessing
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import chronotick
import chronotick.shm as shm
from chronotick.client import (
    STEP_TOLERANCE_NS,
    ChronoTickClient,
    TimeInfo,
    _new_time_info,
    interval_from_hot,
)
from chronotick.model import NS_PER_S, ClockModel
from chronotick.shm import (
    FLAG_CLOSED,
    HEADER,
    HOT,
    HOT_OFFSET,
    LAYOUT_VERSION,
    MAGIC,
    SEGMENT_SIZE,
    ClockDisruptedError,
    NoDaemonError,
    NotSynchronizedError,
    SegmentReader,
    SegmentWriter,
    StaleDataError,
    describe_layout,
)
from chronotick.status import ClockStatus
from tests.conftest import unavailable
from tests.helpers.segments import (
    expected_interval,
    model_at,
    publish,
    remove_segment_files,
    unique_name,
)
from tests.helpers.torn_records import hot_ok, write_forever

try:
    from chronotick import _fastread as built_fastread
except ImportError:
    built_fastread = None

S = NS_PER_S
MS = 1_000_000
US = 1_000
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
BASE_NS = 1_764_028_800_000_000_000  # 2025-11-25, ~2^60.6 ns: far above 2^53
MONO_NS = 86_400 * S


@pytest.fixture
def fastread() -> ModuleType:
    if built_fastread is None:
        unavailable("chronotick._fastread is not built (pip install -e . builds it)")
    assert built_fastread is not None
    return built_fastread


def fast_module() -> Any:
    """The extension for @given tests (which cannot take function-scoped fixtures)."""
    if built_fastread is None:
        unavailable("chronotick._fastread is not built (pip install -e . builds it)")
    return built_fastread


def anonymous_segment(hot: tuple[Any, ...], clock_kind: int = 0) -> mmap.mmap:
    """A segment in anonymous memory (page-aligned, like a mapped file) holding `hot`."""
    mm = mmap.mmap(-1, SEGMENT_SIZE)
    HEADER.pack_into(mm, 0, MAGIC, LAYOUT_VERSION, HOT_OFFSET, SEGMENT_SIZE)
    HOT.pack_into(mm, HOT_OFFSET, *hot)
    mm[180:184] = clock_kind.to_bytes(4, "little")
    return mm


def c_reads(hot: tuple[Any, ...], t: int, m: int) -> tuple[Any, Any]:
    """(now_ns, now) of the C reader for one record at readings (t, m)."""
    fastread = fast_module()
    with anonymous_segment(hot) as mm:
        reader = fastread.Reader(mm)
        try:
            copy = reader.hot_fields()  # compared as bytes: a NaN drift is not == itself
            assert copy is not None and HOT.pack(*copy) == mm[HOT_OFFSET : HOT_OFFSET + HOT.size]
            return reader.now_ns(t, m), reader.now(t, m)
        finally:
            reader.release()


def both_paths(hot: tuple[Any, ...], t: int, m: int) -> tuple[Any, Any, tuple[int, int] | None]:
    """(C now_ns, C now, Python interval_from_hot) for one record at readings (t, m)."""
    return (*c_reads(hot, t, m), interval_from_hot(hot, t, m))


def tolerance(age: int) -> int:
    return STEP_TOLERANCE_NS + (abs(age) >> 11)


# --------------------------------------------------------------------------------------------
# the extension and the Python layout agree


def test_the_extension_uses_the_layout_of_shm_py(fastread: Any) -> None:
    offsets = {field: offset for offset, _size, _code, field in describe_layout()}
    assert fastread.API_VERSION == shm.FASTREAD_API_VERSION
    assert fastread.SEGMENT_SIZE == SEGMENT_SIZE
    assert fastread.LAYOUT_VERSION == LAYOUT_VERSION
    assert fastread.HOT_OFFSET == HOT_OFFSET == offsets["generation"]
    assert fastread.FLAGS_OFFSET == shm.FLAGS_OFFSET == offsets["flags"]
    assert fastread.TAIL_OFFSET == shm.TAIL_OFFSET == offsets["generation_tail"]
    assert fastread.CLOCK_KIND_OFFSET == offsets["clock_kind"]
    assert fastread.CLOCK_PARAMS_OFFSET == offsets["clock_params_json"]
    assert fastread.FLAG_CLOSED == FLAG_CLOSED
    assert fastread.STEP_TOLERANCE_NS == STEP_TOLERANCE_NS


def test_the_client_reads_in_c_where_it_can(seg_name: str, writer: SegmentWriter) -> None:
    publish(writer)
    with ChronoTickClient(seg_name) as client:
        client.now()
        assert client.uses_fast_path is (shm.fast_reader_class is not None)
    with ChronoTickClient(seg_name, fast_path=False) as client:
        client.now()
        assert not client.uses_fast_path


# --------------------------------------------------------------------------------------------
# the same answer, to the nanosecond


@st.composite
def realistic_reads(draw: st.DrawFn) -> tuple[tuple[Any, ...], int, int]:
    """A record and readings (t, m) as a host meets them, around every rule's boundary."""
    as_of = BASE_NS + draw(st.integers(-(10**15), 10**15))
    as_of_mono = MONO_NS + draw(st.integers(-(10**12), 10**12))
    age = draw(st.one_of(st.integers(-5 * S, 3 * 3600 * S), st.sampled_from([0, 1, -1, 2048 * MS])))
    edge = draw(st.sampled_from([None, None, 0, 1]))  # on, or 1 ns past, the step tolerance
    if edge is None:
        skew = draw(st.integers(-3 * MS, 3 * MS))
    else:
        skew = draw(st.sampled_from([1, -1])) * (tolerance(age) + edge)
    m = as_of_mono + age
    t = as_of + age + skew
    void_after = m + draw(st.one_of(st.integers(-S, 3600 * S), st.sampled_from([0, -1])))
    status = draw(st.sampled_from([1, 2, 1, 2, 0, 3, 4, 2**32 - 1]))
    flags = draw(st.sampled_from([0, 0, 0, 2, FLAG_CLOSED, 3, 2**32 - 1]))
    generation = 2 * draw(st.integers(1, 2**40))
    hot = (
        generation,
        as_of,
        as_of_mono,
        void_after,
        draw(st.integers(-(10**12), 10**12)),  # offset: ±1000 s
        draw(st.floats(-500_000.0, 500_000.0)),  # drift: ±500 ppm
        draw(st.integers(0, 10**10)),  # bound: up to 10 s
        draw(st.floats(0.0, 1e6)),  # bound rate: up to 1000 ppm
        status,
        flags,
        generation,
    )
    return hot, t, m


@settings(max_examples=3000, deadline=None)
@given(case=realistic_reads())
def test_c_and_python_give_the_same_interval(case: tuple[tuple[Any, ...], int, int]) -> None:
    hot, t, m = case
    c_ns, c_s, py = both_paths(hot, t, m)
    assert c_ns == py
    if py is None:
        assert c_s is None
        return
    # the seconds are Python's int / int true division, bit for bit
    assert c_s == (py[0] / NS_PER_S, py[1] / NS_PER_S)
    # and the interval is the contract's (ClockModel)
    _g, as_of, _mono, _void, offset, drift, bound, rate, status, _flags, _t = hot
    model = ClockModel(
        as_of_ns=as_of,
        offset_ns=offset,
        drift_ppb=drift,
        sigma_ns=1.0,
        sigma_cov_ns2_per_s=0.0,
        sigma_drift_ppb=0.0,
        wander_ns2_per_s=0.0,
        bound_ns=bound,
        bound_rate_ppb=rate,
        status=ClockStatus(status),
    )
    assert py == expected_interval(model, t)


def c_defers(hot: tuple[Any, ...], t: int, m: int) -> bool:
    """Where the C reader answers None although Python may answer: beyond int64 or doubles."""
    _g, as_of, _mono, _void, offset, drift, bound, rate, _status, _flags, _t = hot
    dt = t - as_of if t > as_of else 0
    if dt > INT64_MAX:
        return True
    terms = [drift * dt * 1e-9, rate * dt * 1e-9]
    if not all(-(2.0**63) <= x < 2.0**63 for x in terms):  # NaN fails too
        return True
    corrected = t + offset + int(terms[0])
    half = bound + int(terms[1])
    return not all(INT64_MIN <= x <= INT64_MAX for x in (corrected - half, corrected + half))


int64s = st.integers(INT64_MIN, INT64_MAX)


@settings(max_examples=3000, deadline=None)
@given(
    hot=st.tuples(
        st.just(2),
        int64s,
        int64s,
        int64s,
        int64s,
        st.floats(allow_nan=True, allow_infinity=True),
        int64s,
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([1, 2]),
        st.just(0),
        st.just(2),
    ),
    t=int64s,
    m=int64s,
)
def test_c_answers_python_or_leaves_it_to_python_at_any_value(
    hot: tuple[Any, ...], t: int, m: int
) -> None:
    """Any field value at all: C never answers differently from Python; it answers None exactly
    where Python refuses, raises (NaN, infinite drift) or leaves int64 / double range."""
    c_ns, c_s = c_reads(hot, t, m)
    try:
        py = interval_from_hot(hot, t, m)
    except (ValueError, OverflowError):  # int() of NaN or of an infinity
        assert c_ns is None and c_s is None
        return
    if c_ns is not None:
        assert c_ns == py
        assert c_s == (c_ns[0] / NS_PER_S, c_ns[1] / NS_PER_S)
    else:
        assert py is None or c_defers(hot, t, m)


def test_the_refusal_rules_at_their_boundaries() -> None:
    """Each rule, one nanosecond on either side, with everything else fine."""
    as_of, as_of_mono, age = BASE_NS, MONO_NS, 10 * S
    tol = tolerance(age)

    def hot(**changes: Any) -> tuple[Any, ...]:
        fields = {
            "g": 10,
            "as_of": as_of,
            "mono": as_of_mono,
            "void": as_of_mono + age,
            "offset": 12_345,
            "drift": 100.5,
            "bound": 5_000,
            "rate": 10.25,
            "status": 1,
            "flags": 0,
            "tail": 10,
        }
        fields.update(changes)
        return tuple(fields.values())

    t, m = as_of + age, as_of_mono + age
    accepted = [
        (hot(), t, m),
        (hot(status=2), t, m),
        (hot(flags=2), t, m),  # a flag bit this reader does not know
        (hot(), t + tol, m),
        (hot(), t - tol, m),
        (hot(), as_of - 1, as_of_mono - 1),  # a reading just before as_of: Δ taken as 0
    ]
    refused = [
        (hot(status=0), t, m),
        (hot(status=3), t, m),
        (hot(status=5), t, m),
        (hot(flags=FLAG_CLOSED), t, m),
        (hot(void=as_of_mono + age - 1), t, m),  # stale by 1 ns
        (hot(), t + tol + 1, m),  # a step of just over the tolerance
        (hot(), t - tol - 1, m),
    ]
    for case in accepted:
        c_ns, c_s, py = both_paths(*case)
        assert py is not None and c_ns == py, case
        assert c_s == (py[0] / NS_PER_S, py[1] / NS_PER_S)
    for case in refused:
        assert both_paths(*case) == (None, None, None), case


@settings(max_examples=3000, deadline=None)
@given(ns=st.one_of(int64s, st.integers(BASE_NS - 10**17, BASE_NS + 10**17)))
def test_seconds_are_pythons_true_division(ns: int) -> None:
    assert fast_module().ns_to_seconds(ns) == ns / NS_PER_S


def test_seconds_at_the_edges_and_where_double_rounding_would_differ(fastread: Any) -> None:
    # converting to double first, then dividing, rounds twice: off by one ulp for these
    for ns in (1_718_189_305_743_064_004, 1_836_115_422_575_581_347):
        assert float(ns) / 1e9 != ns / NS_PER_S
        assert fastread.ns_to_seconds(ns) == ns / NS_PER_S
    for ns in (0, 1, -1, 2**53 - 1, 2**53, 2**53 + 1, -(2**53), INT64_MAX, INT64_MIN, 10**18):
        assert fastread.ns_to_seconds(ns) == ns / NS_PER_S, ns


# --------------------------------------------------------------------------------------------
# through the client, on both paths


@pytest.fixture(params=[True, False], ids=["c", "python"])
def client(request: pytest.FixtureRequest, seg_name: str) -> Iterator[ChronoTickClient]:
    with ChronoTickClient(seg_name, fast_path=request.param) as c:
        yield c


def test_now_is_the_model_interval_between_two_readings(
    writer: SegmentWriter, client: ChronoTickClient
) -> None:
    model = publish(writer, age_ns=2 * S, drift_ppb=-123_456.75)
    for _ in range(200):
        before = time.time_ns()
        earliest, latest = client.now_ns()
        earliest_s, latest_s = client.now()
        after = time.time_ns()
        lo, hi = expected_interval(model, before)
        lo_after, hi_after = expected_interval(model, after)
        assert lo <= earliest <= lo_after + 1 and hi <= latest <= hi_after + 1
        assert lo / S <= earliest_s <= lo_after / S and hi / S <= latest_s <= hi_after / S


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"status": ClockStatus.UNKNOWN}, NotSynchronizedError),
        ({"status": ClockStatus.DISRUPTED}, ClockDisruptedError),
        ({"age_ns": 10 * MS, "step_ns": 50 * MS}, ClockDisruptedError),
        ({"age_ns": 10 * MS, "step_ns": -2 * MS}, ClockDisruptedError),
        ({"age_ns": 31 * S}, StaleDataError),
    ],
    ids=["unknown", "disrupted", "step-forward", "step-back", "stale"],
)
def test_every_refusal_raises_the_same_on_both_paths(
    writer: SegmentWriter, client: ChronoTickClient, changes: dict[str, Any], error: type[Exception]
) -> None:
    publish(writer, **changes)
    for read in (client.now_ns, client.now):
        with pytest.raises(error):
            read()
    fast = client._reader.fast
    if fast is not None:  # the C reader refuses by itself: Python raised
        assert fast.now_ns() is None and fast.now() is None


def test_a_closed_segment_raises_no_daemon_on_both_paths(
    seg_name: str, client: ChronoTickClient
) -> None:
    writer = SegmentWriter(seg_name)
    try:
        publish(writer)
        client.now()
        fast = client._reader.fast
        writer.close()
        if fast is not None:
            assert fast.now_ns() is None  # the closed record, through the old mapping
        with pytest.raises(NoDaemonError, match="shut down"):
            client.now()
        with pytest.raises(NoDaemonError, match="shut down"):
            client.now_ns()
    finally:
        writer.close()


def test_a_replaced_segment_gets_a_new_c_reader(seg_name: str) -> None:
    first = SegmentWriter(seg_name)
    with ChronoTickClient(seg_name) as client:
        try:
            publish(first, offset_ns=1 * MS)
            client.now()
            old = client._reader.fast
        finally:
            first.close()
        second = SegmentWriter(seg_name)
        try:
            publish(second, offset_ns=-7 * MS)
            before = time.time_ns()
            earliest, latest = client.now_ns()
            after = time.time_ns()
            assert before - 8 * MS < (earliest + latest) // 2 < after - 6 * MS
            if old is not None:
                assert old.released and client._reader.fast is not None
                assert client._reader.fast is not old
        finally:
            second.close()


def test_unknown_flag_bits_and_records_ahead_agree_on_both_paths(
    writer: SegmentWriter, client: ChronoTickClient
) -> None:
    publish(writer, flags=2)
    client.now_ns()
    publish(writer, age_ns=-3 * S)  # both clocks alike: no step
    assert client.get_time().status is ClockStatus.SYNCHRONIZED
    client.now_ns()


# --------------------------------------------------------------------------------------------
# when the C reader is not used, and its life


def test_a_simulated_base_clock_stays_in_python(seg_name: str, fastread: Any) -> None:
    params = shm.SimulatedClockParams(offset_ns=-3 * S, epoch_ns=time.time_ns())
    writer = SegmentWriter(seg_name, clock_params=params)
    try:
        publish(writer, now_ns=shm.SimulatedClock(params).now_ns)
        with ChronoTickClient(seg_name) as client:
            client.now()
            assert not client.uses_fast_path
            mapping = client._reader._mm
            assert mapping is not None
            reader = fastread.Reader(mapping)  # even if asked, C refuses the segment
            try:
                assert not reader.realtime_base
                assert reader.now_ns() is None and reader.now() is None
            finally:
                reader.release()
        with anonymous_segment((2, 0, 0, 0, 0, 0.0, 0, 0.0, 1, 0, 2), clock_kind=1) as mm:
            reader = fastread.Reader(mm)
            assert not reader.realtime_base and reader.now_ns(0, 0) is None
            reader.release()
    finally:
        writer.close()


def test_replacing_the_base_clock_retires_the_c_reader(
    seg_name: str, writer: SegmentWriter
) -> None:
    """A reader whose base clock was replaced (tests do) must not read CLOCK_REALTIME in C."""
    model = publish(writer, age_ns=S)
    with ChronoTickClient(seg_name) as client:
        client.get_time()  # attach
        reader = client._reader
        fast = reader.fast
        seen: list[int] = []

        def realtime_ns() -> int:
            seen.append(time.time_ns())
            return seen[-1]

        reader.realtime_ns = realtime_ns
        assert reader.fast is None and not client.uses_fast_path
        if fast is not None:
            assert fast.released
        assert client.now_ns() == expected_interval(model, seen[-1])
        reader.attach()  # a fresh mapping reads CLOCK_REALTIME again
        assert client.uses_fast_path is (shm.fast_reader_class is not None)


def test_a_patched_time_ns_is_honoured_in_python(
    seg_name: str, writer: SegmentWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A clock patched over time.time_ns before the client attaches (a test's fake clock) is
    what the client reads; C, which would read CLOCK_REALTIME, stays out of it."""
    model = publish(writer, age_ns=S)
    real_time_ns = time.time_ns
    seen: list[int] = []

    def fake_time_ns() -> int:
        seen.append(real_time_ns() - 100 * US)
        return seen[-1]

    monkeypatch.setattr(time, "time_ns", fake_time_ns)
    with ChronoTickClient(seg_name) as client:
        assert client.now_ns() == expected_interval(model, seen[-1])
        assert not client.uses_fast_path


def test_closing_releases_the_mapping(seg_name: str, writer: SegmentWriter, fastread: Any) -> None:
    publish(writer)
    with ChronoTickClient(seg_name) as client:
        client.now()
        fast, mapping = client._reader.fast, client._reader._mm
        assert fast is not None and mapping is not None
    # closing an mmap with a live buffer export fails: the reader released it first
    assert fast.released and mapping.closed
    assert fast.now_ns() is None and fast.hot_fields() is None
    with anonymous_segment((2, 0, 0, 0, 0, 0.0, 0, 0.0, 1, 0, 2)) as mm:
        held = fastread.Reader(mm)
        with pytest.raises(BufferError):
            mm.close()
        held.release()
        held.release()  # idempotent
        assert held.released


def test_the_c_reader_refuses_what_is_not_a_segment(fastread: Any) -> None:
    with pytest.raises(ValueError, match="shorter"):
        fastread.Reader(bytes(100))
    with anonymous_segment((2, 0, 0, 0, 0, 0.0, 0, 0.0, 1, 0, 2)) as mm:
        mm[0:8] = b"NOTCHRNT"
        with pytest.raises(ValueError, match="magic"):
            fastread.Reader(mm)
        mm[0:8] = MAGIC
        mm[8:10] = (2).to_bytes(2, "little")
        with pytest.raises(ValueError, match="version"):
            fastread.Reader(mm)
    with pytest.raises(TypeError):
        fastread.Reader(12)
    with anonymous_segment((2, 0, 0, 0, 0, 0.0, 0, 0.0, 1, 0, 2)) as mm:
        reader = fastread.Reader(mm)
        with pytest.raises(TypeError):
            reader.now_ns(1)
        with pytest.raises(OverflowError):
            reader.now_ns(2**63, 0)
        reader.release()


@pytest.mark.parametrize(
    ("head", "tail"),
    [(3, 3), (4, 5), (4, 6), (0, 0)],
    ids=["mid-write", "write-began-during-the-read", "write-done-during-the-read", "never-written"],
)
def test_an_inconsistent_copy_is_left_to_python(fastread: Any, head: int, tail: int) -> None:
    """Head and tail as a one-pass read can find them (docs/shm-layout.md): only an even,
    non-zero head equal to the tail is a whole record. A concurrent writer rarely produces the
    others at the right instant, so they are set here."""
    with anonymous_segment((head, 0, 0, 10**18, 0, 0.0, 0, 0.0, 1, 0, tail)) as mm:
        reader = fastread.Reader(mm)
        assert reader.hot_fields() is None
        assert reader.now_ns(0, 0) is None and reader.now() is None
        HOT.pack_into(mm, HOT_OFFSET, 8, 0, 0, 10**18, 0, 0.0, 0, 0.0, 1, 0, 8)
        assert reader.now_ns(0, 0) == (0, 0)
        reader.release()


# --------------------------------------------------------------------------------------------
# falling back to pure Python


def test_the_fast_reader_loads_only_when_it_should(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(shm.PURE_PYTHON_ENV, raising=False)
    assert shm._load_fast_reader() is (built_fastread.Reader if built_fastread else None)
    monkeypatch.setenv(shm.PURE_PYTHON_ENV, "1")
    assert shm._load_fast_reader() is None
    monkeypatch.setenv(shm.PURE_PYTHON_ENV, "0")
    assert shm._load_fast_reader() is (built_fastread.Reader if built_fastread else None)
    # a stale build of another interface version is ignored
    stale = SimpleNamespace(API_VERSION=shm.FASTREAD_API_VERSION + 1, Reader=object)
    monkeypatch.setattr(chronotick, "_fastread", stale, raising=False)
    assert shm._load_fast_reader() is None
    # not built (or broken): the import fails
    monkeypatch.delattr(chronotick, "_fastread", raising=False)
    monkeypatch.setitem(sys.modules, "chronotick._fastread", None)
    assert shm._load_fast_reader() is None


def test_without_the_extension_the_client_reads_in_python(
    monkeypatch: pytest.MonkeyPatch, seg_name: str, writer: SegmentWriter
) -> None:
    monkeypatch.setattr(shm, "fast_reader_class", None)
    model = publish(writer, age_ns=S)
    with ChronoTickClient(seg_name) as client:
        before = time.time_ns()
        earliest, latest = client.now_ns()
        after = time.time_ns()
        assert not client.uses_fast_path
        assert expected_interval(model, before)[0] <= earliest
        assert latest <= expected_interval(model, after)[1]


def test_the_client_suite_passes_in_pure_python() -> None:
    """tests/unit/test_client.py runs on the C path when it is built; here on the Python one."""
    env = {**os.environ, shm.PURE_PYTHON_ENV: "1"}
    check = subprocess.run(
        [sys.executable, "-c", "import chronotick.shm as s; assert s.fast_reader_class is None"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stderr
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/unit/test_client.py",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]


# --------------------------------------------------------------------------------------------
# the C seqlock read against a writer process


@pytest.mark.integration
def test_no_torn_read_in_c_under_a_full_speed_writer(fastread: Any) -> None:
    """The C hot read, alternating with a writer process that publishes as fast as it can
    (the records of tests/helpers/torn_records.py: every field a function of k)."""
    name = unique_name()
    ctx = multiprocessing.get_context("spawn")
    m0 = time.monotonic_ns()
    ready, stop = ctx.Event(), ctx.Event()
    progress = ctx.Value("q", 0, lock=False)
    proc = ctx.Process(target=write_forever, args=(name, m0, ready, stop, progress))
    reads = torn = stalls = distinct = backwards = 0
    last = 0
    try:
        proc.start()
        assert ready.wait(60), "the writer process did not start"
        reader = SegmentReader(name)
        reader.attach()
        mapping = reader._mm
        assert mapping is not None
        fast = fastread.Reader(mapping)  # whatever the environment says: this tests C
        try:
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline and (reads < 300_000 or distinct < 1000):
                for _ in range(1000):
                    fields = fast.hot_fields()
                    if fields is None:
                        stalls += 1
                        continue
                    reads += 1
                    torn += not hot_ok(fields, m0)
                    g = fields[0]
                    backwards += g < last
                    distinct += g != last
                    last = g
        finally:
            fast.release()
            reader.close()
    finally:
        stop.set()
        proc.join(30)
        if proc.is_alive():
            proc.kill()
            proc.join(10)
        remove_segment_files(name)
    summary = f"{reads} reads, {distinct} records, {stalls} stalls, writer at {progress.value}"
    assert torn == 0, summary
    assert backwards == 0, summary
    assert distinct >= 100, summary  # the writer really moved on under the reader


# --------------------------------------------------------------------------------------------
# get_time(): the same answers, faster


def test_a_fast_time_info_is_a_time_info(writer: SegmentWriter, client: ChronoTickClient) -> None:
    for status in (ClockStatus.SYNCHRONIZED, ClockStatus.UNKNOWN):
        publish(writer, status=status)
        info = client.get_time()
        built = TimeInfo(**{f.name: getattr(info, f.name) for f in dataclasses.fields(TimeInfo)})
        assert info == built and repr(info) == repr(built) and hash(info) == hash(built)
        assert list(vars(info)) == list(vars(built))
        with pytest.raises(dataclasses.FrozenInstanceError):
            info.corrected_time_ns = 0  # type: ignore[misc]
    same = _new_time_info(**vars(built))
    assert same == built and type(same) is TimeInfo


def test_the_decoded_record_is_reused_until_the_next_write(
    writer: SegmentWriter, client: ChronoTickClient
) -> None:
    publish(writer)
    client.get_time()
    record = client._reader._record
    assert record is not None
    client.get_time()
    client.get_future_time(1.0)
    assert client._reader._record is record
    model = publish(writer, offset_ns=-5 * MS)
    info = client.get_time()
    assert client._reader._record is not record
    assert info.corrected_time_ns == model.corrected_ns(info.system_time_ns)


@pytest.fixture(scope="module")
def module_writer() -> Iterator[tuple[str, SegmentWriter]]:
    name = unique_name()
    w = SegmentWriter(name, trusted_for_ns=10 * S, void_after_ns=3600 * S)
    try:
        yield name, w
    finally:
        w.close()
        remove_segment_files(name)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    age=st.integers(-500 * US, 1800 * S),
    offset=st.integers(-(10**12), 10**12),
    drift=st.floats(-500_000.0, 500_000.0),
    sigma=st.floats(0.0, 1e9),
    cov=st.floats(-1e9, 1e9),
    sigma_drift=st.floats(0.0, 1e6),
    wander=st.floats(0.0, 1e12),
    bound=st.integers(0, 10**10),
    rate=st.floats(0.0, 1e6),
    status=st.sampled_from(list(ClockStatus)),
)
def test_get_time_follows_the_model_for_any_model(
    module_writer: tuple[str, SegmentWriter],
    age: int,
    offset: int,
    drift: float,
    sigma: float,
    cov: float,
    sigma_drift: float,
    wander: float,
    bound: int,
    rate: float,
    status: ClockStatus,
) -> None:
    name, writer = module_writer
    real, mono = time.time_ns(), time.monotonic_ns()
    model = model_at(
        real - age,
        offset_ns=offset,
        drift_ppb=drift,
        sigma_ns=sigma,
        sigma_cov_ns2_per_s=cov,
        sigma_drift_ppb=sigma_drift,
        wander_ns2_per_s=wander,
        bound_ns=bound,
        bound_rate_ppb=rate,
        status=status,
    )
    writer.publish(model, 16 * S, 4, 3, monotonic_ns=mono - age)
    with ChronoTickClient(name) as client:
        info = client.get_time()
    assume(info.status is not ClockStatus.DISRUPTED or status is ClockStatus.DISRUPTED)
    t = info.system_time_ns
    if not info.status.gives_interval:
        assert info.corrected_time_ns == t and info.uncertainty_seconds == math.inf
        return
    corrected, sig, half = model.corrected_ns(t), model.sigma_at(t), model.bound_at(t)
    assert info.corrected_time_ns == corrected
    assert info.uncertainty_seconds == sig / S
    assert info.error_bound_seconds == half / S
    assert (info.earliest_timestamp, info.latest_timestamp) == (
        (corrected - half) / S,
        (corrected + half) / S,
    )
    expected_confidence = math.erf(half / (sig * math.sqrt(2.0))) if sig > 0 else 1.0
    assert info.confidence == expected_confidence
    assert info.offset_correction == (corrected - t) / S
