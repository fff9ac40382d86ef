"""Commit timestamps seen from outside: bursts of commits from several nodes at once, and the
check TrueTime's commit wait must pass (no commit acknowledged before another began may carry
the larger timestamp). The demo, the namespace tests and the benchmark share this.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from coordinator.sync import DistributedSyncCoordinator, SyncError


@dataclasses.dataclass(frozen=True)
class CommitRecord:
    node_id: str
    #: host CLOCK_REALTIME (the truth) just before the call and just after it returned
    true_start_ns: int
    true_ack_ns: int
    timestamp_ns: int
    commit_wait_ns: int
    max_bound_ns: int


@dataclasses.dataclass(frozen=True)
class OrderingCheck:
    """TrueTime's promise checked on commits seen from outside.

    `violations` counts the commits B for which some commit A was acknowledged before B began
    (true time) and yet ts(A) >= ts(B): zero when commit wait works. `min_margin_ns` is the
    smallest ts(B) − ts(A) over such pairs (how close the order came to breaking), `worst`
    that pair. `outside_window` counts commits whose timestamp is not within their own
    [true start, true ack]: with true bounds the timestamp is at least true time at the start,
    and the acknowledgement waits until true time is past it.
    """

    violations: int
    min_margin_ns: int | None
    worst: tuple[CommitRecord, CommitRecord] | None
    outside_window: int


def check_ordering(commits: Sequence[CommitRecord]) -> OrderingCheck:
    """One sweep, O(n log n): commits in order of true start; those acknowledged strictly
    before it have their largest timestamp kept as a running maximum over the acks."""
    by_ack = sorted(commits, key=lambda c: c.true_ack_ns)
    acks = [c.true_ack_ns for c in by_ack]
    best_so_far: list[CommitRecord] = []
    for c in by_ack:
        best = best_so_far[-1] if best_so_far else None
        best_so_far.append(c if best is None or c.timestamp_ns > best.timestamp_ns else best)
    violations = 0
    margin: int | None = None
    worst: tuple[CommitRecord, CommitRecord] | None = None
    for b in sorted(commits, key=lambda c: c.true_start_ns):
        k = bisect.bisect_left(acks, b.true_start_ns)
        if k == 0:
            continue
        a = best_so_far[k - 1]
        m = b.timestamp_ns - a.timestamp_ns
        if m <= 0:
            violations += 1
        if margin is None or m < margin:
            margin, worst = m, (a, b)
    outside = sum(1 for c in commits if not c.true_start_ns <= c.timestamp_ns <= c.true_ack_ns)
    return OrderingCheck(violations, margin, worst, outside)


def ordering_violations(commits: Sequence[CommitRecord]) -> int:
    return check_ordering(commits).violations


def commit_burst(
    addresses: Mapping[str, str], commits: int, true_ns: Callable[[], int] = time.time_ns
) -> tuple[list[CommitRecord], list[str], float]:
    """`commits` commit timestamps in all, shared out over the nodes (node id -> address),
    one thread (and one coordinator) per node, all released at once so that commits overlap
    and race. `true_ns` reads the true clock around each call (the caller's own clock where it
    is the truth). Returns the records, the failures, and the seconds the burst took."""
    nodes = list(addresses.items())
    shares = [
        commits // len(nodes) + (1 if i < commits % len(nodes) else 0) for i in range(len(nodes))
    ]
    records: list[CommitRecord] = []
    failures: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(nodes) + 1)

    def worker(node: tuple[str, str], count: int) -> None:
        node_id, address = node
        try:
            sync = DistributedSyncCoordinator(node_id=node_id, connect=address)
        except SyncError as exc:
            with lock:
                failures.append(f"{node_id}: {exc}")
            barrier.abort()
            return
        with sync:
            try:
                barrier.wait(timeout=30)
            except threading.BrokenBarrierError:
                return
            for _ in range(count):
                start = true_ns()
                try:
                    c = sync.commit_timestamp()
                except SyncError as exc:
                    with lock:
                        failures.append(f"{node_id}: {exc}")
                    continue
                ack = true_ns()
                with lock:
                    records.append(
                        CommitRecord(
                            node_id=node_id,
                            true_start_ns=start,
                            true_ack_ns=ack,
                            timestamp_ns=c.timestamp_ns,
                            commit_wait_ns=c.commit_wait_ns,
                            max_bound_ns=c.max_bound_ns,
                        )
                    )

    threads = [
        threading.Thread(target=worker, args=(n, k), name=f"commits {n[0]}", daemon=True)
        for n, k in zip(nodes, shares, strict=True)
    ]
    for thread in threads:
        thread.start()
    started = time.monotonic()
    with contextlib.suppress(threading.BrokenBarrierError):
        barrier.wait(timeout=30)
        started = time.monotonic()
    for thread in threads:
        thread.join()
    return records, failures, time.monotonic() - started
