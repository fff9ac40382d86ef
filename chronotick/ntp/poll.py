"""When to ask each server, and what to do with its answers. No I/O, no clock reads.

Per server: a warm-up of quick polls (like chrony's iburst), then a poll interval that starts
at `min_poll_s` and doubles after a run of good polls up to `max_poll_s`; failures back off
exponentially; Kiss-o'-Death RATE doubles the server's own floor, DENY and RSTR retire it.
The defaults are polite to public pools: 64 s after warm-up, backing off to 1024 s.
"""

from __future__ import annotations

import dataclasses
import enum
import math

from chronotick.estimation.samples import Sample
from chronotick.ntp.packet import KissCode

NS_PER_S = 1_000_000_000


@dataclasses.dataclass(frozen=True)
class PollPolicy:
    min_poll_s: float = 64.0
    max_poll_s: float = 1024.0
    #: exchanges per poll; the one with the smallest delay is kept
    burst_size: int = 4
    burst_spacing_s: float = 2.0
    #: quick polls at start (and after a disruption) to get a model fast
    warmup_polls: int = 4
    warmup_interval_s: float = 2.0
    #: how long to wait for one reply
    timeout_s: float = 1.0
    #: good polls in a row before the interval doubles
    good_polls_to_back_off: int = 4

    def __post_init__(self) -> None:
        for name in (
            "min_poll_s",
            "max_poll_s",
            "burst_spacing_s",
            "warmup_interval_s",
            "timeout_s",
        ):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.min_poll_s < 1.0:
            raise ValueError(f"min_poll_s must be at least 1 s, got {self.min_poll_s}")
        if self.max_poll_s < self.min_poll_s:
            raise ValueError(
                f"max_poll_s ({self.max_poll_s}) must be >= min_poll_s ({self.min_poll_s})"
            )
        if self.max_poll_s > 36 * 3600:
            raise ValueError(f"max_poll_s must be at most 36 h, got {self.max_poll_s}")
        if not 1 <= self.burst_size <= 16:
            raise ValueError(f"burst_size must be 1-16, got {self.burst_size}")
        if not 0 <= self.warmup_polls <= 16:
            raise ValueError(f"warmup_polls must be 0-16, got {self.warmup_polls}")
        if self.timeout_s <= 0 or self.timeout_s > 60:
            raise ValueError(f"timeout_s must be in (0, 60], got {self.timeout_s}")
        if self.good_polls_to_back_off < 1:
            raise ValueError("good_polls_to_back_off must be >= 1")


@dataclasses.dataclass(frozen=True)
class PollResult:
    """What one poll of one server gave: its best sample, or why there is none."""

    server: str
    sample: Sample | None
    #: reason label → count, for every exchange that gave no usable sample
    failures: dict[str, int]
    kiss: KissCode | None = None
    stratum: int = 0


class ServerHealth(enum.Enum):
    ACTIVE = "active"
    RETIRED = "retired"  # told to stop (DENY/RSTR)


