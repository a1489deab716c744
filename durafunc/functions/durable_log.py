"""What the host logs for orchestrator, activity and entity runs (pure): which orchestrator episodes are new runs,
the Reason of their Executing line, and the entity operations that failed."""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

_EVENT_NAMES = {0: "ExecutionStarted", 1: "ExecutionCompleted", 3: "ExecutionTerminated", 4: "TaskScheduled",
                5: "TaskCompleted", 6: "TaskFailed", 7: "SubOrchestrationInstanceCreated",
                8: "SubOrchestrationInstanceCompleted", 9: "SubOrchestrationInstanceFailed", 10: "TimerCreated",
                11: "TimerFired", 12: "OrchestratorStarted", 13: "OrchestratorCompleted", 14: "EventSent",
                15: "EventRaised", 16: "ContinueAsNew", 17: "GenericEvent", 18: "HistoryState",
                19: "ExecutionSuspended", 20: "ExecutionResumed", 21: "ExecutionRewound"}
_EPISODE_MARKERS = {12, 13}      # OrchestratorStarted / OrchestratorCompleted frame every episode


@dataclass
class Episode:
    instance_id: str
    new_events: list[str] = field(default_factory=list)   # names of the events not played yet, in order

    @property
    def is_new_run(self) -> bool:
        """False for a pure replay (the engine recomputing an orchestrator's tasks, nothing new delivered)."""
        return bool(self.new_events)

    @property
    def reason(self) -> str:
        counts = Counter(self.new_events)
        kinds = ", ".join(f"{n} x{c}" if c > 1 else n for n, c in counts.items()) or "replay"
        return f"Orchestration instance '{self.instance_id}': {kinds}"


def episode(context_json: str) -> Episode:
    """The instance and the new events of an orchestration trigger value (the context JSON the SDK gets).

    A new episode is the history with an OrchestratorStarted that no OrchestratorCompleted follows yet, then the
    events delivered to it (`IsPlayed: false`). A history whose last episode is closed is a pure replay (the
    engine recomputing an orchestrator's tasks): nothing new. Events an earlier episode scheduled (TaskScheduled,
    TimerCreated, ...) keep `IsPlayed: false` in storage, so the flag alone does not tell."""
    try:
        ctx = json.loads(context_json)
    except (TypeError, ValueError):
        return Episode("")
    if not isinstance(ctx, dict):
        return Episode("")
    return episode_of(str(ctx.get("instanceId") or ""), ctx.get("history") or [])


def episode_of(iid: str, history: list) -> Episode:
    """`episode` of an instance id and the history its orchestrator is called with."""
    events = [e for e in history if isinstance(e, dict)]
    last_start = max((i for i, e in enumerate(events) if e.get("EventType") == 12), default=-1)
    tail = events[last_start + 1:]
    if last_start < 0 or any(e.get("EventType") == 13 for e in tail):
        return Episode(iid)
    new = [_EVENT_NAMES.get(e.get("EventType"), str(e.get("EventType"))) for e in tail
           if not e.get("IsPlayed") and e.get("EventType") not in _EPISODE_MARKERS]
    return Episode(iid, new)


def activity_reason(instance_id: str | None) -> str:
    """An activity runs for the TaskScheduled event of its orchestration."""
    return f"Orchestration instance '{instance_id}': TaskScheduled" if instance_id else "(null)"


@dataclass
class EntityBatch:
    instance_id: str
    operations: list[str]

    @property
    def reason(self) -> str:
        n = len(self.operations)
        ops = ", ".join(dict.fromkeys(self.operations))
        return f"Entity '{self.instance_id}': {n} operation{'s' if n != 1 else ''} ({ops})"


def entity_batch(context_json: str) -> EntityBatch:
    try:
        ctx = json.loads(context_json)
        me = ctx.get("self") or {}
        iid = f"@{str(me.get('name', '')).lower()}@{me.get('key', '')}"
        return EntityBatch(iid, [str(op.get("name")) for op in ctx.get("batch") or []])
    except (TypeError, ValueError, AttributeError):
        return EntityBatch("", [])


def failed_operations(batch: EntityBatch, result_json: str) -> list[tuple[str, str]]:
    """(operation, message) of each operation the entity's answer reports as failed."""
    try:
        results = json.loads(result_json).get("results") or []
    except (TypeError, ValueError, AttributeError):
        return []
    out = []
    for op, res in zip(batch.operations, results):
        if isinstance(res, dict) and res.get("isError"):
            message = res.get("result")
            try:
                message = json.loads(message) if isinstance(message, str) else message
            except ValueError:
                pass
            out.append((op, str(message)))
    return out
