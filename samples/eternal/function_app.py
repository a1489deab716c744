"""Eternal orchestration: do a round of work, then continue_as_new (fresh history) until told to stop."""
import datetime

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.route(route="orchestrators/{functionName}", methods=["POST", "GET"])
@app.durable_client_input(client_name="client")
async def http_start(req: func.HttpRequest, client) -> func.HttpResponse:
    body = req.get_body()
    instance_id = await client.start_new(req.route_params["functionName"], None, req.get_json() if body else None)
    return client.create_check_status_response(req, instance_id)


@app.orchestration_trigger(context_name="context")
def cleanup_loop(context: df.DurableOrchestrationContext):
    state = context.get_input() or {}
    rounds, limit = state.get("round", 0), state.get("rounds", 3)
    if rounds >= limit:
        return {"rounds": rounds, "cleaned": state.get("cleaned", 0)}
    cleaned = yield context.call_activity("cleanup", rounds)
    yield context.create_timer(context.current_utc_datetime + datetime.timedelta(seconds=state.get("pause", 1)))
    context.continue_as_new({**state, "round": rounds + 1, "cleaned": state.get("cleaned", 0) + cleaned})


@app.activity_trigger(input_name="round")
def cleanup(round: int) -> int:
    return round + 1
