"""The engine's pure logic driven with real SDK orchestrators (no storage): replay, ids, completion."""
import azure.durable_functions as df

from durable_harness import MemoryHub
from durafunc.storage.schema import EventType


def hello(name):
    return f"Hello {name}!"


def test_chain():
    def orch(ctx):
        a = yield ctx.call_activity("Hello", "Tokyo")
        b = yield ctx.call_activity("Hello", "Seattle")
        ctx.set_custom_status({"step": 2})
        return [a, b, ctx.get_input()]

    hub = MemoryHub({"chain": df.Orchestrator.create(orch)}, {"Hello": hello})
    hub.start("chain", "i1", {"x": 1})
    hub.run()
    assert hub.status("i1") == "Completed"
    assert hub.output("i1") == ["Hello Tokyo!", "Hello Seattle!", {"x": 1}]
    assert hub.rows["i1"]["CustomStatus"] == '{"step": 2}'
    h = hub.states["i1"].history
    names = [EventType(e["EventType"]).name for e in h]
    assert names == ["OrchestratorStarted", "ExecutionStarted", "TaskScheduled", "OrchestratorCompleted",
                     "OrchestratorStarted", "TaskCompleted", "TaskScheduled", "OrchestratorCompleted",
                     "OrchestratorStarted", "TaskCompleted", "ExecutionCompleted", "OrchestratorCompleted"]


def test_fan_out_fan_in():
    def orch(ctx):
        tasks = [ctx.call_activity("Hello", str(i)) for i in range(100)]
        results = yield ctx.task_all(tasks)
        return len(results)

    hub = MemoryHub({"fan": df.Orchestrator.create(orch)}, {"Hello": hello})
    hub.start("fan", "f1")
    hub.run()
    assert hub.output("f1") == 100
    ids = [e["EventId"] for e in hub.states["f1"].history if e["EventType"] == EventType.TaskScheduled]
    assert ids == list(range(100))


def test_retry_two_failures_then_success():
    calls = {"n": 0}

    def flaky(x):
        calls["n"] += 1
        if calls["n"] <= 2:
            raise ValueError(f"boom {calls['n']}")
        return "ok"

    def orch(ctx):
        r = yield ctx.call_activity_with_retry("Flaky", df.RetryOptions(1000, 3), "x")
        after = yield ctx.call_activity("Hello", "after")
        return [r, after]

    hub = MemoryHub({"r": df.Orchestrator.create(orch)}, {"Flaky": flaky, "Hello": hello})
    hub.start("r", "r1")
    hub.run()
    assert hub.status("r1") == "Completed", hub.rows["r1"]
    assert hub.output("r1") == ["ok", "Hello after!"]
    kinds = [(EventType(e["EventType"]).name, e["EventId"]) for e in hub.states["r1"].history
             if e["EventType"] in (EventType.TaskScheduled, EventType.TimerCreated)]
    assert kinds == [("TaskScheduled", 0), ("TimerCreated", 1), ("TaskScheduled", 2), ("TimerCreated", 3),
                     ("TaskScheduled", 4), ("TaskScheduled", 5)]


def test_retry_exhausted_fails_with_activity_message():
    def bad(x):
        raise ValueError("always")

    def orch(ctx):
        yield ctx.call_activity_with_retry("Bad", df.RetryOptions(500, 2), "x")

    hub = MemoryHub({"o": df.Orchestrator.create(orch)}, {"Bad": bad})
    hub.start("o", "b1")
    hub.run()
    assert hub.status("b1") == "Failed"
    assert hub.output("b1").startswith("Orchestrator function 'o' failed: Activity function 'Bad' failed:  ValueError: always")


def test_task_any_timer_timeout_and_event():
    def orch(ctx):
        import datetime as dt
        timer = ctx.create_timer(ctx.current_utc_datetime + dt.timedelta(seconds=30))
        approval = ctx.wait_for_external_event("Approval")
        winner = yield ctx.task_any([approval, timer])
        if winner == approval:
            timer.cancel()
            return "approved:" + str(approval.result)
        return "timeout"

    hub = MemoryHub({"h": df.Orchestrator.create(orch)}, {})
    hub.start("h", "t1")
    hub.run()
    assert hub.output("t1") == "timeout"

    hub2 = MemoryHub({"h": df.Orchestrator.create(orch)}, {})
    hub2.start("h", "t2")
    hub2.run(max_steps=1)
    hub2.raise_event("t2", "Approval", True)
    hub2.queue.rotate(0)
    # deliver the event before the timer
    hub2.run()
    assert hub2.output("t2") == "approved:True"


