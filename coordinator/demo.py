"""`chronotick-node demo`: a whole cluster on this machine, judged against the true clock.

The demo starts an embedded NTP server that serves this host's CLOCK_REALTIME, and N nodes as
separate processes on 127.0.0.1, each measuring a simulated base clock of its own offset and
drift. Because every node's clock is simulated, the host's CLOCK_REALTIME is the truth none of
them can read directly, and every report of the agreement service carries it (`host_time_ns`,
read the instant the action ran): so the demo can say how far apart in *true* time the nodes
acted, which a real cluster can only bound.

Steps: start the reference and the nodes; show each node's status every second until all are
SYNCHRONIZED, know all their peers and claim a bound tight enough for the scenarios; run the
three scenarios (simple, periodic, write) through the first node; fire a burst of commit
timestamps from every node at once and check that a commit acknowledged before another began
has the smaller timestamp; print a summary (or, with `--json`, one JSON object as the last
line). Every process it started is stopped, and every segment removed, whatever happens.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import math
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import IO, Any

import grpc

from chronotick.client import ChronoTickClient
from chronotick.shm import SHM_DIR, ShmError
from coordinator import protocol, scenarios
from coordinator.commits import commit_burst, ordering_violations
from coordinator.exchange import describe_rpc_error, open_channel
from coordinator.proto.chronotick.v1 import peer_pb2 as pb
from coordinator.proto.chronotick.v1 import peer_pb2_grpc as pb_grpc
from coordinator.sync import DistributedSyncCoordinator, SyncError

NS_PER_S = 1_000_000_000
NS_PER_MS = 1_000_000
NS_PER_US = 1_000
MIN_NODES, MAX_NODES = 2, 8
MAX_COMMITS = 100_000
#: how long the cluster may take to converge before the demo gives up
CONVERGE_TIMEOUT_S = 60.0
#: a node is ready when its bound, projected as far ahead as the furthest scenario target,
#: leaves room under the tightest tolerance (±0.5 ms): a vote is refused when the bound *at the
#: target* exceeds the tolerance, and just after synchronizing the drift is still uncertain
#: enough that a bound of 0.1 ms now is several ms 5 s later
READY_BOUND_NS = 250 * NS_PER_US
READY_HORIZON_S = max(spec.delay_s for spec in scenarios.SPECS.values())
#: ...and stays ready this many polls in a row (one good reading may be luck)
READY_POLLS = 3
#: simulated clocks are drawn within these (the demo's clocks are badly off on purpose)
OFFSET_SPAN_MS = 50.0
DRIFT_SPAN_PPM = 50.0
#: daemon keys without a flag of their own: quick warm-up, short bursts
FAST_TOML = "warmup_interval_s = 0.5\nburst_size = 2\nburst_spacing_s = 0.05\n"
STOP_TIMEOUT_S = 10.0


class DemoError(RuntimeError):
    """The demo could not run (a process did not start, the cluster did not converge)."""


# -- the cluster -------------------------------------------------------------------------------


@dataclasses.dataclass
class DemoNode:
    node_id: str
    port: int
    shm_name: str
    offset_ms: float
    drift_ppm: float
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


class LocalCluster:
    """An NTP reference and N nodes as child processes on loopback.

    Children run in sessions of their own, so a Ctrl-C reaches the demo alone and the demo
    stops them in order (SIGTERM, which makes a node remove its segment, then SIGKILL after
    STOP_TIMEOUT_S); `stop` also removes whatever segment files remain, so an interrupted demo
    leaves nothing behind.
    """

    def __init__(self, nodes: int, directory: Path) -> None:
        self.directory = directory
        token = uuid.uuid4().hex[:8]
        self.cluster = f"demo-{token}"
        ports = _free_ports(nodes)
        self.nodes = [
            DemoNode(
                node_id=f"d{i + 1}",
                port=ports[i],
                shm_name=f"chronotick-demo-{token}-d{i + 1}",
                offset_ms=round(OFFSET_SPAN_MS * _spread(i, 0.3), 3),
                drift_ppm=round(DRIFT_SPAN_PPM * _spread(i, 0.8), 3),
                log_path=directory / f"d{i + 1}.log",
            )
            for i in range(nodes)
        ]
        self.ntp_address = ""
        self.processes: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[bytes]] = []

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def _spawn(
        self, args: list[str], log_path: Path, stdout: int | None = None
    ) -> subprocess.Popen[bytes]:
        log = open(log_path, "wb")  # closed by stop(), after the process ended
        self._logs.append(log)
        process = subprocess.Popen(
            [sys.executable, *args],
            stdin=subprocess.DEVNULL,
            stdout=log if stdout is None else stdout,
            stderr=log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )
        self.processes.append(process)
        return process

    def start(self) -> None:
        self.ntp_address = self._start_reference()
        for node in self.nodes:
            config = self.directory / f"{node.node_id}.toml"
            config.write_text(
                FAST_TOML
                + "\n[simulated_clock]\n"
                + f"offset_ms = {node.offset_ms!r}\ndrift_ppm = {node.drift_ppm!r}\n"
                + f"seed = {node.port}\n"
            )
            args = ["-m", "coordinator.cli", "start", "--node-id", node.node_id,
                    "--cluster", self.cluster, "--listen", node.address, "--no-discovery",
                    "--server", self.ntp_address, "--shm-name", node.shm_name,
                    "--min-poll", "1", "--max-poll", "4", "--peer-poll", "1",
                    "--config", str(config)]  # fmt: skip
            for other in self.nodes:
                if other is not node:
                    args += ["--peer", other.address]
            node.process = self._spawn(args, node.log_path)

    def _start_reference(self) -> str:
        """The embedded NTP server on a port the kernel picks; returns HOST:PORT from the
        line it prints once it listens."""
        process = self._spawn(
            ["-m", "chronotick.ntp.server_cli", "--listen", "127.0.0.1:0"],
            self.directory / "ntp.log",
            stdout=subprocess.PIPE,
        )
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 15.0)
        line = process.stdout.readline().decode(errors="replace") if ready else ""
        found = re.search(r" on (127\.0\.0\.1:\d+)", line)
        if not found:
            raise DemoError(f"the NTP reference did not start (it said {line.strip()!r})")
        return found.group(1)

    def exited(self) -> list[DemoNode]:
        return [n for n in self.nodes if n.process is not None and n.process.poll() is not None]

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT_S)
            if process.stdout is not None:
                process.stdout.close()
        for log in self._logs:
            log.close()
        for node in self.nodes:
            _remove_segment_files(node.shm_name)


def _spread(i: int, phase: float) -> float:
    """The i-th point in (-1, 1) of a golden-ratio sequence: any number of nodes gets clocks
    well apart from each other and from the truth, the same ones on every run."""
    return ((phase + i * 0.618_034) % 1.0) * 2.0 - 1.0


def _free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 now, all distinct (held open together while choosing). A node
    binds its port a moment later: a lost race shows as a node that exits with a bind error."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def _remove_segment_files(name: str) -> None:
    """The segment, the writer's lock file and any temporary file a killed writer left."""
    paths = [os.path.join(SHM_DIR, name), os.path.join(SHM_DIR, f".{name}.lock")]
    paths += glob.glob(os.path.join(SHM_DIR, f".{glob.escape(name)}.*.tmp"))
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


