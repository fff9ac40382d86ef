"""What the zero-shot residual forecaster costs: load time, resident memory, one forecast.

    .venv/bin/python benchmarks/zero_shot_cost.py [--model fracast] [--calls 20] [--json]

Memory is VmRSS from /proc/self/status, read before torch is imported, after it is imported,
and after the model is loaded, so the report separates torch's share (the daemon may have
imported it already) from the model's. A forecast is one `forecast` call of the adapter on a
256-point context (irregularly spaced, 64 s apart on average) at 8 horizons up to 48 polls (one
pass of fracast's native 48-step head); the median of `--calls` calls, on the calling thread
with the adapter's default of one torch thread.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np


def vm_rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS in /proc/self/status")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--model", default="fracast")
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from chronotick.estimation.forecast.foundation import load_zero_shot

    rss_start = vm_rss_mib()
    began = time.perf_counter()
    import torch

    torch_import_s = time.perf_counter() - began
    rss_torch = vm_rss_mib()
    began = time.perf_counter()
    model = load_zero_shot(args.model)
    load_s = time.perf_counter() - began
    rss_loaded = vm_rss_mib()
    if model is None:
        raise SystemExit(f"{args.model} is unavailable (see the log line above)")

    rng = np.random.default_rng(1)
    t = 64.0 * np.cumsum(rng.uniform(0.5, 1.5, 256))
    residual = 800.0 * np.sin(2 * np.pi * t / 1280.0) + 2.0 * t / 64.0 + rng.normal(0, 30, 256)
    horizons = [64.0 * k for k in (1, 2, 4, 8, 12, 16, 32, 48)]
    model.forecast(t, residual, horizons)  # the first call warms caches up
    times = []
    for _ in range(args.calls):
        began = time.perf_counter()
        model.forecast(t, residual, horizons)
        times.append(time.perf_counter() - began)
    rss_after = vm_rss_mib()

    report = {
        "model": args.model,
        "torch_import_s": round(torch_import_s, 3),
        "load_s": round(load_s, 3),
        "rss_mib": {
            "start": round(rss_start, 1),
            "after_torch_import": round(rss_torch, 1),
            "after_load": round(rss_loaded, 1),
            "after_forecasts": round(rss_after, 1),
        },
        "forecast_ms": {
            "median": round(1e3 * statistics.median(times), 2),
            "min": round(1e3 * min(times), 2),
            "max": round(1e3 * max(times), 2),
            "calls": args.calls,
        },
        "torch_threads": torch.get_num_threads(),
    }
    if args.json:
        print(json.dumps(report))
        return
    print(f"{args.model}: torch import {report['torch_import_s']} s, load {report['load_s']} s")
    print(
        f"VmRSS {rss_start:.0f} MiB -> {rss_torch:.0f} (torch) -> {rss_loaded:.0f} (model) "
        f"-> {rss_after:.0f} MiB (after {args.calls + 1} forecasts)"
    )
    f = report["forecast_ms"]
    print(f"forecast (256 points, 8 horizons): median {f['median']} ms [{f['min']}, {f['max']}]")


if __name__ == "__main__":
    main()
