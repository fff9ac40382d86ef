"""The simulated clock: offset, drift, wander and steps against a fake base clock."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chronotick.clocks import ClockStep, SimulatedClock, SimulatedClockParams, SystemClock

S = 1_000_000_000
MS = 1_000_000
EPOCH = 1_700_000_000 * S


class FakeBase:
    """A base clock the test moves by hand."""

    def __init__(self, now_ns: int = EPOCH) -> None:
        self.now_ns = now_ns

    def __call__(self) -> int:
        return self.now_ns


def test_offset_and_drift_arithmetic() -> None:
    base = FakeBase()
    clock = SimulatedClock(
        SimulatedClockParams(offset_ns=-50 * MS, drift_ppm=100.0, epoch_ns=EPOCH), base
    )
    assert clock.now_ns() == EPOCH - 50 * MS
    base.now_ns = EPOCH + 1_000 * S
    # 100 ppm of 1000 s, to the nanosecond (float arithmetic inside may truncate 1 ns)
    assert clock.now_ns() - base.now_ns == pytest.approx(-50 * MS + 100 * MS, abs=1)
    base.now_ns = EPOCH - 10 * S  # before the epoch the drift runs backwards
    assert clock.now_ns() - base.now_ns == pytest.approx(-50 * MS - 1 * MS, abs=1)
    assert clock.at(EPOCH + 3_600 * S) - (EPOCH + 3_600 * S) == pytest.approx(
        -50 * MS + 360 * MS, abs=1
    )


@given(
    offset_ns=st.integers(-(10**12), 10**12),
    drift_ppm=st.floats(-1_000.0, 1_000.0),
    elapsed_ns=st.integers(-(10**15), 10**15),
)
def test_reading_is_base_plus_offset_plus_drift(
    offset_ns: int, drift_ppm: float, elapsed_ns: int
) -> None:
    clock = SimulatedClock(
        SimulatedClockParams(offset_ns=offset_ns, drift_ppm=drift_ppm, epoch_ns=EPOCH), FakeBase()
    )
    base = EPOCH + elapsed_ns
    expected_correction = offset_ns + drift_ppm * 1e-6 * elapsed_ns
    assert abs((clock.at(base) - base) - expected_correction) <= 1.0


def test_system_clock_is_realtime() -> None:
    import time

    before = time.time_ns()
    now = SystemClock().now_ns()
    assert before <= now <= time.time_ns()


# --- reproducibility ---------------------------------------------------------------------------


def wandering(seed: int = 7, **kwargs: object) -> SimulatedClockParams:
    fields: dict[str, object] = {
        "offset_ns": 3 * MS,
        "drift_ppm": -20.0,
        "epoch_ns": EPOCH,
        "wander_ppm_per_sqrt_s": 0.05,
        "seed": seed,
        "steps": (ClockStep(100.0, 5 * MS), ClockStep(250.5, -2 * S)),
    }
    fields.update(kwargs)
    return SimulatedClockParams(**fields)  # type: ignore[arg-type]


def times_to_read(seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [EPOCH + rng.randrange(-10 * S, 2_000 * S) for _ in range(300)]


def test_json_round_trip_keeps_every_parameter() -> None:
    params = wandering()
    again = SimulatedClockParams.from_json(params.to_json())
    assert again == params
    assert again.steps == params.steps


def test_two_clocks_from_the_same_params_read_identically() -> None:
    params = wandering()
    here = SimulatedClock(params, FakeBase())
    there = SimulatedClock(SimulatedClockParams.from_json(params.to_json()), FakeBase())
    times = times_to_read()
    # the other process reads in another order: its readings must not depend on it
    for t in sorted(times, reverse=True):
        assert there.at(t) == SimulatedClock(params, FakeBase()).at(t)
    assert [here.at(t) for t in times] == [there.at(t) for t in times]


def test_wander_depends_on_the_seed() -> None:
    same = [SimulatedClock(wandering(seed=1), FakeBase()) for _ in range(2)]
    other = SimulatedClock(wandering(seed=2), FakeBase())
    times = sorted(times_to_read(1))
    assert [same[0].at(t) for t in times] == [same[1].at(t) for t in times]
    differences = [abs(same[0].at(t) - other.at(t)) for t in times if t > EPOCH + 100 * S]
    assert max(differences) > 1_000


def test_wander_is_a_continuous_random_walk_of_frequency() -> None:
    params = wandering(drift_ppm=0.0, offset_ns=0, steps=())
    clock = SimulatedClock(params, FakeBase())
    assert clock.at(EPOCH) == EPOCH  # no wander yet at the epoch
    assert clock.at(EPOCH - 5 * S) == EPOCH - 5 * S  # nor before it
    # continuous: no jumps at whole seconds, where the frequency changes
    for second in range(1, 600, 37):
        t = EPOCH + second * S
        assert abs((clock.at(t) - clock.at(t - 1_000)) - 1_000) <= 2
        assert abs((clock.at(t + 1_000) - clock.at(t)) - 1_000) <= 2
    # frequency random walk: after 1000 s the phase is well away from zero, but not absurdly
    phases = [
        SimulatedClock(wandering(seed=s, drift_ppm=0.0, offset_ns=0, steps=()), FakeBase()).at(
            EPOCH + 1_000 * S
        )
        - (EPOCH + 1_000 * S)
        for s in range(20)
    ]
    rms = math.sqrt(sum(p * p for p in phases) / len(phases))
    # σ_phase(t) = σ_w·sqrt(t³/3) for a frequency random walk: 0.05e-6·sqrt(1e9/3) ≈ 0.9 ms
    assert 0.1 * MS < rms < 5 * MS


def test_no_wander_without_a_wander_rate() -> None:
    params = SimulatedClockParams(drift_ppm=0.0, epoch_ns=EPOCH, seed=99)
    clock = SimulatedClock(params, FakeBase())
    assert all(clock.at(t) == t for t in times_to_read())


# --- steps ----------------------------------------------------------------------------------


def test_steps_apply_from_their_time() -> None:
    params = SimulatedClockParams(
        epoch_ns=EPOCH, steps=(ClockStep(100.0, 5 * MS), ClockStep(200.0, -2 * S))
    )
    base = FakeBase()
    clock = SimulatedClock(params, base)
    assert clock.at(EPOCH + 100 * S - 1) == EPOCH + 100 * S - 1
    assert clock.at(EPOCH + 100 * S) == EPOCH + 100 * S + 5 * MS
    assert clock.at(EPOCH + 199 * S) == EPOCH + 199 * S + 5 * MS
    assert clock.at(EPOCH + 200 * S) == EPOCH + 200 * S + 5 * MS - 2 * S
    base.now_ns = EPOCH + 10_000 * S
    assert clock.now_ns() == EPOCH + 10_000 * S + 5 * MS - 2 * S


def test_steps_survive_the_json_round_trip() -> None:
    params = SimulatedClockParams(epoch_ns=EPOCH, steps=(ClockStep(1.5, -7),))
    clock = SimulatedClock(SimulatedClockParams.from_json(params.to_json()), FakeBase())
    assert clock.at(EPOCH + 1_499_999_999) == EPOCH + 1_499_999_999
    assert clock.at(EPOCH + 1_500_000_000) == EPOCH + 1_500_000_000 - 7


# --- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"drift_ppm": math.nan},
        {"drift_ppm": math.inf},
        {"drift_ppm": 10_001.0},
        {"drift_ppm": -10_001.0},
        {"wander_ppm_per_sqrt_s": -0.1},
        {"wander_ppm_per_sqrt_s": math.nan},
        {"wander_ppm_per_sqrt_s": math.inf},
        {"offset_ns": 11 * 365 * 86_400 * S},
        {"offset_ns": -11 * 365 * 86_400 * S},
    ],
)
def test_invalid_params_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        SimulatedClockParams(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text",
    [
        "[1, 2]",
        '"params"',
        '{"drift_ppm": 1, "colour": "blue"}',
        '{"drift_ppm": 1e9}',
        "not json",
    ],
)
def test_invalid_json_is_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        SimulatedClockParams.from_json(text)