# -- convergence and the live view ---------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class NodeView:
    node_id: str
    status: str
    correction_ns: int
    sigma_ns: int
    bound_ns: int
    #: the bound READY_HORIZON_S ahead, as the node's segment projects it (None: unreadable)
    bound_ahead_ns: int | None
    peers: tuple[str, ...]
    error: str = ""

    def ready(self, expected_peers: int) -> bool:
        return (
            self.status == "SYNCHRONIZED"
            and len(self.peers) >= expected_peers
            and self.bound_ahead_ns is not None
            and 0 < self.bound_ahead_ns <= READY_BOUND_NS
        )


def projected_bound_ns(shm_name: str, seconds: float) -> int | None:
    """The error bound `seconds` from now by the node's published model (what its vote on a
    target that far ahead will use); None while the segment gives no interval."""
    try:
        with ChronoTickClient(shm_name) as clock:
            info = clock.get_future_time(seconds)
    except ShmError:
        return None
    if not info.status.gives_interval or not math.isfinite(info.error_bound_seconds):
        return None
    return round(info.error_bound_seconds * NS_PER_S)


def poll(node: DemoNode) -> NodeView:
    """GetStatus and ListPeers of one node; an unreachable node is a row that says why."""
    version = protocol.PROTOCOL_VERSION
    try:
        with open_channel(node.address, None) as channel:
            stub = pb_grpc.PeerServiceStub(channel)
            status = stub.GetStatus(pb.StatusRequest(protocol_version=version), timeout=1.0)
            peers = stub.ListPeers(pb.ListPeersRequest(protocol_version=version), timeout=1.0)
    except grpc.RpcError as exc:
        return NodeView(node.node_id, "UNREACHABLE", 0, 0, 0, None, (), describe_rpc_error(exc))
    estimate = status.estimate
    return NodeView(
        node_id=node.node_id,
        status=protocol.status_name(estimate.status),
        correction_ns=estimate.correction_ns,
        sigma_ns=estimate.sigma_ns,
        bound_ns=estimate.bound_ns,
        bound_ahead_ns=projected_bound_ns(node.shm_name, READY_HORIZON_S),
        peers=tuple(sorted(p.node_id for p in peers.peers)),
    )


