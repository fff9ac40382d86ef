"""The sync-point agreement: votes, proposal validation, the initiator's decision, the participant.

The example tests pin every rule of `coordinator.agreement` one at a time, at its boundaries
(equal to the tolerance, exactly at a deadline), because an off-by-one there is exactly the kind
of bug that lets a node execute on a commit that came too late. The state machine at the end
then lets hypothesis interleave deliveries, duplicates, losses, delays and clock steps freely and
checks the safety and liveness promises of DESIGN.md ("Peers and agreement") after every step.
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

from coordinator.agreement import (
    NS_PER_MS,
    ClockOutlook,
    Decision,
    Participant,
    Phase,
    Proposal,
    Report,
    Round,
    Vote,
    vote_on,
)

MS = NS_PER_MS
T0 = 1_790_000_000 * 1_000_000_000  # a plausible corrected time, ns since the epoch
NO_VOTE = "no vote by the vote deadline"


def proposal(
    action_id: str = "act-1",
    participants: tuple[str, ...] = ("a", "b"),
    *,
    tolerance_ns: int = 1 * MS,
    vote_deadline_ns: int = T0 + 100 * MS,
    commit_deadline_ns: int = T0 + 200 * MS,
    target_ns: int = T0 + 300 * MS,
    action: str = "mark",
) -> Proposal:
    """A valid proposal made at T0: votes by +100 ms, commit by +200 ms, target at +300 ms."""
    return Proposal(
        action_id=action_id,
        initiator="init",
        participants=participants,
        target_ns=target_ns,
        tolerance_ns=tolerance_ns,
        vote_deadline_ns=vote_deadline_ns,
        commit_deadline_ns=commit_deadline_ns,
        action=action,
    )


def outlook(
    now_ns: int = T0, *, synchronized: bool = True, bound_ns: int = 500_000, sigma_ns: int = 100_000
) -> ClockOutlook:
    """A clock read at `now_ns` that, by default, comfortably holds a 1 ms tolerance."""
    return ClockOutlook(
        now_ns=now_ns,
        synchronized=synchronized,
        sigma_at_target_ns=sigma_ns,
        bound_at_target_ns=bound_ns,
    )


def accept(node_id: str, action_id: str = "act-1") -> Vote:
    return Vote(action_id, node_id, True, "ok", 100_000, 500_000)


def refuse(node_id: str, reason: str = "clock not synchronized", action_id: str = "act-1") -> Vote:
    return Vote(action_id, node_id, False, reason, 0, 0)


def voted(node_id: str = "a", p: Proposal | None = None, min_lead_ns: int = 10 * MS) -> Participant:
    """A participant that has accepted `p` (default proposal) at T0."""
    part = Participant(node_id, min_lead_ns=min_lead_ns)
    vote = part.on_propose(p or proposal(), outlook())
    assert vote.accept, vote.reason
    return part


def phase_of(part: Participant, action_id: str = "act-1") -> Phase | None:
    report = part.report(action_id)
    return None if report is None else report.phase


# -- votes ------------------------------------------------------------------------------------


def test_a_good_clock_with_time_to_spare_accepts_and_reports_its_outlook() -> None:
    vote = vote_on(proposal(), "a", outlook(sigma_ns=123, bound_ns=456), min_lead_ns=10 * MS)
    assert vote == Vote("act-1", "a", True, "ok", 123, 456)


def test_a_bound_equal_to_the_tolerance_and_a_lead_equal_to_the_minimum_accept() -> None:
    """'Within tolerance' and 'at least min_lead' are both inclusive."""
    p = proposal(tolerance_ns=1 * MS)
    now = p.commit_deadline_ns - 10 * MS
    vote = vote_on(p, "a", outlook(now, bound_ns=1 * MS), min_lead_ns=10 * MS)
    assert vote.accept and vote.reason == "ok"


def test_a_bound_one_ns_over_the_tolerance_refuses_with_both_in_ms() -> None:
    vote = vote_on(proposal(), "a", outlook(bound_ns=1 * MS + 1), min_lead_ns=0)
    assert not vote.accept
    assert vote.reason == "bound at target ±1.0 ms exceeds tolerance ±1.0 ms"


def test_a_bound_too_large_reads_in_ms() -> None:
    vote = vote_on(proposal(tolerance_ns=1 * MS), "a", outlook(bound_ns=3_100_000), min_lead_ns=0)
    assert not vote.accept
    assert vote.reason == "bound at target ±3.1 ms exceeds tolerance ±1.0 ms"
    assert vote.bound_at_target_ns == 3_100_000  # the initiator sees the number, not only text


def test_an_unsynchronized_clock_refuses_whatever_its_bound() -> None:
    """An unsynchronized clock's bound means nothing, so the reason does not quote it."""
    for bound in (1, 5 * MS):
        vote = vote_on(proposal(), "a", outlook(synchronized=False, bound_ns=bound), min_lead_ns=0)
        assert not vote.accept
        assert vote.reason == "clock not synchronized"


