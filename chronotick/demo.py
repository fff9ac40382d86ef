"""`make demo`: one node against the embedded NTP server, printed every second.

The reference is the embedded NTP server serving a clock that is off from this host's by a
known offset and drift, so the demo can show the daemon's error against the truth beside the
σ and the bound it claims. The daemon runs as its own process, as it would in production.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import uuid

from chronotick.client import ChronoTickClient
from chronotick.clocks import SimulatedClock, SimulatedClockParams
from chronotick.ntp.server import NtpServer
from chronotick.shm import ShmError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="chronotick-demo", description=__doc__)
    p.add_argument("--seconds", type=float, default=60.0, help="how long to run (0: forever)")
    p.add_argument("--offset-ms", type=float, default=250.0, help="reference ahead of this host")
    p.add_argument("--drift-ppm", type=float, default=40.0, help="reference rate vs this host")
    args = p.parse_args(argv)

    reference = SimulatedClock(
        SimulatedClockParams(
            offset_ns=round(args.offset_ms * 1e6),
            drift_ppm=args.drift_ppm,
            epoch_ns=time.time_ns(),
        )
    )
    shm_name = f"chronotick-demo-{uuid.uuid4().hex[:6]}"
    with NtpServer(reference, "127.0.0.1", 0) as server:
        host, port = server.address
        print(
            f"reference: embedded NTP server on {host}:{port}, {args.offset_ms:+.1f} ms and "
            f"{args.drift_ppm:+.1f} ppm from this host's clock"
        )
        daemon = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "chronotick.daemon.cli",
                "--server",
                f"{host}:{port}",
                "--min-poll",
                "2",
                "--max-poll",
                "8",
                "--burst",
                "3",
                "--burst-spacing",
                "0.1",
                "--shm-name",
                shm_name,
                "--log-level",
                "warning",
            ]
        )
        try:
            return _watch(shm_name, reference, args.seconds)
        except KeyboardInterrupt:
            return 0
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=10)


def _watch(shm_name: str, reference: SimulatedClock, seconds: float) -> int:
    print(f"daemon publishing to /dev/shm/{shm_name}; reading it every second\n")
    print(f"{'corrected time (UTC)':<28} {'σ':>9} {'bound':>10} {'error':>10}  status")
    errors_us: list[float] = []
    violations = 0
    deadline = time.monotonic() + seconds if seconds > 0 else float("inf")
    with ChronoTickClient(shm_name) as client:
        while time.monotonic() < deadline:
            time.sleep(1.0)
            try:
                info = client.get_time()
            except ShmError as exc:
                print(f"waiting for the daemon: {exc}")
                continue
            truth_ns = reference.at(info.system_time_ns)
            if not info.status.gives_interval:
                print(f"{'-':<28} {'-':>9} {'-':>10} {'-':>10}  {info.status.name}")
                continue
            error_ns = info.corrected_time_ns - truth_ns
            errors_us.append(error_ns / 1e3)
            if abs(error_ns) > info.error_bound_seconds * 1e9:
                violations += 1
            stamp = time.strftime("%H:%M:%S", time.gmtime(info.corrected_timestamp))
            frac = f"{info.corrected_timestamp % 1:.6f}"[1:]
            print(
                f"{stamp + frac:<28} {info.uncertainty_seconds * 1e6:>7.1f}µs "
                f"±{info.error_bound_seconds * 1e6:>7.1f}µs {error_ns / 1e3:>+8.1f}µs  "
                f"{info.status.name}"
            )
        if errors_us:
            target = client.get_time().corrected_timestamp + 1.5
            late = client.wait_until(target, tolerance_ms=5.0)
            print(f"\nwait_until(now + 1.5 s) woke {late * 1e6:+.1f} µs from the target")
    if errors_us:
        rms = (sum(e * e for e in errors_us) / len(errors_us)) ** 0.5
        worst = max(abs(e) for e in errors_us)
        print(
            f"{len(errors_us)} readings: RMS error {rms:.1f} µs, max {worst:.1f} µs, "
            f"bound violations {violations}"
        )
    return 0 if violations == 0 else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
