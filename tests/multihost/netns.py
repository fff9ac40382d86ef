"""Several "hosts" on one machine: network namespaces joined by a Linux bridge.

Why namespaces: a ChronoTick node finds its peers by mDNS and talks to them over the network, so
a test of several nodes needs several network stacks (each with its own address, port space and
multicast membership) while still sharing one kernel clock, which libfaketime then skews per
process. A namespace per host, a veth pair per namespace and one bridge give exactly that, and
cost a few milliseconds each.

Layout of one `Cluster` (run id RID, six hex digits, subnet 10.77.K.0/24 with K free on this
machine):

    root namespace:  bridge ctkRIDbr (10.77.K.254, so the test process can reach the hosts)
                     veth ctkRIDv0, ctkRIDv1, ... ctkRIDvr  (bridge ports)
    namespace ctkRIDh0:  lo, eth0 = 10.77.K.1/24, route 224.0.0.0/4 dev eth0
    namespace ctkRIDh1:  lo, eth0 = 10.77.K.2/24, ...
    namespace ctkRIDref: lo, eth0 = 10.77.K.250/24, chronyd -x serving NTP on :123 (optional)

Every name starts with `ctk` + the run id, and the run is recorded in a marker file
/run/chronotick-multihost/RID.json holding the owner's PID (and its start time, against PID
reuse). The marker is written before anything is created and removed only once everything is
gone, so a later run can tell a crashed run's leftovers (owner dead) from a concurrent run's
live objects, and delete them.

Processes: `Host.popen` runs any argv in the namespace in its own session (process group), with
stdout and stderr in a log file of the cluster's temp dir. With a faked clock, the process is
started by `faked_launcher.py` under libfaketime: the launcher is the first faked process, so
its start is the origin of the rate for the program and all its descendants (they share it
through libfaketime's FAKETIME_SHARED segment; FAKETIME_DONT_RESET=1 is set as well, which
matters for the absolute `@` form). The launcher records a (faked, true) pair of readings taken
back to back, from which `Proc.skew_ns` predicts the faked clock's offset at any true instant.

Cleanup (`Cluster.close`, run by `__exit__`, by the pytest fixture, at interpreter exit, and on
SIGTERM): SIGTERM to each started process, SIGKILL after a grace to whatever is left in its
process group or anywhere inside the cluster's namespaces (which also catches processes that
left their session), chronyd stopped, namespaces, veths and bridge deleted, then the files in
/dev/shm named after the run (`ctkRID*`: name node segments with `cluster.prefix`) and
libfaketime's own segments of killed launchers. SIGINT and SIGTERM are held back while it runs,
so a Ctrl-C cannot leave half a cluster behind. A run killed outright (SIGKILL, OOM) leaves its
marker: the next `Cluster.start` (via `cleanup_stale`) removes all of the above for it.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import glob
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = Path(__file__).resolve().with_name("faked_launcher.py")

PREFIX = "ctk"
MARKER_DIR = Path("/run/chronotick-multihost")
NAME_RE = re.compile(rf"^{PREFIX}([0-9a-f]{{6}})(?:br|ref|vr|h\d+|v\d+)$")
INNER_IFACE = "eth0"
REFERENCE_OCTET = 250
BRIDGE_OCTET = 254
MAX_HOSTS = 200
NS_PER_S = 1_000_000_000

# Environment variables that must not leak from the test process into a child by accident: a
# process is faked only when popen was asked for it.
_FAKETIME_VARS = ("LD_PRELOAD", "FAKETIME", "FAKETIME_DONT_RESET", "FAKETIME_SHARED")


class HarnessError(RuntimeError):
    """The harness could not build, run or tear down something."""


# --------------------------------------------------------------------------------------------
# small system helpers


def _ip_binary() -> str:
    path = shutil.which("ip") or shutil.which("ip", path="/usr/sbin:/sbin")
    if path is None:
        raise HarnessError("iproute2's `ip` is not installed")
    return path


def _ip(*args: str, batch: Sequence[str] | None = None, check: bool = True) -> str:
    """Run `ip ARGS` (with `-batch -` lines on stdin if given); return its stdout.

    Batches keep setup fast: one process creates all links instead of one process per link.
    """
    argv = [_ip_binary(), *args]
    stdin = None
    if batch is not None:
        argv += ["-batch", "-"]
        stdin = "".join(line + "\n" for line in batch)
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise HarnessError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def _proc_start_time(pid: int) -> int | None:
    """The start time of PID in clock ticks since boot (field 22 of /proc/PID/stat).

    Together with the PID it names one process for good, which a PID alone does not once
    PIDs wrap around.
    """
    try:
        with open(f"/proc/{pid}/stat") as handle:
            stat = handle.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


def _running(pid: int) -> bool:
    """PID exists and is not a zombie (a PID 1 that never reaps keeps those around)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _owner_alive(pid: int, start_time: int | None) -> bool:
    now = _proc_start_time(pid)
    return now is not None and (start_time is None or now == start_time) and _running(pid)