def test_external_events_in_order():
    def orch(ctx):
        a = yield ctx.wait_for_external_event("E")
        b = yield ctx.wait_for_external_event("E")
        return [a, b]

    hub = MemoryHub({"o": df.Orchestrator.create(orch)}, {})
    hub.start("o", "e1")
    hub.run()
    assert hub.status("e1") == "Running"
    hub.raise_event("e1", "E", 1)
    hub.run()
    hub.raise_event("e1", "E", 2)
    hub.run()
    assert hub.output("e1") == [1, 2]


def test_sub_orchestrations_sequential_and_parallel():
    def child(ctx):
        x = ctx.get_input()
        r = yield ctx.call_activity("Hello", x)
        return r

    def parent(ctx):
        a = yield ctx.call_sub_orchestrator("child", "A", "kid-a")
        many = yield ctx.task_all([ctx.call_sub_orchestrator("child", str(i)) for i in range(3)])
        return [a, many]

    hub = MemoryHub({"child": df.Orchestrator.create(child), "parent": df.Orchestrator.create(parent)},
                    {"Hello": hello})
    hub.start("parent", "p1")
    hub.run()
    assert hub.output("p1") == ["Hello A!", ["Hello 0!", "Hello 1!", "Hello 2!"]]
    assert hub.status("kid-a") == "Completed"
    exec_id = hub.states["p1"].execution_id
    assert hub.status(f"{exec_id}:1") == "Completed"


def test_sub_orchestration_failure_reaches_parent():
    def child(ctx):
        raise ValueError("child broke")
        yield

    def parent(ctx):
        try:
            yield ctx.call_sub_orchestrator("child", None, "kid")
        except Exception as e:
            return "caught: " + str(e)[:60]

    hub = MemoryHub({"child": df.Orchestrator.create(child), "parent": df.Orchestrator.create(parent)}, {})
    hub.start("parent", "p2")
    hub.run()
    assert hub.status("kid") == "Failed"
    assert hub.output("p2").startswith("caught: Orchestrator function 'child' failed: child broke")


def test_continue_as_new_loop():
    def orch(ctx):
        n = ctx.get_input()
        if n < 3:
            yield ctx.call_activity("Hello", str(n))
            ctx.continue_as_new(n + 1)
            return
        return n

    hub = MemoryHub({"loop": df.Orchestrator.create(orch)}, {"Hello": hello})
    hub.start("loop", "c1", 0)
    hub.run()
    assert hub.output("c1") == 3
    assert [c[1] for c in hub.activity_calls] == ["0", "1", "2"]


def test_continue_as_new_carries_over_events_not_yet_awaited():
    def counter(ctx):
        n = ctx.get_input() or 0
        yield ctx.wait_for_external_event("inc")
        if n + 1 < 3:
            ctx.continue_as_new(n + 1)
            return
        return n + 1

    hub = MemoryHub({"counter": df.Orchestrator.create(counter)}, {})
    hub.start("counter", "k1", 0)
    hub.run()
    assert hub.status("k1") == "Running"
    for i in range(3):                  # three at once: the first execution awaits one, two are carried over
        hub.raise_event("k1", "inc", i)
    hub.run()
    assert hub.status("k1") == "Completed" and hub.output("k1") == 3


def test_orchestrator_failure_and_non_generator():
    def boom(ctx):
        yield ctx.call_activity("Hello", "x")
        raise RuntimeError("boom 7")

    def plain(ctx):
        return {"plain": True}

    hub = MemoryHub({"boom": df.Orchestrator.create(boom), "plain": df.Orchestrator.create(plain)}, {"Hello": hello})
    hub.start("boom", "x1")
    hub.start("plain", "x2")
    hub.run()
    assert hub.status("x1") == "Failed"
    assert hub.output("x1") == "Orchestrator function 'boom' failed: boom 7"
    assert hub.output("x2") == {"plain": True}


