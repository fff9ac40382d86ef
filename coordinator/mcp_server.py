"""`chronotick-mcp`: the corrected clock as Model Context Protocol tools, over stdio.

An AI agent cannot read shared memory, and it should not guess the time from its context or
from a shell's `date`: it gets a timestamp with no error bar, from a clock nobody checked. This
server gives it the same reading a local process gets from ChronoTickClient (corrected time, σ,
the interval that must contain true time, the status), plus what it needs to act on time: a
bounded wait, and (through the node of this host) instants agreed with the peers.

    chronotick-mcp [--shm-name NAME] [--connect HOST:PORT] [--tls-cert F --tls-key F --tls-ca F]

Tools (each returns one JSON object; names carry their units: `_ns` integer nanoseconds since
the Unix epoch, `_s` seconds, `_ms` milliseconds; times are on the corrected clock):

    get_time                          the corrected reading, σ, bound, [earliest, latest], status
    get_daemon_status                 what the daemon says of itself (never an error: ready=false)
    get_time_with_future_uncertainty  σ and bound projected future_seconds ahead
    get_time_bounds                   TrueTime's TT.now(): [earliest_s, latest_s]
    wait_until_time                   block until a corrected instant at most 60 s ahead
    schedule_action                   agree with the peers on an instant (needs a node)
    synchronize_with_peers            the node's peer table, consensus and a verdict (needs a node)

Errors (no daemon, stale data, a clock with no interval yet, a bound wider than the tolerance,
bad arguments, no node, an aborted round) come back as tool errors (`isError: true`) whose text
says what is wrong and what to do: the model reads them and can correct itself, which a
protocol-level error would hide from it. The server stays up through all of them; a daemon
started (or restarted) after the server is picked up by the next call.

It lives in `coordinator` because two of its tools talk to the node (DESIGN.md layering:
`chronotick` never imports `coordinator`); the time tools read the shared-memory segment alone
and work on a host without a node.
"""

from __future__ import annotations

import argparse
import datetime
import math
import sys
import time
from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from chronotick.client import ChronoTickClient, TimeInfo
from chronotick.model import NS_PER_S
from chronotick.shm import (
    ClockDisruptedError,
    IncompatibleLayoutError,
    NoDaemonError,
    NotSynchronizedError,
    ShmError,
    StaleDataError,
)
from coordinator import protocol
from coordinator.agreement import MAX_DELAY_NS, MAX_TOLERANCE_NS, MIN_DELAY_NS
from coordinator.agreement_service import check_action
from coordinator.discovery import parse_host_port
from coordinator.exchange import credentials_from_files, describe_rpc_error, open_channel
from coordinator.proto.chronotick.v1 import peer_pb2 as pb
from coordinator.proto.chronotick.v1 import peer_pb2_grpc as pb_grpc
from coordinator.protocol import InvalidMessage
from coordinator.sync import DistributedSyncCoordinator, SyncAborted, SyncError

#: the longest wait_until_time may block a call (s): an agent's call must come back, and a
#: client's request timeout is often about a minute
MAX_WAIT_S = 60.0
#: a target further in the past than this is taken for a unit mistake (ms, ns, relative s)
MAX_PAST_S = 3600.0
#: the furthest get_time_with_future_uncertainty projects (s): past a day the bound says little
MAX_FUTURE_S = 86_400.0
#: the same range as the node's agreement
MIN_DELAY_S, MAX_DELAY_S = MIN_DELAY_NS / NS_PER_S, MAX_DELAY_NS / NS_PER_S
MAX_TOLERANCE_MS = MAX_TOLERANCE_NS / 1e6
#: the node's own default --listen
DEFAULT_CONNECT = "127.0.0.1:7820"
#: how long to wait for the node to answer a status or peer query (s)
NODE_TIMEOUT_S = 5.0
#: spin only the last fraction of a millisecond: the answer travels over a pipe anyway, and
#: spinning would take CPU from the daemon that publishes the clock
SPIN_MS = 0.2

