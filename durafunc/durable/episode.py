"""One orchestration episode as pure decisions: which delivered messages count, and what the SDK's answer
means for history, outbound messages and the instance row. No I/O here; `engine.py` does the I/O."""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from ..storage.schema import EventType, OrchestrationStatus, TERMINAL_STATUSES, format_time
from . import events as ev
from .protocol import OrchestratorOutput
from .reconcile import implied_status as status_from_history  # noqa: F401 - re-exported
from .replay import (CONTINUE_AS_NEW, Replayer, ReplayResult, compare_replays, entries_of, replay,
                     scheduled_input)

ET = EventType
Status = OrchestrationStatus
COMPLETION_TYPES = frozenset({ET.TaskCompleted, ET.TaskFailed, ET.SubOrchestrationInstanceCompleted,
                              ET.SubOrchestrationInstanceFailed, ET.TimerFired})
# the scheduling event each completion answers
_ANSWERS = {ET.TaskCompleted: ET.TaskScheduled, ET.TaskFailed: ET.TaskScheduled,
            ET.SubOrchestrationInstanceCompleted: ET.SubOrchestrationInstanceCreated,
            ET.SubOrchestrationInstanceFailed: ET.SubOrchestrationInstanceCreated, ET.TimerFired: ET.TimerCreated}


def new_execution_id() -> str:
    return uuid.uuid4().hex


_DERIVED = uuid.UUID("6d7a4b5e-2a43-4f0e-9a56-0c1d2e3f4a5b")


def derived_id(instance_id: str, execution_id: str | None, task_id: int) -> str:
    """A GUID (N format) fixed by the task that makes it, so the same task replayed makes the same one."""
    return uuid.uuid5(_DERIVED, f"{instance_id}\n{execution_id}\n{task_id}").hex


@dataclass
class InstanceState:
    """What the engine knows of one instance: its current execution's committed history and row fields."""
    instance_id: str
    execution_id: str | None = None
    history: list[dict] = field(default_factory=list)
    etag: str | None = None
    status: Status | None = None          # None: never started
    custom_status: str | None = None
    action_entries: int = 0
    stored_rows: int | None = None        # history rows in storage, every execution's (None: unknown)
    row: object = None                    # the Instances row (InstanceRow) as last read; None: none or unknown
    failure_trace: str = ""               # the user's traceback of the orchestrator's last raise

    @property
    def started_event(self) -> dict | None:
        for e in self.history[:3]:
            if e.get("EventType") == ET.ExecutionStarted:
                return e
        return None

    @property
    def name(self) -> str:
        return (self.started_event or {}).get("Name") or ""

    @property
    def parent(self) -> dict | None:
        return (self.started_event or {}).get("ParentInstance")

    def scheduled_ids(self) -> set[int]:
        return {e["EventId"] for e in self.history if e.get("EventType") in ev.SCHEDULING_TYPES}

    def completed_ids(self) -> set[int]:
        out = set()
        for e in self.history:
            t = e.get("EventType")
            if t == ET.TimerFired:
                out.add(e.get("TimerId"))
            elif t in COMPLETION_TYPES:
                out.add(e.get("TaskScheduledId"))
        return out


@dataclass
class Outbound:
    """A message to send: to the work-item queue, or to the control queue of `instance_id`."""
    to_work_items: bool
    instance_id: str
    message: dict
    delay: float = 0.0


@dataclass
class Triage:
    accepted: list[dict] = field(default_factory=list)   # events to deliver this episode
    dropped: list[tuple[int, str]] = field(default_factory=list)   # (message index, why)
    deferred: list[int] = field(default_factory=list)    # message indexes to retry later
    consumed: list[int] = field(default_factory=list)    # message indexes this episode consumes


def _completion_id(e: dict) -> int | None:
    t = e.get("EventType")
    if t == ET.TimerFired:
        return e.get("TimerId")
    if t in COMPLETION_TYPES:
        return e.get("TaskScheduledId")
    return None