def view_table(views: Sequence[NodeView], elapsed_s: float, nodes: int) -> list[str]:
    lines = [
        f"  {elapsed_s:4.0f} s  {'NODE':<5} {'STATUS':<13} {'CORRECTION ms':>13} {'σ µs':>8} "
        f"{'BOUND µs':>9} {f'AT +{READY_HORIZON_S:g} s':>9}  PEERS"
    ]
    for v in views:
        if v.error:
            lines.append(f"{'':9}{v.node_id:<5} {v.status:<13} {v.error[:60]}")
            continue
        mark = "✓" if v.ready(nodes - 1) else " "
        ahead = "—" if v.bound_ahead_ns is None else f"{v.bound_ahead_ns / NS_PER_US:.1f}"
        lines.append(
            f"{'':9}{v.node_id:<5} {v.status:<13} {v.correction_ns / NS_PER_MS:>+13.3f} "
            f"{v.sigma_ns / NS_PER_US:>8.1f} {v.bound_ns / NS_PER_US:>9.1f} {ahead:>9}  "
            f"{len(v.peers)}/{nodes - 1} {' '.join(v.peers)} {mark}"
        )
    return lines


def converge(cluster: LocalCluster, out: IO[str], live: bool) -> float:
    """Poll every node each second, showing the table, until every node has been ready for
    READY_POLLS polls in a row; returns the seconds it took. Raises DemoError on a node that
    exits or on the timeout, with what the laggards' logs say."""
    started = time.monotonic()
    streak = 0
    drawn = 0
    ticks = 0
    nodes = len(cluster.nodes)
    while True:
        dead = cluster.exited()
        if dead:
            node = dead[0]
            assert node.process is not None
            raise DemoError(
                f"node {node.node_id} exited with code {node.process.returncode}; its log:\n"
                + node.log_tail()
            )
        views = [poll(n) for n in cluster.nodes]
        elapsed = time.monotonic() - started
        lines = view_table(views, elapsed, nodes)
        if live and drawn:
            out.write(f"\x1b[{drawn}F\x1b[J")  # back to the table's first line, redraw
        out.write("\n".join(lines) + "\n")
        out.flush()
        drawn = len(lines)
        streak = streak + 1 if all(v.ready(nodes - 1) for v in views) else 0
        if streak >= READY_POLLS:
            return elapsed
        if elapsed > CONVERGE_TIMEOUT_S:
            laggards = [
                n for n, v in zip(cluster.nodes, views, strict=True) if not v.ready(nodes - 1)
            ]
            detail = "\n".join(f"--- {n.node_id} ({n.log_path}):\n{n.log_tail()}" for n in laggards)
            raise DemoError(
                f"the cluster did not converge within {CONVERGE_TIMEOUT_S:.0f} s: not ready: "
                + ", ".join(n.node_id for n in laggards)
                + f" (ready means SYNCHRONIZED, all {nodes - 1} peers known, bound "
                + f"{READY_HORIZON_S:g} s ahead ≤ {READY_BOUND_NS / NS_PER_US:.0f} µs)\n{detail}"
            )
        ticks += 1  # one table a second, however long the polls took
        time.sleep(max(0.0, started + ticks - time.monotonic()))


