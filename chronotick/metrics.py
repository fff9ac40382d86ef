"""Prometheus metrics of one host: the catalog of what the daemon exports, the collector that
reads the daemon's state when scraped, and the HTTP endpoint that serves it.

The catalog (`DAEMON_METRICS`) is the one definition of every family's name, type, help and
labels: the collector builds its families from it, and the documentation is rendered from it
(`markdown_table`), so the two cannot drift apart. A node adds its own catalog and part
(coordinator.metrics) to the same endpoint: one port per process.

Nothing is counted on the publish path. A scrape reads the state the daemon keeps anyway (the
published model, each server's schedule and newest sample, the rejection counts) and
extrapolates the model to the scrape instant with the same formulas a reader of the segment
uses, so the figures agree with what `ChronoTickClient` reports at that moment.

Names follow Prometheus's conventions: a `chronotick_` prefix, base units (seconds, ratio) as
the suffix, `_total` on counters, labels for the server, reason, peer and outcome. A quantity
that has no value (no model yet, a server never heard from) is left out rather than exported
as a made-up number.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Literal

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from chronotick.estimation.samples import Sample
from chronotick.model import NS_PER_S, ClockModel
from chronotick.ntp.poll import ServerHealth
from chronotick.status import ClockStatus

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from chronotick.daemon.service import Daemon

log = logging.getLogger("chronotick.metrics")

MetricType = Literal["gauge", "counter", "histogram"]
#: samples of one family: (label values, value)
Samples = list[tuple[Sequence[str], float]]
_NAME_RE = re.compile(r"\Achronotick_[a-z][a-z0-9_]*\Z")
_LABEL_RE = re.compile(r"\A[a-z][a-z0-9_]*\Z")


@dataclasses.dataclass(frozen=True)
class MetricSpec:
    """One metric family as exported: its full name (a counter's with `_total`), type, help
    and label names; a histogram's bucket upper bounds."""

    name: str
    type: MetricType
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise ValueError(f"metric name {self.name!r}: chronotick_ and [a-z0-9_]")
        if (self.type == "counter") != self.name.endswith("_total"):
            raise ValueError(f"{self.name}: counters, and only counters, end in _total")
        if (self.type == "histogram") != bool(self.buckets):
            raise ValueError(f"{self.name}: histograms, and only histograms, have buckets")
        if list(self.buckets) != sorted(set(self.buckets)) or not all(
            math.isfinite(b) for b in self.buckets
        ):
            raise ValueError(f"{self.name}: buckets must be finite and increasing")
        for label in self.labels:
            if not _LABEL_RE.match(label) or label == "le":
                raise ValueError(f"{self.name}: bad label name {label!r}")

    def family(self, samples: Iterable[tuple[Sequence[str], float]] = ()) -> Metric:
        """A gauge or counter family of this spec with `samples` (label values, value)."""
        metric: GaugeMetricFamily | CounterMetricFamily
        if self.type == "gauge":
            metric = GaugeMetricFamily(self.name, self.help, labels=self.labels)
        elif self.type == "counter":
            metric = CounterMetricFamily(self.name, self.help, labels=self.labels)
        else:
            raise TypeError(f"{self.name} is a {self.type}: use histogram()")
        for label_values, value in samples:
            metric.add_metric(list(label_values), value)
        return metric

    def histogram(self, counts: HistogramCounts) -> Metric:
        """The histogram family of this spec (no labels) from `counts`."""
        if self.type != "histogram" or counts.bounds != self.buckets:
            raise TypeError(f"{self.name}: not a histogram with these buckets")
        cumulative = 0
        buckets: list[tuple[str, float]] = []
        for bound, count in zip((*self.buckets, math.inf), counts.counts, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == math.inf else repr(float(bound)), cumulative))
        return HistogramMetricFamily(self.name, self.help, buckets=buckets, sum_value=counts.sum)


