"""The PyPI `clockbound` client reading our daemon's ClockBound segment, both on one faked clock.

Like tests/helpers/faked_probe.py, this is the faked parent (libfaketime's rate counts from the
parent's start, FAKETIME_DONT_RESET=1): it starts `chronotick-daemon` with the arguments after
`--`, then answers one JSON line per command on stdin:

- `read`: the client's status and `now()` interval (or the error it raised), the true time by a
  raw system call just before and after it, the faked clock between them, and our own bound;
- `kill`: SIGKILL the daemon (no clean shutdown: the segment keeps its last record);
- `quit` (or end of input): SIGTERM the daemon and report its exit code.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from typing import Any

import clockbound

from chronotick.client import ChronoTickClient
from chronotick.shm import ShmError
from tests.helpers.faked_probe import true_time_ns


def read(client: clockbound.Clockbound, own: ChronoTickClient) -> dict[str, Any]:
    out: dict[str, Any] = {}
    try:
        out["status"] = client.snapshot().clock_status
        true_before = true_time_ns()
        faked = time.time_ns()
        try:
            bound = client.now()
            out["interval"] = [bound.earliest, bound.latest]
        except clockbound.ClockboundError as exc:
            out["error"] = type(exc).__name__
        true_after = true_time_ns()
        out.update(true_before=true_before, faked=faked, true_after=true_after)
    except clockbound.ClockboundError as exc:
        out["error"] = type(exc).__name__
    try:
        own_bound = own.get_time().error_bound_seconds
        out["own_bound_ns"] = round(own_bound * 1e9) if math.isfinite(own_bound) else None
    except ShmError as exc:
        out["own_error"] = type(exc).__name__
    return out


def main() -> int:
    split = sys.argv.index("--")
    ours = sys.argv[1:split]
    path = ours[ours.index("--path") + 1]
    shm_name = ours[ours.index("--shm-name") + 1]
    daemon = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "chronotick.daemon.cli",
            "--shm-name",
            shm_name,
            "--clockbound-path",
            path,
            *sys.argv[split + 1 :],
        ]
    )
    client: clockbound.Clockbound | None = None
    own = ChronoTickClient(shm_name)
    try:
        for line in sys.stdin:
            command = line.strip()
            if command == "quit":
                break
            if command == "kill":
                daemon.kill()
                daemon.wait()
                print(json.dumps({"killed": True}), flush=True)
            elif command == "read":
                if client is None:
                    try:
                        client = clockbound.Clockbound(path)
                    except clockbound.ClockboundError as exc:
                        print(json.dumps({"error": type(exc).__name__}), flush=True)
                        continue
                print(json.dumps(read(client, own)), flush=True)
            else:
                print(json.dumps({"error": f"unknown command {command!r}"}), flush=True)
    finally:
        if daemon.poll() is None:
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
