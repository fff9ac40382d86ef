"""The peer table and the consensus: offsets from four timestamps, expiry, falsetickers."""

from __future__ import annotations

import math

import pytest

from chronotick.status import ClockStatus
from coordinator.peer_table import Exchange, PeerClock, PeerTable, StackBias, best_of_burst

S = 1_000_000_000
T0 = 1_790_000_000 * S
SYNCED = PeerClock(
    correction_ns=0, sigma_ns=50_000.0, bound_ns=200_000, status=ClockStatus.SYNCHRONIZED
)


def exchange(node_id: str, skew_ns: int, out_ns: int = 100_000, back_ns: int = 100_000,
             at_ns: int = T0, clock: PeerClock = SYNCED) -> Exchange:  # fmt: skip
    """An exchange with a peer whose base clock is `skew_ns` ahead of ours."""
    t1 = at_ns
    t2 = t1 + out_ns + skew_ns
    t3 = t2 + 10_000
    t4 = t3 - skew_ns + back_ns
    return Exchange(node_id, f"{node_id}:1", "static", t1, t2, t3, t4, clock)


def test_offset_and_round_trip_follow_ntp() -> None:
    e = exchange("a", skew_ns=-150_000_000)
    assert e.offset_ns == -150_000_000
    assert e.rtt_ns == 200_000
    asym = exchange("a", skew_ns=0, out_ns=300_000, back_ns=100_000)
    assert asym.offset_ns == 100_000  # asymmetry shows as offset, bounded by rtt/2
    assert abs(asym.offset_ns) <= asym.rtt_ns // 2


def test_best_of_burst_is_the_shortest_round_trip() -> None:
    burst = [exchange("a", 0, 500_000, 500_000), exchange("a", 0, 60_000, 40_000),
             exchange("a", 0, 200_000, 100_000)]  # fmt: skip
    best = best_of_burst(burst)
    assert best is burst[1]
    assert best_of_burst([]) is None


def test_entries_expire_after_their_last_good_exchange() -> None:
    table = PeerTable(expiry_s=10.0, drift_tolerance_ppb=5000.0)
    table.update(exchange("a", 0), monotonic_ns=0)
    table.update(exchange("b", 0), monotonic_ns=5 * S)
    assert table.expire(9 * S) == []
    assert table.expire(10 * S) == ["a"]
    assert [e.node_id for e in table.entries()] == ["b"]
    table.update(exchange("b", 0), monotonic_ns=12 * S)  # renewed
    assert table.expire(16 * S) == []
    assert table.expire(22 * S) == ["b"]


def test_consensus_is_the_inverse_variance_mean_within_every_interval() -> None:
    table = PeerTable(expiry_s=10.0, drift_tolerance_ppb=5000.0)
    precise = PeerClock(1_000_000, 10_000.0, 100_000, ClockStatus.SYNCHRONIZED)
    loose = PeerClock(1_300_000, 100_000.0, 1_000_000, ClockStatus.SYNCHRONIZED)
    table.update(exchange("p", 0, 20_000, 20_000, clock=precise), 0)
    table.update(exchange("l", 0, 20_000, 20_000, clock=loose), 0)
    result = table.consensus(T0 + 20_000, own_drift_ppb=0.0)
    c = result.consensus
    assert c is not None and c.used == ("l", "p") and c.synchronized
    # weights ~ 1/σ² (σ includes both sides' timestamping noise): the precise peer dominates
    w_p = 1 / math.hypot(10_000, 40_000 / math.sqrt(12), 20_000 * math.sqrt(2)) ** 2
    w_l = 1 / math.hypot(100_000, 40_000 / math.sqrt(12), 20_000 * math.sqrt(2)) ** 2
    expected = (1_000_000 * w_p + 1_300_000 * w_l) / (w_p + w_l)
    assert c.offset_ns == pytest.approx(expected, abs=2)
    assert c.sigma_ns == pytest.approx((w_p + w_l) ** -0.5, rel=1e-6)
    # true time lies in both intervals: the consensus interval is their intersection
    assert c.offset_ns - c.bound_ns >= 1_300_000 - 1_000_000 - 20_000 - 40_000
    assert result.states == {"p": "used", "l": "used"}


def test_a_peer_that_lies_by_100_ms_is_a_falseticker() -> None:
    table = PeerTable(expiry_s=10.0, drift_tolerance_ppb=5000.0)
    for name in ("a", "b", "c"):
        table.update(exchange(name, 2_000_000), 0)
    liar = PeerClock(100_000_000, 50_000.0, 200_000, ClockStatus.SYNCHRONIZED)
    table.update(exchange("liar", 2_000_000, clock=liar), 0)
    result = table.consensus(T0, 0.0)
    assert result.consensus is not None
    assert result.consensus.falsetickers == ("liar",)
    assert result.states["liar"] == "falseticker"
    assert abs(result.consensus.offset_ns - 2_000_000) < 100_000