def markdown_table(specs: Iterable[MetricSpec]) -> str:
    """The catalog as a Markdown table (name, type, labels, meaning), for the docs."""
    rows = ["| Metric | Type | Labels | Meaning |", "| --- | --- | --- | --- |"]
    for spec in specs:
        labels = ", ".join(f"`{label}`" for label in spec.labels) or "-"
        rows.append(f"| `{spec.name}` | {spec.type} | {labels} | {spec.help} |")
    return "\n".join(rows) + "\n"


# -- counts kept by those who observe events ---------------------------------------------------


class Counts:
    """Event counters by a label value fixed in advance (a lock and an add per event).

    Every value starts at 0, so that each series exists from the first scrape on and a rate
    over it is defined.
    """

    def __init__(self, keys: Iterable[str]) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(keys, 0)

    def add(self, key: str, count: int = 1) -> None:
        with self._lock:
            if key not in self._counts:
                raise KeyError(f"{key!r} is not one of {sorted(self._counts)}")
            self._counts[key] += count

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


@dataclasses.dataclass(frozen=True)
class HistogramCounts:
    """Observations per bucket (not cumulative; the last is above every bound) and their sum."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    sum: float

    @property
    def count(self) -> int:
        return sum(self.counts)


class Histogram:
    """Observations counted into fixed buckets as they happen, read at scrape time."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self._lock = threading.Lock()
        self._counts = [0] * (len(self.bounds) + 1)
        self._sum = 0.0

    def observe(self, value: float) -> None:
        if not math.isfinite(value):
            raise ValueError(f"observation must be finite, got {value}")
        index = next((i for i, b in enumerate(self.bounds) if value <= b), len(self.bounds))
        with self._lock:
            self._counts[index] += 1
            self._sum += value

    def snapshot(self) -> HistogramCounts:
        with self._lock:
            return HistogramCounts(self.bounds, tuple(self._counts), self._sum)


# -- the catalog ---------------------------------------------------------------------------------

STATUS_LABELS = {status: status.name.lower() for status in ClockStatus}

