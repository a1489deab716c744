"""The chaos workload (tests/chaos): every orchestration's output follows from its input alone, so the scenario
knows what each instance must end with. Activities and entity operations append one JSON line per run to the
side-effect log named by CHAOS_LOG (one O_APPEND write per line: a SIGKILL never leaves a half line in between).

Environment: CHAOS_LOG (side-effect log), CHAOS_WORKER (this host's worker id, for the log), CHAOS_MARKERS (folder
of marker files: `Flaky` fails while the marker named after its instance does not exist).
"""
import datetime
import json
import os
import time
import uuid

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


def _log(record: dict) -> None:
    record.update(pid=os.getpid(), worker=os.environ.get("CHAOS_WORKER", ""))
    line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
    fd = os.open(os.environ["CHAOS_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def _run(spec: dict, body) -> object:
    """One logged activity run: a `begin` line, the work, an `end` line (with its outcome)."""
    run = uuid.uuid4().hex
    start = time.time()
    _log({"k": "begin", "key": spec["key"], "iid": spec["iid"], "run": run, "t0": start})
    ok = False
    try:
        result = body()
        ok = True
        return result
    finally:
        _log({"k": "end", "key": spec["key"], "iid": spec["iid"], "run": run, "t0": start, "t1": time.time(),
              "ok": ok})


def _spec(context, tag: str, **extra) -> dict:
    return {"key": f"{context.instance_id}:{tag}", "iid": context.instance_id, **extra}


# -- activities -------------------------------------------------------------------------------------------------

@app.activity_trigger(input_name="spec")
def Work(spec: dict) -> int:
    def body():
        time.sleep(spec.get("sleep", 0.1))
        return spec.get("value", 1)
    return _run(spec, body)


@app.activity_trigger(input_name="spec")
def Flaky(spec: dict) -> int:
    """Fails while the marker file of its instance does not exist (the scenario creates it, then rewinds)."""
    def body():
        time.sleep(spec.get("sleep", 0.1))
        if not os.path.exists(os.path.join(os.environ["CHAOS_MARKERS"], spec["iid"])):
            raise RuntimeError(f"no marker for {spec['iid']} yet (fails by design until rewound)")
        return spec.get("value", 1)
    return _run(spec, body)


# -- orchestrations ---------------------------------------------------------------------------------------------

@app.orchestration_trigger(context_name="context")
def chain(context: df.DurableOrchestrationContext):
    total = 0
    for i, s in enumerate(context.get_input()["sleeps"]):
        total += yield context.call_activity("Work", _spec(context, f"c{i}", sleep=s, value=i + 1))
    return total


@app.orchestration_trigger(context_name="context")
def fan(context: df.DurableOrchestrationContext):
    sleeps = context.get_input()["sleeps"]
    results = yield context.task_all([context.call_activity("Work", _spec(context, f"f{i}", sleep=s, value=i + 1))
                                      for i, s in enumerate(sleeps)])
    return sum(results)


@app.orchestration_trigger(context_name="context")
def timers(context: df.DurableOrchestrationContext):
    spec = context.get_input()
    done = 0
    for i, delay in enumerate(spec["delays"]):
        yield context.create_timer(context.current_utc_datetime + datetime.timedelta(seconds=delay))
        done += yield context.call_activity("Work", _spec(context, f"t{i}", sleep=spec["sleep"], value=1))
    return done


@app.orchestration_trigger(context_name="context")
def events(context: df.DurableOrchestrationContext):
    spec = context.get_input()
    values = []
    for i, name in enumerate(spec["names"]):
        values.append((yield context.wait_for_external_event(name)))
        yield context.call_activity("Work", _spec(context, f"e{i}", sleep=spec["sleep"], value=1))
    return values


@app.orchestration_trigger(context_name="context")
def nested(context: df.DurableOrchestrationContext):
    spec = context.get_input()
    me = context.instance_id
    results = yield context.task_all([
        context.call_sub_orchestrator("mid", {"leaves": spec["leaves"], "sleep": spec["sleep"]}, f"{me}-m{i}")
        for i in range(spec["mids"])])
    return sum(results)


def _leaves(context, count: int, sleep, tag: str):
    """Fan out `count` `leaf` sub-orchestrations (explicit ids `<me>-<tag><i>`, values 1..count); their sum."""
    me = context.instance_id
    results = yield context.task_all([
        context.call_sub_orchestrator("leaf", {"sleep": sleep, "value": i + 1}, f"{me}-{tag}{i}")
        for i in range(count)])
    return sum(results)


@app.orchestration_trigger(context_name="context")
def mid(context: df.DurableOrchestrationContext):
    spec = context.get_input()
    return (yield from _leaves(context, spec["leaves"], spec["sleep"], "l"))


@app.orchestration_trigger(context_name="context")
def leaf(context: df.DurableOrchestrationContext):
    spec = context.get_input()
    return (yield context.call_activity("Work", _spec(context, "w", sleep=spec["sleep"], value=spec["value"])))


@app.orchestration_trigger(context_name="context")
def children(context: df.DurableOrchestrationContext):
    """A fan-out of `n` sub-orchestrations (explicit ids `<me>-c<i>`), each one `leaf`."""
    spec = context.get_input()
    return (yield from _leaves(context, spec["n"], spec["sleep"], "c"))


@app.orchestration_trigger(context_name="context")
def loop(context: df.DurableOrchestrationContext):
    """A counter over a few generations of continue-as-new."""
    spec = context.get_input()
    gen = spec["gen"]
    acc = spec["acc"] + (yield context.call_activity("Work", _spec(context, f"g{gen}", sleep=spec["sleep"],
                                                                   value=gen + 1)))
    if gen + 1 < spec["until"]:
        context.continue_as_new({**spec, "gen": gen + 1, "acc": acc})
        return None
    return acc


@app.orchestration_trigger(context_name="context")
def entity_user(context: df.DurableOrchestrationContext):
    """Calls and signals the Counter entity; returns the ids the calls acknowledged."""
    spec = context.get_input()
    entity = df.EntityId("Counter", spec["key"])
    acked = []
    for op in spec["ops"]:
        payload = {"id": op["id"], "amount": op["amount"]}
        if op["how"] == "call":
            acked.append((yield context.call_entity(entity, "add", payload)))
        else:
            context.signal_entity(entity, "add", payload)
    return acked


@app.orchestration_trigger(context_name="context")
def forever(context: df.DurableOrchestrationContext):
    """Waits for an event nobody sends: the scenario terminates it."""
    return (yield context.wait_for_external_event("Never"))


@app.orchestration_trigger(context_name="context")
def gate(context: df.DurableOrchestrationContext):
    """Suspended and resumed by the scenario, then let through by its 'Go' event."""
    spec = context.get_input()
    value = yield context.wait_for_external_event("Go")
    yield context.call_activity("Work", _spec(context, "g", sleep=spec["sleep"], value=1))
    return value


@app.orchestration_trigger(context_name="context")
def flaky(context: df.DurableOrchestrationContext):
    """Fails on its first attempt (Flaky has no marker yet); the scenario creates the marker and rewinds it."""
    spec = context.get_input()
    first = yield context.call_activity("Work", _spec(context, "w0", sleep=spec["sleep"], value=1))
    second = yield context.call_activity("Flaky", _spec(context, "f", sleep=spec["sleep"], value=10))
    return first + second


# -- entity ----------------------------------------------------------------------------------------------------

@app.entity_trigger(context_name="context")
def Counter(context: df.DurableEntityContext):
    """{"value": total, "ops": {op id: times applied}}: the state shows each operation's count."""
    state = context.get_state(lambda: {"value": 0, "ops": {}})
    if context.operation_name == "add":
        op = context.get_input()
        state["ops"][op["id"]] = state["ops"].get(op["id"], 0) + 1
        state["value"] += op["amount"]
        _log({"k": "entity", "entity": context.entity_key, "op": op["id"], "t0": time.time()})
        context.set_result(op["id"])
    elif context.operation_name == "get":
        context.set_result(state["value"])
    context.set_state(state)


# -- an HTTP starter through the SDK's client binding -------------------------------------------------------------

@app.route(route="start/{name}/{id}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def start(req: func.HttpRequest, client) -> func.HttpResponse:
    instance_id = await client.start_new(req.route_params["name"], req.route_params["id"], req.get_json())
    return client.create_check_status_response(req, instance_id)
