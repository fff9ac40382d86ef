"""Agreement on a sync point: propose, vote, commit or abort, execute, report. No I/O.

The initiator proposes `(action id, target, tolerance)` to every participant. Each votes with
its own clock's projected σ and bound at the target and accepts only if it can hold the
tolerance and the target leaves time for the commit to reach it. All accept: commit; anything
else (a refusal, a missing vote at the vote deadline): abort, with every reason.

Safety rests on one rule at the participant: it executes only an action whose commit it
received before the action's commit deadline (some time before the target). A commit that
arrives late, an abort, a proposal never decided: no execution. Messages may come late, twice
or never; every handler is idempotent and every wait has a deadline, all in the node's
corrected time (nanoseconds since the epoch), which the I/O layer passes in.
"""

from __future__ import annotations

import dataclasses
import enum
import re

NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000
#: a participant refuses a proposal whose commit deadline is nearer than this
MIN_LEAD_NS = 100 * NS_PER_MS
#: how far ahead a round's target may lie: the shortest delay leaves the vote and the commit
#: 100 ms each beside MIN_LEAD_NS; the longest keeps what a node holds for a round bounded
MIN_DELAY_NS = 300 * NS_PER_MS
MAX_DELAY_NS = 3600 * NS_PER_S
MAX_TOLERANCE_NS = 60 * NS_PER_S
ACTION_ID_RE = re.compile(r"\A[A-Za-z0-9._:-]{1,128}\Z")


class Phase(enum.Enum):
    PROPOSED = "proposed"  # initiator: waiting for votes
    VOTED = "voted"  # participant: accepted, waiting for the decision
    REFUSED = "refused"  # participant: voted no (will not execute whatever comes)
    COMMITTED = "committed"
    ABORTED = "aborted"
    #: participant: no commit by the commit deadline; it will not execute
    EXPIRED = "expired"
    EXECUTED = "executed"
    #: participant: committed, but the clock could not hold the tolerance at the target
    FAILED = "failed"
    #: participant: never received the proposal (a report of a node that was not reached)
    UNKNOWN = "unknown"


@dataclasses.dataclass(frozen=True)
class Proposal:
    action_id: str
    initiator: str
    participants: tuple[str, ...]
    target_ns: int
    tolerance_ns: int
    #: votes arriving after this are too late: the initiator decides without them
    vote_deadline_ns: int
    #: a participant that holds no commit by this instant does not execute
    commit_deadline_ns: int
    #: what to do at the target ("mark", or "write KEY=VALUE" for the replicated write)
    action: str = "mark"

    def __post_init__(self) -> None:
        if not ACTION_ID_RE.match(self.action_id):
            raise ValueError(f"action_id {self.action_id[:40]!r}: 1-128 of A-Za-z0-9._:-")
        if self.tolerance_ns <= 0:
            raise ValueError(f"tolerance must be positive, got {self.tolerance_ns} ns")
        if not self.vote_deadline_ns <= self.commit_deadline_ns <= self.target_ns:
            raise ValueError("deadlines must come in order: votes, commit, target")
        if not self.participants or len(set(self.participants)) != len(self.participants):
            raise ValueError("participants must be distinct and at least one")


@dataclasses.dataclass(frozen=True)
class ClockOutlook:
    """What a node's clock promises at the target, read at `now_ns` (corrected)."""

    now_ns: int
    synchronized: bool
    sigma_at_target_ns: int
    bound_at_target_ns: int


@dataclasses.dataclass(frozen=True)
class Vote:
    action_id: str
    node_id: str
    accept: bool
    reason: str
    sigma_at_target_ns: int
    bound_at_target_ns: int


@dataclasses.dataclass(frozen=True)
class Report:
    """What a participant did: its corrected instant of execution and its bound then."""

    action_id: str
    node_id: str
    phase: Phase
    executed_at_ns: int = 0
    bound_ns: int = 0
    #: its base clock at that instant (tests map it to true time)
    base_time_ns: int = 0
    detail: str = ""
    #: the host's CLOCK_REALTIME then (differs from the base clock only on a simulated clock)
    host_time_ns: int = 0


def vote_on(proposal: Proposal, node_id: str, outlook: ClockOutlook, min_lead_ns: int) -> Vote:
    """Accept only if this clock can hold the tolerance at the target and the commit has time
    to arrive (`min_lead_ns` before the commit deadline)."""
    reasons = []
    if not outlook.synchronized:
        reasons.append("clock not synchronized")
    elif outlook.bound_at_target_ns > proposal.tolerance_ns:
        reasons.append(
            f"bound at target ±{outlook.bound_at_target_ns / NS_PER_MS:.1f} ms exceeds "
            f"tolerance ±{proposal.tolerance_ns / NS_PER_MS:.1f} ms"
        )
    lead_ns = proposal.commit_deadline_ns - outlook.now_ns
    if lead_ns < min_lead_ns:
        reasons.append(
            f"target too close: {lead_ns / NS_PER_MS:.1f} ms left for the commit, "
            f"{min_lead_ns / NS_PER_MS:.1f} ms needed"
        )
    return Vote(
        action_id=proposal.action_id,
        node_id=node_id,
        accept=not reasons,
        reason="; ".join(reasons) or "ok",
        sigma_at_target_ns=outlook.sigma_at_target_ns,
        bound_at_target_ns=outlook.bound_at_target_ns,
    )


# -- the initiator ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Decision:
    action_id: str
    commit: bool
    reasons: dict[str, str]


