"""Shared test helpers and fixtures.

Tests that need system packages (chronyd, libfaketime, ntpdig) or root skip with the reason on a
developer's machine that lacks them; in CI (CHRONOTICK_REQUIRE_SYSTEM_TESTS=1, set by .ci/run)
a missing prerequisite fails the test instead, so a skip can never be counted as a pass there.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
from collections.abc import Iterator

import pytest

from chronotick.model import NS_PER_S
from chronotick.shm import SegmentWriter
from tests.helpers.segments import remove_segment_files, unique_name

REQUIRE_SYSTEM = os.environ.get("CHRONOTICK_REQUIRE_SYSTEM_TESTS") == "1"


def unavailable(reason: str) -> None:
    """Skip (developer machine) or fail (CI) because a prerequisite is missing."""
    if REQUIRE_SYSTEM:
        pytest.fail(f"prerequisite missing in CI: {reason}")
    pytest.skip(reason)


def require_binary(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        unavailable(f"{name} is not installed (apt-get install; `make test` does it as root)")
    assert path is not None
    return path


def libfaketime_path() -> str:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    if not found:
        unavailable("libfaketime is not installed (apt-get install faketime)")
    return found[0]


def require_root() -> None:
    if os.geteuid() != 0:
        unavailable("needs root")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def seg_name() -> Iterator[str]:
    """A segment name of this test's own; whatever it left under /dev/shm is removed after."""
    name = unique_name()
    try:
        yield name
    finally:
        remove_segment_files(name)


@pytest.fixture
def writer(seg_name: str) -> Iterator[SegmentWriter]:
    """A writer of `seg_name` (trusted for 10 s, void after 30 s), closed after the test."""
    w = SegmentWriter(seg_name, trusted_for_ns=10 * NS_PER_S, void_after_ns=30 * NS_PER_S)
    try:
        yield w
    finally:
        w.close()
