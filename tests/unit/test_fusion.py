"""The published model when the peers' consensus joins the NTP model."""

from __future__ import annotations

import dataclasses

import pytest

from chronotick.estimation.fusion import UNKNOWN_DRIFT_PPB, ExternalEstimate, fuse
from chronotick.model import ClockModel
from chronotick.status import ClockStatus

S = 1_000_000_000
T0 = 1_790_000_000 * S


def own(offset_ns: int, sigma_ns: float, bound_ns: int,
        status: ClockStatus = ClockStatus.SYNCHRONIZED) -> ClockModel:  # fmt: skip
    return dataclasses.replace(
        ClockModel.unknown(T0, status), offset_ns=offset_ns, sigma_ns=sigma_ns,
        bound_ns=bound_ns, bound_rate_ppb=5000.0, drift_ppb=0.0, source="ntp",
    )  # fmt: skip


def ext(
    offset_ns: int, sigma_ns: float, bound_ns: int, synchronized: bool = True
) -> ExternalEstimate:
    return ExternalEstimate(T0, offset_ns, sigma_ns, bound_ns, sources=3, synchronized=synchronized)


def test_without_peers_the_ntp_model_is_published_unchanged() -> None:
    model = own(1000, 10.0, 100)
    assert fuse(model, None, T0, 5000.0) is model


def test_a_fresh_ntp_model_outweighs_loose_peers() -> None:
    fused = fuse(own(0, 10_000.0, 50_000), ext(200_000, 100_000.0, 1_000_000), T0, 5000.0)
    assert 0 <= fused.offset_ns <= 3_000
    assert fused.sigma_ns < 10_000.0
    assert fused.bound_ns <= 50_000 + 3_000
    assert fused.status is ClockStatus.SYNCHRONIZED and fused.source == "ntp+peers"


def test_a_free_running_model_gives_way_to_synchronized_peers() -> None:
    stale = own(0, 2_000_000.0, 5_000_000, ClockStatus.FREE_RUNNING)
    fused = fuse(stale, ext(1_000_000, 50_000.0, 300_000), T0, 5000.0)
    assert fused.offset_ns == pytest.approx(1_000_000, abs=2_000)
    # the interval still covers the node's own: the peers move the center, not the promise
    assert fused.offset_ns - fused.bound_ns <= -5_000_000
    assert fused.offset_ns + fused.bound_ns >= 5_000_000
    assert fused.status is ClockStatus.SYNCHRONIZED


def test_free_running_peers_keep_the_status_free_running() -> None:
    stale = own(0, 2_000_000.0, 5_000_000, ClockStatus.FREE_RUNNING)
    fused = fuse(stale, ext(1_000_000, 500_000.0, 3_000_000, synchronized=False), T0, 5000.0)
    assert fused.status is ClockStatus.FREE_RUNNING


def test_peers_that_disagree_cannot_pull_the_center_out_of_the_own_interval() -> None:
    fused = fuse(own(0, 1_000.0, 10_000), ext(1_000_000, 1_000.0, 10_000), T0, 5000.0)
    assert -10_000 <= fused.offset_ns <= 10_000
    assert fused.offset_ns - fused.bound_ns <= -10_000
    assert fused.offset_ns + fused.bound_ns >= 10_000


def test_peers_alone_give_an_interval_that_grows_at_the_worst_drift() -> None:
    nothing = ClockModel.unknown(T0)
    fused = fuse(nothing, ext(7_000_000, 40_000.0, 200_000), T0 + S, 5000.0)
    assert fused.status is ClockStatus.SYNCHRONIZED and fused.source == "peers"
    assert fused.offset_ns == 7_000_000
    assert fused.bound_ns == 200_000 + int(UNKNOWN_DRIFT_PPB)
    assert fused.bound_rate_ppb == UNKNOWN_DRIFT_PPB


def test_an_external_estimate_checks_its_numbers() -> None:
    with pytest.raises(ValueError, match="sigma_ns"):
        ExternalEstimate(T0, 0, float("nan"), 0, 1, True)
    with pytest.raises(ValueError, match="bound_ns"):
        ExternalEstimate(T0, 0, 1.0, -1, 1, True)
