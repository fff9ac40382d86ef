"""`--predictor fused` in a running daemon: sensors read, forecasters trained on their thread,
the segment published all along, the thread gone at shutdown."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from chronotick.client import ChronoTickClient
from chronotick.daemon.service import Daemon
from chronotick.estimation.forecast.foundation import FracastModel
from chronotick.estimation.forecast.fused import FusedPredictor
from chronotick.estimation.forecast.long_horizon import shared_model
from chronotick.status import ClockStatus
from tests.helpers.daemon import running_daemon, wait_for
from tests.helpers.fake_ntp import FakeNtpServer, honest_reply

pytestmark = pytest.mark.integration

#: at 20 Hz, ten publications missed
STALE_NS = 500_000_000


def _segment_age_ns(daemon: Daemon) -> int:
    published = daemon.published_monotonic_ns
    assert published is not None
    return time.monotonic_ns() - published


def test_a_fused_daemon_reads_its_sensor_trains_off_the_loop_and_keeps_publishing(
    tmp_path: Path,
) -> None:
    # a model of its own, not loaded by an earlier test of this process: the daemon loads it
    shared_model.cache_clear()
    sensor = tmp_path / "temp"
    sensor.write_text("41500\n")
    with (
        FakeNtpServer(lambda r: [honest_reply(r)]) as server,
        running_daemon(
            [server.address],
            {"predictor": "fused", "temperature_sensor": str(sensor), "publish_rate_hz": 20.0},
            name_prefix="test-fused",
        ) as daemon,
    ):
        predictor = daemon.engine.predictor
        assert isinstance(predictor, FusedPredictor)
        assert daemon.training is not None
        zero_shot = predictor.zero_shot
        assert isinstance(zero_shot, FracastModel)
        assert not zero_shot.loaded  # checked at start, loaded by its first forecast
        wait_for(lambda: daemon.model.status is ClockStatus.SYNCHRONIZED, 20, "sync")
        # the sensor is read every few seconds, stamped on the base clock
        wait_for(lambda: predictor.covariates.available()[0], 15, "a temperature reading")
        _starts, (temperature, _load) = predictor.covariates.grid()
        assert temperature[-1] == pytest.approx(41.5)
        # training jobs run on the worker thread; the segment keeps its publishing rate
        wait_for(lambda: len(daemon.training.durations_s) >= 1, 60, "a finished training job")
        with ChronoTickClient(daemon.config.segment_name) as client:
            for _ in range(5):
                time.sleep(0.3)
                assert client.get_time().status is ClockStatus.SYNCHRONIZED
                # fresh: the 20 Hz publishing did not wait for training jobs
                assert _segment_age_ns(daemon) < STALE_NS
            # the zero-shot model's load and first forecast, on the same thread: the segment
            # stays fresh all along
            stalest_ns = 0
            deadline = time.monotonic() + 90
            while predictor.long_horizon is None:
                assert time.monotonic() < deadline, "no zero-shot forecast within 90 s"
                time.sleep(0.05)
                stalest_ns = max(stalest_ns, _segment_age_ns(daemon))
            assert zero_shot.loaded
            print(f"\nzero-shot model loaded; the segment at most {stalest_ns / 1e6:.0f} ms old")
            assert stalest_ns < STALE_NS, f"the segment went {stalest_ns / 1e6:.0f} ms stale"
            assert client.get_time().status is ClockStatus.SYNCHRONIZED
        training = daemon.training
    # the daemon stopped: its training thread with it
    assert not training._thread.is_alive()
