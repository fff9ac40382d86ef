"""When each server is asked: warm-up, back-off, failures, Kiss-o'-Death, politeness."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chronotick.ntp.packet import KissCode
from chronotick.ntp.poll import PollPolicy, ServerHealth, ServerSchedule

S = 1_000_000_000

Outcome = Callable[[ServerSchedule, int], None]


def good(schedule: ServerSchedule, now: int) -> None:
    schedule.on_success(now)


def inconsistent(schedule: ServerSchedule, now: int) -> None:
    schedule.on_success(now, consistent=False)


def failed(schedule: ServerSchedule, now: int) -> None:
    schedule.on_failure(now)


def kiss(code: KissCode) -> Outcome:
    def outcome(schedule: ServerSchedule, now: int) -> None:
        schedule.on_kiss(now, code)

    return outcome


def drive(
    schedule: ServerSchedule,
    outcomes: Iterable[Outcome],
    start_ns: int = 0,
    latency_ns: int = 0,
) -> list[int]:
    """Poll whenever due, answer each poll with the next outcome; the times polls started."""
    started: list[int] = []
    now = start_ns
    for outcome in outcomes:
        if schedule.next_poll_ns > now:
            assert not schedule.due(schedule.next_poll_ns - 1)  # not before its time
        now = max(now, schedule.next_poll_ns)
        assert schedule.due(now)
        schedule.started()
        assert not schedule.due(now)  # one poll at a time
        started.append(now)
        now += latency_ns
        outcome(schedule, now)
    return started


def gaps_s(times: list[int]) -> list[float]:
    return [(b - a) / S for a, b in itertools.pairwise(times)]


def warm(schedule: ServerSchedule) -> int:
    """Run the warm-up with good answers; returns the time of the first regular poll."""
    times = drive(schedule, [good] * max(1, schedule.policy.warmup_polls))
    return times[-1]


# --- warm-up and back-off -------------------------------------------------------------------


def test_warmup_polls_come_at_the_warmup_interval_then_min_poll() -> None:
    """`warmup_polls` polls in all, the first at once (chrony's iburst: four, 2 s apart)."""
    policy = PollPolicy()
    quick = policy.warmup_polls - 1
    times = drive(ServerSchedule(policy), [good] * 7)
    assert times[0] == 0  # the first poll is due at once
    assert gaps_s(times)[:quick] == [policy.warmup_interval_s] * quick
    assert gaps_s(times)[quick:] == [policy.min_poll_s] * 3


def test_warmup_interval_is_capped_by_min_poll() -> None:
    policy = PollPolicy(min_poll_s=1.0, max_poll_s=16.0, warmup_interval_s=2.0, warmup_polls=4)
    times = drive(ServerSchedule(policy), [good] * 5)
    assert gaps_s(times)[:3] == [1.0, 1.0, 1.0]


def test_no_warmup() -> None:
    times = drive(ServerSchedule(PollPolicy(warmup_polls=0)), [good] * 3)
    assert gaps_s(times) == [64.0, 64.0]


def test_interval_doubles_after_good_polls_up_to_max_and_never_beyond() -> None:
    policy = PollPolicy()
    schedule = ServerSchedule(policy)
    times = drive(schedule, [good] * 80)
    regular = gaps_s(times)[policy.warmup_polls - 1 :]
    # four good polls at each interval (the fourth is the one that doubles it)
    assert regular[:15] == [64.0] * 3 + [128.0] * 4 + [256.0] * 4 + [512.0] * 4
    assert regular[15:] == [1024.0] * (len(regular) - 15)
    assert max(gaps_s(times)) == policy.max_poll_s


@pytest.mark.parametrize("good_polls", [1, 2, 7])
def test_back_off_follows_good_polls_to_back_off(good_polls: int) -> None:
    policy = PollPolicy(min_poll_s=16.0, max_poll_s=64.0, good_polls_to_back_off=good_polls)
    schedule = ServerSchedule(policy)
    regular = gaps_s(drive(schedule, [good] * 40))[policy.warmup_polls - 1 :]
    expected = [16.0] * (good_polls - 1) + [32.0] * good_polls + [64.0] * (good_polls + 1)
    assert regular[: 3 * good_polls] == expected[: 3 * good_polls]
    assert set(regular) <= {16.0, 32.0, 64.0}


def test_an_inconsistent_result_resets_to_min_poll() -> None:
    schedule = ServerSchedule(PollPolicy())
    times = drive(schedule, [good] * 40)
    assert gaps_s(times)[-1] == 1024.0
    times = drive(schedule, [inconsistent, good, good, good, good, good], start_ns=times[-1])
    assert gaps_s(times) == [64.0, 64.0, 64.0, 64.0, 128.0]


def test_a_sample_refused_later_brings_the_next_poll_back_to_min_poll() -> None:
    """The daemon reports the answer first (`on_success`) and the estimator's refusal later
    (`on_inconsistent`, "poll at the floor again"): the next poll must come at the floor, not
    after the long interval `on_success` had set, or confirming a step of the reference (three
    outliers in a row) would take over half an hour instead of minutes.
    """
    schedule = ServerSchedule(PollPolicy())
    times = drive(schedule, [good] * 40)
    assert gaps_s(times)[-1] == 1024.0
    answered = times[-1] + 1024 * S
    times = drive(schedule, [good], start_ns=times[-1])
    schedule.on_inconsistent(answered)
    assert schedule.interval_ns == schedule.floor_ns
    assert schedule.next_poll_ns - answered <= 64 * S


def test_failures_back_off_exponentially_up_to_max_poll() -> None:
    schedule = ServerSchedule(PollPolicy())
    first_regular = warm(schedule)
    # `warm` left the first regular poll answered: 64 s to the next one
    times = drive(schedule, [failed] * 8, start_ns=first_regular)
    assert gaps_s(times) == [64.0, 128.0, 256.0, 512.0, 1024.0, 1024.0, 1024.0]
    assert schedule.failures_in_row == 8
    # an answer ends the back-off at once
    times += drive(schedule, [good, good], start_ns=times[-1])
    assert gaps_s(times)[-2:] == [1024.0, 64.0]


def test_failures_during_warmup_back_off_from_the_warmup_interval() -> None:
    schedule = ServerSchedule(PollPolicy())
    times = drive(schedule, [failed] * 12)
    assert gaps_s(times) == [2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 1024.0]
    # the server answers at last: the warm-up it never had happens now
    times = drive(schedule, [good] * 6, start_ns=times[-1])
    assert gaps_s(times) == [2.0, 2.0, 2.0, 64.0, 64.0]


def test_a_dead_server_costs_little() -> None:
    schedule = ServerSchedule(PollPolicy())
    times = drive(schedule, [failed] * 200)
    polls_in_first_day = sum(1 for t in times if t < 86_400 * S)
    assert polls_in_first_day < 100


def test_reach_register() -> None:
    schedule = ServerSchedule(PollPolicy())
    assert schedule.reach == 0 and not schedule.reachable
    schedule.on_success(0)
    assert schedule.reach == 0b1 and schedule.reachable
    schedule.on_failure(0)
    schedule.on_success(0)
    assert schedule.reach == 0b101
    for _ in range(2):
        schedule.on_failure(0)
    assert schedule.reach == 0b10100
    assert schedule.reachable  # one answer among the last three polls
    schedule.on_failure(0)
    assert schedule.reach == 0b101000
    assert not schedule.reachable  # none among the last three
    for _ in range(9):
        schedule.on_success(0)
    assert schedule.reach == 0xFF  # eight bits only
    schedule.on_kiss(0, KissCode.RATE)
    assert schedule.reach == 0xFE  # a kiss is no answer


# --- Kiss-o'-Death --------------------------------------------------------------------------


def test_kod_rate_doubles_the_floor() -> None:
    schedule = ServerSchedule(PollPolicy())
    first_regular = warm(schedule)
    times = drive(schedule, [kiss(KissCode.RATE), good], start_ns=first_regular)
    assert schedule.floor_ns == 128 * S
    assert gaps_s(times) == [128.0]
    assert schedule.next_poll_ns - times[-1] == 128 * S


def test_kod_rate_during_warmup_ends_it() -> None:
    schedule = ServerSchedule(PollPolicy())
    times = drive(schedule, [good, kiss(KissCode.RATE), good, good])
    assert gaps_s(times) == [2.0, 128.0, 128.0]


def test_kod_rate_above_max_poll_still_holds() -> None:
    schedule = ServerSchedule(PollPolicy(min_poll_s=64, max_poll_s=128, warmup_polls=0))
    times = drive(schedule, [good] * 8 + [kiss(KissCode.RATE)] + [good] * 10)
    assert schedule.floor_ns == 256 * S
    assert gaps_s(times)[-10:] == [256.0] * 10


outcome_st = st.sampled_from(
    [good, good, good, inconsistent, failed, kiss(KissCode.OTHER), kiss(KissCode.RATE)]
)


@given(st.lists(outcome_st, max_size=40), st.integers(0, 3 * S))
def test_after_kod_rate_the_server_is_never_polled_faster(
    outcomes: list[Outcome], latency_ns: int
) -> None:
    schedule = ServerSchedule(PollPolicy())
    first_regular = warm(schedule)
    times = drive(schedule, [kiss(KissCode.RATE), *outcomes], first_regular, latency_ns)
    assert schedule.floor_ns >= 128 * S
    assert all(gap >= 128.0 for gap in gaps_s(times))


@given(st.lists(outcome_st, max_size=20), st.integers(0, 3 * S))
def test_after_kod_rate_a_disruption_does_not_make_polls_faster(
    outcomes: list[Outcome], latency_ns: int
) -> None:
    """A clock disruption on our side is no licence to hammer a server that said RATE: a
    restarted warm-up keeps that server's raised floor."""
    schedule = ServerSchedule(PollPolicy())
    first_regular = warm(schedule)
    times = drive(schedule, [kiss(KissCode.RATE), good], first_regular, latency_ns)
    schedule.restart_warmup(times[-1] + latency_ns + S)
    times += drive(schedule, [good] * 6 + outcomes, times[-1] + latency_ns + S, latency_ns)
    assert min(gaps_s(times)) >= 128.0


@pytest.mark.parametrize("code", [KissCode.DENY, KissCode.RSTR])
def test_kod_deny_and_rstr_retire_the_server(code: KissCode) -> None:
    schedule = ServerSchedule(PollPolicy())
    schedule.started()
    schedule.on_kiss(10 * S, code)
    assert schedule.health is ServerHealth.RETIRED
    assert not schedule.in_flight
    schedule.restart_warmup(20 * S)
    for t in (0, 10 * S, 10**6 * S, 10**9 * S):
        assert not schedule.due(t)


def test_other_kiss_codes_count_as_failures() -> None:
    schedule = ServerSchedule(PollPolicy())
    first_regular = warm(schedule)
    times = drive(schedule, [kiss(KissCode.OTHER)] * 3, start_ns=first_regular)
    assert gaps_s(times) == [64.0, 128.0]
    assert schedule.next_poll_ns - times[-1] == 256 * S
    assert schedule.health is ServerHealth.ACTIVE


# --- restarts and in-flight polls -------------------------------------------------------------


def test_restart_warmup_polls_quickly_again() -> None:
    policy = PollPolicy()
    schedule = ServerSchedule(policy)
    times = drive(schedule, [good] * 40)
    restart_at = times[-1] + 100 * S
    schedule.restart_warmup(restart_at)
    assert schedule.due(restart_at)
    times = drive(schedule, [good] * 7, start_ns=restart_at)
    assert times[0] == restart_at
    assert gaps_s(times) == [2.0, 2.0, 2.0, 64.0, 64.0, 64.0]


def test_restart_warmup_while_a_poll_is_in_flight_waits_for_it() -> None:
    schedule = ServerSchedule(PollPolicy())
    times = drive(schedule, [good] * 20)
    schedule.started()
    schedule.restart_warmup(times[-1] + 5 * S)
    assert not schedule.due(times[-1] + 5 * S)  # the poll under way is still under way
    schedule.on_success(times[-1] + 6 * S)
    assert schedule.next_poll_ns == times[-1] + 8 * S  # then the warm-up pace


def test_not_due_while_in_flight() -> None:
    schedule = ServerSchedule(PollPolicy())
    assert schedule.due(0)
    schedule.started()
    assert not schedule.due(10**6 * S)
    schedule.on_failure(5 * S)
    assert not schedule.due(5 * S + 2 * S - 1)
    assert schedule.due(5 * S + 2 * S)


@given(
    st.lists(
        st.sampled_from(
            [good] * 6 + [inconsistent, failed, failed, kiss(KissCode.OTHER), kiss(KissCode.RATE)]
        ),
        min_size=1,
        max_size=120,
    ),
    st.integers(0, 2 * S),
)
def test_default_policy_is_polite(outcomes: list[Outcome], latency_ns: int) -> None:
    """After warm-up, no two polls of one server are less than 16 s apart, whatever happens."""
    schedule = ServerSchedule(PollPolicy())
    after_warmup: list[int] = []
    now = 0
    for outcome in outcomes:
        now = max(now, schedule.next_poll_ns)
        assert schedule.due(now)
        if schedule.warmup_left == 0:
            after_warmup.append(now)
        schedule.started()
        now += latency_ns
        outcome(schedule, now)
    assert all(gap >= 16.0 for gap in gaps_s(after_warmup))


# --- policy validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_poll_s": 0.5},
        {"min_poll_s": 0.0},
        {"min_poll_s": -64.0},
        {"min_poll_s": 64.0, "max_poll_s": 32.0},
        {"min_poll_s": math.nan},
        {"max_poll_s": math.nan},
        {"max_poll_s": math.inf},
        {"burst_spacing_s": math.nan},
        {"warmup_interval_s": math.nan},
        {"warmup_interval_s": -1.0},
        {"timeout_s": math.nan},
        {"timeout_s": 0.0},
        {"timeout_s": 61.0},
        {"burst_size": 0},
        {"burst_size": 17},
        {"warmup_polls": -1},
        {"warmup_polls": 17},
        {"good_polls_to_back_off": 0},
        {"max_poll_s": 37 * 3600.0},
        {"min_poll_s": "64"},
    ],
)
def test_policy_rejects_impossible_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        PollPolicy(**kwargs)  # type: ignore[arg-type]


def test_policy_accepts_sensible_values() -> None:
    PollPolicy(min_poll_s=1.0, max_poll_s=1.0, burst_size=1, warmup_polls=0)
    PollPolicy(min_poll_s=16, max_poll_s=36 * 3600, burst_size=16, warmup_polls=16)