def test_fail_fast_task_all_waits_for_the_rest():
    def bad(x):
        raise ValueError("nope")

    def orch(ctx):
        yield ctx.task_all([ctx.call_activity("Bad", 1), ctx.call_activity("Hello", "2")])

    hub = MemoryHub({"o": df.Orchestrator.create(orch)}, {"Bad": bad, "Hello": hello})
    hub.start("o", "ff")
    hub.run()
    assert hub.status("ff") == "Failed"
    # the Hello completion is in history before the failure was recorded
    types = [EventType(e["EventType"]).name for e in hub.states["ff"].history]
    assert types.index("ExecutionCompleted") > types.index("TaskCompleted")


def test_nondeterminism_detected():
    def v1(ctx):
        yield ctx.call_activity("Hello", "a")
        yield ctx.wait_for_external_event("go")
        return 1

    def v2(ctx):
        yield ctx.call_activity("Renamed", "a")
        yield ctx.wait_for_external_event("go")
        return 2

    hub = MemoryHub({"o": df.Orchestrator.create(v1)}, {"Hello": hello, "Renamed": hello})
    hub.start("o", "n1")
    hub.run()
    assert hub.status("n1") == "Running"
    hub.orchestrators["o"] = df.Orchestrator.create(v2)
    hub.raise_event("n1", "go", None)
    hub.run()
    assert hub.status("n1") == "Failed"
    out = hub.output("n1")
    assert "Orchestrator function 'o' failed: Non-Deterministic workflow detected" in out
    assert "'Hello'" in out and "'Renamed'" in out


def test_terminate_suspend_resume():
    def orch(ctx):
        x = yield ctx.wait_for_external_event("E")
        return x

    hub = MemoryHub({"o": df.Orchestrator.create(orch)}, {})
    hub.start("o", "s1")
    hub.run()
    from durafunc.durable import events as ev
    hub.send("s1", ev.execution_suspended(hub.now(), "pause"))
    hub.run()
    assert hub.status("s1") == "Suspended"
    hub.raise_event("s1", "E", 5)
    hub.run(max_steps=3)
    assert hub.status("s1") == "Suspended"
    hub.send("s1", ev.execution_resumed(hub.now(), "go on"))
    hub.run()
    assert hub.status("s1") == "Completed" and hub.output("s1") == 5

    hub.start("o", "s2")
    hub.run()
    hub.send("s2", ev.execution_terminated(hub.now(), "enough"))
    hub.run()
    assert hub.status("s2") == "Terminated" and hub.rows["s2"]["Output"] == "enough"


def test_rewind_reruns_failed_activity():
    state = {"fail": True}

    def flaky(x):
        if state["fail"]:
            raise ValueError("down")
        return "up"

    def orch(ctx):
        a = yield ctx.call_activity("Hello", "a")
        b = yield ctx.call_activity("Flaky", "b")
        return [a, b]

    hub = MemoryHub({"o": df.Orchestrator.create(orch)}, {"Hello": hello, "Flaky": flaky})
    hub.start("o", "w1")
    hub.run()
    assert hub.status("w1") == "Failed"
    state["fail"] = False
    from durafunc.storage.schema import format_time
    rew = {"EventType": int(EventType.ExecutionRewound), "EventId": -1, "IsPlayed": False,
           "Timestamp": format_time(hub.now()), "Reason": "fixed", "ParentExecutionId": None, "InstanceId": None,
           "ParentTraceContext": None}
    hub.send("w1", rew)
    hub.run()
    assert hub.status("w1") == "Completed", hub.rows["w1"]
    assert hub.output("w1") == ["Hello a!", "up"]
    assert [c[0] for c in hub.activity_calls] == ["Hello", "Flaky", "Flaky"]


