"""Per-call latency of ChronoTickClient reads next to time.time_ns(), in one run.

    .venv/bin/python benchmarks/read_latency.py [--n N] [--batch B]

Publishes a SYNCHRONIZED model in a private segment (`bench-XXXXXXXX`, refreshed at 10 Hz by a
writer thread, as the daemon would), then times `time.time_ns()` and the client's `now()`,
`now_ns()` and `get_time()` on both read paths side by side: the C extension
`chronotick._fastread` ("C", when built) and pure Python (a client made with `fast_path=False`).
`get_time()` is Python on both paths and is timed once. Rounds are interleaved: each round runs
one batch of B calls of each function, in a shuffled order, timed with `perf_counter_ns()`
around the whole batch, so the timer's own cost is spread over B calls. The cost of the empty
loop, measured the same way, is subtracted ("net"). The garbage collector is off during batches
(as in `timeit`).
Reports the median and the 99th percentile of the per-call time over batches, and their ratios
to `time.time_ns()`. The segment, its lock and any temporary file are removed on exit.

The goal (issue "now() within 10x of time.time_ns()"): net median ratio now()/time_ns <= 10.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import platform
import random
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
    """Per-call ns of every batch of every function (interleaved), and of the empty loop.

    The order of the functions is shuffled in every round (seeded: runs are comparable): a
    batch runs measurably slower after some functions than after others (after 1000 calls of
    get_time(), time.time_ns() took ~13 ns more per call than after the empty loop), and a
    fixed order would hand that to whichever function always came next.
    """
    rounds = max(1, n // batch)
    per_call: dict[str, list[float]] = {name: [] for name in funcs}
    empty: list[float] = []
    for func in funcs.values():  # warm up: attach, fill caches
        for _ in range(min(batch, 1000)):
            func()
    order = list(funcs.items())
    shuffle = random.Random(2).shuffle
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(rounds):
            shuffle(order)
            empty.append(time_empty_loop(batch) / batch)
            for name, func in order:
                per_call[name].append(time_batch(func, batch) / batch)
    finally:
        if gc_was_enabled:
            gc.enable()
    return per_call, empty


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


TIME_NS = "time.time_ns()"


def report(
    per_call: dict[str, list[float]], empty: list[float], batch: int
) -> dict[str, tuple[float, float]]:
    """Print the table; return the net (median, p99) per call of each function."""
    loop_ns = statistics.median(empty)
    print(
        f"{len(empty)} interleaved rounds x {batch} calls per function; "
        f"empty loop {loop_ns:.1f} ns, subtracted in the net columns"
    )
    net: dict[str, tuple[float, float]] = {
        name: (statistics.median(values) - loop_ns, p99(values) - loop_ns)
        for name, values in per_call.items()
    }
    base_med, base_p99 = net[TIME_NS]
    raw_base = statistics.median(per_call[TIME_NS])
    print(
        f"{'function':<20} {'median':>8} {'p99':>8} {'net med':>8} {'net p99':>8} "
        f"{'x med':>7} {'x p99':>7} {'x raw':>7}"
    )
    for name, values in per_call.items():
        med, tail = statistics.median(values), p99(values)
        net_med, net_p99 = net[name]
        print(
            f"{name:<20} {med:8.1f} {tail:8.1f} {net_med:8.1f} {net_p99:8.1f} "
            f"{net_med / base_med:6.1f}x {net_p99 / base_p99:6.1f}x {med / raw_base:6.1f}x"
        )
    print(
        "(ns per call; x med / x p99: net median / net p99 over time.time_ns()'s; "
        "x raw: median over median, loop included)"
    )
    return net


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200_000, help="calls per function")
    parser.add_argument("--batch", type=int, default=1000, help="calls per timed batch")
    args = parser.parse_args(argv)
    if args.n < 1 or args.batch < 1:
        parser.error("--n and --batch must be positive")

    print(f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs")
    with (
        private_segment() as name,
        ChronoTickClient(name) as fast,
        ChronoTickClient(name, fast_path=False) as pure,
    ):
        for client in (fast, pure):
            info = client.get_time()  # also attaches: the C reader exists from here on
            if info.status is not ClockStatus.SYNCHRONIZED:
                print(f"the private segment reads {info.status.name}", file=sys.stderr)
                return 1
        funcs: dict[str, Callable[[], object]] = {TIME_NS: time.time_ns}
        if fast.uses_fast_path:
            funcs |= {"now() [C]": fast.now, "now_ns() [C]": fast.now_ns}
        else:
            print(
                "chronotick._fastread is not in use (not built, or CHRONOTICK_PURE_PYTHON=1): "
                "pure Python only"
            )
        funcs |= {
            "now() [Python]": pure.now,
            "now_ns() [Python]": pure.now_ns,
            "get_time() [Python]": pure.get_time,
        }
        per_call, empty = measure(funcs, args.n, args.batch)
    net = report(per_call, empty, args.batch)
    base = net[TIME_NS][0]
    for name in ("now() [C]", "now() [Python]"):
        if name in net:
            ratio = net[name][0] / base
            verdict = "meets" if ratio <= GOAL_RATIO else "misses"
            print(f"{name} {verdict} the goal of {GOAL_RATIO:.0f}x time.time_ns() ({ratio:.1f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
