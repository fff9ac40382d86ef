"""What needs more than one host: discovery, the peer service, agreement on instants and
commit timestamps. `coordinator` imports `chronotick`; never the reverse."""

from coordinator.sync import (
    CommitResult,
    DistributedSyncCoordinator,
    RoundResult,
    SyncAborted,
    SyncError,
    SyncQualityReport,
    verify_synchronization_quality,
)

__all__ = [
    "CommitResult",
    "DistributedSyncCoordinator",
    "RoundResult",
    "SyncAborted",
    "SyncError",
    "SyncQualityReport",
    "verify_synchronization_quality",
]
