"""Clock step and suspend detection from readings of realtime, raw, boot and monotonic clocks."""

from __future__ import annotations

import dataclasses
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chronotick.disruption import ClockReadings, DisruptionDetector

S = 1_000_000_000
MS = 1_000_000
EPOCH = 1_700_000_000 * S


@dataclasses.dataclass
class Host:
    """A host's four clocks. Realtime is slewed by `slew_ppm` against the raw oscillator,
    monotonic follows realtime's slew; boottime is monotonic plus the time spent asleep."""

    slew_ppm: float = 100.0
    raw_ns: int = 10 * S
    realtime_ns: int = EPOCH
    monotonic_ns: int = 10 * S
    asleep_ns: int = 0

    def run(self, elapsed_raw_ns: int) -> None:
        slewed = elapsed_raw_ns + int(elapsed_raw_ns * self.slew_ppm * 1e-6)
        self.raw_ns += elapsed_raw_ns
        self.realtime_ns += slewed
        self.monotonic_ns += slewed

    def step(self, jump_ns: int) -> None:
        self.realtime_ns += jump_ns

    def suspend(self, duration_ns: int) -> None:
        """Raw and monotonic stop; realtime and boottime keep counting."""
        self.realtime_ns += duration_ns
        self.asleep_ns += duration_ns

    def read(self) -> ClockReadings:
        return ClockReadings(
            realtime_ns=self.realtime_ns,
            monotonic_raw_ns=self.raw_ns,
            boottime_ns=self.monotonic_ns + self.asleep_ns,
            monotonic_ns=self.monotonic_ns,
        )


def steady(detector: DisruptionDetector, host: Host, count: int, every_ns: int) -> None:
    for _ in range(count):
        host.run(every_ns)
        assert detector.observe(host.read()) is None


def test_first_reading_is_never_a_disruption() -> None:
    assert DisruptionDetector().observe(Host().read()) is None


@pytest.mark.parametrize("slew_ppm", [0.0, 100.0, -100.0, 500.0, -500.0])
@pytest.mark.parametrize("every_ns", [100 * MS, 1 * S, 3_600 * S])
def test_steady_readings_with_slew_are_not_a_disruption(slew_ppm: float, every_ns: int) -> None:
    detector, host = DisruptionDetector(), Host(slew_ppm=slew_ppm)
    detector.observe(host.read())
    steady(detector, host, 200, every_ns)


def test_a_forward_step_is_detected_with_its_size() -> None:
    detector, host = DisruptionDetector(), Host()
    detector.observe(host.read())
    steady(detector, host, 10, 100 * MS)
    host.run(100 * MS)
    host.step(50 * MS)
    found = detector.observe(host.read())
    assert found is not None
    assert found.kind == "step"
    assert found.jump_ns == pytest.approx(50 * MS, abs=20_000)  # + the slew of 100 ms at 100 ppm
    assert found.at_realtime_ns == host.realtime_ns
    assert "+50.0" in found.describe()
    # the detector starts again from the new readings
    steady(detector, host, 10, 100 * MS)


def test_a_backward_step_is_detected_with_a_negative_jump() -> None:
    detector, host = DisruptionDetector(), Host()
    detector.observe(host.read())
    steady(detector, host, 5, 1 * S)
    host.run(1 * S)
    host.step(-2 * S)
    found = detector.observe(host.read())
    assert found is not None
    assert found.kind == "step"
    assert found.jump_ns == pytest.approx(-2 * S, abs=200_000)
    assert re.match(r"clock step of -(1999\.9|2000\.0)\d* ms detected", found.describe())


def test_a_suspend_is_told_from_a_step() -> None:
    detector, host = DisruptionDetector(), Host()
    detector.observe(host.read())
    steady(detector, host, 5, 1 * S)
    host.run(500 * MS)
    host.suspend(30 * S)
    host.run(500 * MS)
    found = detector.observe(host.read())
    assert found is not None
    assert found.kind == "suspend"
    assert found.jump_ns == pytest.approx(30 * S, abs=200_000)
    steady(detector, host, 5, 1 * S)


def test_a_step_backwards_during_a_suspend_is_still_a_suspend() -> None:
    detector, host = DisruptionDetector(), Host()
    detector.observe(host.read())
    host.suspend(60 * S)
    host.step(-65 * S)  # NTP corrected a clock that was far ahead on wake-up
    found = detector.observe(host.read())
    assert found is not None and found.kind == "suspend"
    assert found.jump_ns == -5 * S


def test_jumps_below_the_threshold_are_ignored() -> None:
    detector, host = DisruptionDetector(), Host(slew_ppm=0.0)
    detector.observe(host.read())
    host.run(1 * S)
    host.step(900_000)  # 0.9 ms: within the default 1 ms threshold
    assert detector.observe(host.read()) is None
    host.run(1 * S)
    host.step(3 * MS)
    assert detector.observe(host.read()) is not None


def test_threshold_is_configurable() -> None:
    detector, host = DisruptionDetector(threshold_ns=100 * MS), Host()
    detector.observe(host.read())
    host.run(1 * S)
    host.step(50 * MS)
    assert detector.observe(host.read()) is None


@given(
    slew_ppm=st.floats(-500.0, 500.0),
    intervals=st.lists(st.integers(1, 100_000 * S), min_size=1, max_size=50),
)
def test_slewing_alone_is_never_a_disruption(slew_ppm: float, intervals: list[int]) -> None:
    detector, host = DisruptionDetector(), Host(slew_ppm=slew_ppm)
    detector.observe(host.read())
    for interval in intervals:
        host.run(interval)
        assert detector.observe(host.read()) is None


@given(
    jump_ns=st.integers(-(10**12), 10**12).filter(lambda j: abs(j) > 2 * MS),
    interval=st.integers(1 * MS, 1 * S),
)
def test_any_step_beyond_threshold_and_slew_is_seen(jump_ns: int, interval: int) -> None:
    detector, host = DisruptionDetector(), Host()
    detector.observe(host.read())
    host.run(interval)
    host.step(jump_ns)
    found = detector.observe(host.read())
    assert found is not None
    assert found.kind == "step"
    assert abs(found.jump_ns - jump_ns) <= interval * 100 // 1_000_000 + 1


def test_a_fast_slew_is_not_a_step() -> None:
    """chronyd slews at up to 83 ms/s (maxslewrate 83333 ppm): realtime then runs far from the
    raw oscillator, but monotonic is slewed alike, so nothing is a disruption."""
    detector, host = DisruptionDetector(), Host(slew_ppm=83_333.0)
    detector.observe(host.read())
    steady(detector, host, 100, S // 10)
    host.step(5 * MS)
    assert detector.observe(host.read()) is not None  # a real step still shows
