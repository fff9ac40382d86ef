"""The segment in a directory of the operator's choice (`shm_dir`, $CHRONOTICK_SHM_DIR).

Containers share a volume between the node and its applications; mounting it over an
application's /dev/shm would take that application's own shared memory away, so the segment
must be able to live anywhere, and readers must find it there.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from chronotick.client import ChronoTickClient
from chronotick.daemon.config import ConfigError, build_config
from chronotick.model import NS_PER_S, ClockModel
from chronotick.shm import NoDaemonError, SegmentReader, SegmentWriter, segment_path
from chronotick.status import ClockStatus

S = NS_PER_S


def _model(now_ns: int) -> ClockModel:
    return ClockModel(
        as_of_ns=now_ns,
        offset_ns=1_234_567,
        drift_ppb=10.0,
        sigma_ns=5_000.0,
        sigma_cov_ns2_per_s=0.0,
        sigma_drift_ppb=0.1,
        wander_ns2_per_s=0.0,
        bound_ns=50_000,
        bound_rate_ppb=5_000.0,
        status=ClockStatus.SYNCHRONIZED,
        last_sample_ns=now_ns,
        samples_used=8,
        source="test",
    )


def test_writer_reader_and_client_meet_in_the_given_directory(
    tmp_path: Path, seg_name: str
) -> None:
    writer = SegmentWriter(seg_name, directory=str(tmp_path))
    try:
        assert writer.path == str(tmp_path / seg_name)
        assert os.path.exists(tmp_path / seg_name)
        assert not os.path.exists(segment_path(seg_name))  # nothing in /dev/shm
        writer.publish(_model(time.time_ns()), S, 1, 1)
        reader = SegmentReader(seg_name, directory=str(tmp_path))
        assert reader.snapshot().model.offset_ns == 1_234_567
        reader.close()
        with ChronoTickClient(seg_name, shm_dir=str(tmp_path)) as client:
            info = client.get_time()
            # 1.234567 ms published; 10 ppb of drift adds nanoseconds within the test
            assert info.offset_correction == pytest.approx(1.234567e-3, abs=1e-7)
            assert info.status is ClockStatus.SYNCHRONIZED
        with pytest.raises(NoDaemonError, match=seg_name):
            ChronoTickClient(seg_name).get_time()  # the default directory has no such segment
    finally:
        writer.close()
    assert not os.path.exists(tmp_path / seg_name)
    assert not os.path.exists(tmp_path / f".{seg_name}.lock")


def test_the_environment_names_the_directory_for_readers(
    tmp_path: Path, seg_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHRONOTICK_SHM_DIR", str(tmp_path))
    writer = SegmentWriter(seg_name)
    try:
        assert writer.path == str(tmp_path / seg_name)
        writer.publish(_model(time.time_ns()), S, 1, 1)
        with ChronoTickClient(seg_name) as client:
            assert client.get_daemon_info()["segment_path"] == str(tmp_path / seg_name)
    finally:
        writer.close()


def test_a_missing_or_relative_directory_is_a_clear_error(tmp_path: Path, seg_name: str) -> None:
    with pytest.raises(FileNotFoundError, match="no directory"):
        SegmentWriter(seg_name, directory=str(tmp_path / "absent"))
    with pytest.raises(ValueError, match="absolute"):
        SegmentReader(seg_name, directory="relative/dir")
    with pytest.raises(ConfigError, match="shm_dir"):
        build_config({}, {"shm_dir": "run/chronotick"})
