"""`chronotick-daemon`: flags and a config file in, a running publisher out."""

from __future__ import annotations

import argparse
import logging
import sys

from chronotick.clockbound_segment import DEFAULT_PATH as CLOCKBOUND_DEFAULT_PATH
from chronotick.daemon.config import LOG_LEVELS, ConfigError, DaemonConfig, build_config, load_file
from chronotick.daemon.service import Daemon
from chronotick.daemon.stopper import Stopper, stop_on_signals
from chronotick.estimation.forecast.foundation import KNOWN_MODELS
from chronotick.estimation.predictor import DEFAULT_PREDICTOR, PREDICTOR_NAMES


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="chronotick-daemon",
        description="Measure this host's clock against NTP servers and publish a corrected "
        "clock with its error bounds in shared memory.",
    )
    p.add_argument("--config", metavar="FILE", help="TOML file; its keys are the long options")
    add_daemon_arguments(p)
    return p


def add_daemon_arguments(p: argparse.ArgumentParser) -> None:
    """The daemon's flags; `chronotick-node start` takes them too."""
    p.add_argument(
        "--server",
        action="append",
        dest="servers",
        metavar="HOST[:PORT]",
        help="NTP server (repeatable); replaces the configured list",
    )
    p.add_argument("--min-poll", type=float, dest="min_poll_s", metavar="SECONDS")
    p.add_argument("--max-poll", type=float, dest="max_poll_s", metavar="SECONDS")
    p.add_argument("--burst", type=int, dest="burst_size", metavar="N")
    p.add_argument("--burst-spacing", type=float, dest="burst_spacing_s", metavar="SECONDS")
    p.add_argument("--timeout", type=float, dest="timeout_s", metavar="SECONDS")
    p.add_argument("--shm-name", dest="shm_name", metavar="NAME")
    p.add_argument("--shm-dir", dest="shm_dir", metavar="DIR", help="default /dev/shm")
    p.add_argument("--node-id", dest="node_id", metavar="ID")
    p.add_argument("--publish-rate", type=float, dest="publish_rate_hz", metavar="HZ")
    p.add_argument("--void-after", type=float, dest="void_after_s", metavar="SECONDS")
    p.add_argument("--drift-tolerance-ppm", type=float, dest="drift_tolerance_ppm")
    p.add_argument("--log-level", choices=LOG_LEVELS, dest="log_level")
    p.add_argument(
        "--clockbound-path",
        dest="clockbound_path",
        metavar="PATH",
        help="also write an AWS ClockBound segment (layout 2) for ClockBound clients; "
        f"they read {CLOCKBOUND_DEFAULT_PATH} (docs/clockbound.md)",
    )
    p.add_argument(
        "--predictor",
        choices=PREDICTOR_NAMES,
        dest="predictor",
        help=f"what the published model comes from (default {DEFAULT_PREDICTOR}; "
        "docs/benchmarks.md compares them)",
    )
    p.add_argument(
        "--temperature-sensor",
        dest="temperature_sensor",
        metavar="PATH",
        help="sysfs temperature file the forecasters learn from (default: the CPU package "
        "sensor, when the host has one)",
    )
    p.add_argument(
        "--zero-shot-model",
        dest="zero_shot_model",
        metavar="NAME",
        help=f"pretrained long-horizon model of ml and fused: {', '.join(KNOWN_MODELS)}, or '' "
        "for none (default fracast, whose weights ship in its wheel)",
    )
    p.add_argument(
        "--metrics-address",
        dest="metrics_address",
        metavar="HOST:PORT",
        help="serve Prometheus metrics over HTTP here (port 0: any free port, logged)",
    )


def load_config(argv: list[str] | None) -> DaemonConfig:
    args = parser().parse_args(argv)
    file_values = load_file(args.config) if args.config else {}
    overrides = {k: v for k, v in vars(args).items() if k != "config"}
    return build_config(file_values, overrides)


def main(argv: list[str] | None = None) -> int:
    try:
        config = load_config(argv)
    except ConfigError as exc:
        print(f"chronotick-daemon: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.logging_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    stop = Stopper()
    stop_on_signals(stop, logging.getLogger("chronotick.daemon"))
    try:
        Daemon(config).run(stop)
    except (RuntimeError, OSError) as exc:
        print(f"chronotick-daemon: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
