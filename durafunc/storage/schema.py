"""Enums and formats shared by the task hub's tables, queues and blobs (DTFx names and numbers)."""
from __future__ import annotations

import enum
import functools
from datetime import datetime, timezone


class EventType(enum.IntEnum):
    ExecutionStarted = 0
    ExecutionCompleted = 1
    ExecutionFailed = 2
    ExecutionTerminated = 3
    TaskScheduled = 4
    TaskCompleted = 5
    TaskFailed = 6
    SubOrchestrationInstanceCreated = 7
    SubOrchestrationInstanceCompleted = 8
    SubOrchestrationInstanceFailed = 9
    TimerCreated = 10
    TimerFired = 11
    OrchestratorStarted = 12
    OrchestratorCompleted = 13
    EventSent = 14
    EventRaised = 15
    ContinueAsNew = 16
    GenericEvent = 17
    HistoryState = 18
    ExecutionSuspended = 19
    ExecutionResumed = 20
    ExecutionRewound = 21


# DTFx class names, used for "$type" in queue messages.
EVENT_CLASS = {
    EventType.ExecutionStarted: "ExecutionStartedEvent",
    EventType.ExecutionCompleted: "ExecutionCompletedEvent",
    EventType.ExecutionTerminated: "ExecutionTerminatedEvent",
    EventType.TaskScheduled: "TaskScheduledEvent",
    EventType.TaskCompleted: "TaskCompletedEvent",
    EventType.TaskFailed: "TaskFailedEvent",
    EventType.SubOrchestrationInstanceCreated: "SubOrchestrationInstanceCreatedEvent",
    EventType.SubOrchestrationInstanceCompleted: "SubOrchestrationInstanceCompletedEvent",
    EventType.SubOrchestrationInstanceFailed: "SubOrchestrationInstanceFailedEvent",
    EventType.TimerCreated: "TimerCreatedEvent",
    EventType.TimerFired: "TimerFiredEvent",
    EventType.OrchestratorStarted: "OrchestratorStartedEvent",
    EventType.OrchestratorCompleted: "OrchestratorCompletedEvent",
    EventType.EventSent: "EventSentEvent",
    EventType.EventRaised: "EventRaisedEvent",
    EventType.ContinueAsNew: "ContinueAsNewEvent",
    EventType.GenericEvent: "GenericEvent",
    EventType.HistoryState: "HistoryStateEvent",
    EventType.ExecutionSuspended: "ExecutionSuspendedEvent",
    EventType.ExecutionResumed: "ExecutionResumedEvent",
    EventType.ExecutionRewound: "ExecutionRewoundEvent",
}

# Members that are JSON objects (stored as JSON text in tables, "null" when None).
COMPLEX_MEMBERS = {"OrchestrationInstance", "ParentInstance", "FailureDetails", "Tags", "ParentTraceContext",
                   "State"}
# Members that are DateTimes (Edm.DateTime in tables, ISO strings in events).
DATETIME_MEMBERS = {"FireAt", "ScheduledStartTime"}
# Properties that move to blobs when too large (DTFx GetBlobPropertyName candidates).
LARGE_PROPERTY_CANDIDATES = ("Name", "Input", "Result", "Output", "Reason", "Details", "Correlation",
                             "FailureDetails", "Tags")


class OrchestrationStatus(enum.IntEnum):
    Running = 0
    Completed = 1
    ContinuedAsNew = 2
    Failed = 3
    Canceled = 4
    Terminated = 5
    Pending = 6
    Suspended = 7

    @classmethod
    def parse(cls, name: str) -> "OrchestrationStatus":
        """Case-insensitive name -> status; ValueError naming the valid values."""
        for s in cls:
            if s.name.lower() == str(name).strip().lower():
                return s
        raise ValueError(f"unknown runtime status '{name}' (valid: {', '.join(s.name for s in cls)})")


