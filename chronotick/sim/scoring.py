"""Scoring predictions against the truth: the figures `chronotick-sim` prints.

Error figures count the instants after `time_to_sync_s` (the first instant after which the
error stays under 1 ms), or every instant when told so (trace replay). Coverage and bound
violations count every instant whose status is SYNCHRONIZED or FREE_RUNNING: readers are told
not to trust the others.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from chronotick.status import ClockStatus

SYNC_LIMIT_NS = 1_000_000


@dataclasses.dataclass
class Series:
    """One predictor's predictions at the scored instants."""

    predictor: str
    has_uncertainty: bool
    t_s: list[float] = dataclasses.field(default_factory=list)
    #: predicted − true, ns; NaN where the predictor gave no estimate
    error_ns: list[float] = dataclasses.field(default_factory=list)
    sigma_ns: list[float] = dataclasses.field(default_factory=list)
    bound_ns: list[float] = dataclasses.field(default_factory=list)
    status: list[int] = dataclasses.field(default_factory=list)

    def add(
        self, t_s: float, error_ns: float, sigma_ns: float, bound_ns: float, status: int
    ) -> None:
        self.t_s.append(t_s)
        self.error_ns.append(error_ns)
        self.sigma_ns.append(sigma_ns)
        self.bound_ns.append(bound_ns)
        self.status.append(status)


def _round(value: float, digits: int = 3) -> float | None:
    return None if not math.isfinite(value) else round(value, digits)


def summarize(scenario: str, series: Series, all_instants: bool = False) -> dict[str, Any]:
    t = np.asarray(series.t_s)
    err = np.asarray(series.error_ns)
    status = np.asarray(series.status)
    have = np.isfinite(err)
    # Instants without an estimate (warming up, restarting after a step) neither break nor
    # make synchronization: they are not scored at all.
    bad = have & (np.abs(np.where(have, err, 0.0)) >= SYNC_LIMIT_NS)
    time_to_sync: float | None
    if not have.any():
        time_to_sync = None
    elif not bad.any():
        time_to_sync = float(t[have][0])
    else:
        last_bad = int(np.nonzero(bad)[0][-1])
        later = np.nonzero(have & (np.arange(len(t)) > last_bad))[0]
        time_to_sync = float(t[later[0]]) if len(later) else None
    scored = have.copy()
    if not all_instants and time_to_sync is not None:
        scored &= t >= time_to_sync
    abs_err = np.abs(err[scored])
    out: dict[str, Any] = {
        "scenario": scenario,
        "predictor": series.predictor,
        "samples": int(scored.sum()),
        "mean_abs_error_us": _round(float(abs_err.mean()) / 1e3) if len(abs_err) else None,
        "rms_error_us": _round(float(np.sqrt((abs_err**2).mean())) / 1e3) if len(abs_err) else None,
        "p99_abs_error_us": _round(float(np.percentile(abs_err, 99)) / 1e3)
        if len(abs_err)
        else None,
        "max_abs_error_us": _round(float(abs_err.max()) / 1e3) if len(abs_err) else None,
        "coverage_1sigma": None,
        "coverage_2sigma": None,
        "bound_violations": None,
        "median_bound_us": None,
        "time_to_sync_s": time_to_sync,
    }
    if series.has_uncertainty:
        trusted = have & np.isin(
            status, [int(ClockStatus.SYNCHRONIZED), int(ClockStatus.FREE_RUNNING)]
        )
        e = np.abs(err[trusted])
        sigma = np.asarray(series.sigma_ns)[trusted]
        bound = np.asarray(series.bound_ns)[trusted]
        if len(e):
            out["coverage_1sigma"] = _round(float((e <= sigma).mean()), 4)
            out["coverage_2sigma"] = _round(float((e <= 2 * sigma).mean()), 4)
            out["bound_violations"] = int((e > bound).sum())
            out["median_bound_us"] = _round(float(np.median(bound)) / 1e3)
        out["trusted_instants"] = int(trusted.sum())
    return out