def _netns_inode(name: str) -> tuple[int, int] | None:
    try:
        st = os.stat(f"/run/netns/{name}")
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _pids_in_netns(names: Iterable[str]) -> dict[str, list[int]]:
    """PIDs of the live processes inside each named namespace, by one scan of /proc.

    The same test as `ip netns pids` (the inode behind /proc/PID/ns/net), but for all of the
    cluster's namespaces at once and without a subprocess per poll. Zombies have no namespace
    link any more and are not counted.
    """
    wanted: dict[tuple[int, int], str] = {}
    for name in names:
        key = _netns_inode(name)
        if key is not None:
            wanted[key] = name
    found: dict[str, list[int]] = {name: [] for name in wanted.values()}
    if not wanted:
        return found
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        owner = wanted.get((st.st_dev, st.st_ino))
        if owner is not None:
            found[owner].append(int(entry))
    return found


def _signal_pids(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _list_netns() -> list[str]:
    try:
        return sorted(os.listdir("/run/netns"))
    except FileNotFoundError:
        return []


def _list_links() -> list[str]:
    names = []
    for line in _ip("-o", "link", "show").splitlines():
        # "9: ctkabcdefv0@if2: <BROADCAST,..." -> "ctkabcdefv0"
        parts = line.split(":", 2)
        if len(parts) >= 2:
            names.append(parts[1].strip().split("@", 1)[0])
    return names


def find_libfaketime() -> str:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    if not found:
        raise HarnessError("libfaketime is not installed (apt-get install faketime)")
    return found[0]


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT/SIGTERM back (they are delivered after) so cleanup cannot be cut short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextlib.contextmanager
def _registry_lock() -> Iterator[None]:
    """One harness at a time picks run ids and subnets and sweeps leftovers."""
    MARKER_DIR.mkdir(parents=True, exist_ok=True)
    with open(MARKER_DIR / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_markers() -> dict[str, dict[str, Any]]:
    markers: dict[str, dict[str, Any]] = {}
    for path in MARKER_DIR.glob("*.json"):
        try:
            markers[path.stem] = json.loads(path.read_text())
        except (OSError, ValueError):
            markers[path.stem] = {}
    return markers


def _remove_faketime_shm(pids: Iterable[int]) -> None:
    """Delete libfaketime's shared segment and semaphore of dead faked launchers.

    The first faked process creates /dev/shm/faketime_shm_PID and sem.faketime_sem_PID and
    unlinks them in its destructor, which does not run when it is killed by a signal; /dev/shm
    would fill with them over many runs.
    """
    for pid in pids:
        if _running(pid):
            continue  # still running (or the PID was reused): not ours to delete
        for path in (f"/dev/shm/faketime_shm_{pid}", f"/dev/shm/sem.faketime_sem_{pid}"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def _remove_run_segments(prefix: str) -> None:
    """Delete /dev/shm files named after the run (e.g. a node's segment `ctkRID-n0`).

    /dev/shm is shared by all namespaces, so tests name their segments with the cluster's
    prefix; the prefix is unique to the run, so these files are the run's own.
    """
    if not NAME_RE.match(prefix + "br"):
        return  # never a broad pattern
    for path in glob.glob(f"/dev/shm/{prefix}*"):
        with contextlib.suppress(OSError):
            os.unlink(path)


def _write_marker(rid: str, marker: Mapping[str, Any]) -> None:
    tmp = MARKER_DIR / f".{rid}.tmp"
    tmp.write_text(json.dumps(marker))
    tmp.rename(MARKER_DIR / f"{rid}.json")


def _destroy(netns: Iterable[str], links: Iterable[str]) -> None:
    """Kill whatever runs in the namespaces, then delete them and the links (idempotent)."""
    netns = [n for n in netns if _netns_inode(n) is not None]
    for pids in _pids_in_netns(netns).values():
        _signal_pids(pids, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while any(_pids_in_netns(netns).values()) and time.monotonic() < deadline:
        time.sleep(0.02)
    present = set(_list_links())
    # Links first: deleting a veth end removes its peer at once, while a deleted namespace
    # (and the veth inside) lingers until the kernel's cleanup work runs.
    lines = [f"link del {link}" for link in links if link in present]
    lines += [f"netns del {n}" for n in netns]
    if lines:
        # -force: go on after a failed line (a veth already gone with its namespace).
        _ip("-force", batch=lines, check=False)


def cleanup_stale() -> list[str]:
    """Delete namespaces, links and markers of earlier runs whose owner process is dead.

    Called by every `Cluster.start`; returns the names it removed. An object with the harness's
    name pattern but no marker at all is a leftover too: markers are written before anything
    is created and removed after everything is gone.
    """
    with _registry_lock():
        return _cleanup_stale_locked()


def _cleanup_stale_locked() -> list[str]:
    live = {
        rid
        for rid, marker in _read_markers().items()
        if isinstance(marker.get("pid"), int)
        and _owner_alive(marker["pid"], marker.get("pid_start"))
    }
    stale_ns = [n for n in _list_netns() if (m := NAME_RE.match(n)) and m.group(1) not in live]
    stale_links = [
        link for link in _list_links() if (m := NAME_RE.match(link)) and m.group(1) not in live
    ]
    # veths before the bridge does not matter: `link del` of a bridge releases its ports.
    _destroy(stale_ns, stale_links)
    for rid, marker in _read_markers().items():
        if rid not in live:
            _remove_faketime_shm(int(p) for p in marker.get("faked_pids", []))
            _remove_run_segments(PREFIX + rid)
            with contextlib.suppress(FileNotFoundError):
                (MARKER_DIR / f"{rid}.json").unlink()
    return stale_ns + stale_links


# --------------------------------------------------------------------------------------------
# processes


@dataclass(frozen=True)
class Truth:
    """One pair of readings of the faked and the true CLOCK_REALTIME, taken back to back."""

    faked_ns: int
    true_ns: int
    uncertainty_ns: int  # half the interval of true time around the faked reading
    rate: float

    def skew_ns(self, true_ns: int) -> int:
        """Faked minus true clock at the true instant `true_ns`."""
        return self.faked_ns - self.true_ns + round((self.rate - 1.0) * (true_ns - self.true_ns))

    def true_ns_at(self, faked_ns: int) -> int:
        """The true instant at which the faked clock reads `faked_ns` (inverse of skew)."""
        return self.true_ns + round((faked_ns - self.faked_ns) / self.rate)


class Proc:
    """A process started by `Host.popen`, the leader of its own process group.

    For a faked process the leader is the launcher and the program runs as its child; SIGTERM
    goes to the leader only (the launcher forwards it), SIGKILL to the whole group, like
    systemd's KillMode=mixed: a program that forwards signals to its own children does not get
    them twice.
    """

    def __init__(
        self,
        host: Host,
        argv: Sequence[str],
        popen: subprocess.Popen[bytes],
        log_path: Path,
        *,
        offset_s: float,
        rate: float,
        truth_path: Path | None,
    ) -> None:
        self.host = host
        self.argv = list(argv)
        self.popen = popen
        self.pid = popen.pid
        self.log_path = log_path
        self.offset_s = offset_s
        self.rate = rate
        self.truth_path = truth_path
        self._truth: Truth | None = None

    def __repr__(self) -> str:
        return f"<Proc {self.pid} on {self.host.name}: {' '.join(self.argv)[:60]}>"

    @property
    def faked(self) -> bool:
        return self.truth_path is not None

    @property
    def stdin(self) -> IO[bytes] | None:
        return self.popen.stdin

    @property
    def stdout(self) -> IO[bytes] | None:
        return self.popen.stdout

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode

    def poll(self) -> int | None:
        return self.popen.poll()

    def wait(self, timeout: float | None = None) -> int:
        return self.popen.wait(timeout)

    def send_signal(self, sig: int) -> None:
        """Signal the leader (for a faked process: the launcher, which forwards it)."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL to the whole process group."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)

    def stop(self, grace_s: float = 5.0) -> int:
        """SIGTERM, then SIGKILL to the group if it has not exited after `grace_s`."""
        self.terminate()
        try:
            return self.popen.wait(grace_s)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.popen.wait(10)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def truth(self, timeout_s: float = 10.0) -> Truth:
        """The launcher's (faked, true) pair; waits for it (written ~0.1 s after start).

        For an unfaked process the clock is the true one: skew 0, rate 1.
        """
        if self._truth is not None:
            return self._truth
        if self.truth_path is None:
            self._truth = Truth(faked_ns=0, true_ns=0, uncertainty_ns=0, rate=1.0)
            return self._truth
        deadline = time.monotonic() + timeout_s
        while not self.truth_path.exists():
            if self.popen.poll() is not None and not self.truth_path.exists():
                raise HarnessError(
                    f"faked process exited ({self.popen.returncode}) before recording its "
                    f"clock; log:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise HarnessError(f"no truth file from the launcher after {timeout_s} s")
            time.sleep(0.01)
        data = json.loads(self.truth_path.read_text())
        truth = Truth(
            faked_ns=int(data["faked_ns"]),
            true_ns=int(data["true_ns"]),
            uncertainty_ns=int(data["uncertainty_ns"]),
            rate=self.rate,
        )
        # libfaketime silently does nothing when it is not loaded (static binary, wrong path):
        # the measured skew must match the requested offset (+ drift since the launch).
        drift_allowance = abs(self.rate - 1.0) * 60 * NS_PER_S
        if abs(truth.skew_ns(truth.true_ns) - self.offset_s * NS_PER_S) > 20e6 + drift_allowance:
            raise HarnessError(
                f"libfaketime not in effect: asked for {self.offset_s:+.6f} s, measured "
                f"{truth.skew_ns(truth.true_ns) / NS_PER_S:+.6f} s"
            )
        self._truth = truth
        return truth

    def skew_ns(self, true_ns: int) -> int:
        """This process's faked clock minus the true clock at the true instant `true_ns`."""
        return self.truth().skew_ns(true_ns)

    def true_ns_at(self, faked_ns: int) -> int:
        """The true instant at which this process's clock reads `faked_ns`."""
        if not self.faked:
            return faked_ns
        return self.truth().true_ns_at(faked_ns)


@dataclass(frozen=True)
class RunResult:
    returncode: int
    stdout: str
    stderr: str


class Host:
    """One network namespace with an address on the cluster's bridge."""

    def __init__(self, cluster: Cluster, name: str, veth: str, address: str) -> None:
        self.cluster = cluster
        self.name = name  # the namespace's name
        self.veth = veth  # the bridge-side end of its veth pair (in the root namespace)
        self.address = address
        self.interface = INNER_IFACE

    def __repr__(self) -> str:
        return f"<Host {self.name} {self.address}>"

    def _netns_argv(self, argv: Sequence[str]) -> list[str]:
        return [_ip_binary(), "netns", "exec", self.name, *argv]

    def popen(
        self,
        argv: Sequence[str],
        *,
        faketime_offset_s: float = 0.0,
        faketime_rate: float = 1.0,
        env: Mapping[str, str] | None = None,
        log_name: str | None = None,
        stdin_pipe: bool = False,
        stdout_pipe: bool = False,
        cwd: str | os.PathLike[str] | None = None,
    ) -> Proc:
        """Start `argv` in this namespace, in its own process group; stop it at cluster exit.

        stdout and stderr go to `<tmpdir>/logs/<log_name>.log` (stdout to a pipe instead with
        `stdout_pipe`). A non-zero offset or a rate other than 1 runs it under libfaketime via
        the launcher (see `Proc.skew_ns`). The environment is this process's, minus any
        libfaketime variables, plus the repository on PYTHONPATH, plus `env`.
        """
        return self.cluster._popen(
            self,
            argv,
            faketime_offset_s=faketime_offset_s,
            faketime_rate=faketime_rate,
            env=env,
            log_name=log_name,
            stdin_pipe=stdin_pipe,
            stdout_pipe=stdout_pipe,
            cwd=cwd,
        )

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout_s: float = 30.0,
        env: Mapping[str, str] | None = None,
        check: bool = False,
    ) -> RunResult:
        """Run a short command in this namespace and capture its output (not faked).

        On timeout its whole process group is killed and HarnessError raised.
        """
        proc = subprocess.Popen(
            self._netns_argv(argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=self.cluster._child_env(env),
            cwd=ROOT,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            raise HarnessError(
                f"{argv!r} on {self.name} timed out after {timeout_s} s; stderr: "
                f"{err.decode(errors='replace')[-2000:]}"
            ) from None
        result = RunResult(
            proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
        )
        if check and result.returncode != 0:
            raise HarnessError(f"{argv!r} on {self.name} exited {result.returncode}: {result}")
        return result

    def python(self, code: str, **kwargs: Any) -> Proc:
        """`popen` of the venv's Python running `code` (a convenience for small snippets)."""
        return self.popen([sys.executable, "-c", code], **kwargs)


class Reference(Host):
    """The reference host: chronyd -x (never touches the clock) as a stratum-1 NTP server.

    `stop()`/`start()` let a test take the reference away (a node must go FREE_RUNNING) and
    bring it back.
    """

    def __init__(self, cluster: Cluster, name: str, veth: str, address: str) -> None:
        super().__init__(cluster, name, veth, address)
        self.dir = cluster.tmpdir / "chrony"
        self.conf = self.dir / "chrony.conf"
        self.proc: Proc | None = None
        self._starts = 0

    def _write_conf(self) -> None:
        self.dir.mkdir(exist_ok=True)
        # chronyd drops root for its own user (_chrony on Debian) once started, and writes its
        # driftfile as that user when it exits: it needs to reach and write its directory.
        os.chmod(self.cluster.tmpdir, 0o711)
        try:
            shutil.chown(self.dir, user="_chrony")
        except (LookupError, OSError):
            os.chmod(self.dir, 0o777)
        self.conf.write_text(
            "local stratum 1\n"
            f"allow {self.cluster.subnet}\n"
            f"bindaddress {self.address}\n"
            "port 123\n"
            "cmdport 0\n"
            f"pidfile {self.dir}/chronyd.pid\n"
            f"driftfile {self.dir}/drift\n"
        )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout_s: float = 10.0) -> None:
        """Start chronyd and wait until it listens on ADDRESS:123."""
        if self.running:
            return
        binary = shutil.which("chronyd") or shutil.which("chronyd", path="/usr/sbin:/sbin")
        if binary is None:
            raise HarnessError("chronyd is not installed (apt-get install chrony)")
        self._write_conf()
        self._starts += 1
        self.proc = self.popen(
            [binary, "-x", "-d", "-f", str(self.conf)], log_name=f"chronyd-{self._starts}"
        )
        deadline = time.monotonic() + timeout_s
        while not self._listening():
            if self.proc.poll() is not None:
                raise HarnessError(f"chronyd exited at start:\n{self.proc.log_tail()}")
            if time.monotonic() > deadline:
                raise HarnessError(f"chronyd not listening after {timeout_s} s")
            time.sleep(0.02)

    def _listening(self) -> bool:
        """Whether a UDP socket is bound to ADDRESS:123, from /proc/PID/net/udp of chronyd.

        /proc/PID/net shows the network namespace of PID, so this needs no tool inside it.
        """
        assert self.proc is not None
        want = f"{int.from_bytes(ipaddress.IPv4Address(self.address).packed, 'little'):08X}:007B"
        try:
            with open(f"/proc/{self.proc.pid}/net/udp") as handle:
                return any(line.split()[1] == want for line in list(handle)[1:])
        except (OSError, IndexError):
            return False

    def stop(self, grace_s: float = 5.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stop(grace_s)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return "".join(p.log() for p in self.cluster.procs if p.host is self)


# --------------------------------------------------------------------------------------------
# the cluster

_live_clusters: weakref.WeakSet[Cluster] = weakref.WeakSet()
_sigterm_users: set[int] = set()  # ids of the open clusters that rely on _on_sigterm
_sigterm_saved: Any = signal.SIG_DFL


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _close_all_at_exit() -> None:
    for cluster in list(_live_clusters):
        with contextlib.suppress(Exception):
            cluster.close()


atexit.register(_close_all_at_exit)


class Cluster:
    """A bridge, N host namespaces and an optional reference; a context manager.

    `start()` (or `with`) builds it; `close()` (or leaving the `with`) tears down all of it.
    """

    def __init__(
        self,
        n_hosts: int = 2,
        *,
        reference: bool = False,
        host_access: bool = True,
        libfaketime: str | None = None,
        grace_s: float = 3.0,
        keep_tmpdir: bool = False,
        subnet_base: str = "10.77",
    ) -> None:
        if not 1 <= n_hosts <= MAX_HOSTS:
            raise ValueError(f"n_hosts must be within 1..{MAX_HOSTS}")
        self.n_hosts = n_hosts
        self.want_reference = reference
        self.host_access = host_access
        self.libfaketime = libfaketime
        self.grace_s = grace_s
        self.keep_tmpdir = keep_tmpdir or os.environ.get("CHRONOTICK_KEEP_MULTIHOST") == "1"
        self.subnet_base = subnet_base
        self.run_id = ""
        self.prefix = ""
        self.subnet = ""
        self.bridge = ""
        self.bridge_address: str | None = None
        self.hosts: list[Host] = []
        self.reference: Reference | None = None
        self.procs: list[Proc] = []
        self.tmpdir = Path()
        self._started = False
        self._closed = False
        self._counter = 0
        self._sigterm_installed = False
        self._marker: dict[str, Any] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Cluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def namespaces(self) -> list[str]:
        names = [h.name for h in self.hosts]
        if self.reference is not None:
            names.append(self.reference.name)
        return names

    @property
    def links(self) -> list[str]:
        veths = [h.veth for h in self.hosts]
        if self.reference is not None:
            veths.append(self.reference.veth)
        return [*veths, self.bridge]

    def start(self) -> Cluster:
        if self._started:
            raise HarnessError("a Cluster starts once")
        self._started = True
        _live_clusters.add(self)
        self._install_sigterm()
        with _signals_held():
            with _registry_lock():
                _cleanup_stale_locked()
                self._claim()
            try:
                self._build()
            except BaseException:
                self.close()
                raise
        if self.want_reference:
            assert self.reference is not None
            try:
                self.reference.start()
            except BaseException:
                self.close()
                raise
        return self

    def _claim(self) -> None:
        """Pick a free run id and subnet and write the marker (under the registry lock)."""
        markers = _read_markers()
        used = {m.get("k") for m in markers.values()}
        # Subnets the root namespace already has an address or route in are taken as well.
        base = self.subnet_base
        for line in (
            _ip("-4", "-o", "addr", "show").splitlines()
            + _ip("-4", "route", "show", "table", "all").splitlines()
        ):
            for match in re.finditer(rf"\b{re.escape(base)}\.(\d+)\.\d+", line):
                used.add(int(match.group(1)))
        free = [k for k in range(1, 255) if k not in used]
        if not free:
            raise HarnessError(f"no free {base}.K.0/24 subnet")
        k = secrets.choice(free)
        while True:
            rid = secrets.token_hex(3)
            if rid not in markers:
                break
        self.run_id = rid
        self.prefix = PREFIX + rid
        self.subnet = f"{base}.{k}.0/24"
        self.tmpdir = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-"))
        (self.tmpdir / "logs").mkdir()
        (self.tmpdir / "truth").mkdir()
        marker: dict[str, Any] = {
            "pid": os.getpid(),
            "pid_start": _proc_start_time(os.getpid()),
            "k": k,
            "tmpdir": str(self.tmpdir),
            "created": time.time(),
            "faked_pids": [],
        }
        self._marker = marker
        _write_marker(rid, marker)
        self.bridge = f"{self.prefix}br"
        net = f"{base}.{k}"
        for i in range(self.n_hosts):
            self.hosts.append(
                Host(self, f"{self.prefix}h{i}", f"{self.prefix}v{i}", f"{net}.{i + 1}")
            )
        if self.want_reference:
            self.reference = Reference(
                self, f"{self.prefix}ref", f"{self.prefix}vr", f"{net}.{REFERENCE_OCTET}"
            )
        if self.host_access:
            self.bridge_address = f"{net}.{BRIDGE_OCTET}"

    def _build(self) -> None:
        all_hosts: list[Host] = list(self.hosts)
        if self.reference is not None:
            all_hosts.append(self.reference)
        # Multicast snooping off: the bridge then floods every multicast frame to every port,
        # which is what mDNS on a small LAN expects, without waiting for IGMP reports.
        root = [f"link add {self.bridge} type bridge stp_state 0 mcast_snooping 0"]
        if self.bridge_address is not None:
            root.append(f"addr add {self.bridge_address}/24 dev {self.bridge}")
        root.append(f"link set {self.bridge} up")
        for host in all_hosts:
            root += [
                f"netns add {host.name}",
                f"link add {host.veth} type veth peer name {INNER_IFACE} netns {host.name}",
                f"link set {host.veth} master {self.bridge}",
                f"link set {host.veth} up",
            ]
        _ip(batch=root)
        for host in all_hosts:
            _ip(
                "-n",
                host.name,
                batch=[
                    "link set lo up",
                    f"addr add {host.address}/24 dev {INNER_IFACE}",
                    f"link set {INNER_IFACE} up",
                    # Without a route for 224.0.0.0/4 (the namespace has no default route), a
                    # send to 224.0.0.251 fails with ENETUNREACH unless the socket names its
                    # interface (IP_MULTICAST_IF, as python-zeroconf does); with it, any
                    # multicast code works unchanged.
                    f"route add 224.0.0.0/4 dev {INNER_IFACE}",
                ],
            )

    def close(self) -> None:
        """Stop every process, then delete namespaces, links, marker (and tmpdir). Idempotent."""
        if self._closed or not self._started:
            return
        self._closed = True
        with _signals_held():
            try:
                self._stop_processes()
            finally:
                _destroy(self.namespaces, self.links)
                _remove_faketime_shm(p.pid for p in self.procs if p.faked)
                if self.prefix:
                    _remove_run_segments(self.prefix)
                leftovers = [n for n in self.namespaces if _netns_inode(n) is not None]
                present = set(_list_links())
                leftovers += [link for link in self.links if link in present]
                if self.run_id and not leftovers:
                    with contextlib.suppress(FileNotFoundError):
                        (MARKER_DIR / f"{self.run_id}.json").unlink()
                if not self.keep_tmpdir and self.tmpdir != Path():
                    shutil.rmtree(self.tmpdir, ignore_errors=True)
                _live_clusters.discard(self)
                self._restore_sigterm()
        if leftovers:
            # The marker stays, so the next run removes them once this process is gone.
            print(f"multihost: could not remove {leftovers}", file=sys.stderr)

    def _stop_processes(self) -> None:
        """SIGTERM the leaders, then everything else in the namespaces, then SIGKILL."""
        if self.reference is not None and self.reference.running:
            with contextlib.suppress(Exception):
                self.reference.stop(self.grace_s)
        running = [p for p in self.procs if p.poll() is None]
        for proc in running:
            proc.terminate()
        deadline = time.monotonic() + self.grace_s
        while any(p.poll() is None for p in running) and time.monotonic() < deadline:
            time.sleep(0.02)
        # Whatever is left: children of exited leaders, processes that left their session.
        in_ns = [pid for pids in _pids_in_netns(self.namespaces).values() for pid in pids]
        if in_ns:
            _signal_pids(in_ns, signal.SIGTERM)
            deadline = time.monotonic() + min(1.0, self.grace_s)
            while any(_pids_in_netns(self.namespaces).values()) and time.monotonic() < deadline:
                time.sleep(0.02)
        for proc in self.procs:
            proc.kill()  # the whole group, in case a member left the namespace somehow
        for pids in _pids_in_netns(self.namespaces).values():
            _signal_pids(pids, signal.SIGKILL)
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
            for stream in (proc.popen.stdin, proc.popen.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()

    def _install_sigterm(self) -> None:
        """Turn SIGTERM into KeyboardInterrupt while clusters exist, so `finally` blocks and
        fixture teardowns (and so `close`) run, as on Ctrl-C; SIGTERM's default would kill the
        test process on the spot and leave everything behind.

        Only when nobody else handles SIGTERM, and only from the main thread; the handler
        stays while any cluster that installed it is open.
        """
        global _sigterm_saved
        if threading.current_thread() is not threading.main_thread():
            return
        if not _sigterm_users:
            if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
                return
            _sigterm_saved = signal.signal(signal.SIGTERM, _on_sigterm)
        _sigterm_users.add(id(self))
        self._sigterm_installed = True

    def _restore_sigterm(self) -> None:
        if not self._sigterm_installed:
            return
        self._sigterm_installed = False
        _sigterm_users.discard(id(self))
        if not _sigterm_users and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _sigterm_saved)

    # -- processes ---------------------------------------------------------------------------

    def _child_env(self, env: Mapping[str, str] | None) -> dict[str, str]:
        child = {k: v for k, v in os.environ.items() if k not in _FAKETIME_VARS}
        pythonpath = child.get("PYTHONPATH")
        child["PYTHONPATH"] = str(ROOT) + (os.pathsep + pythonpath if pythonpath else "")
        if env:
            child.update(env)
        return child

    def _popen(
        self,
        host: Host,
        argv: Sequence[str],
        *,
        faketime_offset_s: float,
        faketime_rate: float,
        env: Mapping[str, str] | None,
        log_name: str | None,
        stdin_pipe: bool,
        stdout_pipe: bool,
        cwd: str | os.PathLike[str] | None,
    ) -> Proc:
        if not self._started or self._closed:
            raise HarnessError("the cluster is not running")
        if faketime_rate <= 0:
            raise ValueError("faketime_rate must be positive")
        self._counter += 1
        if log_name is None:
            log_name = f"{host.name}-{Path(argv[0]).name}"
        log_name = f"{self._counter:03d}-{re.sub(r'[^A-Za-z0-9_.-]', '_', log_name)}"
        log_path = self.tmpdir / "logs" / f"{log_name}.log"
        faked = faketime_offset_s != 0.0 or faketime_rate != 1.0
        truth_path: Path | None = None
        full = list(argv)
        if faked:
            lib = self.libfaketime or find_libfaketime()
            truth_path = self.tmpdir / "truth" / f"{log_name}.json"
            env_bin = shutil.which("env") or "/usr/bin/env"
            # The variables reach the launcher through env(1), not through this Popen, so that
            # `ip` itself is not faked: the launcher must be the first faked process, the one
            # whose start defines libfaketime's origin for the rate.
            full = [
                env_bin,
                f"LD_PRELOAD={lib}",
                f"FAKETIME={faketime_offset_s:+.9f} x{faketime_rate!r}",
                "FAKETIME_DONT_RESET=1",
                sys.executable,
                str(LAUNCHER),
                str(truth_path),
                "--",
                *argv,
            ]
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(
                host._netns_argv(full),
                stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
                stdout=subprocess.PIPE if stdout_pipe else log,
                stderr=log,
                env=self._child_env(env),
                cwd=cwd if cwd is not None else ROOT,
                start_new_session=True,
            )
        proc = Proc(
            host,
            argv,
            popen,
            log_path,
            offset_s=faketime_offset_s,
            rate=faketime_rate,
            truth_path=truth_path,
        )
        self.procs.append(proc)
        if faked:
            # Recorded so that a later run can remove libfaketime's files if this one crashes.
            self._marker["faked_pids"].append(proc.pid)
            _write_marker(self.run_id, self._marker)
        return proc

    # -- diagnostics -------------------------------------------------------------------------

    def dump_logs(self, lines: int = 40) -> str:
        """The last `lines` lines of every process's log, for a failing test's report."""
        parts = []
        for proc in self.procs:
            state = "running" if proc.poll() is None else f"exit {proc.returncode}"
            parts.append(
                f"==== {proc.log_path.name} [{proc.host.name} pid {proc.pid}, {state}] "
                f"{' '.join(proc.argv)[:120]}\n{proc.log_tail(lines)}"
            )
        return "\n".join(parts) if parts else "(no processes)"
