"""The chaos checker on hand-made histories, side-effect logs and timelines (pure, no I/O): each rule catches its
violation, and what is allowed (a re-run after a kill, stale rows of an older execution, a rewind) passes."""
from __future__ import annotations

import json

from chaos import sidelog
from chaos.checker import check, explain_rerun, implied_status
from chaos.expect import ANY, EntityExpect, Expect, Expectations
from chaos.sidelog import Run, SideLog
from chaos.snapshot import InstanceRecord, Poisoned, Snapshot
from chaos.timeline import ClientAnswer, FaultWindow, HostSpan, Rewind, Timeline
from durafunc.storage.instances import InstanceRow
from durafunc.storage.schema import EventType as ET, OrchestrationStatus as S

T = "2030-01-01T00:00:00.0000000Z"


def ev(t: ET, x: str = "e1", **members) -> dict:
    return {"EventType": int(t), "EventId": members.pop("EventId", -1), "IsPlayed": False, "Timestamp": T,
            "ExecutionId": x, **members}


def started(x: str = "e1", iid: str = "i", parent: str | None = None) -> dict:
    p = {"OrchestrationInstance": {"InstanceId": parent, "ExecutionId": "px"}, "TaskScheduleId": 0} if parent else None
    return ev(ET.ExecutionStarted, x, Name="chain", Input="null", ParentInstance=p,
              OrchestrationInstance={"InstanceId": iid, "ExecutionId": x})


def done(status: S = S.Completed, result: str | None = "3", x: str = "e1", eid: int = 1) -> dict:
    return ev(ET.ExecutionCompleted, x, EventId=eid, OrchestrationStatus=int(status), Result=result)


def chain(result: str = "3", x: str = "e1", iid: str = "i") -> list[dict]:
    """A one-activity orchestration that completed with `result`."""
    return [ev(ET.OrchestratorStarted, x), started(x, iid), ev(ET.TaskScheduled, x, EventId=0, Name="Work"),
            ev(ET.OrchestratorCompleted, x), ev(ET.OrchestratorStarted, x),
            ev(ET.TaskCompleted, x, TaskScheduledId=0, Result=result), done(S.Completed, result, x),
            ev(ET.OrchestratorCompleted, x)]


def running(x: str = "e1", iid: str = "i") -> list[dict]:
    return [ev(ET.OrchestratorStarted, x), started(x, iid), ev(ET.TaskScheduled, x, EventId=0, Name="Work"),
            ev(ET.OrchestratorCompleted, x)]


def row(iid: str, status: S | None, output: str | None = "3", x: str = "e1") -> InstanceRow:
    return InstanceRow(instance_id=iid, name="chain", runtime_status=status, output=output, execution_id=x,
                       worker="h1")


def record(iid: str, events: list[dict], status: S | None = S.Completed, output: str | None = "3",
           x: str = "e1", rows: list[int] | None = None, no_row: bool = False) -> InstanceRecord:
    return InstanceRecord(iid, None if no_row else row(iid, status, output, x), events,
                          rows if rows is not None else list(range(len(events))), x if events else None)


def snap(*records: InstanceRecord, entities: dict | None = None) -> Snapshot:
    return Snapshot({r.instance_id: r for r in records}, entities or {})


def expect(**instances) -> Expectations:
    return Expectations({k.replace("_", "-"): v for k, v in instances.items()})


def run(key: str, pid: int, start: float, end=..., ok: bool = True) -> Run:
    """An activity run of `key` by pid `pid`; end None: cut off (no end line)."""
    end = start + 1 if end is ... else end
    return Run(key, key.split(":")[0], f"r{pid}-{start}", pid, f"w{pid}", start, end, ok if end is not None else None)


def rules(report) -> list[str]:
    return sorted(v.rule for v in report.violations)


