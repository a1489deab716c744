"""The chaos checker: pure rules over what a task hub holds (Snapshot), what the app's activities and entities
did (SideLog), what the scenario did (Timeline) and what it expects (Expectations). Every violation names the
rule, the instance, the event and the evidence; `Report.figures` counts what was checked.

Rules (the `rule` of a Violation):
  lost              an instance the scenario started has no row, or no ExecutionStarted: it never got going
  stuck             an instance that started but is not final
  wrong-final       final with the wrong status or output
  no-row            an instance has history but no Instances row (sub-orchestrations included)
  row-history       the row disagrees with the history: RuntimeStatus vs the status the history implies,
                    ExecutionId, Output vs the completion's Result; a row that claims a finished run with no history
  history-shape     rows of the current execution do not run 0..n-1
  execution-started not exactly one ExecutionStarted (or more than one completion) in an execution
  duplicate         a TaskScheduled/TimerCreated/SubOrchestrationInstanceCreated EventId twice, or a second
                    TaskCompleted/TaskFailed per TaskScheduledId, TimerFired per TimerId,
                    SubOrchestrationInstanceCompleted/Failed per sub-orchestration, within one execution
  orphan-completion a completion in the current execution whose scheduling event is not there
  missing-child     a SubOrchestrationInstanceCreated names a child that has neither history nor row
  unexplained-rerun an activity call ran again although neither the host of its previous run was killed/stopped
                    nor a storage fault was injected between the two starts (nor a rewind after a failed run)
  entity            an entity operation applied zero times (sent for sure) or more than once; a wrong total
  poison            a message of the hub sits in a `-poison` queue: an event given up on
  host-died         a host exited although the scenario did not stop it
  host-start        a host that could not start (storage down) printed a traceback instead of one clear line
  client-answer     the Durable HTTP API answered a 5xx other than 503 with a JSON body, or a start answered 5xx
                    although it created the instance
  unexpected-instance  an instance the scenario never started (nor expected as a child)
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from durafunc.storage.schema import EventType as ET, OrchestrationStatus

from .expect import ANY, Expectations
from .sidelog import Run, SideLog
from .snapshot import EXECUTION, InstanceRecord, Snapshot
from .timeline import Timeline

TERMINAL = frozenset({"Completed", "Failed", "Terminated", "Canceled"})
SCHEDULING = (ET.TaskScheduled, ET.TimerCreated, ET.SubOrchestrationInstanceCreated)
COMPLETION_OF = {ET.TaskCompleted: ET.TaskScheduled, ET.TaskFailed: ET.TaskScheduled,
                 ET.TimerFired: ET.TimerCreated,
                 ET.SubOrchestrationInstanceCompleted: ET.SubOrchestrationInstanceCreated,
                 ET.SubOrchestrationInstanceFailed: ET.SubOrchestrationInstanceCreated}


@dataclass(frozen=True)
class Violation:
    rule: str
    instance_id: str | None
    event: str
    evidence: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.instance_id or '-'}: {self.event} -- {self.evidence}"


@dataclass
class Report:
    violations: list[Violation] = field(default_factory=list)
    figures: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations

    def rules(self) -> set[str]:
        return {v.rule for v in self.violations}

    def of(self, rule: str) -> list[Violation]:
        return [v for v in self.violations if v.rule == rule]

    def figures_line(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.figures.items())

    def format(self, title: str = "chaos check", limit: int = 60) -> str:
        head = f"{title}: {'OK' if self.ok else f'FAILED, {len(self.violations)} violation(s)'}"
        lines = [head, "figures: " + self.figures_line()]
        lines += [f"  {v}" for v in self.violations[:limit]]
        if len(self.violations) > limit:
            lines.append(f"  ... and {len(self.violations) - limit} more")
        return "\n".join(lines)


# -- helpers -------------------------------------------------------------------------------------------------------

def _type(e: dict):
    try:
        return ET(e.get("EventType"))
    except ValueError:
        return e.get("EventType")


def describe_event(e: dict) -> str:
    t = _type(e)
    parts = [t.name if isinstance(t, ET) else f"EventType {t}"]
    for key in ("EventId", "TaskScheduledId", "TimerId", "Name", "InstanceId"):
        if e.get(key) not in (None, -1) or (key == "EventId" and t in SCHEDULING):
            parts.append(f"{key}={e.get(key)}")
    if e.get("OrchestrationStatus") is not None:
        parts.append(f"status={OrchestrationStatus(e['OrchestrationStatus']).name}")
    if e.get("Timestamp"):
        parts.append(f"at {e['Timestamp']}")
    if e.get(EXECUTION):
        parts.append(f"execution {str(e[EXECUTION])[:8]}")
    return " ".join(parts)


def _same_text(a: str | None, b: str | None) -> bool:
    if a == b:
        return True
    try:
        return a is not None and b is not None and json.loads(a) == json.loads(b)
    except ValueError:
        return False


def output_matches(text: str | None, expected) -> bool:
    if expected is ANY:
        return True
    if text is None:
        return expected is None
    try:
        if json.loads(text) == expected:
            return True
    except ValueError:
        pass
    return text == expected


def implied_status(events: list[dict]) -> tuple[str | None, dict | None]:
    """(the runtime status an execution's events imply, the completion event) -- (None, None) with no events."""
    if not events:
        return None, None
    status, completion = "Running", None
    for e in events:
        t = _type(e)
        if t == ET.ExecutionCompleted:
            status, completion = OrchestrationStatus(e.get("OrchestrationStatus", 1)).name, e
        elif t == ET.ContinueAsNew:
            status, completion = "ContinuedAsNew", e
        elif completion is None and t == ET.ExecutionTerminated:
            status = "Terminated"
        elif completion is None and t == ET.ExecutionSuspended:
            status = "Suspended"
        elif completion is None and t == ET.ExecutionResumed:
            status = "Running"
    return status, completion


def _tail(rec: InstanceRecord, n: int = 3) -> str:
    events = rec.current_events()
    if not events:
        return "no history"
    return "history ends: " + "; ".join(describe_event(e) for e in events[-n:])


def _row_text(rec: InstanceRecord) -> str:
    r = rec.row
    if r is None:
        return "no row"
    status = r.runtime_status.name if r.runtime_status is not None else "without a (valid) RuntimeStatus"
    return f"row {status} (execution {str(r.execution_id)[:8]}, worker {r.worker}, output {str(r.output)[:80]!r})"


def _has_started(rec: InstanceRecord) -> bool:
    return any(_type(e) == ET.ExecutionStarted for e in rec.events)


# -- the rules -------------------------------------------------------------------------------------------------------

class _Check:
    def __init__(self, snapshot: Snapshot, expected: Expectations, log: SideLog, timeline: Timeline):
        self.snap, self.exp, self.log, self.tl = snapshot, expected, log, timeline
        self.out: list[Violation] = []
        self.fig = {"scenarios": 1, "hosts": len(timeline.hosts),
                    "kills": sum(1 for h in timeline.hosts if h.how == "SIGKILL"),
                    "stops": sum(1 for h in timeline.hosts if h.how == "SIGTERM"),
                    "faults": len(timeline.faults), "instances": len(expected.instances),
                    "entity_ops": sum(len(e.definite) + len(e.maybe) for e in expected.entities.values()),
                    "activity_runs": len(log.runs), "lost": 0, "stuck": 0, "wrong": 0, "duplicates": 0,
                    "reruns_explained": 0, "unexplained_reruns": 0}

    def add(self, rule: str, iid: str | None, event: str, evidence: str) -> None:
        self.out.append(Violation(rule, iid, event, evidence))

    def run(self) -> Report:
        self.expectations()
        for rec in self.snap.instances.values():
            self.agreement(rec)
            self.executions(rec)
        self.reruns()
        self.entities()
        self.poison()
        self.hosts()
        self.answers()
        self.fig["violations"] = len(self.out)
        return Report(self.out, self.fig)

    def expectations(self) -> None:
        for iid, want in self.exp.instances.items():
            rec = self.snap.instances.get(iid)
            label = f"expected {want.status}" + (f" ({want.what})" if want.what else "")
            if rec is None or rec.row is None and not rec.events:
                self.fig["lost"] += 1
                self.add("lost", iid, label, "no row and no history: the instance never got going")
                continue
            status = rec.row.runtime_status.name if rec.row is not None and rec.row.runtime_status else None
            if status not in TERMINAL:
                if not _has_started(rec):
                    self.fig["lost"] += 1
                    self.add("lost", iid, label, f"{_row_text(rec)}; no ExecutionStarted in history: its start "
                                                 "was never processed")
                else:
                    self.fig["stuck"] += 1
                    self.add("stuck", iid, label, f"{_row_text(rec)}; {_tail(rec)}")
                continue
            if status != want.status or not output_matches(rec.row.output, want.output):
                self.fig["wrong"] += 1
                shown = "(any)" if want.output is ANY else repr(want.output)
                self.add("wrong-final", iid, f"{label}, output {shown}", f"{_row_text(rec)}; {_tail(rec)}")
        for iid, rec in self.snap.instances.items():
            if iid not in self.exp.instances:
                self.add("unexpected-instance", iid, "not started by the scenario", f"{_row_text(rec)}; {_tail(rec)}")

    def agreement(self, rec: InstanceRecord) -> None:
        iid, row = rec.instance_id, rec.row
        if row is None:
            if rec.events:
                start = next((e for e in rec.events if _type(e) == ET.ExecutionStarted), None)
                parent = ((start or {}).get("ParentInstance") or {}).get("OrchestrationInstance") or {}
                self.add("no-row", iid, describe_event(start or rec.events[0]),
                         f"history of {len(rec.events)} events but no Instances row (GET status is 404)"
                         + (f"; parent {parent.get('InstanceId')}" if parent else "") + f"; {_tail(rec)}")
            return
        row_status = row.runtime_status.name if row.runtime_status is not None else None
        events = rec.current_events()
        if not events:
            if row_status not in ("Pending", "Terminated"):
                self.add("row-history", iid, f"row {row_status}", "the row claims a run but there is no history")
            return
        implied, completion = implied_status(events)
        if row.execution_id != rec.current_execution:
            self.add("row-history", iid, f"row ExecutionId {row.execution_id}",
                     f"history's current execution is {rec.current_execution}; {_tail(rec)}")
        if row_status != implied:
            self.add("row-history", iid, f"row {row_status}, history implies {implied}",
                     f"{_row_text(rec)}; {_tail(rec)}")
        elif completion is not None and not _same_text(row.output, completion.get("Result")):
            self.add("row-history", iid, f"row Output {str(row.output)[:80]!r}",
                     f"{describe_event(completion)} has Result {str(completion.get('Result'))[:80]!r}")

    def executions(self, rec: InstanceRecord) -> None:
        iid = rec.instance_id
        current = rec.current_execution
        cur_rows = [n for n, e in zip(rec.rows, rec.events) if e.get(EXECUTION) == current]
        if rec.rows and cur_rows != list(range(len(cur_rows))):
            self.add("history-shape", iid, f"rows {cur_rows[:12]}",
                     f"the current execution {str(current)[:8]}'s rows do not run 0..{len(cur_rows) - 1}")
        for execution, events in rec.executions().items():
            is_current = execution == current
            starts = [e for e in events if _type(e) == ET.ExecutionStarted]
            if len(starts) > 1 or (is_current and not starts):
                if len(starts) > 1:
                    self.fig["duplicates"] += 1
                self.add("execution-started", iid, f"{len(starts)} ExecutionStarted in execution {execution[:8]}",
                         "; ".join(describe_event(e) for e in starts) or _tail(rec))
            ends = [e for e in events if _type(e) in (ET.ExecutionCompleted, ET.ContinueAsNew)]
            if len(ends) > 1:
                self.fig["duplicates"] += 1
                self.add("execution-started", iid, f"{len(ends)} completions in execution {execution[:8]}",
                         "; ".join(describe_event(e) for e in ends))
            self._duplicates(iid, events, is_current)

    def _duplicates(self, iid: str, events: list[dict], is_current: bool) -> None:
        scheduled: dict[tuple, list[dict]] = {}
        for e in events:
            t = _type(e)
            if t in SCHEDULING:
                scheduled.setdefault((t, e.get("EventId")), []).append(e)
        for (t, eid), same in scheduled.items():
            if len(same) > 1:
                self.fig["duplicates"] += 1
                self.add("duplicate", iid, f"{t.name} EventId={eid} {len(same)} times",
                         "; ".join(describe_event(e) for e in same))
        done: dict[tuple, list[dict]] = {}
        for e in events:
            t = _type(e)
            if t in COMPLETION_OF:
                sid = e.get("TimerId") if t == ET.TimerFired else e.get("TaskScheduledId")
                done.setdefault((COMPLETION_OF[t], sid), []).append(e)
        for (kind, sid), same in done.items():
            if len(same) > 1:
                self.fig["duplicates"] += 1
                self.add("duplicate", iid, f"{len(same)} completions of {kind.name} {sid}",
                         "; ".join(describe_event(e) for e in same))
            if is_current and (kind, sid) not in scheduled:
                self.add("orphan-completion", iid, describe_event(same[0]),
                         f"no {kind.name} with EventId={sid} in the execution")
        if is_current:
            for e in events:
                if _type(e) == ET.SubOrchestrationInstanceCreated:
                    child = self.snap.instances.get(e.get("InstanceId"))
                    if child is None or (child.row is None and not child.events):
                        self.add("missing-child", iid, describe_event(e),
                                 f"child {e.get('InstanceId')} has neither history nor row")

    def reruns(self) -> None:
        for key, runs in self.log.runs_by_key().items():
            for prev, cur in zip(runs, runs[1:]):
                why = explain_rerun(prev, cur, self.tl)
                if why:
                    self.fig["reruns_explained"] += 1
                    continue
                self.fig["unexplained_reruns"] += 1
                host = self.tl.host_by_pid(prev.pid)
                t0 = self.tl.t0
                fate = f"its host {host.name} was {self._fate(host)}" if host else "its host is unknown"
                self.add("unexplained-rerun", cur.instance_id, f"activity call {key} ran again",
                         f"previous {prev.describe(t0)}; then {cur.describe(t0)}; {fate}, and no storage fault "
                         f"between {prev.start - t0:+.3f} and {cur.start - t0:+.3f}")

    def _later(self, pid: int) -> str:
        host = self.tl.host_by_pid(pid)
        return "" if host is None or host.how is None else f" (that host: {host.how} at {host.ended - self.tl.t0:+.3f})"

    def _fate(self, host) -> str:
        if host.how is None:
            return "running throughout"
        return f"{host.how} only at {host.ended - self.tl.t0:+.3f}"

    def entities(self) -> None:
        applied_by = {}
        for op in self.log.entity_ops:
            applied_by.setdefault(op.op_id, []).append(op)
        for eid, want in self.exp.entities.items():
            state = self.snap.entities.get(eid)
            ops = (state or {}).get("ops", {}) if isinstance(state, dict) else {}
            value = (state or {}).get("value") if isinstance(state, dict) else None

            def evidence(op_id: str) -> str:
                seen = applied_by.get(op_id, [])
                where = ", ".join(f"{o.worker} (pid {o.pid}) at {o.at - self.tl.t0:+.3f}{self._later(o.pid)}"
                                  for o in seen) or "never"
                return f"state {json.dumps(state)[:160]}; the entity function applied it: {where}"
            for op_id in want.definite:
                n = ops.get(op_id, 0)
                if n == 0:
                    self.add("entity", eid, f"operation {op_id} lost (applied 0 times)", evidence(op_id))
                elif n > 1:
                    self.fig["duplicates"] += 1
                    self.add("entity", eid, f"operation {op_id} applied {n} times", evidence(op_id))
            for op_id in want.maybe:
                if ops.get(op_id, 0) > 1:
                    self.fig["duplicates"] += 1
                    self.add("entity", eid, f"operation {op_id} applied {ops[op_id]} times", evidence(op_id))
            sent = {**want.definite, **want.maybe}
            for op_id in ops:
                if op_id not in sent:
                    self.add("entity", eid, f"operation {op_id} was never sent", evidence(op_id))
            total = sum(sent.get(op_id, 0) * n for op_id, n in ops.items())
            if (state is not None or want.definite) and value != total:
                self.add("entity", eid, f"value {value}, the applied operations sum to {total}",
                         f"state {json.dumps(state)[:160]}")

    def poison(self) -> None:
        self.fig["poisoned"] = len(self.snap.poisoned)
        for p in self.snap.poisoned:
            what = describe_event(p.event) if p.event else "a message that is not a TaskMessage"
            self.add("poison", p.instance_id, what, f"in {p.queue}: {p.text[:200]!r}")

    def hosts(self) -> None:
        for h in self.tl.hosts:
            if h.how == "failed-start" and h.traceback:
                self.add("host-start", None, f"host {h.name} could not start (exit {h.exit_code})",
                         f"and printed a traceback; last log lines:\n{h.log_tail}")
            if h.how == "died":
                self.add("host-died", None, f"host {h.name} exited with {h.exit_code}",
                         f"the scenario did not stop it; last log lines:\n{h.log_tail}")

    def answers(self) -> None:
        for a in self.tl.answers:
            if a.created_behind_error:
                self.add("client-answer", a.target, f"{a.op} answered {a.status}",
                         f"but the instance was created ({a.channel}, body {a.body[:160]!r})")
            elif a.channel == "webhook" and a.status >= 500 and not _json_503(a):
                self.add("client-answer", a.target, f"{a.op} answered {a.status} {a.content_type}",
                         f"a storage problem must be a 503 with a JSON body; got {a.body[:160]!r}")


def _json_503(a) -> bool:
    if a.status != 503 or "json" not in (a.content_type or ""):
        return False
    try:
        json.loads(a.body)
        return True
    except ValueError:
        return False


def explain_rerun(prev: Run, cur: Run, timeline: Timeline) -> str | None:
    """Why activity call `cur` may run again after `prev` (None: nothing explains it)."""
    host = timeline.host_by_pid(prev.pid)
    t0 = timeline.t0
    if host is not None and host.ended_within(prev.start, cur.start):
        return f"{host.name} {host.how} at {host.ended - t0:+.3f}"
    for f in timeline.faults:
        if f.overlaps(prev.start, cur.start):
            return f"storage fault: {f.describe(t0)}"
    if prev.ok is False:
        for rw in timeline.rewinds:
            if rw.instance_id == cur.instance_id and prev.start <= rw.at <= cur.start:
                return f"rewind of {rw.instance_id} at {rw.at - t0:+.3f}"
    return None


def check(snapshot: Snapshot, expected: Expectations, log: SideLog, timeline: Timeline) -> Report:
    return _Check(snapshot, expected, log, timeline).run()
