"""The dashboard's pure parts: the timeline, the events table, links, failures, filters, the CSRF guard."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from durafunc.durable import events as ev
from durafunc.http.dashboard import views
from durafunc.http.dashboard.security import CSRF_COOKIE, Guard
from durafunc.management import InstanceFilter, parse_statuses
from durafunc.storage.instances import InstanceRow
from durafunc.storage.schema import EventType as ET, OrchestrationStatus as S

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)


def at(ms: float) -> datetime:
    return T0 + timedelta(milliseconds=ms)


def history_of_fan_out_with_child_and_timer() -> list[dict]:
    """Two activities in parallel (one fails), a timer, a raised event, a sub-orchestration still running."""
    return [
        ev.orchestrator_started(at(0)),
        ev.execution_started(at(0), instance_id="p", execution_id="e", name="parent", input='{"n": 2}',
                             parent={"OrchestrationInstance": {"InstanceId": "grandpa", "ExecutionId": "g"},
                                     "Name": "top"}),
        ev.task_scheduled(at(0), 0, "double", "1"),
        ev.task_scheduled(at(0), 1, "double", "2"),
        ev.timer_created(at(0), 2, at(500)),
        ev.orchestrator_completed(at(1)),
        ev.orchestrator_started(at(100)),
        ev.task_completed(at(100), 0, "2"),
        ev.task_failed(at(300), 1, "ValueError: boom", "Traceback (most recent call last):\n  File x\nValueError: boom"),
        ev.event_raised(at(400), "Approval", "true"),
        ev.timer_fired(at(500), 2, ev.format_time(at(500))),
        ev.sub_orchestration_created(at(500), 3, "child", "p:3", "7"),
        ev.orchestrator_completed(at(501)),
    ]


def test_timeline_bars_run_from_scheduling_to_completion():
    tl = views.timeline(history_of_fan_out_with_child_and_timer(), now=at(1000), running=True)
    assert tl.total_ms == 1000                     # running: up to now
    by_ref = {(b.kind, b.ref): b for b in tl.bars}
    ok, failed = by_ref[("activity", 0)], by_ref[("activity", 1)]
    assert (ok.start_ms, ok.end_ms, ok.state) == (0, 100, "completed")
    assert (failed.end_ms, failed.state) == (300, "failed") and "boom" in failed.detail
    assert (ok.left, ok.width) == (0, 10) and failed.width == 30
    timer = by_ref[("timer", 2)]
    assert (timer.end_ms, timer.state) == (500, "fired") and "12:00:00.500" in timer.detail
    child = by_ref[("suborchestration", 3)]
    assert child.end_ms is None and child.state == "open" and child.instance_id == "p:3"
    assert child.left == 50 and child.width == 50 and child.took == "running"   # open: runs to the end
    event = next(b for b in tl.bars if b.kind == "event")
    assert (event.label, event.start_ms, event.state) == ("Approval", 400, "instant")
    assert [t["left"] for t in tl.ticks] == [0, 25, 50, 75, 100] and tl.ticks[-1]["label"] == "1.0 s"


def test_timeline_of_a_finished_instance_ends_at_its_last_event_and_is_capped():
    events = [ev.execution_started(at(0), instance_id="i", execution_id="e", name="o", input=None)]
    events += [ev.task_scheduled(at(0), i, "a", None) for i in range(5)]
    events += [ev.task_completed(at(200 + i), i, None) for i in range(5)]
    tl = views.timeline(events, now=at(99_000), running=False, limit=3)
    assert tl.total_ms == 204 and len(tl.bars) == 3 and tl.hidden == 2
    assert views.timeline([], now=at(0), running=True).bars == []


def test_event_rows_name_completions_by_their_task_and_expand_payloads():
    rows = views.event_rows(history_of_fan_out_with_child_and_timer())
    by_type = {}
    for r in rows:
        by_type.setdefault(r["type"], []).append(r)
    assert [r["type"] for r in rows][:3] == ["OrchestratorStarted", "ExecutionStarted", "TaskScheduled"]
    done = by_type["TaskCompleted"][0]
    assert (done["name"], done["id"], done["offset"]) == ("double", 0, "100")
    assert done["summary"] == "after 100 ms: 2" and ("Result", "2") in done["payloads"]
    failed = by_type["TaskFailed"][0]
    assert failed["state"] == "failed" and failed["name"] == "double" and "ValueError: boom" in failed["summary"]
    assert any(k == "Details" and "Traceback" in v for k, v in failed["payloads"])
    assert by_type["TimerFired"][0]["name"] == "timer" and by_type["TimerFired"][0]["id"] == 2
    assert by_type["SubOrchestrationInstanceCreated"][0]["summary"] == "instance p:3"
    assert by_type["ExecutionStarted"][0]["payloads"] == [("Input", '{\n  "n": 2\n}')]
    assert all(r["episode"] for r in by_type["OrchestratorStarted"])


def test_parent_and_children_links():
    events = history_of_fan_out_with_child_and_timer()
    assert views.parent_of(events) == {"instanceId": "grandpa", "name": "top"}
    assert views.children_of(events) == [{"instanceId": "p:3", "name": "child", "status": "Running"}]
    events.append(ev.sub_orchestration_failed(at(600), 3, "nope", None))
    assert views.children_of(events)[0]["status"] == "Failed"
    assert views.parent_of([ev.execution_started(at(0), instance_id="i", execution_id="e", name="o",
                                                 input=None)]) is None


def test_failure_shows_the_output_and_the_failed_task_stack():
    events = history_of_fan_out_with_child_and_timer()
    events.append(ev.execution_completed(at(700), 9, S.Failed, '"Orchestrator function \'parent\' failed: boom"'))
    row = InstanceRow("p", name="parent", runtime_status=S.Failed,
                      output="Orchestrator function 'parent' failed: boom")
    f = views.failure_of(row, events)
    assert f["message"] == "Orchestrator function 'parent' failed: boom"
    assert f["stack"].startswith("Traceback") and f["source"] == "double"
    assert views.failure_of(InstanceRow("p", runtime_status=S.Completed), events[:-1]) is None


def test_instance_item_duration_and_pretty_payloads():
    row = InstanceRow("i", name="o", runtime_status=S.Completed, created_time=at(0), last_updated_time=at(2500),
                      completed_time=at(1500), worker="w1")
    item = views.instance_item(row, at(9999))
    assert (item["status"], item["duration"], item["worker"]) == ("Completed", "1.5 s", "w1")
    running = InstanceRow("j", runtime_status=S.Running, created_time=at(0), last_updated_time=at(10))
    assert views.instance_item(running, at(250))["duration"] == "250 ms"
    assert views.pretty('{"a": [1, 2]}') == '{\n  "a": [\n    1,\n    2\n  ]\n}'
    assert views.pretty("not json") == "not json" and views.pretty(None) is None
    long = views.pretty('"' + "x" * 30 + '"', limit=10)
    assert long.startswith("xxxxxxxxxx\n… (20 more characters)")


def test_instance_filter_odata():
    f = InstanceFilter(statuses=parse_statuses("running failed"), name="appr", prefix="ab'c",
                       created_from=T0, created_to=None)
    q = f.odata()
    assert "CreatedTime ge datetime'2024-05-01T12:00:00.000000Z'" in q
    assert "(RuntimeStatus eq 'Failed' or RuntimeStatus eq 'Running')" in q
    assert "PartitionKey ge 'ab''c' and PartitionKey lt 'ab''d'" in q
    assert "Name ge 'appr' and Name lt 'apps'" in q
    assert "(PartitionKey lt '@' or PartitionKey ge 'A')" in q            # entities are not instances here
    assert "RuntimeStatus" not in f.without_status().odata()
    assert "PartitionKey lt '@'" not in InstanceFilter(prefix="@counter@").odata()


class FakeRequest:
    def __init__(self, headers=None, cookies=None, scheme="http", host="127.0.0.1:7071"):
        self.headers, self.cookies, self.scheme, self.host = headers or {}, cookies or {}, scheme, host


def test_csrf_guard_needs_the_cookie_token_in_the_form_and_a_same_origin():
    token = "t" * 32
    ok = FakeRequest(headers={"Origin": "http://127.0.0.1:7071"}, cookies={CSRF_COOKIE: token})
    assert Guard.csrf_problem(ok, {"csrf": token}) is None
    assert Guard.csrf_problem(FakeRequest(cookies={CSRF_COOKIE: token}), {"csrf": token}) is None   # no Origin
    assert "token" in Guard.csrf_problem(ok, {"csrf": "other" * 8})
    assert "token" in Guard.csrf_problem(ok, {})
    assert "token" in Guard.csrf_problem(FakeRequest(), {"csrf": ""})
    evil = FakeRequest(headers={"Origin": "http://evil.test"}, cookies={CSRF_COOKIE: token})
    assert "another site (http://evil.test)" in Guard.csrf_problem(evil, {"csrf": token})
    assert "opaque" in Guard.csrf_problem(FakeRequest(headers={"Origin": "null"}, cookies={CSRF_COOKIE: token}),
                                          {"csrf": token})


def test_open_bars_of_an_ended_instance_are_unfinished():
    events = [ev.execution_started(at(0), instance_id="i", execution_id="e", name="o", input=None),
              ev.task_scheduled(at(0), 0, "greet", None), ev.timer_created(at(0), 1, at(60_000)),
              ev.task_completed(at(40), 0, '"hi"'), ev.event_raised(at(1400), "Approval", "true"),
              ev.execution_completed(at(1410), 2, S.Completed, "true")]
    bars = {b.kind: b for b in views.timeline(events, now=at(99_000), running=False).bars}
    timer = bars["timer"]
    assert timer.state == "unfinished" and timer.took == "never fired" and timer.left + timer.width == 100
    assert bars["activity"].state == "completed" and bars["activity"].took == "40 ms"
    still = {b.kind: b for b in views.timeline(events[:-1], now=at(2000), running=True).bars}
    assert still["timer"].state == "open" and still["timer"].took == "running"


def test_worker_exception_details_read_as_message_and_stack():
    rpc = ('{"$type": "Microsoft.Azure.WebJobs.Script.Workers.Rpc.RpcException", "Message": "Result: Failure\\n'
           'Exception: ValueError: nope", "StackTrace": "Traceback (most recent call last):\\n  File \\"f.py\\", '
           'line 9, in explode\\nValueError: nope\\n"}')
    text = views.stack_text(rpc)
    assert text == ('Result: Failure\nException: ValueError: nope\n\nTraceback (most recent call last):\n'
                    '  File "f.py", line 9, in explode\nValueError: nope')
    assert views.stack_text('{"ErrorType": "E", "ErrorMessage": "m", "StackTrace": null}') == "m"
    assert views.stack_text("plain words") == "plain words" and views.stack_text("null") is None
    events = [ev.execution_started(at(0), instance_id="i", execution_id="e", name="o", input=None),
              ev.task_scheduled(at(0), 0, "explode", None),
              ev.task_failed(at(5), 0, "Activity function 'explode' failed:  ValueError: nope", rpc),
              ev.execution_completed(at(6), 1, S.Failed, None)]
    row = InstanceRow("i", runtime_status=S.Failed,
                      output="Orchestrator function 'o' failed: Activity function 'explode' failed:  ValueError: "
                             "nope\n " + rpc)
    f = views.failure_of(row, events)
    assert f["message"] == "Orchestrator function 'o' failed: Activity function 'explode' failed:  ValueError: nope"
    assert f["stack"] == text and f["source"] == "explode"
    details = dict(views.event_rows(events)[2]["payloads"])["Details"]
    assert details == text
