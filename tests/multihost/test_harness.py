"""Tests of the multi-host harness itself: networking, reference, mDNS, clock truth, cleanup.

Each test here is what a node test silently relies on; if one fails, node tests built on the
harness would fail for reasons that have nothing to do with the node.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import libfaketime_path, require_binary, require_root
from tests.multihost.conftest import ClusterFactory
from tests.multihost.netns import (
    MARKER_DIR,
    ROOT,
    Cluster,
    HarnessError,
    Proc,
    RunResult,
    cleanup_stale,
)

pytestmark = [pytest.mark.multihost]

US = 1_000


def read_line(proc: Proc, timeout_s: float = 10.0) -> str:
    """One line of a process's piped stdout, or fail with its log after `timeout_s`."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
    if not ready:
        pytest.fail(f"no output from {proc} after {timeout_s} s; log:\n{proc.log_tail()}")
    return proc.stdout.readline().decode().strip()


def alive(pid: int) -> bool:
    """Running (a zombie, dead but not reaped by a PID 1 that does not reap, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def harness_objects(prefix: str) -> dict[str, list[str]]:
    """Namespaces and links of this machine whose names start with `prefix`."""
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return {
        "netns": [line.split()[0] for line in netns.splitlines() if line.startswith(prefix)],
        "links": [
            name
            for line in links.splitlines()
            if (name := line.split(":", 2)[1].strip().split("@")[0]).startswith(prefix)
        ],
    }


def assert_all_gone(prefix: str, run_id: str, pids: list[int], faked: list[int]) -> None:
    """No process, namespace, link or marker of the run, nor libfaketime files of `faked`."""
    deadline = time.monotonic() + 2
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)  # SIGKILLed processes that are not our children vanish asynchronously
    assert [p for p in pids if alive(p)] == []
    assert harness_objects(prefix) == {"netns": [], "links": []}
    assert not (MARKER_DIR / f"{run_id}.json").exists()
    shm = [f"/dev/shm/{kind}_{pid}" for pid in faked for kind in FAKETIME_SHM]
    assert [path for path in shm if os.path.exists(path)] == []


FAKETIME_SHM = ("faketime_shm", "sem.faketime_sem")


# --------------------------------------------------------------------------------------------
# networking

ECHO_SERVER = """
import select, socket, sys
addr = sys.argv[1]
tcp = socket.socket()
tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tcp.bind((addr, 7000))
tcp.listen()
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind((addr, 7001))
print("ready", flush=True)
while True:
    for sock in select.select([tcp, udp], [], [])[0]:
        if sock is tcp:
            conn, _ = tcp.accept()
            conn.sendall(b"tcp:" + conn.recv(100))
            conn.close()
        else:
            data, peer = udp.recvfrom(100)
            udp.sendto(b"udp:" + data, peer)
"""

ECHO_CLIENT = """
import socket, sys
addr = sys.argv[1]
with socket.create_connection((addr, 7000), timeout=5) as conn:
    conn.sendall(b"hello")
    print(conn.recv(100).decode())
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
    udp.settimeout(5)
    udp.sendto(b"hello", (addr, 7001))
    print(udp.recvfrom(100)[0].decode())
