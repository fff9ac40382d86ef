"""The regression estimator against a synthetic clock whose true offset is known at every instant.

The truth is a clock with a known offset and drift (-50 ms, +100 ppm), measured every 16 s through
a network with Gaussian timestamp noise (30 µs) and random one-way queueing: queueing on one leg
lengthens the round trip by `extra` and moves the measured offset by ±extra/2, which is what NTP's
root-distance interval (delay/2) accounts for. Everything is seeded: the same run every time.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chronotick.estimation.estimator import EstimatorConfig, RegressionEstimator, Verdict
from chronotick.estimation.samples import Sample
from chronotick.model import ClockModel
from chronotick.status import ClockStatus

S = 1_000_000_000
MS = 1_000_000
US = 1_000
T0 = 1_700_000_000 * S
POLL_NS = 16 * S
FRESH_NS = 64 * S
TRUE_OFFSET_NS = -50 * MS
TRUE_DRIFT_PPB = 100_000.0  # +100 ppm


@dataclasses.dataclass(frozen=True)
class Truth:
    """The true offset (reference − local) as a function of the local clock reading."""

    offset_ns: float = TRUE_OFFSET_NS
    drift_ppb: float = TRUE_DRIFT_PPB
    #: (from, extra ppb): the frequency changes at `from`
    drift_change: tuple[int, float] | None = None
    #: (from, step ns): the reference steps at `from`
    step: tuple[int, int] | None = None

    def offset_at(self, t_ns: int) -> float:
        value = self.offset_ns + self.drift_ppb * (t_ns - T0) / S
        if self.drift_change is not None and t_ns > self.drift_change[0]:
            value += self.drift_change[1] * (t_ns - self.drift_change[0]) / S
        if self.step is not None and t_ns >= self.step[0]:
            value += self.step[1]
        return value

    def drift_at(self, t_ns: int) -> float:
        if self.drift_change is not None and t_ns > self.drift_change[0]:
            return self.drift_ppb + self.drift_change[1]
        return self.drift_ppb


class Network:
    """Measurements of the truth: Gaussian noise plus random queueing on one leg."""

    def __init__(
        self,
        seed: int,
        noise_ns: float = 30 * US,
        base_delay_ns: int = 1 * MS,
        queueing_probability: float = 0.5,
        mean_queueing_ns: float = 200 * US,
    ) -> None:
        self.rng = np.random.default_rng(seed)
        self.noise_ns = noise_ns
        self.base_delay_ns = base_delay_ns
        self.queueing_probability = queueing_probability
        self.mean_queueing_ns = mean_queueing_ns

    def measure(self, truth: Truth, t_ns: int, extra_offset_ns: int = 0) -> Sample:
        rng = self.rng
        queueing = 0.0
        if rng.random() < self.queueing_probability:
            queueing = float(rng.exponential(self.mean_queueing_ns))
        leg = 1.0 if rng.random() < 0.5 else -1.0
        error = leg * queueing / 2 + float(rng.normal(0.0, self.noise_ns))
        return Sample(
            local_ns=t_ns,
            offset_ns=round(truth.offset_at(t_ns) + error) + extra_offset_ns,
            delay_ns=round(self.base_delay_ns + queueing),
            source="ref",
            precision_ns=1 * US,
        )


def feed(
    estimator: RegressionEstimator, network: Network, truth: Truth, count: int, start: int = T0
) -> int:
    """Add `count` samples every 16 s from `start`; returns the time of the last one."""
    t = start
    for k in range(count):
        t = start + k * POLL_NS
        assert estimator.add(network.measure(truth, t)).accepted
    return t


def _verdict(verdict: Verdict) -> tuple[bool, str]:
    return verdict.accepted, verdict.reason


def error_ns(model: ClockModel, truth: Truth, t_ns: int) -> float:
    return model.offset_at(t_ns) - truth.offset_at(t_ns)


# --- convergence and status -------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_offset_and_drift_converge_on_a_known_clock(seed: int) -> None:
    truth, network, est = Truth(), Network(seed), RegressionEstimator()
    last = feed(est, network, truth, 30)
    model = est.estimate(last, FRESH_NS)
    assert model.status is ClockStatus.SYNCHRONIZED
    assert abs(error_ns(model, truth, last)) < 50 * US
    assert abs(model.drift_ppb - TRUE_DRIFT_PPB) < 1_000  # 1 ppm
    assert model.samples_used == 30
    assert model.last_sample_ns == last
    assert model.source == "ref"


def test_status_unknown_before_min_samples_then_synchronized() -> None:
    truth, network, est = Truth(), Network(1), RegressionEstimator()
    assert est.estimate(T0, FRESH_NS).status is ClockStatus.UNKNOWN
    for k in range(est.config.min_samples):
        model = est.estimate(T0 + k * POLL_NS, FRESH_NS)
        assert model.status is ClockStatus.UNKNOWN
        assert not model.status.gives_interval
        est.add(network.measure(truth, T0 + k * POLL_NS))
    model = est.estimate(T0 + 2 * POLL_NS + S, FRESH_NS)
    assert model.status is ClockStatus.SYNCHRONIZED
    assert model.status.gives_interval
    assert abs(error_ns(model, truth, model.as_of_ns)) < model.bound_ns


def test_status_free_running_once_no_sample_is_fresh() -> None:
    truth, network, est = Truth(), Network(2), RegressionEstimator()
    last = feed(est, network, truth, 10)
    assert est.estimate(last + FRESH_NS, FRESH_NS).status is ClockStatus.SYNCHRONIZED
    stale = est.estimate(last + FRESH_NS + 1, FRESH_NS)
    assert stale.status is ClockStatus.FREE_RUNNING
    assert stale.status.gives_interval
    later = est.estimate(last + 600 * S, FRESH_NS)
    assert later.status is ClockStatus.FREE_RUNNING
    assert later.bound_ns > stale.bound_ns
    assert later.sigma_ns > stale.sigma_ns


# --- the core promise: the bound holds -----------------------------------------------------------


def run_and_check_bound(truth: Truth, seed: int, samples: int, gaps_after: set[int]) -> int:
    """Evaluate every second between samples (10-minute gaps after the given sample counts).

    At every instant both the fresh estimate and the model published at the last sample,
    extrapolated by its own formulas, must contain the true offset. Returns the evaluations.
    """
    network, est = Network(seed), RegressionEstimator()
    t, evaluations = T0, 0
    for k in range(samples):
        assert est.add(network.measure(truth, t)).accepted
        published = est.estimate(t, FRESH_NS)
        span = 600 * S if k + 1 in gaps_after else POLL_NS
        for now in range(t, t + span, S):
            model = est.estimate(now, FRESH_NS)
            if k + 1 < est.config.min_samples:
                assert not model.status.gives_interval
                continue
            assert model.status.gives_interval
            err = error_ns(model, truth, now)
            assert abs(err) <= model.bound_ns, (seed, k, now - t, err, model.bound_ns)
            assert abs(error_ns(published, truth, now)) <= published.bound_at(now), (seed, k)
            evaluations += 1
        t += span
    return evaluations


@pytest.mark.parametrize("seed", range(4))
def test_bound_contains_true_offset_at_every_evaluation(seed: int) -> None:
    evaluations = run_and_check_bound(Truth(), seed, samples=150, gaps_after={3, 60, 150})
    assert evaluations > 4_000


@pytest.mark.parametrize("seed", range(2))
def test_bound_holds_through_a_change_of_frequency(seed: int) -> None:
    truth = Truth(drift_change=(T0 + 60 * POLL_NS, 2_000.0))
    run_and_check_bound(truth, seed, samples=150, gaps_after={100})


def test_sigma_is_calibrated_over_many_runs() -> None:
    """About 68 % of true errors within ±σ, 95 % within ±2σ ("calibrated means measured").

    300 independent runs of 40 samples, 4 random evaluation instants between samples. The limits
    asserted on 2σ are the ones agreed for the feature (0.85-0.995); 1σ is only checked loosely.
    """
    within_1, within_2, total = 0, 0, 0
    for seed in range(300):
        truth, network, est = Truth(), Network(1_000 + seed), RegressionEstimator()
        rng = np.random.default_rng(seed)
        for k in range(40):
            t = T0 + k * POLL_NS + int(rng.integers(0, S))
            est.add(network.measure(truth, t))
            for now in t + rng.uniform(0, POLL_NS, size=4).astype(np.int64):
                model = est.estimate(int(now), FRESH_NS)
                if not model.status.gives_interval:
                    continue
                err = abs(error_ns(model, truth, int(now)))
                within_1 += err <= model.sigma_ns
                within_2 += err <= 2 * model.sigma_ns
                total += 1
    frac_1, frac_2 = within_1 / total, within_2 / total
    print(f"sigma coverage over {total} evaluations: 1σ {frac_1:.3f}, 2σ {frac_2:.3f}")
    assert 0.85 <= frac_2 <= 0.995, (frac_1, frac_2)
    assert 0.5 <= frac_1 <= 0.9, (frac_1, frac_2)


# --- outliers, steps and frequency changes --------------------------------------------------------


def test_a_single_outlier_is_rejected_and_does_not_move_the_model() -> None:
    truth, network, est = Truth(), Network(3), RegressionEstimator()
    last = feed(est, network, truth, 20)
    spike_at = last + POLL_NS
    before = est.estimate(spike_at + S, FRESH_NS)
    samples_before = est.samples
    verdict = est.add(network.measure(truth, spike_at, extra_offset_ns=20 * MS))
    assert (verdict.accepted, verdict.reason) == (False, "outlier")
    assert verdict.surprise > 6  # how far off it was, in units of the expected spread
    assert est.samples == samples_before
    held = est.estimate(spike_at + S, FRESH_NS)
    # the line does not move; only the bound widens while the outlier waits to be judged,
    # to cover the case that it was right (test_estimator_outliers.py)
    assert dataclasses.replace(held, bound_ns=before.bound_ns) == before
    assert held.bound_ns > before.bound_ns
    # the next ordinary measurement is taken as usual, and the bound narrows again
    assert est.add(network.measure(truth, spike_at + POLL_NS)).accepted
    assert est.estimate(spike_at + POLL_NS, FRESH_NS).bound_ns < held.bound_ns


def test_two_outliers_then_a_good_sample_keep_the_line() -> None:
    truth, network, est = Truth(), Network(4), RegressionEstimator()
    last = feed(est, network, truth, 20)
    for k in (1, 2):
        spike = network.measure(truth, last + k * POLL_NS, extra_offset_ns=20 * MS)
        assert _verdict(est.add(spike)) == (False, "outlier")
    assert est.add(network.measure(truth, last + 3 * POLL_NS)).accepted
    # the count of outliers in a row started again: two more spikes are still rejected
    for k in (4, 5):
        spike = network.measure(truth, last + k * POLL_NS, extra_offset_ns=20 * MS)
        assert _verdict(est.add(spike)) == (False, "outlier")
    model = est.estimate(last + 5 * POLL_NS, FRESH_NS)
    assert abs(error_ns(model, truth, model.as_of_ns)) < 100 * US


def step_run(seed: int) -> tuple[Truth, Network, RegressionEstimator, int]:
    """20 ordinary samples, then the reference steps by +20 ms for good."""
    step_at = T0 + 20 * POLL_NS
    truth = Truth(step=(step_at, 20 * MS))
    network, est = Network(seed), RegressionEstimator()
    feed(est, network, truth, 20)
    return truth, network, est, step_at


def test_three_consistent_outliers_are_accepted_as_a_step() -> None:
    truth, network, est, step_at = step_run(5)
    verdicts = [est.add(network.measure(truth, step_at + k * POLL_NS)) for k in range(3)]
    assert [_verdict(v) for v in verdicts] == [(False, "outlier"), (False, "outlier"), (True, "")]


def test_after_a_step_the_model_follows_the_new_offset_at_once() -> None:
    """Once three samples agree with each other and not with the line, they are the new line.

    BUG: the estimator restarts from the newest sample *before* the step plus the third outlier
    (the two earlier outliers were thrown away), so right after the step it has two samples
    (status UNKNOWN) and then fits a line through a pre-step point (errors of several ms).
    """
    truth, network, est, step_at = step_run(5)
    for k in range(3):
        est.add(network.measure(truth, step_at + k * POLL_NS))
    now = step_at + 2 * POLL_NS + S
    model = est.estimate(now, FRESH_NS)
    assert model.status is ClockStatus.SYNCHRONIZED
    assert abs(error_ns(model, truth, now)) < 300 * US
    assert abs(error_ns(model, truth, now)) <= model.bound_ns


@pytest.mark.parametrize("seed", range(5))
def test_after_a_step_the_bound_holds_once_the_step_is_accepted(seed: int) -> None:
    """After the third step sample is accepted, every published interval contains the truth."""
    truth, network, est, step_at = step_run(seed)
    for k in range(30):
        t = step_at + k * POLL_NS
        est.add(network.measure(truth, t))
        if k < 2:
            continue  # the first two step samples are rightly taken for outliers
        for now in range(t, t + POLL_NS, S):
            model = est.estimate(now, FRESH_NS)
            if model.status.gives_interval:
                err = error_ns(model, truth, now)
                assert abs(err) <= model.bound_ns, (k, err, model.bound_ns)
    final = est.estimate(step_at + 30 * POLL_NS, FRESH_NS)
    assert abs(error_ns(final, truth, final.as_of_ns)) < 100 * US


def test_a_change_of_frequency_drops_old_samples_and_the_model_follows() -> None:
    """+2 ppm halfway: the runs test sees the curve, drops the oldest samples, and the line
    follows the new frequency."""
    change_at = T0 + 64 * POLL_NS
    truth = Truth(drift_change=(change_at, 2_000.0))
    network, est = Network(6), RegressionEstimator()
    used_after_change = []
    for k in range(128):
        t = T0 + k * POLL_NS
        assert est.add(network.measure(truth, t)).accepted
        model = est.estimate(t, FRESH_NS)
        if t == change_at:
            assert model.samples_used == 64  # full window, one straight line so far
            assert abs(model.drift_ppb - TRUE_DRIFT_PPB) < 300
        if t > change_at:
            used_after_change.append(model.samples_used)
    assert min(used_after_change) < 48
    final = est.estimate(T0 + 127 * POLL_NS, FRESH_NS)
    assert abs(final.drift_ppb - (TRUE_DRIFT_PPB + 2_000.0)) < 300
    assert abs(error_ns(final, truth, final.as_of_ns)) < 50 * US


# --- restarts and bad input ----------------------------------------------------------------------


def test_reset_gives_disrupted_until_min_samples_new_samples() -> None:
    truth, network, est = Truth(), Network(7), RegressionEstimator()
    last = feed(est, network, truth, 10)
    est.reset()
    assert est.samples == ()
    # after a backward step the new readings are earlier than the old ones: still accepted
    restart = last - 3_600 * S
    for k in range(est.config.min_samples):
        model = est.estimate(restart + k * POLL_NS, FRESH_NS)
        assert model.status is ClockStatus.DISRUPTED
        assert not model.status.gives_interval
        assert est.add(network.measure(truth, restart + k * POLL_NS)).accepted
    model = est.estimate(restart + 2 * POLL_NS, FRESH_NS)
    assert model.status is ClockStatus.SYNCHRONIZED
    assert model.samples_used == est.config.min_samples


def test_reset_without_disruption_is_unknown() -> None:
    truth, network, est = Truth(), Network(8), RegressionEstimator()
    last = feed(est, network, truth, 5)
    est.reset(disrupted=False)
    assert est.estimate(last, FRESH_NS).status is ClockStatus.UNKNOWN


def test_duplicate_samples_are_rejected() -> None:
    truth, network, est = Truth(), Network(9), RegressionEstimator()
    last = feed(est, network, truth, 10)
    before = est.estimate(last + S, FRESH_NS)
    for t in (last, last - POLL_NS, T0):
        assert _verdict(est.add(network.measure(truth, t))) == (False, "duplicate")
    assert len(est.samples) == 10
    assert est.estimate(last + S, FRESH_NS) == before


def test_late_samples_from_parallel_polls_are_kept_in_time_order() -> None:
    """Polls of several servers finish in any order: a sample older than the newest one is
    placed where it belongs, and the line is the one the samples give in time order. (One
    window only: which window is chosen depends on the predictions made along the way, and a
    late sample was never predicted.)"""
    truth = Truth()
    network = Network(11)
    samples = [network.measure(truth, T0 + k * POLL_NS) for k in range(30)]
    config = EstimatorConfig(windows=(64,))
    in_order, shuffled = RegressionEstimator(config), RegressionEstimator(config)
    for sample in samples:
        assert in_order.add(sample).accepted
    for k in range(0, 30, 2):  # every pair arrives newest first
        assert shuffled.add(samples[k + 1]).accepted
        assert shuffled.add(samples[k]).accepted
    assert [s.local_ns for s in shuffled.samples] == [s.local_ns for s in samples]
    now = samples[-1].local_ns + S
    a, b = in_order.estimate(now, FRESH_NS), shuffled.estimate(now, FRESH_NS)
    assert abs(a.offset_ns - b.offset_ns) <= 1
    assert a.drift_ppb == pytest.approx(b.drift_ppb, abs=1e-6)
    assert a.bound_ns == pytest.approx(b.bound_ns, abs=1)


def test_samples_older_than_a_full_window_are_rejected() -> None:
    truth, network = Truth(), Network(12)
    est = RegressionEstimator(EstimatorConfig(max_samples=8))
    feed(est, network, truth, 20)
    oldest = est.samples[0].local_ns
    assert _verdict(est.add(network.measure(truth, oldest - S))) == (False, "too_old")
    assert len(est.samples) == 8
    assert est.add(network.measure(truth, oldest + S)).accepted  # inside the window: kept
    assert len(est.samples) == 8 and est.samples[0].local_ns == oldest + S


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_samples": 1},
        {"max_samples": 2, "min_samples": 3},
        {"noise_floor_ns": 0},
        {"drift_tolerance_ppb": math.nan},
        {"drift_tolerance_ppb": -1.0},
        {"outlier_sigmas": math.inf},
    ],
)
def test_estimator_config_rejects_impossible_values(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        EstimatorConfig(**kwargs)  # type: ignore[arg-type]


# --- the clock model -----------------------------------------------------------------------------


def test_unknown_model_gives_no_interval() -> None:
    for status in (ClockStatus.UNKNOWN, ClockStatus.DISRUPTED):
        model = ClockModel.unknown(T0, status)
        assert model.status is status
        assert not model.status.gives_interval
        assert math.isinf(model.sigma_ns)
        assert math.isinf(model.sigma_at(T0 + 100 * S))
    assert ClockModel.unknown(T0).status is ClockStatus.UNKNOWN


def test_model_follows_its_documented_formulas() -> None:
    model = ClockModel(
        as_of_ns=T0,
        offset_ns=-50 * MS,
        drift_ppb=100_000.0,
        sigma_ns=3_000.0,
        sigma_cov_ns2_per_s=0.0,
        sigma_drift_ppb=40.0,
        wander_ns2_per_s=100.0,
        bound_ns=500 * US,
        bound_rate_ppb=5_000.0,
        status=ClockStatus.SYNCHRONIZED,
    )
    t = T0 + 100 * S
    assert model.offset_at(t) == -50 * MS + 10 * MS
    assert model.corrected_ns(t) == t - 40 * MS
    assert model.sigma_at(t) == pytest.approx(math.sqrt(3_000.0**2 + 100**2 * 40.0**2 + 100 * 100))
    assert model.bound_at(t) == 500 * US + 500 * US


def test_estimated_sigma_and_bound_grow_with_time() -> None:
    truth, network, est = Truth(), Network(10), RegressionEstimator()
    last = feed(est, network, truth, 30)
    model = est.estimate(last + S, FRESH_NS)
    times = [model.as_of_ns + k * 10 * S for k in range(360)]
    sigmas = [model.sigma_at(t) for t in times]
    bounds = [model.bound_at(t) for t in times]
    assert all(b >= a for a, b in itertools.pairwise(sigmas))
    assert all(b >= a for a, b in itertools.pairwise(bounds))
    assert sigmas[-1] > sigmas[0]
    assert bounds[-1] > bounds[0]


@given(
    sigma=st.floats(1.0, 1e7),
    cov=st.floats(-1e9, 1e9),
    sigma_drift=st.floats(0.0, 1e5),
    wander=st.floats(0.0, 1e6),
    bound=st.integers(0, 10**9),
    rate=st.floats(0.0, 1e6),
    steps=st.lists(st.integers(0, 10**13), min_size=2, max_size=20),
)
def test_model_sigma_and_bound_never_shrink_with_time(
    sigma: float,
    cov: float,
    sigma_drift: float,
    wander: float,
    bound: int,
    rate: float,
    steps: list[int],
) -> None:
    model = ClockModel(
        as_of_ns=T0,
        offset_ns=0,
        drift_ppb=0.0,
        sigma_ns=sigma,
        sigma_cov_ns2_per_s=cov,
        sigma_drift_ppb=sigma_drift,
        wander_ns2_per_s=wander,
        bound_ns=bound,
        bound_rate_ppb=rate,
        status=ClockStatus.SYNCHRONIZED,
    )
    times = sorted(T0 + s for s in steps)
    sigmas = [model.sigma_at(t) for t in times]
    bounds = [model.bound_at(t) for t in times]
    assert sigmas[0] >= sigma * (1 - 1e-12)
    assert all(b >= a * (1 - 1e-9) for a, b in itertools.pairwise(sigmas))
    assert all(b >= a for a, b in itertools.pairwise(bounds))


def _two_paths(queue_on_a: bool, seed: int = 5) -> RegressionEstimator:
    """Two sources 150 µs apart (+75/−75 µs of path asymmetry); with `queue_on_a`, a's
    return path also queues (0-4 ms), which biases its slow samples and lengthens them."""
    rng = np.random.default_rng(seed)
    est = RegressionEstimator(EstimatorConfig())
    for i in range(64):
        t = 1_760_000_000 * S + i * 16 * S
        source = "ab"[i % 2]
        queue = float(rng.uniform(0, 4_000_000)) if queue_on_a and source == "a" and i % 4 else 0.0
        bias = 75_000.0 if source == "a" else -75_000.0
        offset = 1_000_000 + bias - queue / 2 + rng.normal(0, 5_000)
        est.add(Sample(t, round(offset), 1_000_000 + round(queue), source, precision_ns=100))
    return est


def test_path_bias_weights_each_source_as_the_fit_does() -> None:
    """A path that queues one way drags its plain mean toward slow samples the fit hardly
    counts; the path-bias variance follows the fit's weights, so it still sees the two
    sources 150 µs apart."""
    clean = _two_paths(queue_on_a=False).path_bias_variance_ns2()
    queued = _two_paths(queue_on_a=True).path_bias_variance_ns2()
    # two sources ±75 µs, two degrees of prior: 2·75² / 3 / 2 = (43 µs)²
    assert math.sqrt(clean) == pytest.approx(43_300, rel=0.1)
    assert math.sqrt(queued) == pytest.approx(math.sqrt(clean), rel=0.25)
