"""The chrony head-to-head benchmark, quick mode: both estimators track the drifting reference.

benchmarks/chrony_head_to_head.py --quick runs the daemon and `chronyd -x` against one embedded
NTP server whose clock is 50 ms ahead at +20 ppm, then -30 ppm from the middle of the two
minutes, and scores both estimates of (reference - system) against the truth. This checks that
both track it (which also checks how chronyd's estimate is read: a wrong sign or a missed
frequency term would be off by milliseconds), that the ratio is printed, and that nothing is
left behind: no process of its group, no shared-memory segment or lock file.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_binary

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "chrony_head_to_head.py"
SHM_DIR = Path("/dev/shm")
RMS_LIMIT_NS = 1_000_000  # 1 ms: loopback, a 4 s poll, a 50 ppm rate change in the middle
TIMEOUT_S = 170  # the quick run takes 120 s


def leftovers() -> set[str]:
    return {p.name for p in SHM_DIR.iterdir() if p.name.lstrip(".").startswith("h2h-")}


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_quick_head_to_head(tmp_path: Path) -> None:
    require_binary("chronyd")
    require_binary("chronyc")
    before = leftovers()
    out_json = tmp_path / "h2h.json"
    # Its own session, so that on a timeout the whole group (chronyd, the daemon) goes.
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--quick", "--json", str(out_json)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)  # the script cleans up on SIGTERM
        try:
            stdout, stderr = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
        pytest.fail(f"the quick run took over {TIMEOUT_S} s:\n{stdout}\n{stderr}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    print(stdout)
    assert proc.returncode == 0, f"{stdout}\n{stderr}"

    ratio = re.search(
        r"^ratio chronotick/chronyd, whole run: RMS (\d+\.\d+), mean \|error\| (\d+\.\d+)$",
        stdout,
        re.MULTILINE,
    )
    assert ratio, stdout
    result = json.loads(out_json.read_text())
    for name in ("chronotick", "chronyd"):
        whole = result["stats"][name]["whole run"]
        # 90 samples after the 30 s warm-up: most of them must be there
        assert whole["n"] >= 45, (name, whole, result["not_ready"][name])
        assert whole["rms_ns"] < RMS_LIMIT_NS, (name, whole)
        assert whole["max_abs_ns"] < 3 * RMS_LIMIT_NS, (name, whole)
        # both found the rate after the change (-30 ppm), and are not just holding an offset
        assert abs(result["final_rate_ppm"][name] - -30.0) < 5.0, result["final_rate_ppm"]
    assert float(ratio.group(1)) == pytest.approx(result["ratios"]["whole run"]["rms"], abs=0.01)

    assert not group_alive(proc.pid), "a process of the benchmark outlived it"
    assert leftovers() <= before, f"left in /dev/shm: {leftovers() - before}"
