"""What every clock predictor offers, so the daemon and the simulator can drive any of them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from chronotick.estimation.estimator import EstimatorConfig, RegressionEstimator, Verdict
from chronotick.estimation.samples import Sample
from chronotick.model import ClockModel

if TYPE_CHECKING:
    from chronotick.estimation.forecast.fused import Training


class Predictor(Protocol):
    """Learns from measurements only (never from its own published output)."""

    #: whether `estimate` gives a meaningful σ and bound (baselines do not)
    has_uncertainty: bool

    def add(self, sample: Sample) -> Verdict: ...

    def reset(self, disrupted: bool = True) -> None: ...

    def estimate(self, now_ns: int, fresh_for_ns: int) -> ClockModel: ...


#: the predictors a daemon can publish from (`--predictor`); the simulator adds its baselines
PREDICTOR_NAMES = ("regression", "ml", "fused")
#: what the daemon runs unless told otherwise: `fused` meets every target of docs/benchmarks.md
#: ("Forecasters"), and until its forecasters have earned weight it publishes the regression
DEFAULT_PREDICTOR = "fused"
#: the pretrained long-horizon model of `ml` and `fused` (its weights ship in its wheel)
DEFAULT_ZERO_SHOT_MODEL = "fracast"


def make_predictor(
    name: str,
    config: EstimatorConfig,
    training: Training | None = None,
    zero_shot_model: str = DEFAULT_ZERO_SHOT_MODEL,
) -> Predictor:
    """A predictor by name. `ml`: the forecasters alone once they have earned it (the
    regression until then); `fused`: regression and forecasters weighted by their errors.
    `zero_shot_model`: the pretrained long-horizon model ("": none); one that is not
    installed is logged and left out."""
    if name == "regression":
        return RegressionEstimator(config)
    if name in ("ml", "fused"):
        from chronotick.estimation.forecast.fused import FusedPredictor
        from chronotick.estimation.forecast.long_horizon import shared_model

        return FusedPredictor(
            RegressionEstimator(config),
            training=training,
            zero_shot=shared_model(zero_shot_model) if zero_shot_model else None,
            forecasters_only=name == "ml",
        )
    raise ValueError(f"unknown predictor {name!r}; known: {', '.join(PREDICTOR_NAMES)}")
