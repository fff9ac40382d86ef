"""A stop flag whose wait is a `select` on a pipe.

threading.Event.wait(timeout) blocks in sem_clockwait on CLOCK_MONOTONIC, which libfaketime
does not translate: under a faked clock it never times out and the daemon would freeze. select()
timeouts are relative and work everywhere, and writing one byte to a pipe is safe from a signal
handler, so this is both the loop's timer and its way to be woken for shutdown.
"""

from __future__ import annotations

import logging
import os
import select
import signal
from types import FrameType


class Stopper:
    def __init__(self) -> None:
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._write_fd, False)
        self._set = False

    def set(self) -> None:
        self._set = True
        try:
            os.write(self._write_fd, b"x")
        except (BlockingIOError, OSError):
            pass  # the pipe already holds a byte, or was closed: the flag is enough

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout_s: float) -> bool:
        """Sleep up to `timeout_s`, returning early (True) once stopped."""
        if self._set:
            return True
        try:
            select.select([self._read_fd], [], [], max(0.0, timeout_s))
        except (OSError, ValueError):
            pass
        return self._set

    def close(self) -> None:
        for fd in (self._read_fd, self._write_fd):
            try:
                os.close(fd)
            except OSError:
                pass


def stop_on_signals(stop: Stopper, logger: logging.Logger) -> None:
    """SIGTERM and SIGINT set `stop` (with a log line), for a clean shutdown of a service."""

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info("%s received: shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
