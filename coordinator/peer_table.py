"""What this node knows of its peers' clocks, and the consensus of them. No I/O.

An exchange gives four timestamps on two base clocks and the peer's own estimate of its clock
(learnt from its NTP sources only). From them, with NTP's formulas:

    offset  = peer base clock − our base clock    (what the faketime settings make true)
    true    = offset + the peer's correction      (true time − our base clock, by that peer)

Like NTP's clock filter, a peer's row is the exchange with the shortest round trip among its
last `FILTER_DEPTH` bursts, brought forward to the newest one with the two clocks' frequency
difference (our drift minus the peer's, both from the estimates the exchanges carry): on a
loaded host most exchanges wait for a thread somewhere, and the least delayed one is the one
whose timestamps are nearest the wire.

Entries expire a fixed time after their last good exchange, like CockroachDB's clock monitor:
a peer killed without a goodbye leaves the table within `expiry_s` whatever discovery says.
The consensus is the inverse-variance mean of the peers whose intervals meet the majority's
(Marzullo's selection, shared with the NTP path); the others are falsetickers.
"""

from __future__ import annotations

import collections
import dataclasses
import math

from chronotick.estimation.fusion import ExternalEstimate
from chronotick.model import NS_PER_S
from chronotick.ntp.packet import offset_and_delay
from chronotick.ntp.selection import SourceInterval, select
from chronotick.status import ClockStatus

#: timestamping noise of a Python gRPC handler on each side (scheduling, not the wire)
TIMESTAMP_NOISE_NS = 20_000
#: bursts the filter looks back over
FILTER_DEPTH = 8


@dataclasses.dataclass(frozen=True)
class PeerClock:
    """A peer's estimate of its own clock at the instant it stamped T2."""

    correction_ns: int
    sigma_ns: float
    bound_ns: int
    status: ClockStatus
    drift_ppb: float = 0.0
    source: str = ""

    @property
    def usable(self) -> bool:
        return self.status.gives_interval and math.isfinite(self.sigma_ns)


@dataclasses.dataclass(frozen=True)
class Exchange:
    """One request and reply: T1/T4 on our base clock, T2/T3 on the peer's."""

    node_id: str
    address: str
    discovered_by: str
    t1_ns: int
    t2_ns: int
    t3_ns: int
    t4_ns: int
    peer_clock: PeerClock

    @property
    def offset_ns(self) -> int:
        return offset_and_delay(self.t1_ns, self.t2_ns, self.t3_ns, self.t4_ns)[0]

    @property
    def rtt_ns(self) -> int:
        return offset_and_delay(self.t1_ns, self.t2_ns, self.t3_ns, self.t4_ns)[1]


def best_of_burst(exchanges: list[Exchange]) -> Exchange | None:
    """The exchange with the shortest round trip: the least room for queueing and asymmetry."""
    valid = [e for e in exchanges if e.rtt_ns >= 0]
    return min(valid, key=lambda e: e.rtt_ns, default=None)


@dataclasses.dataclass(frozen=True)
class PeerEntry:
    """A row of the table: the filtered offset to one peer at its newest exchange.

    `exchange` is the newest exchange (its time, and the peer's newest estimate); `best` the
    one the filter chose, whose offset is carried to the newest one's time.
    """

    exchange: Exchange
    best: Exchange
    #: our monotonic clock at the newest exchange (expiry must not jump with the realtime clock)
    monotonic_ns: int
    expires_monotonic_ns: int
    offset_ns: int
    #: width added by carrying `best` forward (the frequency difference is known only so well)
    carried_ns: int = 0

    @property
    def node_id(self) -> str:
        return self.exchange.node_id

    @property
    def rtt_ns(self) -> int:
        return self.best.rtt_ns

    @property
    def measured_at_ns(self) -> int:
        """Our base clock at the middle of the newest exchange, the instant `offset_ns` is for."""
        return _midpoint(self.exchange)

    @property
    def sigma_ns(self) -> float:
        """σ of `offset_ns`: the asymmetry could be anything within ±rtt/2 (uniform: rtt/√12
        as σ), plus each side's timestamping noise, plus what carrying it forward may add."""
        return math.hypot(
            self.rtt_ns / math.sqrt(12.0), math.sqrt(2.0) * TIMESTAMP_NOISE_NS, self.carried_ns / 2
        )

    @property
    def half_width_ns(self) -> int:
        """Where the true offset between the base clocks must lie, around `offset_ns`."""
        return self.rtt_ns // 2 + 2 * TIMESTAMP_NOISE_NS + self.carried_ns

    @property
    def true_offset_ns(self) -> int:
        return self.offset_ns + self.exchange.peer_clock.correction_ns

    @property
    def true_sigma_ns(self) -> float:
        return math.hypot(self.sigma_ns, self.exchange.peer_clock.sigma_ns)

    @property
    def true_half_width_ns(self) -> int:
        return self.half_width_ns + self.exchange.peer_clock.bound_ns


