"""`chronotick-sim`: run scenarios and replay traces; a table for people, JSON for machines."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from chronotick import plotting
from chronotick.display import columns
from chronotick.sim import replay as replay_mod
from chronotick.sim import runner, scenario
from chronotick.sim.scoring import Series

COLUMNS = [
    ("predictor", "predictor", "{}"),
    ("samples", "n", "{}"),
    ("mean_abs_error_us", "mean|e| µs", "{:.1f}"),
    ("rms_error_us", "rms µs", "{:.1f}"),
    ("p99_abs_error_us", "p99 µs", "{:.1f}"),
    ("max_abs_error_us", "max µs", "{:.1f}"),
    ("coverage_1sigma", "±1σ", "{:.3f}"),
    ("coverage_2sigma", "±2σ", "{:.3f}"),
    ("bound_violations", "viol", "{}"),
    ("median_bound_us", "bound µs", "{:.1f}"),
    ("time_to_sync_s", "sync s", "{:.0f}"),
]


def format_table(title: str, figures: Sequence[dict[str, Any]]) -> str:
    rows = [
        ["-" if row.get(key) is None else fmt.format(row[key]) for key, _label, fmt in COLUMNS]
        for row in figures
    ]
    return "\n".join([title, *columns([label for _key, label, _fmt in COLUMNS], rows)])


def plot(path: str, title: str, series: dict[str, Series]) -> None:
    """Error, ±2σ and the bound over time, one panel per predictor with uncertainty."""
    try:
        plt = plotting.pyplot()
    except plotting.PlotUnavailable as exc:
        raise SystemExit(f"chronotick-sim: {exc}") from None
    import numpy as np

    fig, ax = plt.subplots(figsize=(11, 5))
    for name, s in series.items():
        t = np.asarray(s.t_s) / 3600.0
        err = np.asarray(s.error_ns) / 1e3
        if name == "uncorrected":
            continue
        ax.plot(t, err, lw=0.7, label=f"{name} error")
        if s.has_uncertainty:
            plotting.interval_bands(
                ax,
                t,
                np.zeros_like(t),
                np.asarray(s.sigma_ns) / 1e3,
                np.asarray(s.bound_ns) / 1e3,
                sigma_k=2.0,
                label=name,
            )
    ax.set_xlabel("hours")
    ax.set_ylabel("µs")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    plotting.save(fig, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="chronotick-sim",
        description="Simulate clocks in virtual time, or replay real traces, and score "
        "predictors against the truth.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the built-in scenarios")
    run_p = sub.add_parser("run", help="simulate a scenario")
    run_p.add_argument("scenario", help="a built-in name or a TOML file")
    rep_p = sub.add_parser("replay", help="replay a trace CSV")
    rep_p.add_argument("trace")
    rep_p.add_argument("--every", type=int, default=2, help="give every K-th NTP row (K >= 2)")
    for q in (run_p, rep_p):
        q.add_argument("--predictor", action="append", help="repeatable; default: all")
        q.add_argument("--json", action="store_true", help="one JSON object per predictor")
        q.add_argument("--plot", metavar="FILE.png", help="draw error, ±σ and bound over time")
    args = p.parse_args(argv)

    if args.command == "list":
        for name in scenario.builtin_names():
            print(f"{name:<20} {scenario.load(name).description}")
        return 0
    try:
        if args.command == "run":
            sc = scenario.load(args.scenario)
            result = runner.run(sc, args.predictor)
            figures, series, title = result.figures, result.series, f"scenario {sc.name}"
        else:
            figures, series = replay_mod.replay(args.trace, args.every, args.predictor)
            title = f"replay {args.trace} (every {args.every})"
    except (scenario.ScenarioError, replay_mod.TraceError, ValueError) as exc:
        print(f"chronotick-sim: {exc}", file=sys.stderr)
        return 2
    if args.json:
        for row in figures:
            print(json.dumps(row, sort_keys=True))
    else:
        print(format_table(title, figures))
    if args.plot:
        plot(args.plot, title, series)
    return 0


if __name__ == "__main__":
    sys.exit(main())
