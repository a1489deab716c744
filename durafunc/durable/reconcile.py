"""Row and history in agreement, as pure decisions (no I/O).

- `start_gate`: which start messages open an execution. A client's start counts only once its Pending row names
  it (the row insert is what makes one execution per instance id: a second start loses the insert and gets 409,
  whichever host it reached); a continue-as-new start comes from the instance itself; a sub-orchestration's start
  from its parent (whose history is its record).
- `row_repair`: the row columns a committed history implies, when the row lags behind it (a host died between
  the history commit and the row write; its messages are still in their queues, so the next host to get one
  loads the history and repairs the row before it deletes anything).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..storage.schema import EventType, OrchestrationStatus, parse_time

ET = EventType
Status = OrchestrationStatus
MAX_ROWLESS_START_DEFERRALS = 10      # DTFx discards a start whose row never appears after 10 dequeues


@dataclass
class Gate:
    verdict: str          # "accept" | "defer" | "drop"
    reason: str = ""


def start_gate(event: dict, *, sender: dict | None, row, history_execution: str | None,
               status: Status | None, row_checked: bool, deferrals: int = 0) -> Gate:
    """May this ExecutionStarted open an execution? (Duplicates of the current one are triage's to drop.)"""
    execution = (event.get("OrchestrationInstance") or {}).get("ExecutionId")
    if execution and history_execution and execution.lower() == history_execution.lower():
        return Gate("accept")                     # the current execution: triage drops it as a duplicate
    if event.get("ParentInstance"):
        return Gate("accept")                     # a sub-orchestration: its parent's history is its record
    if status == Status.ContinuedAsNew and sender and history_execution and \
            (sender.get("ExecutionId") or "").lower() == history_execution.lower():
        return Gate("accept")                     # continue-as-new: sent by the execution that ended
    if row_checked:
        return Gate("accept")
    if row is None:
        if deferrals >= MAX_ROWLESS_START_DEFERRALS:
            return Gate("drop", "its instance row was never written (the client that sent it failed)")
        return Gate("defer", "its instance row is not written yet")
    if (row.execution_id or "").lower() != (execution or "").lower():
        return Gate("drop", f"the instance row names execution {row.execution_id} (another start won)")
    if row.runtime_status != Status.Pending:
        return Gate("drop", f"the instance is {row.runtime_status.name if row.runtime_status is not None else '?'}")
    return Gate("accept")


def implied_status(history: list[dict]) -> Status | None:
    """The runtime status a committed history implies (None: nothing committed yet)."""
    if not history:
        return None
    status = Status.Running
    for e in history:
        t = e.get("EventType")
        if t in (ET.ExecutionCompleted, ET.ContinueAsNew):
            status = Status(e.get("OrchestrationStatus", 1))
        elif t == ET.ExecutionSuspended:
            status = Status.Suspended
        elif t == ET.ExecutionResumed:
            status = Status.Running
        elif t == ET.GenericEvent and str(e.get("Data", "")).startswith("Rewound: ExecutionCompleted"):
            status = Status.Running
    return status


def _started(history: list[dict]) -> dict | None:
    return next((e for e in history[:3] if e.get("EventType") == ET.ExecutionStarted), None)


def row_repair(history: list[dict], execution_id: str | None, row) -> dict | None:
    """Row columns to write so the row agrees with `history` (None: it does, or the row is ahead of it)."""
    started = _started(history)
    status = implied_status(history)
    if started is None or status is None:
        return None
    started_at = parse_time(started.get("Timestamp"))
    same = row is not None and (row.execution_id or "").lower() == (execution_id or "").lower()
    if row is not None and not same:
        created = row.created_time
        if row.runtime_status == Status.Pending and created is not None and started_at is not None \
                and created >= started_at:
            return None   # a newer start of the instance waits for its turn: the row is ahead of this history
    last = parse_time(history[-1].get("Timestamp"))
    fields: dict = {}
    if not same:
        fields.update(Name=started.get("Name"), Version=started.get("Version") or "", Input=started.get("Input"),
                      CreatedTime=started_at, Generation=started.get("Generation") or 0, ExecutionId=execution_id,
                      CustomStatus="null")
    end = next((e for e in reversed(history) if e.get("EventType") in (ET.ExecutionCompleted, ET.ContinueAsNew)),
               None)
    output = None
    if end is not None:
        output = end.get("Result")
    elif status == Status.Suspended:
        output = next((e.get("Reason") for e in reversed(history) if e.get("EventType") == ET.ExecutionSuspended),
                      None)
    if same and row.runtime_status == status and (end is None or row.output == output):
        return None
    if same and row.runtime_status == Status.Pending and status == Status.Failed:
        return None       # a rewind was asked for: its message is on its way
    fields.update(RuntimeStatus=status.name, LastUpdatedTime=last)
    if output is not None:
        fields["Output"] = output
    if end is not None and status != Status.ContinuedAsNew:
        fields["CompletedTime"] = parse_time(end.get("Timestamp"))
    return fields
