"""What changed in the peers' consensus since the last round, in words, once. No I/O.

The consensus is recomputed at every publish and every peer round; a log of it would repeat
itself ten times a second. This remembers each peer's state (used, falseticker, unusable) and
whether there was a consensus at all, and turns a change into one line with its reason. A
peer joining or expiring is the peer loop's to say (it knows the address and the error); this
only follows the consensus.
"""

from __future__ import annotations

import logging

from chronotick.display import format_ns
from coordinator.peer_table import ConsensusResult, PeerEntry

Event = tuple[int, str]  # (logging level, message)


class PeerStateLog:
    def __init__(self) -> None:
        self._states: dict[str, str] = {}
        self._had_consensus = False

    def update(self, result: ConsensusResult, entries: list[PeerEntry]) -> list[Event]:
        by_id = {e.node_id: e for e in entries}
        events: list[Event] = []
        for node_id, state in sorted(result.states.items()):
            old = self._states.get(node_id)
            if state == old:
                continue
            entry = by_id.get(node_id)
            if state == "falseticker":
                where = ""
                if entry is not None:
                    where = (
                        f" (it says true time − our clock is "
                        f"{format_ns(entry.true_offset_ns, signed=True)} "
                        f"± {format_ns(entry.true_half_width_ns)})"
                    )
                events.append(
                    (
                        logging.WARNING,
                        f"peer {node_id} is a falseticker: its interval misses the "
                        f"majority's{where}; not used",
                    )
                )
            elif state == "unusable":
                status = entry.exchange.peer_clock.status.name if entry is not None else "?"
                message = f"peer {node_id} has no estimate of its own ({status}); not used"
                events.append((logging.INFO, message))
            elif old == "falseticker":
                events.append(
                    (logging.INFO, f"peer {node_id} agrees with the majority again; used")
                )
            elif old == "unusable":
                events.append((logging.INFO, f"peer {node_id} has an estimate again; used"))
            # a new peer that is simply used: the peer loop's "peer X at ..." line said it
        self._states = dict(result.states)
        consensus = result.consensus
        if consensus is not None and not self._had_consensus:
            events.append(
                (
                    logging.INFO,
                    f"peer consensus of {len(consensus.used)}: true time − our clock "
                    f"{format_ns(consensus.offset_ns, signed=True)} "
                    f"± {format_ns(consensus.bound_ns)}",
                )
            )
        elif consensus is None and self._had_consensus:
            why = "no usable peer" if not result.states else "no majority agrees"
            if result.states and all(s == "unusable" for s in result.states.values()):
                why = "no peer has an estimate of its own"
            events.append((logging.WARNING, f"peer consensus lost: {why}"))
        self._had_consensus = consensus is not None
        return events
