"""The node's log of the peers' consensus: one line per change of a peer's state (with the
reason) and per consensus gained or lost; nothing while nothing changes."""

from __future__ import annotations

import logging
import math

from chronotick.status import ClockStatus
from coordinator.peer_events import PeerStateLog
from coordinator.peer_table import Exchange, PeerClock, PeerTable

S = 1_000_000_000
T0 = 1_760_000_000 * S


def exchange(
    node_id: str, offset_ns: int, status: ClockStatus = ClockStatus.SYNCHRONIZED
) -> Exchange:
    """An exchange at T0 with a 200 µs round trip showing `offset_ns`."""
    clock = PeerClock(0, 20_000.0, 50_000, status)
    if not status.gives_interval:
        clock = PeerClock(0, math.inf, 0, status)
    t1 = T0
    return Exchange(node_id, f"{node_id}:1", "static", t1, t1 + 100_000 + offset_ns,
                    t1 + 100_000 + offset_ns, t1 + 200_000, clock)  # fmt: skip


def round_of(log: PeerStateLog, table: PeerTable) -> list[tuple[int, str]]:
    return log.update(table.consensus(T0 + 100_000, 0.0), table.entries())


def test_falseticker_and_consensus_changes_are_said_once() -> None:
    table = PeerTable(60.0, 5000.0)
    log = PeerStateLog()
    for name in ("a", "b", "c"):
        table.update(exchange(name, 0), 0)
    first = round_of(log, table)
    assert first == [(logging.INFO, "peer consensus of 3: true time − our clock +0 ns ± 190 µs")]
    assert round_of(log, table) == []  # nothing changed: nothing said
    table.update(exchange("c", 50_000_000), 1)  # c now lies by 50 ms
    events = round_of(log, table)
    assert len(events) == 1
    level, message = events[0]
    assert level == logging.WARNING
    assert message.startswith("peer c is a falseticker: its interval misses the majority's")
    assert "+50.0 ms" in message and message.endswith("; not used")
    assert round_of(log, table) == []
    table.update(exchange("c", 0), 2)
    assert round_of(log, table) == [(logging.INFO, "peer c agrees with the majority again; used")]


def test_an_unusable_peer_and_a_lost_consensus() -> None:
    table = PeerTable(60.0, 5000.0)
    log = PeerStateLog()
    table.update(exchange("a", 0), 0)
    assert round_of(log, table)[0][1].startswith("peer consensus of 1")
    table.update(exchange("a", 0, ClockStatus.UNKNOWN), 1)  # its own model restarted
    assert round_of(log, table) == [
        (logging.INFO, "peer a has no estimate of its own (UNKNOWN); not used"),
        (logging.WARNING, "peer consensus lost: no peer has an estimate of its own"),
    ]
    table.update(exchange("a", 0), 2)
    events = round_of(log, table)
    assert events[0] == (logging.INFO, "peer a has an estimate again; used")
    assert events[1][1].startswith("peer consensus of 1")
    table.remove("a")
    assert round_of(log, table) == [(logging.WARNING, "peer consensus lost: no usable peer")]
