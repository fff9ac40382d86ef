"""One writer per segment, and no lock files left behind by writers that closed."""

from __future__ import annotations

import os

import pytest

from chronotick.shm import SegmentWriter


def test_a_clean_close_removes_the_lock_file(seg_name: str) -> None:
    writer = SegmentWriter(seg_name)
    assert os.path.exists(writer.lock_path)
    with pytest.raises(RuntimeError, match="another chronotick daemon"):
        SegmentWriter(seg_name)
    writer.close()
    assert not os.path.exists(writer.lock_path)
    again = SegmentWriter(seg_name)  # the name is free again
    again.close()
    assert not os.path.exists(again.lock_path)


def test_a_lock_file_left_by_a_crash_is_reused(seg_name: str) -> None:
    crashed = SegmentWriter(seg_name)
    os.close(crashed._lock_fd)  # the process died: the kernel dropped its lock, the file stays
    assert os.path.exists(crashed.lock_path)
    successor = SegmentWriter(seg_name)
    with pytest.raises(RuntimeError, match="another chronotick daemon"):
        SegmentWriter(seg_name)
    successor.close()
    crashed._mm.close()
    assert not os.path.exists(successor.lock_path)
