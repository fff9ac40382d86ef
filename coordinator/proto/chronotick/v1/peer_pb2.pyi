from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ClockStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CLOCK_STATUS_UNSPECIFIED: _ClassVar[ClockStatus]
    CLOCK_STATUS_UNKNOWN: _ClassVar[ClockStatus]
    CLOCK_STATUS_SYNCHRONIZED: _ClassVar[ClockStatus]
    CLOCK_STATUS_FREE_RUNNING: _ClassVar[ClockStatus]
    CLOCK_STATUS_DISRUPTED: _ClassVar[ClockStatus]
CLOCK_STATUS_UNSPECIFIED: ClockStatus
CLOCK_STATUS_UNKNOWN: ClockStatus
CLOCK_STATUS_SYNCHRONIZED: ClockStatus
CLOCK_STATUS_FREE_RUNNING: ClockStatus
CLOCK_STATUS_DISRUPTED: ClockStatus

class ClockEstimate(_message.Message):
    __slots__ = ("correction_ns", "sigma_ns", "bound_ns", "status", "drift_ppb", "source")
    CORRECTION_NS_FIELD_NUMBER: _ClassVar[int]
    SIGMA_NS_FIELD_NUMBER: _ClassVar[int]
    BOUND_NS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DRIFT_PPB_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    correction_ns: int
    sigma_ns: int
    bound_ns: int
    status: ClockStatus
    drift_ppb: float
    source: str
    def __init__(self, correction_ns: _Optional[int] = ..., sigma_ns: _Optional[int] = ..., bound_ns: _Optional[int] = ..., status: _Optional[_Union[ClockStatus, str]] = ..., drift_ppb: _Optional[float] = ..., source: _Optional[str] = ...) -> None: ...

class ExchangeRequest(_message.Message):
    __slots__ = ("protocol_version", "node_id", "cluster", "client_send_ns")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    CLIENT_SEND_NS_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    node_id: str
    cluster: str
    client_send_ns: int
    def __init__(self, protocol_version: _Optional[int] = ..., node_id: _Optional[str] = ..., cluster: _Optional[str] = ..., client_send_ns: _Optional[int] = ...) -> None: ...

