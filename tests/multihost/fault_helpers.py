"""Helpers for the agreement fault tests: a fake node served from the test process, network
faults on a host's veth, and short-hands for the agreement calls.

The fake node sits on the bridge address (10.77.K.254, the root namespace), so the nodes in the
namespaces reach it like any other peer once they are given `--peer 10.77.K.254:PORT`. It runs
on the test process's clock, which is the true one; `lie_ns` makes it claim a clock that far
ahead while its estimate says the clock is right within `bound_ns`.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import grpc

from coordinator import protocol
from coordinator.agreement_service import deadlines
from coordinator.proto.chronotick.v1 import agreement_pb2 as apb
from coordinator.proto.chronotick.v1 import agreement_pb2_grpc as apb_grpc
from coordinator.proto.chronotick.v1 import peer_pb2 as pb
from coordinator.proto.chronotick.v1 import peer_pb2_grpc as pb_grpc
from tests.multihost.netns import Host
from tests.multihost.nodes import Node, _channel

V = protocol.PROTOCOL_VERSION
NS_PER_S = 1_000_000_000
MS = 1_000_000


@dataclasses.dataclass
class FakeAction:
    """What the fake did about one proposal (true times: the test process's clock)."""

    request: apb.ProposeRequest
    voted_true_ns: int
    #: (commit?, true arrival) of every Decide, duplicates included
    decisions: list[tuple[bool, int]] = dataclasses.field(default_factory=list)
    phase: str = "voted"
    #: the true instant it "acted": when its own (lying) clock read the target
    executed_true_ns: int = 0


class FakeNode(pb_grpc.PeerServiceServicer, apb_grpc.AgreementServiceServicer):
    """A peer and participant in this process: answers exchanges with a clock `lie_ns` ahead of
    the truth and an estimate claiming ±`bound_ns`; votes accept with that bound at any target
    (it believes its clock); executes a committed action when its own clock reads the target.

    `propose_hook(request)`, when set, runs inside Propose before the vote is returned: the
    tests use it to hold the round open (the initiator cannot decide without this vote) while
    they kill or delay another participant at a known point of the protocol.
    """

    def __init__(self, node_id: str, cluster: str, *, lie_ns: int = 0, bound_ns: int = 50_000):
        self.node_id = node_id
        self.cluster = cluster
        self.lie_ns = lie_ns
        self.bound_ns = bound_ns
        self.propose_hook: Callable[[apb.ProposeRequest], None] | None = None
        self.actions: dict[str, FakeAction] = {}
        self.exchanges = 0
        self.port = 0
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None
        self._timers: list[threading.Timer] = []

    def own_now_ns(self) -> int:
        return time.time_ns() + self.lie_ns

    def estimate(self) -> pb.ClockEstimate:
        return pb.ClockEstimate(
            correction_ns=0,
            sigma_ns=self.bound_ns // 3,
            bound_ns=self.bound_ns,
            status=pb.CLOCK_STATUS_SYNCHRONIZED,
            drift_ppb=0.0,
            source="ntp",
        )

    # -- PeerService -------------------------------------------------------------------------

    def Exchange(
        self, request: pb.ExchangeRequest, context: grpc.ServicerContext
    ) -> pb.ExchangeReply:
        t2 = self.own_now_ns()
        self.exchanges += 1
        return pb.ExchangeReply(
            protocol_version=V,
            node_id=self.node_id,
            client_send_ns=request.client_send_ns,
            server_receive_ns=t2,
            server_send_ns=self.own_now_ns(),
            estimate=self.estimate(),
        )

    # -- AgreementService (the participant's side) -------------------------------------------

    def Propose(self, request: apb.ProposeRequest, context: grpc.ServicerContext) -> apb.VoteReply:
        hook = self.propose_hook
        if hook is not None:
            hook(request)
        with self._lock:
            if request.action_id not in self.actions:
                self.actions[request.action_id] = FakeAction(request, time.time_ns())
        return apb.VoteReply(
            protocol_version=V,
            node_id=self.node_id,
            action_id=request.action_id,
            accept=True,
            reason="ok",
            sigma_at_target_ns=self.bound_ns // 3,
            bound_at_target_ns=self.bound_ns,
        )

    def Decide(self, request: apb.DecideRequest, context: grpc.ServicerContext) -> apb.DecideReply:
        now_true = time.time_ns()
        with self._lock:
            action = self.actions.get(request.action_id)
            if action is None:
                phase = "unknown"
            else:
                action.decisions.append((request.commit, now_true))
                in_time = self.own_now_ns() < action.request.commit_deadline_ns
                if action.phase == "voted":
                    if not request.commit:
                        action.phase = "aborted"
                    elif in_time:
                        action.phase = "committed"
                        self._schedule(action)
                    else:
                        action.phase = "expired"
                elif not request.commit and action.phase == "committed":
                    action.phase = "aborted"
                phase = action.phase
        return apb.DecideReply(
            protocol_version=V, node_id=self.node_id, action_id=request.action_id, phase=phase
        )

    def _schedule(self, action: FakeAction) -> None:
        """Act when the own clock reads the target: lie_ns early in true time."""

        def run() -> None:
            with self._lock:
                if action.phase == "committed":
                    action.phase = "executed"
                    action.executed_true_ns = time.time_ns()

        delay_s = max(0.0, (action.request.target_ns - self.own_now_ns()) / NS_PER_S)
        timer = threading.Timer(delay_s, run)
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def GetReport(
        self, request: apb.ReportRequest, context: grpc.ServicerContext
    ) -> apb.ReportReply:
        with self._lock:
            action = self.actions.get(request.action_id)
            if action is None:
                return apb.ReportReply(
                    protocol_version=V,
                    node_id=self.node_id,
                    action_id=request.action_id,
                    phase="unknown",
                )
            executed = action.phase == "executed"
            true_ns = action.executed_true_ns
            return apb.ReportReply(
                protocol_version=V,
                node_id=self.node_id,
                action_id=request.action_id,
                phase=action.phase,
                # what its own clock read: the target, as it believes
                executed_at_ns=true_ns + self.lie_ns if executed else 0,
                bound_ns=self.bound_ns if executed else 0,
                base_time_ns=true_ns + self.lie_ns if executed else 0,
                host_time_ns=true_ns if executed else 0,
            )

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, address: str) -> FakeNode:
        server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=32))
        pb_grpc.add_PeerServiceServicer_to_server(self, server)
        apb_grpc.add_AgreementServiceServicer_to_server(self, server)
        self.port = server.add_insecure_port(f"{address}:0")
        assert self.port, f"cannot listen on {address}"
        server.start()
        self._server = server
        self.address = f"{address}:{self.port}"
        return self

    def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        if self._server is not None:
            self._server.stop(grace=None)