INSTRUCTIONS = """\
ChronoTick: a corrected clock with an honest error bar, read from this host's daemon.
All times are on the corrected clock. `_ns` fields are integer nanoseconds since the Unix epoch,
`_s` fields seconds (float; absolute times are seconds since the Unix epoch), `_ms` milliseconds.
True time lies within [earliest_s, latest_s] (error_bound_s each side); uncertainty_s is σ (about
68 % of errors within ±σ, 95 % within ±2σ). To order events across hosts compare intervals, not
midpoints: A is before B for sure only if A.latest_s < B.earliest_s. Call get_daemon_status
first when a call says there is no daemon or no interval yet. schedule_action and
synchronize_with_peers need a ChronoTick node (chronotick-node start) on this host."""

READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)

Seconds = Annotated[
    float,
    Field(
        description="seconds ahead of now, >= 0 and at most 86400",
        ge=0.0,
        le=MAX_FUTURE_S,
        allow_inf_nan=False,
    ),
]
Target = Annotated[
    float,
    Field(
        description=(
            "the instant to wake at, in seconds since the Unix epoch on the corrected clock "
            "(for example get_time's corrected_time_s plus a delay); at most 60 s ahead"
        ),
        allow_inf_nan=False,
    ),
]
ToleranceMs = Annotated[
    float,
    Field(
        description=(
            "the largest error bound (ms, each side) acceptable at the target; the call fails "
            "instead of waking on a clock less certain than this. > 0 and at most 60000"
        ),
        gt=0.0,
        le=MAX_TOLERANCE_MS,
        allow_inf_nan=False,
    ),
]
DelaySeconds = Annotated[
    float,
    Field(
        description=f"how far ahead to act (s), between {MIN_DELAY_S:g} and {MAX_DELAY_S:g}",
        ge=MIN_DELAY_S,
        le=MAX_DELAY_S,
        allow_inf_nan=False,
    ),
]
Action = Annotated[
    str,
    Field(
        description=(
            "what every node does at the target: 'mark' (record the instant) or "
            "'write KEY=VALUE' (a replicated write applied at the target)"
        ),
        min_length=1,
        max_length=1024,
    ),
]
WaitForExecution = Annotated[
    bool,
    Field(
        description=(
            "true: block until the target has passed and every node reported when it acted "
            "(only for delay_seconds <= 60); false: return as soon as the round committed"
        )
    ),
]


def _iso(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC).isoformat(
        timespec="microseconds"
    )


def _finite(value: float) -> float | None:
    """JSON has no infinity: an unbounded figure is null."""
    return value if math.isfinite(value) else None


def clock_error(exc: ShmError, shm_name: str) -> ToolError:
    """A reader's exception as a tool error that says which kind it is and what to do.

    The kinds need different reactions from an agent: start a daemon, wait for it to warm up,
    or retry after a clock step, so the message starts with the kind in words.
    """
    if isinstance(exc, NoDaemonError):
        return ToolError(
            f"no daemon: {exc} (start one: chronotick-daemon --shm-name {shm_name}, or "
            "chronotick-node start; or point chronotick-mcp --shm-name at its segment)"
        )
    if isinstance(exc, StaleDataError):
        return ToolError(f"stale data: {exc}. Restart the daemon")
    if isinstance(exc, IncompatibleLayoutError):
        return ToolError(f"incompatible layout: {exc}")
    if isinstance(exc, ClockDisruptedError):
        return ToolError(f"clock disrupted: {exc}. Retry in a few seconds")
    if isinstance(exc, NotSynchronizedError):
        return ToolError(f"not synchronized: {exc}. Retry in a few seconds")
    return ToolError(f"{type(exc).__name__}: {exc}")


def _no_interval(info: TimeInfo) -> ToolError:
    what = (
        "the clock stepped or the host slept; the daemon is restarting its model"
        if info.status.name == "DISRUPTED"
        else f"the daemon has no usable model yet ({info.samples_used} samples; warming up)"
    )
    return ToolError(
        f"not synchronized: status {info.status.name}: {what}. There is no trustworthy time "
        "to give; retry in a few seconds (get_daemon_status shows progress)"
    )


def reading_dict(info: TimeInfo) -> dict[str, Any]:
    """One TimeInfo in the tools' vocabulary (units in the names, seconds as floats)."""
    return {
        "corrected_time_ns": info.corrected_time_ns,
        "corrected_time_s": info.corrected_timestamp,
        "corrected_time_iso": _iso(info.corrected_timestamp),
        "system_time_ns": info.system_time_ns,
        "uncertainty_s": _finite(info.uncertainty_seconds),
        "error_bound_s": _finite(info.error_bound_seconds),
        "earliest_s": _finite(info.earliest_timestamp),
        "latest_s": _finite(info.latest_timestamp),
        "confidence": info.confidence,
        "status": info.status.name,
        "source": info.source,
        "offset_correction_s": info.offset_correction,
        "drift_ppm": info.drift_rate * 1e6,
        "data_age_s": _finite(info.data_age_seconds),
        "samples_used": info.samples_used,
    }


