"""Replay of real NTP traces: feed a predictor every k-th measured row, score the others.

The traces (../shared/traces, recorded by the earlier prototype on a real host) hold NTP
measurements every ~100-180 s and, at the same instants, what the prototype served. A
predictor is given every k-th measured row as a sample and scored at the measured rows it was
not given, against that row's NTP offset; the prototype is scored at the same rows from the
offsets it served. The reference is itself noisy (2-3 ms over the Internet): no predictor can
score far below its spread, and coverage figures are against that noisy reference. A bound
counts as violated only when it misses the reference's own interval (offset ± delay/2).
"""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path
from typing import Any

from chronotick.estimation.samples import Sample
from chronotick.sim.runner import DEFAULT_PREDICTORS, PREDICTORS
from chronotick.sim.scenario import Scenario, ServerSpec
from chronotick.sim.scoring import Series, summarize

NS_PER_S = 1_000_000_000
PROTOTYPE = "prototype"
REPLAY_PREDICTORS = [*PREDICTORS, PROTOTYPE]
#: where a trace gives no round trip (or 0, meaning unknown), assume the median of the
#: traces that do (36 ms on the stability traces)
DEFAULT_DELAY_MS = 36.0


class TraceError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class TraceRow:
    local_ns: int
    ntp_offset_ns: int
    delay_ns: int
    served_offset_ns: int | None


def _float(value: str | None) -> float | None:
    if value is None or value.strip() == "":
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def read_trace(path: str | Path) -> list[TraceRow]:
    """The measured rows of one of the prototype's CSV formats (see the traces' README)."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except FileNotFoundError:
        raise TraceError(f"no trace at {path}") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise TraceError(f"cannot read {path}: {exc}") from None
    if not rows:
        raise TraceError(f"{path} has no rows")
    columns = set(rows[0])
    out: list[TraceRow] = []
    for row in rows:
        if "ntp_ground_truth_offset_ms" in columns:  # overnight format
            time_s, offset = _float(row.get("timestamp")), _float(row["ntp_ground_truth_offset_ms"])
            half = _float(row.get("ntp_uncertainty_ms"))
            delay = 2 * half if half is not None else None
            served = _float(row.get("client_offset_ms"))
        elif "ntp_offset_ms" in columns:  # stability and validation formats
            time_s = _float(row.get("timestamp")) or _float(row.get("system_time"))
            offset = _float(row["ntp_offset_ms"])
            delay = _float(row.get("ntp_delay_ms"))
            if delay is None and _float(row.get("ntp_uncertainty_ms")) is not None:
                delay = 2 * float(row["ntp_uncertainty_ms"])
            served = _float(row.get("chronotick_offset_ms"))
        else:
            raise TraceError(f"{path}: unknown trace format (columns {sorted(columns)})")
        if time_s is None or offset is None:
            continue
        if delay is not None and delay <= 0:
            delay = None
        out.append(
            TraceRow(
                local_ns=round(time_s * NS_PER_S),
                ntp_offset_ns=round(offset * 1e6),
                delay_ns=round((delay if delay is not None else DEFAULT_DELAY_MS) * 1e6),
                served_offset_ns=round(served * 1e6) if served is not None else None,
            )
        )
    if len(out) < 3:
        raise TraceError(f"{path} has {len(out)} rows with an NTP offset: too few to replay")
    out.sort(key=lambda r: r.local_ns)
    return out


def replay(
    path: str | Path, every: int = 2, predictors: list[str] | None = None
) -> tuple[list[dict[str, Any]], dict[str, Series]]:
    """Figures per predictor, and the series they were computed from."""
    if every < 2:
        raise ValueError("--every must be at least 2: some rows must be left out for scoring")
    names = predictors or [*DEFAULT_PREDICTORS, PROTOTYPE]
    unknown = [n for n in names if n not in REPLAY_PREDICTORS]
    if unknown:
        raise ValueError(f"unknown predictor {unknown[0]!r}; known: {', '.join(REPLAY_PREDICTORS)}")
    rows = read_trace(path)
    name = Path(path).stem
    # The predictors' configuration is the simulator's default node.
    scenario = Scenario(name=name, duration_s=1.0, servers=(ServerSpec("trace"),))
    models = {n: PREDICTORS[n](scenario) for n in names if n != PROTOTYPE}
    series = {n: Series(n, models[n].has_uncertainty if n in models else False) for n in names}
    spacing = (rows[-1].local_ns - rows[0].local_ns) / max(1, len(rows) - 1)
    fresh_for = int(3 * every * spacing)
    start = rows[0].local_ns
    for index, row in enumerate(rows):
        t_s = (row.local_ns - start) / NS_PER_S
        if index % every == 0:
            sample = Sample(row.local_ns, row.ntp_offset_ns, row.delay_ns, "trace")
            for predictor in models.values():
                predictor.add(sample)
            continue
        for n, out in series.items():
            if n == PROTOTYPE:
                if row.served_offset_ns is None:
                    out.add(t_s, math.nan, math.inf, math.inf, 0)
                else:
                    out.add(t_s, float(row.served_offset_ns - row.ntp_offset_ns), math.inf,
                            math.inf, 1)  # fmt: skip
                continue
            model = models[n].estimate(row.local_ns, fresh_for)
            if not model.status.gives_interval:
                out.add(t_s, math.nan, math.inf, math.inf, int(model.status))
                continue
            error = float(model.offset_at(row.local_ns) - row.ntp_offset_ns)
            # The reference is a measurement too: the bound is violated only when the two
            # intervals miss each other, so the reference's own half-width is added.
            bound = float(model.bound_at(row.local_ns) + row.delay_ns // 2)
            out.add(t_s, error, model.sigma_at(row.local_ns), bound, int(model.status))
    figures = [summarize(name, series[n], all_instants=True) for n in names]
    return figures, series
