"""Per-call latency of ChronoTickClient reads next to time.time_ns(), in one run.

    .venv/bin/python benchmarks/read_latency.py [--n N] [--batch B]

Publishes a SYNCHRONIZED model in a private segment (`bench-XXXXXXXX`, refreshed at 10 Hz by a
writer thread, as the daemon would), then times `time.time_ns()`, `now()`, `now_ns()` and
`get_time()` in interleaved rounds: each round runs one batch of B calls of each function, timed
with `perf_counter_ns()` around the whole batch, so the timer's own cost is spread over B calls.
The cost of the empty loop, measured the same way, is subtracted ("net"). The garbage collector is
off during batches (as in `timeit`). Reports the median and the 99th percentile of the per-call
time over batches, and the ratios of the medians to `time.time_ns()`. The segment, its lock and
any temporary file are removed on exit.

The goal (issue "now() within 10x of time.time_ns()"): ratio now()/time_ns <= 10.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import platform
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator

from chronotick.client import ChronoTickClient
from chronotick.model import ClockModel
from chronotick.shm import SHM_DIR, SegmentWriter
from chronotick.status import ClockStatus

GOAL_RATIO = 10.0


def synchronized_model(as_of_ns: int) -> ClockModel:
    return ClockModel(
        as_of_ns=as_of_ns,
        offset_ns=1_234_567,
        drift_ppb=-2_500.0,
        sigma_ns=40_000.0,
        sigma_cov_ns2_per_s=1.0e6,
        sigma_drift_ppb=3_000.0,
        wander_ns2_per_s=1.0e7,
        bound_ns=150_000,
        bound_rate_ppb=15_000.0,
        status=ClockStatus.SYNCHRONIZED,
        last_sample_ns=as_of_ns - 500_000_000,
        samples_used=16,
        source="bench",
    )


@contextlib.contextmanager
def private_segment(rate_hz: float = 10.0) -> Iterator[str]:
    """A segment refreshed by a writer thread; removed (with its lock file) on exit."""
    name = f"bench-{uuid.uuid4().hex[:8]}"
    stop = threading.Event()
    writer = SegmentWriter(name)
    try:

        def publish() -> None:
            writer.publish(synchronized_model(time.time_ns()), 16_000_000_000, 4, 4)

        def run() -> None:
            while not stop.wait(1.0 / rate_hz):
                publish()

        publish()
        thread = threading.Thread(target=run, name="bench writer", daemon=True)
        thread.start()
        try:
            yield name
        finally:
            stop.set()
            thread.join()
    finally:
        writer.close()
        for path in (os.path.join(SHM_DIR, name), os.path.join(SHM_DIR, f".{name}.lock")):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        for entry in os.listdir(SHM_DIR):
            if entry.startswith(f".{name}.") and entry.endswith(".tmp"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(SHM_DIR, entry))


def _empty() -> None:
    return None


def time_batch(func: Callable[[], object], batch: int) -> int:
    """Nanoseconds for `batch` calls of `func` (loop included)."""
    clock = time.perf_counter_ns
    loop = range(batch)
    start = clock()
    for _ in loop:
        func()
    return clock() - start


def time_empty_loop(batch: int) -> int:
    clock = time.perf_counter_ns
    loop = range(batch)
    start = clock()
    for _ in loop:
        pass
    return clock() - start


def measure(
    funcs: dict[str, Callable[[], object]], n: int, batch: int
) -> tuple[dict[str, list[float]], list[float]]:
    """Per-call ns of every batch of every function (interleaved), and of the empty loop."""
    rounds = max(1, n // batch)
    per_call: dict[str, list[float]] = {name: [] for name in funcs}
    empty: list[float] = []
    for func in funcs.values():  # warm up: attach, fill caches
        for _ in range(min(batch, 1000)):
            func()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(rounds):
            empty.append(time_empty_loop(batch) / batch)
            for name, func in funcs.items():
                per_call[name].append(time_batch(func, batch) / batch)
    finally:
        if gc_was_enabled:
            gc.enable()
    return per_call, empty


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def report(per_call: dict[str, list[float]], empty: list[float], batch: int) -> dict[str, float]:
    """Print the table; return the net median per call of each function."""
    loop_ns = statistics.median(empty)
    rounds = len(empty)
    print(f"{rounds} interleaved rounds x {batch} calls per function; empty loop {loop_ns:.1f} ns")
    print(f"{'function':<22} {'median':>9} {'p99':>9} {'net med':>9} {'net p99':>9}  (ns/call)")
    net: dict[str, float] = {}
    for name, values in per_call.items():
        med, tail = statistics.median(values), p99(values)
        net[name] = med - loop_ns
        print(f"{name:<22} {med:9.1f} {tail:9.1f} {med - loop_ns:9.1f} {tail - loop_ns:9.1f}")
    return net


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200_000, help="calls per function")
    parser.add_argument("--batch", type=int, default=1000, help="calls per timed batch")
    args = parser.parse_args(argv)
    if args.n < 1 or args.batch < 1:
        parser.error("--n and --batch must be positive")

    print(f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs")
    with private_segment() as name, ChronoTickClient(name) as client:
        info = client.get_time()
        if info.status is not ClockStatus.SYNCHRONIZED:
            print(f"the private segment reads {info.status.name}", file=sys.stderr)
            return 1
        funcs: dict[str, Callable[[], object]] = {
            "time.time_ns()": time.time_ns,
            "client.now()": client.now,
            "client.now_ns()": client.now_ns,
            "client.get_time()": client.get_time,
        }
        per_call, empty = measure(funcs, args.n, args.batch)
    net = report(per_call, empty, args.batch)
    base = net["time.time_ns()"]
    raw_base = statistics.median(per_call["time.time_ns()"])
    for name in ("client.now()", "client.now_ns()", "client.get_time()"):
        raw = statistics.median(per_call[name]) / raw_base
        print(f"ratio {name:<18} / time_ns (median): {net[name] / base:6.1f}x net, {raw:6.1f}x raw")
    ratio = net["client.now()"] / base
    verdict = "meets" if ratio <= GOAL_RATIO else "misses"
    print(f"now() {verdict} the goal of {GOAL_RATIO:.0f}x time.time_ns() ({ratio:.1f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
