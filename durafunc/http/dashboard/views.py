"""Pure view models of the dashboard: instance rows, the history as a timeline of bars and as a table of events,
the parent and sub-orchestration links, failure details. No I/O: unit-tested on plain events."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone

from ...display import duration
from ...management import parse_stored_json
from ...storage.instances import InstanceRow
from ...storage.schema import EventType, OrchestrationStatus, TERMINAL_STATUSES, parse_time

ET = EventType
PAYLOAD_LIMIT = 20_000          # characters of one input/output shown before "… (N more characters)"
EPISODE_TYPES = frozenset({ET.OrchestratorStarted, ET.OrchestratorCompleted})


def type_name(t) -> str:
    return ET(t).name if t in ET._value2member_map_ else str(t)


def status_name(status: OrchestrationStatus | None) -> str:
    return status.name if status is not None else "Unknown"


def utc_text(dt: datetime | None, *, millis: bool = False) -> str:
    """`2024-05-01 12:00:03` (UTC); the page's script shows it in local time, the title keeps UTC."""
    if dt is None:
        return ""
    dt = dt.astimezone(timezone.utc)
    return dt.strftime("%Y-%m-%d %H:%M:%S") + (f".{dt.microsecond // 1000:03d}" if millis else "")


def iso(dt: datetime | None) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if dt else ""


def pretty(value, *, stored: bool = True, limit: int = PAYLOAD_LIMIT) -> str | None:
    """A stored JSON text (or a value) as indented JSON; a plain string as is; cut at `limit` characters."""
    if value is None:
        return None
    v = parse_stored_json(value) if stored and isinstance(value, str) else value
    text = v if isinstance(v, str) else json.dumps(v, indent=2, ensure_ascii=False, default=str)
    if len(text) > limit:
        text = text[:limit] + f"\n… ({len(text) - limit:,} more characters)"
    return text


def stack_text(details) -> str | None:
    """A failure's details as a person reads them: the worker's RpcException JSON (`Message`, `StackTrace`) or
    FailureDetails (`ErrorMessage`, `StackTrace`) as its message and stack with real line breaks; else as is."""
    if details in (None, "", "null"):
        return None
    value = parse_stored_json(details) if isinstance(details, str) else details
    if isinstance(value, dict):
        stack = value.get("StackTrace") or ""
        message = value.get("Message") or value.get("ErrorMessage") or ""
        if isinstance(stack, str) and stack.strip():
            if isinstance(message, str) and message.strip() and message.strip() not in stack:
                return f"{message.strip()}\n\n{stack.rstrip()}"
            return stack.rstrip()
        if isinstance(message, str) and message.strip():
            return message.strip()
    return value if isinstance(value, str) else pretty(value, stored=False)


def one_line(value, limit: int = 80) -> str:
    text = pretty(value) or ""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _end_of(row: InstanceRow) -> datetime | None:
    if row.completed_time:
        return row.completed_time
    if row.runtime_status in TERMINAL_STATUSES:
        return row.last_updated_time
    return None


def instance_item(row: InstanceRow, now: datetime | None = None) -> dict:
    """One line of the instances table."""
    end = _end_of(row) or now
    return {"id": row.instance_id, "name": row.name or "", "status": status_name(row.runtime_status),
            "created": row.created_time, "updated": row.last_updated_time,
            "duration": duration(row.created_time, end), "worker": row.worker or ""}


# -- links and failures ---------------------------------------------------------------------------------

def parent_of(events: list[dict]) -> dict | None:
    """{instanceId, name} of the parent orchestration, from ExecutionStarted.ParentInstance."""
    for e in events:
        if e.get("EventType") == ET.ExecutionStarted:
            p = e.get("ParentInstance")
            if isinstance(p, str):
                p = parse_stored_json(p)
            if isinstance(p, dict):
                iid = (p.get("OrchestrationInstance") or {}).get("InstanceId")
                if iid:
                    return {"instanceId": iid, "name": p.get("Name") or ""}
            return None
    return None


def children_of(events: list[dict]) -> list[dict]:
    """[{instanceId, name, status}] of the sub-orchestrations this execution started, in order."""
    done: dict = {}
    for e in events:
        t = e.get("EventType")
        if t == ET.SubOrchestrationInstanceCompleted:
            done[e.get("TaskScheduledId")] = "Completed"
        elif t == ET.SubOrchestrationInstanceFailed:
            done[e.get("TaskScheduledId")] = "Failed"
    return [{"instanceId": e.get("InstanceId"), "name": e.get("Name") or "",
             "status": done.get(e.get("EventId"), "Running")}
            for e in events if e.get("EventType") == ET.SubOrchestrationInstanceCreated and e.get("InstanceId")]


