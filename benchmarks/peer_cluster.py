"""Discovery time and exchange round trip for clusters of N nodes in network namespaces.

    sudo .venv/bin/python -m benchmarks.peer_cluster [--sizes 2 4 8 16] [--json]

For each N: a bridge, N namespaces each running `chronotick-node start` under its own skewed
clock (libfaketime), and chronyd as the NTP reference. It reports how long the nodes took to
serve gRPC after their processes started, how long after that until every node listed every
other one (zeroconf discovery plus one successful exchange each), and the round trips of the
exchanges in the peer tables. Ratios are to N = 2, measured in the same run (this machine is
shared and noisy: read the ratios, not the absolute times).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time

from tests.conftest import libfaketime_path
from tests.multihost.netns import Cluster, cleanup_stale
from tests.multihost.nodes import (
    close_channels,
    exchange_rtts_ns,
    start_nodes,
    wait_full_mesh,
    wait_serving,
)


def skews(n: int) -> list[tuple[float, float]]:
    """Offsets spread over ±200 ms and rates over ±100 ppm."""
    out = []
    for i in range(n):
        frac = (i / max(1, n - 1)) * 2 - 1
        out.append((0.2 * frac, 1.0 + 1e-4 * (-frac)))
    return out


def nearest_rank(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def measure(n: int) -> dict[str, float | int | None]:
    with Cluster(n, reference=True, libfaketime=libfaketime_path()) as cluster:
        spawned = time.monotonic()
        nodes = start_nodes(cluster, skews(n), extra=["--peer-poll", "1", "--peer-expiry", "5"])
        serving = wait_serving(nodes, timeout_s=60.0)
        mesh_s = wait_full_mesh(nodes, timeout_s=60.0)
        time.sleep(3)
        rtts = [r for node in nodes for r in exchange_rtts_ns(node)]
        close_channels()
    return {
        "nodes": n,
        "serving_after_spawn_s": round(serving - spawned, 3),
        "full_mesh_after_spawn_s": None if mesh_s is None else round(serving - spawned + mesh_s, 3),
        "full_mesh_after_serving_s": None if mesh_s is None else round(mesh_s, 3),
        "exchanges": len(rtts),
        "rtt_median_ms": round(statistics.median(rtts) / 1e6, 3) if rtts else None,
        "rtt_p95_ms": round(nearest_rank(rtts, 0.95) / 1e6, 3) if rtts else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 4, 8, 16])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    cleanup_stale()
    rows = [measure(n) for n in args.sizes]
    base = rows[0]
    for row in rows:
        for key in ("full_mesh_after_spawn_s", "rtt_median_ms"):
            b, v = base[key], row[key]
            row[f"{key}_ratio"] = round(v / b, 2) if isinstance(b, float) and b and v else None
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    print(
        f"{'N':>3} {'serving s':>10} {'mesh after serving s':>21} {'mesh after spawn s':>19}"
        f" {'× N=2':>6} {'exchanges':>9} {'RTT med ms':>10} {'× N=2':>6} {'RTT p95 ms':>10}"
    )
    for r in rows:
        print(
            f"{r['nodes']:>3} {r['serving_after_spawn_s']:>10}"
            f" {r['full_mesh_after_serving_s']!s:>21} {r['full_mesh_after_spawn_s']!s:>19}"
            f" {r['full_mesh_after_spawn_s_ratio']!s:>6} {r['exchanges']:>9}"
            f" {r['rtt_median_ms']!s:>10} {r['rtt_median_ms_ratio']!s:>6} {r['rtt_p95_ms']!s:>10}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