# -- scenarios against the true clock --------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TrueRound:
    action_id: str
    committed: bool
    #: node id -> host CLOCK_REALTIME at execution minus the target (ns); None: did not run
    errors_ns: dict[str, int | None]
    #: node id -> its corrected clock minus the host clock at that instant (ns): the part of
    #: the error that is the clock's; the rest is how late the node woke
    clock_errors_ns: dict[str, int]
    spread_ns: int | None
    reasons: tuple[str, ...]
    #: node id -> why it did not run (its report's phase and detail), for those that did not
    not_run: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class TrueScenario:
    """A scenario judged in true time: what the nodes' own clocks cannot tell."""

    result: scenarios.ScenarioResult
    rounds: tuple[TrueRound, ...]

    @property
    def tolerance_ns(self) -> int:
        return round(self.result.tolerance_ms * NS_PER_MS)

    @property
    def max_spread_ns(self) -> int | None:
        return max((r.spread_ns for r in self.rounds if r.spread_ns is not None), default=None)

    @property
    def max_error_ns(self) -> int | None:
        errors = [abs(e) for r in self.rounds for e in r.errors_ns.values() if e is not None]
        return max(errors, default=None)

    @property
    def max_clock_error_ns(self) -> int | None:
        errors = [abs(e) for r in self.rounds for e in r.clock_errors_ns.values()]
        return max(errors, default=None)

    @property
    def within_tolerance(self) -> bool:
        """Every round committed and every participant ran it within the tolerance of the
        target in true time."""
        return bool(self.rounds) and all(
            r.committed
            and r.errors_ns
            and all(e is not None and abs(e) <= self.tolerance_ns for e in r.errors_ns.values())
            for r in self.rounds
        )

    def as_dict(self) -> dict[str, Any]:
        spread, error, clock = self.max_spread_ns, self.max_error_ns, self.max_clock_error_ns
        return {
            "actions": self.result.actions,
            "tolerance_ms": self.result.tolerance_ms,
            "max_spread_us": None if spread is None else round(spread / NS_PER_US, 1),
            "max_error_us": None if error is None else round(error / NS_PER_US, 1),
            "max_clock_error_us": None if clock is None else round(clock / NS_PER_US, 1),
            "within_tolerance": self.within_tolerance,
            "self_reported_within_tolerance": self.result.within_tolerance,
            "rounds": [
                {
                    "action_id": r.action_id,
                    "committed": r.committed,
                    "spread_us": None if r.spread_ns is None else round(r.spread_ns / NS_PER_US, 1),
                    "error_us": {
                        n: None if e is None else round(e / NS_PER_US, 1)
                        for n, e in sorted(r.errors_ns.items())
                    },
                    "clock_error_us": {
                        n: round(e / NS_PER_US, 1) for n, e in sorted(r.clock_errors_ns.items())
                    },
                    "reasons": list(r.reasons),
                    "not_run": dict(sorted(r.not_run.items())),
                }
                for r in self.rounds
            ],
        }


def judge(result: scenarios.ScenarioResult) -> TrueScenario:
    """Each participant's true error: the host clock when it ran minus the target. The target
    is an instant of corrected time, which is meant to be true time, so a perfect cluster
    shows zero error and zero spread."""
    rounds = []
    for r in result.rounds:
        # the RoundResult carries the target as float seconds: exact to ~0.1 µs at today's epoch
        target_ns = round(r.target_time * NS_PER_S)
        errors: dict[str, int | None] = {}
        clock_errors: dict[str, int] = {}
        not_run: dict[str, str] = {}
        for node_id in r.participants:
            e = r.executions.get(node_id)
            if e is None or e.executed_at is None or e.host_time_ns <= 0:
                errors[node_id] = None
                not_run[node_id] = "no report" if e is None else f"{e.phase} {e.detail}".strip()
                continue
            errors[node_id] = e.host_time_ns - target_ns
            clock_errors[node_id] = round(e.executed_at * NS_PER_S) - e.host_time_ns
        ran_at = [target_ns + e for e in errors.values() if e is not None]
        spread = max(ran_at) - min(ran_at) if r.committed and ran_at else None
        rounds.append(
            TrueRound(r.action_id, r.committed, errors, clock_errors, spread, r.reasons, not_run)
        )
    return TrueScenario(result, tuple(rounds))


