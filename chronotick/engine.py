"""The node's decisions, without I/O: which server to poll when, which samples to believe,
and what the clock model is.

The daemon wraps it in sockets, threads and shared memory; the simulator drives it in virtual
time. Times come in as arguments: `monotonic_ns` orders events (polls, back-off), `realtime_ns`
is the base clock the model describes.
"""

from __future__ import annotations

import dataclasses
import logging

from chronotick.disruption import ClockReadings, Disruption, DisruptionDetector
from chronotick.estimation.estimator import Verdict
from chronotick.estimation.predictor import Predictor
from chronotick.estimation.samples import Sample
from chronotick.model import NS_PER_S, ClockModel
from chronotick.ntp.packet import KissCode
from chronotick.ntp.poll import PollPolicy, PollResult, ServerHealth, ServerSchedule
from chronotick.ntp.selection import SourceInterval, select
from chronotick.status import ClockStatus

log = logging.getLogger("chronotick.daemon")


@dataclasses.dataclass
class ServerState:
    name: str
    schedule: ServerSchedule
    latest: Sample | None = None
    ever_reached: bool = False
    was_reachable: bool = False
    lost: bool = False
    polls_done: int = 0


class SyncEngine:
    def __init__(
        self,
        servers: list[str],
        policy: PollPolicy,
        predictor: Predictor,
        drift_tolerance_ppb: float,
        initial_realtime_ns: int = 0,
    ) -> None:
        self.policy = policy
        self.servers = {name: ServerState(name, ServerSchedule(policy)) for name in servers}
        self.predictor = predictor
        self.drift_tolerance_ppb = drift_tolerance_ppb
        self.detector = DisruptionDetector()
        self.model = ClockModel.unknown(initial_realtime_ns)
        self.rejected: dict[str, int] = {}
        #: other predictors that learn from the same selected samples (baselines, forecasters
        #: being evaluated); only `predictor` drives polling and the published model
        self.on_selected: list[Predictor] = []
        self._pending: list[Sample] = []
        #: counts disruptions: a poll started in an earlier epoch measured another clock
        self.epoch = 0

    # -- clocks ------------------------------------------------------------------------------

    def observe_clocks(self, readings: ClockReadings) -> Disruption | None:
        """Check for a step or suspend; on one, restart the model and poll quickly."""
        disruption = self.detector.observe(readings)
        if disruption is None:
            return None
        log.warning("%s: restarting the model and polling quickly", disruption.describe())
        self.predictor.reset(disrupted=True)
        for observer in self.on_selected:
            observer.reset(disrupted=True)
        self.epoch += 1
        self._pending.clear()
        for server in self.servers.values():
            server.latest = None
            server.schedule.restart_warmup(readings.monotonic_ns)
        return disruption

    # -- polls -------------------------------------------------------------------------------

    def due(self, monotonic_ns: int) -> list[str]:
        """Servers to poll now; each is marked in flight until its result is taken."""
        names = [n for n, s in self.servers.items() if s.schedule.due(monotonic_ns)]
        for name in names:
            self.servers[name].schedule.started()
        return names

    def next_poll_ns(self) -> int | None:
        """When the next poll falls due (monotonic), for event-driven drivers."""
        times = [
            s.schedule.next_poll_ns
            for s in self.servers.values()
            if s.schedule.health is ServerHealth.ACTIVE and not s.schedule.in_flight
        ]
        return min(times, default=None)

    def take(self, result: PollResult, started_epoch: int, monotonic_ns: int) -> None:
        """A finished poll: update the schedule, and queue its sample for selection.

        `started_epoch` is `self.epoch` when the poll started: a poll that straddles a clock
        disruption is discarded whatever the direction of the step (comparing realtime stamps
        would not work after a backward step).
        """
        server = self.servers[result.server]
        server.polls_done += 1
        schedule = server.schedule
        for reason, count in result.failures.items():
            self._count_rejected(reason.split(":")[0], count)
        if result.kiss is not None:
            schedule.on_kiss(monotonic_ns, result.kiss)
            if result.kiss is KissCode.RATE:
                log.warning(
                    "%s asked us to slow down (KoD RATE): polling it every %.0f s at least",
                    result.server,
                    schedule.floor_ns / NS_PER_S,
                )
            elif schedule.health is ServerHealth.RETIRED:
                log.error("%s refused service (KoD %s): no longer polled", result.server,
                          result.kiss.value)  # fmt: skip
            self._note_reach(server)
            return
        sample = result.sample
        if sample is None:
            schedule.on_failure(monotonic_ns)
            log.debug("no usable reply from %s: %s", result.server, result.failures)
            self._note_reach(server)
            return
        if started_epoch != self.epoch:
            schedule.on_success(monotonic_ns)
            self._reject(sample, "taken_before_disruption")
            return
        if not server.ever_reached:
            server.ever_reached = True
            log.info(
                "%s reachable: stratum %d, delay %.3f ms, offset %+.3f ms",
                result.server,
                sample.stratum,
                sample.delay_ns / 1e6,
                sample.offset_ns / 1e6,
            )
        server.latest = sample
        schedule.on_success(monotonic_ns)
        self._pending.append(sample)
        self._note_reach(server)

    def _first_round_done(self) -> bool:
        """Every server answered or failed once: only then can selection compare them all.

        Without this barrier the first answer to arrive would be believed unchecked, and a
        falseticker that happens to answer first would seed the model.
        """
        return all(
            s.polls_done > 0 or s.schedule.health is ServerHealth.RETIRED
            for s in self.servers.values()
        )

    def process_pending(self, monotonic_ns: int) -> None:
        """Selection, then the predictor, for the samples queued since the last call."""
        if not self._pending or not self._first_round_done():
            return
        for sample in sorted(self._pending, key=lambda s: s.local_ns):
            reason = self._falseticker_reason(sample)
            if reason:
                verdict = Verdict(False, reason)
            else:
                for observer in self.on_selected:
                    observer.add(sample)
                verdict = self.predictor.add(sample)
            schedule = self.servers[sample.source].schedule
            if not verdict.accepted:
                schedule.on_inconsistent(monotonic_ns)
                self._reject(sample, verdict.reason)
            else:
                schedule.on_surprise(monotonic_ns, verdict.surprise)
        self._pending.clear()

    def _note_reach(self, server: ServerState) -> None:
        reachable = server.schedule.reachable
        if server.was_reachable and not reachable:
            log.warning("%s unreachable: last 3 polls failed", server.name)
            server.lost = True
        elif reachable and server.lost:
            log.info("%s reachable again", server.name)
            server.lost = False
        server.was_reachable = reachable

    def _count_rejected(self, reason: str, count: int = 1) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + count

    def _reject(self, sample: Sample, reason: str) -> None:
        self._count_rejected(reason)
        log.info(
            "rejected sample from %s (%s): offset %+.3f ms, delay %.3f ms",
            sample.source,
            reason,
            sample.offset_ns / 1e6,
            sample.delay_ns / 1e6,
        )

    def _falseticker_reason(self, sample: Sample) -> str:
        """With three or more servers, a sample outside the majority's intersection is refused."""
        if len(self.servers) < 3:
            return ""
        horizon_ns = int(2 * self.policy.max_poll_s * NS_PER_S)
        drift = self.model.drift_ppb if self.model.status.gives_interval else 0.0
        intervals = []
        for server in self.servers.values():
            latest = sample if server.name == sample.source else server.latest
            if latest is None or abs(sample.local_ns - latest.local_ns) > horizon_ns:
                continue
            age_s = (sample.local_ns - latest.local_ns) / NS_PER_S
            center = latest.offset_ns + int(drift * age_s)
            half = latest.half_width_ns + int(self.drift_tolerance_ppb * abs(age_s))
            intervals.append(SourceInterval(latest.source, center - half, center + half))
        if len(intervals) < 3:
            return ""
        selection = select(intervals)
        if not selection.has_majority:
            return "no_majority"
        if sample.source in selection.falsetickers:
            return "falseticker"
        return ""

    # -- the model ---------------------------------------------------------------------------

    def fresh_for_ns(self) -> int:
        """How long after the last sample the clock is still called synchronized."""
        policy = self.policy
        intervals = [
            s.schedule.interval_ns
            for s in self.servers.values()
            if s.schedule.health is ServerHealth.ACTIVE
        ]
        burst_ns = int(policy.burst_size * (policy.burst_spacing_s + policy.timeout_s) * NS_PER_S)
        return 3 * max(intervals, default=0) + burst_ns

    def estimate(self, realtime_ns: int) -> ClockModel:
        """The model at `realtime_ns`; logs status changes."""
        model = self.predictor.estimate(realtime_ns, self.fresh_for_ns())
        if model.status is not self.model.status:
            _log_status(self.model.status, model)
        self.model = model
        return model

    @property
    def poll_interval_ns(self) -> int:
        active = [s for s in self.servers.values() if s.schedule.health is ServerHealth.ACTIVE]
        return min((s.schedule.interval_ns for s in active), default=0)

    @property
    def sources_reachable(self) -> int:
        return sum(
            1
            for s in self.servers.values()
            if s.schedule.health is ServerHealth.ACTIVE and s.schedule.reachable
        )


def _log_status(old: ClockStatus, model: ClockModel) -> None:
    if model.status.gives_interval:
        log.info(
            "status %s -> %s: offset %+.3f ms, drift %+.3f ppm, σ %.3f ms, bound ±%.3f ms",
            old.name,
            model.status.name,
            model.offset_ns / 1e6,
            model.drift_ppb / 1000.0,
            model.sigma_ns / 1e6,
            model.bound_ns / 1e6,
        )
    else:
        log.info("status %s -> %s", old.name, model.status.name)
