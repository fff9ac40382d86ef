"""Discovery over real zeroconf, bound to 127.0.0.1 only (never the machine's real interfaces).

Multicast on loopback: Linux delivers mDNS between sockets bound to 127.0.0.1 even though `lo`
lacks the MULTICAST flag and there is no multicast route (the sender names the interface with
IP_MULTICAST_IF, and loopback hands every packet back). Checked here, in a fresh network
namespace and across processes; `mdns_on_loopback` probes it anyway and skips (or fails in CI)
with the reason where it does not hold.

Every test uses a cluster name of its own, so nodes of concurrent test runs on this machine
(which share 127.0.0.1) are at most listed in `ignored()`, never taken for our peers.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from zeroconf import ServiceBrowser, ServiceInfo, ServiceStateChange, Zeroconf

from coordinator.discovery import RECORD_TTL_S, SERVICE_TYPE, Discovery, Endpoint
from tests.conftest import unavailable

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def mdns_on_loopback() -> None:
    """Skip (or fail in CI) when two zeroconf instances on 127.0.0.1 cannot see each other."""
    name = unique("probe")
    seen = threading.Event()

    def on_change(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if name.startswith(probe_name):
            seen.set()

    probe_name = f"{name}."
    a = Zeroconf(interfaces=[LOOPBACK])
    b = Zeroconf(interfaces=[LOOPBACK])
    try:
        info = ServiceInfo(
            SERVICE_TYPE,
            f"{name}.{SERVICE_TYPE}",
            port=1,
            properties={},
            server=f"{name}.local.",
            parsed_addresses=[LOOPBACK],
        )
        a.register_service(info, cooperating_responders=True)
        browser = ServiceBrowser(b, SERVICE_TYPE, handlers=[on_change])
        ok = seen.wait(3.0)
        browser.cancel()
    finally:
        a.close()
        b.close()
    if not ok:
        unavailable(
            "mDNS between two zeroconf instances bound to 127.0.0.1 does not work here"
            " (a firewall dropping 224.0.0.251 on lo?)"
        )


@pytest.fixture
def nodes(mdns_on_loopback: None) -> Iterator[Callable[..., Discovery]]:
    """Makes started Discovery objects on 127.0.0.1; closes them all after the test."""
    made: list[Discovery] = []

    def make(
        node_id: str, cluster: str, grpc_port: int, *, version: int = 1, start: bool = True
    ) -> Discovery:
        d = Discovery(
            node_id=node_id,
            cluster=cluster,
            protocol_version=version,
            grpc_port=grpc_port,
            advertise_addresses=[LOOPBACK],
        )
        made.append(d)
        if start:
            d.start()
        return d

    try:
        yield make
    finally:
        for d in made:
            d.close()


def peer_ids(d: Discovery) -> set[str]:
    return {e.node_id for e in d.endpoints() if e.via == "zeroconf"}


def wait_for(check: Callable[[], bool], timeout_s: float) -> float:
    """Seconds until `check()` held; fails after `timeout_s`."""
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError(f"not within {timeout_s} s")
        time.sleep(0.01)
    return time.monotonic() - t0


def test_nodes_find_each_other_within_5_s_and_not_themselves(
    nodes: Callable[..., Discovery],
) -> None:
    cluster = unique("cluster")
    ids = [unique(n) for n in "abc"]
    t0 = time.monotonic()
    ds = [nodes(node_id, cluster, 42000 + i) for i, node_id in enumerate(ids)]
    start_s = time.monotonic() - t0
    took_s = wait_for(lambda: all(set(ids) - {d.node_id} <= peer_ids(d) for d in ds), timeout_s=5.0)
    print(f"3 nodes started in {start_s:.3f} s, all listed each other after {took_s:.3f} s")
    assert start_s < 1.0  # registration does not wait for probing
    for i, d in enumerate(ds):
        ours = [e for e in d.endpoints() if e.node_id in ids]
        assert sorted(ours, key=lambda e: e.port) == [
            Endpoint(LOOPBACK, 42000 + j, "zeroconf", ids[j]) for j in range(3) if j != i
        ]


def test_other_cluster_other_version_and_bad_txt_are_ignored_and_logged_once(
    nodes: Callable[..., Discovery], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chronotick.discovery")
    cluster = unique("cluster")
    me = nodes(unique("me"), cluster, 42100)
    peer = nodes(unique("peer"), cluster, 42101)
    stranger = nodes(unique("stranger"), unique("other-cluster"), 42102)
    future = nodes(unique("future"), cluster, 42103, version=2)
    raw = Zeroconf(interfaces=[LOOPBACK])
    bad_names = {unique("noport"): {"node_id": "x", "cluster": cluster, "version": "1"}}
    bad_names[unique("badport")] = {
        "node_id": "y",
        "cluster": cluster,
        "version": "1",
        "grpc_port": "seventy",
    }
    try:
        for label, txt in bad_names.items():
            raw.register_service(
                ServiceInfo(
                    SERVICE_TYPE,
                    f"{label}.{SERVICE_TYPE}",
                    port=1,
                    properties=txt,
                    server=f"{label}.local.",
                    parsed_addresses=[LOOPBACK],
                ),
                cooperating_responders=True,
            )
        wanted = {
            f"chronotick-{stranger.node_id}.{SERVICE_TYPE}": "other cluster",
            f"chronotick-{future.node_id}.{SERVICE_TYPE}": "other protocol version 2",
            **{f"{label}.{SERVICE_TYPE}": "bad TXT" for label in bad_names},
        }

        def all_ignored() -> bool:
            got = me.ignored()
            return all(got.get(name, "").startswith(why) for name, why in wanted.items())

        wait_for(lambda: all_ignored() and peer.node_id in peer_ids(me), timeout_s=5.0)
        time.sleep(2.5)  # more packets and maintenance rounds: still one line per instance
        reasons = me.ignored()
        assert "missing grpc_port" in reasons[f"{next(iter(bad_names))}.{SERVICE_TYPE}"]
        assert "'seventy' is not a port" in reasons[f"{list(bad_names)[1]}.{SERVICE_TYPE}"]
        assert {e.node_id for e in me.endpoints()} >= {peer.node_id}
        assert not {stranger.node_id, future.node_id, "x", "y"} & peer_ids(me)
        for name in wanted:
            lines = [
                r
                for r in caplog.records
                if r.getMessage().startswith(f"{me.node_id}: ignoring zeroconf instance {name}")
            ]
            assert len(lines) == 1, (name, [r.getMessage() for r in lines])
            assert lines[0].levelno in (logging.INFO, logging.WARNING)
    finally:
        raw.close()


def test_close_is_fast_and_removes_the_node_from_the_others_within_2_s(
    nodes: Callable[..., Discovery],
) -> None:
    cluster = unique("cluster")
    a = nodes(unique("a"), cluster, 42200)
    b = nodes(unique("b"), cluster, 42201)
    c = nodes(unique("c"), cluster, 42202)
    wait_for(lambda: {b.node_id, c.node_id} <= peer_ids(a), timeout_s=5.0)
    wait_for(lambda: b.node_id in peer_ids(c), timeout_s=5.0)
    t0 = time.monotonic()
    b.close()
    close_s = time.monotonic() - t0
    gone_s = wait_for(
        lambda: b.node_id not in peer_ids(a) and b.node_id not in peer_ids(c), timeout_s=2.0
    )
    print(f"close() took {close_s:.3f} s; peers dropped the node {gone_s:.3f} s after")
    assert close_s < 1.0
    assert c.node_id in peer_ids(a)  # the others are untouched
    t1 = time.monotonic()
    b.close()  # idempotent
    assert time.monotonic() - t1 < 0.1


def test_close_returns_promptly_when_zeroconf_is_stuck(nodes: Callable[..., Discovery]) -> None:
    d = nodes(unique("stuck"), unique("cluster"), 42300)
    zc = d._zc
    assert zc is not None and zc.loop is not None
    release = threading.Event()
    zc.loop.call_soon_threadsafe(release.wait, 5.0)  # block zeroconf's event loop
    try:
        t0 = time.monotonic()
        d.close()
        assert time.monotonic() - t0 < 1.2
    finally:
        release.set()


CHILD = textwrap.dedent(
    """
    import sys, time
    from coordinator.discovery import Discovery
    d = Discovery(node_id=sys.argv[1], cluster=sys.argv[2], protocol_version=1,
                  grpc_port=42401, advertise_addresses=["127.0.0.1"])
    d.start()
    print("started", flush=True)
    time.sleep(600)
    """
)


@pytest.mark.slow
def test_a_node_killed_without_goodbye_vanishes_within_the_record_ttl(
    nodes: Callable[..., Discovery],
) -> None:
    cluster = unique("cluster")
    victim_id = unique("victim")
    me = nodes(unique("me"), cluster, 42400)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, victim_id, cluster],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "started"
        appear_s = wait_for(lambda: victim_id in peer_ids(me), timeout_s=5.0)
        # Outlive one TTL first, so the records we lose were refreshed by query, not announced.
        time.sleep(RECORD_TTL_S * 0.7)
        assert victim_id in peer_ids(me)
        child.send_signal(signal.SIGKILL)
        child.wait(5)
        gone_s = wait_for(lambda: victim_id not in peer_ids(me), timeout_s=RECORD_TTL_S + 2.0)
        print(
            f"other process appeared after {appear_s:.3f} s; killed, vanished after {gone_s:.1f} s"
        )
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(5)


def test_two_nodes_with_one_node_id_are_reported(
    nodes: Callable[..., Discovery], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chronotick.discovery")
    cluster = unique("cluster")
    twin = unique("twin")
    first = nodes(twin, cluster, 42500)
    nodes(twin, cluster, 42501)

    def warned() -> bool:
        return any("node ids must be unique" in r.getMessage() for r in caplog.records)

    wait_for(warned, timeout_s=5.0)
    assert twin not in peer_ids(first)  # never listed as its own peer