def test_a_clean_hub_passes_with_its_figures():
    report = check(snap(record("i", chain("3"))), expect(i=Expect("Completed", 3)),
                   SideLog([run("i:c0", 1, 10.0)]), Timeline([HostSpan("h1", 1, 7071, 0.0)]))
    assert report.ok, report.format()
    assert report.figures["instances"] == 1 and report.figures["activity_runs"] == 1
    assert report.figures["lost"] == report.figures["stuck"] == report.figures["unexplained_reruns"] == 0


def test_an_instance_never_seen_or_never_started_is_lost():
    pending = InstanceRecord("p", row("p", S.Pending, None), [], [], None)
    report = check(snap(pending), expect(gone=Expect("Completed"), p=Expect("Completed")), SideLog(), Timeline())
    assert rules(report) == ["lost", "lost"]
    assert report.figures["lost"] == 2
    assert "never processed" in next(v for v in report.violations if v.instance_id == "p").evidence


def test_a_started_instance_that_is_not_final_is_stuck():
    report = check(snap(record("i", running(), S.Running, None)), expect(i=Expect("Completed", 3)), SideLog(),
                   Timeline())
    assert rules(report) == ["stuck"]
    assert "TaskScheduled EventId=0" in report.violations[0].evidence


def test_a_final_instance_with_the_wrong_status_or_output_is_wrong():
    failed = chain("3")
    failed[-2] = done(S.Failed, "boom")
    report = check(snap(record("a", chain("4"), output="4"), record("b", failed, S.Failed, "boom")),
                   expect(a=Expect("Completed", 3), b=Expect("Completed", ANY)), SideLog(), Timeline())
    assert rules(report) == ["wrong-final", "wrong-final"]
    assert report.figures["wrong"] == 2


def test_terminated_expectation_compares_the_reason_text():
    events = running() + [ev(ET.OrchestratorStarted), ev(ET.ExecutionTerminated, Input="bye"),
                          done(S.Terminated, "bye"), ev(ET.OrchestratorCompleted)]
    ok = check(snap(record("i", events, S.Terminated, "bye")), expect(i=Expect("Terminated", "bye")), SideLog(),
               Timeline())
    assert ok.ok, ok.format()
    # terminated before it started: the row alone is the record
    early = InstanceRecord("j", row("j", S.Terminated, "bye"), [], [], None)
    assert check(snap(early), expect(j=Expect("Terminated", "bye")), SideLog(), Timeline()).ok


def test_history_without_a_row_is_reported_with_its_parent():
    child = record("p:1", chain("3", iid="p:1"), no_row=True)
    child.events[1] = started(iid="p:1", parent="p")
    report = check(snap(child), expect(**{"p:1": Expect("Completed", 3)}), SideLog(), Timeline())
    assert "no-row" in rules(report)
    v = report.of("no-row")[0]
    assert v.instance_id == "p:1" and "parent p" in v.evidence and "404" in v.evidence


def test_a_row_that_disagrees_with_its_history():
    stale = record("stale", chain("3"), S.Running, None)             # bug 3: ExecutionCompleted, Running row
    other_exec = record("x", chain("3"), S.Completed, "3", x="e1")
    other_exec.row.execution_id = "e2"
    wrong_out = record("o", chain("3"), S.Completed, "5")
    claims = InstanceRecord("c", row("c", S.Completed), [], [], None)
    report = check(snap(stale, other_exec, wrong_out, claims), Expectations(
        {"stale": Expect("Completed", ANY), "x": Expect("Completed"), "o": Expect("Completed", ANY),
         "c": Expect("Completed", ANY)}), SideLog(), Timeline())
    found = {(v.instance_id, v.rule) for v in report.violations}
    assert ("stale", "row-history") in found and ("stale", "stuck") in found
    assert ("x", "row-history") in found and ("o", "row-history") in found and ("c", "row-history") in found
    assert any("history implies Completed" in v.event for v in report.of("row-history") if v.instance_id == "stale")