def test_a_target_too_close_refuses_saying_how_much_time_is_left_and_needed() -> None:
    p = proposal()
    now = p.commit_deadline_ns - 4 * MS
    vote = vote_on(p, "a", outlook(now), min_lead_ns=5 * MS)
    assert not vote.accept
    assert vote.reason == "target too close: 4.0 ms left for the commit, 5.0 ms needed"


def test_a_commit_deadline_already_past_is_too_close() -> None:
    p = proposal()
    vote = vote_on(p, "a", outlook(p.commit_deadline_ns + 2 * MS), min_lead_ns=0)
    assert not vote.accept
    assert vote.reason == "target too close: -2.0 ms left for the commit, 0.0 ms needed"


def test_several_reasons_are_all_given_joined_by_semicolons() -> None:
    p = proposal()
    late = p.commit_deadline_ns - 1 * MS
    both = vote_on(p, "a", outlook(late, bound_ns=3_100_000), min_lead_ns=2 * MS)
    assert not both.accept
    assert both.reason == (
        "bound at target ±3.1 ms exceeds tolerance ±1.0 ms; "
        "target too close: 1.0 ms left for the commit, 2.0 ms needed"
    )
    unsynced = vote_on(p, "a", outlook(late, synchronized=False), min_lead_ns=2 * MS)
    assert unsynced.reason == (
        "clock not synchronized; target too close: 1.0 ms left for the commit, 2.0 ms needed"
    )


# -- proposal validation ----------------------------------------------------------------------


@pytest.mark.parametrize("action_id", ["a", "A-z_0.9:x", "x" * 128])
def test_action_ids_of_the_allowed_alphabet_and_length_are_accepted(action_id: str) -> None:
    assert proposal(action_id).action_id == action_id


@pytest.mark.parametrize("action_id", ["", "x" * 129, "has space", "a/b", "é", "a\nb", "\nab"])
def test_bad_action_ids_are_rejected(action_id: str) -> None:
    with pytest.raises(ValueError, match="action_id"):
        proposal(action_id)


@pytest.mark.parametrize("action_id", ["abc\n", "x" * 128 + "\n"])
def test_an_action_id_with_a_trailing_newline_is_rejected(action_id: str) -> None:
    """Action ids come off the wire and go into logs and reports: a newline must not pass.

    A regex ending in `$` (rather than `\\Z` or fullmatch) lets exactly these through."""
    with pytest.raises(ValueError, match="action_id"):
        proposal(action_id)


@pytest.mark.parametrize("tolerance_ns", [0, -1])
def test_a_tolerance_that_is_not_positive_is_rejected(tolerance_ns: int) -> None:
    with pytest.raises(ValueError, match="tolerance must be positive"):
        proposal(tolerance_ns=tolerance_ns)


@pytest.mark.parametrize(
    ("vote_ns", "commit_ns", "target_ns"),
    [(2, 1, 3), (1, 3, 2), (3, 2, 1), (1, 1, 0)],
)
def test_deadlines_out_of_order_are_rejected(vote_ns: int, commit_ns: int, target_ns: int) -> None:
    with pytest.raises(ValueError, match="deadlines must come in order"):
        proposal(
            vote_deadline_ns=T0 + vote_ns,
            commit_deadline_ns=T0 + commit_ns,
            target_ns=T0 + target_ns,
        )


def test_equal_deadlines_are_allowed() -> None:
    p = proposal(vote_deadline_ns=T0, commit_deadline_ns=T0, target_ns=T0)
    assert p.vote_deadline_ns == p.commit_deadline_ns == p.target_ns


@pytest.mark.parametrize("participants", [(), ("a", "a"), ("a", "b", "a")])
def test_participants_must_be_distinct_and_at_least_one(participants: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="participants must be distinct"):
        proposal(participants=participants)


# -- the initiator ------------------------------------------------------------------------------


