"""The daemon's loop: the I/O around `SyncEngine` (sockets, threads, clocks, shared memory).

One thread ticks at the publish rate: it reads the clocks, hands finished polls to the engine,
starts the polls the engine says are due, and publishes the engine's model. Polls run in their
own short-lived threads so a slow or dead server never delays a publish.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

from chronotick.clockbound_segment import ClockBoundWriter, coarse_monotonic_ns
from chronotick.clocks import Clock, SimulatedClock, SystemClock
from chronotick.daemon.config import DaemonConfig
from chronotick.daemon.sensors import HostSensors
from chronotick.daemon.stopper import Stopper
from chronotick.disruption import ClockReadings
from chronotick.engine import SyncEngine
from chronotick.estimation.forecast.covariates import CovariateReading
from chronotick.estimation.forecast.fused import Trained
from chronotick.estimation.forecast.training import ThreadTraining
from chronotick.estimation.fusion import ExternalEstimate, fuse
from chronotick.estimation.predictor import make_predictor
from chronotick.history import History
from chronotick.metrics import MetricsEndpoint, daemon_families, format_address, read_daemon
from chronotick.model import NS_PER_S, ClockModel
from chronotick.ntp.poll import PollResult
from chronotick.ntp.query import Resolver, ServerAddress, poll_server
from chronotick.shm import SegmentWriter

log = logging.getLogger("chronotick.daemon")

#: realtime and monotonic read further apart than this are read again
_READ_GAP_NS = 100_000
#: how often the host's temperature and load are read for the forecasters
SENSOR_INTERVAL_NS = 5 * NS_PER_S


@dataclasses.dataclass(frozen=True)
class _Finished:
    result: PollResult
    started_epoch: int


class Daemon:
    def __init__(self, config: DaemonConfig, clock: Clock | None = None) -> None:
        self.config = config
        self.clock_params = config.clock_params(time.time_ns())
        if clock is None:
            clock = SimulatedClock(self.clock_params) if self.clock_params else SystemClock()
        self.clock = clock
        self.addresses = {str(a): a for a in (ServerAddress.parse(s) for s in config.servers)}
        #: forecasters train on a worker thread, so publishing never waits for them
        self.training: ThreadTraining[Trained] | None = None
        self.sensors: HostSensors | None = None
        if config.predictor != "regression":
            self.training = ThreadTraining()
            sensor = config.temperature_sensor
            self.sensors = HostSensors(temperature_path=Path(sensor) if sensor else None)
            log.info("predictor %s; conditions: %s", config.predictor, self.sensors.description)
        self._next_sensor_read_ns = 0
        try:
            predictor = make_predictor(
                config.predictor, config.estimator_config(), self.training, config.zero_shot_model
            )
        except BaseException:
            if self.training is not None:
                self.training.close()
            raise
        self.engine = SyncEngine(
            list(self.addresses),
            config.poll_policy(),
            predictor,
            drift_tolerance_ppb=config.drift_tolerance_ppm * 1000.0,
            initial_realtime_ns=self.clock.now_ns(),
        )
        self._finished: queue.SimpleQueue[_Finished] = queue.SimpleQueue()
        self._resolver = Resolver()
        self._stop: Stopper | None = None
        self.writer: SegmentWriter | None = None
        #: the AWS ClockBound segment, when `clockbound_path` asks for one
        self.clockbound: ClockBoundWriter | None = None
        #: an estimate from outside the NTP path (the peers' consensus, given the base-clock
        #: instant and the NTP model), fused into what is published. The engine's own model
        #: stays NTP-only: that is what a node serves its peers, so that no estimate ever
        #: comes back to the node that made it.
        self.external: Callable[[int, ClockModel], ExternalEstimate | None] | None = None
        self.published: ClockModel = self.engine.model
        #: monotonic time of the last write of the segment (None before the first)
        self.published_monotonic_ns: int | None = None
        #: the process's Prometheus endpoint; a node adds its own part before `run()`
        self.metrics = MetricsEndpoint()
        self.metrics.add("daemon", lambda: daemon_families(read_daemon(self)))
        #: the recent past, for `chronotick-node report`: published points, samples, changes
        self.history = History()
        self.engine.sample_log = self.history.add_sample

    @property
    def metrics_port(self) -> int:
        """The port the metrics endpoint listens on; 0 while it does not."""
        return self.metrics.port

    @property
    def model(self) -> ClockModel:
        """The model learnt from NTP measurements only."""
        return self.engine.model

    @property
    def rejected(self) -> dict[str, int]:
        return self.engine.rejected

    # -- the loop ----------------------------------------------------------------------------

    def run(self, stop: Stopper | None = None) -> None:
        """Publish until `stop` is set; always leaves the segment marked closed and removed."""
        own_stopper = stop is None
        self._stop = stop if stop is not None else Stopper()
        cfg = self.config
        self.writer = SegmentWriter(
            cfg.segment_name,
            node_id=cfg.node_id,
            clock_params=self.clock_params,
            publish_interval_ns=cfg.publish_interval_ns,
            trusted_for_ns=cfg.trusted_for_ns,
            void_after_ns=int(cfg.void_after_s * NS_PER_S),
            directory=cfg.shm_dir or None,
        )
        log.info(
            "publishing to %s at %.1f Hz; servers: %s; poll %g-%g s",
            self.writer.path,
            cfg.publish_rate_hz,
            ", ".join(self.addresses),
            cfg.min_poll_s,
            cfg.max_poll_s,
        )
        interval_s = cfg.publish_interval_ns / NS_PER_S
        try:
            if cfg.clockbound_path:
                self.clockbound = self._open_clockbound(cfg.clockbound_path)
            self.start_metrics()
            next_tick = time.monotonic()
            while not self._stop.is_set():
                try:
                    self.tick()
                except Exception:
                    # A bug or an input nobody foresaw must cost one publish, not the daemon:
                    # readers see the data age and, past void_after, refuse it.
                    log.exception("tick failed; continuing")
                next_tick += interval_s
                delay = next_tick - time.monotonic()
                if delay < -interval_s:  # fell behind (suspend, overload): do not burst
                    next_tick = time.monotonic()
                    delay = 0.0
                self._stop.wait(max(0.0, delay))
        finally:
            try:
                if self.clockbound is not None:
                    # kept, not removed: ClockBound's clients never re-open the file
                    self.clockbound.close()
                    log.info("ClockBound segment %s marked UNKNOWN", cfg.clockbound_path)
            finally:
                if self.training is not None:
                    self.training.close()
                self.metrics.stop()
                self.writer.close()
                if own_stopper:
                    self._stop.close()
                log.info("stopped; segment %s marked closed and removed", self.writer.path)

    def _open_clockbound(self, path: str) -> ClockBoundWriter:
        """The ClockBound writer; refuses a base clock other than CLOCK_REALTIME, which is the
        clock ClockBound's clients read and the segment bounds."""
        if not isinstance(self.clock, SystemClock):
            raise RuntimeError(
                "the ClockBound segment bounds CLOCK_REALTIME; this daemon measures "
                f"{type(self.clock).__name__}"
            )
        writer = ClockBoundWriter(path, int(self.config.void_after_s * NS_PER_S))
        log.info("also writing a ClockBound (layout 2) segment at %s", path)
        return writer

    def start_metrics(self) -> None:
        """Serve the metrics endpoint, when configured and not serving yet.

        `run()` calls it; a node calls it before opening its other ports, so that a port taken
        by something else stops the node before it announces itself to anyone.
        """
        listen = self.config.metrics_listen()
        if listen is None or self.metrics.port:
            return
        port = self.metrics.start(*listen)
        log.info("metrics on http://%s/metrics", format_address(listen[0], port))

    def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    def tick(self) -> None:
        readings = self._read_clocks()
        engine = self.engine
        engine.observe_clocks(readings)
        while True:
            try:
                finished = self._finished.get_nowait()
            except queue.Empty:
                break
            engine.take(finished.result, finished.started_epoch, readings.monotonic_ns)
        self._read_sensors(readings)
        engine.process_pending(readings.monotonic_ns)
        for name in engine.due(readings.monotonic_ns):
            self._start_poll(name, engine.epoch)
        self._publish()

    def _read_sensors(self, readings: ClockReadings) -> None:
        """The host's conditions, every few seconds, for a predictor that learns from them."""
        observe = getattr(self.engine.predictor, "observe_covariates", None)
        if self.sensors is None or observe is None:
            return
        if readings.monotonic_ns < self._next_sensor_read_ns:
            return
        self._next_sensor_read_ns = readings.monotonic_ns + SENSOR_INTERVAL_NS
        reading: CovariateReading = self.sensors.read(readings.realtime_ns)
        observe(reading)

    def _read_clocks(self) -> ClockReadings:
        """The four clocks as nearly at one instant as Python allows.

        Realtime is read between two monotonic readings, and the set is read again when they
        are far apart (a thread switch or preemption in between): the step detector compares
        realtime with monotonic, and a pause between the two reads looks like a step.
        """
        for _ in range(5):
            before = time.monotonic_ns()
            realtime = self.clock.now_ns()
            after = time.monotonic_ns()
            boot = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
            raw = time.clock_gettime_ns(time.CLOCK_MONOTONIC_RAW)
            if after - before <= _READ_GAP_NS:
                break
        return ClockReadings(realtime, raw, boot, (before + after) // 2)

    def _start_poll(self, name: str, epoch: int) -> None:
        policy = self.engine.policy
        burst_size = self.engine.servers[name].schedule.burst_size
        address = self.addresses[name]

        stopper = self._stop
        assert stopper is not None, "polls start only from run()"

        def run() -> None:
            try:
                result = poll_server(
                    address,
                    self.clock.now_ns,
                    burst_size,
                    policy.burst_spacing_s,
                    policy.timeout_s,
                    sleep=stopper.wait,
                    resolver=self._resolver,
                )
            except Exception as exc:  # a bug here must not silence the server forever
                log.exception("poll of %s failed unexpectedly", name)
                result = PollResult(name, None, {f"internal_error: {exc}": 1})
            self._finished.put(_Finished(result, epoch))

        threading.Thread(target=run, name=f"poll {name}", daemon=True).start()

    def _publish(self) -> None:
        # One pair of readings, taken together: readers compare them to notice steps. The
        # coarse reading before them and the fine one after bracket the realtime reading for
        # the ClockBound record (its as_of is the coarse one).
        coarse_ns = coarse_monotonic_ns()
        monotonic_ns = time.monotonic_ns()
        now_ns = self.clock.now_ns()
        after_ns = time.monotonic_ns()
        ntp_before = self.engine.model.status
        ntp = model = self.engine.estimate(now_ns)
        external = None
        if self.external is not None:
            try:
                external = self.external(now_ns, model)
            except Exception:  # the peers are a bonus: their failure must not stop publishing
                log.exception("the outside estimate failed; publishing the NTP model alone")
            model = fuse(model, external, now_ns, self.engine.drift_tolerance_ppb)
        old = self.published.status
        if model.status is not old:
            if ntp.status is model.status and ntp_before is not ntp.status:
                reason = self.engine.status_reason  # the engine has just said so
            else:
                reason = _fused_reason(ntp, external)
                log.info("published status %s -> %s: %s", old.name, model.status.name, reason)
            self.history.add_change(monotonic_ns, now_ns, old, model.status, reason)
        self.published = model
        self.history.add_point(
            monotonic_ns, now_ns, model, external.offset_ns if external is not None else None
        )
        assert self.writer is not None
        self.writer.publish(
            model,
            poll_interval_ns=self.engine.poll_interval_ns,
            sources_configured=len(self.addresses),
            sources_reachable=self.engine.sources_reachable,
            monotonic_ns=monotonic_ns,
        )
        if self.clockbound is not None:
            try:
                self.clockbound.publish(model, now_ns, coarse_ns, after_ns - coarse_ns)
            except Exception:  # our own segment is written; this one waits for the next tick
                log.exception("writing the ClockBound segment failed")
        self.published_monotonic_ns = monotonic_ns


def _fused_reason(ntp: ClockModel, external: ExternalEstimate | None) -> str:
    """Why the published status differs from what the NTP model alone says."""
    if external is None:
        return f"no peer consensus; the NTP estimate is {ntp.status.name}"
    plural = "s" if external.sources != 1 else ""
    peers = f"the consensus of {external.sources} peer{plural} is "
    peers += "synchronized" if external.synchronized else "free-running"
    return f"the NTP estimate is {ntp.status.name}, {peers}"