def test_two_peers_that_disagree_give_no_consensus() -> None:
    table = PeerTable(expiry_s=10.0, drift_tolerance_ppb=5000.0)
    table.update(exchange("a", 0), 0)
    table.update(exchange("b", 50_000_000), 0)
    assert table.consensus(T0, 0.0).consensus is None


def test_peers_without_an_estimate_are_unusable() -> None:
    table = PeerTable(expiry_s=10.0, drift_tolerance_ppb=5000.0)
    table.update(exchange("u", 0, clock=PeerClock(0, math.inf, 0, ClockStatus.UNKNOWN)), 0)
    result = table.consensus(T0, 0.0)
    assert result.consensus is None and result.states == {"u": "unusable"}


def test_consensus_is_carried_forward_with_our_drift_and_widens() -> None:
    table = PeerTable(expiry_s=100.0, drift_tolerance_ppb=5000.0)
    table.update(exchange("a", 0), 0)
    now = table.consensus(T0, own_drift_ppb=10_000.0).consensus
    later = table.consensus(T0 + 10 * S, own_drift_ppb=10_000.0).consensus
    assert now is not None and later is not None
    assert later.offset_ns - now.offset_ns == pytest.approx(100_000, abs=2)
    assert later.bound_ns - now.bound_ns == pytest.approx(50_000, abs=2)
    assert later.sigma_ns > now.sigma_ns


def test_free_running_peers_make_an_unsynchronized_consensus() -> None:
    table = PeerTable(expiry_s=10.0, drift_tolerance_ppb=5000.0)
    free = PeerClock(0, 50_000.0, 900_000, ClockStatus.FREE_RUNNING)
    table.update(exchange("a", 0, clock=free), 0)
    c = table.consensus(T0, 0.0).consensus
    assert c is not None and not c.synchronized
    assert c.as_external().sources == 1


def test_expiry_must_be_positive() -> None:
    with pytest.raises(ValueError, match="expiry_s"):
        PeerTable(expiry_s=0.0, drift_tolerance_ppb=1.0)


def test_the_filter_keeps_the_least_delayed_burst_carried_forward_by_the_frequencies() -> None:
    """Our drift 30 ppm, the peer's -70 ppm: its base clock gains 100 µs/s on ours."""
    table = PeerTable(expiry_s=30.0, drift_tolerance_ppb=5000.0)
    peer = PeerClock(0, 50_000.0, 200_000, ClockStatus.SYNCHRONIZED, drift_ppb=-70_000.0)

    def at(k: int, delay_ns: int, queued_out_ns: int) -> Exchange:
        skew = 1_000_000 + 100_000 * 2 * k  # true offset, 2 s per burst
        return exchange("p", skew, delay_ns + queued_out_ns, delay_ns, T0 + 2 * k * S, peer)

    table.update(at(0, 50_000, 0), 0, own_drift_ppb=30_000.0)  # clean: rtt 100 µs
    for k in (1, 2, 3):  # queued on the way out: rtt 1.1 ms, offset 500 µs too high
        entry = table.update(at(k, 50_000, 1_000_000), k, own_drift_ppb=30_000.0)
    assert entry.best.rtt_ns == 100_000 and entry.rtt_ns == 100_000
    # burst 0 carried 6 s at 100 ppm: the truth (to the 50 ns the midpoints differ by)
    assert entry.offset_ns == pytest.approx(1_000_000 + 600_000, abs=100)
    assert entry.measured_at_ns == _mid(at(3, 50_000, 1_000_000))
    assert entry.half_width_ns >= 100_000 // 2 + 2 * 5000 * 6  # widened by the carry
    # without a drift estimate of our own, nothing is carried: the newest burst stands
    alone = table.update(at(4, 50_000, 1_000_000), 4, own_drift_ppb=None)
    assert alone.best is alone.exchange and alone.offset_ns == 1_800_000 + 500_000


def _mid(e: Exchange) -> int:
    return (e.t1_ns + e.t4_ns) // 2


def test_our_stack_bias_is_the_median_self_offset_and_comes_off_peer_offsets() -> None:
    bias = StackBias(depth=5)
    assert bias.bias_ns == 0 and bias.samples == 0
    for out_ns in (300_000, 500_000, 520_000, 540_000, 2_000_000):  # one outlier
        bias.add(exchange("self", 0, out_ns, 100_000))
    assert bias.bias_ns == 210_000  # (520 - 100) / 2 µs: the median, not the mean
    table = PeerTable(expiry_s=10.0, drift_tolerance_ppb=5000.0)
    entry = table.update(exchange("p", 1_000_000, 520_000, 100_000), 0, bias_ns=bias.bias_ns)
    assert entry.offset_ns == 1_000_000
