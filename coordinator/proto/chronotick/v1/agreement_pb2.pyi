from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ProposeRequest(_message.Message):
    __slots__ = ("protocol_version", "cluster", "initiator", "action_id", "participants", "target_ns", "tolerance_ns", "vote_deadline_ns", "commit_deadline_ns", "action")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    INITIATOR_FIELD_NUMBER: _ClassVar[int]
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    TARGET_NS_FIELD_NUMBER: _ClassVar[int]
    TOLERANCE_NS_FIELD_NUMBER: _ClassVar[int]
    VOTE_DEADLINE_NS_FIELD_NUMBER: _ClassVar[int]
    COMMIT_DEADLINE_NS_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    cluster: str
    initiator: str
    action_id: str
    participants: _containers.RepeatedScalarFieldContainer[str]
    target_ns: int
    tolerance_ns: int
    vote_deadline_ns: int
    commit_deadline_ns: int
    action: str
    def __init__(self, protocol_version: _Optional[int] = ..., cluster: _Optional[str] = ..., initiator: _Optional[str] = ..., action_id: _Optional[str] = ..., participants: _Optional[_Iterable[str]] = ..., target_ns: _Optional[int] = ..., tolerance_ns: _Optional[int] = ..., vote_deadline_ns: _Optional[int] = ..., commit_deadline_ns: _Optional[int] = ..., action: _Optional[str] = ...) -> None: ...

class VoteReply(_message.Message):
    __slots__ = ("protocol_version", "node_id", "action_id", "accept", "reason", "sigma_at_target_ns", "bound_at_target_ns")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    ACCEPT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SIGMA_AT_TARGET_NS_FIELD_NUMBER: _ClassVar[int]
    BOUND_AT_TARGET_NS_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    node_id: str
    action_id: str
    accept: bool
    reason: str
    sigma_at_target_ns: int
    bound_at_target_ns: int
    def __init__(self, protocol_version: _Optional[int] = ..., node_id: _Optional[str] = ..., action_id: _Optional[str] = ..., accept: _Optional[bool] = ..., reason: _Optional[str] = ..., sigma_at_target_ns: _Optional[int] = ..., bound_at_target_ns: _Optional[int] = ...) -> None: ...

class DecideRequest(_message.Message):
    __slots__ = ("protocol_version", "cluster", "initiator", "action_id", "commit")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    INITIATOR_FIELD_NUMBER: _ClassVar[int]
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    cluster: str
    initiator: str
    action_id: str
    commit: bool
    def __init__(self, protocol_version: _Optional[int] = ..., cluster: _Optional[str] = ..., initiator: _Optional[str] = ..., action_id: _Optional[str] = ..., commit: _Optional[bool] = ...) -> None: ...

class DecideReply(_message.Message):
    __slots__ = ("protocol_version", "node_id", "action_id", "phase")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    node_id: str
    action_id: str
    phase: str
    def __init__(self, protocol_version: _Optional[int] = ..., node_id: _Optional[str] = ..., action_id: _Optional[str] = ..., phase: _Optional[str] = ...) -> None: ...

class ReportRequest(_message.Message):
    __slots__ = ("protocol_version", "action_id")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    action_id: str
    def __init__(self, protocol_version: _Optional[int] = ..., action_id: _Optional[str] = ...) -> None: ...

class ReportReply(_message.Message):
    __slots__ = ("protocol_version", "node_id", "action_id", "phase", "executed_at_ns", "bound_ns", "base_time_ns", "detail", "host_time_ns")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    EXECUTED_AT_NS_FIELD_NUMBER: _ClassVar[int]
    BOUND_NS_FIELD_NUMBER: _ClassVar[int]
    BASE_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    HOST_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    node_id: str
    action_id: str
    phase: str
    executed_at_ns: int
    bound_ns: int
    base_time_ns: int
    detail: str
    host_time_ns: int
    def __init__(self, protocol_version: _Optional[int] = ..., node_id: _Optional[str] = ..., action_id: _Optional[str] = ..., phase: _Optional[str] = ..., executed_at_ns: _Optional[int] = ..., bound_ns: _Optional[int] = ..., base_time_ns: _Optional[int] = ..., detail: _Optional[str] = ..., host_time_ns: _Optional[int] = ...) -> None: ...

class WaitPastRequest(_message.Message):
    __slots__ = ("protocol_version", "cluster", "timestamp_ns")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_NS_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    cluster: str
    timestamp_ns: int
    def __init__(self, protocol_version: _Optional[int] = ..., cluster: _Optional[str] = ..., timestamp_ns: _Optional[int] = ...) -> None: ...