class ExchangeReply(_message.Message):
    __slots__ = ("protocol_version", "node_id", "client_send_ns", "server_receive_ns", "server_send_ns", "estimate")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_SEND_NS_FIELD_NUMBER: _ClassVar[int]
    SERVER_RECEIVE_NS_FIELD_NUMBER: _ClassVar[int]
    SERVER_SEND_NS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    node_id: str
    client_send_ns: int
    server_receive_ns: int
    server_send_ns: int
    estimate: ClockEstimate
    def __init__(self, protocol_version: _Optional[int] = ..., node_id: _Optional[str] = ..., client_send_ns: _Optional[int] = ..., server_receive_ns: _Optional[int] = ..., server_send_ns: _Optional[int] = ..., estimate: _Optional[_Union[ClockEstimate, _Mapping]] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ("protocol_version",)
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    def __init__(self, protocol_version: _Optional[int] = ...) -> None: ...

class StatusReply(_message.Message):
    __slots__ = ("protocol_version", "node_id", "cluster", "software_version", "estimate", "base_time_ns", "sources_configured", "sources_reachable", "peers_known", "peers_used", "uptime_s", "shm_name", "last_sample_age_s", "poll_interval_s", "sources")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    SOFTWARE_VERSION_FIELD_NUMBER: _ClassVar[int]
    ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    BASE_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    SOURCES_CONFIGURED_FIELD_NUMBER: _ClassVar[int]
    SOURCES_REACHABLE_FIELD_NUMBER: _ClassVar[int]
    PEERS_KNOWN_FIELD_NUMBER: _ClassVar[int]
    PEERS_USED_FIELD_NUMBER: _ClassVar[int]
    UPTIME_S_FIELD_NUMBER: _ClassVar[int]
    SHM_NAME_FIELD_NUMBER: _ClassVar[int]
    LAST_SAMPLE_AGE_S_FIELD_NUMBER: _ClassVar[int]
    POLL_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    node_id: str
    cluster: str
    software_version: str
    estimate: ClockEstimate
    base_time_ns: int
    sources_configured: int
    sources_reachable: int
    peers_known: int
    peers_used: int
    uptime_s: float
    shm_name: str
    last_sample_age_s: float
    poll_interval_s: float
    sources: _containers.RepeatedCompositeFieldContainer[SourceEntry]
    def __init__(self, protocol_version: _Optional[int] = ..., node_id: _Optional[str] = ..., cluster: _Optional[str] = ..., software_version: _Optional[str] = ..., estimate: _Optional[_Union[ClockEstimate, _Mapping]] = ..., base_time_ns: _Optional[int] = ..., sources_configured: _Optional[int] = ..., sources_reachable: _Optional[int] = ..., peers_known: _Optional[int] = ..., peers_used: _Optional[int] = ..., uptime_s: _Optional[float] = ..., shm_name: _Optional[str] = ..., last_sample_age_s: _Optional[float] = ..., poll_interval_s: _Optional[float] = ..., sources: _Optional[_Iterable[_Union[SourceEntry, _Mapping]]] = ...) -> None: ...

class SourceEntry(_message.Message):
    __slots__ = ("server", "reach", "state", "stratum", "offset_ns", "delay_ns", "sample_age_s", "poll_interval_s")
    SERVER_FIELD_NUMBER: _ClassVar[int]
    REACH_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STRATUM_FIELD_NUMBER: _ClassVar[int]
    OFFSET_NS_FIELD_NUMBER: _ClassVar[int]
    DELAY_NS_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_AGE_S_FIELD_NUMBER: _ClassVar[int]
    POLL_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    server: str
    reach: int
    state: str
    stratum: int
    offset_ns: int
    delay_ns: int
    sample_age_s: float
    poll_interval_s: float
    def __init__(self, server: _Optional[str] = ..., reach: _Optional[int] = ..., state: _Optional[str] = ..., stratum: _Optional[int] = ..., offset_ns: _Optional[int] = ..., delay_ns: _Optional[int] = ..., sample_age_s: _Optional[float] = ..., poll_interval_s: _Optional[float] = ...) -> None: ...

class ListPeersRequest(_message.Message):
    __slots__ = ("protocol_version",)
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    def __init__(self, protocol_version: _Optional[int] = ...) -> None: ...

class PeerEntry(_message.Message):
    __slots__ = ("node_id", "address", "discovered_by", "offset_ns", "sigma_ns", "rtt_ns", "measured_at_ns", "age_s", "expires_in_s", "peer_estimate", "true_offset_ns", "true_sigma_ns", "state")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    DISCOVERED_BY_FIELD_NUMBER: _ClassVar[int]
    OFFSET_NS_FIELD_NUMBER: _ClassVar[int]
    SIGMA_NS_FIELD_NUMBER: _ClassVar[int]
    RTT_NS_FIELD_NUMBER: _ClassVar[int]
    MEASURED_AT_NS_FIELD_NUMBER: _ClassVar[int]
    AGE_S_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_S_FIELD_NUMBER: _ClassVar[int]
    PEER_ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    TRUE_OFFSET_NS_FIELD_NUMBER: _ClassVar[int]
    TRUE_SIGMA_NS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    address: str
    discovered_by: str
    offset_ns: int
    sigma_ns: int
    rtt_ns: int
    measured_at_ns: int
    age_s: float
    expires_in_s: float
    peer_estimate: ClockEstimate
    true_offset_ns: int
    true_sigma_ns: int
    state: str
    def __init__(self, node_id: _Optional[str] = ..., address: _Optional[str] = ..., discovered_by: _Optional[str] = ..., offset_ns: _Optional[int] = ..., sigma_ns: _Optional[int] = ..., rtt_ns: _Optional[int] = ..., measured_at_ns: _Optional[int] = ..., age_s: _Optional[float] = ..., expires_in_s: _Optional[float] = ..., peer_estimate: _Optional[_Union[ClockEstimate, _Mapping]] = ..., true_offset_ns: _Optional[int] = ..., true_sigma_ns: _Optional[int] = ..., state: _Optional[str] = ...) -> None: ...

class Consensus(_message.Message):
    __slots__ = ("offset_ns", "sigma_ns", "bound_ns", "peers_used", "falsetickers")
    OFFSET_NS_FIELD_NUMBER: _ClassVar[int]
    SIGMA_NS_FIELD_NUMBER: _ClassVar[int]
    BOUND_NS_FIELD_NUMBER: _ClassVar[int]
    PEERS_USED_FIELD_NUMBER: _ClassVar[int]
    FALSETICKERS_FIELD_NUMBER: _ClassVar[int]
    offset_ns: int
    sigma_ns: int
    bound_ns: int
    peers_used: int
    falsetickers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, offset_ns: _Optional[int] = ..., sigma_ns: _Optional[int] = ..., bound_ns: _Optional[int] = ..., peers_used: _Optional[int] = ..., falsetickers: _Optional[_Iterable[str]] = ...) -> None: ...

class ListPeersReply(_message.Message):
    __slots__ = ("protocol_version", "node_id", "peers", "consensus")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    PEERS_FIELD_NUMBER: _ClassVar[int]
    CONSENSUS_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    node_id: str
    peers: _containers.RepeatedCompositeFieldContainer[PeerEntry]
    consensus: Consensus
    def __init__(self, protocol_version: _Optional[int] = ..., node_id: _Optional[str] = ..., peers: _Optional[_Iterable[_Union[PeerEntry, _Mapping]]] = ..., consensus: _Optional[_Union[Consensus, _Mapping]] = ...) -> None: ...

class TimeRequest(_message.Message):
    __slots__ = ("protocol_version",)
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    def __init__(self, protocol_version: _Optional[int] = ...) -> None: ...