def test_suspended_and_continued_as_new_rows_agree_with_their_history():
    suspended = running() + [ev(ET.OrchestratorStarted), ev(ET.ExecutionSuspended, Reason="r"),
                             ev(ET.OrchestratorCompleted)]
    can = running()[:3] + [ev(ET.ContinueAsNew, EventId=1, OrchestrationStatus=int(S.ContinuedAsNew),
                                 Result='{"gen": 1}')]
    assert implied_status(suspended)[0] == "Suspended"
    assert implied_status(can)[0] == "ContinuedAsNew"
    report = check(snap(record("s", suspended, S.Suspended, None), record("c", can, S.ContinuedAsNew, '{"gen":1}')),
                   Expectations(), SideLog(), Timeline())
    assert rules(report) == ["unexpected-instance", "unexpected-instance"], report.format()


def test_stale_rows_of_an_older_execution_are_not_duplicates():
    """Continue-as-new rewrites rows from 0; rows of the old execution past the new ones stay behind."""
    new = chain("6", x="e2")
    old_tail = [ev(ET.TaskCompleted, "e1", TaskScheduledId=3, Result="1"), ev(ET.OrchestratorCompleted, "e1")]
    rec = record("i", new + old_tail, output="6", x="e2", rows=list(range(len(new) + 2)))
    report = check(snap(rec), expect(i=Expect("Completed", 6)), SideLog(), Timeline())
    assert report.ok, report.format()


def test_a_gap_in_the_current_execution_is_reported():
    rec = record("i", chain("3"), rows=[0, 1, 2, 3, 5, 6, 7, 8])
    assert rules(check(snap(rec), expect(i=Expect("Completed", 3)), SideLog(), Timeline())) == ["history-shape"]


def test_exactly_one_execution_started_and_one_completion_per_execution():
    two = chain("3")
    two.insert(2, started())
    none = [e for e in chain("3") if e["EventType"] != ET.ExecutionStarted]
    twice_done = chain("3") + [done(S.Completed, "3", eid=2)]
    report = check(snap(record("a", two), record("b", none), record("c", twice_done)),
                   expect(a=Expect("Completed", 3), b=Expect("Completed", 3), c=Expect("Completed", 3)),
                   SideLog(), Timeline())
    assert sorted((v.instance_id, v.rule) for v in report.violations) == [
        ("a", "execution-started"), ("b", "execution-started"), ("c", "execution-started")]
    assert "2 ExecutionStarted" in report.of("execution-started")[0].event


def test_duplicated_scheduling_and_completions_within_an_execution():
    task = chain("3")
    task.insert(6, ev(ET.TaskCompleted, TaskScheduledId=0, Result="3"))
    timer = [ev(ET.OrchestratorStarted), started(), ev(ET.TimerCreated, EventId=0, FireAt=T),
             ev(ET.TimerFired, TimerId=0, FireAt=T), ev(ET.TimerFired, TimerId=0, FireAt=T), done(S.Completed, "3")]
    sub = [ev(ET.OrchestratorStarted), started(), ev(ET.SubOrchestrationInstanceCreated, EventId=0, Name="c",
                                                     InstanceId="child"),
           ev(ET.SubOrchestrationInstanceCompleted, TaskScheduledId=0, Result="1"),
           ev(ET.SubOrchestrationInstanceFailed, TaskScheduledId=0, Reason="x"), done(S.Completed, "3")]
    sched = chain("3")
    sched.insert(3, ev(ET.TaskScheduled, EventId=0, Name="Work"))
    child = record("child", chain("1", iid="child"), output="1")
    report = check(snap(record("t", task), record("m", timer), record("s", sub), record("d", sched), child),
                   Expectations({k: Expect("Completed", ANY) for k in ("t", "m", "s", "d", "child")}),
                   SideLog(), Timeline())
    assert sorted((v.instance_id, v.rule) for v in report.violations) == [
        ("d", "duplicate"), ("m", "duplicate"), ("s", "duplicate"), ("t", "duplicate")], report.format()
    assert report.figures["duplicates"] == 4
    events = {v.instance_id: v.event for v in report.of("duplicate")}
    assert events == {"t": "2 completions of TaskScheduled 0", "m": "2 completions of TimerCreated 0",
                      "s": "2 completions of SubOrchestrationInstanceCreated 0",
                      "d": "TaskScheduled EventId=0 2 times"}


