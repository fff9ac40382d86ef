"""What every clock predictor offers, so the daemon and the simulator can drive any of them."""

from __future__ import annotations

from typing import Protocol

from chronotick.estimation.estimator import Verdict
from chronotick.estimation.samples import Sample
from chronotick.model import ClockModel


class Predictor(Protocol):
    """Learns from measurements only (never from its own published output)."""

    #: whether `estimate` gives a meaningful σ and bound (baselines do not)
    has_uncertainty: bool

    def add(self, sample: Sample) -> Verdict: ...

    def reset(self, disrupted: bool = True) -> None: ...

    def estimate(self, now_ns: int, fresh_for_ns: int) -> ClockModel: ...