def test_all_accept_commits_at_once_without_waiting_for_the_deadline() -> None:
    r = Round(proposal())
    r.on_vote(accept("a"))
    assert r.decide(T0) is None
    assert r.phase is Phase.PROPOSED
    r.on_vote(accept("b"))
    assert r.decide(T0) == Decision("act-1", True, {})
    assert r.phase is Phase.COMMITTED


def test_a_refusal_aborts_once_every_vote_is_in() -> None:
    r = Round(proposal())
    r.on_vote(refuse("a", "clock not synchronized"))
    assert r.decide(T0) is None  # b may still answer before the vote deadline
    r.on_vote(accept("b"))
    assert r.decide(T0) == Decision("act-1", False, {"a": "clock not synchronized"})
    assert r.phase is Phase.ABORTED


def test_every_refusal_reason_is_kept() -> None:
    r = Round(proposal())
    r.on_vote(refuse("a", "clock not synchronized"))
    r.on_vote(refuse("b", "target too close"))
    decision = r.decide(T0)
    assert decision is not None and not decision.commit
    assert decision.reasons == {"a": "clock not synchronized", "b": "target too close"}


def test_a_refusal_with_a_vote_missing_aborts_at_the_vote_deadline_naming_both() -> None:
    p = proposal()
    r = Round(p)
    r.on_vote(refuse("a", "clock not synchronized"))
    assert r.decide(p.vote_deadline_ns - 1) is None
    assert r.decide(p.vote_deadline_ns) == Decision(
        "act-1", False, {"a": "clock not synchronized", "b": NO_VOTE}
    )


def test_missing_votes_at_the_vote_deadline_abort() -> None:
    p = proposal(participants=("a", "b", "c"))
    r = Round(p)
    r.on_vote(accept("a"))
    assert r.decide(p.vote_deadline_ns - 1) is None
    decision = r.decide(p.vote_deadline_ns)
    assert decision == Decision("act-1", False, {"b": NO_VOTE, "c": NO_VOTE})
    assert r.phase is Phase.ABORTED


def test_no_vote_at_all_aborts_at_the_vote_deadline() -> None:
    p = proposal()
    r = Round(p)
    assert r.decide(p.vote_deadline_ns + 1) == Decision(
        "act-1", False, {"a": NO_VOTE, "b": NO_VOTE}
    )


def test_an_unreachable_participant_counts_as_a_refusal_with_the_cause() -> None:
    r = Round(proposal())
    r.on_vote(accept("a"))
    r.on_no_vote("b", "unreachable: connection refused")
    assert r.decide(T0) == Decision("act-1", False, {"b": "unreachable: connection refused"})


def test_a_commit_is_final_later_refusals_and_calls_change_nothing() -> None:
    p = proposal()
    r = Round(p)
    r.on_vote(accept("a"))
    r.on_vote(accept("b"))
    first = r.decide(T0)
    assert first is not None and first.commit
    r.on_vote(refuse("a"))
    r.on_no_vote("b", "timed out")
    assert r.decide(p.target_ns + 1) is first
    assert r.votes == {"a": accept("a"), "b": accept("b")}
    assert r.phase is Phase.COMMITTED


def test_an_abort_is_final_late_votes_change_nothing() -> None:
    p = proposal()
    r = Round(p)
    r.on_vote(accept("a"))
    first = r.decide(p.vote_deadline_ns)
    assert first == Decision("act-1", False, {"b": NO_VOTE})
    r.on_vote(accept("b"))  # arrives after the decision
    assert "b" not in r.votes
    assert r.decide(p.vote_deadline_ns + 1) is first
    assert r.phase is Phase.ABORTED


def test_votes_of_strangers_and_other_actions_are_ignored() -> None:
    r = Round(proposal(participants=("a",)))
    r.on_vote(refuse("mallory"))
    r.on_vote(refuse("a", action_id="act-2"))
    r.on_no_vote("eve", "unreachable")
    assert r.votes == {}
    r.on_vote(accept("a"))
    assert r.decide(T0) == Decision("act-1", True, {})


def test_a_duplicate_vote_is_ignored_the_first_one_counts() -> None:
    """A retried call must not let a node change its mind: the first vote stands."""
    r = Round(proposal(participants=("a",)))
    r.on_vote(accept("a"))
    r.on_vote(refuse("a", "changed my mind"))
    assert r.votes == {"a": accept("a")}
    r2 = Round(proposal(participants=("a",)))
    r2.on_vote(refuse("a", "first"))
    r2.on_vote(accept("a"))
    assert r2.decide(T0) == Decision("act-1", False, {"a": "first"})