def test_a_rewound_task_completes_once():
    rewound = running() + [ev(ET.GenericEvent, Data="Rewound: TaskFailed"), ev(ET.GenericEvent,
                                                                             Data="Rewound: ExecutionCompleted"),
                           ev(ET.OrchestratorStarted), ev(ET.TaskCompleted, TaskScheduledId=0, Result="3"),
                           done(S.Completed, "3"), ev(ET.OrchestratorCompleted)]
    assert check(snap(record("i", rewound)), expect(i=Expect("Completed", 3)), SideLog(), Timeline()).ok


def test_a_completion_without_its_scheduling_event_and_a_missing_child():
    orphan = [ev(ET.OrchestratorStarted), started(), ev(ET.TaskCompleted, TaskScheduledId=4, Result="1"),
              done(S.Completed, "3")]
    parent = [ev(ET.OrchestratorStarted), started(iid="p"),
              ev(ET.SubOrchestrationInstanceCreated, EventId=0, Name="c", InstanceId="p-c0"),
              ev(ET.OrchestratorCompleted)]
    report = check(snap(record("o", orphan), record("p", parent, S.Running, None)),
                   Expectations({"o": Expect("Completed", 3), "p": Expect("Completed", ANY),
                                 "p-c0": Expect("Completed", ANY)}), SideLog(), Timeline())
    assert sorted((v.instance_id, v.rule) for v in report.violations) == [
        ("o", "orphan-completion"), ("p", "missing-child"), ("p", "stuck"), ("p-c0", "lost")]


def test_an_instance_nobody_started_is_unexpected():
    report = check(snap(record("i", chain("3")), record("extra", chain("3"))), expect(i=Expect("Completed", 3)),
                   SideLog(), Timeline())
    assert [(v.instance_id, v.rule) for v in report.violations] == [("extra", "unexpected-instance")]


# -- re-runs -----------------------------------------------------------------------------------------------------

def hosts(*spans: HostSpan) -> Timeline:
    return Timeline(list(spans))


def test_a_rerun_without_kill_or_fault_is_unexplained():
    report = check(Snapshot(), Expectations(), SideLog([run("i:c0", 1, 10.0), run("i:c0", 2, 10.5)]),
                   hosts(HostSpan("w1", 1, 1, 0.0), HostSpan("w2", 2, 2, 0.0)))
    assert rules(report) == ["unexplained-rerun"]
    v = report.violations[0]
    assert v.instance_id == "i" and "i:c0" in v.event and "pid 1" in v.evidence and "pid 2" in v.evidence
    assert report.figures["unexplained_reruns"] == 1


def test_a_rerun_after_its_host_was_killed_or_stopped_is_explained():
    first, second = run("i:c0", 1, 10.0, 12.0), run("i:c0", 2, 30.0)
    killed = HostSpan("w1", 1, 1, 0.0, how="SIGKILL", ended=20.0, exited=20.0)
    assert explain_rerun(first, second, hosts(killed)) == "w1 (pid 1) SIGKILL at +20.000"
    # a graceful stop sent before the run began, whose process exited while it ran, explains it too
    stopping = HostSpan("w1", 1, 1, 0.0, how="SIGTERM", ended=9.0, exited=15.0)
    assert explain_rerun(first, second, hosts(stopping))
    # ...but a host killed before the first run began, or only after the second began, does not
    assert explain_rerun(first, second, hosts(HostSpan("w1", 1, 1, 0.0, how="SIGKILL", ended=5.0, exited=5.0))) \
        is None
    assert explain_rerun(first, second, hosts(HostSpan("w1", 1, 1, 0.0, how="SIGKILL", ended=31.0, exited=31.0))) \
        is None
    # the kill of another host explains nothing
    assert explain_rerun(first, second, hosts(HostSpan("w2", 2, 2, 0.0, how="SIGKILL", ended=20.0))) is None


