"""Mixed patterns for the crash torture test; LogCall appends to DURAFUNC_TEST_CALL_LOG on every run."""
import datetime
import os
import time

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.orchestration_trigger(context_name="context")
def mixed(context: df.DurableOrchestrationContext):
    kind = context.get_input()
    me = context.instance_id
    if kind == "chain":
        for i in range(6):
            yield context.call_activity("LogCall", f"{me}:{i}")
        return 6
    if kind == "fan":
        results = yield context.task_all([context.call_activity("LogCall", f"{me}:{i}") for i in range(50)])
        return len(results)
    if kind == "timer":
        for i in range(2):
            yield context.create_timer(context.current_utc_datetime + datetime.timedelta(seconds=1))
            yield context.call_activity("LogCall", f"{me}:{i}")
        return 2
    if kind == "sub":
        results = yield context.task_all([context.call_sub_orchestrator("child", f"{me}:{i}", f"{me}-c{i}")
                                          for i in range(2)])
        return len(results)
    if kind == "event":
        value = yield context.wait_for_external_event("Go")
        yield context.call_activity("LogCall", f"{me}:0")
        return value
    raise ValueError(kind)


@app.orchestration_trigger(context_name="context")
def child(context: df.DurableOrchestrationContext):
    tag = context.get_input()
    yield context.call_activity("LogCall", f"{tag}:0")
    return tag


@app.activity_trigger(input_name="tag")
def LogCall(tag: str) -> str:
    time.sleep(0.02)
    with open(os.environ["DURAFUNC_TEST_CALL_LOG"], "a") as f:
        f.write(tag + "\n")
    return tag