def triage(state: InstanceState, messages: list[dict]) -> Triage:
    """Sort delivered task messages into accepted, dropped (duplicates, stale) and deferred (DTFx rules)."""
    t = Triage()
    scheduled = {e["EventId"]: e["EventType"] for e in state.history if e.get("EventType") in ev.SCHEDULING_TYPES}
    completed = state.completed_ids()
    started = state.status is not None and bool(state.history)
    terminal = state.status in TERMINAL_STATUSES
    starting = False          # an ExecutionStarted in this batch opens a new execution
    new_exec = None
    suspended = state.status == Status.Suspended      # as of the messages accepted so far
    last_resume = max((e.get("Timestamp") or "" for e in state.history
                       if e.get("EventType") == ET.ExecutionResumed), default="")

    def accept(i: int, e: dict) -> None:
        t.accepted.append(e)
        t.consumed.append(i)

    for i, msg in enumerate(messages):
        e = msg.get("Event") or {}
        et = e.get("EventType")
        target_exec = (msg.get("OrchestrationInstance") or {}).get("ExecutionId")
        if et == ET.ExecutionStarted:
            execution = (e.get("OrchestrationInstance") or {}).get("ExecutionId")
            fresh = not started or ((terminal or state.status == Status.ContinuedAsNew)
                                    and execution != state.execution_id)
            if fresh and not starting:
                starting, new_exec = True, execution
                accept(i, e)
            else:
                t.dropped.append((i, "duplicate ExecutionStarted"))
            continue
        if starting:
            if _completion_id(e) is None:
                accept(i, e)
            elif target_exec and new_exec and target_exec == new_exec:
                t.deferred.append(i)  # for the execution starting now: its task is scheduled by this episode
            else:
                t.dropped.append((i, "completion for a previous execution"))
            continue
        if not started:
            if et == ET.ExecutionTerminated:
                accept(i, e)          # terminate of a Pending instance
            else:
                t.deferred.append(i)  # the start message may still be on its way
            continue
        if state.status == Status.ContinuedAsNew:
            t.deferred.append(i)      # wait for the new execution's ExecutionStarted
            continue
        if et == ET.ExecutionRewound:
            if state.status == Status.Failed:
                accept(i, e)
            else:
                t.dropped.append((i, "rewind applies only to failed instances"))
            continue
        if terminal:
            t.dropped.append((i, f"instance is {state.status.name}"))
            continue
        if target_exec and target_exec != state.execution_id:
            t.dropped.append((i, "message for another execution"))
            continue
        if et == ET.ExecutionSuspended:
            if (e.get("Timestamp") or "") <= last_resume:
                t.dropped.append((i, "a resume sent after this suspend was processed already"))
            elif suspended:
                t.dropped.append((i, "instance is suspended already"))
            else:
                suspended = True
                accept(i, e)
            continue
        if et == ET.ExecutionResumed:
            # recorded even when not suspended (as DTFx appends it): a suspend sent before it that shows up
            # later is then recognized as stale
            suspended = False
            last_resume = max(last_resume, e.get("Timestamp") or "")
            accept(i, e)
            continue
        if suspended and et != ET.ExecutionTerminated:
            t.deferred.append(i)
            continue
        cid = _completion_id(e)
        if cid is not None:
            if cid in completed:
                t.dropped.append((i, f"duplicate completion for task {cid}"))
                continue
            if cid not in scheduled:
                t.deferred.append(i)  # its scheduling event is not committed yet
                continue
            if scheduled[cid] != _ANSWERS[et]:
                t.dropped.append((i, f"task {cid} is a {ET(scheduled[cid]).name}, not answered by {ET(et).name}"))
                continue
            completed.add(cid)
        accept(i, e)
    return t


@dataclass
class Decision:
    new_events: list[dict]                 # appended to the current (or a new) execution's history
    outbound: list[Outbound]
    status: Status
    row: dict                              # Instances-table columns to merge
    reset_history: bool = False            # a new execution: history starts again at row 0
    execution_id: str | None = None
    action_entries: int = 0
    log: list[str] = field(default_factory=list)
    replayer: Replayer | None = None       # the host-side replay, walked to the end of this episode's events


