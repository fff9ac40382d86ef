"""The agreement service: the I/O around `coordinator.agreement` (gRPC calls, threads, the
clock), and TrueTime-style commit timestamps.

A node plays both roles. As a participant it votes with its own clock's outlook at the target,
takes the decision, and runs each committed action in a thread of its own that waits with
`ChronoTickClient.wait_until` on the node's published clock. As an initiator (asked by a local
client through `StartRound` or `CommitTimestamp`) it calls every participant concurrently,
each call with a deadline taken from the proposal, so a slow, dead or partitioned peer costs
at most that deadline and never hangs the round.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import Protocol

import grpc

from chronotick.client import ChronoTickClient
from chronotick.daemon.stopper import Stopper
from chronotick.model import ClockModel
from chronotick.precise_sleep import sleep_until_realtime_ns
from chronotick.shm import ShmError
from coordinator import protocol
from coordinator.agreement import (
    ACTION_ID_RE,
    MAX_DELAY_NS,
    MAX_TOLERANCE_NS,
    MIN_DELAY_NS,
    MIN_LEAD_NS,
    ClockOutlook,
    Participant,
    Phase,
    Proposal,
    Report,
    Round,
    Vote,
)
from coordinator.exchange import PeerClient, describe_rpc_error
from coordinator.metrics import AgreementStats
from coordinator.proto.chronotick.v1 import agreement_pb2 as apb
from coordinator.proto.chronotick.v1 import agreement_pb2_grpc as apb_grpc
from coordinator.proto.chronotick.v1 import peer_pb2 as pb
from coordinator.proto.chronotick.v1 import peer_pb2_grpc as pb_grpc
from coordinator.service import Refusal, guarded

log = logging.getLogger("chronotick.agreement")

NS_PER_S = 1_000_000_000
MS = 1_000_000
#: a decision is delivered within this even when the commit deadline is further away: a
#: participant that hangs must not hold the initiator's handler for the length of the delay
DECIDE_TIMEOUT_S = 5.0
#: a GetRound that waits for reports gives up after this (or the caller's deadline)
MAX_REPORT_WAIT_S = 60.0
#: participants keep at most this many actions (old ones are forgotten first)
MAX_HELD_ACTIONS = 10_000
MAX_PARTICIPANTS = 64
#: how long a participant remembers an action after its target (reports stay readable)
KEEP_NS = 600 * NS_PER_S
#: commit wait gives up (DEADLINE_EXCEEDED) past this: a bound this wide is no bound
MAX_COMMIT_WAIT_NS = 10 * NS_PER_S
ROUNDS_KEPT = 1000
#: the last stretch before a target is slept with the GIL released (chronotick.precise_sleep),
#: spinning its final EXECUTE_SPIN_NS. Long, because what runs before it is Python: a thread
#: woken at real-time priority still waits for the GIL, at least the 5 ms switch interval and,
#: on a busy host, as long as the holder waits for a CPU (21 ms seen with 8 nodes on 2 cores).
#: Asleep in C the thread needs nothing; the model it converts the target with is then this
#: much older, which moves the target by the drift error over 200 ms (nanoseconds).
PRECISE_WAIT_NS = 200 * MS
EXECUTE_SPIN_NS = 50_000
#: reports are gathered from this long after the target on
REPORT_GRACE_NS = 50 * MS


class AgreementNode(Protocol):
    """What the service needs of the node."""

    node_id: str
    cluster: str
    shm_name: str
    client: PeerClient
    stop_flag: Stopper

    def base_now_ns(self) -> int: ...
    def published_model(self) -> ClockModel: ...
    def peer_addresses(self) -> dict[str, str]: ...
    def falsetickers(self) -> set[str]: ...
    def realtime_for_base(self, base_ns: int) -> int: ...
    def base_for_realtime(self, realtime_ns: int) -> int: ...


@dataclasses.dataclass
class _RoundState:
    round: Round
    addresses: dict[str, str]
    outlook: ClockOutlook


def deadlines(now_ns: int, delay_ns: int) -> tuple[int, int, int]:
    """(vote deadline, commit deadline, target) for a round started at `now_ns`.

    Votes get up to 30 % of the delay (at most 1 s), the commit must land by 80 % of it (and at
    least 100 ms before the target), which leaves every step a share of the delay.
    """
    target = now_ns + delay_ns
    vote = now_ns + min(NS_PER_S, delay_ns * 3 // 10)
    commit = max(vote, min(target - MIN_LEAD_NS, now_ns + delay_ns * 8 // 10))
    return vote, commit, target


class AgreementService(apb_grpc.AgreementServiceServicer):
    def __init__(
        self, node: AgreementNode, require_identity: bool, execute_priority: int = 0
    ) -> None:
        self.node = node
        self.require_identity = require_identity
        #: SCHED_FIFO priority of the thread that waits for a target (0: none)
        self.priority = execute_priority
        self.participant = Participant(node.node_id, MIN_LEAD_NS)
        self.rounds: dict[str, _RoundState] = {}
        #: the replicated writes this node applied: key -> (value, corrected timestamp)
        self.replica: dict[str, tuple[str, int]] = {}
        #: rounds, votes, executions and commits by outcome, for the metrics
        self.stats = AgreementStats()
        self._lock = threading.Lock()

    # -- the clock -------------------------------------------------------------------------

    def now(self) -> tuple[int, ClockModel, int]:
        """(corrected now, the published model, base now)."""
        base = self.node.base_now_ns()
        model = self.node.published_model()
        return model.corrected_ns(base), model, base

    def outlook(self, target_ns: int) -> ClockOutlook:
        now, model, base = self.now()
        if not model.status.gives_interval:
            return ClockOutlook(now, False, 0, 0)
        base_at_target = base + max(0, target_ns - now)
        return ClockOutlook(
            now, True, round(model.sigma_at(base_at_target)), model.bound_at(base_at_target)
        )

    # -- participant calls -------------------------------------------------------------------

    def Propose(self, request: apb.ProposeRequest, context: grpc.ServicerContext) -> apb.VoteReply:
        return guarded(context, request, lambda: self.propose(request), self.require_identity)

    def propose(self, request: apb.ProposeRequest) -> apb.VoteReply:
        proposal = proposal_from_wire(request, self.node.cluster)
        now, _, _ = self.now()
        with self._lock:
            if self.participant.knows(proposal.action_id):  # a retried call: the same vote
                return vote_to_wire(self.participant.on_propose(proposal, self.outlook(0)))
        if not now < proposal.target_ns <= now + MAX_DELAY_NS + NS_PER_S:
            # refused without being kept: nothing a stranger sends may pile up here
            why = "target not within the next hour" if proposal.target_ns > now else "target past"
            self.stats.actions.add("refused")
            return vote_to_wire(Vote(proposal.action_id, self.node.node_id, False, why, 0, 0))
        with self._lock:
            if self.participant.held_count() >= MAX_HELD_ACTIONS:
                self.participant.forget_before(now, 0)
            vote = self.participant.on_propose(proposal, self.outlook(proposal.target_ns))
        if not vote.accept:
            self.stats.actions.add("refused")
            log.info("refused %s from %s: %s", proposal.action_id, proposal.initiator, vote.reason)
        return vote_to_wire(vote)

    def Decide(self, request: apb.DecideRequest, context: grpc.ServicerContext) -> apb.DecideReply:
        return guarded(context, request, lambda: self.decide(request), self.require_identity)

    def decide(self, request: apb.DecideRequest) -> apb.DecideReply:
        _check_common(request.cluster, self.node.cluster, request.initiator, request.action_id)
        now, _, _ = self.now()
        with self._lock:
            before = self.participant.may_execute(request.action_id)
            was = self.participant.phase(request.action_id)
            phase = self.participant.on_decision(
                request.action_id, request.commit, now, request.initiator
            )
            start = phase is Phase.COMMITTED and not before
            proposal = next(
                (p for p in self.participant.to_execute() if p.action_id == request.action_id),
                None,
            )
        if was is Phase.VOTED and phase is Phase.EXPIRED:
            self.stats.actions.add("expired")
        elif was in (Phase.VOTED, Phase.COMMITTED) and phase is Phase.ABORTED:
            self.stats.actions.add("aborted")
        if phase is Phase.EXPIRED:
            log.warning("%s: commit came after its deadline; not executing", request.action_id)
        if start and proposal is not None:
            threading.Thread(
                target=self._execute,
                args=(proposal,),
                name=f"action {proposal.action_id}",
                daemon=True,
            ).start()
        return apb.DecideReply(
            protocol_version=protocol.PROTOCOL_VERSION,
            node_id=self.node.node_id,
            action_id=request.action_id,
            phase=phase.value if phase is not None else "unknown",
        )

    def GetReport(
        self, request: apb.ReportRequest, context: grpc.ServicerContext
    ) -> apb.ReportReply:
        return guarded(context, request, lambda: self.report(request), self.require_identity)

    def report(self, request: apb.ReportRequest) -> apb.ReportReply:
        if not ACTION_ID_RE.match(request.action_id):
            raise protocol.InvalidMessage(f"action_id {request.action_id[:40]!r} is malformed")
        with self._lock:
            report = self.participant.report(request.action_id)
        if report is None:
            return apb.ReportReply(
                protocol_version=protocol.PROTOCOL_VERSION,
                node_id=self.node.node_id,
                action_id=request.action_id,
                phase="unknown",
            )
        return report_to_wire(report)

    def WaitPast(
        self, request: apb.WaitPastRequest, context: grpc.ServicerContext
    ) -> apb.WaitPastReply:
        return guarded(
            context,
            request,
            lambda: self.wait_past(request, _remaining_s(context)),
            self.require_identity,
        )

    def wait_past(
        self, request: apb.WaitPastRequest, caller_remaining_s: float = math.inf
    ) -> apb.WaitPastReply:
        """Commit wait on this node: return once its earliest possible time is past the
        timestamp. Sleeps in steps of the remaining gap, never longer than the deadline."""
        if request.cluster != self.node.cluster:
            raise protocol.InvalidMessage(f"cluster {request.cluster!r} is not this node's")
        protocol.check_time("timestamp_ns", request.timestamp_ns)
        now, model, base = self.now()
        if model.status.gives_interval:
            gap_ns = request.timestamp_ns - (now - model.bound_at(base))
            if gap_ns > MAX_COMMIT_WAIT_NS:
                raise protocol.InvalidMessage(
                    f"timestamp_ns is {gap_ns / NS_PER_S:.1f} s past this node's earliest: "
                    "more than a commit wait can be"
                )
        started = time.monotonic_ns()
        while True:
            now, model, base = self.now()
            if not model.status.gives_interval:
                raise Refusal(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"clock not synchronized ({model.status.name})",
                )
            bound = model.bound_at(base)
            earliest = now - bound
            if earliest > request.timestamp_ns:
                return apb.WaitPastReply(
                    protocol_version=protocol.PROTOCOL_VERSION,
                    node_id=self.node.node_id,
                    earliest_ns=earliest,
                    latest_ns=now + bound,
                    waited_ns=time.monotonic_ns() - started,
                )
            waited_ns = time.monotonic_ns() - started
            if waited_ns > min(MAX_COMMIT_WAIT_NS, caller_remaining_s * NS_PER_S):
                raise Refusal(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    "earliest did not pass the timestamp within 10 s",
                )
            gap_s = (request.timestamp_ns - earliest) / NS_PER_S
            if self.node.stop_flag.wait(min(max(gap_s, 50e-6), 0.1)):
                raise Refusal(grpc.StatusCode.UNAVAILABLE, "node shutting down")

    # -- execution ---------------------------------------------------------------------------

    def _execute(self, proposal: Proposal) -> None:
        """Wait for the target on the published clock, then run the action, unless an abort
        came meanwhile. Never raises: what happened goes into the report."""
        action_id = proposal.action_id
        try:
            # the whole wait at real-time priority: asleep it costs nobody anything, and a
            # thread woken at normal priority on a busy host can miss even the 5 ms margin
            with realtime_priority(self.priority):
                with ChronoTickClient(self.node.shm_name) as clock:
                    # most of the way on the published clock (which also checks the bound),
                    # then the last stretch on the base clock, converted once through the model
                    clock.wait_until(
                        (proposal.target_ns - PRECISE_WAIT_NS) / NS_PER_S,
                        tolerance_ms=proposal.tolerance_ns / MS,
                        spin_ms=0.0,
                    )
                model = self.node.published_model()
                if not model.status.gives_interval:
                    raise ValueError(f"the clock lost its model ({model.status.name})")
                base_target = proposal.target_ns - model.offset_at(
                    proposal.target_ns - model.offset_ns
                )
                if model.bound_at(base_target) > proposal.tolerance_ns:
                    raise ValueError(
                        f"bound at target ±{model.bound_at(base_target) / MS:.3f} ms exceeds "
                        f"tolerance ±{proposal.tolerance_ns / MS:.3f} ms"
                    )
                realtime = sleep_until_realtime_ns(
                    self.node.realtime_for_base(base_target), EXECUTE_SPIN_NS
                )
            host_ns = realtime
            base = self.node.base_for_realtime(realtime)
            now = model.corrected_ns(base)
        except (ValueError, ShmError) as exc:
            self._finish(Report(action_id, self.node.node_id, Phase.FAILED, detail=str(exc)))
            log.warning("%s not executed: %s", action_id, exc)
            return
        except Exception as exc:  # a bug must leave a report, not a round waiting for one
            log.exception("%s: the action thread failed", action_id)
            self._finish(Report(action_id, self.node.node_id, Phase.FAILED, detail=repr(exc)))
            return
        late_s = (now - proposal.target_ns) / NS_PER_S
        if late_s * NS_PER_S > proposal.tolerance_ns:
            # woken too late to act within the tolerance (a paused process, an overloaded host)
            why = (
                f"woke {late_s * 1e3:.3f} ms after the target, beyond the tolerance "
                f"±{proposal.tolerance_ns / MS:.3f} ms"
            )
            self._finish(Report(action_id, self.node.node_id, Phase.FAILED, detail=why))
            log.warning("%s not executed: %s", action_id, why)
            return
        with self._lock:
            if not self.participant.may_execute(action_id):
                return
            if proposal.action.startswith("write "):
                key, _, value = proposal.action[6:].partition("=")
                self.replica[key] = (value, proposal.target_ns)
            self.stats.actions.add("executed")
            self.participant.on_executed(
                Report(
                    action_id,
                    self.node.node_id,
                    Phase.EXECUTED,
                    executed_at_ns=now,
                    bound_ns=model.bound_at(base),
                    base_time_ns=base,
                    host_time_ns=host_ns,
                )
            )
        log.info(
            "%s executed at %+.3f ms from its target (bound ±%.3f ms)",
            action_id,
            (now - proposal.target_ns) / MS,
            model.bound_at(base) / MS,
        )

    def _finish(self, report: Report) -> None:
        """A committed action that did not run (FAILED); nothing, if an abort came first."""
        with self._lock:
            if not self.participant.may_execute(report.action_id):
                return
            self.participant.on_executed(report)
        self.stats.actions.add("failed")

    def housekeeping(self) -> None:
        """Expire undecided actions past their commit deadline; forget old ones."""
        now, _, _ = self.now()
        with self._lock:
            for action_id in self.participant.expire(now):
                self.stats.actions.add("expired")
                log.warning("%s: no decision by its commit deadline; not executing", action_id)
            self.participant.forget_before(now, KEEP_NS)

    # -- initiator ---------------------------------------------------------------------------

    def StartRound(
        self, request: apb.StartRoundRequest, context: grpc.ServicerContext
    ) -> apb.RoundReply:
        return guarded(context, request, lambda: self.start_round(request), self.require_identity)

    def start_round(self, request: apb.StartRoundRequest) -> apb.RoundReply:
        if not MIN_DELAY_NS <= request.delay_ns <= MAX_DELAY_NS:
            raise protocol.InvalidMessage(
                f"delay_ns {request.delay_ns} must be between "
                f"{MIN_DELAY_NS / NS_PER_S:g} s and {MAX_DELAY_NS / NS_PER_S:g} s"
            )
        if not 0 < request.tolerance_ns <= MAX_TOLERANCE_NS:
            raise protocol.InvalidMessage(
                f"tolerance_ns {request.tolerance_ns} must be in (0, 60 s]"
            )
        check_action(request.action or "mark")
        action_id = request.action_id or f"{self.node.node_id}-{secrets.token_hex(6)}"
        if not ACTION_ID_RE.match(action_id):
            raise protocol.InvalidMessage(f"action_id {action_id[:40]!r} is malformed")
        addresses = self._participants(list(request.participants))
        now, _, _ = self.now()
        vote_deadline, commit_deadline, target = deadlines(now, request.delay_ns)
        proposal = Proposal(
            action_id=action_id,
            initiator=self.node.node_id,
            participants=(self.node.node_id, *sorted(addresses)),
            target_ns=target,
            tolerance_ns=request.tolerance_ns,
            vote_deadline_ns=vote_deadline,
            commit_deadline_ns=commit_deadline,
            action=request.action or "mark",
        )
        state = _RoundState(Round(proposal), addresses, self.outlook(target))
        with self._lock:  # checked and taken in one step: two calls cannot share an id
            if action_id in self.rounds:
                raise protocol.InvalidMessage(f"action_id {action_id!r} was used already")
            self.rounds[action_id] = state
            while len(self.rounds) > ROUNDS_KEPT:
                del self.rounds[next(iter(self.rounds))]
        suspects = self.node.falsetickers() & set(proposal.participants)
        if suspects:
            # named on purpose, but known to be wrong: abort before anyone is asked
            with self._lock:
                for node_id in proposal.participants:
                    why = (
                        "falseticker in the initiator's peer table (its clock disagrees with "
                        "the majority)"
                        if node_id in suspects
                        else "not asked: another participant is a falseticker"
                    )
                    state.round.on_no_vote(node_id, why)
                    state.round.on_report(Report(action_id, node_id, Phase.UNKNOWN, detail=why))
                state.round.decide(now)
            self.stats.rounds.add("aborted")
            log.warning(
                "%s aborted: falsetickers named: %s", action_id, ", ".join(sorted(suspects))
            )
        else:
            self._run_round(state)
        return self._round_reply(state)

    def _participants(self, wanted: list[str]) -> dict[str, str]:
        """The peers a round or a commit involves: the ones asked for, or by default every
        peer in the table except those the consensus rejects as falsetickers (a clock that
        disagrees with the majority would act at the wrong instant)."""
        known = self.node.peer_addresses()
        if not wanted:
            suspects = self.node.falsetickers() & set(known)
            if suspects:
                log.info("leaving out falsetickers: %s", ", ".join(sorted(suspects)))
            return {n: a for n, a in known.items() if n not in suspects}
        for node_id in wanted:
            protocol.check_name("participants", node_id)
        missing = [n for n in wanted if n not in known and n != self.node.node_id]
        if missing:
            raise Refusal(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"not in this node's peer table: {', '.join(missing)}",
            )
        return {n: known[n] for n in wanted if n != self.node.node_id}

    def _run_round(self, state: _RoundState) -> None:
        """Propose to all, decide, tell all; each remote step has the proposal's deadline."""
        round_, proposal = state.round, state.round.proposal
        request = proposal_to_wire(proposal, self.node.cluster)
        own_vote = self.propose(request)
        round_.on_vote(vote_from_wire(own_vote))

        def ask(node_id: str, address: str) -> None:
            timeout = self._seconds_until(proposal.vote_deadline_ns)
            try:
                stub = apb_grpc.AgreementServiceStub(self.node.client.channel(address))
                reply = stub.Propose(request, timeout=timeout)
                vote = vote_from_wire(reply)
                if vote.node_id != node_id:
                    raise protocol.InvalidMessage(f"{address} answered as {vote.node_id!r}")
            except grpc.RpcError as exc:
                with self._lock:
                    round_.on_no_vote(node_id, describe_rpc_error(exc))
                return
            except protocol.InvalidMessage as exc:
                with self._lock:
                    round_.on_no_vote(node_id, f"bad vote: {exc}")
                return
            with self._lock:
                round_.on_vote(vote)

        _concurrently(ask, state.addresses)
        now, _, _ = self.now()
        with self._lock:
            decision = round_.decide(max(now, proposal.vote_deadline_ns))
        assert decision is not None
        self.stats.rounds.add("committed" if decision.commit else "aborted")
        if not decision.commit:
            log.info(
                "%s aborted: %s",
                proposal.action_id,
                "; ".join(f"{n}: {r}" for n, r in decision.reasons.items()),
            )
        decide = apb.DecideRequest(
            protocol_version=protocol.PROTOCOL_VERSION,
            cluster=self.node.cluster,
            initiator=self.node.node_id,
            action_id=proposal.action_id,
            commit=decision.commit,
        )
        self.decide(decide)

        def tell(node_id: str, address: str) -> None:
            timeout = min(DECIDE_TIMEOUT_S, self._seconds_until(proposal.commit_deadline_ns))
            try:
                stub = apb_grpc.AgreementServiceStub(self.node.client.channel(address))
                reply = stub.Decide(decide, timeout=timeout)
            except grpc.RpcError as exc:
                log.warning(
                    "%s: could not tell %s the decision: %s",
                    proposal.action_id,
                    node_id,
                    describe_rpc_error(exc),
                )
                return
            if decision.commit and reply.phase != Phase.COMMITTED.value:
                log.warning(
                    "%s: %s is %s after the commit", proposal.action_id, node_id, reply.phase
                )

        _concurrently(tell, state.addresses)

    def _seconds_until(self, deadline_ns: int) -> float:
        now, _, _ = self.now()
        return max(0.01, (deadline_ns - now) / NS_PER_S)

    def GetRound(
        self, request: apb.GetRoundRequest, context: grpc.ServicerContext
    ) -> apb.RoundReply:
        return guarded(
            context,
            request,
            lambda: self.get_round(request, _remaining_s(context)),
            self.require_identity,
        )

    def get_round(
        self, request: apb.GetRoundRequest, caller_remaining_s: float = math.inf
    ) -> apb.RoundReply:
        with self._lock:
            state = self.rounds.get(request.action_id)
        if state is None:
            raise Refusal(grpc.StatusCode.NOT_FOUND, f"no round {request.action_id[:40]!r} here")
        if request.timeout_ms > MAX_REPORT_WAIT_S * 1000:
            raise protocol.InvalidMessage(
                f"timeout_ms must be at most {MAX_REPORT_WAIT_S * 1000:g}"
            )
        # never wait past the caller's own deadline: nobody would read the answer
        deadline = time.monotonic() + min(request.timeout_ms / 1000, caller_remaining_s)
        if request.wait_reports:
            # nothing is final before the target, and asking the participants for reports
            # right at it would take CPU from the very instant they are timing
            now, _, _ = self.now()
            ahead_s = (state.round.proposal.target_ns + REPORT_GRACE_NS - now) / NS_PER_S
            if ahead_s > 0:
                self.node.stop_flag.wait(min(ahead_s, max(0.0, deadline - time.monotonic())))
        while True:
            self._gather_reports(state)
            with self._lock:
                final = all(
                    r.phase not in (Phase.COMMITTED, Phase.VOTED)
                    for r in state.round.reports.values()
                ) and len(state.round.reports) == len(state.round.proposal.participants)
            if final or not request.wait_reports or time.monotonic() >= deadline:
                return self._round_reply(state)
            if self.node.stop_flag.wait(0.1):
                return self._round_reply(state)

    def _gather_reports(self, state: _RoundState) -> None:
        proposal = state.round.proposal
        own = self.participant.report(proposal.action_id)
        with self._lock:
            if own is not None:
                state.round.on_report(own)
        request = apb.ReportRequest(
            protocol_version=protocol.PROTOCOL_VERSION, action_id=proposal.action_id
        )

        def fetch(node_id: str, address: str) -> None:
            try:
                stub = apb_grpc.AgreementServiceStub(self.node.client.channel(address))
                reply = stub.GetReport(request, timeout=1.0)
                report = report_from_wire(reply)
            except (grpc.RpcError, protocol.InvalidMessage) as exc:
                log.debug("no report of %s from %s: %s", proposal.action_id, node_id, exc)
                return
            with self._lock:
                state.round.on_report(report)

        _concurrently(fetch, state.addresses)

    def _round_reply(self, state: _RoundState) -> apb.RoundReply:
        with self._lock:
            round_ = state.round
            p = round_.proposal
            decision = round_.decision
            reply = apb.RoundReply(
                protocol_version=protocol.PROTOCOL_VERSION,
                action_id=p.action_id,
                initiator=p.initiator,
                participants=list(p.participants),
                target_ns=p.target_ns,
                tolerance_ns=p.tolerance_ns,
                committed=bool(decision and decision.commit),
                phase=round_.phase.value,
                votes=[vote_to_wire(v) for v in round_.votes.values()],
                reasons=[f"{n}: {r}" for n, r in (decision.reasons if decision else {}).items()],
                reports=[report_to_wire(r) for r in round_.reports.values()],
                sigma_at_target_ns=state.outlook.sigma_at_target_ns,
                bound_at_target_ns=state.outlook.bound_at_target_ns,
                action=p.action,
            )
        return reply

    # -- commit timestamps -------------------------------------------------------------------

    def CommitTimestamp(
        self, request: apb.CommitTimestampRequest, context: grpc.ServicerContext
    ) -> apb.CommitTimestampReply:
        return guarded(
            context, request, lambda: self.commit_timestamp(request), self.require_identity
        )

    def commit_timestamp(self, request: apb.CommitTimestampRequest) -> apb.CommitTimestampReply:
        try:
            reply = self._commit_timestamp(request)
        except Exception:
            self.stats.commits.add("failed")
            raise
        self.stats.commits.add("committed")
        self.stats.commit_wait.observe(reply.commit_wait_ns / NS_PER_S)
        return reply

    def _commit_timestamp(self, request: apb.CommitTimestampRequest) -> apb.CommitTimestampReply:
        """TrueTime's rule across nodes: the timestamp is at least every participant's latest
        when the commit starts; the acknowledgement waits until every participant's earliest
        has passed it. Any participant that cannot answer fails the commit (UNAVAILABLE)."""
        addresses = self._participants(list(request.participants))
        started, model, base = self.now()
        if not model.status.gives_interval:
            raise Refusal(
                grpc.StatusCode.FAILED_PRECONDITION, "this node's clock gives no interval"
            )
        own_bound = model.bound_at(base)
        latest = {self.node.node_id: started + own_bound}
        bounds = {self.node.node_id: own_bound}
        failures: dict[str, str] = {}
        lock = threading.Lock()

        def read(node_id: str, address: str) -> None:
            try:
                stub = pb_grpc.PeerServiceStub(self.node.client.channel(address))
                reply = stub.GetTime(
                    pb.TimeRequest(protocol_version=protocol.PROTOCOL_VERSION), timeout=1.0
                )
            except grpc.RpcError as exc:
                failures[node_id] = describe_rpc_error(exc)
                return
            if not reply.latest_ns:
                failures[node_id] = f"no interval ({protocol.status_name(reply.status)})"
                return
            try:  # a reply is input too: a wild latest would make every commit wait in vain
                protocol.check_version(reply.protocol_version)
                protocol.check_time("earliest_ns", reply.earliest_ns)
                protocol.check_time("latest_ns", reply.latest_ns)
                half_ns = (reply.latest_ns - reply.earliest_ns) // 2
                if not 0 <= half_ns <= protocol.MAX_ERROR_NS:
                    raise protocol.InvalidMessage("earliest_ns and latest_ns out of order or apart")
            except protocol.InvalidMessage as exc:
                failures[node_id] = f"bad time reply: {exc}"
                return
            with lock:
                latest[node_id] = reply.latest_ns
                bounds[node_id] = half_ns

        _concurrently(read, addresses)
        if failures:
            raise Refusal(
                grpc.StatusCode.UNAVAILABLE,
                "; ".join(f"{n}: {r}" for n, r in sorted(failures.items())),
            )
        timestamp = max(latest.values())
        chosen, _, _ = self.now()
        wait = apb.WaitPastRequest(
            protocol_version=protocol.PROTOCOL_VERSION,
            cluster=self.node.cluster,
            timestamp_ns=timestamp,
        )
        self.wait_past(wait)

        def await_past(node_id: str, address: str) -> None:
            try:
                stub = apb_grpc.AgreementServiceStub(self.node.client.channel(address))
                stub.WaitPast(wait, timeout=MAX_COMMIT_WAIT_NS / NS_PER_S + 1.0)
            except grpc.RpcError as exc:
                failures[node_id] = describe_rpc_error(exc)

        _concurrently(await_past, addresses)
        if failures:
            raise Refusal(
                grpc.StatusCode.UNAVAILABLE,
                "commit wait failed: "
                + "; ".join(f"{n}: {r}" for n, r in sorted(failures.items())),
            )
        acknowledged, _, _ = self.now()
        return apb.CommitTimestampReply(
            protocol_version=protocol.PROTOCOL_VERSION,
            timestamp_ns=timestamp,
            participants=sorted(latest),
            commit_wait_ns=acknowledged - chosen,
            max_bound_ns=max(bounds.values()),
            started_ns=started,
            acknowledged_ns=acknowledged,
        )


