"""What the forecasters cost: per cycle, and in a running daemon, beside the regression.

    .venv/bin/python benchmarks/forecaster_cost.py [--hours H] [--daemon-seconds S]
        [--poll S] [--hours-skip]

1. Per cycle, on one core (torch limited to one thread): the simulator's temperature_cycles
   scenario fed to a `fused` predictor that trains inline, so each accepted sample's `add`
   holds the whole forecaster update (the response fit, the regression of what it leaves,
   and every other time the fracast forecast); and `estimate`, the publishing path. Median
   and p99 of each, beside the regression's own `add` and `estimate` in the same run.
2. In a daemon: `chronotick-daemon --predictor regression` and `--predictor fused` side by
   side, at the default rates (10 Hz publishing, polls from 64 s) against a local
   `chronotick-ntp-server`, for the same wall time: CPU share of one core (user + system
   from /proc) and resident memory (VmRSS) at the end. The first minute is left out (start,
   imports, warm-up polls).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from chronotick.estimation.estimator import EstimatorConfig, RegressionEstimator
from chronotick.estimation.forecast.covariates import CovariateReading
from chronotick.estimation.forecast.fused import FusedPredictor
from chronotick.estimation.predictor import make_predictor
from chronotick.estimation.samples import Sample
from chronotick.sim import scenario
from chronotick.sim.oscillator import Oscillator

S = 1_000_000_000
EPOCH = 1_760_000_000 * S


def per_cycle(hours: float) -> None:
    import torch

    torch.set_num_threads(1)
    sc = scenario.load("temperature_cycles")
    oscillator = Oscillator(sc.clock, sc.temperature, hours * 3600, np.random.default_rng(1))
    rng = np.random.default_rng(2)
    fused = make_predictor("fused", EstimatorConfig())
    assert isinstance(fused, FusedPredictor)
    regression = RegressionEstimator(EstimatorConfig())
    calls = ("fused add", "fused estimate", "regression add", "regression estimate")
    timings: dict[str, list[float]] = {k: [] for k in calls}
    poll_s = 64
    for t in range(0, int(hours * 3600), 2):
        local = EPOCH + oscillator.local_ns(t * S)
        if t % 10 == 0:
            fused.observe_covariates(CovariateReading(local, oscillator.temperature_at_c(t * S)))
        if t % poll_s == 0:
            offset = round(-oscillator.raw_error_ns(t * S) + rng.normal(0, 10_000))
            sample = Sample(local, offset, 200_000, "a")
            for name, predictor in (("fused", fused), ("regression", regression)):
                started = time.perf_counter()
                predictor.add(sample)
                timings[f"{name} add"].append(time.perf_counter() - started)
        if t % 10 == 0:
            for name, predictor in (("fused", fused), ("regression", regression)):
                started = time.perf_counter()
                predictor.estimate(local, 10**15)
                timings[f"{name} estimate"].append(time.perf_counter() - started)
    print(f"Per cycle, temperature_cycles, {hours:g} h, one torch thread, training inline:\n")
    print("| call | n | median ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|")
    for name, values in timings.items():
        ms = np.array(values) * 1000
        print(f"| {name} | {len(ms)} | {np.median(ms):.3f} | {np.percentile(ms, 99):.3f} "
              f"| {ms.max():.1f} |")  # fmt: skip
    add = np.array(timings["fused add"]) * 1000
    print(
        f"\nfused add p99 / regression add p99: "
        f"{np.percentile(add, 99) / (np.percentile(timings['regression add'], 99) * 1000):.0f}x"
    )


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def in_daemon(seconds: float, poll_s: float | None) -> None:
    bin_dir = Path(sys.executable).parent
    port = _free_port()
    tag = f"cost{os.getpid()}"
    with tempfile.TemporaryDirectory() as scratch:
        server = subprocess.Popen(
            [bin_dir / "chronotick-ntp-server", "--listen", f"127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        daemons = {
            name: subprocess.Popen(
                [
                    bin_dir / "chronotick-daemon",
                    "--server",
                    f"127.0.0.1:{port}",
                    "--shm-name",
                    f"{tag}-{name}",
                    "--shm-dir",
                    scratch,
                    "--predictor",
                    name,
                    *(["--min-poll", str(poll_s), "--max-poll", str(poll_s)] if poll_s else []),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for name in ("regression", "fused")
        }
        try:
            time.sleep(60)
            start = {n: _cpu_s(d.pid) for n, d in daemons.items()}
            began = time.monotonic()
            time.sleep(seconds)
            wall = time.monotonic() - began
            cpu = {n: _cpu_s(d.pid) - start[n] for n, d in daemons.items()}
            rss = {n: _rss_mb(d.pid) for n, d in daemons.items()}
        finally:
            for process in (*daemons.values(), server):
                process.send_signal(signal.SIGTERM)
            for process in (*daemons.values(), server):
                process.wait(10)
    rates = f"polling every {poll_s:g} s" if poll_s else "the default rates"
    print(f"\nDaemons at {rates}, side by side, {wall:.0f} s after a minute's start:\n")
    print("| predictor | CPU % of a core | resident MB |")
    print("|---|---:|---:|")
    for name in daemons:
        print(f"| {name} | {100 * cpu[name] / wall:.2f} | {rss[name]:.0f} |")
    if cpu["regression"] > 0:
        print(f"\nfused CPU / regression CPU: {cpu['fused'] / cpu['regression']:.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hours", type=float, default=4.0)
    parser.add_argument("--daemon-seconds", type=float, default=240.0)
    parser.add_argument("--hours-skip", action="store_true", help="skip the per-cycle part")
    parser.add_argument(
        "--poll", type=float, help="the daemons poll every POLL s (default: their own rates)"
    )
    args = parser.parse_args()
    if not args.hours_skip:
        per_cycle(args.hours)
    if args.daemon_seconds > 0:
        in_daemon(args.daemon_seconds, args.poll)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
