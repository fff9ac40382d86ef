"""Simulated NTP servers behind simulated paths: one poll (a burst) in virtual time.

Each exchange: the request leaves at true time t1 and takes delay/2 + asymmetry/2 plus an
exponential queueing delay (mean jitter/2) and maybe a spike; the server stamps its own clock
(true time plus its error, for a falseticker) on receive and, 10 µs later, on transmit; the
reply comes back the same way less the asymmetry. Loss, outages and rate limiting drop or
refuse exchanges. The client's timestamps are the oscillator's readings at t1 and t4, and the
sample is built by the same function the real sampler uses.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from chronotick.estimation.samples import Sample, sample_from_exchange
from chronotick.ntp.packet import KissCode
from chronotick.ntp.poll import PollResult
from chronotick.sim.oscillator import Oscillator
from chronotick.sim.scenario import ServerSpec

NS_PER_S = 1_000_000_000
SERVER_HOLD_NS = 10_000


@dataclasses.dataclass(frozen=True)
class PollOutcome:
    result: PollResult
    #: true time at which the poll is over and its result reaches the node
    done_true_ns: int


class SimulatedServer:
    def __init__(self, spec: ServerSpec, rng: np.random.Generator, epoch_ns: int) -> None:
        self.spec = spec
        self.rng = rng
        self.epoch_ns = epoch_ns
        self._last_request_ns: int | None = None
        self.requests = 0

    def _down(self, true_ns: int) -> bool:
        t_s = true_ns / NS_PER_S
        return any(start <= t_s < end for start, end in self.spec.outages)

    def _one_way_ns(self, base_ms: float, queueing_share: float) -> int:
        spec = self.spec
        mean = spec.jitter_ms * queueing_share
        extra = self.rng.exponential(mean) if mean > 0 else 0.0
        if spec.spike_probability and self.rng.random() < spec.spike_probability:
            extra += self.rng.exponential(spec.spike_ms)
        return int((base_ms + extra) * 1e6)

    def _server_clock_ns(self, true_ns: int) -> int:
        spec = self.spec
        error = spec.error_ms * 1e6 + spec.error_drift_ppm * 1e-6 * true_ns
        return self.epoch_ns + true_ns + int(error)

    def poll(
        self,
        oscillator: Oscillator,
        start_true_ns: int,
        burst_size: int,
        burst_spacing_s: float,
        timeout_s: float,
    ) -> PollOutcome:
        """One burst; the minimum-delay sample is kept, as the real sampler does."""
        spec = self.spec
        failures: dict[str, int] = {}
        best: Sample | None = None
        kiss: KissCode | None = None
        t1 = start_true_ns
        done = start_true_ns
        for k in range(burst_size):
            if k:
                t1 = done + int(burst_spacing_s * NS_PER_S)
            self.requests += 1
            rate_limited = (
                spec.rate_limit_s > 0
                and self._last_request_ns is not None
                and t1 - self._last_request_ns < spec.rate_limit_s * NS_PER_S
            )
            self._last_request_ns = t1
            lost = self.rng.random() < spec.loss or self.rng.random() < spec.loss
            if self._down(t1) or lost:
                failures["timeout"] = failures.get("timeout", 0) + 1
                done = t1 + int(timeout_s * NS_PER_S)
                continue
            back_share = spec.return_queueing_fraction
            forward = self._one_way_ns(spec.delay_ms / 2 + spec.asymmetry_ms / 2, 1 - back_share)
            back = self._one_way_ns(spec.delay_ms / 2 - spec.asymmetry_ms / 2, back_share)
            t2 = t1 + forward
            t3 = t2 + SERVER_HOLD_NS
            t4 = t3 + back
            done = t4
            if rate_limited:
                kiss = KissCode.RATE
                failures["kiss_of_death:RATE"] = 1
                break
            sample = sample_from_exchange(
                spec.name,
                self.epoch_ns + oscillator.local_ns(t1),
                self._server_clock_ns(t2),
                self._server_clock_ns(t3),
                self.epoch_ns + oscillator.local_ns(t4),
                stratum=spec.stratum,
                root_delay_ns=int(spec.root_delay_ms * 1e6),
                root_dispersion_ns=int(spec.root_dispersion_ms * 1e6),
                precision_ns=30,
            )
            if sample is None:
                failures["negative_delay"] = failures.get("negative_delay", 0) + 1
            elif best is None or sample.delay_ns < best.delay_ns:
                best = sample
        return PollOutcome(PollResult(spec.name, best, failures, kiss, spec.stratum), done)
