"""The bound while outliers are held back: it must hold whether they prove right or wrong."""

from __future__ import annotations

from chronotick.estimation.estimator import RegressionEstimator
from chronotick.estimation.samples import Sample

S = 1_000_000_000
T0 = 1_760_000_000 * S
POLL = 16 * S


def test_the_bound_covers_a_held_back_outlier_that_was_right() -> None:
    """The reference's rate jumps by 50 ppm, far beyond the 5 ppm the bound allows between
    samples. The first sample after the jump is held back as an outlier; from then on the
    bound must contain the truth, which that sample already showed."""
    est = RegressionEstimator()
    for k in range(20):  # a steady clock, 20 ppm fast relative to the reference
        t = T0 + k * POLL
        assert est.add(Sample(t, -20_000 * k * 16, 100_000, "a")).accepted

    def truth(t: int) -> float:
        elapsed = (t - T0) / S
        base = -20_000.0 * elapsed
        jump_at = 19 * 16 + 8
        return base - 50_000.0 * max(0.0, elapsed - jump_at)

    t_out = T0 + 20 * POLL
    verdict = est.add(Sample(t_out, round(truth(t_out)), 100_000, "a"))
    assert (verdict.accepted, verdict.reason) == (False, "outlier")
    model = est.estimate(t_out, 60 * S)
    error = model.offset_at(t_out) - truth(t_out)
    assert abs(error) > 300_000  # the line alone is far off ...
    assert abs(error) <= model.bound_at(t_out)  # ... and the bound says so
