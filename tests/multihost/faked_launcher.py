"""Parent of a faked process: records where its skewed clock stands, then runs the program.

Usage (under libfaketime, with FAKETIME_DONT_RESET=1):

    faked_launcher.py TRUTH.json -- PROGRAM ARGS...

Why a launcher: libfaketime's rate counts from an origin instant, which the first faked
process of a tree sets and hands down to its descendants (libfaketime 0.9.10 shares it through
the segment named in FAKETIME_SHARED; FAKETIME_DONT_RESET=1 keeps it for the absolute `@` form
too). Started first, this script fixes that origin for the program and all its descendants,
and, being faked itself, can read
the faked CLOCK_REALTIME right next to the true one (a raw clock_gettime system call, which
libfaketime cannot intercept). From one such pair and the rate, the test knows the program's
clock offset at any true instant: offset(t) = (faked − true)_pair + (rate − 1)·(t − true_pair).

It forwards SIGTERM, SIGINT and SIGHUP to the program and exits the way the program did (same
code, or killed by the same signal).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.helpers.faked_probe import true_time_ns  # noqa: E402

PAIRS = 50  # back-to-back tries; the narrowest bracket wins (cache misses, preemption)


def measure() -> dict[str, int]:
    """The (faked, true) pair with the narrowest bracket of true readings around the faked one."""
    best: tuple[int, int, int] | None = None
    for _ in range(PAIRS):
        before = true_time_ns()
        faked = time.time_ns()
        after = true_time_ns()
        if before is None or after is None:
            raise SystemExit("faked_launcher: no raw clock_gettime syscall on this machine")
        if best is None or after - before < best[2] - best[1]:
            best = (faked, before, after)
    assert best is not None
    faked, before, after = best
    return {
        "faked_ns": faked,
        "true_ns": (before + after) // 2,
        "uncertainty_ns": (after - before + 1) // 2,
        "pid": os.getpid(),
    }


def write_atomically(path: Path, data: dict[str, int]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    tmp.rename(path)


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: faked_launcher.py TRUTH.json -- PROGRAM [ARGS...]", file=sys.stderr)
        return 2
    truth_path, program = Path(argv[0]), argv[2:]
    if "FAKETIME_DONT_RESET" not in os.environ:
        print("faked_launcher: FAKETIME_DONT_RESET is not set", file=sys.stderr)
        return 2
    write_atomically(truth_path, measure())

    child: subprocess.Popen[bytes] | None = None
    pending: list[int] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        if child is None:
            pending.append(signum)
        elif child.poll() is None:
            child.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    try:
        child = subprocess.Popen(program)
    except OSError as exc:
        print(f"faked_launcher: cannot run {program[0]!r}: {exc}", file=sys.stderr)
        return 127
    for signum in pending:  # arrived while the child was being started
        child.send_signal(signum)
    code = child.wait()  # retried across the forwarded signals (PEP 475)
    if code < 0:
        # Die of the same signal, so our parent sees what the program did.
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        return 128 - code
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
