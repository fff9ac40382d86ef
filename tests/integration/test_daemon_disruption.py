"""A clock step while the daemon runs: detected, the model restarts, and it recovers."""

from __future__ import annotations

import logging
import time

import pytest

from chronotick.status import ClockStatus
from tests.helpers.daemon import running_daemon
from tests.helpers.fake_ntp import FakeNtpServer, honest_reply

pytestmark = pytest.mark.integration


class SteppableClock:
    """The system clock plus a step that the test applies while the daemon runs."""

    def __init__(self) -> None:
        self.step_ns = 0

    def now_ns(self) -> int:
        return time.time_ns() + self.step_ns


def test_step_is_detected_and_the_model_restarts(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="chronotick.daemon")
    clock = SteppableClock()
    with (
        FakeNtpServer(lambda r: [honest_reply(r)]) as server,
        running_daemon([server.address], clock=clock, name_prefix="test-step") as daemon,
    ):
        statuses: list[ClockStatus] = []

        def wait_status(status: ClockStatus, timeout_s: float) -> None:
            deadline = time.monotonic() + timeout_s
            while daemon.model.status is not status:
                assert time.monotonic() < deadline, f"never {status}: {statuses}"
                statuses.append(daemon.model.status)
                time.sleep(0.02)

        wait_status(ClockStatus.SYNCHRONIZED, 20)
        assert abs(daemon.model.offset_ns) < 1_000_000
        clock.step_ns = -2_000_000_000  # someone set the clock back by 2 s
        wait_status(ClockStatus.DISRUPTED, 5)
        wait_status(ClockStatus.SYNCHRONIZED, 20)
        # The new model measures the stepped clock, from samples taken after the step only.
        assert abs(daemon.model.offset_ns - 2_000_000_000) < 1_000_000, daemon.model
    assert "clock step of -1999.9" in caplog.text or "clock step of -2000.0" in caplog.text
    assert "SYNCHRONIZED -> DISRUPTED" in caplog.text
