"""The daemon's metrics on hand-made state: the catalog's conventions, the values a scrape
reports (extrapolated like a reader of the segment), what is left out without a model, a
failing part, and the HTTP endpoint's life (free port, port taken, stop)."""

from __future__ import annotations

import logging
import math
import socket
import urllib.error
from collections.abc import Callable, Iterator

import pytest
from prometheus_client.core import Metric

from chronotick.daemon.config import build_config
from chronotick.daemon.service import Daemon
from chronotick.estimation.samples import Sample
from chronotick.metrics import (
    COLLECTOR_SUCCESS,
    DAEMON_METRICS,
    Counts,
    DaemonReading,
    Histogram,
    MetricsEndpoint,
    MetricsError,
    MetricSpec,
    ServerReading,
    daemon_families,
    markdown_table,
    read_daemon,
)
from chronotick.model import NS_PER_S, ClockModel
from chronotick.status import ClockStatus
from tests.helpers.metrics import families_of, parse, promtool_check, samples_of, scrape, value
from tests.helpers.segments import model_at

T0 = 1_800_000_000 * NS_PER_S
#: units a name may end in (base units only), and words that call for one
UNITS = ("_seconds", "_ratio")
NEEDS_UNIT = ("offset", "delay", "age", "bound", "uncertainty", "interval", "drift", "wait")


def _server(name: str, latest: Sample | None, **changes: object) -> ServerReading:
    fields: dict[str, object] = {
        "name": name,
        "active": True,
        "reach": 0b1011,
        "reachable": True,
        "polls": 7,
        "poll_interval_ns": 4 * NS_PER_S,
        "latest": latest,
        "last_answer_age_ns": 1_500_000_000,
    }
    fields.update(changes)
    return ServerReading(**fields)  # type: ignore[arg-type]


def reading(model: ClockModel, at_ns: int, **changes: object) -> DaemonReading:
    sample = Sample(T0 - NS_PER_S, 2_500_000, 300_000, "a.example", stratum=2)
    fields: dict[str, object] = {
        "at_ns": at_ns,
        "model": model,
        "publish_age_ns": 50_000_000,
        "trusted_for_ns": NS_PER_S,
        "void_after_ns": 10 * NS_PER_S,
        "servers": (
            _server("a.example", sample),
            _server("127.0.0.1:9", None, reach=0, reachable=False, last_answer_age_ns=None),
            _server("denied.example", None, active=False, reach=1, polls=1),
        ),
        "rejected": {"timeout": 12, "outlier": 2},
        "disruptions": 1,
    }
    fields.update(changes)
    return DaemonReading(**fields)  # type: ignore[arg-type]


def render(r: DaemonReading) -> str:
    endpoint = MetricsEndpoint()
    endpoint.add("daemon", lambda: daemon_families(r))
    return endpoint.render().decode()


# -- the catalog ---------------------------------------------------------------------------


def test_the_catalog_follows_prometheus_naming_conventions() -> None:
    names = [spec.name for spec in DAEMON_METRICS]
    assert len(names) == len(set(names))
    for spec in DAEMON_METRICS:
        base = spec.name.removesuffix("_total")
        if any(word in base for word in NEEDS_UNIT):
            assert base.endswith(UNITS), f"{spec.name}: base unit suffix expected"
        scaled = {"ms", "ns", "us", "ppm", "ppb", "milliseconds", "microseconds", "percent"}
        assert not scaled & set(base.split("_")), f"{spec.name}: a scaled unit"
        assert spec.help.strip() and spec.help.endswith(".")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "clock_offset_seconds", "type": "gauge"}, "chronotick_"),
        ({"name": "chronotick_polls", "type": "counter"}, "_total"),
        ({"name": "chronotick_polls_total", "type": "gauge"}, "_total"),
        ({"name": "chronotick_wait_seconds", "type": "histogram"}, "buckets"),
        (
            {"name": "chronotick_wait_seconds", "type": "histogram", "buckets": (2.0, 1.0)},
            "increasing",
        ),
        ({"name": "chronotick_x", "type": "gauge", "labels": ("le",)}, "label"),
    ],
)
def test_a_spec_that_breaks_the_conventions_is_refused(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        MetricSpec(help="Something.", **kwargs)  # type: ignore[arg-type]


def test_the_collector_exports_exactly_the_catalog() -> None:
    body = render(reading(model_at(T0), T0))
    assert families_of(body) == {s.name for s in DAEMON_METRICS}


def _histogram_body() -> str:
    histogram = Histogram((0.001, 0.01))
    histogram.observe(0.002)
    spec = MetricSpec("chronotick_test_seconds", "histogram", "Test.", buckets=(0.001, 0.01))
    endpoint = MetricsEndpoint()
    endpoint.add("test", lambda: [spec.histogram(histogram.snapshot())])
    return endpoint.render().decode()


def _broken() -> list[object]:
    raise RuntimeError("state changed under the scrape")


def _with_broken_part() -> str:
    endpoint = MetricsEndpoint()
    endpoint.add("daemon", lambda: daemon_families(reading(model_at(T0), T0)))
    endpoint.add("node", _broken)  # type: ignore[arg-type]
    return endpoint.render().decode()


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(lambda: render(reading(model_at(T0), T0 + NS_PER_S)), id="synchronized"),
        pytest.param(
            lambda: render(reading(ClockModel.unknown(T0), T0, publish_age_ns=None, rejected={})),
            id="no-model",
        ),
        pytest.param(
            lambda: render(reading(model_at(T0), T0, publish_age_ns=11 * NS_PER_S)), id="stale"
        ),
        pytest.param(_with_broken_part, id="broken-part"),
        pytest.param(_histogram_body, id="histogram"),
    ],
)
def test_promtool_finds_no_problem(body: Callable[[], str]) -> None:
    promtool_check(body())