def needs_orchestrator(state: InstanceState, accepted: list[dict]) -> bool:
    """Does this episode call user code? Not for a terminate, nor for suspends and resumes alone."""
    kinds = {e.get("EventType") for e in accepted}
    if ET.ExecutionTerminated in kinds:
        return False
    return bool(kinds - {ET.ExecutionSuspended, ET.ExecutionResumed})


def begin(state: InstanceState, accepted: list[dict], now: datetime) -> tuple[list[dict], bool]:
    """The history the SDK sees this episode: committed events + OrchestratorStarted + delivered ones.

    Returns (episode events, reset) where reset means a new execution starts with these events.
    """
    starts = [e for e in accepted if e.get("EventType") == ET.ExecutionStarted]
    episode = [ev.orchestrator_started(now)]
    if starts:
        start = dict(starts[0])
        episode.append(start)
        episode += [e for e in accepted if e is not starts[0]]
        return episode, True
    return episode + list(accepted), False


def _played(e: dict) -> dict:
    return {**e, "IsPlayed": True}


def decide(state: InstanceState, episode_events: list[dict], reset: bool, output: OrchestratorOutput | None,
           now: datetime, *, store_inputs: bool = False, known_orchestrator: bool = True,
           rewind_ids: set[int] | None = None, missing_function=None, replayer: Replayer | None = None,
           check: bool = False) -> Decision:
    """Turn the SDK's answer into history, messages and the instance row (DTFx checkpoint contents).

    `replayer`: the host-side replay of an extended session, walked over `state.history` exactly; it goes on
    from there (else the whole history is walked). `check`: also walk it in full and compare."""
    start = episode_events[1] if reset else state.started_event
    execution_id = (start.get("OrchestrationInstance") or {}).get("ExecutionId") if reset else state.execution_id
    prior = [] if reset else state.history
    name = (start or {}).get("Name") or state.name
    delivered = [_played(e) if e.get("EventType") != ET.OrchestratorStarted else e for e in episode_events]
    new_events = list(delivered)
    outbound: list[Outbound] = []
    row: dict = {"ExecutionId": execution_id, "LastUpdatedTime": now}
    log: list[str] = []
    kinds = {e.get("EventType") for e in episode_events}

    if reset:
        row.update(Name=name, Version="", CreatedTime=_time(start.get("Timestamp")), RuntimeStatus="Running",
                   Input=start.get("Input"), Generation=start.get("Generation") or 0, CompletedTime=None,
                   Output=None, CustomStatus="null")

    def finish(status: Status, result: str | None, event_id: int) -> Decision:
        new_events.append(ev.execution_completed(now, event_id, status, result))
        new_events.append(ev.orchestrator_completed(now))
        row.update(RuntimeStatus=status.name, Output=result, CompletedTime=now)
        parent = (start or {}).get("ParentInstance")
        if parent:
            outbound.append(_notify_parent(parent, status, result, name, now))
        return Decision(new_events, outbound, status, row, reset, execution_id, state.action_entries, log)

    if ET.ExecutionTerminated in kinds:
        reason = next(e.get("Input") for e in episode_events if e.get("EventType") == ET.ExecutionTerminated)
        if not state.history and not reset:   # terminate before start: only the row changes
            row.update(RuntimeStatus="Terminated", Output=reason, CompletedTime=now)
            return Decision([], [], Status.Terminated, row, False, execution_id, 0, log)
        new_events.append(ev.execution_completed(now, -1, Status.Terminated, reason))
        new_events.append(ev.orchestrator_completed(now))
        row.update(RuntimeStatus="Terminated", Output=reason, CompletedTime=now)
        return Decision(new_events, outbound, Status.Terminated, row, reset, execution_id, state.action_entries, log)

    last_switch = next((e.get("EventType") for e in reversed(episode_events)
                        if e.get("EventType") in (ET.ExecutionSuspended, ET.ExecutionResumed)), None)
    suspended_now = last_switch == ET.ExecutionSuspended or \
        (last_switch is None and state.status == Status.Suspended)
    if output is None:   # suspend or resume only
        status = Status.Suspended if suspended_now else Status.Running
        reason = next((e.get("Reason") for e in reversed(episode_events)
                       if e.get("EventType") in (ET.ExecutionSuspended, ET.ExecutionResumed)), None)
        new_events.append(ev.orchestrator_completed(now))
        row.update(RuntimeStatus=status.name, Output=reason)
        return Decision(new_events, outbound, status, row, reset, execution_id, state.action_entries, log)

    if not known_orchestrator:
        return finish(Status.Failed, output.error, -1)

    full = prior + episode_events
    entries = entries_of(output.state)
    incremental = replayer is not None and not reset and replayer.follow(entries, now)
    if not incremental:
        replayer = Replayer(entries, now)
        replayer.walk(full)
    else:
        replayer.walk(episode_events)
    result = replayer.result()
    if check and incremental:
        compare_replays(result, replay(entries, full, now), state.instance_id)
    custom = output.state.get("customStatus")
    if custom is not None:
        row["CustomStatus"] = json.dumps(custom)

    if result.nondeterminism:
        return finish(Status.Failed, f"Orchestrator function '{name}' failed: {result.nondeterminism}",
                      result.next_id)

    if missing_function is not None:
        for node in result.new_work:
            problem = missing_function(node.kind, node.name)
            if problem:
                return finish(Status.Failed, f"Orchestrator function '{name}' failed: {problem}", result.next_id)
    for node in result.new_work:
        new_events.append(_schedule(node, state.instance_id, execution_id, name, now, outbound, store_inputs))
    for node in result.issued:   # rewind: run the failed tasks again (their scheduling rows stay)
        if rewind_ids and node.id in rewind_ids and node.kind in ("activity", "suborch"):
            _schedule(node, state.instance_id, execution_id, name, now, outbound, store_inputs)
            log.append(f"rewind: running {node.kind} '{node.name}' (task {node.id}) again")

    ready = result.entries_done and result.open_tasks == 0
    if output.error is not None and (ready or output.state.get("isDone")):
        if ready:
            return finish(Status.Failed, f"Orchestrator function '{name}' failed: {output.error}", result.next_id)
    elif output.state.get("isDone") and ready:
        can = next((a for a in reversed(entries) if a.get("actionType") == CONTINUE_AS_NEW), None)
        if can is not None:
            return _continue_as_new(state, start, can, result, new_events, outbound, row, now, execution_id,
                                    reset, log)
        out = output.state.get("output")
        return finish(Status.Completed, None if out is None else json.dumps(out), result.next_id)

    new_events.append(ev.orchestrator_completed(now))
    status = Status.Suspended if suspended_now else Status.Running
    row["RuntimeStatus"] = status.name
    reason = next((e.get("Reason") for e in reversed(episode_events)
                   if e.get("EventType") in (ET.ExecutionSuspended, ET.ExecutionResumed)), None)
    if reason is not None:     # the status output of a suspended/resumed instance is the reason (as on Azure)
        row["Output"] = reason
    return Decision(new_events, outbound, status, row, reset, execution_id, len(entries), log, replayer)


