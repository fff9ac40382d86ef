"""Commit timestamps seen from outside: bursts of commits from several nodes at once, and the
check TrueTime's commit wait must pass (no commit acknowledged before another began may carry
the larger timestamp). The demo, the namespace tests and the benchmark share this.
"""

from __future__ import annotations

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


def ordering_violations(commits: Sequence[CommitRecord]) -> int:
    """Pairs (A, B) where A was acknowledged before B started, in true time, yet
    timestamp(A) >= timestamp(B): exactly what TrueTime's commit wait promises never happens.

    O(n log n): B in order of start; the A acknowledged before it join a Fenwick tree over the
    ranks of the timestamps as they become eligible, and the tree counts those with a timestamp
    at or above B's.
    """
    stamps = sorted({c.timestamp_ns for c in commits})
    rank = {t: i + 1 for i, t in enumerate(stamps)}
    tree = [0] * (len(stamps) + 1)

    def add(i: int) -> None:
        while i < len(tree):
            tree[i] += 1
            i += i & -i

    def at_most(i: int) -> int:
        total = 0
        while i > 0:
            total += tree[i]
            i -= i & -i
        return total

    by_ack = sorted(commits, key=lambda c: c.true_ack_ns)
    added = 0
    violations = 0
    for b in sorted(commits, key=lambda c: c.true_start_ns):
        while added < len(by_ack) and by_ack[added].true_ack_ns < b.true_start_ns:
            add(rank[by_ack[added].timestamp_ns])
            added += 1
        violations += added - at_most(rank[b.timestamp_ns] - 1)
    return violations


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