def _check_action(action: str) -> None:
    """The node's own rule, checked here for a clearer error before a round is started."""
    try:
        check_action(action)
    except InvalidMessage as exc:
        raise ToolError(str(exc)) from None


class ChronoTickTools:
    """The tools' bodies, separate from the MCP plumbing so that they can be called directly.

    The SDK runs a synchronous tool in a worker thread, so a body may block (a wait, a gRPC
    call) without stalling the server's other requests. One ChronoTickClient serves every
    thread: readers share a segment safely and re-attach by themselves when the daemon restarts.
    """

    def __init__(
        self,
        shm_name: str | None = None,
        connect: str = DEFAULT_CONNECT,
        *,
        credentials: Any = None,
        server_name: str = "",
        shm_dir: str | None = None,
    ) -> None:
        """`credentials` are grpc.ChannelCredentials for a node that requires mutual TLS."""
        self.clock = ChronoTickClient(shm_name, shm_dir=shm_dir)
        self.shm_name = self.clock.shm_name
        self.connect = connect
        self._credentials = credentials
        self._server_name = server_name

    def close(self) -> None:
        self.clock.close()

    # -- the time tools --------------------------------------------------------------------

    def _reading(self) -> TimeInfo:
        try:
            info = self.clock.get_time()
        except ShmError as exc:
            raise clock_error(exc, self.shm_name) from None
        if not info.status.gives_interval:
            raise _no_interval(info)
        return info

    def get_time(self) -> dict[str, Any]:
        """The corrected time now, with its uncertainty and the interval that contains true time.

        Returns corrected_time_ns (int), corrected_time_s, corrected_time_iso (UTC),
        system_time_ns (the uncorrected host clock), uncertainty_s (σ), error_bound_s (half-width
        of the interval), earliest_s / latest_s (true time lies between), confidence (probability
        under σ that the interval holds), status (SYNCHRONIZED, or FREE_RUNNING when no fresh
        measurement: the bound grows), source, offset_correction_s (what was added to the host
        clock), drift_ppm, data_age_s (age of the newest measurement), samples_used, shm_name.
        Fails when there is no daemon or the clock gives no interval yet (UNKNOWN, DISRUPTED).
        """
        return {**reading_dict(self._reading()), "shm_name": self.shm_name}

    def get_daemon_status(self) -> dict[str, Any]:
        """What the daemon says of itself. Never fails for a missing daemon: says ready=false.

        Returns ready (true when get_time can answer), status (SYNCHRONIZED, FREE_RUNNING,
        UNKNOWN, DISRUPTED, or NO_DAEMON / STALE / INCOMPATIBLE_LAYOUT when it cannot be read),
        message (why not ready), shm_name, and when a daemon runs: node_id, pid,
        published_status, uptime_s, publish_interval_s, poll_interval_s, sources_configured,
        sources_reachable, samples_used, source, publish_age_s.
        """
        try:
            info = self.clock.get_daemon_info()
        except ShmError as exc:
            kinds = {
                NoDaemonError: "NO_DAEMON",
                StaleDataError: "STALE",
                IncompatibleLayoutError: "INCOMPATIBLE_LAYOUT",
            }
            kind = next((v for k, v in kinds.items() if isinstance(exc, k)), "ERROR")
            return {
                "ready": False,
                "status": kind,
                "message": str(clock_error(exc, self.shm_name)),
                "shm_name": self.shm_name,
            }
        ready = info["status"] in ("SYNCHRONIZED", "FREE_RUNNING")
        return {
            "ready": ready,
            "status": info["status"],
            "message": "" if ready else f"no interval yet (status {info['status']})",
            "shm_name": self.shm_name,
            "node_id": info["node_id"] or None,
            "pid": info["pid"],
            "published_status": info["published_status"],
            "uptime_s": info["uptime_seconds"],
            "publish_interval_s": info["publish_interval_seconds"],
            "poll_interval_s": info["poll_interval_seconds"],
            "sources_configured": info["sources_configured"],
            "sources_reachable": info["sources_reachable"],
            "samples_used": info["samples_used"],
            "source": info["source"],
            "publish_age_s": info["publish_age_seconds"],
        }

    def get_time_with_future_uncertainty(self, future_seconds: Seconds) -> dict[str, Any]:
        """The clock's error projected `future_seconds` ahead: how certain a time then will be.

        Use it before committing to act at a future instant with a tolerance: if
        error_bound_s at that instant exceeds the tolerance, the act cannot be that precise.
        Returns future_seconds, the projected reading at that instant (corrected_time_ns,
        corrected_time_s, uncertainty_s, error_bound_s, earliest_s, latest_s, confidence,
        status, ...) and now_uncertainty_s / now_error_bound_s for comparison. The projection
        assumes no new measurement arrives: the bound grows with the maximum drift rate.
        """
        now = self._reading()
        try:
            future = self.clock.get_future_time(future_seconds)
        except ValueError as exc:
            raise ToolError(str(exc)) from None
        except ShmError as exc:
            raise clock_error(exc, self.shm_name) from None
        if not future.status.gives_interval:
            raise _no_interval(future)
        return {
            "future_seconds": future_seconds,
            **reading_dict(future),
            "now_uncertainty_s": now.uncertainty_seconds,
            "now_error_bound_s": now.error_bound_seconds,
        }

    def get_time_bounds(self) -> dict[str, Any]:
        """The interval that contains true time now, like Spanner's TrueTime TT.now().

        Returns earliest_ns, latest_ns, earliest_s, latest_s, midpoint_s, error_bound_s (half the
        width), width_s, status. Event A happened before event B for certain only when
        A.latest_s < B.earliest_s; to make sure a timestamp T has passed everywhere, wait until
        earliest_s > T (commit wait).
        """
        try:
            earliest, latest = self.clock.now_ns()
            status = self.clock.get_time().status.name
        except ShmError as exc:
            raise clock_error(exc, self.shm_name) from None
        return {
            "earliest_ns": earliest,
            "latest_ns": latest,
            "earliest_s": earliest / NS_PER_S,
            "latest_s": latest / NS_PER_S,
            "midpoint_s": (earliest + latest) / 2 / NS_PER_S,
            "error_bound_s": (latest - earliest) / 2 / NS_PER_S,
            "width_s": (latest - earliest) / NS_PER_S,
            "status": status,
        }

    def wait_until_time(self, target: Target, tolerance_ms: ToleranceMs = 1.0) -> dict[str, Any]:
        """Block until the corrected clock reaches `target`, at most 60 s ahead, then return.

        Fails before waiting when the target is more than 60 s ahead (call again, or schedule
        with schedule_action), more than an hour in the past (likely a unit mistake: the target
        is seconds since the Unix epoch), or when the error bound at the target would exceed
        tolerance_ms; fails at wake-up if the clock lost its interval meanwhile. A target
        already passed returns at once with late_s > 0.
        Returns target_s, woke_at_ns / woke_at_s (corrected time after the wake-up; the reply
        itself takes a little longer to reach you), late_s (woke_at minus target; negative is
        early), waited_s (wall time blocked), error_bound_s and status at the wake-up,
        tolerance_ms.
        """
        now = self._reading()
        ahead_s = target - now.corrected_timestamp
        if ahead_s > MAX_WAIT_S:
            raise ToolError(
                f"target {target:.6f} is {ahead_s:.1f} s ahead; wait_until_time blocks at most "
                f"{MAX_WAIT_S:.0f} s (call it again closer to the target)"
            )
        if ahead_s < -MAX_PAST_S:
            raise ToolError(
                f"target {target:.6f} is {-ahead_s:.0f} s in the past; expected seconds since "
                f"the Unix epoch on the corrected clock (now {now.corrected_timestamp:.6f})"
            )
        started = time.monotonic()
        try:
            late_s = self.clock.wait_until(target, tolerance_ms=tolerance_ms, spin_ms=SPIN_MS)
            woke = self.clock.get_time()
        except (ShmError, ValueError) as exc:
            # ToleranceError is a ShmError and a ValueError: it says the bound and tolerance
            if isinstance(exc, ShmError) and not isinstance(exc, ValueError):
                raise clock_error(exc, self.shm_name) from None
            raise ToolError(f"cannot wait to that tolerance: {exc}") from None
        return {
            "target_s": target,
            "woke_at_ns": woke.corrected_time_ns,
            "woke_at_s": woke.corrected_timestamp,
            "late_s": late_s,
            "waited_s": time.monotonic() - started,
            "error_bound_s": _finite(woke.error_bound_seconds),
            "status": woke.status.name,
            "tolerance_ms": tolerance_ms,
        }

    # -- the node tools ----------------------------------------------------------------------
    # `coordinator` is imported inside these bodies only, never at module level: chronotick
    # must not depend on coordinator (DESIGN.md, layering), and without a node these two tools
    # are the only ones that need it.

    def _no_node(self, detail: str) -> ToolError:
        return ToolError(
            f"no node at {self.connect} ({detail}); start chronotick-node "
            f"(chronotick-node start --listen {self.connect} ...) or give chronotick-mcp "
            "--connect HOST:PORT of the node of this host"
        )

    def schedule_action(
        self,
        delay_seconds: DelaySeconds,
        tolerance_ms: ToleranceMs = 1.0,
        action: Action = "mark",
        wait_for_execution: WaitForExecution = False,
    ) -> dict[str, Any]:
        """Agree with every peer of this host's node on an instant delay_seconds ahead at which
        all of them act, each within tolerance_ms on its own corrected clock.

        Every node votes with its projected error bound at the target; all accept: commit,
        every node acts at the target; one refuses or does not answer: abort, nobody acts, and
        the call fails with every participant's reason. Returns action_id, action, committed,
        target_time_ns, target_time_s, target_time_iso, tolerance_ms, uncertainty_s (the widest
        bound any participant expects at the target), participants, votes (node_id, accept,
        reason, bound_at_target_s). With wait_for_execution: also executions (node_id, phase,
        executed_at_s, error_s = executed minus target, bound_s, detail), spread_s (latest minus
        earliest execution), max_error_s, within_tolerance.
        """

        _check_action(action)
        if wait_for_execution and delay_seconds > MAX_WAIT_S:
            raise ToolError(
                f"wait_for_execution blocks at most {MAX_WAIT_S:.0f} s; delay_seconds is "
                f"{delay_seconds}: schedule without waiting, then call wait_until_time later"
            )
        try:
            sync = DistributedSyncCoordinator(
                connect=self.connect,
                credentials=self._credentials,
                server_name=self._server_name,
                timeout_s=NODE_TIMEOUT_S,
            )
        except SyncError as exc:
            raise self._no_node(str(exc)) from None
        with sync:
            try:
                sync.schedule_synchronized_action(delay_seconds, tolerance_ms, action)
            except SyncAborted as exc:
                raise ToolError(
                    f"round {exc.action_id} aborted, nobody acts: " + "; ".join(exc.reasons)
                ) from None
            except (SyncError, ValueError) as exc:
                raise ToolError(
                    f"the node at {self.connect} could not run the round: {exc}"
                ) from None
            result = sync.last_round
            assert result is not None  # set by schedule_synchronized_action
            out: dict[str, Any] = {
                "action_id": result.action_id,
                "action": action,
                "committed": result.committed,
                "target_time_ns": result.target_ns,
                "target_time_s": result.target_time,
                "target_time_iso": _iso(result.target_time),
                "tolerance_ms": result.tolerance_ms,
                "uncertainty_s": _finite(result.uncertainty),
                "participants": list(result.participants),
                "votes": [
                    {"node_id": n, "accept": a, "reason": r, "bound_at_target_s": b}
                    for n, (a, r, b) in sorted(result.votes.items())
                ],
            }
            if not wait_for_execution:
                return out
            wait_s = max(0.0, result.target_time - time.time()) + 3.0
            try:
                final = sync.round_result(result.action_id, wait_s=wait_s)
            except SyncError as exc:
                raise ToolError(
                    f"the round committed but its reports could not be read: {exc}"
                ) from None
        executions = [
            {
                "node_id": e.node_id,
                "phase": e.phase,
                "executed_at_s": e.executed_at,
                "error_s": None
                if e.executed_at is None
                else (e.executed_at_ns - final.target_ns) / NS_PER_S,
                "bound_s": e.bound_s,
                "detail": e.detail,
            }
            for e in sorted(final.executions.values(), key=lambda e: e.node_id)
        ]
        # differences in integer ns: float seconds since the epoch resolve only ~0.24 µs
        ran_ns = [e.executed_at_ns for e in final.executions.values() if e.executed_at is not None]
        errors_ns = [abs(t - final.target_ns) for t in ran_ns]
        out["executions"] = executions
        out["spread_s"] = (max(ran_ns) - min(ran_ns)) / NS_PER_S if ran_ns else None
        out["max_error_s"] = max(errors_ns) / NS_PER_S if errors_ns else None
        # every participant ran, each within the tolerance of the target
        out["within_tolerance"] = (
            len(ran_ns) == len(final.participants) > 0
            and max(errors_ns) <= final.tolerance_ms * 1_000_000
        )
        return out

    def synchronize_with_peers(self) -> dict[str, Any]:
        """How this host's node and its peers agree on the time: its peer table, the peers'
        consensus and a verdict. It reads and changes nothing (the node measures its peers by
        itself, several times a minute).

        Returns node_id, cluster, node (status, source, correction_s = true time minus the host
        clock, uncertainty_s, error_bound_s), peers (node_id, address, discovered_by, state:
        used / falseticker / unusable, offset_s, sigma_s, rtt_s, age_s, peer_status,
        true_offset_s = the peer's view of true time minus the host clock, carried to now by
        the node's drift, disagreement_s = that minus the node's own correction,
        allowed_s = both error bounds plus half the round trip, agrees), consensus (offset_s,
        uncertainty_s, error_bound_s, peers_used, falsetickers; null when there is none),
        max_disagreement_s, verdict (agree, disagree, no_peers, not_synchronized),
        cluster_agrees (true only for agree) and summary (one sentence).
        """
        import grpc

        version = protocol.PROTOCOL_VERSION
        with open_channel(self.connect, self._credentials, self._server_name) as channel:
            stub = pb_grpc.PeerServiceStub(channel)
            try:
                status = stub.GetStatus(
                    pb.StatusRequest(protocol_version=version), timeout=NODE_TIMEOUT_S
                )
            except grpc.RpcError as exc:
                raise self._no_node(describe_rpc_error(exc)) from None
            try:
                table = stub.ListPeers(
                    pb.ListPeersRequest(protocol_version=version), timeout=NODE_TIMEOUT_S
                )
            except grpc.RpcError as exc:
                raise ToolError(
                    f"the node at {self.connect} did not list its peers: {describe_rpc_error(exc)}"
                ) from None
        est = status.estimate
        node_status = protocol.status_name(est.status)
        has_interval = node_status in ("SYNCHRONIZED", "FREE_RUNNING")
        peers: list[dict[str, Any]] = []
        for p in table.peers:
            usable = p.state != "unusable" and p.true_sigma_ns > 0
            # the peer's view is as of its newest exchange, age_s ago; the host clock has
            # drifted since, so carry it to now by the node's drift (as the consensus does)
            true_offset_now_ns = p.true_offset_ns + int(est.drift_ppb * p.age_s)
            disagreement_ns = true_offset_now_ns - est.correction_ns
            allowed_ns = est.bound_ns + p.peer_estimate.bound_ns + p.rtt_ns // 2
            agrees = usable and p.state != "falseticker" and abs(disagreement_ns) <= allowed_ns
            peers.append(
                {
                    "node_id": p.node_id,
                    "address": p.address,
                    "discovered_by": p.discovered_by,
                    "state": p.state,
                    "offset_s": p.offset_ns / NS_PER_S,
                    "sigma_s": p.sigma_ns / NS_PER_S,
                    "rtt_s": p.rtt_ns / NS_PER_S,
                    "age_s": p.age_s,
                    "peer_status": protocol.status_name(p.peer_estimate.status),
                    "true_offset_s": true_offset_now_ns / NS_PER_S if usable else None,
                    "disagreement_s": disagreement_ns / NS_PER_S if usable else None,
                    "allowed_s": allowed_ns / NS_PER_S,
                    "agrees": agrees,
                }
            )
        c = table.consensus
        consensus = (
            {
                "offset_s": c.offset_ns / NS_PER_S,
                "uncertainty_s": c.sigma_ns / NS_PER_S,
                "error_bound_s": c.bound_ns / NS_PER_S,
                "peers_used": c.peers_used,
                "falsetickers": list(c.falsetickers),
            }
            if c.peers_used
            else None
        )
        counted = [p for p in peers if p["state"] != "unusable" and p["true_offset_s"] is not None]
        disagreements = [abs(p["disagreement_s"]) for p in counted]
        if not has_interval:
            verdict = "not_synchronized"
            summary = f"node {status.node_id} has no interval (status {node_status})"
        elif not counted:
            verdict = "no_peers"
            summary = f"node {status.node_id} has no usable peer to compare with"
        elif all(p["agrees"] for p in counted) and not (consensus and consensus["falsetickers"]):
            verdict = "agree"
            summary = (
                f"node {status.node_id} and its {len(counted)} peer(s) agree within their "
                f"bounds (largest disagreement {max(disagreements) * 1e3:.3f} ms)"
            )
        else:
            verdict = "disagree"
            outliers = [p["node_id"] for p in counted if not p["agrees"]]
            summary = f"peers outside the node's interval or rejected: {', '.join(outliers)}"
        return {
            "node_id": status.node_id,
            "cluster": status.cluster,
            "node": {
                "status": node_status,
                "source": est.source,
                "correction_s": est.correction_ns / NS_PER_S,
                "uncertainty_s": est.sigma_ns / NS_PER_S,
                "error_bound_s": est.bound_ns / NS_PER_S,
            },
            "peers": peers,
            "consensus": consensus,
            "max_disagreement_s": max(disagreements) if disagreements else None,
            "verdict": verdict,
            "cluster_agrees": verdict == "agree",
            "summary": summary,
        }