def _time(value):
    from ..storage.schema import parse_time
    return parse_time(value)


def _schedule(node, instance_id: str, execution_id: str, orch_name: str, now: datetime,
              outbound: list[Outbound], store_inputs: bool) -> dict:
    """History event + outbound message for one new action."""
    a = node.action or {}
    if node.kind == "activity":
        msg_event = ev.task_scheduled(now, node.id, node.name, scheduled_input(node))
        outbound.append(Outbound(True, instance_id, ev.task_message(msg_event, instance_id, execution_id)))
        return ev.task_scheduled(now, node.id, node.name, msg_event["Input"] if store_inputs else None)
    if node.kind == "timer":
        fire_at = node.fire_at or now
        fired = ev.timer_fired(now, node.id, format_time(fire_at))
        outbound.append(Outbound(False, instance_id, ev.task_message(fired, instance_id, execution_id),
                                 max(0.0, (fire_at - now).total_seconds())))
        return ev.timer_created(now, node.id, fire_at)
    if node.kind == "suborch":
        child_id = a.get("instanceId") or f"{execution_id}:{node.id}"
        child_exec = derived_id(instance_id, execution_id, node.id)   # a re-sent start is a duplicate, not a rerun
        parent = {"Name": orch_name, "Version": "", "TaskScheduleId": node.id,
                  "OrchestrationInstance": {"InstanceId": instance_id, "ExecutionId": execution_id}}
        child_input = ev.encode_input(a.get("input"))
        started = ev.execution_started(now, instance_id=child_id, execution_id=child_exec,
                                       name=node.name, input=child_input, parent=parent)
        outbound.append(Outbound(False, child_id, ev.task_message(started, child_id, child_exec)))
        return ev.sub_orchestration_created(now, node.id, node.name, child_id, child_input if store_inputs else None)
    if node.kind in ("entity", "signal"):
        from .entities import REQUEST_EVENT, request_message
        target = a.get("instanceId")
        request = request_message(a.get("operation") or "", a.get("input"), signal=node.kind == "signal",
                                  parent=instance_id if node.kind == "entity" else None,
                                  parent_execution=execution_id,
                                  request_id=str(uuid.UUID(derived_id(instance_id, execution_id, node.id))))
        text = json.dumps(request)
        raised = ev.event_raised(now, REQUEST_EVENT, text)
        outbound.append(Outbound(False, target, ev.task_message(raised, target, None)))
        return ev.event_sent(now, node.id, target, a.get("operation") or "", text)
    raise ValueError(f"cannot schedule {node.kind}")