def test_reports_are_kept_only_for_this_action_and_its_participants() -> None:
    r = Round(proposal())
    mine = Report("act-1", "a", Phase.EXECUTED, executed_at_ns=T0)
    r.on_report(mine)
    r.on_report(Report("act-2", "b", Phase.EXECUTED))
    r.on_report(Report("act-1", "mallory", Phase.EXECUTED))
    assert r.reports == {"a": mine}


# -- the participant ------------------------------------------------------------------------------


def test_a_repeated_proposal_gets_the_same_vote_even_if_the_clock_changed() -> None:
    """A retried call must not flip the vote the initiator may already have counted."""
    part = Participant("a", min_lead_ns=10 * MS)
    first = part.on_propose(proposal(), outlook())
    again = part.on_propose(proposal(), outlook(T0 + 1 * MS, synchronized=False))
    assert first.accept and again == first
    assert phase_of(part) is Phase.VOTED
    refusing = Participant("b", min_lead_ns=10 * MS)
    no = refusing.on_propose(proposal(), outlook(synchronized=False))
    assert refusing.on_propose(proposal(), outlook()) == no
    assert phase_of(refusing) is Phase.REFUSED


def test_an_action_id_reused_for_another_proposal_is_refused_and_the_first_kept() -> None:
    part = voted()
    other = proposal(target_ns=T0 + 400 * MS)
    vote = part.on_propose(other, outlook())
    assert vote == Vote("act-1", "a", False, "action id already used for another proposal", 0, 0)
    assert phase_of(part) is Phase.VOTED
    assert part.on_decision("act-1", True, T0) is Phase.COMMITTED
    assert part.to_execute() == [proposal()]


def test_a_node_not_among_the_participants_refuses_and_holds_nothing() -> None:
    part = Participant("z", min_lead_ns=0)
    vote = part.on_propose(proposal(), outlook())
    assert vote == Vote("act-1", "z", False, "not a participant", 0, 0)
    assert part.report("act-1") is None
    assert part.on_decision("act-1", True, T0) is None
    assert part.to_execute() == []


def test_a_refusing_participant_holds_the_action_as_refused_with_its_reason() -> None:
    part = Participant("a", min_lead_ns=0)
    part.on_propose(proposal(), outlook(synchronized=False))
    assert part.report("act-1") == Report(
        "act-1", "a", Phase.REFUSED, detail="clock not synchronized"
    )


def test_a_commit_before_the_commit_deadline_is_listed_for_execution() -> None:
    p = proposal()
    part = voted(p=p)
    assert part.on_decision("act-1", True, p.commit_deadline_ns - 1) is Phase.COMMITTED
    assert part.to_execute() == [p]
    assert part.may_execute("act-1")
    assert part.on_decision("act-1", True, p.commit_deadline_ns - 1) is Phase.COMMITTED
    assert part.to_execute() == [p]  # a duplicate commit lists it once


@pytest.mark.parametrize("late_ns", [0, 1, 50 * MS])
def test_a_commit_at_or_after_the_commit_deadline_expires_and_never_executes(late_ns: int) -> None:
    p = proposal()
    part = voted(p=p)
    assert part.on_decision("act-1", True, p.commit_deadline_ns + late_ns) is Phase.EXPIRED
    assert part.to_execute() == []
    assert not part.may_execute("act-1")
    # a second, earlier-stamped copy of the commit cannot revive it
    assert part.on_decision("act-1", True, p.commit_deadline_ns - 1) is Phase.EXPIRED
    assert not part.may_execute("act-1")


def test_an_abort_aborts_a_voted_a_refused_and_a_committed_action() -> None:
    p = proposal()
    part = voted(p=p)
    assert part.on_decision("act-1", False, T0) is Phase.ABORTED
    assert part.to_execute() == [] and not part.may_execute("act-1")
    committed = voted(p=p)
    committed.on_decision("act-1", True, T0)
    assert committed.on_decision("act-1", False, T0 + 1) is Phase.ABORTED
    assert committed.to_execute() == [] and not committed.may_execute("act-1")
    refused = Participant("a", min_lead_ns=0)
    refused.on_propose(p, outlook(synchronized=False))
    assert refused.on_decision("act-1", False, T0) is Phase.ABORTED


