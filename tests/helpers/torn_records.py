"""Records in which every field is a function of k, and a writer process that publishes them.

Every field of record k is a function of k alone (and so is the seqlock generation, 2k + 2), so
a read that mixes two records, or that returns a record the writer was still writing, breaks an
equation: `hot_ok` and `snapshot_ok` check those equations. Used by
tests/integration/test_shm_torn_reads.py (Python reads) and tests/unit/test_fastread.py (C reads).
"""

from __future__ import annotations

from multiprocessing.synchronize import Event
from typing import Any

from chronotick.model import ClockModel
from chronotick.shm import SegmentWriter, Snapshot
from chronotick.status import ClockStatus

BASE_NS = 1_700_000_000_000_000_000
VOID_NS = 10**15  # the writer's void_after: no record goes stale during the test
NODE_ID = "torn-reads"


def record(k: int) -> ClockModel:
    return ClockModel(
        as_of_ns=BASE_NS + k,
        offset_ns=2 * k,
        drift_ppb=float(3 * k),
        sigma_ns=float(6 * k),
        sigma_cov_ns2_per_s=float(8 * k),
        sigma_drift_ppb=float(9 * k),
        wander_ns2_per_s=float(10 * k),
        bound_ns=4 * k,
        bound_rate_ppb=float(5 * k),
        status=ClockStatus.SYNCHRONIZED if k % 2 else ClockStatus.FREE_RUNNING,
        last_sample_ns=BASE_NS - 11 * k,
        samples_used=k % 2**32,
        source=str(k),
    )


def publish_record(writer: SegmentWriter, k: int, m0: int) -> None:
    writer.publish(
        record(k),
        poll_interval_ns=12 * k,
        sources_configured=k % 0xFFFF,
        sources_reachable=(13 * k) % 0xFFFF,
        monotonic_ns=m0 + 7 * k,
    )


def hot_ok(fields: tuple[Any, ...], m0: int) -> bool:
    g, as_of, as_of_mono, void_after, offset, drift, bound, rate, status, flags, tail = fields
    k = as_of - BASE_NS
    return bool(
        g == tail == 2 * k + 2  # the record behind generation g is record k = g/2 - 1
        and as_of_mono == m0 + 7 * k
        and void_after == m0 + 7 * k + VOID_NS
        and offset == 2 * k
        and drift == float(3 * k)
        and bound == 4 * k
        and rate == float(5 * k)
        and status == (1 if k % 2 else 2)
        and flags == 0
    )


def snapshot_ok(snap: Snapshot, m0: int, pid: int) -> bool:
    m, info = snap.model, snap.info
    k = m.as_of_ns - BASE_NS
    return bool(
        m == record(k)
        and snap.as_of_monotonic_ns == m0 + 7 * k
        and snap.void_after_monotonic_ns == m0 + 7 * k + VOID_NS
        and snap.flags == 0
        and info.poll_interval_ns == 12 * k
        and info.sources_configured == k % 0xFFFF
        and info.sources_reachable == (13 * k) % 0xFFFF
        and info.node_id == NODE_ID
        and info.pid == pid
    )


def write_forever(
    name: str,
    m0: int,
    ready: Event,
    stop: Event,
    progress: Any,
) -> None:
    """The writer process: publishes records 1, 2, 3... without pausing until told to stop."""
    writer = SegmentWriter(name, node_id=NODE_ID, void_after_ns=VOID_NS)
    try:
        k = 1
        publish_record(writer, k, m0)
        ready.set()
        while not stop.is_set():
            for _ in range(256):
                k += 1
                publish_record(writer, k, m0)
            progress.value = k
    finally:
        writer.close()