def test_the_catalog_renders_as_a_markdown_table() -> None:
    table = markdown_table(DAEMON_METRICS)
    lines = table.splitlines()
    assert lines[0].startswith("| Metric |") and len(lines) == 2 + len(DAEMON_METRICS)
    for spec in DAEMON_METRICS:
        assert f"| `{spec.name}` | {spec.type} |" in table


# -- values ----------------------------------------------------------------------------------


def test_a_synchronized_clock_is_reported_as_a_reader_would_see_it_at_the_scrape() -> None:
    model = model_at(T0)
    at = T0 + 2 * NS_PER_S  # the model is extrapolated two seconds forward
    body = render(reading(model, at))
    s = parse(body)
    status = samples_of(s, "chronotick_clock_status")
    assert status == {
        frozenset({("status", n)}): float(n == "synchronized")
        for n in ("unknown", "synchronized", "free_running", "disrupted")
    }
    assert value(s, "chronotick_clock_offset_seconds") == pytest.approx(
        model.offset_at(at) / 1e9, abs=1e-9
    )
    assert model.offset_at(at) != model.offset_ns  # the drift shows
    assert value(s, "chronotick_clock_drift_ratio") == pytest.approx(12_345.5e-9)
    assert value(s, "chronotick_clock_uncertainty_seconds") == pytest.approx(
        model.sigma_at(at) / 1e9
    )
    assert value(s, "chronotick_clock_error_bound_seconds") == pytest.approx(
        model.bound_at(at) / 1e9
    )
    assert value(s, "chronotick_clock_last_measurement_age_seconds") == pytest.approx(2.7)
    assert value(s, "chronotick_clock_samples_used") == 42
    assert value(s, "chronotick_clock_disruptions_total") == 1
    assert value(s, "chronotick_publish_age_seconds") == pytest.approx(0.05)
    assert value(s, "chronotick_servers_configured") == 3
    assert value(s, "chronotick_servers_reachable") == 1


def test_each_server_has_its_reach_and_what_its_newest_sample_says() -> None:
    s = parse(render(reading(model_at(T0), T0)))
    assert value(s, "chronotick_server_reachable", server="a.example") == 1
    assert value(s, "chronotick_server_reachable", server="127.0.0.1:9") == 0
    # refused service: not polled, so not reachable whatever its register says
    assert value(s, "chronotick_server_reachable", server="denied.example") == 0
    assert value(s, "chronotick_server_active", server="denied.example") == 0
    assert value(s, "chronotick_server_reach_register", server="a.example") == 0b1011
    assert value(s, "chronotick_server_offset_seconds", server="a.example") == 0.0025
    assert value(s, "chronotick_server_delay_seconds", server="a.example") == 0.0003
    assert value(s, "chronotick_server_stratum", server="a.example") == 2
    assert value(s, "chronotick_server_last_sample_age_seconds", server="a.example") == 1.5
    assert value(s, "chronotick_server_poll_interval_seconds", server="a.example") == 4
    assert value(s, "chronotick_server_polls_total", server="a.example") == 7
    # a server never heard from has no delay, offset, stratum or age: nothing to make up
    for name in ("delay_seconds", "offset_seconds", "stratum", "last_sample_age_seconds"):
        labels = samples_of(s, f"chronotick_server_{name}")
        assert frozenset({("server", "127.0.0.1:9")}) not in labels, name
    assert samples_of(s, "chronotick_rejected_samples_total") == {
        frozenset({("reason", "timeout")}): 12,
        frozenset({("reason", "outlier")}): 2,
    }


@pytest.mark.parametrize("status", [ClockStatus.UNKNOWN, ClockStatus.DISRUPTED])
def test_without_an_interval_the_clock_figures_are_left_out(status: ClockStatus) -> None:
    body = render(reading(ClockModel.unknown(T0, status), T0))
    s = parse(body)
    expected = "unknown" if status is ClockStatus.UNKNOWN else "disrupted"
    assert value(s, "chronotick_clock_status", status=expected) == 1
    for name in ("offset_seconds", "drift_ratio", "uncertainty_seconds", "error_bound_seconds",
                 "last_measurement_age_seconds"):  # fmt: skip
        assert not samples_of(s, f"chronotick_clock_{name}"), name
    assert not any(math.isinf(v) or math.isnan(v) for v in s.values())