@dataclasses.dataclass(frozen=True)
class Consensus:
    """True time minus our base clock, by the peers, at base-clock instant `at_ns`."""

    at_ns: int
    offset_ns: int
    sigma_ns: float
    bound_ns: int
    used: tuple[str, ...]
    falsetickers: tuple[str, ...]
    synchronized: bool

    def as_external(self) -> ExternalEstimate:
        return ExternalEstimate(
            at_ns=self.at_ns,
            offset_ns=self.offset_ns,
            sigma_ns=self.sigma_ns,
            bound_ns=self.bound_ns,
            sources=len(self.used),
            synchronized=self.synchronized,
        )


@dataclasses.dataclass(frozen=True)
class ConsensusResult:
    consensus: Consensus | None
    #: node id -> "used", "falseticker" or "unusable"
    states: dict[str, str]


class StackBias:
    """How much our own exchanges read the offset too high, measured on ourselves.

    An exchange with our own service over our own address compares a clock with itself, so
    whatever offset it shows is the asymmetry of the software path: a Python gRPC client spends
    longer between T1 and the wire than between the wire and T4 (about +0.2 ms on the machines
    this was measured on, the same on every node, since every node runs the same stack). The
    median of recent self-exchanges, taken in the same rounds and under the same load as the
    peer exchanges, is subtracted from every peer offset.
    """

    def __init__(self, depth: int = 15) -> None:
        self._offsets: collections.deque[int] = collections.deque(maxlen=depth)

    def add(self, exchange: Exchange) -> None:
        self._offsets.append(exchange.offset_ns)

    @property
    def bias_ns(self) -> int:
        if not self._offsets:
            return 0
        ordered = sorted(self._offsets)
        return ordered[len(ordered) // 2]

    @property
    def samples(self) -> int:
        return len(self._offsets)


def _midpoint(exchange: Exchange) -> int:
    return (exchange.t1_ns + exchange.t4_ns) // 2


class PeerTable:
    def __init__(self, expiry_s: float, drift_tolerance_ppb: float) -> None:
        if not (math.isfinite(expiry_s) and expiry_s > 0):
            raise ValueError(f"expiry_s must be positive, not {expiry_s}")
        self.expiry_ns = int(expiry_s * NS_PER_S)
        self.drift_tolerance_ppb = drift_tolerance_ppb
        self._entries: dict[str, PeerEntry] = {}
        self._history: dict[str, collections.deque[Exchange]] = {}

    def update(
        self,
        exchange: Exchange,
        monotonic_ns: int,
        own_drift_ppb: float | None = None,
        bias_ns: int = 0,
    ) -> PeerEntry:
        """Take the best exchange of a burst. `own_drift_ppb` is our frequency estimate, None
        without one: the filter then keeps the newest exchange alone. `bias_ns` is our stack's
        asymmetry (`StackBias`), taken off the offset."""
        history = self._history.setdefault(exchange.node_id, collections.deque(maxlen=FILTER_DEPTH))
        if history and exchange.peer_clock.status is not history[-1].peer_clock.status:
            history.clear()  # the peer restarted its model: older exchanges measured another clock
        history.append(exchange)
        best, offset, carried = exchange, exchange.offset_ns, 0
        peer_drift = exchange.peer_clock.drift_ppb if exchange.peer_clock.usable else None
        if own_drift_ppb is not None and peer_drift is not None:
            newest = _midpoint(exchange)
            for old in history:
                age_s = (newest - _midpoint(old)) / NS_PER_S
                if old.rtt_ns < best.rtt_ns and 0 <= age_s <= self.expiry_ns / NS_PER_S:
                    best = old
                    offset = old.offset_ns + int((own_drift_ppb - peer_drift) * age_s)
                    carried = int(2 * self.drift_tolerance_ppb * age_s)
        entry = PeerEntry(
            exchange, best, monotonic_ns, monotonic_ns + self.expiry_ns, offset - bias_ns, carried
        )
        self._entries[exchange.node_id] = entry
        return entry

    def expire(self, monotonic_ns: int) -> list[str]:
        """Drop entries past their expiry; returns their node ids."""
        gone = [n for n, e in self._entries.items() if e.expires_monotonic_ns <= monotonic_ns]
        for node_id in gone:
            self.remove(node_id)
        return gone

    def remove(self, node_id: str) -> None:
        self._entries.pop(node_id, None)
        self._history.pop(node_id, None)

    def entries(self) -> list[PeerEntry]:
        return sorted(self._entries.values(), key=lambda e: e.node_id)

    def get(self, node_id: str) -> PeerEntry | None:
        return self._entries.get(node_id)

    def consensus(self, at_ns: int, own_drift_ppb: float) -> ConsensusResult:
        """The peers' estimate of true − base clock, carried to base-clock instant `at_ns`.

        Each peer's true offset is brought forward with our own drift estimate, its σ and
        half-width growing with the drift tolerance over the age of the exchange.
        """
        states: dict[str, str] = {}
        projected: dict[str, tuple[int, float, int, bool]] = {}
        for entry in self._entries.values():
            clock = entry.exchange.peer_clock
            if not clock.usable:
                states[entry.node_id] = "unusable"
                continue
            age_s = (at_ns - entry.measured_at_ns) / NS_PER_S
            growth = self.drift_tolerance_ppb * abs(age_s)
            projected[entry.node_id] = (
                entry.true_offset_ns + int(own_drift_ppb * age_s),
                math.hypot(entry.true_sigma_ns, growth / 2.0),
                entry.true_half_width_ns + int(growth),
                clock.status is ClockStatus.SYNCHRONIZED,
            )
        intervals = [
            SourceInterval(node_id, center - half, center + half)
            for node_id, (center, _s, half, _sync) in projected.items()
        ]
        selection = select(intervals)
        for node_id in projected:
            states[node_id] = "used" if node_id in selection.truechimers else "falseticker"
        used = sorted(selection.truechimers)
        if not used:
            return ConsensusResult(None, states)
        weights = {n: 1.0 / max(projected[n][1], 1.0) ** 2 for n in used}
        total = sum(weights.values())
        mean = sum(projected[n][0] * w for n, w in weights.items()) / total
        low = max(projected[n][0] - projected[n][2] for n in used)
        high = min(projected[n][0] + projected[n][2] for n in used)
        if low > high:  # a chain of overlaps without a common point: the widest honest span
            low = min(projected[n][0] - projected[n][2] for n in used)
            high = max(projected[n][0] + projected[n][2] for n in used)
        center = int(min(max(mean, low), high))
        consensus = Consensus(
            at_ns=at_ns,
            offset_ns=center,
            sigma_ns=1.0 / math.sqrt(total),
            bound_ns=max(center - low, high - center),
            used=tuple(used),
            falsetickers=tuple(sorted(selection.falsetickers)),
            synchronized=any(projected[n][3] for n in used),
        )
        return ConsensusResult(consensus, states)
