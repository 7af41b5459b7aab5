import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Phase(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PHASE_UNSPECIFIED: _ClassVar[Phase]
    PHASE_PENDING: _ClassVar[Phase]
    PHASE_RAMPING: _ClassVar[Phase]
    PHASE_PAUSED: _ClassVar[Phase]
    PHASE_ROLLED_BACK: _ClassVar[Phase]
    PHASE_COMPLETED: _ClassVar[Phase]

class Verdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERDICT_UNSPECIFIED: _ClassVar[Verdict]
    VERDICT_PASS: _ClassVar[Verdict]
    VERDICT_HOLD: _ClassVar[Verdict]
    VERDICT_FAIL: _ClassVar[Verdict]
PHASE_UNSPECIFIED: Phase
PHASE_PENDING: Phase
PHASE_RAMPING: Phase
PHASE_PAUSED: Phase
PHASE_ROLLED_BACK: Phase
PHASE_COMPLETED: Phase
VERDICT_UNSPECIFIED: Verdict
VERDICT_PASS: Verdict
VERDICT_HOLD: Verdict
VERDICT_FAIL: Verdict

class RolloutState(_message.Message):
    __slots__ = ("rollout", "phase", "stage", "share", "share_basis_points", "revision", "next_step_time", "update_time", "reason", "actor", "resume_share", "operator_reason")
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    SHARE_BASIS_POINTS_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    NEXT_STEP_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    RESUME_SHARE_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_REASON_FIELD_NUMBER: _ClassVar[int]
    rollout: str
    phase: Phase
    stage: int
    share: str
    share_basis_points: int
    revision: int
    next_step_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    reason: str
    actor: str
    resume_share: str
    operator_reason: str
    def __init__(self, rollout: _Optional[str] = ..., phase: _Optional[_Union[Phase, str]] = ..., stage: _Optional[int] = ..., share: _Optional[str] = ..., share_basis_points: _Optional[int] = ..., revision: _Optional[int] = ..., next_step_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ..., actor: _Optional[str] = ..., resume_share: _Optional[str] = ..., operator_reason: _Optional[str] = ...) -> None: ...

class GuardFigure(_message.Message):
    __slots__ = ("name", "signal", "cohort", "verdict", "value", "threshold", "samples", "min_samples", "window", "detail", "compare", "source")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    COHORT_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    MIN_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    COMPARE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    signal: str
    cohort: str
    verdict: Verdict
    value: float
    threshold: float
    samples: int
    min_samples: int
    window: _duration_pb2.Duration
    detail: str
    compare: CompareFigure
    source: str
    def __init__(self, name: _Optional[str] = ..., signal: _Optional[str] = ..., cohort: _Optional[str] = ..., verdict: _Optional[_Union[Verdict, str]] = ..., value: _Optional[float] = ..., threshold: _Optional[float] = ..., samples: _Optional[int] = ..., min_samples: _Optional[int] = ..., window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., detail: _Optional[str] = ..., compare: _Optional[_Union[CompareFigure, _Mapping]] = ..., source: _Optional[str] = ...) -> None: ...

class CompareFigure(_message.Message):
    __slots__ = ("metric", "effect_low", "effect_high", "p_value", "e_value", "alpha", "samples_v2", "samples_v1")
    METRIC_FIELD_NUMBER: _ClassVar[int]
    EFFECT_LOW_FIELD_NUMBER: _ClassVar[int]
    EFFECT_HIGH_FIELD_NUMBER: _ClassVar[int]
    P_VALUE_FIELD_NUMBER: _ClassVar[int]
    E_VALUE_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_V2_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_V1_FIELD_NUMBER: _ClassVar[int]
    metric: str
    effect_low: float
    effect_high: float
    p_value: float
    e_value: float
    alpha: float
    samples_v2: int
    samples_v1: int
    def __init__(self, metric: _Optional[str] = ..., effect_low: _Optional[float] = ..., effect_high: _Optional[float] = ..., p_value: _Optional[float] = ..., e_value: _Optional[float] = ..., alpha: _Optional[float] = ..., samples_v2: _Optional[int] = ..., samples_v1: _Optional[int] = ...) -> None: ...

class Transition(_message.Message):
    __slots__ = ("time", "revision", "from_phase", "to_phase", "from_share", "to_share", "stage", "reason", "actor", "guards", "operator_reason")
    TIME_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    FROM_PHASE_FIELD_NUMBER: _ClassVar[int]
    TO_PHASE_FIELD_NUMBER: _ClassVar[int]
    FROM_SHARE_FIELD_NUMBER: _ClassVar[int]
    TO_SHARE_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    GUARDS_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_REASON_FIELD_NUMBER: _ClassVar[int]
    time: _timestamp_pb2.Timestamp
    revision: int
    from_phase: Phase
    to_phase: Phase
    from_share: str
    to_share: str
    stage: int
    reason: str
    actor: str
    guards: _containers.RepeatedCompositeFieldContainer[GuardFigure]
    operator_reason: str
    def __init__(self, time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revision: _Optional[int] = ..., from_phase: _Optional[_Union[Phase, str]] = ..., to_phase: _Optional[_Union[Phase, str]] = ..., from_share: _Optional[str] = ..., to_share: _Optional[str] = ..., stage: _Optional[int] = ..., reason: _Optional[str] = ..., actor: _Optional[str] = ..., guards: _Optional[_Iterable[_Union[GuardFigure, _Mapping]]] = ..., operator_reason: _Optional[str] = ...) -> None: ...

class Leadership(_message.Message):
    __slots__ = ("elected", "replica", "replica_leads", "leader", "leader_admin", "leader_since", "term", "faults", "outage")
    class FaultsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ELECTED_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    REPLICA_LEADS_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    LEADER_ADMIN_FIELD_NUMBER: _ClassVar[int]
    LEADER_SINCE_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    FAULTS_FIELD_NUMBER: _ClassVar[int]
    OUTAGE_FIELD_NUMBER: _ClassVar[int]
    elected: bool
    replica: str
    replica_leads: bool
    leader: str
    leader_admin: str
    leader_since: _timestamp_pb2.Timestamp
    term: int
    faults: _containers.ScalarMap[str, int]
    outage: str
    def __init__(self, elected: _Optional[bool] = ..., replica: _Optional[str] = ..., replica_leads: _Optional[bool] = ..., leader: _Optional[str] = ..., leader_admin: _Optional[str] = ..., leader_since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., term: _Optional[int] = ..., faults: _Optional[_Mapping[str, int]] = ..., outage: _Optional[str] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ("transitions",)
    TRANSITIONS_FIELD_NUMBER: _ClassVar[int]
    transitions: int
    def __init__(self, transitions: _Optional[int] = ...) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("state", "time_to_next_step", "frozen", "guards", "verdict", "check_time", "next_share", "transitions", "leadership", "calendar_time", "clock_speed", "check_failures")
    class CheckFailuresEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    STATE_FIELD_NUMBER: _ClassVar[int]
    TIME_TO_NEXT_STEP_FIELD_NUMBER: _ClassVar[int]
    FROZEN_FIELD_NUMBER: _ClassVar[int]
    GUARDS_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    CHECK_TIME_FIELD_NUMBER: _ClassVar[int]
    NEXT_SHARE_FIELD_NUMBER: _ClassVar[int]
    TRANSITIONS_FIELD_NUMBER: _ClassVar[int]
    LEADERSHIP_FIELD_NUMBER: _ClassVar[int]
    CALENDAR_TIME_FIELD_NUMBER: _ClassVar[int]
    CLOCK_SPEED_FIELD_NUMBER: _ClassVar[int]
    CHECK_FAILURES_FIELD_NUMBER: _ClassVar[int]
    state: RolloutState
    time_to_next_step: _duration_pb2.Duration
    frozen: bool
    guards: _containers.RepeatedCompositeFieldContainer[GuardFigure]
    verdict: Verdict
    check_time: _timestamp_pb2.Timestamp
    next_share: str
    transitions: _containers.RepeatedCompositeFieldContainer[Transition]
    leadership: Leadership
    calendar_time: _timestamp_pb2.Timestamp
    clock_speed: float
    check_failures: _containers.ScalarMap[str, int]
    def __init__(self, state: _Optional[_Union[RolloutState, _Mapping]] = ..., time_to_next_step: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., frozen: _Optional[bool] = ..., guards: _Optional[_Iterable[_Union[GuardFigure, _Mapping]]] = ..., verdict: _Optional[_Union[Verdict, str]] = ..., check_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., next_share: _Optional[str] = ..., transitions: _Optional[_Iterable[_Union[Transition, _Mapping]]] = ..., leadership: _Optional[_Union[Leadership, _Mapping]] = ..., calendar_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., clock_speed: _Optional[float] = ..., check_failures: _Optional[_Mapping[str, int]] = ...) -> None: ...

class StartRequest(_message.Message):
    __slots__ = ("actor", "reason")
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    actor: str
    reason: str
    def __init__(self, actor: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class StartResponse(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: RolloutState
    def __init__(self, state: _Optional[_Union[RolloutState, _Mapping]] = ...) -> None: ...

class PauseRequest(_message.Message):
    __slots__ = ("actor", "reason")
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    actor: str
    reason: str
    def __init__(self, actor: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class PauseResponse(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: RolloutState
    def __init__(self, state: _Optional[_Union[RolloutState, _Mapping]] = ...) -> None: ...

class ResumeRequest(_message.Message):
    __slots__ = ("actor", "reason")
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    actor: str
    reason: str
    def __init__(self, actor: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ResumeResponse(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: RolloutState
    def __init__(self, state: _Optional[_Union[RolloutState, _Mapping]] = ...) -> None: ...

class RollbackRequest(_message.Message):
    __slots__ = ("actor", "reason")
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    actor: str
    reason: str
    def __init__(self, actor: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RollbackResponse(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: RolloutState
    def __init__(self, state: _Optional[_Union[RolloutState, _Mapping]] = ...) -> None: ...

class PromoteRequest(_message.Message):
    __slots__ = ("actor", "reason")
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    actor: str
    reason: str
    def __init__(self, actor: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class PromoteResponse(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: RolloutState
    def __init__(self, state: _Optional[_Union[RolloutState, _Mapping]] = ...) -> None: ...

class SetShareRequest(_message.Message):
    __slots__ = ("actor", "reason", "share")
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    actor: str
    reason: str
    share: str
    def __init__(self, actor: _Optional[str] = ..., reason: _Optional[str] = ..., share: _Optional[str] = ...) -> None: ...

class SetShareResponse(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: RolloutState
    def __init__(self, state: _Optional[_Union[RolloutState, _Mapping]] = ...) -> None: ...