def test_a_commit_after_an_abort_or_a_refusal_changes_nothing() -> None:
    part = voted()
    part.on_decision("act-1", False, T0)
    assert part.on_decision("act-1", True, T0) is Phase.ABORTED
    assert not part.may_execute("act-1")
    refused = Participant("a", min_lead_ns=0)
    refused.on_propose(proposal(), outlook(synchronized=False))
    assert refused.on_decision("act-1", True, T0) is Phase.REFUSED
    assert not refused.may_execute("act-1")


def test_a_decision_for_an_unknown_action_returns_none() -> None:
    part = voted()
    assert part.on_decision("act-9", True, T0) is None
    assert part.on_decision("act-9", False, T0) is None


def test_expire_marks_only_voted_actions_past_their_commit_deadline() -> None:
    p1 = proposal("act-1")
    p2 = proposal("act-2", commit_deadline_ns=T0 + 250 * MS)
    p3 = proposal("act-3")
    part = voted(p=p1)
    part.on_propose(p2, outlook())
    part.on_propose(p3, outlook())
    part.on_decision("act-3", True, T0)
    assert part.expire(p1.commit_deadline_ns - 1) == []
    assert part.expire(p1.commit_deadline_ns) == ["act-1"]
    assert phase_of(part, "act-1") is Phase.EXPIRED
    assert phase_of(part, "act-2") is Phase.VOTED  # its deadline is later
    assert phase_of(part, "act-3") is Phase.COMMITTED  # decided in time: not expired
    assert part.expire(p2.commit_deadline_ns) == ["act-2"]
    assert part.expire(p2.commit_deadline_ns + 1) == []  # idempotent
    assert part.on_decision("act-1", True, p1.commit_deadline_ns - 1) is Phase.EXPIRED


def test_may_execute_only_while_committed() -> None:
    part = voted()
    assert not part.may_execute("act-9")
    assert not part.may_execute("act-1")  # voted, not yet committed
    part.on_decision("act-1", True, T0)
    assert part.may_execute("act-1")
    part.on_executed(Report("act-1", "a", Phase.EXECUTED, executed_at_ns=T0 + 300 * MS))
    assert not part.may_execute("act-1")  # already ran: never twice


def test_on_executed_records_the_report_and_report_returns_it() -> None:
    p = proposal()
    part = voted(p=p)
    part.on_decision("act-1", True, T0)
    ran = Report("act-1", "a", Phase.EXECUTED, executed_at_ns=p.target_ns + 7, bound_ns=400_000,
                 base_time_ns=p.target_ns + 9, detail="mark")  # fmt: skip
    part.on_executed(ran)
    assert part.report("act-1") == ran
    assert part.to_execute() == []
    # a second report for the same action does not overwrite the first
    part.on_executed(dataclasses.replace(ran, executed_at_ns=p.target_ns + 99))
    assert part.report("act-1") == ran


def test_a_failed_execution_is_recorded_as_failed() -> None:
    part = voted()
    part.on_decision("act-1", True, T0)
    failed = Report("act-1", "a", Phase.FAILED, detail="bound 3 ms at target")
    part.on_executed(failed)
    assert part.report("act-1") == failed
    assert not part.may_execute("act-1")


def test_on_executed_is_ignored_unless_committed() -> None:
    part = voted()
    part.on_executed(Report("act-1", "a", Phase.EXECUTED))
    assert phase_of(part) is Phase.VOTED
    part.on_executed(Report("act-9", "a", Phase.EXECUTED))
    assert part.report("act-9") is None
    part.on_decision("act-1", False, T0)
    part.on_executed(Report("act-1", "a", Phase.EXECUTED))
    assert phase_of(part) is Phase.ABORTED


def test_report_of_an_action_not_executed_gives_its_phase_and_vote_reason() -> None:
    part = voted()
    assert part.report("act-1") == Report("act-1", "a", Phase.VOTED, detail="ok")
    assert part.report("act-9") is None


def test_an_abort_after_execution_does_not_undo_it() -> None:
    part = voted()
    part.on_decision("act-1", True, T0)
    part.on_executed(Report("act-1", "a", Phase.EXECUTED))
    assert part.on_decision("act-1", False, T0 + 1) is Phase.EXECUTED