@contextlib.contextmanager
def realtime_priority(priority: int) -> Iterator[None]:
    """Run the calling thread under SCHED_FIFO `priority` for the block, when allowed.

    A thread waking for a sync point on a busy host waits for a CPU: milliseconds, where the
    promise is a millisecond across nodes. A real-time thread is woken at once (chronyd's -P
    does the same for the whole daemon). Only the waiting thread is raised, and it uses CPU only
    to read the clock between sleeps and for a final spin of at most EXECUTE_SPIN_NS, so it
    cannot starve the host. Without the privilege (not root, no CAP_SYS_NICE) it runs at normal
    priority.
    """
    raised = False
    if priority > 0:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
            raised = True
        except (PermissionError, OSError) as exc:
            log.debug("no real-time priority for the wait (%s)", exc)
    try:
        yield
    finally:
        if raised:
            with contextlib.suppress(OSError):
                os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


def _remaining_s(context: grpc.ServicerContext) -> float:
    """Seconds until the caller's deadline (inf without one)."""
    remaining = context.time_remaining()
    return math.inf if remaining is None else max(0.0, remaining)


def _concurrently(work: Callable[[str, str], None], addresses: dict[str, str]) -> None:
    """`work(node_id, address)` for every participant at once; each call carries its own
    gRPC deadline, so the joins are bounded."""
    threads = [
        threading.Thread(target=work, args=item, name=f"call {item[0]}", daemon=True)
        for item in addresses.items()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


# -- wire conversions and checks -------------------------------------------------------------


def check_action(action: str) -> None:
    if action == "mark":
        return
    if action.startswith("write ") and "=" in action and len(action) <= 1024:
        key = action[6:].partition("=")[0]
        if key and key.isprintable():
            return
    raise protocol.InvalidMessage(f"action {action[:40]!r}: 'mark' or 'write KEY=VALUE'")


def _check_common(cluster: str, own_cluster: str, initiator: str, action_id: str) -> None:
    if cluster != own_cluster:
        raise protocol.InvalidMessage(f"cluster {cluster!r} is not this node's ({own_cluster!r})")
    protocol.check_name("initiator", initiator)
    if not ACTION_ID_RE.match(action_id):
        raise protocol.InvalidMessage(f"action_id {action_id[:40]!r}: 1-128 of A-Za-z0-9._:-")


def proposal_from_wire(request: apb.ProposeRequest, cluster: str) -> Proposal:
    _check_common(request.cluster, cluster, request.initiator, request.action_id)
    if not 1 <= len(request.participants) <= MAX_PARTICIPANTS:
        raise protocol.InvalidMessage(
            f"1 to {MAX_PARTICIPANTS} participants, not {len(request.participants)}"
        )
    for node_id in request.participants:
        protocol.check_name("participants", node_id)
    for field in ("target_ns", "vote_deadline_ns", "commit_deadline_ns"):
        protocol.check_time(field, getattr(request, field))
    if not 0 < request.tolerance_ns <= MAX_TOLERANCE_NS:
        raise protocol.InvalidMessage(f"tolerance_ns {request.tolerance_ns} must be in (0, 60 s]")
    check_action(request.action)
    try:
        return Proposal(
            action_id=request.action_id,
            initiator=request.initiator,
            participants=tuple(request.participants),
            target_ns=request.target_ns,
            tolerance_ns=request.tolerance_ns,
            vote_deadline_ns=request.vote_deadline_ns,
            commit_deadline_ns=request.commit_deadline_ns,
            action=request.action,
        )
    except ValueError as exc:
        raise protocol.InvalidMessage(str(exc)) from None


def proposal_to_wire(proposal: Proposal, cluster: str) -> apb.ProposeRequest:
    return apb.ProposeRequest(
        protocol_version=protocol.PROTOCOL_VERSION,
        cluster=cluster,
        initiator=proposal.initiator,
        action_id=proposal.action_id,
        participants=list(proposal.participants),
        target_ns=proposal.target_ns,
        tolerance_ns=proposal.tolerance_ns,
        vote_deadline_ns=proposal.vote_deadline_ns,
        commit_deadline_ns=proposal.commit_deadline_ns,
        action=proposal.action,
    )


def vote_to_wire(vote: Vote) -> apb.VoteReply:
    return apb.VoteReply(
        protocol_version=protocol.PROTOCOL_VERSION,
        node_id=vote.node_id,
        action_id=vote.action_id,
        accept=vote.accept,
        reason=vote.reason,
        sigma_at_target_ns=vote.sigma_at_target_ns,
        bound_at_target_ns=vote.bound_at_target_ns,
    )


def vote_from_wire(reply: apb.VoteReply) -> Vote:
    protocol.check_version(reply.protocol_version)
    protocol.check_name("node_id", reply.node_id)
    return Vote(
        action_id=reply.action_id,
        node_id=reply.node_id,
        accept=reply.accept,
        reason=reply.reason[:500],
        sigma_at_target_ns=reply.sigma_at_target_ns,
        bound_at_target_ns=reply.bound_at_target_ns,
    )


def report_to_wire(report: Report) -> apb.ReportReply:
    return apb.ReportReply(
        protocol_version=protocol.PROTOCOL_VERSION,
        node_id=report.node_id,
        action_id=report.action_id,
        phase=report.phase.value,
        executed_at_ns=report.executed_at_ns,
        bound_ns=report.bound_ns,
        base_time_ns=report.base_time_ns,
        detail=report.detail[:500],
        host_time_ns=report.host_time_ns,
    )


_PHASES = {p.value: p for p in Phase}


def report_from_wire(reply: apb.ReportReply) -> Report:
    protocol.check_version(reply.protocol_version)
    protocol.check_name("node_id", reply.node_id)
    phase = _PHASES.get(reply.phase)
    if phase is None:
        raise protocol.InvalidMessage(f"phase {reply.phase[:20]!r} is unknown")
    return Report(
        action_id=reply.action_id,
        node_id=reply.node_id,
        phase=phase,
        executed_at_ns=reply.executed_at_ns,
        bound_ns=reply.bound_ns,
        base_time_ns=reply.base_time_ns,
        detail=reply.detail[:500],
        host_time_ns=reply.host_time_ns,
    )
