"""`chronotick-ntp-server`: serve the system clock, or a skewed simulated one, over NTP.

A reference for tests and the demo: with `--offset-ms`, `--drift-ppm` and `--wander-ppm-per-sqrt-s`
the served clock is a `SimulatedClock` whose epoch is the moment the server starts, so a client
knows exactly what offset it should measure.
"""

from __future__ import annotations

import argparse
import logging
import math
import signal
import sys
import threading
import time
from types import FrameType

from chronotick.clocks import Clock, SimulatedClock, SimulatedClockParams, SystemClock
from chronotick.ntp.packet import MAX_STRATUM, ServerIdentity
from chronotick.ntp.server import NtpServer

PROG = "chronotick-ntp-server"


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT`, or `[V6ADDR]:PORT` for IPv6, to (host, port)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT or [IPV6]:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise argparse.ArgumentTypeError(f"put an IPv6 address in brackets: [{host}]:{port_text}")
    if not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT with a port 0..65535, got {text!r}")
    return host, int(port_text)


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
    return value


def _stratum(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_STRATUM:
        raise argparse.ArgumentTypeError(f"stratum must be 1..{MAX_STRATUM}, got {text!r}")
    return int(text)


def _ref_id(text: str) -> bytes:
    if not 1 <= len(text) <= 4 or not text.isascii() or not text.isprintable():
        raise argparse.ArgumentTypeError(f"ref id must be 1 to 4 printable ASCII chars: {text!r}")
    return text.encode("ascii")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Serve the system clock, or a skewed simulated one, over NTP."
    )
    parser.add_argument("--listen", required=True, type=parse_listen, metavar="HOST:PORT")
    parser.add_argument("--offset-ms", type=_finite, default=0.0, help="served clock's offset")
    parser.add_argument("--drift-ppm", type=_finite, default=0.0, help="its frequency error")
    parser.add_argument(
        "--wander-ppm-per-sqrt-s", type=_finite, default=0.0, help="random walk of frequency"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the wander")
    parser.add_argument("--stratum", type=_stratum, default=1)
    parser.add_argument("--ref-id", type=_ref_id, default=b"CTCK", metavar="TEXT")
    parser.add_argument(
        "--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    return parser


def build_clock(args: argparse.Namespace) -> tuple[Clock, str]:
    """The clock to serve and a description of it; ValueError for out-of-range parameters."""
    if args.offset_ms == 0 and args.drift_ppm == 0 and args.wander_ppm_per_sqrt_s == 0:
        return SystemClock(), "the system clock"
    params = SimulatedClockParams(
        offset_ns=round(args.offset_ms * 1_000_000),
        drift_ppm=args.drift_ppm,
        epoch_ns=time.time_ns(),
        wander_ppm_per_sqrt_s=args.wander_ppm_per_sqrt_s,
        seed=args.seed,
    )
    description = (
        f"a simulated clock (offset {args.offset_ms:+g} ms, drift {args.drift_ppm:+g} ppm, "
        f"wander {args.wander_ppm_per_sqrt_s:g} ppm/√s, seed {args.seed})"
    )
    return SimulatedClock(params), description


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(message)s")
    try:
        clock, description = build_clock(args)
    except ValueError as exc:
        parser.error(str(exc))
    host, port = args.listen
    server = NtpServer(clock, host, port, ServerIdentity(stratum=args.stratum, ref_id=args.ref_id))

    # Set before binding, so that a signal arriving at any point after start stops cleanly.
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    try:
        server.start()
    except OSError as exc:
        print(f"{PROG}: cannot listen on {format_address(host, port)}: {exc}", file=sys.stderr)
        return 1
    try:
        print(f"serving {description} on {format_address(*server.address)}", flush=True)
        stop.wait()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
