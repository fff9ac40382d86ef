"""The engine's log says what changed and why, once per change (and its source reports).

Driven in virtual time like the simulator drives it: three servers, one of which lies by
50 ms, so that every kind of change happens within a few hundred virtual seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import pytest

from chronotick.disruption import ClockReadings
from chronotick.engine import REJECTION_SUMMARY_S, SyncEngine
from chronotick.estimation.estimator import RegressionEstimator
from chronotick.estimation.samples import Sample
from chronotick.ntp.poll import PollPolicy, PollResult
from chronotick.status import ClockStatus

S = 1_000_000_000
T0 = 1_760_000_000 * S
LIE_NS = 50_000_000


def make_engine(min_poll_s: float = 10.0, max_poll_s: float = 10.0) -> SyncEngine:
    policy = PollPolicy(min_poll_s=min_poll_s, max_poll_s=max_poll_s, burst_size=1, warmup_polls=0)
    return SyncEngine(["a", "b", "c"], policy, RegressionEstimator(), drift_tolerance_ppb=5000.0)


def sample(server: str, t_ns: int, offset_ns: int) -> PollResult:
    return PollResult(server, Sample(t_ns, offset_ns, 100_000, server), {})


def run(
    engine: SyncEngine,
    start_s: int,
    stop_s: int,
    step_s: int,
    answer: Mapping[str, int | None],
) -> None:
    """Poll every server every `step_s` (virtual) seconds; `answer` gives each server's
    offset, or None for no reply (a timeout)."""
    for t_s in range(start_s, stop_s, step_s):
        mono = t_s * S
        engine.observe_clocks(ClockReadings(T0 + mono, mono, mono, mono))
        for name in engine.due(mono):
            offset = answer[name]
            if offset is None:
                result = PollResult(name, None, {"timeout": 1})
            else:  # the servers answer a few ms apart, as real ones do
                result = sample(name, T0 + mono + "abc".index(name) * 3_000_000, offset)
            engine.take(result, engine.epoch, mono)
        engine.process_pending(mono)
        engine.estimate(T0 + mono)


def messages(caplog: pytest.LogCaptureFixture, *needles: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "chronotick.daemon" and all(n in r.getMessage() for n in needles)
    ]


def test_a_lying_server_is_refused_with_its_reason_once_then_summarized(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="chronotick.daemon")
    engine = make_engine()
    honest = {"a": 1_000, "b": 2_000, "c": LIE_NS}
    # 65 polls of c over 650 s: one line at the first, one summary after 600 s, no more
    run(engine, 0, 650, 10, honest)
    refused = messages(caplog, "refused a sample from c (falseticker)")
    assert len(refused) == 1, caplog.text
    assert "offset +50.000 ms" in refused[0]
    summaries = messages(caplog, "still refusing samples from c (falseticker)")
    assert len(summaries) == 1, caplog.text
    polls_between = int(REJECTION_SUMMARY_S // 10)
    assert f": {polls_between} more in 10m00s" in summaries[0]
    assert engine.rejected["falseticker"] >= 60
    assert not messages(caplog, "from a") and not messages(caplog, "from b")
    # c mends its ways: one line says so, with the count not yet reported
    caplog.clear()
    run(engine, 650, 700, 10, {**honest, "c": 1_500})
    back = messages(caplog, "samples from c taken again")
    assert len(back) == 1 and "more refused (falseticker)" in back[0], caplog.text
    states = {r.name: r.state for r in engine.source_reports()}
    assert states == {"a": "used", "b": "used", "c": "used"}


def test_unreachable_once_with_the_failures_then_reachable_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="chronotick.daemon")
    engine = make_engine()
    run(engine, 0, 100, 10, {"a": 1_000, "b": 2_000, "c": 3_000})
    # a goes silent: polls back off (20 s, 40 s, ...); one line, when the third fails
    run(engine, 100, 400, 10, {"a": None, "b": 2_000, "c": 3_000})
    lines = messages(caplog, "a unreachable")
    assert lines == ["a unreachable: its last 3 polls failed (timeout ×3)"], caplog.text
    report = {r.name: r for r in engine.source_reports()}
    assert report["a"].state == "unreachable" and report["a"].reach & 0b111 == 0
    assert report["b"].state == "used" and report["b"].reach == 0xFF
    assert report["b"].offset_ns == 2_000 and report["b"].delay_ns == 100_000
    run(engine, 400, 1500, 10, {"a": 1_000, "b": 2_000, "c": 3_000})
    assert len(messages(caplog, "a reachable again")) == 1, caplog.text
    assert len(messages(caplog, "a unreachable")) == 1


def test_a_server_that_never_answers_is_unreachable_after_three_polls(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="chronotick.daemon")
    engine = make_engine()
    run(engine, 0, 1000, 10, {"a": None, "b": 2_000, "c": 3_000})
    lines = messages(caplog, "a unreachable")
    assert lines == ["a unreachable: none of its 3 polls was answered (timeout ×3)"], caplog.text
    assert {r.name: r.state for r in engine.source_reports()}["a"] == "unreachable"


def test_status_changes_carry_their_reason(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="chronotick.daemon")
    engine = make_engine()
    honest = {"a": 1_000, "b": 2_000, "c": LIE_NS}
    run(engine, 0, 100, 10, honest)
    synced = messages(caplog, "status UNKNOWN -> SYNCHRONIZED: the model fits")
    assert len(synced) == 1, caplog.text
    # every server goes silent: FREE_RUNNING, saying for how long and what the servers did
    run(engine, 100, 400, 10, {"a": None, "b": None, "c": None})
    assert engine.model.status is ClockStatus.FREE_RUNNING
    free = messages(caplog, "status SYNCHRONIZED -> FREE_RUNNING: no sample taken for")
    assert len(free) == 1, caplog.text
    assert "0 of 3 servers reachable" in free[0] and "c refused (falseticker)" in free[0]
    assert engine.status_reason in free[0]
    # an answer brings it back, and says which server did
    run(engine, 400, 410, 10, {"a": 1_000, "b": None, "c": None})
    back = messages(caplog, "status FREE_RUNNING -> SYNCHRONIZED: a fresh sample from a")
    assert len(back) == 1, caplog.text


def test_poll_interval_changes_are_logged_with_their_cause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="chronotick.daemon")
    engine = make_engine(min_poll_s=1.0, max_poll_s=4.0)
    run(engine, 0, 60, 1, {"a": 1_000, "b": 2_000, "c": 1_500})
    grown = messages(caplog, "poll interval of a: 1.0 s -> 2.0 s (4 good polls in a row)")
    assert len(grown) == 1, caplog.text
    assert len(messages(caplog, "poll interval of a: 2.0 s -> 4.0 s")) == 1
    assert not messages(caplog, "poll interval of a: 4.0 s ->")  # at the ceiling: quiet
    # a lie sends it back to the floor at once, saying why
    caplog.clear()
    run(engine, 60, 70, 1, {"a": 1_000, "b": 2_000, "c": LIE_NS})
    floor = messages(caplog, "poll interval of c: 4.0 s -> 1.0 s (a sample was refused")
    assert len(floor) == 1, caplog.text