def test_a_daemon_that_stopped_publishing_reads_as_a_reader_of_the_segment_is_told() -> None:
    late = parse(render(reading(model_at(T0), T0, publish_age_ns=2 * NS_PER_S)))
    assert value(late, "chronotick_clock_status", status="free_running") == 1
    assert value(late, "chronotick_clock_error_bound_seconds") > 0  # still an interval
    s = parse(render(reading(model_at(T0), T0, publish_age_ns=11 * NS_PER_S)))
    assert value(s, "chronotick_clock_status", status="unknown") == 1
    assert value(s, "chronotick_clock_status", status="synchronized") == 0
    assert value(s, "chronotick_publish_age_seconds") == 11
    assert not samples_of(s, "chronotick_clock_error_bound_seconds")


def test_a_daemon_that_never_ran_can_be_scraped() -> None:
    config = build_config({"servers": ["127.0.0.1:9", "b.example"], "shm_name": "unused"}, {})
    daemon = Daemon(config)
    r = read_daemon(daemon)
    assert r.status is ClockStatus.UNKNOWN and r.publish_age_ns is None
    assert [server.name for server in r.servers] == ["127.0.0.1:9", "b.example"]
    body = daemon.metrics.render().decode()
    s = parse(body)
    assert value(s, "chronotick_clock_status", status="unknown") == 1
    assert value(s, "chronotick_server_reach_register", server="b.example") == 0
    assert value(s, "chronotick_scrape_collector_success", collector="daemon") == 1


# -- robustness --------------------------------------------------------------------------------


def test_a_failing_part_is_left_out_and_said_so_never_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    s = parse(_with_broken_part())
    assert value(s, COLLECTOR_SUCCESS.name, collector="daemon") == 1
    assert value(s, COLLECTOR_SUCCESS.name, collector="node") == 0
    assert value(s, "chronotick_clock_status", status="synchronized") == 1
    # logged when it starts failing, not at every scrape; and when it works again
    broken = True

    def flaky() -> list[Metric]:
        if broken:
            raise RuntimeError("state changed under the scrape")
        return []

    endpoint = MetricsEndpoint()
    endpoint.add("node", flaky)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="chronotick.metrics"):
        for _ in range(3):
            endpoint.render()
        broken = False
        assert value(parse(endpoint.render().decode()), COLLECTOR_SUCCESS.name, collector="node")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "metrics part 'node' failed; left out of scrapes until it works",
        "metrics part 'node' works again",
    ]
    with pytest.raises(ValueError, match="added already"):
        endpoint.add("node", flaky)


def test_counts_and_histogram() -> None:
    counts = Counts(("a", "b"))
    counts.add("a")
    counts.add("a", 2)
    assert counts.snapshot() == {"a": 3, "b": 0}
    with pytest.raises(KeyError):
        counts.add("c")
    histogram = Histogram((0.001, 0.01))
    for observation in (0.0005, 0.001, 0.002, 5.0):
        histogram.observe(observation)
    with pytest.raises(ValueError):
        histogram.observe(math.nan)
    snap = histogram.snapshot()
    assert snap.counts == (2, 1, 1) and snap.count == 4 and snap.sum == pytest.approx(5.0035)
    spec = MetricSpec("chronotick_test_seconds", "histogram", "Test.", buckets=(0.001, 0.01))
    endpoint = MetricsEndpoint()
    endpoint.add("test", lambda: [spec.histogram(histogram.snapshot())])
    body = endpoint.render().decode()
    s = parse(body)
    assert value(s, "chronotick_test_seconds_bucket", le="0.001") == 2
    assert value(s, "chronotick_test_seconds_bucket", le="0.01") == 3
    assert value(s, "chronotick_test_seconds_bucket", le="+Inf") == 4
    assert value(s, "chronotick_test_seconds_count") == 4


# -- the endpoint ------------------------------------------------------------------------------


@pytest.fixture
def endpoint() -> Iterator[MetricsEndpoint]:
    e = MetricsEndpoint()
    e.add("daemon", lambda: daemon_families(reading(model_at(T0), T0)))
    try:
        yield e
    finally:
        e.stop()


def test_the_endpoint_serves_on_a_free_port_and_stops(endpoint: MetricsEndpoint) -> None:
    port = endpoint.start("127.0.0.1", 0)
    assert port > 0 and endpoint.port == port
    assert value(parse(scrape(port)), "chronotick_servers_configured") == 3
    endpoint.stop()
    assert endpoint.port == 0
    with pytest.raises(urllib.error.URLError):
        scrape(port, timeout_s=1)
    endpoint.stop()  # twice is fine


def test_a_port_in_use_and_a_bad_host_are_clear_errors(endpoint: MetricsEndpoint) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(MetricsError, match=f"127.0.0.1:{port}: Address already in use"):
            endpoint.start("127.0.0.1", port)
    with pytest.raises(MetricsError, match=r"cannot serve metrics on no-such-host\.invalid:0"):
        endpoint.start("no-such-host.invalid", 0)
    assert endpoint.port == 0
