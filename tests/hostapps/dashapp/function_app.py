"""The app of the dashboard and auth tests: waits, fan-out with sub-orchestrations, a failure, an entity, and
HTTP functions of each auth level."""
import datetime
import json

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.route(route="orchestrators/{functionName}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def http_start(req: func.HttpRequest, client) -> func.HttpResponse:
    body = req.get_body()
    instance_id = await client.start_new(req.route_params["functionName"], req.params.get("id"),
                                         json.loads(body) if body else None)
    return client.create_check_status_response(req, instance_id)


@app.route(route="status/{id}", methods=["GET"])
@app.durable_client_input(client_name="client")
async def http_status(req: func.HttpRequest, client) -> func.HttpResponse:
    """The SDK's client reading a status through the RPC base (from inside a user function)."""
    status = await client.get_status(req.route_params["id"])
    return func.HttpResponse(json.dumps({"runtimeStatus": status.runtime_status.name if status.runtime_status
                                         else None, "output": status.output}), mimetype="application/json")


@app.route(route="secret", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def secret(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("function level")


@app.route(route="adminonly", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
def adminonly(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("admin level")


@app.orchestration_trigger(context_name="context")
def approval(context: df.DurableOrchestrationContext):
    """Greets, then waits for the 'Approval' event (or a timer of `input` seconds, default 300)."""
    greeting = yield context.call_activity("greet", "reviewer")
    deadline = context.current_utc_datetime + datetime.timedelta(seconds=context.get_input() or 300)
    timer = context.create_timer(deadline)
    event = context.wait_for_external_event("Approval")
    winner = yield context.task_any([event, timer])
    if winner == event:
        timer.cancel()
        return {"greeting": greeting, "approved": event.result}
    return {"greeting": greeting, "approved": None}


@app.orchestration_trigger(context_name="context")
def parent(context: df.DurableOrchestrationContext):
    n = context.get_input() or 3
    doubled = yield context.task_all([context.call_activity("double", i) for i in range(n)])
    children = yield context.task_all([context.call_sub_orchestrator("child", i) for i in range(2)])
    return {"doubled": doubled, "children": children}


@app.orchestration_trigger(context_name="context")
def child(context: df.DurableOrchestrationContext):
    return (yield context.call_activity("double", context.get_input()))


@app.orchestration_trigger(context_name="context")
def fails(context: df.DurableOrchestrationContext):
    return (yield context.call_activity("explode", context.get_input()))


@app.orchestration_trigger(context_name="context")
def waits(context: df.DurableOrchestrationContext):
    return (yield context.wait_for_external_event("never"))


@app.activity_trigger(input_name="who")
def greet(who: str) -> str:
    return f"Hello {who}"


@app.activity_trigger(input_name="x")
def double(x: int) -> int:
    return x * 2


@app.activity_trigger(input_name="what")
def explode(what):
    raise ValueError(f"cannot handle {what!r}")


@app.entity_trigger(context_name="context")
def Counter(context: df.DurableEntityContext):
    value = context.get_state(lambda: 0)
    if context.operation_name == "add":
        value += context.get_input()
    context.set_state(value)


@app.orchestration_trigger(context_name="context")
def counting(context: df.DurableOrchestrationContext):
    context.signal_entity(df.EntityId("Counter", context.get_input()), "add", 5)
    return "signalled"
