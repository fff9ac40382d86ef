"""Nodes in network namespaces under skewed clocks: discovery, offsets, expiry, holdover.

Each host runs `chronotick-node start` under libfaketime with its own offset (up to ±200 ms)
and rate (up to ±100 ppm); chronyd -x in the reference namespace is the NTP server. The test
process sits on the bridge and on the true clock, so it can ask every node over gRPC and knows
what the truth was (tests/multihost/netns.py records each faked clock against a raw syscall).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from tests.multihost.conftest import ClusterFactory
from tests.multihost.nodes import (
    close_channels,
    median_abs,
    offset_errors_ns,
    peer_ids,
    start_nodes,
    time_errors,
    wait_full_mesh,
    wait_serving,
    wait_status,
)

pytestmark = [pytest.mark.multihost, pytest.mark.slow]

#: offsets (s) and rates of the eight hosts: ±200 ms and ±100 ppm at the extremes
SKEWS = [
    (0.200, 1.0001),
    (-0.200, 0.9999),
    (0.050, 1.00005),
    (-0.120, 0.99995),
    (0.0, 1.0),
    (0.180, 0.99992),
    (-0.075, 1.00008),
    (0.010, 1.00002),
]
PEER_EXPIRY_S = 5.0
PEER_POLL_S = 2.0
#: the holdover lasts 10 minutes in CI; a developer may shorten it to look at the behaviour
HOLDOVER_S = float(os.environ.get("CHRONOTICK_HOLDOVER_S", "600"))


@pytest.fixture(autouse=True)
def _channels() -> Iterator[None]:
    yield
    close_channels()


def test_eight_nodes_find_each_other_measure_offsets_and_expire_the_dead(
    cluster_factory: ClusterFactory,
) -> None:
    cluster = cluster_factory(8, reference=True, faketime=True)
    nodes = start_nodes(
        cluster,
        SKEWS,
        extra=["--peer-poll", str(PEER_POLL_S), "--peer-expiry", str(PEER_EXPIRY_S)],
    )
    wait_serving(nodes)
    mesh_s = wait_full_mesh(nodes, timeout_s=5.0)
    tables = {n.node_id: sorted(peer_ids(n)) for n in nodes}
    assert mesh_s is not None, f"not every node lists the 7 others within 5 s: {tables}"

    # offsets: the median error of each (node, peer) pair over several table reads, once the
    # nodes know their drifts and the peer tables' clock filter works (a few bursts in)
    wait_status(nodes, "SYNCHRONIZED", timeout_s=90.0)
    time.sleep(4 * PEER_POLL_S)
    errors: dict[tuple[str, str], list[int]] = {}
    for _ in range(6):
        for pair, values in offset_errors_ns(nodes).items():
            errors.setdefault(pair, []).extend(values)
        time.sleep(PEER_POLL_S)
    assert len(errors) == 8 * 7
    medians = {pair: median_abs(v) for pair, v in errors.items()}
    worst = max(medians, key=lambda p: medians[p])
    assert medians[worst] < 1_000_000, f"{worst}: median |error| {medians[worst] / 1e6:.3f} ms"
    signed = sorted(e for v in errors.values() for e in v)
    print(f"signed median {signed[len(signed) // 2] / 1e3:.0f} µs")
    all_errors = sorted(abs(e) for v in errors.values() for e in v)
    for pair in sorted(medians, key=lambda p: -medians[p])[:6]:
        print(pair, f"{medians[pair] / 1e3:.0f} µs", [round(e / 1e3) for e in errors[pair]])
    print(
        f"full mesh {mesh_s:.2f} s after serving; offset |error| over {len(all_errors)} rows: "
        f"median {all_errors[len(all_errors) // 2] / 1e3:.0f} µs, worst pair median "
        f"{medians[worst] / 1e3:.0f} µs, max {all_errors[-1] / 1e3:.0f} µs"
    )

    # a node killed without a goodbye leaves every table within the stated expiry
    victim = nodes[3]
    os.killpg(victim.proc.pid, signal.SIGKILL)
    killed = time.monotonic()
    survivors = [n for n in nodes if n is not victim]
    limit_s = PEER_EXPIRY_S + PEER_POLL_S + 1.0
    while any(victim.node_id in peer_ids(n) for n in survivors):
        assert time.monotonic() - killed < limit_s, (
            f"{victim.node_id} still listed {limit_s} s after SIGKILL: "
            f"{[n.node_id for n in survivors if victim.node_id in peer_ids(n)]}"
        )
        time.sleep(0.1)
    print(f"SIGKILLed node gone from every table after {time.monotonic() - killed:.1f} s")
    # ...and the others keep serving each other
    assert all(peer_ids(n) == {m.node_id for m in survivors} - {n.node_id} for n in survivors)


def test_holdover_by_consensus_keeps_nodes_together_and_bounds_true(
    cluster_factory: ClusterFactory,
) -> None:
    """Three nodes on NTP and one with no reachable server: the fourth lives on the peers.

    Then the reference goes away for HOLDOVER_S: every node free-runs, the nodes stay within
    2 ms of each other, and every bound still contains the true time.
    """
    cluster = cluster_factory(4, reference=True, faketime=True)
    unreachable = cluster.subnet.rsplit(".", 1)[0] + ".253"  # nobody there
    nodes = start_nodes(
        cluster,
        [SKEWS[0], SKEWS[1], SKEWS[5], SKEWS[6]],
        extra=["--peer-poll", "2", "--peer-expiry", "10"],
        per_node_servers={3: [unreachable]},
    )
    wait_serving(nodes)
    wait_status(nodes, "SYNCHRONIZED", timeout_s=90.0)
    time.sleep(20)  # a few polls past the warm-up
    before = time_errors(nodes)
    assert before[3]["source"] == "peers", before[3]
    assert all(r["contains_truth"] for r in before), before

    assert cluster.reference is not None
    cluster.reference.stop()
    stopped = time.monotonic()
    worst_spread = 0
    readings = 0
    while time.monotonic() - stopped < HOLDOVER_S:
        rows = time_errors(nodes)
        readings += 1
        for row in rows:
            assert row["contains_truth"], (time.monotonic() - stopped, row)
        errors = [r["error_ns"] for r in rows]
        assert None not in errors, rows
        spread = max(errors) - min(errors)
        worst_spread = max(worst_spread, spread)
        assert spread < 2_000_000, (time.monotonic() - stopped, rows)
        time.sleep(10)
    last = time_errors(nodes)
    assert all(r["status"] == "FREE_RUNNING" for r in last[:3]), last
    print(f"holdover {HOLDOVER_S:.0f} s: {readings} readings, worst spread "
          f"{worst_spread / 1e6:.3f} ms; last: {last}")  # fmt: skip
