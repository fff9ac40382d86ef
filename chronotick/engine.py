"""The node's decisions, without I/O: which server to poll when, which samples to believe,
and what the clock model is.

The daemon wraps it in sockets, threads and shared memory; the simulator drives it in virtual
time. Times come in as arguments: `monotonic_ns` orders events (polls, back-off), `realtime_ns`
is the base clock the model describes.

Its log says what changed and why, once per change: the status (with the reason), a server
becoming unreachable or reachable again (with the failures), a poll interval changing (with
the event that changed it), and refused samples, the first of a run with its reason and then
a count every `REJECTION_SUMMARY_S` while the run lasts: a server that lies every poll fills
no log.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from chronotick.display import format_seconds
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

#: while a server's samples keep being refused for the same reason, one line per this long
REJECTION_SUMMARY_S = 600.0
#: polls that must fail before a server that never answered is called unreachable
_UNREACHABLE_AFTER = 3


@dataclasses.dataclass
class ServerState:
    name: str
    schedule: ServerSchedule
    latest: Sample | None = None
    ever_reached: bool = False
    was_reachable: bool = False
    lost: bool = False
    polls_done: int = 0
    #: the verdict on the latest sample: "" taken, else why it was refused
    verdict: str = ""
    #: why its polls failed since its last answer (reason → count), for the unreachable line
    failures: dict[str, int] = dataclasses.field(default_factory=dict)
    #: the poll interval last reported, to log changes
    interval_ns: int = 0
    #: the current run of refused samples: its reason, how many were not logged, and when
    #: the last line about it was written (monotonic)
    rejecting: str = ""
    rejected_quietly: int = 0
    rejection_logged_ns: int = 0


@dataclasses.dataclass(frozen=True)
class SourceReport:
    """One server as an operator sees it (chronyc sources): reach, state, latest sample."""

    name: str
    #: NTP's 8-bit reachability register, newest poll in the lowest bit
    reach: int
    #: "used", "waiting", "unreachable", "retired", or why its latest sample was refused
    state: str
    stratum: int
    #: the latest sample: reference − base clock, round trip, base-clock instant; None
    #: until there is one (or after a disruption)
    offset_ns: int | None
    delay_ns: int | None
    sample_ns: int | None
    poll_interval_ns: int


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
        #: why the status last changed (for the daemon's history and logs)
        self.status_reason = "starting"
        #: told of every sample with its verdict ("" taken, else the reason it was refused)
        #: and the monotonic time (the daemon's history); None: nobody listens
        self.sample_log: Callable[[int, Sample, str], None] | None = None
        self._disruption = ""
        for server in self.servers.values():
            server.interval_ns = server.schedule.interval_ns

    # -- clocks ------------------------------------------------------------------------------

    def observe_clocks(self, readings: ClockReadings) -> Disruption | None:
        """Check for a step or suspend; on one, restart the model and poll quickly."""
        disruption = self.detector.observe(readings)
        if disruption is None:
            return None
        log.warning("%s: restarting the model and polling quickly", disruption.describe())
        self._disruption = disruption.describe()
        self.predictor.reset(disrupted=True)
        for observer in self.on_selected:
            observer.reset(disrupted=True)
        self.epoch += 1
        self._pending.clear()
        for server in self.servers.values():
            server.latest = None
            server.verdict = ""
            server.schedule.restart_warmup(readings.monotonic_ns)
            self._note_interval(server, "a clock disruption")
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
                server.interval_ns = schedule.interval_ns  # that line said it
            elif schedule.health is ServerHealth.RETIRED:
                log.error("%s refused service (KoD %s): no longer polled", result.server,
                          result.kiss.value)  # fmt: skip
            server.failures[f"KoD {result.kiss.value}"] = (
                server.failures.get(f"KoD {result.kiss.value}", 0) + 1
            )
            self._note_reach(server)
            return
        sample = result.sample
        if sample is None:
            schedule.on_failure(monotonic_ns)
            log.debug("no usable reply from %s: %s", result.server, result.failures)
            for reason, count in (result.failures or {"no reply": 1}).items():
                server.failures[reason] = server.failures.get(reason, 0) + count
            self._note_reach(server)
            return
        server.failures.clear()
        if started_epoch != self.epoch:
            schedule.on_success(monotonic_ns)
            self._reject(server, sample, "taken_before_disruption", monotonic_ns)
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
        self._note_interval(server, f"{self.policy.good_polls_to_back_off} good polls in a row")
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
            server = self.servers[sample.source]
            schedule = server.schedule
            if not verdict.accepted:
                schedule.on_inconsistent(monotonic_ns)
                self._reject(server, sample, verdict.reason, monotonic_ns)
                self._note_interval(server, f"a sample was refused ({verdict.reason})")
            else:
                self._accepted(server, sample, monotonic_ns)
                schedule.on_surprise(monotonic_ns, verdict.surprise)
                self._note_interval(
                    server, f"a sample fell {verdict.surprise:.1f}σ from the prediction"
                )
        self._pending.clear()

    def _note_reach(self, server: ServerState) -> None:
        """Log a server going unreachable (with why its polls failed) or coming back, once."""
        schedule = server.schedule
        reachable = schedule.reachable
        never_answered = not server.ever_reached and server.polls_done >= _UNREACHABLE_AFTER
        if not reachable and not server.lost and (server.was_reachable or never_answered):
            server.lost = True
            why = ", ".join(f"{r} ×{n}" for r, n in sorted(server.failures.items()))
            if server.ever_reached:
                log.warning("%s unreachable: its last 3 polls failed (%s)", server.name, why)
            else:
                log.warning("%s unreachable: none of its %d polls was answered (%s)",
                            server.name, server.polls_done, why)  # fmt: skip
        elif reachable and server.lost:
            log.info("%s reachable again", server.name)
            server.lost = False
        server.was_reachable = reachable

    def _note_interval(self, server: ServerState, reason: str) -> None:
        """Log a change of the server's poll interval with the event that made it."""
        interval = server.schedule.interval_ns
        if interval != server.interval_ns:
            log.info(
                "poll interval of %s: %s -> %s (%s)",
                server.name,
                format_seconds(server.interval_ns / NS_PER_S),
                format_seconds(interval / NS_PER_S),
                reason,
            )
            server.interval_ns = interval

    def _count_rejected(self, reason: str, count: int = 1) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + count

    def _accepted(self, server: ServerState, sample: Sample, monotonic_ns: int) -> None:
        server.verdict = ""
        if server.rejecting and server.rejected_quietly:
            log.info(
                "samples from %s taken again, after %d more refused (%s)",
                server.name,
                server.rejected_quietly,
                server.rejecting,
            )
        server.rejecting = ""
        server.rejected_quietly = 0
        if self.sample_log is not None:
            self.sample_log(monotonic_ns, sample, "")

    def _reject(self, server: ServerState, sample: Sample, reason: str, monotonic_ns: int) -> None:
        """Count a refused sample; log the first of a run with the reason, then a count now
        and then (a falseticker refused at every poll is one line per ten minutes)."""
        self._count_rejected(reason)
        server.verdict = reason
        if self.sample_log is not None:
            self.sample_log(monotonic_ns, sample, reason)
        if reason != server.rejecting:
            log.info(
                "refused a sample from %s (%s): offset %+.3f ms, delay %.3f ms",
                sample.source,
                reason,
                sample.offset_ns / 1e6,
                sample.delay_ns / 1e6,
            )
            server.rejecting = reason
            server.rejected_quietly = 0
            server.rejection_logged_ns = monotonic_ns
            return
        server.rejected_quietly += 1
        elapsed_ns = monotonic_ns - server.rejection_logged_ns
        if elapsed_ns >= REJECTION_SUMMARY_S * NS_PER_S:
            log.info(
                "still refusing samples from %s (%s): %d more in %s; the latest: offset "
                "%+.3f ms, delay %.3f ms",
                sample.source,
                reason,
                server.rejected_quietly,
                format_seconds(elapsed_ns / NS_PER_S),
                sample.offset_ns / 1e6,
                sample.delay_ns / 1e6,
            )
            server.rejected_quietly = 0
            server.rejection_logged_ns = monotonic_ns

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
        """The model at `realtime_ns`; logs status changes with their reason."""
        fresh_for_ns = self.fresh_for_ns()
        model = self.predictor.estimate(realtime_ns, fresh_for_ns)
        if model.status is not self.model.status:
            self.status_reason = self._status_reason(self.model.status, model, fresh_for_ns)
            _log_status(self.model.status, model, self.status_reason)
        self.model = model
        return model

    def _status_reason(self, old: ClockStatus, model: ClockModel, fresh_for_ns: int) -> str:
        """Why the status became `model.status`, in words an operator can act on."""
        new = model.status
        if new is ClockStatus.DISRUPTED:
            return self._disruption or "a clock disruption"
        if new is ClockStatus.SYNCHRONIZED:
            if old is ClockStatus.FREE_RUNNING:
                return f"a fresh sample from {model.source}"
            after = " after the disruption" if old is ClockStatus.DISRUPTED else ""
            return f"the model fits {model.samples_used} samples{after}"
        if new is ClockStatus.FREE_RUNNING:
            age_s = (model.as_of_ns - model.last_sample_ns) / NS_PER_S
            why = [
                f"no sample taken for {format_seconds(age_s)} "
                f"(synchronized for {format_seconds(fresh_for_ns / NS_PER_S)} after one)",
                f"{self.sources_reachable} of {len(self.servers)} servers reachable",
            ]
            why += [f"{s.name} refused ({s.verdict})" for s in self.servers.values() if s.verdict]
            return "; ".join(why)
        return "the model was reset"

    def source_reports(self) -> list[SourceReport]:
        """Every server's state, in configuration order (read from another thread: each
        field is one attribute read, a row may mix two polls but never breaks)."""
        reports = []
        for server in self.servers.values():
            schedule = server.schedule
            latest = server.latest
            if schedule.health is ServerHealth.RETIRED:
                state = "retired"
            elif server.lost:
                state = "unreachable"
            elif latest is None:
                state = "waiting"
            else:
                state = server.verdict or "used"
            reports.append(
                SourceReport(
                    name=server.name,
                    reach=schedule.reach,
                    state=state,
                    stratum=latest.stratum if latest is not None else 0,
                    offset_ns=latest.offset_ns if latest is not None else None,
                    delay_ns=latest.delay_ns if latest is not None else None,
                    sample_ns=latest.local_ns if latest is not None else None,
                    poll_interval_ns=max(schedule.interval_ns, schedule.floor_ns),
                )
            )
        return reports

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


def _log_status(old: ClockStatus, model: ClockModel, reason: str) -> None:
    if model.status.gives_interval:
        log.info(
            "status %s -> %s: %s; offset %+.3f ms, drift %+.3f ppm, σ %.3f ms, bound ±%.3f ms",
            old.name,
            model.status.name,
            reason,
            model.offset_ns / 1e6,
            model.drift_ppb / 1000.0,
            model.sigma_ns / 1e6,
            model.bound_ns / 1e6,
        )
    else:
        log.info("status %s -> %s: %s", old.name, model.status.name, reason)