CLOCK_STATUS = MetricSpec(
    "chronotick_clock_status",
    "gauge",
    "1 for the status a reader of the segment is told now, 0 for the others (synchronized, "
    "free_running, disrupted, unknown; unknown also once the daemon stopped publishing).",
    ("status",),
)
CLOCK_OFFSET = MetricSpec(
    "chronotick_clock_offset_seconds",
    "gauge",
    "Published correction at the scrape: true time minus the host's base clock (positive: the "
    "host clock is behind). Absent while the status gives no interval.",
)
CLOCK_DRIFT = MetricSpec(
    "chronotick_clock_drift_ratio",
    "gauge",
    "Rate at which the correction grows, in seconds per second (1e-6 is 1 ppm). Absent while "
    "the status gives no interval.",
)
CLOCK_UNCERTAINTY = MetricSpec(
    "chronotick_clock_uncertainty_seconds",
    "gauge",
    "σ of the published time at the scrape (about 68 % of errors within ±σ). Absent while the "
    "status gives no interval.",
)
CLOCK_BOUND = MetricSpec(
    "chronotick_clock_error_bound_seconds",
    "gauge",
    "Half-width of the interval [earliest, latest] that must contain true time, at the "
    "scrape. Absent while the status gives no interval.",
)
CLOCK_MEASUREMENT_AGE = MetricSpec(
    "chronotick_clock_last_measurement_age_seconds",
    "gauge",
    "Time since the newest measurement the published model rests on.",
)
CLOCK_SAMPLES = MetricSpec(
    "chronotick_clock_samples_used",
    "gauge",
    "Measurements in the published model's regression.",
)
CLOCK_DISRUPTIONS = MetricSpec(
    "chronotick_clock_disruptions_total",
    "counter",
    "Clock steps and suspends detected; each restarts the model.",
)
PUBLISH_AGE = MetricSpec(
    "chronotick_publish_age_seconds",
    "gauge",
    "Time since the daemon last wrote the shared-memory segment (it does so at the publish "
    "rate; readers refuse data older than void_after). Absent before the first write.",
)
SERVERS_CONFIGURED = MetricSpec(
    "chronotick_servers_configured", "gauge", "NTP servers in the configuration."
)
SERVERS_REACHABLE = MetricSpec(
    "chronotick_servers_reachable",
    "gauge",
    "NTP servers still polled that answered one of their last three polls.",
)
SERVER_REACHABLE = MetricSpec(
    "chronotick_server_reachable",
    "gauge",
    "1 when the server is still polled and answered one of its last three polls.",
    ("server",),
)
SERVER_REACH = MetricSpec(
    "chronotick_server_reach_register",
    "gauge",
    "NTP's reachability register: one bit per poll, the newest lowest, set when answered "
    "(255: the last eight answered).",
    ("server",),
)
SERVER_ACTIVE = MetricSpec(
    "chronotick_server_active",
    "gauge",
    "1 while the server is polled; 0 once it refused service (Kiss-o'-Death DENY or RSTR).",
    ("server",),
)
SERVER_OFFSET = MetricSpec(
    "chronotick_server_offset_seconds",
    "gauge",
    "Offset measured by the server's newest sample (server minus host clock).",
    ("server",),
)
SERVER_DELAY = MetricSpec(
    "chronotick_server_delay_seconds",
    "gauge",
    "Round-trip delay of the server's newest sample.",
    ("server",),
)
SERVER_STRATUM = MetricSpec(
    "chronotick_server_stratum", "gauge", "Stratum of the server's newest sample.", ("server",)
)
SERVER_LAST_SAMPLE_AGE = MetricSpec(
    "chronotick_server_last_sample_age_seconds",
    "gauge",
    "Time since the server last answered a poll. Absent until it has.",
    ("server",),
)
SERVER_POLL_INTERVAL = MetricSpec(
    "chronotick_server_poll_interval_seconds",
    "gauge",
    "Current poll interval of the server (grows while its answers agree, up to max poll).",
    ("server",),
)
SERVER_POLLS = MetricSpec(
    "chronotick_server_polls_total",
    "counter",
    "Polls of the server that finished, answered or not.",
    ("server",),
)
REJECTED = MetricSpec(
    "chronotick_rejected_samples_total",
    "counter",
    "Exchanges and samples not used, by reason (timeout, outlier, falseticker, no_majority, "
    "kiss_of_death, taken_before_disruption, ...).",
    ("reason",),
)
COLLECTOR_SUCCESS = MetricSpec(
    "chronotick_scrape_collector_success",
    "gauge",
    "1 when the collector read its state for this scrape; 0 when it failed (its metrics are "
    "missing and the log says why).",
    ("collector",),
)

DAEMON_METRICS: tuple[MetricSpec, ...] = (
    CLOCK_STATUS,
    CLOCK_OFFSET,
    CLOCK_DRIFT,
    CLOCK_UNCERTAINTY,
    CLOCK_BOUND,
    CLOCK_MEASUREMENT_AGE,
    CLOCK_SAMPLES,
    CLOCK_DISRUPTIONS,
    PUBLISH_AGE,
    SERVERS_CONFIGURED,
    SERVERS_REACHABLE,
    SERVER_REACHABLE,
    SERVER_REACH,
    SERVER_ACTIVE,
    SERVER_OFFSET,
    SERVER_DELAY,
    SERVER_STRATUM,
    SERVER_LAST_SAMPLE_AGE,
    SERVER_POLL_INTERVAL,
    SERVER_POLLS,
    REJECTED,
    COLLECTOR_SUCCESS,
)


# -- what a scrape reads -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ServerReading:
    name: str
    active: bool
    reach: int
    reachable: bool
    polls: int
    poll_interval_ns: int
    #: the newest sample (None before the first answer and after a disruption)
    latest: Sample | None
    #: monotonic time since the last answer; None before the first
    last_answer_age_ns: int | None