class TimeReply(_message.Message):
    __slots__ = ("protocol_version", "node_id", "corrected_ns", "earliest_ns", "latest_ns", "sigma_ns", "status", "source", "base_time_ns")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CORRECTED_NS_FIELD_NUMBER: _ClassVar[int]
    EARLIEST_NS_FIELD_NUMBER: _ClassVar[int]
    LATEST_NS_FIELD_NUMBER: _ClassVar[int]
    SIGMA_NS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    BASE_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    node_id: str
    corrected_ns: int
    earliest_ns: int
    latest_ns: int
    sigma_ns: int
    status: ClockStatus
    source: str
    base_time_ns: int
    def __init__(self, protocol_version: _Optional[int] = ..., node_id: _Optional[str] = ..., corrected_ns: _Optional[int] = ..., earliest_ns: _Optional[int] = ..., latest_ns: _Optional[int] = ..., sigma_ns: _Optional[int] = ..., status: _Optional[_Union[ClockStatus, str]] = ..., source: _Optional[str] = ..., base_time_ns: _Optional[int] = ...) -> None: ...

class HistoryRequest(_message.Message):
    __slots__ = ("protocol_version", "since_s", "max_points")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SINCE_S_FIELD_NUMBER: _ClassVar[int]
    MAX_POINTS_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    since_s: float
    max_points: int
    def __init__(self, protocol_version: _Optional[int] = ..., since_s: _Optional[float] = ..., max_points: _Optional[int] = ...) -> None: ...

class HistoryPoint(_message.Message):
    __slots__ = ("age_s", "base_time_ns", "offset_ns", "sigma_ns", "bound_ns", "status", "source", "consensus_offset_ns")
    AGE_S_FIELD_NUMBER: _ClassVar[int]
    BASE_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    OFFSET_NS_FIELD_NUMBER: _ClassVar[int]
    SIGMA_NS_FIELD_NUMBER: _ClassVar[int]
    BOUND_NS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CONSENSUS_OFFSET_NS_FIELD_NUMBER: _ClassVar[int]
    age_s: float
    base_time_ns: int
    offset_ns: int
    sigma_ns: int
    bound_ns: int
    status: ClockStatus
    source: str
    consensus_offset_ns: int
    def __init__(self, age_s: _Optional[float] = ..., base_time_ns: _Optional[int] = ..., offset_ns: _Optional[int] = ..., sigma_ns: _Optional[int] = ..., bound_ns: _Optional[int] = ..., status: _Optional[_Union[ClockStatus, str]] = ..., source: _Optional[str] = ..., consensus_offset_ns: _Optional[int] = ...) -> None: ...

class HistorySample(_message.Message):
    __slots__ = ("age_s", "base_time_ns", "server", "offset_ns", "delay_ns", "rejected")
    AGE_S_FIELD_NUMBER: _ClassVar[int]
    BASE_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    SERVER_FIELD_NUMBER: _ClassVar[int]
    OFFSET_NS_FIELD_NUMBER: _ClassVar[int]
    DELAY_NS_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    age_s: float
    base_time_ns: int
    server: int
    offset_ns: int
    delay_ns: int
    rejected: str
    def __init__(self, age_s: _Optional[float] = ..., base_time_ns: _Optional[int] = ..., server: _Optional[int] = ..., offset_ns: _Optional[int] = ..., delay_ns: _Optional[int] = ..., rejected: _Optional[str] = ...) -> None: ...

class StatusChange(_message.Message):
    __slots__ = ("age_s", "base_time_ns", "old_status", "new_status", "reason")
    AGE_S_FIELD_NUMBER: _ClassVar[int]
    BASE_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    OLD_STATUS_FIELD_NUMBER: _ClassVar[int]
    NEW_STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    age_s: float
    base_time_ns: int
    old_status: ClockStatus
    new_status: ClockStatus
    reason: str
    def __init__(self, age_s: _Optional[float] = ..., base_time_ns: _Optional[int] = ..., old_status: _Optional[_Union[ClockStatus, str]] = ..., new_status: _Optional[_Union[ClockStatus, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class HistoryReply(_message.Message):
    __slots__ = ("protocol_version", "node_id", "base_time_ns", "kept_s", "points", "samples", "servers", "status_changes")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    BASE_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    KEPT_S_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    SERVERS_FIELD_NUMBER: _ClassVar[int]
    STATUS_CHANGES_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    node_id: str
    base_time_ns: int
    kept_s: float
    points: _containers.RepeatedCompositeFieldContainer[HistoryPoint]
    samples: _containers.RepeatedCompositeFieldContainer[HistorySample]
    servers: _containers.RepeatedScalarFieldContainer[str]
    status_changes: _containers.RepeatedCompositeFieldContainer[StatusChange]
    def __init__(self, protocol_version: _Optional[int] = ..., node_id: _Optional[str] = ..., base_time_ns: _Optional[int] = ..., kept_s: _Optional[float] = ..., points: _Optional[_Iterable[_Union[HistoryPoint, _Mapping]]] = ..., samples: _Optional[_Iterable[_Union[HistorySample, _Mapping]]] = ..., servers: _Optional[_Iterable[str]] = ..., status_changes: _Optional[_Iterable[_Union[StatusChange, _Mapping]]] = ...) -> None: ...
