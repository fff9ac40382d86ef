"""The daemon's loop: poll servers, estimate, publish. The I/O edge around the pure parts.

One thread ticks at the publish rate: it checks the clocks for steps, takes finished polls,
feeds their samples through selection into the estimator, starts the polls that are due, and
publishes the model. Polls run in their own short-lived threads so a slow or dead server never
delays a publish.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time

from chronotick.clocks import Clock, SimulatedClock, SystemClock
from chronotick.daemon.config import DaemonConfig
from chronotick.daemon.disruption import ClockReadings, DisruptionDetector
from chronotick.daemon.stopper import Stopper
from chronotick.estimation.estimator import RegressionEstimator, Verdict
from chronotick.estimation.samples import Sample
from chronotick.model import NS_PER_S, ClockModel
from chronotick.ntp.packet import KissCode
from chronotick.ntp.poll import ServerHealth, ServerSchedule
from chronotick.ntp.query import PollResult, ServerAddress, poll_server
from chronotick.ntp.selection import SourceInterval, select
from chronotick.shm import SegmentWriter
from chronotick.status import ClockStatus

log = logging.getLogger("chronotick.daemon")


@dataclasses.dataclass
class _Server:
    address: ServerAddress
    schedule: ServerSchedule
    latest: Sample | None = None
    ever_reached: bool = False
    was_reachable: bool = False
    lost: bool = False
    polls_done: int = 0


@dataclasses.dataclass(frozen=True)
class _Finished:
    server: str
    result: PollResult
    started_realtime_ns: int


class Daemon:
    def __init__(self, config: DaemonConfig, clock: Clock | None = None) -> None:
        self.config = config
        self.clock_params = config.clock_params(time.time_ns())
        if clock is None:
            clock = SimulatedClock(self.clock_params) if self.clock_params else SystemClock()
        self.clock = clock
        policy = config.poll_policy()
        self.servers = {
            str(a): _Server(a, ServerSchedule(policy))
            for a in (ServerAddress.parse(s) for s in config.servers)
        }
        self.estimator = RegressionEstimator(config.estimator_config())
        self.detector = DisruptionDetector()
        self.model: ClockModel = ClockModel.unknown(self.clock.now_ns())
        self.rejected: dict[str, int] = {}
        self._finished: queue.SimpleQueue[_Finished] = queue.SimpleQueue()
        self._disrupted_at_ns = 0
        self._pending: list[Sample] = []
        self._stop = Stopper()
        self.writer: SegmentWriter | None = None

    # -- the loop ----------------------------------------------------------------------------

    def run(self, stop: Stopper | None = None) -> None:
        """Publish until `stop` is set; always leaves the segment marked closed and removed."""
        if stop is not None:
            self._stop = stop
        cfg = self.config
        self.writer = SegmentWriter(
            cfg.segment_name,
            node_id=cfg.node_id,
            clock_params=self.clock_params,
            publish_interval_ns=cfg.publish_interval_ns,
            trusted_for_ns=max(NS_PER_S, 10 * cfg.publish_interval_ns),
            void_after_ns=int(cfg.void_after_s * NS_PER_S),
        )
        log.info(
            "publishing to /dev/shm/%s at %.1f Hz; servers: %s; poll %g-%g s",
            cfg.segment_name,
            cfg.publish_rate_hz,
            ", ".join(self.servers),
            cfg.min_poll_s,
            cfg.max_poll_s,
        )
        interval_s = cfg.publish_interval_ns / NS_PER_S
        try:
            next_tick = time.monotonic()
            while not self._stop.is_set():
                self.tick()
                next_tick += interval_s
                delay = next_tick - time.monotonic()
                if delay < -interval_s:  # fell behind (suspend, overload): do not burst
                    next_tick = time.monotonic()
                    delay = 0.0
                self._stop.wait(max(0.0, delay))
        finally:
            self.writer.close()
            log.info("stopped; segment /dev/shm/%s marked closed and removed", cfg.segment_name)

    def stop(self) -> None:
        self._stop.set()

    def tick(self) -> None:
        readings = self._read_clocks()
        disruption = self.detector.observe(readings)
        if disruption is not None:
            log.warning("%s: restarting the model and polling quickly", disruption.describe())
            self.estimator.reset(disrupted=True)
            self._disrupted_at_ns = readings.realtime_ns
            self._pending.clear()
            for server in self.servers.values():
                server.latest = None
                server.schedule.restart_warmup(readings.monotonic_ns)
        while True:
            try:
                finished = self._finished.get_nowait()
            except queue.Empty:
                break
            self._take(finished, readings.monotonic_ns)
        self._process_pending(readings.monotonic_ns)
        for name, server in self.servers.items():
            if server.schedule.due(readings.monotonic_ns):
                server.schedule.started()
                self._start_poll(name, server.address, readings.realtime_ns)
        self._publish()

    def _read_clocks(self) -> ClockReadings:
        raw = time.clock_gettime_ns(time.CLOCK_MONOTONIC_RAW)
        boot = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        mono = time.monotonic_ns()
        return ClockReadings(self.clock.now_ns(), raw, boot, mono)

    # -- polls -------------------------------------------------------------------------------

    def _start_poll(self, name: str, address: ServerAddress, realtime_ns: int) -> None:
        policy = self.config.poll_policy()

        def run() -> None:
            try:
                result = poll_server(
                    address,
                    self.clock.now_ns,
                    policy.burst_size,
                    policy.burst_spacing_s,
                    policy.timeout_s,
                    sleep=self._stop.wait,
                )
            except Exception as exc:  # a bug here must not silence the server forever
                log.exception("poll of %s failed unexpectedly", name)
                result = PollResult(name, None, {f"internal_error: {exc}": 1})
            self._finished.put(_Finished(name, result, realtime_ns))

        threading.Thread(target=run, name=f"poll {name}", daemon=True).start()

    def _take(self, finished: _Finished, monotonic_ns: int) -> None:
        server = self.servers[finished.server]
        server.polls_done += 1
        result = finished.result
        schedule = server.schedule
        for reason, count in result.failures.items():
            self._count_rejected(reason.split(":")[0], count)
        if result.kiss is not None:
            schedule.on_kiss(monotonic_ns, result.kiss)
            if result.kiss is KissCode.RATE:
                log.warning(
                    "%s asked us to slow down (KoD RATE): polling it every %.0f s at least",
                    finished.server,
                    schedule.floor_ns / NS_PER_S,
                )
            elif schedule.health is ServerHealth.RETIRED:
                log.error("%s refused service (KoD %s): no longer polled", finished.server,
                          result.kiss.value)  # fmt: skip
            self._note_reach(server)
            return
        sample = result.sample
        if sample is None:
            schedule.on_failure(monotonic_ns)
            log.debug("no usable reply from %s: %s", finished.server, result.failures)
            self._note_reach(server)
            return
        if finished.started_realtime_ns < self._disrupted_at_ns:
            schedule.on_success(monotonic_ns)
            self._reject(sample, "taken_before_disruption")
            return
        if not server.ever_reached:
            server.ever_reached = True
            log.info(
                "%s reachable: stratum %d, delay %.3f ms, offset %+.3f ms",
                finished.server,
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

    def _process_pending(self, monotonic_ns: int) -> None:
        if not self._pending or not self._first_round_done():
            return
        for sample in sorted(self._pending, key=lambda s: s.local_ns):
            reason = self._falseticker_reason(sample)
            verdict = Verdict(False, reason) if reason else self.estimator.add(sample)
            if not verdict.accepted:
                self.servers[sample.source].schedule.on_inconsistent(monotonic_ns)
                self._reject(sample, verdict.reason)
        self._pending.clear()

    def _note_reach(self, server: _Server) -> None:
        reachable = server.schedule.reachable
        if server.was_reachable and not reachable:
            log.warning("%s unreachable: last 3 polls failed", server.address)
            server.lost = True
        elif reachable and server.lost:
            log.info("%s reachable again", server.address)
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
        horizon_ns = int(2 * self.config.max_poll_s * NS_PER_S)
        drift = self.model.drift_ppb if self.model.status.gives_interval else 0.0
        tolerance_ppb = self.config.drift_tolerance_ppm * 1000.0
        intervals = []
        for server in self.servers.values():
            latest = sample if str(server.address) == sample.source else server.latest
            if latest is None or abs(sample.local_ns - latest.local_ns) > horizon_ns:
                continue
            age_s = (sample.local_ns - latest.local_ns) / NS_PER_S
            center = latest.offset_ns + int(drift * age_s)
            half = latest.half_width_ns + int(tolerance_ppb * abs(age_s))
            intervals.append(SourceInterval(latest.source, center - half, center + half))
        if len(intervals) < 3:
            return ""
        selection = select(intervals)
        if not selection.has_majority:
            return "no_majority"
        if sample.source in selection.falsetickers:
            return "falseticker"
        return ""

    # -- publishing --------------------------------------------------------------------------

    def _fresh_for_ns(self) -> int:
        """How long after the last sample the clock is still called synchronized."""
        policy = self.config.poll_policy()
        intervals = [
            s.schedule.interval_ns
            for s in self.servers.values()
            if s.schedule.health is ServerHealth.ACTIVE
        ]
        burst_ns = int(policy.burst_size * (policy.burst_spacing_s + policy.timeout_s) * NS_PER_S)
        return 3 * max(intervals, default=0) + burst_ns

    def _publish(self) -> None:
        # One pair of readings, taken together: readers compare them to notice steps.
        monotonic_ns = time.monotonic_ns()
        realtime_ns = self.clock.now_ns()
        model = self.estimator.estimate(realtime_ns, self._fresh_for_ns())
        if model.status is not self.model.status:
            self._log_status(self.model.status, model)
        self.model = model
        assert self.writer is not None
        active = [s for s in self.servers.values() if s.schedule.health is ServerHealth.ACTIVE]
        self.writer.publish(
            model,
            poll_interval_ns=min((s.schedule.interval_ns for s in active), default=0),
            sources_configured=len(self.servers),
            sources_reachable=sum(1 for s in active if s.schedule.reachable),
            monotonic_ns=monotonic_ns,
        )

    @staticmethod
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