"""


def test_hosts_reach_each_other_over_tcp_and_udp(cluster: Cluster) -> None:
    a, b = cluster.hosts
    assert a.address != b.address and a.name != b.name
    assert all(len(name) <= 15 for name in cluster.links)
    server = a.popen([sys.executable, "-c", ECHO_SERVER, a.address], stdout_pipe=True)
    assert read_line(server) == "ready"
    # Host to host, over the bridge.
    done = b.run([sys.executable, "-c", ECHO_CLIENT, a.address], timeout_s=20)
    assert done.stdout.split() == ["tcp:hello", "udp:hello"], done
    # The test process itself (root namespace) reaches the hosts through the bridge address.
    with socket.create_connection((a.address, 7000), timeout=5) as conn:
        conn.sendall(b"root")
        assert conn.recv(100) == b"tcp:root"
    # And nothing else: a host has no default route, so no test traffic leaves the machine.
    route = a.run(["ip", "route", "get", "192.0.2.1"])
    assert route.returncode != 0 and "unreachable" in route.stderr.lower(), route


# --------------------------------------------------------------------------------------------
# reference

OFFSET_RE = re.compile(r"System clock wrong by (-?\d+\.\d+) seconds")


def query_reference(cluster: Cluster, timeout_s: int) -> RunResult:
    assert cluster.reference is not None
    return cluster.hosts[0].run(
        [
            require_binary("chronyd"),
            "-Q",
            "-t",
            str(timeout_s),
            f"server {cluster.reference.address} iburst maxsamples 1",
        ],
        timeout_s=timeout_s + 10,
    )


@pytest.mark.slow
def test_reference_serves_ntp_and_can_be_stopped_and_restarted(
    cluster_factory: ClusterFactory,
) -> None:
    cluster = cluster_factory(1, reference=True)
    assert cluster.reference is not None and cluster.reference.running
    first = query_reference(cluster, 10)
    match = OFFSET_RE.search(first.stderr)
    assert match, first
    # Same kernel clock on both sides: the measured offset is only the path's asymmetry.
    assert abs(float(match.group(1))) < 0.005, first

    cluster.reference.stop()
    assert not cluster.reference.running
    gone = query_reference(cluster, 2)
    assert not OFFSET_RE.search(gone.stderr), gone

    cluster.reference.start()
    again = query_reference(cluster, 10)
    assert OFFSET_RE.search(again.stderr), (again, cluster.dump_logs())


# --------------------------------------------------------------------------------------------
# mDNS

MDNS_REGISTER = """
import socket, sys, time
from zeroconf import ServiceInfo, Zeroconf
addr, name = sys.argv[1], sys.argv[2]
zc = Zeroconf(interfaces=[addr])
zc.register_service(ServiceInfo(
    "_ctktest._tcp.local.", f"{name}._ctktest._tcp.local.",
    addresses=[socket.inet_aton(addr)], port=7000, properties={"node": name},
    server=f"{name}.local.",
))
print("registered", flush=True)
while True:
    time.sleep(1)
"""

MDNS_BROWSE = """
import json, sys, time
from zeroconf import ServiceBrowser, Zeroconf
addr = sys.argv[1]
zc = Zeroconf(interfaces=[addr])
found = []
class Listener:
    def add_service(self, zc, type_, name):
        found.append(name)
    def update_service(self, zc, type_, name):
        pass
    def remove_service(self, zc, type_, name):
        pass
browser = ServiceBrowser(zc, "_ctktest._tcp.local.", Listener())
deadline = time.monotonic() + 10
while not found and time.monotonic() < deadline:
    time.sleep(0.05)
result = {"found": found}
if found:
    info = zc.get_service_info("_ctktest._tcp.local.", found[0], timeout=3000)
    if info is not None:
        result["addresses"] = info.parsed_addresses()
        result["port"] = info.port
        result["node"] = info.properties.get(b"node", b"").decode()
print(json.dumps(result), flush=True)
browser.cancel()
zc.close()
"""


@pytest.mark.slow
def test_mdns_discovery_crosses_the_bridge(cluster: Cluster) -> None:
    a, b = cluster.hosts
    name = f"node-{cluster.run_id}"
    server = a.popen(
        [sys.executable, "-c", MDNS_REGISTER, a.address, name],
        stdout_pipe=True,
        log_name="mdns-register",
    )
    assert read_line(server, 15) == "registered", server.log_tail()
    done = b.run([sys.executable, "-c", MDNS_BROWSE, b.address], timeout_s=30)
    result = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {}
    assert result.get("found") == [f"{name}._ctktest._tcp.local."], (done, cluster.dump_logs())
    assert result["addresses"] == [a.address] and result["port"] == 7000, result
    assert result["node"] == name


# --------------------------------------------------------------------------------------------
# clock truth

TRUTH_CHILD = """
import json, subprocess, sys, time
from tests.helpers.faked_probe import true_time_ns

def sample():
    best = None
    for _ in range(20):
        before = true_time_ns()
        faked = time.time_ns()
        after = true_time_ns()
        if best is None or after - before < best[2] - best[1]:
            best = (faked, before, after)
    return best

for _ in range(4):
    faked, before, after = sample()
    print(json.dumps({"who": sys.argv[1], "faked": faked, "before": before, "after": after}),
          flush=True)
    time.sleep(0.4)
