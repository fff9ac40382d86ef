"""`chronotick-client`: read the corrected clock from a shell.

Exit codes: 0 a usable time, 1 no daemon / stale data / incompatible layout, 3 the daemon runs
but gives no interval yet (UNKNOWN or DISRUPTED), 2 bad usage.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from typing import Any

from chronotick.client import ChronoTickClient, TimeInfo
from chronotick.shm import ShmError

EXIT_NO_DAEMON = 1
EXIT_NOT_SYNCHRONIZED = 3


def _iso(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC).isoformat(
        timespec="microseconds"
    )


def format_time(info: TimeInfo) -> str:
    if not info.status.gives_interval:
        return f"status {info.status.name}: no corrected time yet (source {info.source})"
    return (
        f"{_iso(info.corrected_timestamp)}  ±{info.uncertainty_seconds * 1e3:.3f} ms (σ)  "
        f"bound ±{info.error_bound_seconds * 1e3:.3f} ms  {info.status.name}  "
        f"offset {info.offset_correction * 1e3:+.3f} ms  drift {info.drift_rate * 1e6:+.3f} ppm  "
        f"source {info.source}  data age {info.data_age_seconds:.1f} s"
    )


def _emit(payload: dict[str, Any], as_json: bool, text: str) -> None:
    print(json.dumps(payload, sort_keys=True) if as_json else text, flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="chronotick-client", description=__doc__)
    p.add_argument("--shm-name", metavar="NAME", help="segment name (default: chronotick)")
    p.add_argument("--shm-dir", metavar="DIR", help="where the segment lives (default: /dev/shm)")
    p.add_argument("--json", action="store_true", help="one JSON object per reading")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("time", help="print the corrected time once")
    sub.add_parser("status", help="print what the daemon says of itself")
    watch = sub.add_parser("watch", help="print the corrected time repeatedly")
    watch.add_argument("--interval", type=float, default=1.0, metavar="SECONDS")
    watch.add_argument("--count", type=int, default=0, help="stop after N readings (0: never)")
    args = p.parse_args(argv)
    if args.command == "watch" and not 0.01 <= args.interval <= 3600:
        p.error("--interval must be between 0.01 and 3600 seconds")
    try:
        client = ChronoTickClient(args.shm_name, shm_dir=args.shm_dir)
    except ValueError as exc:
        p.error(str(exc))
    try:
        with client:
            if args.command == "status":
                daemon = client.get_daemon_info()
                text = "\n".join(f"{k}: {v}" for k, v in daemon.items())
                _emit(daemon, args.json, text)
                return 0 if daemon["status"] in ("SYNCHRONIZED", "FREE_RUNNING") else 3
            count = 0
            while True:
                info = client.get_time()
                _emit(info.to_dict(), args.json, format_time(info))
                count += 1
                if args.command == "time" or (args.count and count >= args.count):
                    return 0 if info.status.gives_interval else EXIT_NOT_SYNCHRONIZED
                time.sleep(args.interval)
    except ShmError as exc:
        if args.json:
            print(json.dumps({"error": type(exc).__name__, "message": str(exc)}), flush=True)
        print(f"chronotick-client: {exc}", file=sys.stderr)
        return EXIT_NO_DAEMON
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
