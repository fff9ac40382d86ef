"""Every built-in scenario × every predictor, and the trace replays, as markdown tables.

    .venv/bin/python benchmarks/simulator_figures.py [--traces DIR]

Also prints each scenario's wall time per simulated day (the simulator's speed), measured in
the same run. The output is what docs/benchmarks.md records.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from chronotick.sim import replay, runner, scenario

FIELDS = [
    ("rms_error_us", "RMS µs"),
    ("p99_abs_error_us", "p99 µs"),
    ("max_abs_error_us", "max µs"),
    ("coverage_1sigma", "±1σ"),
    ("coverage_2sigma", "±2σ"),
    ("bound_violations", "bound viol."),
    ("median_bound_us", "median bound µs"),
    ("time_to_sync_s", "sync s"),
]


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def table(rows: list[dict[str, Any]], first: str) -> str:
    head = f"| {first} | predictor | " + " | ".join(label for _k, label in FIELDS) + " |"
    sep = "|" + "---|" * (len(FIELDS) + 2)
    lines = [head, sep]
    for row in rows:
        values = " | ".join(cell(row.get(key)) for key, _label in FIELDS)
        lines.append(f"| {row['scenario']} | {row['predictor']} | {values} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    default = Path(__file__).resolve().parents[2] / "shared" / "traces"
    parser.add_argument("--traces", type=Path, default=default)
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    speed: list[str] = []
    for name in scenario.builtin_names():
        sc = scenario.load(name)
        start = time.perf_counter()
        result = runner.run(sc)
        wall = time.perf_counter() - start
        rows.extend(result.figures)
        speed.append(f"| {name} | {sc.duration_s / 3600:.0f} h | {wall:.1f} s | "
                     f"{wall / (sc.duration_s / 86400):.1f} s |")  # fmt: skip
    print("### Scenarios\n")
    print(table(rows, "scenario"))
    print("\n### Speed (wall time, this run)\n")
    print("| scenario | simulated | wall | wall per simulated day |\n|---|---|---|---|")
    print("\n".join(speed))
    traces = sorted(args.traces.glob("*.csv"))
    if traces:
        replay_rows: list[dict[str, Any]] = []
        for trace in traces:
            figures, _series = replay.replay(trace, every=2)
            replay_rows.extend(figures)
        print("\n### Trace replay (every 2nd NTP row given, scored on the others)\n")
        mae_fields = [("mean_abs_error_us", "mean abs µs"), *FIELDS[:2], ("coverage_2sigma", "±2σ"),
                      ("bound_violations", "bound viol.")]  # fmt: skip
        print("| trace | predictor | " + " | ".join(lbl for _k, lbl in mae_fields) + " |")
        print("|" + "---|" * (len(mae_fields) + 2))
        for row in replay_rows:
            values = " | ".join(cell(row.get(key)) for key, _lbl in mae_fields)
            print(f"| {row['scenario']} | {row['predictor']} | {values} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
