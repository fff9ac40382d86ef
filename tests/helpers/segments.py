"""Shared-memory segments for tests: unique names, cleanup under /dev/shm, hand-made models.

Every test uses its own segment name (`unique_name`) and removes what it created under /dev/shm
(`remove_segment_files`: the segment, the writer's `.NAME.lock` and any `.NAME.PID.tmp` left
behind), even when it fails. The `seg_name` and `writer` fixtures of tests/conftest.py do both.
"""

from __future__ import annotations

import contextlib
import glob
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

from chronotick.model import NS_PER_S, ClockModel
from chronotick.shm import SHM_DIR, SegmentWriter
from chronotick.status import ClockStatus


def unique_name(prefix: str = "test") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def segment_files(name: str) -> list[str]:
    """Everything a writer of `name` may leave under /dev/shm."""
    escaped = glob.escape(name)
    return [
        os.path.join(SHM_DIR, name),
        os.path.join(SHM_DIR, f".{name}.lock"),
        *glob.glob(os.path.join(SHM_DIR, f".{escaped}.*.tmp")),
    ]


def remove_segment_files(name: str) -> None:
    for path in segment_files(name):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


# --------------------------------------------------------------------------------------------
# publishing hand-made models


def model_at(as_of_ns: int, **changes: Any) -> ClockModel:
    """A SYNCHRONIZED model whose every term is large enough to show in a reading."""
    fields: dict[str, Any] = {
        "offset_ns": 30_000_123,
        "drift_ppb": 12_345.5,
        "sigma_ns": 50_000.25,
        "sigma_cov_ns2_per_s": 1.5e6,
        "sigma_drift_ppb": 5_000.0,
        "wander_ns2_per_s": 1e8,
        "bound_ns": 150_007,
        "bound_rate_ppb": 20_000.25,
        "status": ClockStatus.SYNCHRONIZED,
        "last_sample_ns": as_of_ns - 700_000_000,
        "samples_used": 42,
        "source": "ntp-a.example:123",
    }
    fields.update(changes)
    return ClockModel(as_of_ns=as_of_ns, **fields)


def publish(
    writer: SegmentWriter,
    age_ns: int = 0,
    step_ns: int = 0,
    now_ns: Callable[[], int] = time.time_ns,
    flags: int = 0,
    **changes: Any,
) -> ClockModel:
    """Publish a model computed `age_ns` ago (both clocks moved back alike).

    `step_ns` moves the realtime stamp alone, as if CLOCK_REALTIME had stepped by -step_ns
    since the model was computed.
    """
    real, mono = now_ns(), time.monotonic_ns()
    model = model_at(real - age_ns + step_ns, **changes)
    writer.publish(model, 16 * NS_PER_S, 4, 3, monotonic_ns=mono - age_ns, flags=flags)
    return model


def expected_interval(model: ClockModel, t: int) -> tuple[int, int]:
    corrected, bound = model.corrected_ns(t), model.bound_at(t)
    return corrected - bound, corrected + bound
