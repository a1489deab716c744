"""History events in DTFx wire form (plain dicts), and constructors for each kind the engine writes."""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from ..storage.schema import EventType, OrchestrationStatus, format_time

ET = EventType

# Events recorded for actions: they carry EventId = the action's sequence id.
SCHEDULING_TYPES = frozenset({ET.TaskScheduled, ET.SubOrchestrationInstanceCreated, ET.TimerCreated, ET.EventSent})


def _base(event_type: EventType, timestamp: datetime, event_id: int = -1, **members: Any) -> dict:
    return {"EventType": int(event_type), "EventId": event_id, "IsPlayed": False,
            "Timestamp": format_time(timestamp), **members}


def orchestrator_started(ts: datetime) -> dict:
    return _base(ET.OrchestratorStarted, ts)


def orchestrator_completed(ts: datetime) -> dict:
    return _base(ET.OrchestratorCompleted, ts)


def execution_started(ts: datetime, *, instance_id: str, execution_id: str, name: str, input: str | None,
                      parent: dict | None = None, generation: int = 0, version: str = "",
                      scheduled_start: datetime | None = None, tags: dict | None = None) -> dict:
    return _base(ET.ExecutionStarted, ts,
                 OrchestrationInstance={"InstanceId": instance_id, "ExecutionId": execution_id},
                 ParentInstance=parent, Name=name, Version=version or "", Input=input, Tags=tags,
                 Correlation=None, ParentTraceContext=None,
                 ScheduledStartTime=format_time(scheduled_start) if scheduled_start else None,
                 Generation=generation, GenerateNewTrace=False)


def execution_completed(ts: datetime, event_id: int, status: OrchestrationStatus, result: str | None,
                        failure_details: dict | None = None) -> dict:
    return _base(ET.ExecutionCompleted, ts, event_id, OrchestrationStatus=int(status), Result=result,
                 FailureDetails=failure_details)


def continue_as_new(ts: datetime, event_id: int, result: str | None) -> dict:
    return _base(ET.ContinueAsNew, ts, event_id, OrchestrationStatus=int(OrchestrationStatus.ContinuedAsNew),
                 Result=result, FailureDetails=None)


def execution_terminated(ts: datetime, reason: str | None) -> dict:
    return _base(ET.ExecutionTerminated, ts, Input=reason)


def execution_suspended(ts: datetime, reason: str | None) -> dict:
    return _base(ET.ExecutionSuspended, ts, Reason=reason)


def execution_resumed(ts: datetime, reason: str | None) -> dict:
    return _base(ET.ExecutionResumed, ts, Reason=reason)


def task_scheduled(ts: datetime, event_id: int, name: str, input: str | None) -> dict:
    return _base(ET.TaskScheduled, ts, event_id, Name=name, Version="", Input=input, ParentTraceContext=None,
                 Tags=None)


def task_completed(ts: datetime, scheduled_id: int, result: str | None) -> dict:
    return _base(ET.TaskCompleted, ts, TaskScheduledId=scheduled_id, Result=result)


def task_failed(ts: datetime, scheduled_id: int, reason: str, details: str | None) -> dict:
    return _base(ET.TaskFailed, ts, TaskScheduledId=scheduled_id, Reason=reason, Details=details,
                 FailureDetails=None)


def sub_orchestration_created(ts: datetime, event_id: int, name: str, instance_id: str, input: str | None) -> dict:
    return _base(ET.SubOrchestrationInstanceCreated, ts, event_id, Name=name, Version="", InstanceId=instance_id,
                 Input=input, ClientSpanId=None, Tags=None)


def sub_orchestration_completed(ts: datetime, scheduled_id: int, result: str | None) -> dict:
    return _base(ET.SubOrchestrationInstanceCompleted, ts, TaskScheduledId=scheduled_id, Result=result)


def sub_orchestration_failed(ts: datetime, scheduled_id: int, reason: str, details: str | None) -> dict:
    return _base(ET.SubOrchestrationInstanceFailed, ts, TaskScheduledId=scheduled_id, Reason=reason,
                 Details=details, FailureDetails=None)


def timer_created(ts: datetime, event_id: int, fire_at: datetime) -> dict:
    return _base(ET.TimerCreated, ts, event_id, FireAt=format_time(fire_at))


def timer_fired(ts: datetime, timer_id: int, fire_at: str) -> dict:
    return _base(ET.TimerFired, ts, TimerId=timer_id, FireAt=fire_at)


def event_raised(ts: datetime, name: str, input: str | None) -> dict:
    return _base(ET.EventRaised, ts, Name=name, Input=input, ParentTraceContext=None)


def event_sent(ts: datetime, event_id: int, instance_id: str, name: str, input: str | None) -> dict:
    return _base(ET.EventSent, ts, event_id, InstanceId=instance_id, Name=name, Input=input)


def generic(ts: datetime, data: str) -> dict:
    return _base(ET.GenericEvent, ts, Data=data)


def task_message(event: dict, instance_id: str, execution_id: str | None) -> dict:
    """A DTFx TaskMessage addressed to an orchestration instance."""
    return {"Event": event, "SequenceNumber": 0,
            "OrchestrationInstance": {"InstanceId": instance_id, "ExecutionId": execution_id},
            "OrchestrationExecutionContext": None}


def event_type(event: dict) -> EventType | int:
    t = event.get("EventType")
    try:
        return EventType(t)
    except ValueError:
        return t


def encode_input(value_text: str | None) -> str | None:
    """How the host stores an input that arrives as JSON text from the SDK: as a JSON string literal."""
    return None if value_text is None else json.dumps(value_text)
