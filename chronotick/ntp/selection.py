"""Which sources to believe: falseticker rejection by interval intersection. No I/O.

Each source's latest measurement says the true offset lies in [θ − λ, θ + λ] (λ its root
distance). Brought to a common instant with the current drift estimate, the intervals of
honest sources overlap; a source whose interval misses the point where most of them meet is a
falseticker (Marzullo's algorithm, as NTP and chrony use it). A majority is required: with no
point shared by more than half of the sources, nobody is believed.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class SourceInterval:
    source: str
    low_ns: int
    high_ns: int

    def __post_init__(self) -> None:
        if self.low_ns > self.high_ns:
            raise ValueError(f"{self.source}: interval low {self.low_ns} > high {self.high_ns}")


@dataclasses.dataclass(frozen=True)
class Selection:
    truechimers: frozenset[str]
    falsetickers: frozenset[str]
    #: the offsets that the most intervals share, or None without a majority
    agreed_low_ns: int | None
    agreed_high_ns: int | None

    @property
    def has_majority(self) -> bool:
        return self.agreed_low_ns is not None


def select(intervals: list[SourceInterval]) -> Selection:
    """Sources whose intervals contain the point most intervals share, if a majority does."""
    everyone = frozenset(i.source for i in intervals)
    if not intervals:
        return Selection(frozenset(), frozenset(), None, None)
    # Sweep over endpoints: +1 at a low end, -1 after a high end (lows sort first on ties).
    # Keep every region where the depth reaches its maximum: with tied majorities (a chain
    # of overlaps), all their members are truechimers, as in chrony and RFC 5905.
    edges = sorted([(i.low_ns, 0, 1) for i in intervals] + [(i.high_ns, 1, -1) for i in intervals])
    best, depth = 0, 0
    regions: list[tuple[int, int]] = []
    for k, (position, _kind, step) in enumerate(edges):
        depth += step
        if step == 1 and depth >= best:
            if depth > best:
                best, regions = depth, []
            regions.append((position, edges[k + 1][0]))
    if best * 2 <= len(intervals):
        return Selection(frozenset(), everyone, None, None)
    chimers = frozenset(
        i.source
        for i in intervals
        if any(i.low_ns <= high and i.high_ns >= low for low, high in regions)
    )
    return Selection(chimers, everyone - chimers, regions[0][0], regions[-1][1])
