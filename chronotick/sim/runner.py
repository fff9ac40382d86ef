"""Run a scenario in virtual time: the real `SyncEngine` and predictors against simulated
servers, scored against the truth that only the simulator knows.

Event-driven: time jumps to the next poll, the next poll result or the next scoring instant,
so a day of clock behaviour takes seconds. The engine cannot tell it is simulated: it gets the
same calls with the same kinds of values as in the daemon.
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from chronotick.disruption import ClockReadings
from chronotick.engine import SyncEngine
from chronotick.estimation.baselines import HoldLast, TwoPoint, Uncorrected
from chronotick.estimation.estimator import EstimatorConfig, RegressionEstimator
from chronotick.estimation.forecast.covariates import CovariateReading
from chronotick.estimation.forecast.fused import FusedPredictor
from chronotick.estimation.predictor import Predictor, make_predictor
from chronotick.ntp.poll import PollPolicy, PollResult
from chronotick.sim.network import SimulatedServer
from chronotick.sim.oscillator import Oscillator
from chronotick.sim.scenario import Scenario
from chronotick.sim.scoring import Series, summarize

NS_PER_S = 1_000_000_000
#: the simulated world starts at a realistic Unix time, so magnitudes match production
EPOCH_NS = 1_760_000_000 * NS_PER_S

PREDICTORS: dict[str, Callable[[Scenario], Predictor]] = {
    "uncorrected": lambda s: Uncorrected(),
    "hold_last": lambda s: HoldLast(),
    "two_point": lambda s: TwoPoint(),
    "regression": lambda s: RegressionEstimator(_estimator_config(s)),
    "ml": lambda s: make_predictor("ml", _estimator_config(s)),
    "fused": lambda s: make_predictor("fused", _estimator_config(s)),
}
#: what runs when no predictor is named: the forecasters (`ml`, `fused`) train as they go and
#: take ten times as long, so they run when asked for
DEFAULT_PREDICTORS = ["uncorrected", "hold_last", "two_point", "regression"]
#: the predictor that drives the node (its verdicts steer polling); the others observe
DRIVER = "regression"


def _estimator_config(scenario: Scenario) -> EstimatorConfig:
    return EstimatorConfig(drift_tolerance_ppb=scenario.node.drift_tolerance_ppm * 1000.0)


def _policy(scenario: Scenario) -> PollPolicy:
    node = scenario.node
    min_poll, max_poll = node.min_poll_s, node.max_poll_s
    if scenario.poll_interval_s is not None:
        min_poll = max_poll = scenario.poll_interval_s
    return PollPolicy(
        min_poll_s=min_poll,
        max_poll_s=max_poll,
        burst_size=node.burst_size,
        burst_spacing_s=node.burst_spacing_s,
        timeout_s=node.timeout_s,
    )


@dataclasses.dataclass
class RunResult:
    scenario: Scenario
    series: dict[str, Series]
    figures: list[dict[str, Any]]
    oscillator: Oscillator
    rejected: dict[str, int]
    polls: int
    #: the predictors as the run left them (what the forecasters learnt can be read off them)
    predictors: dict[str, Predictor] = dataclasses.field(default_factory=dict)


def run(scenario: Scenario, predictors: list[str] | None = None) -> RunResult:
    names = predictors or DEFAULT_PREDICTORS
    unknown = [n for n in names if n not in PREDICTORS]
    if unknown:
        raise ValueError(f"unknown predictor {unknown[0]!r}; known: {', '.join(PREDICTORS)}")
    rng = np.random.default_rng(scenario.seed)
    oscillator = Oscillator(scenario.clock, scenario.temperature, scenario.duration_s, rng)
    servers = {
        spec.name: SimulatedServer(spec, np.random.default_rng([scenario.seed, i]), EPOCH_NS)
        for i, spec in enumerate(scenario.servers)
    }
    driver = PREDICTORS[DRIVER](scenario)
    observers = {n: PREDICTORS[n](scenario) for n in names if n != DRIVER}
    policy = _policy(scenario)
    engine = SyncEngine(
        list(servers),
        policy,
        driver,
        drift_tolerance_ppb=scenario.node.drift_tolerance_ppm * 1000.0,
        initial_realtime_ns=EPOCH_NS + oscillator.local_ns(0),
    )
    engine.on_selected.extend(observers.values())
    series = {
        n: Series(n, (driver if n == DRIVER else observers[n]).has_uncertainty) for n in names
    }

    sensing = [p for p in (driver, *observers.values()) if isinstance(p, FusedPredictor)]
    # (true time of delivery, sequence, result, the engine's epoch when the poll started)
    deliveries: list[tuple[int, int, PollResult, int]] = []
    sequence = 0
    polls = 0
    end = scenario.duration_ns
    score_every = int(scenario.score_interval_s * NS_PER_S)
    next_score = score_every
    t = 0
    quiet = logging.getLogger("chronotick.daemon")
    level = quiet.level
    quiet.setLevel(max(level, logging.WARNING) if level else logging.WARNING)
    try:
        while t <= end:
            local = EPOCH_NS + oscillator.local_ns(t)
            raw = EPOCH_NS + oscillator.raw_ns(t)
            # Virtual true time serves as the host's CLOCK_MONOTONIC: it orders the engine's
            # events, and against it realtime moves by the oscillator's rate (within the
            # detector's allowance) and by the steps.
            engine.observe_clocks(ClockReadings(local, raw, raw, t))
            if sensing:
                reading = CovariateReading(local, temperature_c=oscillator.temperature_at_c(t))
                for predictor in sensing:
                    predictor.observe_covariates(reading)
            while deliveries and deliveries[0][0] <= t:
                _done, _seq, result, started_epoch = heapq.heappop(deliveries)
                engine.take(result, started_epoch, t)
            engine.process_pending(t)
            for name in engine.due(t):
                burst = engine.servers[name].schedule.burst_size
                outcome = servers[name].poll(
                    oscillator, t, burst, policy.burst_spacing_s, policy.timeout_s
                )
                polls += 1
                sequence += 1
                heapq.heappush(
                    deliveries, (outcome.done_true_ns, sequence, outcome.result, engine.epoch)
                )
            if t >= next_score:
                _score(series, engine, driver, observers, local, EPOCH_NS + t, t)
                next_score += score_every
            candidates = [next_score]
            if deliveries:
                candidates.append(deliveries[0][0])
            next_poll = engine.next_poll_ns()
            if next_poll is not None:
                candidates.append(max(next_poll, t + 1))
            t = max(t + 1, min(candidates))
    finally:
        quiet.setLevel(level)
    figures = [summarize(scenario.name, series[n]) for n in names]
    used = {n: driver if n == DRIVER else observers[n] for n in names}
    return RunResult(scenario, series, figures, oscillator, dict(engine.rejected), polls, used)


def _score(
    series: dict[str, Series],
    engine: SyncEngine,
    driver: Predictor,
    observers: dict[str, Predictor],
    local_ns: int,
    true_ns: int,
    t_ns: int,
) -> None:
    fresh_for = engine.fresh_for_ns()
    for name, out in series.items():
        if name == DRIVER:
            model = engine.estimate(local_ns)
        else:
            model = observers[name].estimate(local_ns, fresh_for)
        if model.status.gives_interval:
            error = float(model.corrected_ns(local_ns) - true_ns)
            sigma = model.sigma_at(local_ns)
            bound = float(model.bound_at(local_ns))
        else:
            error, sigma, bound = float("nan"), float("inf"), float("inf")
        out.add(t_ns / NS_PER_S, error, sigma, bound, int(model.status))