def _notify_parent(parent: dict, status: Status, result: str | None, name: str, now: datetime) -> Outbound:
    inst = parent.get("OrchestrationInstance") or {}
    sid = parent.get("TaskScheduleId")
    if status == Status.Completed:
        e = ev.sub_orchestration_completed(now, sid, result)
    else:
        e = ev.sub_orchestration_failed(now, sid, result or f"Orchestrator function '{name}' failed",
                                        json.dumps({"Message": result, "Status": status.name}))
    return Outbound(False, inst.get("InstanceId"), ev.task_message(e, inst.get("InstanceId"), inst.get("ExecutionId")))


def _continue_as_new(state, start, can_action, result: ReplayResult, new_events, outbound, row, now,
                     execution_id, reset, log) -> Decision:
    new_input = ev.encode_input(can_action.get("input"))
    new_events.append(ev.continue_as_new(now, result.next_id, new_input))
    new_events.append(ev.orchestrator_completed(now))
    new_exec = new_execution_id()
    instance_id = state.instance_id
    started = ev.execution_started(now, instance_id=instance_id, execution_id=new_exec, name=start.get("Name"),
                                   input=new_input, parent=start.get("ParentInstance"),
                                   generation=start.get("Generation") or 0)
    outbound.append(Outbound(False, instance_id, ev.task_message(started, instance_id, new_exec)))
    # events that arrived but were not awaited go to the new execution (DTFx carries them over)
    for queued in result.pending_events.values():
        for ename, payload in queued:
            raised = ev.event_raised(now, ename, payload)
            outbound.append(Outbound(False, instance_id, ev.task_message(raised, instance_id, new_exec)))
    row.update(RuntimeStatus="ContinuedAsNew", Output=new_input)
    return Decision(new_events, outbound, Status.ContinuedAsNew, row, reset, execution_id, 0, log)


def rewind_history(history: list[dict]) -> tuple[list[dict], set[int]]:
    """Rewind a failed execution: failed task rows and the completion become GenericEvents (DTFx does the
    same), so the failed tasks are open again. Returns the rewritten history and the ids to run again."""
    out, failed = [], set()
    for e in history:
        t = e.get("EventType")
        if t in (ET.TaskFailed, ET.SubOrchestrationInstanceFailed, ET.ExecutionCompleted):
            if t != ET.ExecutionCompleted:
                failed.add(e.get("TaskScheduledId"))
            out.append({"EventType": int(ET.GenericEvent), "EventId": e.get("EventId", -1),
                        "IsPlayed": e.get("IsPlayed", False), "Timestamp": e["Timestamp"],
                        "Data": f"Rewound: {ET(t).name}"})
        else:
            out.append(e)
    return out, failed
