"""A reader and a daemon that share one skewed clock, for tests that run under libfaketime.

libfaketime's rate counts from each process's own start, so the daemon and the reader that
checks it must be one faked parent and its child (FAKETIME_DONT_RESET=1). This script is that
parent: it starts `chronotick-daemon` with the arguments after `--`, then answers one line of
JSON per `read` line on stdin, until `quit` (or end of input) stops the daemon.
"""

from __future__ import annotations

import ctypes
import json
import platform
import signal
import subprocess
import sys
import time

from chronotick.client import ChronoTickClient
from chronotick.shm import ShmError

_SYS_CLOCK_GETTIME = {"x86_64": 228, "aarch64": 113}.get(platform.machine())
_libc = ctypes.CDLL(None, use_errno=True)


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def true_time_ns() -> int | None:
    """CLOCK_REALTIME by a raw system call, which libfaketime cannot intercept.

    This lets the test see the true time at the very instant of a faked reading, instead of
    only around a round trip through a pipe.
    """
    if _SYS_CLOCK_GETTIME is None:
        return None
    ts = _Timespec()
    if _libc.syscall(_SYS_CLOCK_GETTIME, 0, ctypes.byref(ts)) != 0:
        return None
    return int(ts.tv_sec) * 1_000_000_000 + int(ts.tv_nsec)


def main() -> int:
    split = sys.argv.index("--")
    shm_name = sys.argv[1:split][sys.argv[1:split].index("--shm-name") + 1]
    daemon = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "chronotick.daemon.cli",
            "--shm-name",
            shm_name,
            *sys.argv[split + 1 :],
        ]
    )
    client = ChronoTickClient(shm_name)
    try:
        for line in sys.stdin:
            command = line.strip()
            if command == "quit":
                break
            if command != "read":
                print(json.dumps({"error": f"unknown command {command!r}"}), flush=True)
                continue
            try:
                true_before = true_time_ns()
                faked_ns = time.time_ns()
                true_after = true_time_ns()
                reading = client.get_time()
                info = reading.to_dict()
                # The corrected time at `faked_ns`, whose true time lies in [before, after]:
                # the reading's correction, applied 1-2 µs earlier (drift over that is < 1 ns).
                info["paired"] = {
                    "corrected_ns": faked_ns + (reading.corrected_time_ns - reading.system_time_ns),
                    "true_before_ns": true_before,
                    "true_after_ns": true_after,
                }
                try:
                    info["now_ns"] = list(client.now_ns())
                except ShmError as exc:
                    info["now_ns"] = None
                    info["now_error"] = type(exc).__name__
                print(json.dumps(info), flush=True)
            except ShmError as exc:
                print(json.dumps({"error": type(exc).__name__, "message": str(exc)}), flush=True)
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            code = daemon.wait(timeout=10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            code = -9
        print(json.dumps({"daemon_exit": code}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
