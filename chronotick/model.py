"""The clock model: what the estimator produces, the daemon publishes and every reader uses.

A model maps a reading `t` of the host's base clock (CLOCK_REALTIME) to an estimate of true time
and two error figures, all extrapolated from the instant `as_of_ns` at which it was computed:

    corrected(t) = t + offset_ns + drift_ppb·(t − as_of_ns)·1e-9
    σ(t)²        = sigma_ns² + 2Δ·sigma_cov_ns2_per_s + Δ²·sigma_drift_ppb² + Δ·wander_ns2_per_s
    bound(t)     = bound_ns + bound_rate_ppb·Δ               with Δ = (t − as_of_ns)/1e9 s

1 ppb is 1 ns of change per second, which is why the rates carry ppb as their unit. σ is a
statistical figure (about 68 % of true errors within ±σ); the bound is a worst-case half-width
under stated assumptions (the servers' root distances hold and the frequency does not depart
from the estimate by more than the configured tolerance). These formulas are the contract; the
shared-memory reader inlines the offset and bound ones for speed and is tested against them.
"""

from __future__ import annotations

import dataclasses
import math

from chronotick.status import ClockStatus

NS_PER_S = 1_000_000_000


@dataclasses.dataclass(frozen=True)
class ClockModel:
    as_of_ns: int
    offset_ns: int
    drift_ppb: float
    sigma_ns: float
    sigma_cov_ns2_per_s: float
    sigma_drift_ppb: float
    wander_ns2_per_s: float
    bound_ns: int
    bound_rate_ppb: float
    status: ClockStatus
    #: base-clock time of the newest measurement used; 0 when there is none
    last_sample_ns: int = 0
    samples_used: int = 0
    source: str = "none"

    def offset_at(self, t_ns: int) -> int:
        return self.offset_ns + int(self.drift_ppb * max(0, t_ns - self.as_of_ns) * 1e-9)

    def corrected_ns(self, t_ns: int) -> int:
        return t_ns + self.offset_at(t_ns)

    def sigma_at(self, t_ns: int) -> float:
        dt_s = max(0.0, (t_ns - self.as_of_ns) / NS_PER_S)
        var = (
            self.sigma_ns**2
            + 2.0 * dt_s * self.sigma_cov_ns2_per_s
            + dt_s * dt_s * self.sigma_drift_ppb**2
            + dt_s * self.wander_ns2_per_s
        )
        return math.sqrt(max(var, self.sigma_ns**2))

    def bound_at(self, t_ns: int) -> int:
        dt_ns = max(0, t_ns - self.as_of_ns)
        return self.bound_ns + int(self.bound_rate_ppb * dt_ns * 1e-9)

    @classmethod
    def unknown(cls, as_of_ns: int, status: ClockStatus = ClockStatus.UNKNOWN) -> ClockModel:
        """A model that gives no interval (warming up, or restarting after a disruption)."""
        return cls(
            as_of_ns=as_of_ns,
            offset_ns=0,
            drift_ppb=0.0,
            sigma_ns=math.inf,
            sigma_cov_ns2_per_s=0.0,
            sigma_drift_ppb=0.0,
            wander_ns2_per_s=0.0,
            bound_ns=0,
            bound_rate_ppb=0.0,
            status=status,
        )