def build_server(tools: ChronoTickTools) -> MCPServer[Any]:
    """The MCP server with every tool registered; the docstrings above are the descriptions
    agents read, so they say what each field means and when a call fails."""
    server: MCPServer[Any] = MCPServer(
        name="chronotick", title="ChronoTick clock", instructions=INSTRUCTIONS, log_level="WARNING"
    )
    for fn in (
        tools.get_time,
        tools.get_daemon_status,
        tools.get_time_with_future_uncertainty,
        tools.get_time_bounds,
    ):
        server.add_tool(fn, annotations=READ_ONLY, structured_output=True)
    server.add_tool(
        tools.wait_until_time,
        annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False),
        structured_output=True,
    )
    server.add_tool(
        tools.schedule_action,
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=False
        ),
        structured_output=True,
    )
    server.add_tool(
        tools.synchronize_with_peers,
        annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True),
        structured_output=True,
    )
    return server


def _credentials(args: argparse.Namespace) -> Any:
    """grpc.ChannelCredentials from --tls-*, or None (plaintext, loopback nodes only)."""
    return credentials_from_files(args.tls_cert or "", args.tls_key or "", args.tls_ca or "")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="chronotick-mcp",
        description="A Model Context Protocol server (stdio) giving AI agents the corrected "
        "clock, its error bounds, bounded waits and (through a node) agreed instants.",
    )
    p.add_argument(
        "--shm-name",
        metavar="NAME",
        help="segment name (default $CHRONOTICK_SHM_NAME or chronotick)",
    )
    p.add_argument(
        "--shm-dir",
        metavar="DIR",
        help="where the segment lives (default $CHRONOTICK_SHM_DIR or /dev/shm)",
    )
    p.add_argument(
        "--connect",
        metavar="HOST:PORT",
        default=DEFAULT_CONNECT,
        help=f"the node of this host, for schedule_action and synchronize_with_peers "
        f"(default {DEFAULT_CONNECT})",
    )
    p.add_argument("--tls-cert", metavar="FILE", help="client certificate for a TLS node")
    p.add_argument("--tls-key", metavar="FILE", help="its private key")
    p.add_argument("--tls-ca", metavar="FILE", help="the cluster's CA certificate")
    p.add_argument(
        "--tls-server-name",
        default="",
        help="name the node's certificate carries, if not its address",
    )
    args = p.parse_args(argv)
    try:
        parse_host_port(args.connect)
        credentials = _credentials(args)
        tools = ChronoTickTools(
            args.shm_name,
            args.connect,
            credentials=credentials,
            server_name=args.tls_server_name,
            shm_dir=args.shm_dir,
        )
    except (ValueError, OSError) as exc:
        p.error(str(exc))
    try:
        build_server(tools).run("stdio")
    except KeyboardInterrupt:
        pass
    finally:
        tools.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
