"""SyncEngine: the node's decisions without I/O."""

from __future__ import annotations

from chronotick.disruption import ClockReadings
from chronotick.engine import SyncEngine
from chronotick.estimation.estimator import RegressionEstimator
from chronotick.estimation.samples import Sample
from chronotick.ntp.poll import PollPolicy, PollResult
from chronotick.status import ClockStatus

S = 1_000_000_000
T0 = 1_760_000_000 * S


def engine() -> SyncEngine:
    policy = PollPolicy(min_poll_s=1.0, max_poll_s=1.0, burst_size=1, warmup_polls=0)
    return SyncEngine(["a"], policy, RegressionEstimator(), drift_tolerance_ppb=5000.0)


def result(local_ns: int, offset_ns: int) -> PollResult:
    return PollResult("a", Sample(local_ns, offset_ns, 100_000, "a"), {})


def readings(realtime_ns: int, mono_ns: int) -> ClockReadings:
    return ClockReadings(realtime_ns, mono_ns, mono_ns, mono_ns)


def test_a_poll_that_straddles_a_backward_step_is_discarded() -> None:
    """After a backward step, realtime stamps cannot tell old polls from new ones: the epoch
    can. The stale sample, dated an hour "in the future", must never reach the model."""
    e = engine()
    e.observe_clocks(readings(T0, 0))
    for k in range(5):
        assert e.due(k * S) == ["a"]
        e.take(result(T0 + k * S, 1_000), e.epoch, k * S)
        e.process_pending(k * S)
    assert e.estimate(T0 + 5 * S).status is ClockStatus.SYNCHRONIZED
    started = e.epoch
    assert e.due(5 * S) == ["a"]  # a poll goes out ...
    stepped = T0 + 5 * S - 3600 * S
    assert e.observe_clocks(readings(stepped, 5 * S + S // 10)) is not None  # ... the clock steps
    e.take(result(T0 + 5 * S, 1_000), started, 6 * S)  # ... and the old poll comes back
    e.process_pending(6 * S)
    assert e.rejected.get("taken_before_disruption") == 1
    assert e.estimate(stepped + S).status is ClockStatus.DISRUPTED
    for k in range(4):  # new polls measure the stepped clock: +1 h
        t = stepped + (k + 1) * S
        e.due((7 + k) * S)
        e.take(result(t, 3600 * S), e.epoch, (7 + k) * S)
        e.process_pending((7 + k) * S)
    model = e.estimate(stepped + 5 * S)
    assert model.status is ClockStatus.SYNCHRONIZED
    assert abs(model.offset_ns - 3600 * S) < 1_000_000
    assert abs(model.drift_ppb) < 1_000
