"""Where forecasters train: in the caller (simulator, tests) or on a worker thread (daemon).

The daemon publishes at its own rate whatever a model is doing: training runs on one worker
thread, and its result waits until the publishing thread picks it up (`poll`), so the
predictor's fits are only ever swapped on that thread. Each kind of job (`key`) has one
slot: a job still waiting when the next of its kind is submitted is replaced (it would only
be retrained over), while jobs of other kinds keep their place. A slow or failing model
therefore leaves the regression in charge; it never stalls the shared memory.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class InlineTraining(Generic[T]):
    """Trains at once, in the caller: deterministic."""

    def submit(self, job: Callable[[], T], done: Callable[[T], None], key: str = "") -> None:
        done(job())

    def poll(self) -> None:
        pass

    def close(self) -> None:
        pass


class ThreadTraining(Generic[T]):
    """Trains on one worker thread; `poll` (on the publishing thread) applies results."""

    def __init__(self, name: str = "chronotick-training") -> None:
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        #: per kind of job, the one waiting to run (insertion order: the oldest kind first)
        self._pending: dict[str, tuple[Callable[[], T], Callable[[T], None]]] = {}
        self._finished: list[tuple[T, Callable[[T], None]]] = []
        self._closed = False
        self._last_error = ""
        #: seconds each finished job took (the newest 256), for cost reports
        self.durations_s: list[float] = []
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], T], done: Callable[[T], None], key: str = "") -> None:
        with self._wake:
            if self._closed:
                return
            self._pending.pop(key, None)  # replaces a job of its kind that has not started
            self._pending[key] = (job, done)
            self._wake.notify()

    def poll(self) -> None:
        with self._lock:
            finished, self._finished = self._finished, []
        for result, done in finished:
            try:
                done(result)
            except Exception as exc:  # a result that cannot be applied is dropped, not the rest
                if str(exc) != self._last_error:
                    log.warning("a forecaster's result could not be applied (%s); dropped", exc)
                self._last_error = str(exc)

    def close(self, timeout_s: float = 5.0) -> None:
        with self._wake:
            self._closed = True
            self._pending.clear()
            self._wake.notify()
        self._thread.join(timeout_s)

    def _work(self) -> None:
        while True:
            with self._wake:
                while not self._pending and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                key = next(iter(self._pending))
                job, done = self._pending.pop(key)
            started = time.perf_counter()
            try:
                result = job()
            except Exception as exc:  # a failing model costs its forecast, not the daemon
                if str(exc) != self._last_error:
                    log.warning("forecaster training failed (%s); the regression goes on", exc)
                self._last_error = str(exc)
                continue
            with self._lock:
                self.durations_s = [*self.durations_s[-255:], time.perf_counter() - started]
                self._finished.append((result, done))