def test_a_rerun_during_a_storage_fault_is_explained():
    first, second = run("i:c0", 1, 10.0), run("i:c0", 2, 12.0)
    assert "storage fault" in explain_rerun(first, second, Timeline(faults=[FaultWindow("5xx", ("table",), 8, 10.5)]))
    assert explain_rerun(first, second, Timeline(faults=[FaultWindow("stall", ("blob",), 12.5, 14)])) is None


def test_a_rerun_after_a_rewind_of_a_failed_run_is_explained():
    failed, again = run("i:f", 1, 10.0, 10.5, ok=False), run("i:f", 1, 20.0)
    assert explain_rerun(failed, again, Timeline(rewinds=[Rewind("i", 15.0)])) == "rewind of i at +15.000"
    succeeded = run("i:f", 1, 10.0, 10.5, ok=True)
    assert explain_rerun(succeeded, again, Timeline(rewinds=[Rewind("i", 15.0)])) is None
    assert explain_rerun(failed, again, Timeline(rewinds=[Rewind("other", 15.0)])) is None


def test_each_rerun_is_explained_by_what_happened_to_the_run_before_it():
    """One kill explains one re-run: a third run after a healthy second one is not explained by the kill."""
    killed = HostSpan("w1", 1, 1, 0.0, how="SIGKILL", ended=11.0, exited=11.0)
    runs = [run("i:c0", 1, 10.0, None), run("i:c0", 2, 12.0), run("i:c0", 3, 13.0)]
    report = check(Snapshot(), Expectations(), SideLog(runs),
                   hosts(killed, HostSpan("w2", 2, 2, 0.0), HostSpan("w3", 3, 3, 0.0)))
    assert rules(report) == ["unexplained-rerun"]
    assert report.figures["reruns_explained"] == 1 and "pid 3" in report.violations[0].evidence


# -- entities, hosts, client answers -------------------------------------------------------------------------------

def test_entity_operations_must_be_applied_exactly_once():
    exp = Expectations(entities={"@counter@k": EntityExpect({"a": 1, "b": 2, "c": 4}, {"m": 8, "n": 16})})
    state = {"value": 1 + 2 * 2 + 8 * 2 + 32, "ops": {"a": 1, "b": 2, "m": 2, "z": 1}}
    report = check(Snapshot(entities={"@counter@k": state}), exp,
                   SideLog(entity_ops=[sidelog.EntityOp("k", "b", 1, "w1", 5.0), sidelog.EntityOp("k", "b", 2, "w2", 6.0)]),
                   Timeline())
    events = sorted(v.event for v in report.violations)
    assert events == ["operation b applied 2 times", "operation c lost (applied 0 times)",
                      "operation m applied 2 times", "operation z was never sent",
                      "value 53, the applied operations sum to 21"], events
    assert "w1 (pid 1) at +5.000, w2 (pid 2) at +6.000" in next(v.evidence for v in report.violations
                                                             if v.event.startswith("operation b"))
    ok = {"value": 1 + 2 + 4 + 16, "ops": {"a": 1, "b": 1, "c": 1, "n": 1}}
    assert check(Snapshot(entities={"@counter@k": ok}), exp, SideLog(), Timeline()).ok


def test_a_missing_entity_loses_its_operations():
    exp = Expectations(entities={"@counter@k": EntityExpect({"a": 1})})
    report = check(Snapshot(), exp, SideLog(), Timeline())
    assert [v.event for v in report.violations] == ["operation a lost (applied 0 times)",
                                                    "value None, the applied operations sum to 0"]