if sys.argv[1] == "child":
    # A grandchild started ~1.3 s after the launcher must share the launcher's origin of the
    # rate; with its own it would be off by 1.3 s x 100 ppm = 130 us.
    subprocess.run([sys.executable, __file__, "grandchild"], check=True)
"""


@pytest.mark.slow
def test_faked_clock_matches_the_prediction(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(2, faketime=True)
    script = cluster.tmpdir / "truth_child.py"
    script.write_text(TRUTH_CHILD)
    configs = [(0.2, 1.0001), (-0.15, 0.9999)]
    procs = [
        host.popen(
            [sys.executable, str(script), "child"],
            faketime_offset_s=offset,
            faketime_rate=rate,
            stdout_pipe=True,
            log_name=f"truth{offset:+}",
        )
        for host, (offset, rate) in zip(cluster.hosts, configs, strict=True)
    ]
    for proc, (offset, rate) in zip(procs, configs, strict=True):
        out, _ = proc.popen.communicate(timeout=20)
        assert proc.returncode == 0, proc.log_tail()
        samples = [json.loads(line) for line in out.decode().splitlines()]
        assert [s["who"] for s in samples] == ["child"] * 4 + ["grandchild"] * 4
        truth = proc.truth()
        assert truth.uncertainty_ns < 20 * US, truth
        assert abs(truth.skew_ns(truth.true_ns) - offset * 1e9) < 5e6, truth
        errors = []
        for s in samples:
            true_ns = (s["before"] + s["after"]) // 2
            measured = s["faked"] - true_ns
            errors.append(measured - proc.skew_ns(true_ns))
        assert max(abs(e) for e in errors) < 50 * US, (offset, rate, errors)
        # The rate is really in effect: over ~2.5 s the skew moved by ~250 us.
        first, last = samples[0], samples[-1]
        moved = (last["faked"] - last["before"]) - (first["faked"] - first["before"])
        expected = (rate - 1) * (last["before"] - first["before"])
        assert abs(moved - expected) < 50 * US, (moved, expected)
        assert abs(expected) > 150 * US


def test_unfaked_process_has_zero_skew(cluster: Cluster) -> None:
    proc = cluster.hosts[0].popen(["true"])
    assert proc.wait(10) == 0
    assert not proc.faked and proc.skew_ns(time.time_ns()) == 0


# --------------------------------------------------------------------------------------------
# cleanup

ESCAPER = """
import os, signal, time
child = os.fork()
if child == 0:
    os.setsid()  # leaves the process group the harness kills
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # and shrugs off SIGTERM
    time.sleep(600)
    os._exit(0)
print(child, flush=True)
time.sleep(600)
"""

FAKED_PRINT_PID = "import os, time; print(os.getpid(), flush=True); time.sleep(600)"


def populate(cluster: Cluster) -> tuple[list[int], list[int]]:
    """Start the kinds of process cleanup must get rid of; return their PIDs, and the faked
    launcher's."""
    host = cluster.hosts[0]
    escaper = host.python(ESCAPER, stdout_pipe=True)
    faked = cluster.hosts[-1].python(
        FAKED_PRINT_PID, faketime_offset_s=0.5, faketime_rate=1.001, stdout_pipe=True
    )
    pids = [escaper.pid, int(read_line(escaper)), faked.pid, int(read_line(faked))]
    if cluster.reference is not None and cluster.reference.proc is not None:
        pids.append(cluster.reference.proc.pid)
    assert all(alive(p) for p in pids)
    assert os.path.exists(f"/dev/shm/faketime_shm_{faked.pid}")
    return pids, [faked.pid]


def require_all() -> None:
    require_root()
    require_binary("ip")
    require_binary("chronyd")
    libfaketime_path()


@pytest.mark.slow
def test_cleanup_after_normal_exit() -> None:
    require_all()
    before = signal.getsignal(signal.SIGTERM)
    with Cluster(2, reference=True, grace_s=0.5) as cluster:
        prefix, run_id = cluster.prefix, cluster.run_id
        assert (MARKER_DIR / f"{run_id}.json").exists()
        assert sorted(harness_objects(prefix)["netns"]) == sorted(cluster.namespaces)
        pids, faked = populate(cluster)
        tmpdir = cluster.tmpdir
        segment = Path(f"/dev/shm/{prefix}-n0")  # what a node of this run would publish
        segment.write_bytes(b"x")
    assert_all_gone(prefix, run_id, pids, faked)
    assert not tmpdir.exists() and not segment.exists()
    assert signal.getsignal(signal.SIGTERM) is before  # the SIGTERM hook is gone too


