"""The first program to copy: read ChronoTick's corrected clock and wait for an instant.

Start a daemon first, e.g. `chronotick-daemon --server pool.ntp.org` (or `make demo`, which
runs one against the embedded NTP server), then: `python examples/simple_client_example.py`
(`--shm-name NAME` for a segment other than the default).
"""

from __future__ import annotations

import argparse
import sys
import time

from chronotick import ChronoTickClient, ShmError


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shm-name", default=None, help="segment name (default: chronotick)")
    parser.add_argument("--wait-s", type=float, default=30.0, help="how long to wait for sync")
    args = parser.parse_args()

    with ChronoTickClient(args.shm_name) as client:
        # 1. Is a daemon publishing a usable clock? (like `chronyc waitsync`)
        deadline = time.monotonic() + args.wait_s
        while not client.is_daemon_ready():
            if time.monotonic() > deadline:
                print("no synchronized ChronoTick daemon; is chronotick-daemon running?")
                return 1
            time.sleep(0.5)

        # 2. The corrected time with its error figures.
        try:
            info = client.get_time()
        except ShmError as exc:
            print(f"cannot read the clock: {exc}")
            return 1
        print(f"corrected time : {info.corrected_timestamp:.6f} s since the epoch")
        correction_ms = info.offset_correction * 1e3
        print(
            f"raw clock      : {info.system_timestamp:.6f} s (corrected by {correction_ms:+.3f} ms)"
        )
        print(f"uncertainty σ  : {info.uncertainty_seconds * 1e6:.1f} µs")
        print(f"error bound    : ±{info.error_bound_seconds * 1e6:.1f} µs")
        print(f"status         : {info.status.name} (source {info.source})")

        # 3. TrueTime-style interval: true time lies in [earliest, latest].
        earliest, latest = client.now()
        print(f"interval       : [{earliest:.6f}, {latest:.6f}]")

        # 4. Act at an instant of corrected time: the next whole second plus one.
        target = float(int(info.corrected_timestamp) + 2)
        late = client.wait_until(target, tolerance_ms=5.0)
        print(f"woke at target {target:.0f} {late * 1e6:+.1f} µs off")
    return 0


if __name__ == "__main__":
    sys.exit(main())