class Round:
    """The initiator's view of one proposal."""

    def __init__(self, proposal: Proposal) -> None:
        self.proposal = proposal
        self.phase = Phase.PROPOSED
        self.votes: dict[str, Vote] = {}
        self.reports: dict[str, Report] = {}
        self.decision: Decision | None = None

    def on_vote(self, vote: Vote) -> None:
        """Votes of strangers, of other actions, and after the decision change nothing."""
        if (
            vote.action_id != self.proposal.action_id
            or vote.node_id not in self.proposal.participants
            or self.decision is not None
            or vote.node_id in self.votes
        ):
            return
        self.votes[vote.node_id] = vote

    def on_no_vote(self, node_id: str, why: str) -> None:
        """A participant that could not be asked (unreachable, timed out, refused the call)."""
        self.on_vote(Vote(self.proposal.action_id, node_id, False, why, 0, 0))

    def decide(self, now_ns: int) -> Decision | None:
        """The decision, once every vote is in or the vote deadline has passed; None before.

        Decided once: later calls return the same decision.
        """
        if self.decision is not None:
            return self.decision
        p = self.proposal
        refused = {n: v.reason for n, v in self.votes.items() if not v.accept}
        missing = [n for n in p.participants if n not in self.votes]
        if not refused and not missing:
            self.decision = Decision(p.action_id, True, {})
            self.phase = Phase.COMMITTED
        elif (refused and not missing) or now_ns >= p.vote_deadline_ns:
            for node_id in missing:
                refused[node_id] = "no vote by the vote deadline"
            self.decision = Decision(p.action_id, False, refused)
            self.phase = Phase.ABORTED
        return self.decision

    def on_report(self, report: Report) -> None:
        if report.action_id == self.proposal.action_id and report.node_id in (
            self.proposal.participants
        ):
            self.reports[report.node_id] = report


# -- a participant ------------------------------------------------------------------------------


@dataclasses.dataclass
class _Held:
    proposal: Proposal
    vote: Vote
    phase: Phase
    report: Report | None = None


class Participant:
    """One node's view of every action it was asked to vote on."""

    def __init__(self, node_id: str, min_lead_ns: int) -> None:
        self.node_id = node_id
        self.min_lead_ns = min_lead_ns
        self._held: dict[str, _Held] = {}

    def on_propose(self, proposal: Proposal, outlook: ClockOutlook) -> Vote:
        """Vote; a proposal seen before gets the same vote again (a retried call)."""
        held = self._held.get(proposal.action_id)
        if held is not None:
            if held.proposal != proposal:
                return Vote(proposal.action_id, self.node_id, False,
                            "action id already used for another proposal", 0, 0)  # fmt: skip
            return held.vote
        if self.node_id not in proposal.participants:
            return Vote(proposal.action_id, self.node_id, False, "not a participant", 0, 0)
        vote = vote_on(proposal, self.node_id, outlook, self.min_lead_ns)
        phase = Phase.VOTED if vote.accept else Phase.REFUSED
        self._held[proposal.action_id] = _Held(proposal, vote, phase)
        return vote

    def on_decision(
        self, action_id: str, commit: bool, now_ns: int, initiator: str | None = None
    ) -> Phase | None:
        """Take a commit or an abort; returns the phase it leaves the action in (None when
        the action is unknown). A commit counts only in VOTED and before the commit deadline;
        an abort always wins over a commit not yet executed. A decision from anyone but the
        proposal's initiator changes nothing (another round that reused the action id)."""
        held = self._held.get(action_id)
        if held is None:
            return None
        if initiator is not None and initiator != held.proposal.initiator:
            return held.phase
        if not commit:
            if held.phase in (Phase.VOTED, Phase.COMMITTED, Phase.REFUSED):
                held.phase = Phase.ABORTED
            return held.phase
        if held.phase is Phase.VOTED:
            held.phase = (
                Phase.COMMITTED if now_ns < held.proposal.commit_deadline_ns else Phase.EXPIRED
            )
        return held.phase

    def expire(self, now_ns: int) -> list[str]:
        """Actions still waiting for their decision past the commit deadline: they will never
        execute. Returns their ids."""
        gone = []
        for action_id, held in self._held.items():
            if held.phase is Phase.VOTED and now_ns >= held.proposal.commit_deadline_ns:
                held.phase = Phase.EXPIRED
                gone.append(action_id)
        return gone

    def to_execute(self) -> list[Proposal]:
        """Committed actions not yet executed (the I/O layer waits for their targets)."""
        return [h.proposal for h in self._held.values() if h.phase is Phase.COMMITTED]

    def may_execute(self, action_id: str) -> bool:
        """Asked again right before running: an abort may have come while waiting."""
        held = self._held.get(action_id)
        return held is not None and held.phase is Phase.COMMITTED

    def on_executed(self, report: Report) -> None:
        held = self._held.get(report.action_id)
        if held is None or held.phase is not Phase.COMMITTED:
            return
        held.phase = report.phase
        held.report = report

    def report(self, action_id: str) -> Report | None:
        held = self._held.get(action_id)
        if held is None:
            return None
        if held.report is not None:
            return held.report
        return Report(action_id, self.node_id, held.phase, detail=held.vote.reason)

    def knows(self, action_id: str) -> bool:
        return action_id in self._held

    def phase(self, action_id: str) -> Phase | None:
        held = self._held.get(action_id)
        return None if held is None else held.phase

    def held_count(self) -> int:
        return len(self._held)

    def forget_before(self, now_ns: int, keep_ns: int) -> None:
        """Drop actions whose target is more than `keep_ns` past (memory stays bounded)."""
        for action_id in [
            a for a, h in self._held.items() if h.proposal.target_ns + keep_ns < now_ns
        ]:
            del self._held[action_id]