def failure_of(row: InstanceRow | None, events: list[dict]) -> dict | None:
    """{message, stack, source} of a Failed instance: its output, and the stack from the ExecutionCompleted
    FailureDetails or the last failed task's Details."""
    failed = row is not None and row.runtime_status == OrchestrationStatus.Failed
    completed = next((e for e in reversed(events) if e.get("EventType") == ET.ExecutionCompleted), None)
    if completed is not None and completed.get("OrchestrationStatus") == OrchestrationStatus.Failed:
        failed = True
    if not failed:
        return None
    message = parse_stored_json(row.output) if row is not None and row.output else None
    if message is None and completed is not None:
        message = parse_stored_json(completed.get("Result"))
    if not isinstance(message, str):
        message = pretty(message, stored=False) if message is not None else "Failed"
    first, _, rest = message.strip().partition("\n")
    stack, source = None, None
    details = (completed or {}).get("FailureDetails")
    if details not in (None, "", "null"):
        stack, source = stack_text(details), "orchestrator"
    if stack is None:
        scheduled = {e.get("EventId"): e for e in events
                     if e.get("EventType") in (ET.TaskScheduled, ET.SubOrchestrationInstanceCreated)}
        for e in reversed(events):
            if e.get("EventType") in (ET.TaskFailed, ET.SubOrchestrationInstanceFailed):
                stack = stack_text(e.get("Details")) or stack_text(e.get("Reason"))
                source = (scheduled.get(e.get("TaskScheduledId")) or {}).get("Name") or type_name(e["EventType"])
                break
    if stack is None and rest.strip():
        stack = stack_text(rest.strip())
    return {"message": first, "stack": stack, "source": source}


# -- the timeline ---------------------------------------------------------------------------------------

@dataclass
class Bar:
    kind: str                 # activity | suborchestration | timer | event
    label: str
    start_ms: float
    end_ms: float | None      # None: still open (runs to the end of the timeline)
    state: str                # completed | failed | fired | instant | open (still running) | unfinished
    ref: int | None = None    # the EventId it was scheduled with
    instance_id: str | None = None
    detail: str = ""
    left: float = 0.0         # percent of the timeline
    width: float = 0.0

    @property
    def took(self) -> str:
        if self.state == "unfinished":
            return "never fired" if self.kind == "timer" else "not finished"
        if self.end_ms is None:
            return "running"
        return _ms_text(self.end_ms - self.start_ms)


@dataclass
class Timeline:
    total_ms: float
    bars: list[Bar] = field(default_factory=list)
    ticks: list[dict] = field(default_factory=list)
    hidden: int = 0           # bars past `limit` that are not drawn


def _ms_text(ms: float) -> str:
    return duration(datetime.fromtimestamp(0, timezone.utc),
                    datetime.fromtimestamp(max(ms, 0) / 1000, timezone.utc))


def _ts(e: dict) -> datetime | None:
    try:
        return parse_time(e.get("Timestamp"))
    except (ValueError, TypeError):
        return None


def timeline(events: list[dict], *, now: datetime, running: bool, limit: int = 300) -> Timeline:
    """A bar per activity, sub-orchestration and timer from its scheduling to its completion (open bars run to
    `now` while the instance runs; once it has ended they are `unfinished` up to its last event), a mark per
    raised or sent event."""
    stamped = [(e, _ts(e)) for e in events]
    times = [t for _, t in stamped if t is not None]
    if not times:
        return Timeline(total_ms=0)
    t0 = min(times)
    end = max(times)
    if running:
        end = max(end, now)

    def ms(t: datetime | None) -> float:
        return (t - t0).total_seconds() * 1000 if t is not None else 0.0

    bars: list[Bar] = []
    open_by_id: dict[tuple[str, int], Bar] = {}
    for e, t in stamped:
        et = e.get("EventType")
        if et == ET.TaskScheduled:
            b = Bar("activity", e.get("Name") or "", ms(t), None, "open", e.get("EventId"))
            open_by_id[("task", e.get("EventId"))] = b
            bars.append(b)
        elif et == ET.SubOrchestrationInstanceCreated:
            b = Bar("suborchestration", e.get("Name") or "", ms(t), None, "open", e.get("EventId"),
                    instance_id=e.get("InstanceId"))
            open_by_id[("task", e.get("EventId"))] = b
            bars.append(b)
        elif et == ET.TimerCreated:
            fire = parse_time(e.get("FireAt")) if e.get("FireAt") else None
            b = Bar("timer", "timer", ms(t), None, "open", e.get("EventId"),
                    detail=f"fires at {utc_text(fire, millis=True)} UTC" if fire else "")
            open_by_id[("timer", e.get("EventId"))] = b
            bars.append(b)
        elif et in (ET.TaskCompleted, ET.TaskFailed, ET.SubOrchestrationInstanceCompleted,
                    ET.SubOrchestrationInstanceFailed):
            b = open_by_id.pop(("task", e.get("TaskScheduledId")), None)
            if b is not None:
                b.end_ms = ms(t)
                b.state = "failed" if et in (ET.TaskFailed, ET.SubOrchestrationInstanceFailed) else "completed"
                if b.state == "failed":
                    b.detail = one_line(e.get("Reason"), 120)
        elif et == ET.TimerFired:
            b = open_by_id.pop(("timer", e.get("TimerId")), None)
            if b is not None:
                b.end_ms, b.state = ms(t), "fired"
        elif et in (ET.EventRaised, ET.EventSent):
            verb = "received" if et == ET.EventRaised else f"sent to {e.get('InstanceId')}"
            bars.append(Bar("event", e.get("Name") or "", ms(t), ms(t), "instant",
                            e.get("EventId") if et == ET.EventSent else None, detail=f"event {verb}"))
    if not running:       # the instance ended with these open: a cancelled timer, a task it stopped waiting for
        for b in open_by_id.values():
            b.state = "unfinished"
    total = max(ms(end), 1.0)
    hidden = max(0, len(bars) - limit)
    bars = bars[:limit]
    for b in bars:
        stop = b.end_ms if b.end_ms is not None else total
        b.left = round(100 * b.start_ms / total, 3)
        b.width = round(max(100 * (stop - b.start_ms) / total, 0.4), 3)
        if b.left + b.width > 100:
            b.width = round(max(100 - b.left, 0.4), 3)
    ticks = [{"left": p, "label": _ms_text(total * p / 100)} for p in (0, 25, 50, 75, 100)]
    return Timeline(total_ms=total, bars=bars, ticks=ticks, hidden=hidden)


