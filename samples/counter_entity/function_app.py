"""A durable entity: a counter that orchestrations signal and call, and clients signal and read over HTTP."""
import json

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.entity_trigger(context_name="context")
def Counter(context: df.DurableEntityContext):
    value = context.get_state(lambda: 0)
    operation = context.operation_name
    if operation == "add":
        value += context.get_input()
    elif operation == "reset":
        value = 0
    elif operation == "get":
        context.set_result(value)
    context.set_state(value)


@app.route(route="counters/{key}", methods=["GET", "POST"])
@app.durable_client_input(client_name="client")
async def counter(req: func.HttpRequest, client) -> func.HttpResponse:
    entity = df.EntityId("Counter", req.route_params["key"])
    if req.method == "POST":
        await client.signal_entity(entity, "add", req.get_json())
        return func.HttpResponse(status_code=202)
    state = await client.read_entity_state(entity)
    return func.HttpResponse(json.dumps({"exists": state.entity_exists, "value": state.entity_state}),
                             mimetype="application/json")


@app.route(route="tally/{key}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def tally(req: func.HttpRequest, client) -> func.HttpResponse:
    instance_id = await client.start_new("tally_orchestrator", None, req.route_params["key"])
    return client.create_check_status_response(req, instance_id)


@app.orchestration_trigger(context_name="context")
def tally_orchestrator(context: df.DurableOrchestrationContext):
    entity = df.EntityId("Counter", context.get_input())
    for amount in (1, 2, 3):
        context.signal_entity(entity, "add", amount)
    return (yield context.call_entity(entity, "get"))
