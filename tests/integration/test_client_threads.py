"""One client shared by threads while its daemon restarts: every failure is a clear ShmError."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

from chronotick.client import ChronoTickClient
from chronotick.model import ClockModel
from chronotick.shm import SegmentWriter, ShmError
from chronotick.status import ClockStatus

S = 1_000_000_000


def synced_model() -> ClockModel:
    return ClockModel(time.time_ns(), 1_000, 0.0, 5_000.0, 0.0, 1.0, 0.0, 50_000, 1_000.0,
                      ClockStatus.SYNCHRONIZED, time.time_ns(), 8, "a")  # fmt: skip


def test_threads_reading_across_daemon_restarts() -> None:
    name = f"test-threads-{uuid.uuid4().hex[:8]}"
    client = ChronoTickClient(name)
    stop = threading.Event()
    unexpected: list[BaseException] = []
    reads = [0]

    def reader() -> None:
        while not stop.is_set():
            try:
                client.now()
                client.get_time()
                client.is_daemon_ready()
                reads[0] += 1
            except ShmError:
                pass
            except BaseException as exc:  # anything else is a bug
                unexpected.append(exc)
                return

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for _ in range(40):  # forty daemon restarts, each with a few publishes
            writer = SegmentWriter(name, trusted_for_ns=10 * S, void_after_ns=30 * S)
            for _ in range(5):
                writer.publish(synced_model(), S, 1, 1)
                time.sleep(0.002)
            writer.close()
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        Path(f"/dev/shm/.{name}.lock").unlink(missing_ok=True)
    assert not unexpected, unexpected[:3]
    assert reads[0] > 100
