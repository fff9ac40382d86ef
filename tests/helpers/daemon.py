"""A Daemon running in a thread of the test process, with a configuration that syncs in seconds."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

from chronotick.clocks import Clock
from chronotick.daemon.config import build_config
from chronotick.daemon.service import Daemon
from chronotick.daemon.stopper import Stopper
from chronotick.shm import segment_path
from tests.helpers.segments import remove_segment_files, unique_name

#: short polls and bursts, a short warm-up: a daemon synchronizes within a few seconds
FAST_SETTINGS: dict[str, object] = {
    "min_poll_s": 1.0,
    "max_poll_s": 2.0,
    "burst_size": 2,
    "burst_spacing_s": 0.05,
    "warmup_interval_s": 0.5,
}


@contextmanager
def running_daemon(
    servers: list[str],
    settings: Mapping[str, object] | None = None,
    *,
    clock: Clock | None = None,
    name_prefix: str = "test-daemon",
) -> Iterator[Daemon]:
    """A daemon polling `servers` in a thread, on a segment of its own, until the block ends.

    `settings` are configuration keys over FAST_SETTINGS (`shm_name` among them; by default a
    unique name starting with `name_prefix`). The block starts once the segment exists (a reader
    opened sooner would race the daemon thread for it and get NoDaemonError). On the way out:
    the daemon is told to stop, must stop within 10 s and remove its segment; the segment and
    its `.NAME.lock` are removed even when it did not.
    """
    config = build_config(
        {
            **FAST_SETTINGS,
            "servers": servers,
            "shm_name": unique_name(name_prefix),
            **(settings or {}),
        },
        {},
    )
    name = config.segment_name
    path = segment_path(name, config.shm_dir or None)
    daemon = Daemon(config, clock=clock)
    stop = Stopper()
    thread = threading.Thread(target=daemon.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: os.path.exists(path), 10, f"the daemon to create {path}")
        yield daemon
    finally:
        stop.set()
        thread.join(timeout=10)
        try:
            assert not thread.is_alive(), "the daemon did not stop within 10 s"
            assert not os.path.exists(path), "the daemon left its segment behind"
        finally:
            remove_segment_files(name)


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