def run_scenarios(cluster: LocalCluster, say: Callable[[str], None]) -> dict[str, TrueScenario]:
    judged = {}
    first = cluster.nodes[0]
    with DistributedSyncCoordinator(node_id=first.node_id, connect=first.address) as sync:
        for name in scenarios.NAMES:
            spec = scenarios.SPECS[name]
            say(f"scenario {name}: {spec.what}, through {first.node_id} ...")
            verdict = judge(scenarios.run(sync, name))
            for r in verdict.rounds:
                if not r.committed:
                    say(f"  {r.action_id}: ABORTED: {'; '.join(r.reasons)}")
                    continue
                errors = "  ".join(
                    f"{n} {'—' if e is None else f'{e / NS_PER_US:+.1f}'}"
                    for n, e in sorted(r.errors_ns.items())
                )
                spread = "—" if r.spread_ns is None else f"{r.spread_ns / NS_PER_US:.1f}"
                clock = max((abs(e) for e in r.clock_errors_ns.values()), default=0)
                say(
                    f"  {r.action_id}: ran at target + (µs, true time): {errors};  spread "
                    f"{spread} µs; clocks within {clock / NS_PER_US:.1f} µs of the truth"
                )
                for node_id, why in sorted(r.not_run.items()):
                    say(f"    {node_id} did not run it: {why}")
            judged[name] = verdict
    return judged


# -- commit timestamps ---------------------------------------------------------------------