def test_forget_before_drops_actions_whose_target_is_more_than_keep_past() -> None:
    early = proposal("act-1", target_ns=T0 + 300 * MS)
    later = proposal("act-2", target_ns=T0 + 400 * MS)
    part = voted(p=early)
    part.on_propose(later, outlook())
    part.forget_before(now_ns=early.target_ns + 50 * MS, keep_ns=50 * MS)
    assert phase_of(part, "act-1") is Phase.VOTED  # exactly keep_ns past: kept
    part.forget_before(now_ns=early.target_ns + 50 * MS + 1, keep_ns=50 * MS)
    assert part.report("act-1") is None
    assert phase_of(part, "act-2") is Phase.VOTED


# -- every interleaving -------------------------------------------------------------------------


@dataclasses.dataclass
class Node:
    """The harness's view of one participant: its clock and what has happened to it."""

    part: Participant
    synchronized: bool
    bound_ns: int
    vote: Vote | None = None
    #: the phase the rules promise, tracked independently of the code under test
    expected: Phase | None = None
    #: corrected times at which a commit was delivered
    commits_at: list[int] = dataclasses.field(default_factory=list)
    #: ids the I/O layer ever took from to_execute(); it keeps them, relying on may_execute()
    #: to refuse what was aborted or already ran
    waiting: set[str] = dataclasses.field(default_factory=set)
    executions: int = 0
    expired_past_deadline: bool = False