@pytest.mark.slow
def test_cleanup_after_exception() -> None:
    require_all()
    pids: list[int] = []
    faked: list[int] = []
    with pytest.raises(RuntimeError, match="test failed here"):
        with Cluster(2, reference=True, grace_s=0.5) as cluster:
            prefix, run_id = cluster.prefix, cluster.run_id
            pids, faked = populate(cluster)
            raise RuntimeError("test failed here")
    assert_all_gone(prefix, run_id, pids, faked)


CRASHING_RUN = """
import json, sys, time
from tests.multihost.netns import Cluster
cluster = Cluster(1, reference=True).start()
proc = cluster.hosts[0].popen([sys.executable, "-c", "import time; time.sleep(600)"])
faked = cluster.hosts[0].popen([sys.executable, "-c", "import time; time.sleep(600)"],
                               faketime_offset_s=1.0)
faked.truth()
print(json.dumps({"prefix": cluster.prefix, "run_id": cluster.run_id,
                  "pids": [proc.pid, faked.pid, cluster.reference.proc.pid],
                  "faked": [faked.pid]}), flush=True)
time.sleep(600)
"""


def start_run_in_subprocess() -> tuple[subprocess.Popen[str], dict[str, Any]]:
    owner = subprocess.Popen(
        [sys.executable, "-c", CRASHING_RUN],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert owner.stdout is not None
    ready, _, _ = select.select([owner.stdout], [], [], 20)
    assert ready, "the run in a subprocess did not start"
    line = owner.stdout.readline()
    if not line:
        owner.wait(5)
        pytest.fail(
            f"the run in a subprocess failed: {owner.stderr.read() if owner.stderr else ''}"
        )
    info: dict[str, Any] = json.loads(line)
    assert all(alive(p) for p in info["pids"])
    assert harness_objects(info["prefix"])["netns"], info
    return owner, info


@pytest.mark.slow
def test_leftovers_of_a_killed_run_are_removed_at_next_start() -> None:
    require_all()
    owner, info = start_run_in_subprocess()
    owner.kill()  # SIGKILL: no cleanup of its own at all
    owner.wait(5)
    # Its namespaces, links, marker and processes outlive it...
    assert harness_objects(info["prefix"])["netns"]
    assert (MARKER_DIR / f"{info['run_id']}.json").exists()
    assert all(alive(p) for p in info["pids"])
    assert all(os.path.exists(f"/dev/shm/faketime_shm_{p}") for p in info["faked"])
    # ...until the next harness start sweeps them (Cluster.start calls cleanup_stale).
    removed = cleanup_stale()
    assert f"{info['prefix']}h0" in removed, removed
    assert_all_gone(info["prefix"], info["run_id"], info["pids"], info["faked"])


@pytest.mark.slow
def test_sigterm_to_the_test_process_still_cleans_up() -> None:
    require_all()
    owner, info = start_run_in_subprocess()
    owner.send_signal(signal.SIGTERM)
    owner.wait(15)
    assert owner.returncode != 0
    assert_all_gone(info["prefix"], info["run_id"], info["pids"], info["faked"])


def test_a_live_run_is_not_swept_by_another(cluster: Cluster) -> None:
    removed = cleanup_stale()
    assert not any(name.startswith(cluster.prefix) for name in removed)
    assert sorted(harness_objects(cluster.prefix)["netns"]) == sorted(cluster.namespaces)


def test_popen_after_close_is_refused() -> None:
    require_root()
    require_binary("ip")
    cluster = Cluster(1).start()
    host = cluster.hosts[0]
    cluster.close()
    with pytest.raises(HarnessError):
        host.popen(["true"])


def test_names_fit_and_share_the_prefix(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(12)
    names = cluster.namespaces + cluster.links
    assert all(name.startswith(cluster.prefix) and len(name) <= 15 for name in names), names
    assert len(set(names)) == len(names)
    assert Path(cluster.tmpdir).is_dir()