# -- faults: a host's link down, a node paused ------------------------------------------------


def set_link(host: Host, up: bool) -> None:
    ip = shutil.which("ip") or shutil.which("ip", path="/usr/sbin:/sbin") or "ip"
    subprocess.run([ip, "link", "set", host.veth, "up" if up else "down"], check=True, timeout=10)


@contextlib.contextmanager
def partitioned(host: Host) -> Iterator[None]:
    """The host's cable pulled: its veth end on the bridge down, both ways."""
    set_link(host, up=False)
    try:
        yield
    finally:
        set_link(host, up=True)


def pause(node: Node) -> None:
    """SIGSTOP the node's whole process group (the faked launcher and the node).

    Its kernel still accepts connections and data, so every message sent to it is queued and
    handled when it resumes: delivery to its handlers is delayed by exactly the pause, while
    its clock (the host's, skewed) keeps running. This is how the tests delay messages: the
    kernel here has no `netem` qdisc (`tc qdisc add ... netem` says "Specified qdisc kind is
    unknown"), and a paused receiver is the same fault as far as the protocol can tell.
    """
    os.killpg(node.proc.pid, signal.SIGSTOP)


def resume(node: Node) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(node.proc.pid, signal.SIGCONT)


@contextlib.contextmanager
def paused(node: Node) -> Iterator[None]:
    pause(node)
    try:
        yield
    finally:
        resume(node)


# -- agreement calls from the test process ------------------------------------------------------


def agreement(node: Node) -> apb_grpc.AgreementServiceStub:
    return apb_grpc.AgreementServiceStub(_channel(node.address))


def report(node: Node, action_id: str, timeout_s: float = 2.0) -> apb.ReportReply:
    reply: apb.ReportReply = agreement(node).GetReport(
        apb.ReportRequest(protocol_version=V, action_id=action_id), timeout=timeout_s
    )
    return reply


@dataclasses.dataclass(frozen=True)
class TimedRound:
    """A StartRound reply and when the call was made and answered (the test's true clock)."""

    reply: apb.RoundReply
    delay_ns: int
    called_ns: int
    returned_ns: int

    @property
    def deadlines(self) -> tuple[int, int, int]:
        """(vote deadline, commit deadline, target) on the initiator's corrected clock (true
        time within its bound), as `deadlines()` made them from the round's start."""
        return deadlines(self.reply.target_ns - self.delay_ns, self.delay_ns)

    @property
    def duration_s(self) -> float:
        return (self.returned_ns - self.called_ns) / NS_PER_S


def start_round(
    initiator: Node,
    action_id: str,
    delay_s: float,
    tolerance_ms: float,
    participants: list[str] | None = None,
) -> TimedRound:
    request = apb.StartRoundRequest(
        protocol_version=V,
        delay_ns=round(delay_s * NS_PER_S),
        tolerance_ns=round(tolerance_ms * MS),
        action="mark",
        action_id=action_id,
        participants=participants or [],
    )
    called = time.time_ns()
    reply = agreement(initiator).StartRound(request, timeout=delay_s + 10)
    return TimedRound(reply, request.delay_ns, called, time.time_ns())


def get_round(initiator: Node, action_id: str, wait_s: float) -> apb.RoundReply:
    request = apb.GetRoundRequest(
        protocol_version=V,
        action_id=action_id,
        wait_reports=wait_s > 0,
        timeout_ms=round(wait_s * 1000),
    )
    reply: apb.RoundReply = agreement(initiator).GetRound(request, timeout=wait_s + 10)
    return reply