@dataclasses.dataclass(frozen=True)
class DaemonReading:
    """The daemon's state at one scrape, in plain values."""

    #: the base clock at the scrape (the model is extrapolated to it)
    at_ns: int
    model: ClockModel
    #: monotonic time since the last write of the segment; None before the first
    publish_age_ns: int | None
    #: a reader's rules for old data: FREE_RUNNING past the first, refused past the second
    trusted_for_ns: int
    void_after_ns: int
    servers: tuple[ServerReading, ...]
    rejected: Mapping[str, int]
    disruptions: int

    @property
    def status(self) -> ClockStatus:
        """What a reader of the segment is told now (ChronoTickClient's rules for old data)."""
        age = self.publish_age_ns
        if age is None or age > self.void_after_ns:
            return ClockStatus.UNKNOWN
        if self.model.status is ClockStatus.SYNCHRONIZED and age > self.trusted_for_ns:
            return ClockStatus.FREE_RUNNING
        return self.model.status


def read_daemon(daemon: Daemon) -> DaemonReading:
    """Copy what the metrics need out of a running daemon (from the scrape's own thread).

    Each field is read once into a local value: the daemon thread replaces models and samples
    whole (never edits them), so every figure is consistent in itself.
    """
    engine = daemon.engine
    model = daemon.published
    published_at = daemon.published_monotonic_ns
    monotonic_ns = time.monotonic_ns()
    servers = []
    for name, state in engine.servers.items():
        schedule = state.schedule
        last_answer = schedule.last_answer_ns
        servers.append(
            ServerReading(
                name=name,
                active=schedule.health is ServerHealth.ACTIVE,
                reach=schedule.reach,
                reachable=schedule.reachable,
                polls=state.polls_done,
                poll_interval_ns=max(schedule.interval_ns, schedule.floor_ns),
                latest=state.latest,
                # an answer taken while this runs may be stamped a moment after monotonic_ns
                last_answer_age_ns=None
                if last_answer is None
                else max(0, monotonic_ns - last_answer),
            )
        )
    return DaemonReading(
        at_ns=daemon.clock.now_ns(),
        model=model,
        publish_age_ns=None if published_at is None else max(0, monotonic_ns - published_at),
        trusted_for_ns=daemon.config.trusted_for_ns,
        void_after_ns=int(daemon.config.void_after_s * NS_PER_S),
        servers=tuple(servers),
        rejected=dict(engine.rejected),
        disruptions=engine.epoch,
    )


def _s(ns: float) -> float:
    return ns / NS_PER_S


