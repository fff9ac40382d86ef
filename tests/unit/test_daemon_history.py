"""The daemon's publish step records the history and says why the published status changed
when the peers, not the NTP model, changed it. In process: the writer is a stand-in that only
collects what would be published, so no segment and no thread is involved."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from chronotick.daemon.config import DaemonConfig
from chronotick.daemon.service import Daemon
from chronotick.estimation.fusion import ExternalEstimate
from chronotick.model import ClockModel
from chronotick.status import ClockStatus


class Collecting:
    """What `SegmentWriter.publish` would be given."""

    def __init__(self) -> None:
        self.models: list[ClockModel] = []

    def publish(self, model: ClockModel, **_: Any) -> None:
        self.models.append(model)


def test_peers_changing_the_published_status_are_logged_and_kept_with_the_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="chronotick.daemon")
    daemon = Daemon(DaemonConfig(servers=("127.0.0.1:9",)))
    writer = Collecting()
    daemon.writer = writer  # type: ignore[assignment]
    peers_agree = False

    def peers(at_ns: int, _own: ClockModel) -> ExternalEstimate | None:
        """Two synchronized peers while `peers_agree`, else no consensus."""
        if not peers_agree:
            return None
        return ExternalEstimate(at_ns, 25_000, 40_000.0, 300_000, sources=2, synchronized=True)

    daemon.external = peers
    daemon._publish()  # NTP UNKNOWN, no peers: nothing to say
    peers_agree = True
    daemon._publish()
    peers_agree = False
    daemon._publish()

    assert [m.status for m in writer.models] == [
        ClockStatus.UNKNOWN, ClockStatus.SYNCHRONIZED, ClockStatus.UNKNOWN
    ]  # fmt: skip
    lines = [r.getMessage() for r in caplog.records if "published status" in r.getMessage()]
    assert lines == [
        "published status UNKNOWN -> SYNCHRONIZED: the NTP estimate is UNKNOWN, the consensus "
        "of 2 peers is synchronized",
        "published status SYNCHRONIZED -> UNKNOWN: no peer consensus; the NTP estimate is UNKNOWN",
    ]
    snapshot = daemon.history.snapshot(time.monotonic_ns())
    assert [(c.old, c.new) for c in snapshot.changes] == [
        (ClockStatus.UNKNOWN, ClockStatus.SYNCHRONIZED),
        (ClockStatus.SYNCHRONIZED, ClockStatus.UNKNOWN),
    ]
    assert snapshot.changes[0].reason in lines[0]
    # a point at each status change, each with what the peers said then
    assert [p.status for p in snapshot.points] == [m.status for m in writer.models]
    assert [p.consensus_offset_ns for p in snapshot.points] == [None, 25_000, None]
    assert snapshot.points[1].offset_ns == writer.models[1].offset_ns