TERMINAL_STATUSES = frozenset({OrchestrationStatus.Completed, OrchestrationStatus.Failed,
                               OrchestrationStatus.Terminated, OrchestrationStatus.Canceled})
ACTIVE_STATUSES = frozenset({OrchestrationStatus.Running, OrchestrationStatus.Pending,
                             OrchestrationStatus.Suspended})


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def format_time(dt: datetime) -> str:
    """DTFx/Newtonsoft round-trip form: UTC, 7 fractional digits, 'Z' (microsecond precision kept)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    dt = dt.astimezone(timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond:06d}0Z"


def parse_time(value: str | datetime | None) -> datetime | None:
    """ISO 8601 (any fraction length, 'Z' or offset, or naive = UTC) -> aware UTC datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return _parse_text(str(value))


@functools.lru_cache(maxsize=16384)
def _parse_text(value: str) -> datetime:
    """parse_time of a text (cached: every episode's host-side replay reads the same history timestamps)."""
    s = value.strip()
    if s.endswith("Z") or s.endswith("z"):
        s = s[:-1] + "+00:00"
    if "." in s:  # trim fractions beyond microseconds (Python accepts at most 6 digits)
        head, _, rest = s.partition(".")
        digits = ""
        i = 0
        while i < len(rest) and rest[i].isdigit():
            digits += rest[i]
            i += 1
        s = head + "." + (digits[:6].ljust(6, "0")) + rest[i:]
    dt = datetime.fromisoformat(s)
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


# --- Added by the storage layer -------------------------------------------------------------------------------------

# Type-specific [DataMember]s of each event class (besides EventType, EventId, IsPlayed, Timestamp), in DTFx order.
_COMPLETION = ("OrchestrationStatus", "Result", "FailureDetails")
EVENT_MEMBERS: dict[EventType, tuple[str, ...]] = {
    EventType.ExecutionStarted: ("OrchestrationInstance", "ParentInstance", "Name", "Version", "Input", "Tags",
                                 "Correlation", "ParentTraceContext", "ScheduledStartTime", "Generation",
                                 "GenerateNewTrace"),
    EventType.ExecutionCompleted: _COMPLETION,
    EventType.ExecutionFailed: (),
    EventType.ExecutionTerminated: ("Input",),
    EventType.TaskScheduled: ("Name", "Version", "Input", "ParentTraceContext", "Tags"),
    EventType.TaskCompleted: ("TaskScheduledId", "Result"),
    EventType.TaskFailed: ("TaskScheduledId", "Reason", "Details", "FailureDetails"),
    EventType.SubOrchestrationInstanceCreated: ("Name", "Version", "InstanceId", "Input", "ClientSpanId", "Tags"),
    EventType.SubOrchestrationInstanceCompleted: ("TaskScheduledId", "Result"),
    EventType.SubOrchestrationInstanceFailed: ("TaskScheduledId", "Reason", "Details", "FailureDetails"),
    EventType.TimerCreated: ("FireAt",),
    EventType.TimerFired: ("TimerId", "FireAt"),
    EventType.OrchestratorStarted: (),
    EventType.OrchestratorCompleted: (),
    EventType.EventSent: ("InstanceId", "Name", "Input"),
    EventType.EventRaised: ("Name", "Input", "ParentTraceContext"),
    EventType.ContinueAsNew: _COMPLETION,
    EventType.GenericEvent: ("Data",),
    EventType.HistoryState: ("State",),
    EventType.ExecutionSuspended: ("Reason",),
    EventType.ExecutionResumed: ("Reason",),
    EventType.ExecutionRewound: ("Reason", "ParentExecutionId", "InstanceId", "ParentTraceContext"),
}
BASE_MEMBERS = ("EventType", "EventId", "IsPlayed", "Timestamp")
# Members that are enums: ints in queue JSON and the SDK, names in tables.
ENUM_MEMBERS = {"OrchestrationStatus": OrchestrationStatus}