# -- the events table ---------------------------------------------------------------------------------

_PAYLOAD_KEYS = ("Input", "Result", "Reason", "Details", "FailureDetails", "Data")


def event_rows(events: list[dict]) -> list[dict]:
    """Each event with its EventType name, time, offset from the first event, the name it concerns (a completion
    gets its scheduled task's name), its id, a one-line summary and its payloads (expandable)."""
    scheduled = {e.get("EventId"): e for e in events
                 if e.get("EventType") in (ET.TaskScheduled, ET.SubOrchestrationInstanceCreated, ET.TimerCreated)}
    times = [_ts(e) for e in events]
    t0 = min((t for t in times if t is not None), default=None)
    out = []
    for i, (e, t) in enumerate(zip(events, times)):
        et = e.get("EventType")
        ref = e.get("TaskScheduledId", e.get("TimerId"))
        origin = scheduled.get(ref) if ref is not None else None
        name = e.get("Name") or ""
        summary = ""
        state = ""
        if et in (ET.TaskCompleted, ET.TaskFailed, ET.SubOrchestrationInstanceCompleted,
                  ET.SubOrchestrationInstanceFailed, ET.TimerFired):
            name = (origin or {}).get("Name") or ("timer" if et == ET.TimerFired else "")
            if origin is not None:
                summary = f"after {duration(_ts(origin), t)}"
        if et in (ET.TaskFailed, ET.SubOrchestrationInstanceFailed):
            summary = (summary + ": " if summary else "") + one_line(e.get("Reason"), 120)
            state = "failed"
        elif et in (ET.TaskCompleted, ET.SubOrchestrationInstanceCompleted) and e.get("Result") is not None:
            summary = (summary + ": " if summary else "") + one_line(e.get("Result"))
        elif et == ET.TimerCreated:
            summary = f"fires at {utc_text(parse_time(e.get('FireAt')), millis=True)} UTC" if e.get("FireAt") else ""
        elif et == ET.SubOrchestrationInstanceCreated:
            summary = f"instance {e.get('InstanceId')}"
        elif et == ET.EventSent:
            summary = f"to {e.get('InstanceId')}"
        elif et in (ET.ExecutionCompleted, ET.ContinueAsNew):
            status = e.get("OrchestrationStatus")
            sname = OrchestrationStatus(status).name if status in OrchestrationStatus._value2member_map_ else ""
            summary = sname + (f": {one_line(e.get('Result'))}" if e.get("Result") is not None else "")
            state = "failed" if sname == "Failed" else "completed"
        elif et == ET.ExecutionTerminated:
            summary = one_line(e.get("Input")) if e.get("Input") is not None else ""
            state = "terminated"
        elif et in (ET.ExecutionSuspended, ET.ExecutionResumed, ET.ExecutionRewound):
            summary = e.get("Reason") or ""
        elif et in (ET.ExecutionStarted, ET.TaskScheduled, ET.EventRaised) and e.get("Input") is not None:
            summary = one_line(e.get("Input"))
        payloads = [(k, stack_text(e[k]) if k in ("Details", "FailureDetails") else pretty(e[k]))
                    for k in _PAYLOAD_KEYS if e.get(k) not in (None, "", "null")]
        out.append({"index": i, "time": t, "offset": f"{(t - t0).total_seconds() * 1000:,.0f}" if t and t0 else "",
                    "type": type_name(et), "name": name,
                    "id": e.get("EventId") if e.get("EventId", -1) != -1 else ref,
                    "summary": summary, "payloads": payloads, "state": state,
                    "episode": et in EPISODE_TYPES})
    return out