class Interleavings(RuleBasedStateMachine):
    """One round and its participants; hypothesis picks the order of every event.

    All nodes share one monotonic corrected time, which only `advance` moves: the deadlines are
    decided in that time, so this is the setting in which the promises must hold exactly.
    Deadlines and steps are whole milliseconds, and `advance` can land exactly on (or 1 ns past)
    the next deadline, because the off-by-ones that matter live there.
    """

    def __init__(self) -> None:
        super().__init__()
        self.now = T0
        self.nodes: list[Node] = []
        self.first_decision: Decision | None = None

    @initialize(
        clocks=st.lists(
            st.tuples(
                # (synchronized, bound at target): mostly able to hold the 1 ms tolerance, some
                # exactly at it, some 1 ns over, some far over or unsynchronized
                st.sampled_from(
                    [(True, 0), (True, 500_000), (True, 1 * MS)] * 4
                    + [(True, 1 * MS + 1), (True, 3 * MS), (False, 500_000)]
                ),
                st.sampled_from([0, 0, 1 * MS, 2 * MS, 5 * MS]),  # min_lead
            ),
            min_size=1,
            max_size=4,
        ),
        vote_ms=st.sampled_from([0, 2, 5, 10, 20]),
        commit_ms=st.sampled_from([0, 2, 5, 10, 20]),
        target_ms=st.sampled_from([0, 2, 5, 10, 20]),
    )
    def start(
        self,
        clocks: list[tuple[tuple[bool, int], int]],
        vote_ms: int,
        commit_ms: int,
        target_ms: int,
    ) -> None:
        names = tuple(f"n{k}" for k in range(len(clocks)))
        self.proposal = proposal(
            "sync-1",
            names,
            tolerance_ns=1 * MS,
            vote_deadline_ns=T0 + vote_ms * MS,
            commit_deadline_ns=T0 + (vote_ms + commit_ms) * MS,
            target_ns=T0 + (vote_ms + commit_ms + target_ms) * MS,
        )
        self.round = Round(self.proposal)
        self.nodes = [
            Node(Participant(name, min_lead_ns=lead), synced, bound)
            for name, ((synced, bound), lead) in zip(names, clocks, strict=True)
        ]

    def node(self, i: int) -> Node:
        return self.nodes[i % len(self.nodes)]

    # -- events --

    @rule(i=st.integers(0, 3))
    def deliver_proposal(self, i: int) -> None:
        """The node votes on what its clock promises *now*; a repeat must echo the first."""
        n = self.node(i)
        clock = outlook(self.now, synchronized=n.synchronized, bound_ns=n.bound_ns)
        vote = n.part.on_propose(self.proposal, clock)
        if n.vote is not None:
            assert vote == n.vote
            return
        p = self.proposal
        should_accept = (
            n.synchronized
            and n.bound_ns <= p.tolerance_ns
            and p.commit_deadline_ns - self.now >= n.part.min_lead_ns
        )
        assert vote.accept == should_accept, vote.reason
        n.vote = vote
        n.expected = Phase.VOTED if vote.accept else Phase.REFUSED

    @rule(i=st.integers(0, 3))
    def deliver_vote(self, i: int) -> None:
        n = self.node(i)
        if n.vote is not None:  # no vote to carry before the proposal reached the node
            self.round.on_vote(n.vote)

    @rule()
    def broadcast_proposal(self) -> None:
        """The initiator's fan-out: the proposal reaches every node in one step (to some, again)."""
        for k in range(len(self.nodes)):
            self.deliver_proposal(k)

    @rule()
    def collect_votes(self) -> None:
        """Every vote cast so far reaches the round in one step (some, again)."""
        for k in range(len(self.nodes)):
            self.deliver_vote(k)

    @rule(i=st.integers(0, 3), step=st.sampled_from([1, 5, "next", "past next"]))
    def deliver_decision_late(self, i: int, step: int | str) -> None:
        """The decision held up in the network while time moves on (the case the commit
        deadline exists for); without this hypothesis rarely reaches it."""
        self.advance(step)
        self.deliver_decision(i)

    @rule(lost=st.sampled_from([0, 0, 1, 2, 4, 8, 15]))
    def broadcast_decision(self, lost: int = 0) -> None:
        """The decision to every node, except those whose bit is set in `lost` (delivered
        later, by another step, or never)."""
        for k in range(len(self.nodes)):
            if not lost >> k & 1:
                self.deliver_decision(k)

    @rule(lost=st.sampled_from([0, 0, 1, 2, 4, 8, 15]))
    def decide_and_broadcast(self, lost: int) -> None:
        """The initiator's usual loop. Hypothesis disables some rules per example (swarm
        testing), so the happy path needs more than one way to happen."""
        self.decide()
        self.broadcast_decision(lost)

    @rule(step=st.sampled_from([0, 1, 1, 2, 3, 5, 8, "next", "past next"]))
    def advance(self, step: int | str) -> None:
        """Move the shared corrected time on by whole ms, or exactly onto (or 1 ns past) the next
        deadline still ahead: off-by-ones live on the deadlines."""
        p = self.proposal
        ahead = [d for d in (p.vote_deadline_ns, p.commit_deadline_ns, p.target_ns) if d > self.now]
        if isinstance(step, int):
            self.now += step * MS
        elif ahead:
            self.now = min(ahead) + (1 if step == "past next" else 0)

    @rule()
    def decide(self) -> None:
        decision = self.round.decide(self.now)
        if self.first_decision is not None:
            assert decision == self.first_decision
            return
        votes = self.round.votes
        p = self.proposal
        missing = [name for name in p.participants if name not in votes]
        refused = {name: v.reason for name, v in votes.items() if not v.accept}
        if not missing and not refused:
            assert decision == Decision(p.action_id, True, {})
        elif (refused and not missing) or self.now >= p.vote_deadline_ns:
            assert decision == Decision(
                p.action_id, False, refused | dict.fromkeys(missing, NO_VOTE)
            )
        else:
            assert decision is None
        self.first_decision = decision
        if decision is not None:
            event(f"the round decided {'commit' if decision.commit else 'abort'}")

    @rule(i=st.integers(0, 3))
    def deliver_decision(self, i: int) -> None:
        """Only what the round decided is ever sent; it may come late, twice, or never."""
        decision = self.round.decision
        if decision is None:
            return
        n = self.node(i)
        got = n.part.on_decision(decision.action_id, decision.commit, self.now)
        if decision.commit:
            n.commits_at.append(self.now)
            if n.expected is Phase.VOTED:
                when = self.now - self.proposal.commit_deadline_ns
                late = "late" if when > 0 else "at the deadline" if when == 0 else "in time"
                event(f"the commit reached a waiting node {late}")
            if n.expected is Phase.VOTED:
                on_time = self.now < self.proposal.commit_deadline_ns
                n.expected = Phase.COMMITTED if on_time else Phase.EXPIRED
        elif n.expected in (Phase.VOTED, Phase.COMMITTED, Phase.REFUSED):
            n.expected = Phase.ABORTED
        assert got is n.expected

    @rule(i=st.integers(0, 3))
    def expire(self, i: int) -> None:
        n = self.node(i)
        gone = n.part.expire(self.now)
        past = self.now >= self.proposal.commit_deadline_ns
        should_go = n.expected is Phase.VOTED and past
        assert gone == (["sync-1"] if should_go else [])
        if should_go:
            n.expected = Phase.EXPIRED
            event("expire() expired a voted action")
        if past and n.vote is not None:  # an expire() before the proposal arrived proves nothing
            n.expired_past_deadline = True

    @rule(i=st.integers(0, 3))
    def take_for_execution(self, i: int) -> None:
        """The I/O layer takes the committed actions and starts waiting for their target."""
        n = self.node(i)
        n.waiting |= {p.action_id for p in n.part.to_execute()}

    @rule(i=st.integers(0, 3), wait=st.booleans())
    def execute(self, i: int, wait: bool = False) -> None:
        """Run what is committed at or after the target, asking may_execute right before.

        With `wait` the node first waits for the target (wait_until on the shared clock, so
        time moves on for everyone), as the I/O layer does when it holds a committed action;
        without it, the step does nothing before the target."""
        n = self.node(i)
        if wait and (n.waiting or n.part.to_execute()):
            self.now = max(self.now, self.proposal.target_ns)
        if self.now < self.proposal.target_ns:
            return
        n.waiting |= {p.action_id for p in n.part.to_execute()}
        for action_id in sorted(n.waiting):
            if n.part.may_execute(action_id):
                n.executions += 1
                n.part.on_executed(
                    Report(action_id, n.part.node_id, Phase.EXECUTED, executed_at_ns=self.now)
                )
                assert n.expected is Phase.COMMITTED
                event("a node executed")
                n.expected = Phase.EXECUTED

    # -- what must hold after every step --

    @invariant()
    def phases_follow_the_rules(self) -> None:
        for n in self.nodes:
            assert phase_of(n.part, "sync-1") is n.expected

    @invariant()
    def execution_only_after_a_unanimous_commit_received_in_time(self) -> None:
        decision = self.round.decision
        for n in self.nodes:
            if n.executions == 0:
                continue
            assert decision is not None and decision.commit
            assert all(m.vote is not None and m.vote.accept for m in self.nodes)
            assert all(v.accept for v in self.round.votes.values())
            assert set(self.round.votes) == set(self.proposal.participants)
            assert n.commits_at, "executed without ever receiving the commit"
            assert n.commits_at[0] < self.proposal.commit_deadline_ns

    @invariant()
    def a_commit_first_received_late_never_executes(self) -> None:
        deadline = self.proposal.commit_deadline_ns
        for n in self.nodes:
            if not n.commits_at or n.commits_at[0] >= deadline:
                assert n.executions == 0
                assert phase_of(n.part, "sync-1") not in (Phase.COMMITTED, Phase.EXECUTED)

    @invariant()
    def an_abort_leaves_nobody_committed_or_executed(self) -> None:
        decision = self.round.decision
        if decision is not None and not decision.commit:
            for n in self.nodes:
                assert n.executions == 0
                assert phase_of(n.part, "sync-1") not in (Phase.COMMITTED, Phase.EXECUTED)

    @invariant()
    def nothing_executes_twice(self) -> None:
        for n in self.nodes:
            assert n.executions <= 1

    @invariant()
    def the_decision_never_changes(self) -> None:
        if self.first_decision is not None:
            assert self.round.decision == self.first_decision

    @invariant()
    def past_the_vote_deadline_a_decision_is_available(self) -> None:
        """Liveness, checked on a copy so that *when* decide() is called stays hypothesis's."""
        if self.now >= self.proposal.vote_deadline_ns:
            assert copy.deepcopy(self.round).decide(self.now) is not None

    @invariant()
    def nobody_waits_forever(self) -> None:
        for n in self.nodes:
            if n.expired_past_deadline:
                assert phase_of(n.part, "sync-1") is not Phase.VOTED

    def teardown(self) -> None:
        """Whatever happened, once the deadlines pass the round is decided and no node is
        left waiting for a decision."""
        if not self.nodes:
            return
        self.now = max(self.now, self.proposal.target_ns)
        decision = self.round.decide(self.now)
        assert decision is not None
        if self.first_decision is not None:
            assert decision == self.first_decision
        for k in range(len(self.nodes)):
            self.expire(k)
            self.execute(k)
        for n in self.nodes:
            assert phase_of(n.part, "sync-1") is not Phase.VOTED
            assert n.executions <= 1
            if n.executions:
                assert decision.commit
        self.execution_only_after_a_unanimous_commit_received_in_time()
        self.a_commit_first_received_late_never_executes()
        self.an_abort_leaves_nobody_committed_or_executed()


Interleavings.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=50,
    derandomize=True,  # the same interleavings every run: a failure reproduces
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_interleavings = Interleavings.TestCase
