"""Human output of the management commands: rich tables, a status panel, a history timeline."""
from __future__ import annotations

import json
from datetime import datetime, timezone

from rich.console import Console
from rich.table import Table

from .management import parse_stored_json
from .storage.instances import InstanceRow
from .storage.schema import EventType, OrchestrationStatus, parse_time

ET = EventType
STATUS_STYLE = {"Completed": "green", "Failed": "red", "Terminated": "magenta", "Running": "cyan",
                "Pending": "yellow", "Suspended": "yellow", "ContinuedAsNew": "cyan", "Canceled": "magenta"}


def console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def local_and_utc(dt: datetime | None) -> str:
    if dt is None:
        return "-"
    utc = dt.astimezone(timezone.utc)
    local = dt.astimezone()
    return f"{local:%Y-%m-%d %H:%M:%S} ({utc:%H:%M:%S} UTC)"


def duration(start: datetime | None, end: datetime | None) -> str:
    if start is None:
        return "-"
    end = end or datetime.now(timezone.utc)
    secs = max(0.0, (end - start).total_seconds())
    if secs < 1:
        return f"{secs * 1000:.0f} ms"
    if secs < 120:
        return f"{secs:.1f} s"
    if secs < 7200:
        return f"{secs / 60:.1f} min"
    return f"{secs / 3600:.1f} h"


def status_text(status: OrchestrationStatus | None) -> str:
    name = status.name if status is not None else "Unknown"
    return f"[{STATUS_STYLE.get(name, 'white')}]{name}[/]"