# -- the whole demo ------------------------------------------------------------------------


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM ends the demo like Ctrl-C does: through the `finally` that stops the nodes."""

    def on_term(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _mean(values: Sequence[int]) -> float | None:
    return sum(values) / len(values) if values else None


def main(nodes: int, as_json: bool, commits: int) -> int:
    """Run the demo; 0 when every scenario held its tolerance in true time and every commit
    succeeded in real-time order, 1 otherwise (or when the cluster could not run), 2 on bad
    arguments."""
    if not MIN_NODES <= nodes <= MAX_NODES:
        print(f"chronotick-node demo: --nodes must be {MIN_NODES} to {MAX_NODES}", file=sys.stderr)
        return 2
    if not 1 <= commits <= MAX_COMMITS:
        print(f"chronotick-node demo: --commits must be 1 to {MAX_COMMITS}", file=sys.stderr)
        return 2
    # progress goes where it does not spoil the output asked for: stderr under --json
    out = sys.stderr if as_json else sys.stdout

    def say(text: str) -> None:
        print(text, file=out, flush=True)

    began = time.monotonic()
    directory = Path(tempfile.mkdtemp(prefix="chronotick-demo-"))
    cluster = LocalCluster(nodes, directory)
    keep_logs = False
    summary: dict[str, Any] = {"nodes": nodes, "cluster": cluster.cluster}
    try:
        with _terminate_as_interrupt():
            cluster.start()
            summary["pids"] = cluster.pids
            say(
                f"ChronoTick demo: {nodes} nodes on 127.0.0.1 (cluster {cluster.cluster}); "
                f"reference: NTP server on {cluster.ntp_address} serving this host's clock, "
                "the truth the nodes cannot read"
            )
            for n in cluster.nodes:
                say(
                    f"  {n.node_id}  {n.address}  simulated clock {n.offset_ms:+8.3f} ms, "
                    f"{n.drift_ppm:+7.3f} ppm  (segment /dev/shm/{n.shm_name})"
                )
            say(
                "converging: waiting for every node to be SYNCHRONIZED, know "
                + ("the other node" if nodes == 2 else f"the {nodes - 1} others")
                + f" and project a bound ≤ {READY_BOUND_NS / NS_PER_US:.0f} µs "
                + f"{READY_HORIZON_S:g} s ahead"
            )
            converge_s = converge(cluster, out, live=out.isatty())
            say(f"converged in {converge_s:.1f} s\n")
            summary["converge_s"] = round(converge_s, 1)

            judged = run_scenarios(cluster, say)
            summary["scenarios"] = {name: s.as_dict() for name, s in judged.items()}

            say(f"\ncommits: {commits} commit timestamps from {nodes} nodes at once ...")
            records, failures, burst_s = commit_burst(
                {n.node_id: n.address for n in cluster.nodes}, commits
            )
            violations = ordering_violations(records)
            wait = _mean([c.commit_wait_ns for c in records])
            bound = _mean([c.max_bound_ns for c in records])
            latency = _mean([c.true_ack_ns - c.true_start_ns for c in records])
            summary.update(
                commits=len(records),
                commit_failures=len(failures),
                ordering_violations=violations,
                mean_commit_wait_ms=None if wait is None else round(wait / NS_PER_MS, 3),
                mean_bound_ms=None if bound is None else round(bound / NS_PER_MS, 3),
                mean_commit_latency_ms=None if latency is None else round(latency / NS_PER_MS, 3),
                commit_burst_s=round(burst_s, 2),
            )
            for failure in failures[:5]:
                say(f"  commit failed: {failure}")
    except (DemoError, SyncError) as exc:
        keep_logs = True
        summary["error"] = str(exc)
        say(f"\ndemo failed: {exc}")
    except KeyboardInterrupt:
        say("\ninterrupted: stopping the nodes")
        summary["error"] = "interrupted"
        keep_logs = False
    finally:
        cluster.stop()
    summary["duration_s"] = round(time.monotonic() - began, 1)
    # timing on a shared machine depends on what else runs: say how busy it was
    summary["load_avg_1m"] = round(os.getloadavg()[0], 2)
    ok = (
        "error" not in summary
        and all(s["within_tolerance"] for s in summary["scenarios"].values())
        and summary["ordering_violations"] == 0
        and summary["commit_failures"] == 0
        and summary["commits"] == commits
    )
    summary["ok"] = ok
    if not ok and "error" not in summary:
        keep_logs = True
    if keep_logs:
        summary["logs"] = str(directory)
        say(f"node logs kept in {directory}")
    else:
        shutil.rmtree(directory, ignore_errors=True)
    if as_json:
        print(json.dumps(summary), flush=True)
    elif "error" not in summary:
        print(_human_summary(summary))
    return 0 if ok else 1


def _human_summary(s: dict[str, Any]) -> str:
    lines = [
        "",
        f"summary: {s['nodes']} nodes, measured against the true clock (this host's "
        "CLOCK_REALTIME, which the nodes' simulated clocks hide from them)",
        f"  {'scenario':<10} {'actions':>7} {'tolerance':>10} {'max spread':>12} "
        f"{'max error':>11} {'clock error':>12}  verdict",
    ]
    for name, sc in s["scenarios"].items():
        spread = "—" if sc["max_spread_us"] is None else f"{sc['max_spread_us']:.1f} µs"
        error = "—" if sc["max_error_us"] is None else f"{sc['max_error_us']:.1f} µs"
        clock = "—" if sc["max_clock_error_us"] is None else f"{sc['max_clock_error_us']:.1f} µs"
        verdict = "OK" if sc["within_tolerance"] else "OUT OF TOLERANCE"
        lines.append(
            f"  {name:<10} {sc['actions']:>7} {'±' + format(sc['tolerance_ms'], 'g') + ' ms':>10} "
            f"{spread:>12} {error:>11} {clock:>12}  {verdict}"
        )
    lines.append(
        "  (error: when a node acted, in true time, minus the target; clock error: its corrected"
        " clock minus true time then; the difference is how late the node's thread woke)"
    )
    wait, bound = s["mean_commit_wait_ms"], s["mean_bound_ms"]
    lines.append(
        f"  commits: {s['commits']} in {s['commit_burst_s']:.1f} s"
        + (f" ({s['commit_failures']} failed)" if s["commit_failures"] else "")
        + f"; ordering violations: {s['ordering_violations']}"
        + ("" if wait is None else f"; mean commit wait {wait:.3f} ms")
        + ("" if bound is None else f" (mean bound ±{bound:.3f} ms)")
    )
    lines.append(
        f"  converged in {s['converge_s']:.1f} s; the whole demo took {s['duration_s']:.0f} s"
    )
    lines.append("PASS" if s["ok"] else "FAIL")
    return "\n".join(lines)
