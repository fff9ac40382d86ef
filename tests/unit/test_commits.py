"""The ordering check of commit timestamps, against a brute force over all pairs."""

from __future__ import annotations

import random

from coordinator.commits import CommitRecord, check_ordering, ordering_violations


def _brute_force(commits: list[CommitRecord]) -> tuple[int, int | None]:
    """(commits B with some A acked before B began and ts(A) >= ts(B), smallest margin)."""
    violating = 0
    margin: int | None = None
    for b in commits:
        earlier = [a for a in commits if a.true_ack_ns < b.true_start_ns]
        if not earlier:
            continue
        m = min(b.timestamp_ns - a.timestamp_ns for a in earlier)
        violating += m <= 0
        margin = m if margin is None else min(margin, m)
    return violating, margin


def test_the_sweep_agrees_with_every_pair() -> None:
    rng = random.Random(7)
    for _ in range(300):
        commits = []
        for _ in range(rng.randint(0, 30)):
            start = rng.randint(0, 100)
            commits.append(
                CommitRecord("n", start, start + rng.randint(0, 30), rng.randint(0, 40), 1, 1)
            )
        check = check_ordering(commits)
        assert (check.violations, check.min_margin_ns) == _brute_force(commits)


def test_a_correct_history_has_no_violation_and_equal_stamps_in_order_are_one() -> None:
    commits = [CommitRecord("n", 10 * k, 10 * k + 5, 10 * k + 3, 1, 1) for k in range(50)]
    check = check_ordering(commits)
    assert check.violations == 0 and check.outside_window == 0
    assert check.min_margin_ns == 10
    pair = [CommitRecord("n", 0, 5, 7, 1, 1), CommitRecord("n", 6, 9, 7, 1, 1)]
    assert ordering_violations(pair) == 1
    assert check_ordering(pair).outside_window == 1  # the first: stamped 7, acked at 5