def short(value, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def row_json(row: InstanceRow, *, show_input: bool = True, show_output: bool = True) -> dict:
    """Stable machine keys for --json output."""
    return {
        "instanceId": row.instance_id,
        "name": row.name,
        "runtimeStatus": row.runtime_status.name if row.runtime_status is not None else None,
        "createdTime": row.created_time.isoformat() if row.created_time else None,
        "lastUpdatedTime": row.last_updated_time.isoformat() if row.last_updated_time else None,
        "completedTime": row.completed_time.isoformat() if row.completed_time else None,
        "executionId": row.execution_id,
        "input": parse_stored_json(row.input) if show_input else None,
        "output": parse_stored_json(row.output) if show_output else None,
        "customStatus": parse_stored_json(row.custom_status),
        "worker": row.worker,
    }


def instances_table(rows: list[InstanceRow], *, show_input: bool = False) -> Table:
    t = Table(show_lines=False, header_style="bold")
    for col in ("Instance ID", "Name", "Status", "Created", "Last updated", "Duration", "Worker"):
        t.add_column(col, overflow="fold")
    if show_input:
        t.add_column("Input", overflow="fold")
    for r in rows:
        end = r.completed_time or (r.last_updated_time if r.runtime_status in (
            OrchestrationStatus.Completed, OrchestrationStatus.Failed, OrchestrationStatus.Terminated) else None)
        cells = [r.instance_id, r.name or "", status_text(r.runtime_status), local_and_utc(r.created_time),
                 local_and_utc(r.last_updated_time), duration(r.created_time, end), r.worker or "-"]
        if show_input:
            cells.append(short(parse_stored_json(r.input)) if r.input is not None else "-")
        t.add_row(*cells)
    return t


def status_table(row: InstanceRow, *, show_input: bool, show_output: bool) -> Table:
    t = Table(show_header=False, box=None)
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    t.add_row("Instance ID", row.instance_id)
    t.add_row("Name", row.name or "")
    t.add_row("Status", status_text(row.runtime_status))
    t.add_row("Created", local_and_utc(row.created_time))
    t.add_row("Last updated", local_and_utc(row.last_updated_time))
    if row.completed_time:
        t.add_row("Completed", local_and_utc(row.completed_time))
    t.add_row("Duration", duration(row.created_time, row.completed_time))
    t.add_row("Execution ID", row.execution_id or "-")
    t.add_row("Worker", row.worker or "-")
    custom = parse_stored_json(row.custom_status)
    if custom is not None:
        t.add_row("Custom status", short(custom, 400))
    if show_input:
        t.add_row("Input", short(parse_stored_json(row.input), 400) if row.input is not None else "-")
    if show_output:
        t.add_row("Output", short(parse_stored_json(row.output), 400) if row.output is not None else "-")
    return t


def history_json(events: list[dict]) -> list[dict]:
    out = []
    for e in events:
        item = dict(e)
        t = item.get("EventType")
        item["EventType"] = ET(t).name if t in ET._value2member_map_ else t
        if isinstance(item.get("OrchestrationStatus"), int):
            item["OrchestrationStatus"] = OrchestrationStatus(item["OrchestrationStatus"]).name
        out.append(item)
    return out


def history_timeline(events: list[dict]) -> Table:
    """Events in order with what they mean: activity names, durations since scheduling, failures."""
    t = Table(header_style="bold")
    for col in ("#", "Time", "+ms", "Event", "Name", "Details"):
        t.add_column(col, overflow="fold")
    scheduled = {e.get("EventId"): e for e in events if e.get("EventType") in (
        ET.TaskScheduled, ET.SubOrchestrationInstanceCreated, ET.TimerCreated)}
    start = parse_time(events[0]["Timestamp"]) if events else None
    for i, e in enumerate(events):
        et = e.get("EventType")
        name = ET(et).name if et in ET._value2member_map_ else str(et)
        ts = parse_time(e.get("Timestamp"))
        rel = f"{(ts - start).total_seconds() * 1000:.0f}" if ts and start else ""
        label, details, style = "", "", ""
        sid = e.get("TaskScheduledId", e.get("TimerId"))
        origin = scheduled.get(sid) if sid is not None else None
        if et in (ET.TaskScheduled, ET.SubOrchestrationInstanceCreated):
            label = e.get("Name") or ""
            details = f"task {e.get('EventId')}" + (f" → {e.get('InstanceId')}" if e.get("InstanceId") else "")
        elif et == ET.TimerCreated:
            details = f"timer {e.get('EventId')} fires at {e.get('FireAt')}"
        elif et in (ET.TaskCompleted, ET.SubOrchestrationInstanceCompleted, ET.TimerFired):
            label = (origin or {}).get("Name") or ""
            took = duration(parse_time(origin["Timestamp"]), ts) if origin else ""
            details = f"task {sid}, took {took}" + (f": {short(parse_stored_json(e.get('Result')))}"
                                                     if e.get("Result") is not None else "")
        elif et in (ET.TaskFailed, ET.SubOrchestrationInstanceFailed):
            label = (origin or {}).get("Name") or ""
            details = f"task {sid} failed: {short(e.get('Reason') or '', 200)}"
            style = "red"
        elif et == ET.ExecutionStarted:
            label = e.get("Name") or ""
            details = f"input {short(parse_stored_json(e.get('Input')))}" if e.get("Input") is not None else ""
        elif et in (ET.ExecutionCompleted, ET.ContinueAsNew):
            status = OrchestrationStatus(e.get("OrchestrationStatus", 1)).name
            details = f"{status}: {short(parse_stored_json(e.get('Result')), 200)}" if e.get("Result") else status
            style = "red" if status == "Failed" else "green"
        elif et == ET.EventRaised:
            label = e.get("Name") or ""
            details = short(parse_stored_json(e.get("Input"))) if e.get("Input") is not None else ""
        elif et in (ET.ExecutionTerminated,):
            details = e.get("Input") or ""
            style = "magenta"
        elif et in (ET.ExecutionSuspended, ET.ExecutionResumed):
            details = e.get("Reason") or ""
        elif et == ET.GenericEvent:
            details = e.get("Data") or ""
        t.add_row(str(i), f"{ts:%H:%M:%S.%f}"[:-3] if ts else "", rel,
                  f"[{style}]{name}[/]" if style else name, label, details)
    return t