@dataclasses.dataclass
class ServerSchedule:
    """The polling state of one server, driven by monotonic nanoseconds."""

    policy: PollPolicy
    next_poll_ns: int = 0
    interval_ns: int = 0
    floor_ns: int = 0
    warmup_left: int = 0
    good_in_row: int = 0
    failures_in_row: int = 0
    #: 8-bit reachability register, as in NTP: a bit per poll, 1 when it was answered
    reach: int = 0
    health: ServerHealth = ServerHealth.ACTIVE
    in_flight: bool = False
    #: False once the server sent KoD RATE: one request per poll from then on
    bursts_allowed: bool = True

    def __post_init__(self) -> None:
        self.floor_ns = int(self.policy.min_poll_s * NS_PER_S)
        self.interval_ns = self.floor_ns
        # The first poll is one of the warm-up polls (chrony's iburst: four quick polls).
        self.warmup_left = max(0, self.policy.warmup_polls - 1)
        self.last_answer_ns: int | None = None

    @property
    def burst_size(self) -> int:
        return self.policy.burst_size if self.bursts_allowed else 1

    @property
    def reachable(self) -> bool:
        return bool(self.reach & 0b111)

    def due(self, now_ns: int) -> bool:
        return (
            self.health is ServerHealth.ACTIVE
            and not self.in_flight
            and now_ns >= self.next_poll_ns
        )

    def started(self) -> None:
        self.in_flight = True

    def _schedule(self, now_ns: int, interval_ns: int) -> None:
        self.in_flight = False
        self.next_poll_ns = now_ns + interval_ns

    @property
    def _slowed_down(self) -> bool:
        """The server asked us (KoD RATE) to poll less often than our own minimum."""
        return self.floor_ns > int(self.policy.min_poll_s * NS_PER_S)

    def _warmup_interval_ns(self) -> int:
        return int(min(self.policy.warmup_interval_s, self.policy.min_poll_s) * NS_PER_S)

    def on_success(self, now_ns: int, consistent: bool = True) -> None:
        self.reach = ((self.reach << 1) | 1) & 0xFF
        self.last_answer_ns = now_ns
        self.failures_in_row = 0
        if self.warmup_left > 0:
            self.warmup_left -= 1
            self._schedule(now_ns, self._warmup_interval_ns())
            return
        if consistent:
            self.good_in_row += 1
            if self.good_in_row >= self.policy.good_polls_to_back_off:
                self.good_in_row = 0
                ceiling = max(int(self.policy.max_poll_s * NS_PER_S), self.floor_ns)
                self.interval_ns = min(self.interval_ns * 2, ceiling)
        else:
            self.good_in_row = 0
            self.interval_ns = self.floor_ns
        self._schedule(now_ns, max(self.interval_ns, self.floor_ns))

    def on_inconsistent(self, now_ns: int) -> None:
        """The last sample was refused (outlier, falseticker): poll at the floor again.

        Brought forward at once, so that a real change of the reference is confirmed by the
        next polls within minutes rather than after a long back-off interval.
        """
        self.good_in_row = 0
        self.interval_ns = self.floor_ns
        if not self.in_flight:
            self.next_poll_ns = min(self.next_poll_ns, now_ns + self.floor_ns)

    def on_surprise(self, now_ns: int, surprise: float) -> None:
        """An accepted sample that the model did not predict well (in units of its spread).

        Beyond 3 the clock is changing faster than the interval can follow: back to the floor,
        as for a refused sample. Between 1.5 and 3, no credit towards a longer interval.
        """
        if surprise > 3.0:
            self.on_inconsistent(now_ns)
        elif surprise > 1.5:
            self.good_in_row = 0

    def on_failure(self, now_ns: int) -> None:
        """No usable reply: back off (doubling, capped at max poll): a dead server costs little."""
        self.reach = (self.reach << 1) & 0xFF
        self.failures_in_row += 1
        self.good_in_row = 0
        base = self._warmup_interval_ns() if self.warmup_left > 0 else self.floor_ns
        ceiling = max(int(self.policy.max_poll_s * NS_PER_S), self.floor_ns)
        backoff = min(base * (2 ** min(self.failures_in_row - 1, 16)), ceiling)
        self._schedule(now_ns, backoff)

    def on_kiss(self, now_ns: int, code: KissCode) -> None:
        self.reach = (self.reach << 1) & 0xFF
        if code is KissCode.RATE:
            # Slow down for good: no more bursts to this server, its floor doubles (up to
            # twice max poll), and warm-up ends.
            self.bursts_allowed = False
            self.warmup_left = 0
            ceiling = 2 * max(int(self.policy.max_poll_s * NS_PER_S), self.floor_ns // 2)
            self.floor_ns = min(max(self.floor_ns, self.interval_ns) * 2, ceiling)
            self.interval_ns = self.floor_ns
            self._schedule(now_ns, self.interval_ns)
        elif code in (KissCode.DENY, KissCode.RSTR):
            self.health = ServerHealth.RETIRED
            self.in_flight = False
        else:
            self.on_failure(now_ns)

    def restart_warmup(self, now_ns: int) -> None:
        """After a clock disruption: poll quickly again to rebuild the model.

        Not a server that told us to slow down: it keeps its floor, counted from its last answer.
        """
        self.interval_ns = self.floor_ns
        self.good_in_row = 0
        if self._slowed_down:
            self.warmup_left = 0
            if not self.in_flight and self.last_answer_ns is not None:
                self.next_poll_ns = max(self.next_poll_ns, self.last_answer_ns + self.floor_ns)
            return
        self.warmup_left = max(0, self.policy.warmup_polls - 1)
        if not self.in_flight:
            self.next_poll_ns = now_ns
