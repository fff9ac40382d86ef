"""Baselines every figure is measured against: a predictor must beat these to earn its place.

They give no σ and no bound (`has_uncertainty = False`): only their errors are scored.
"""

from __future__ import annotations

import math

from chronotick.estimation.estimator import Verdict
from chronotick.estimation.samples import Sample
from chronotick.model import NS_PER_S, ClockModel
from chronotick.status import ClockStatus


def _point_model(now_ns: int, offset_ns: int, drift_ppb: float, last_ns: int, n: int) -> ClockModel:
    return ClockModel(
        as_of_ns=now_ns,
        offset_ns=offset_ns,
        drift_ppb=drift_ppb,
        sigma_ns=math.inf,
        sigma_cov_ns2_per_s=0.0,
        sigma_drift_ppb=0.0,
        wander_ns2_per_s=0.0,
        bound_ns=0,
        bound_rate_ppb=0.0,
        status=ClockStatus.SYNCHRONIZED,
        last_sample_ns=last_ns,
        samples_used=n,
    )


class Uncorrected:
    """The raw clock: what a process gets without ChronoTick."""

    has_uncertainty = False

    def add(self, sample: Sample) -> Verdict:
        return Verdict(True)

    def reset(self, disrupted: bool = True) -> None:
        pass

    def estimate(self, now_ns: int, fresh_for_ns: int) -> ClockModel:
        return _point_model(now_ns, 0, 0.0, 0, 0)


class HoldLast:
    """The last measured offset, held: strong on a disciplined clock with noisy references."""

    has_uncertainty = False

    def __init__(self) -> None:
        self._last: Sample | None = None

    def add(self, sample: Sample) -> Verdict:
        if self._last is None or sample.local_ns > self._last.local_ns:
            self._last = sample
        return Verdict(True)

    def reset(self, disrupted: bool = True) -> None:
        self._last = None

    def estimate(self, now_ns: int, fresh_for_ns: int) -> ClockModel:
        if self._last is None:
            return ClockModel.unknown(now_ns)
        return _point_model(now_ns, self._last.offset_ns, 0.0, self._last.local_ns, 1)


class TwoPoint:
    """The last measurement plus the drift between the last two."""

    has_uncertainty = False

    def __init__(self) -> None:
        self._last: list[Sample] = []

    def add(self, sample: Sample) -> Verdict:
        self._last = sorted([*self._last, sample], key=lambda s: s.local_ns)[-2:]
        return Verdict(True)

    def reset(self, disrupted: bool = True) -> None:
        self._last = []

    def estimate(self, now_ns: int, fresh_for_ns: int) -> ClockModel:
        if not self._last:
            return ClockModel.unknown(now_ns)
        last = self._last[-1]
        drift = 0.0
        if len(self._last) == 2:
            first = self._last[0]
            span_s = (last.local_ns - first.local_ns) / NS_PER_S
            if span_s > 0:
                drift = (last.offset_ns - first.offset_ns) / span_s
        offset = last.offset_ns + int(drift * (now_ns - last.local_ns) / NS_PER_S)
        return _point_model(now_ns, offset, drift, last.local_ns, len(self._last))
