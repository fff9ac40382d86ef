"""Covariate readings and their bounded grid."""

from __future__ import annotations

import pytest

from chronotick.estimation.forecast.covariates import CovariateHistory, CovariateReading

S = 1_000_000_000


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature_c": float("nan")}, "temperature_c"),
        ({"temperature_c": 400.0}, "temperature_c"),
        ({"cpu_load": 1.5}, "cpu_load"),
        ({"cpu_load": -0.1}, "cpu_load"),
    ],
)
def test_impossible_readings_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CovariateReading(0, **kwargs)


def test_readings_are_averaged_per_cell_and_gaps_carry_forward() -> None:
    history = CovariateHistory(cell_s=10.0)
    history.add(CovariateReading(0, temperature_c=20.0))
    history.add(CovariateReading(5 * S, temperature_c=22.0, cpu_load=0.5))
    history.add(CovariateReading(40 * S, cpu_load=0.1))  # no temperature: the last one holds
    starts, (temperature, load) = history.grid()
    assert starts == [0, 40 * S]
    assert temperature == [21.0, 21.0]
    assert load == [0.5, 0.1]
    assert history.available() == (True, True)


def test_a_covariate_never_read_is_unavailable() -> None:
    history = CovariateHistory()
    history.add(CovariateReading(0, cpu_load=0.2))
    assert history.available() == (False, True)
    _starts, (temperature, _load) = history.grid()
    assert temperature == [None]


def test_grid_since_keeps_the_cell_that_held_then() -> None:
    history = CovariateHistory(cell_s=10.0)
    for second in range(0, 100, 10):
        history.add(CovariateReading(second * S, temperature_c=float(second)))
    starts, (temperature, _load) = history.grid(since_ns=35 * S)
    assert starts[0] == 30 * S  # the cell that held at 35 s
    assert temperature[0] == 30.0
    assert starts[-1] == 90 * S


def test_history_is_bounded_and_ignores_the_past() -> None:
    history = CovariateHistory(cell_s=1.0, max_cells=5)
    for second in range(20):
        history.add(CovariateReading(second * S, temperature_c=20.0 + second))
    assert len(history) == 5
    history.add(CovariateReading(2 * S, temperature_c=99.0))  # older than what is kept
    starts, (temperature, _load) = history.grid()
    assert starts[0] == 15 * S
    assert 99.0 not in temperature


def test_copy_is_independent() -> None:
    history = CovariateHistory()
    history.add(CovariateReading(0, temperature_c=20.0))
    copy = history.copy()
    history.add(CovariateReading(1 * S, temperature_c=40.0))  # same cell: changes its mean
    assert copy.grid()[1][0] == [20.0]
    assert history.grid()[1][0] == [30.0]


def test_bad_history_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        CovariateHistory(cell_s=0)
    with pytest.raises(ValueError):
        CovariateHistory(max_cells=1)


def test_a_slice_starts_with_what_held_even_when_the_sensor_went_quiet() -> None:
    history = CovariateHistory(cell_s=10.0)
    history.add(CovariateReading(0, temperature_c=30.0, cpu_load=0.5))
    for second in range(10, 100, 10):
        history.add(CovariateReading(second * S, cpu_load=0.2))  # the thermal sensor is gone
    _starts, (temperature, load) = history.grid(since_ns=55 * S)
    assert temperature == [30.0] * len(temperature)
    assert load[0] == 0.2
    assert CovariateHistory().grid(since_ns=5) == ([], [[], []])