class WaitPastReply(_message.Message):
    __slots__ = ("protocol_version", "node_id", "earliest_ns", "latest_ns", "waited_ns")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    EARLIEST_NS_FIELD_NUMBER: _ClassVar[int]
    LATEST_NS_FIELD_NUMBER: _ClassVar[int]
    WAITED_NS_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    node_id: str
    earliest_ns: int
    latest_ns: int
    waited_ns: int
    def __init__(self, protocol_version: _Optional[int] = ..., node_id: _Optional[str] = ..., earliest_ns: _Optional[int] = ..., latest_ns: _Optional[int] = ..., waited_ns: _Optional[int] = ...) -> None: ...

class StartRoundRequest(_message.Message):
    __slots__ = ("protocol_version", "delay_ns", "tolerance_ns", "action", "action_id", "participants")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    DELAY_NS_FIELD_NUMBER: _ClassVar[int]
    TOLERANCE_NS_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    delay_ns: int
    tolerance_ns: int
    action: str
    action_id: str
    participants: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, protocol_version: _Optional[int] = ..., delay_ns: _Optional[int] = ..., tolerance_ns: _Optional[int] = ..., action: _Optional[str] = ..., action_id: _Optional[str] = ..., participants: _Optional[_Iterable[str]] = ...) -> None: ...

class GetRoundRequest(_message.Message):
    __slots__ = ("protocol_version", "action_id", "wait_reports", "timeout_ms")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    WAIT_REPORTS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    action_id: str
    wait_reports: bool
    timeout_ms: int
    def __init__(self, protocol_version: _Optional[int] = ..., action_id: _Optional[str] = ..., wait_reports: _Optional[bool] = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class RoundReply(_message.Message):
    __slots__ = ("protocol_version", "action_id", "initiator", "participants", "target_ns", "tolerance_ns", "committed", "phase", "votes", "reasons", "reports", "sigma_at_target_ns", "bound_at_target_ns", "action")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    INITIATOR_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    TARGET_NS_FIELD_NUMBER: _ClassVar[int]
    TOLERANCE_NS_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    VOTES_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    SIGMA_AT_TARGET_NS_FIELD_NUMBER: _ClassVar[int]
    BOUND_AT_TARGET_NS_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    action_id: str
    initiator: str
    participants: _containers.RepeatedScalarFieldContainer[str]
    target_ns: int
    tolerance_ns: int
    committed: bool
    phase: str
    votes: _containers.RepeatedCompositeFieldContainer[VoteReply]
    reasons: _containers.RepeatedScalarFieldContainer[str]
    reports: _containers.RepeatedCompositeFieldContainer[ReportReply]
    sigma_at_target_ns: int
    bound_at_target_ns: int
    action: str
    def __init__(self, protocol_version: _Optional[int] = ..., action_id: _Optional[str] = ..., initiator: _Optional[str] = ..., participants: _Optional[_Iterable[str]] = ..., target_ns: _Optional[int] = ..., tolerance_ns: _Optional[int] = ..., committed: _Optional[bool] = ..., phase: _Optional[str] = ..., votes: _Optional[_Iterable[_Union[VoteReply, _Mapping]]] = ..., reasons: _Optional[_Iterable[str]] = ..., reports: _Optional[_Iterable[_Union[ReportReply, _Mapping]]] = ..., sigma_at_target_ns: _Optional[int] = ..., bound_at_target_ns: _Optional[int] = ..., action: _Optional[str] = ...) -> None: ...

class CommitTimestampRequest(_message.Message):
    __slots__ = ("protocol_version", "participants")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    participants: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, protocol_version: _Optional[int] = ..., participants: _Optional[_Iterable[str]] = ...) -> None: ...

class CommitTimestampReply(_message.Message):
    __slots__ = ("protocol_version", "timestamp_ns", "participants", "commit_wait_ns", "max_bound_ns", "started_ns", "acknowledged_ns")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_NS_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    COMMIT_WAIT_NS_FIELD_NUMBER: _ClassVar[int]
    MAX_BOUND_NS_FIELD_NUMBER: _ClassVar[int]
    STARTED_NS_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGED_NS_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    timestamp_ns: int
    participants: _containers.RepeatedScalarFieldContainer[str]
    commit_wait_ns: int
    max_bound_ns: int
    started_ns: int
    acknowledged_ns: int
    def __init__(self, protocol_version: _Optional[int] = ..., timestamp_ns: _Optional[int] = ..., participants: _Optional[_Iterable[str]] = ..., commit_wait_ns: _Optional[int] = ..., max_bound_ns: _Optional[int] = ..., started_ns: _Optional[int] = ..., acknowledged_ns: _Optional[int] = ...) -> None: ...