def test_a_host_that_exits_by_itself_is_reported():
    tl = hosts(HostSpan("w1", 1, 1, 0.0, how="died", ended=5.0, exited=5.0, exit_code=1, log_tail="Traceback"),
               HostSpan("w2", 2, 2, 0.0, how="SIGKILL", ended=5.0), HostSpan("w3", 3, 3, 0.0, how="failed-start"),
               HostSpan("w4", 4, 4, 0.0, how="failed-start", exit_code=1, traceback=True, log_tail="ServerBusy"))
    report = check(Snapshot(), Expectations(), SideLog(), tl)
    assert rules(report) == ["host-died", "host-start"] and "Traceback" in report.of("host-died")[0].evidence
    assert "w4 (pid 4)" in report.of("host-start")[0].event      # a failed start with one clear line is fine
    assert report.figures["kills"] == 1 and report.figures["hosts"] == 4


def test_client_answers_of_the_durable_api():
    answers = [ClientAnswer("webhook", "start", "a", 500, "text/plain", "500 Internal Server Error\n\nServer got "
                            "itself in trouble", 1.0),
               ClientAnswer("webhook", "raise", "b", 503, "application/json", json.dumps({"Message": "down"}), 1.0),
               ClientAnswer("webhook", "start", "c", 500, "application/json", "{}", 1.0, created_behind_error=True),
               ClientAnswer("starter", "start", "d", 500, "text/plain", "user code", 1.0),
               ClientAnswer("webhook", "start", "e", 202, "application/json", "{}", 1.0)]
    report = check(Snapshot(), Expectations(), SideLog(), Timeline(answers=answers))
    assert sorted((v.instance_id, v.rule) for v in report.violations) == [("a", "client-answer"),
                                                                          ("c", "client-answer")]
    assert "but the instance was created" in report.of("client-answer")[1].evidence


# -- the side-effect log -------------------------------------------------------------------------------------------

def test_side_log_merges_begin_and_end_and_tolerates_a_torn_line():
    lines = [{"k": "begin", "key": "i:c0", "iid": "i", "run": "r1", "t0": 1.0, "pid": 7, "worker": "h1"},
             {"k": "end", "key": "i:c0", "iid": "i", "run": "r1", "t0": 1.0, "t1": 1.5, "ok": True, "pid": 7,
              "worker": "h1"},
             {"k": "begin", "key": "i:c1", "iid": "i", "run": "r2", "t0": 2.0, "pid": 7, "worker": "h1"},
             {"k": "end", "key": "i:c2", "iid": "i", "run": "r3", "t0": 3.0, "t1": 3.2, "ok": False, "pid": 8,
              "worker": "h2"},
             {"k": "entity", "entity": "k", "op": "o1", "t0": 4.0, "pid": 8, "worker": "h2"}]
    text = "\n".join(json.dumps(x) for x in lines) + '\n{"k": "begin", "key": "i:c'
    log = sidelog.parse(text)
    runs = {r.run_id: r for r in log.runs}
    assert log.torn == 1 and len(runs) == 3
    assert (runs["r1"].start, runs["r1"].end, runs["r1"].ok, runs["r1"].pid) == (1.0, 1.5, True, 7)
    assert runs["r2"].end is None and runs["r2"].ok is None          # cut off: a begin without an end
    assert (runs["r3"].start, runs["r3"].ok, runs["r3"].worker) == (3.0, False, "h2")
    assert [(o.entity_key, o.op_id) for o in log.entity_ops] == [("k", "o1")]
    assert log.workers() == {"h1", "h2"}


def test_a_poisoned_message_is_an_event_given_up_on():
    snap = Snapshot(poisoned=[Poisoned("hub-control-01-poison", "i", ev(ET.TaskCompleted, TaskScheduledId=1), "{}"),
                              Poisoned("hub-workitems-poison", None, None, "garbage")])
    report = check(snap, Expectations(), SideLog(), Timeline())
    assert [(v.rule, v.instance_id) for v in report.violations] == [("poison", "i"), ("poison", None)]
    assert "TaskCompleted TaskScheduledId=1" in report.violations[0].event
    assert "hub-control-01-poison" in report.violations[0].evidence and report.figures["poisoned"] == 2