def test_call_http_schedules_the_builtin_http_activity_with_the_request():
    """call_http is an activity task named BuiltIn::HttpActivity whose input is the DurableHttpRequest; its result,
    a DurableHttpResponse, comes back as a dict, and the ids after it stay in step."""
    def http_activity(request):
        return {"statusCode": 201, "headers": {"Location": request["uri"] + "/1"}, "content": request["content"]}

    def orch(ctx):
        r = yield ctx.call_http("POST", "https://example.org/items", {"n": 1}, {"X-Trace": "t"})
        after = yield ctx.call_activity("Hello", r["headers"]["Location"])
        return [r["statusCode"], r["content"], after]

    hub = MemoryHub({"h": df.Orchestrator.create(orch)}, {"BuiltIn::HttpActivity": http_activity, "Hello": hello})
    hub.start("h", "h1")
    hub.run()
    assert hub.status("h1") == "Completed", hub.rows["h1"]
    assert hub.output("h1") == [201, '{"n": 1}', "Hello https://example.org/items/1!"]
    name, request = hub.activity_calls[0]
    assert name == "BuiltIn::HttpActivity"
    assert {k: request[k] for k in ("method", "uri", "content", "headers")} == \
        {"method": "POST", "uri": "https://example.org/items", "content": '{"n": 1}', "headers": {"X-Trace": "t"}}
    scheduled = [(e["EventId"], e["Name"]) for e in hub.states["h1"].history
                 if e["EventType"] == EventType.TaskScheduled]
    assert scheduled == [(0, "BuiltIn::HttpActivity"), (1, "Hello")]


def test_scheduled_input_of_activities_and_call_http():
    import json
    from durafunc.durable.activities import activity_input
    from durafunc.durable.replay import CALL_ACTIVITY, CALL_HTTP, HTTP_ACTIVITY, Node, scheduled_input
    request = {"method": "GET", "uri": "http://x/y", "content": None, "headers": None}
    http = Node("activity", {"actionType": CALL_HTTP, "httpRequest": request}, name=HTTP_ACTIVITY)
    assert json.loads(scheduled_input(http)) == [request]            # DTFx's parameter array: [request object]
    assert json.loads(activity_input(scheduled_input(http))) == request
    plain = Node("activity", {"actionType": CALL_ACTIVITY, "functionName": "A", "input": '"Tokyo"'}, name="A")
    assert scheduled_input(plain) == '["\\"Tokyo\\""]' and activity_input(scheduled_input(plain)) == '"Tokyo"'
    assert activity_input('["{\\"method\\": \\"GET\\"}"]') == '{"method": "GET"}'   # a request as a string
    assert activity_input(None) is None and activity_input("[null]") is None


def test_the_incremental_host_side_replay_answers_as_a_full_one():
    """The harness keeps each instance's host-side replay between episodes (as extended sessions do) and checks
    every incremental answer against a full replay of the same history (a difference raises): tasks created
    before they are awaited (ids handed out ahead), retries with their timers, a timer raced by events (its
    cancel changes an earlier action), early events, sub-orchestrations, a loop of many steps."""
    import datetime as dt
    failures = {"n": 0}

    def sometimes(x):
        failures["n"] += 1
        if failures["n"] % 3:
            raise ValueError("not yet")
        return x

    def child(ctx):
        return (yield ctx.call_activity("Hello", ctx.get_input()))

    def orch(ctx):
        first, second = ctx.call_activity("Hello", "a"), ctx.call_activity("Hello", "b")
        out = [(yield first), (yield second)]
        opts = df.RetryOptions(first_retry_interval_in_milliseconds=1000, max_number_of_attempts=5)
        out.append((yield ctx.call_activity_with_retry("Sometimes", opts, "r")))
        for i in range(3):
            timer = ctx.create_timer(ctx.current_utc_datetime + dt.timedelta(seconds=60))
            event = ctx.wait_for_external_event("E")
            winner = yield ctx.task_any([event, timer])
            if winner == event:
                timer.cancel()
            out.append(event.result if winner == event else "timeout")
        out.append((yield ctx.call_sub_orchestrator("child", "c")))
        for i in range(12):
            out.append((yield ctx.call_activity("Hello", str(i))))
        out.append((yield ctx.wait_for_external_event("Late")))
        return len(out)

    hub = MemoryHub({"o": df.Orchestrator.create(orch), "child": df.Orchestrator.create(child)},
                    {"Hello": hello, "Sometimes": sometimes})
    hub.start("o", "inc")
    hub.raise_event("inc", "Late", "early")      # raised long before it is awaited
    hub.run(max_steps=12)
    for n in range(3):
        hub.raise_event("inc", "E", n)
        hub.run(max_steps=3)
    hub.run()
    assert hub.status("inc") == "Completed", hub.rows["inc"]
    assert hub.output("inc") == 3 + 3 + 1 + 12 + 1
    assert hub.incremental >= 15
