import datetime
import json
import logging
import os
import time

import azure.durable_functions as df
import azure.functions as func

from blueprint import bp

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)
app.register_functions(bp)


@app.route(route="orchestrators/{functionName}", methods=["POST", "GET"])
@app.durable_client_input(client_name="client")
async def http_start(req: func.HttpRequest, client) -> func.HttpResponse:
    body = req.get_body()
    instance_id = await client.start_new(req.route_params["functionName"], None,
                                         json.loads(body) if body else None)
    logging.info("Started orchestration with ID = '%s'.", instance_id)
    return client.create_check_status_response(req, instance_id)


@app.route(route="wait/{functionName}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def http_wait(req: func.HttpRequest, client) -> func.HttpResponse:
    body = req.get_body()
    instance_id = await client.start_new(req.route_params["functionName"], None,
                                         json.loads(body) if body else None)
    return await client.wait_for_completion_or_create_check_status_response(req, instance_id, 20000, 100)


@app.route(route="greet/{name}/{times:int?}", methods=["GET"])
def greet(req: func.HttpRequest) -> func.HttpResponse:
    name = req.route_params["name"]
    times = int(req.route_params.get("times") or 1)
    punct = req.params.get("punct", "!")
    who = req.headers.get("x-who", "nobody")
    return func.HttpResponse(json.dumps({"text": " ".join([f"{os.environ['GREETING']} {name}{punct}"] * times),
                                         "who": who}), mimetype="application/json")


@app.route(route="nothing")
def nothing(req: func.HttpRequest) -> None:
    return None


@app.route(route="boom")
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("user code exploded")


@app.orchestration_trigger(context_name="context")
def chaining(context: df.DurableOrchestrationContext):
    r1 = yield context.call_activity("hello", "Tokyo")
    r2 = yield context.call_activity("hello", "Seattle")
    r3 = yield context.call_activity("shout", "London")
    return [r1, r2, r3]


@app.orchestration_trigger(context_name="context")
def fan_out(context: df.DurableOrchestrationContext):
    n = context.get_input() or 10
    values = yield context.task_all([context.call_activity("double", i) for i in range(n)])
    return sum(values)


@app.orchestration_trigger(context_name="context")
def approval(context: df.DurableOrchestrationContext):
    deadline = context.current_utc_datetime + datetime.timedelta(seconds=context.get_input() or 30)
    timer = context.create_timer(deadline)
    event = context.wait_for_external_event("Approval")
    winner = yield context.task_any([event, timer])
    if winner == event:
        timer.cancel()
        return {"approved": event.result}
    return {"approved": None, "timedOut": True}


@app.orchestration_trigger(context_name="context")
def monitor(context: df.DurableOrchestrationContext):
    checks = 0
    while True:
        checks += 1
        done = yield context.call_activity("check", checks)
        if done:
            return checks
        yield context.create_timer(context.current_utc_datetime + datetime.timedelta(seconds=1))


@app.orchestration_trigger(context_name="context")
def forever(context: df.DurableOrchestrationContext):
    yield context.wait_for_external_event("never")


@app.activity_trigger(input_name="city")
def hello(city: str) -> str:
    return f"Hello {city}!"


@app.activity_trigger(input_name="x")
def double(x: int) -> int:
    return x * 2


@app.activity_trigger(input_name="n")
def check(n: int) -> bool:
    return n >= 3


@app.orchestration_trigger(context_name="context")
def not_json(context: df.DurableOrchestrationContext):
    return (yield context.call_activity("returns_object", None))


@app.orchestration_trigger(context_name="context")
def calls_missing(context: df.DurableOrchestrationContext):
    return (yield context.call_activity("no_such_activity", None))


@app.activity_trigger(input_name="x")
def returns_object(x):
    return object()


@app.entity_trigger(context_name="context")
def Counter(context: df.DurableEntityContext):
    value = context.get_state(lambda: 0)
    if context.operation_name == "add":
        value += context.get_input()
    elif context.operation_name == "get":
        context.set_result(value)
    context.set_state(value)


@app.orchestration_trigger(context_name="context")
def counting(context: df.DurableOrchestrationContext):
    entity = df.EntityId("Counter", context.get_input())
    context.signal_entity(entity, "add", 3)
    return (yield context.call_entity(entity, "get"))


@app.route(route="counter/{key}", methods=["POST", "GET"])
@app.durable_client_input(client_name="client")
async def counter_api(req: func.HttpRequest, client) -> func.HttpResponse:
    entity = df.EntityId("Counter", req.route_params["key"])
    if req.method == "POST":
        await client.signal_entity(entity, "add", req.get_json())
        return func.HttpResponse(status_code=202)
    state = await client.read_entity_state(entity)
    return func.HttpResponse(json.dumps({"exists": state.entity_exists, "state": state.entity_state}),
                             mimetype="application/json")


# -- call_http: orchestrators that call this app's own routes (the base URL is their input) ---------------

@app.route(route="echo", methods=["GET", "POST", "PUT", "DELETE"])
def echo(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(json.dumps({"method": req.method, "headers": dict(req.headers),
                                         "body": req.get_body().decode(), "query": dict(req.params)}),
                             mimetype="application/json", headers={"X-Echo": "yes"})


JOB_CALLS: dict[str, list] = {}


@app.route(route="jobs/{id}", methods=["GET", "POST"])
def job(req: func.HttpRequest) -> func.HttpResponse:
    """202 + Location (this URL) the first `pending` times for an id, then 200 with the calls it saw."""
    calls = JOB_CALLS.setdefault(req.route_params["id"], [])
    calls.append({"method": req.method, "key": req.headers.get("x-functions-key"), "at": time.time()})
    if len(calls) <= int(req.params.get("pending", "2")):
        headers = {"Location": req.url}
        if "retry" in req.params:
            headers["Retry-After"] = req.params["retry"]
        return func.HttpResponse(status_code=202, headers=headers)
    return func.HttpResponse(json.dumps(calls), mimetype="application/json")


def _lower(headers: dict) -> dict:
    return {k.lower(): v for k, v in headers.items()}


@app.orchestration_trigger(context_name="context")
def http_calls(context: df.DurableOrchestrationContext):
    """One call_http after the other; returns what each answered."""
    base = context.get_input()
    calls = [
        ("get", ("GET", f"{base}/api/echo?x=1&y=two"), {}),
        ("post", ("POST", f"{base}/api/echo", {"a": [1, 2]}, {"Content-Type": "application/json", "X-Custom": "yes"}),
         {}),
        ("raw", ("PUT", f"{base}/api/echo", "plain words"), {"is_raw_str": True}),
        ("missing", ("GET", f"{base}/api/no/such/route"), {}),
        ("broken", ("GET", f"{base}/api/boom"), {}),
        ("token", ("GET", f"{base}/api/echo"),
         {"token_source": df.ManagedIdentityTokenSource("https://management.core.windows.net/")}),
    ]
    out = {}
    for name, args, kwargs in calls:
        r = yield context.call_http(*args, **kwargs)
        out[name] = {"statusCode": r["statusCode"], "headers": _lower(r["headers"]), "content": r["content"]}
    return out


@app.orchestration_trigger(context_name="context")
def http_async(context: df.DurableOrchestrationContext):
    r = yield context.call_http("POST", context.get_input(), "start", {"x-functions-key": "secret"})
    after = yield context.call_activity("hello", "after")
    return {"statusCode": r["statusCode"], "calls": json.loads(r["content"]), "after": after}


@app.orchestration_trigger(context_name="context")
def http_refused(context: df.DurableOrchestrationContext):
    return (yield context.call_http("GET", context.get_input()))
