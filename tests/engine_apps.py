"""Orchestrators and activities used by the engine tests (in process and in subprocesses)."""
from __future__ import annotations

import datetime as dt
import os

import azure.durable_functions as df

from durafunc.durable.worker import FunctionTable

FLAKY_COUNTS: dict[str, int] = {}


def hello(name):
    return f"Hello {name}!"


def double(x):
    return x * 2


def flaky(key):
    FLAKY_COUNTS[key] = FLAKY_COUNTS.get(key, 0) + 1
    if FLAKY_COUNTS[key] <= 2:
        raise ValueError(f"attempt {FLAKY_COUNTS[key]} failed")
    return f"ok after {FLAKY_COUNTS[key]}"


def fails(x):
    raise ValueError(f"bad input {x}")


def slow(x):
    import time
    time.sleep(float(os.environ.get("DURAFUNC_TEST_SLOW", "0.05")))
    return x


def log_call(x):
    """Appends to a file named by DURAFUNC_TEST_CALL_LOG: proves how often activities ran."""
    path = os.environ.get("DURAFUNC_TEST_CALL_LOG")
    if path:
        with open(path, "a") as f:
            f.write(f"{x}\n")
    return x


def chain(ctx):
    a = yield ctx.call_activity("Hello", "Tokyo")
    b = yield ctx.call_activity("Hello", "Seattle")
    c = yield ctx.call_activity("Hello", "London")
    ctx.set_custom_status({"done": 3})
    return [a, b, c]


def fan(ctx):
    n = ctx.get_input() or 100
    results = yield ctx.task_all([ctx.call_activity("Double", i) for i in range(n)])
    return sum(results)


def logged_fan(ctx):
    n = ctx.get_input()
    results = yield ctx.task_all([ctx.call_activity("LogCall", f"{ctx.instance_id}:{i}") for i in range(n)])
    return len(results)


def logged_chain(ctx):
    n = ctx.get_input()
    out = []
    for i in range(n):
        out.append((yield ctx.call_activity("LogCall", f"{ctx.instance_id}:{i}")))
    return len(out)


def approval(ctx):
    timeout = ctx.get_input() or 1
    timer = ctx.create_timer(ctx.current_utc_datetime + dt.timedelta(seconds=timeout))
    event = ctx.wait_for_external_event("Approval")
    winner = yield ctx.task_any([event, timer])
    if winner == event:
        timer.cancel()
        return f"approved: {event.result}"
    return "timed out"


def events_in_order(ctx):
    got = []
    for _ in range(3):
        got.append((yield ctx.wait_for_external_event("Step")))
    return got


def retry(ctx):
    r = yield ctx.call_activity_with_retry("Flaky", df.RetryOptions(100, 3), ctx.instance_id)
    return r


def child(ctx):
    return (yield ctx.call_activity("Hello", ctx.get_input()))


def parent(ctx):
    first = yield ctx.call_sub_orchestrator("Child", "one", f"{ctx.instance_id}-child")
    rest = yield ctx.task_all([ctx.call_sub_orchestrator("Child", str(i)) for i in range(3)])
    return [first, rest]


def eternal(ctx):
    n = ctx.get_input()
    if n >= 3:
        return n
    yield ctx.call_activity("Hello", str(n))
    ctx.continue_as_new(n + 1)


def activity_fails(ctx):
    yield ctx.call_activity("Fails", 7)


def orchestrator_fails(ctx):
    yield ctx.call_activity("Hello", "x")
    raise RuntimeError("orchestrator broke")


def waits(ctx):
    return (yield ctx.wait_for_external_event("Go"))


def rewindable(ctx):
    a = yield ctx.call_activity("Hello", "a")
    b = yield ctx.call_activity("Toggle", "b")
    return [a, b]


TOGGLE = {"fail": True}


def toggle(x):
    if TOGGLE["fail"]:
        raise ValueError("toggle is off")
    return f"toggled {x}"


def mixed(ctx):
    """chain + fan-out + timer + sub-orchestration + event, for crash tests."""
    kind = ctx.get_input()
    if kind == "chain":
        out = []
        for i in range(5):
            out.append((yield ctx.call_activity("LogCall", f"{ctx.instance_id}:{i}")))
        return len(out)
    if kind == "fan":
        results = yield ctx.task_all([ctx.call_activity("LogCall", f"{ctx.instance_id}:{i}") for i in range(50)])
        return len(results)
    if kind == "timer":
        yield ctx.create_timer(ctx.current_utc_datetime + dt.timedelta(seconds=1))
        yield ctx.call_activity("LogCall", f"{ctx.instance_id}:0")
        return 1
    if kind == "sub":
        r = yield ctx.call_sub_orchestrator("Child", "sub", f"{ctx.instance_id}-c")
        return 1 if r == "Hello sub!" else 0
    if kind == "event":
        v = yield ctx.wait_for_external_event("Go")
        return v
    return None


def deterministic(ctx):
    first = [ctx.new_uuid(), ctx.current_utc_datetime.isoformat(), ctx.is_replaying]
    ctx.set_custom_status(first[:2])
    yield ctx.call_activity("Hello", "a")
    yield ctx.call_activity("Hello", "b")
    return first + [ctx.is_replaying]


def counter(ctx):
    value = ctx.get_state(lambda: 0)
    op = ctx.operation_name
    if op == "add":
        value += ctx.get_input()
    elif op == "get":
        ctx.set_result(value)
    elif op == "fail":
        raise ValueError("counter cannot fail")
    ctx.set_state(value)


def uses_counter(ctx):
    key = ctx.get_input()
    entity = df.EntityId("Counter", key)
    ctx.signal_entity(entity, "add", 5)
    ctx.signal_entity(entity, "add", 2)
    value = yield ctx.call_entity(entity, "get")
    try:
        yield ctx.call_entity(entity, "fail")
    except Exception as e:  # noqa: BLE001
        return [value, str(e)]
    return [value, None]


ORCHESTRATORS = {
    "UsesCounter": uses_counter,
    "Deterministic": deterministic,
    "Chain": chain, "Fan": fan, "LoggedFan": logged_fan, "LoggedChain": logged_chain, "Approval": approval,
    "EventsInOrder": events_in_order, "Retry": retry, "Child": child, "Parent": parent, "Eternal": eternal,
    "ActivityFails": activity_fails, "OrchestratorFails": orchestrator_fails, "Waits": waits,
    "Rewindable": rewindable, "Mixed": mixed,
}
ACTIVITIES = {"Hello": hello, "Double": double, "Flaky": flaky, "Fails": fails, "Slow": slow, "LogCall": log_call,
              "Toggle": toggle}


def function_table() -> FunctionTable:
    return FunctionTable({k: df.Orchestrator.create(v) for k, v in ORCHESTRATORS.items()}, ACTIVITIES,
                         {"Counter": df.Entity.create(counter)})
