"""`make test`: the whole suite, with the ten-minute holdover overlapping the rest.

The holdover test (tests/multihost/test_nodes.py) spends ten minutes mostly asleep while its
four nodes free-run, which alone would take a third of CI's 30-minute budget. It runs in a
second pytest process beside the unit, simulator and integration tests; the other multi-host
tests, whose sync-point spreads need a quiet machine, come last in the main process, after the
holdover has (usually) finished. Both outputs are printed, and the exit status is the worse of
the two, so nothing is hidden: the holdover's log is shown whole once it ends.

Arguments are passed to the main pytest process (e.g. `-x`); `--no-holdover-overlap` runs
everything in one process, in the usual order.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time

HOLDOVER = (
    "tests/multihost/test_nodes.py::test_holdover_by_consensus_keeps_nodes_together_and_bounds_true"
)
#: the order of the main process: the quiet-machine multi-host tests last
ORDER = ["tests/unit", "tests/sim", "tests/integration", "tests/multihost"]


def main(argv: list[str]) -> int:
    pytest = [sys.executable, "-m", "pytest"]
    if "--no-holdover-overlap" in argv:
        argv = [a for a in argv if a != "--no-holdover-overlap"]
        return subprocess.call([*pytest, *argv])
    with tempfile.NamedTemporaryFile("w+", prefix="holdover-", suffix=".log") as log:
        started = time.monotonic()
        holdover = subprocess.Popen(
            [*pytest, "-p", "no:cacheprovider", HOLDOVER], stdout=log, stderr=subprocess.STDOUT
        )
        try:
            main_status = subprocess.call([*pytest, *ORDER, "--deselect", HOLDOVER, *argv])
        except KeyboardInterrupt:
            holdover.terminate()  # its fixtures tear the namespaces down
            holdover.wait()
            raise
        holdover_status = holdover.wait()
        log.seek(0)
        print(f"\n===== holdover test (separate process, {time.monotonic() - started:.0f} s) =====")
        print(log.read(), end="")
    if holdover_status != 0:
        print(f"holdover test failed (exit {holdover_status})")
    return max(main_status, holdover_status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
