"""The checked-in generated code matches protos/ (CI also runs `generate --check` in lint)."""

from __future__ import annotations

from coordinator.proto import generate
from coordinator.proto.chronotick.v1 import peer_pb2


def test_generated_code_is_fresh() -> None:
    assert generate.stale_files() == []


def test_the_wire_package_is_chronotick_v1() -> None:
    service = peer_pb2.DESCRIPTOR.services_by_name["PeerService"]
    assert service.full_name == "chronotick.v1.PeerService"
    assert {m.name for m in service.methods} >= {"Exchange", "GetStatus", "ListPeers", "GetTime"}
