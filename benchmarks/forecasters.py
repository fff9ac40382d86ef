"""The forecasters against the regression: every built-in scenario and the four real traces.

    .venv/bin/python benchmarks/forecasters.py [--jobs 2] [--traces DIR] [--scenario NAME ...]

Prints markdown tables: per scenario the regression, `fused` and `ml` (RMS, p99, ±1σ/±2σ
coverage, bound violations, median bound) with the ratio of each RMS to the regression's,
measured in the same run; what the response model learnt on the temperature scenarios beside
the scenario's true clock; the replays (mean absolute error against hold-last and the
prototype); and the cost of the forecasters per accepted sample. docs/benchmarks.md records
its output.
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from pathlib import Path
from typing import Any

from chronotick.estimation.forecast.fused import FusedPredictor
from chronotick.sim import replay, runner, scenario

PREDICTORS = ["regression", "fused", "ml"]
TEMPERATURE_SCENARIOS = ("temperature_cycles", "daily_temperature")


def run_scenario(name: str) -> dict[str, Any]:
    sc = scenario.load(name)
    started = time.process_time()
    result = runner.run(sc, PREDICTORS)
    cpu_s = time.process_time() - started
    learnt = None
    fused = result.predictors["fused"]
    if isinstance(fused, FusedPredictor) and fused.fit is not None:
        learnt = fused.fit.temperature_response()
    return {
        "name": name,
        "figures": result.figures,
        "cpu_s": cpu_s,
        "learnt": learnt,
        "true": (sc.clock.temperature_coefficient_ppm_per_c2, sc.clock.turnover_c),
        "samples": len(fused.samples) if isinstance(fused, FusedPredictor) else 0,
    }


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    default = Path(__file__).resolve().parents[2] / "shared" / "traces"
    parser.add_argument("--traces", type=Path, default=default)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--scenario", action="append", help="repeatable; default: all")
    args = parser.parse_args()
    names = args.scenario or scenario.builtin_names()
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        results = pool.map(run_scenario, names)

    print("| scenario | predictor | RMS µs | × regression | p99 µs | ±1σ | ±2σ | bound viol. "
          "| median bound µs |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for result in results:
        figures = {f["predictor"]: f for f in result["figures"]}
        base = figures["regression"]["rms_error_us"]
        for name in PREDICTORS:
            f = figures[name]
            ratio = f["rms_error_us"] / base if base else float("nan")
            print(f"| {result['name']} | {name} | {fmt(f['rms_error_us'])} | {ratio:.2f} "
                  f"| {fmt(f['p99_abs_error_us'])} | {fmt(f['coverage_1sigma'], 3)} "
                  f"| {fmt(f['coverage_2sigma'], 3)} | {f['bound_violations']} "
                  f"| {fmt(f['median_bound_us'])} |")  # fmt: skip

    print("\n| scenario | true k ppm/°C² | learnt k | true turnover °C | learnt turnover |")
    print("|---|---:|---:|---:|---:|")
    for result in results:
        if result["name"] in TEMPERATURE_SCENARIOS:
            k, turnover = result["true"]
            learnt = result["learnt"] or (None, None)
            print(f"| {result['name']} | {k:.4f} | {fmt(learnt[0], 4)} | {turnover:.1f} "
                  f"| {fmt(learnt[1], 2)} |")  # fmt: skip

    print("\n| scenario | CPU s for a simulated day, all three predictors |")
    print("|---|---:|")
    for result in results:
        print(f"| {result['name']} | {result['cpu_s']:.1f} |")

    if args.traces.is_dir():
        print("\n| trace | predictor | mean abs µs | × hold_last | × prototype |")
        print("|---|---|---:|---:|---:|")
        for trace in sorted(args.traces.glob("*.csv")):
            figures, _series = replay.replay(
                trace, 2, ["hold_last", "regression", "fused", "ml", "prototype"]
            )
            by = {f["predictor"]: f["mean_abs_error_us"] for f in figures}
            for name in ("hold_last", "regression", "fused", "ml", "prototype"):
                value = by[name]
                print(f"| {trace.stem} | {name} | {value:.1f} | {value / by['hold_last']:.2f} "
                      f"| {value / by['prototype']:.3f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