def daemon_families(r: DaemonReading) -> list[Metric]:
    """Every family of DAEMON_METRICS but COLLECTOR_SUCCESS (the endpoint adds it)."""
    status = r.status
    model = r.model
    interval = status.gives_interval
    at = r.at_ns
    servers = r.servers

    def one(value: float | None) -> Samples:
        return [] if value is None else [((), value)]

    def per_server(value: Callable[[ServerReading], float | None]) -> Samples:
        out: Samples = []
        for server in servers:
            v = value(server)
            if v is not None:
                out.append(((server.name,), v))
        return out

    def of_latest(
        field: Callable[[Sample], float],
    ) -> Callable[[ServerReading], float | None]:
        return lambda s: None if s.latest is None else field(s.latest)

    measured = interval and model.last_sample_ns > 0
    return [
        CLOCK_STATUS.family(
            ((STATUS_LABELS[s],), 1.0 if s is status else 0.0) for s in ClockStatus
        ),
        CLOCK_OFFSET.family(one(_s(model.offset_at(at)) if interval else None)),
        CLOCK_DRIFT.family(one(model.drift_ppb * 1e-9 if interval else None)),
        CLOCK_UNCERTAINTY.family(one(_s(model.sigma_at(at)) if interval else None)),
        CLOCK_BOUND.family(one(_s(model.bound_at(at)) if interval else None)),
        CLOCK_MEASUREMENT_AGE.family(
            one(_s(max(0, at - model.last_sample_ns)) if measured else None)
        ),
        CLOCK_SAMPLES.family(one(model.samples_used)),
        CLOCK_DISRUPTIONS.family(one(r.disruptions)),
        PUBLISH_AGE.family(one(None if r.publish_age_ns is None else _s(r.publish_age_ns))),
        SERVERS_CONFIGURED.family(one(len(servers))),
        SERVERS_REACHABLE.family(one(sum(1 for s in servers if s.active and s.reachable))),
        SERVER_REACHABLE.family(per_server(lambda s: float(s.active and s.reachable))),
        SERVER_REACH.family(per_server(lambda s: s.reach)),
        SERVER_ACTIVE.family(per_server(lambda s: float(s.active))),
        SERVER_OFFSET.family(per_server(of_latest(lambda x: _s(x.offset_ns)))),
        SERVER_DELAY.family(per_server(of_latest(lambda x: _s(x.delay_ns)))),
        SERVER_STRATUM.family(per_server(of_latest(lambda x: x.stratum))),
        SERVER_LAST_SAMPLE_AGE.family(
            per_server(lambda s: None if s.last_answer_age_ns is None else _s(s.last_answer_age_ns))
        ),
        SERVER_POLL_INTERVAL.family(per_server(lambda s: _s(s.poll_interval_ns))),
        SERVER_POLLS.family(per_server(lambda s: s.polls)),
        REJECTED.family(((reason,), count) for reason, count in sorted(r.rejected.items())),
    ]


# -- the endpoint --------------------------------------------------------------------------------

Part = Callable[[], Iterable[Metric]]


class MetricsError(RuntimeError):
    """The endpoint cannot listen where it was told to (the message says where and why)."""


class _Parts(Collector):
    """The process's parts, each read at every scrape; a part that fails is left out of that
    scrape (COLLECTOR_SUCCESS says so) and never takes the scrape, let alone the process,
    down."""

    def __init__(self) -> None:
        self.parts: dict[str, Part] = {}
        #: part -> the error it failed with last (logged once, not at every scrape)
        self._failing: dict[str, str] = {}

    def collect(self) -> Iterator[Metric]:
        success = []
        for name, part in list(self.parts.items()):
            try:
                families = list(part())
            except Exception as exc:
                if self._failing.get(name) != repr(exc):
                    log.exception(
                        "metrics part %r failed; left out of scrapes until it works", name
                    )
                self._failing[name] = repr(exc)
                success.append(((name,), 0.0))
                continue
            if self._failing.pop(name, None) is not None:
                log.info("metrics part %r works again", name)
            success.append(((name,), 1.0))
            yield from families
        yield COLLECTOR_SUCCESS.family(success)


class MetricsEndpoint:
    """One process's metrics: a registry of its own (never the library's global one, so that
    two daemons in one test process do not mix), the parts added by what runs in the process,
    and the HTTP server."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._parts = _Parts()
        self.registry.register(self._parts)
        #: the port the server listens on (0 while it does not)
        self.port = 0
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def add(self, name: str, part: Part) -> None:
        if name in self._parts.parts:
            raise ValueError(f"metrics part {name!r} was added already")
        self._parts.parts[name] = part

    def render(self) -> bytes:
        """The exposition text a scrape gets."""
        return generate_latest(self.registry)

    def start(self, host: str, port: int) -> int:
        """Serve on HOST:PORT (port 0: any free one) in a thread; returns the bound port."""
        if self._server is not None:
            raise MetricsError("the metrics endpoint is already serving")
        where = format_address(host, port)
        try:
            server, thread = start_http_server(port, host, registry=self.registry)
        except OSError as exc:  # socket.gaierror too: a host name that does not resolve
            raise MetricsError(f"cannot serve metrics on {where}: {exc.strerror or exc}") from None
        thread.name = "metrics http"
        self._server, self._thread = server, thread
        self.port = int(server.server_port)
        return self.port

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self.port = 0


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
