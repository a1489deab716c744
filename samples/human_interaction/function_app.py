"""Human interaction: ask for approval, wait for the event, escalate after a timeout."""
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
def approval_workflow(context: df.DurableOrchestrationContext):
    request = context.get_input() or {}
    yield context.call_activity("request_approval", request)
    deadline = context.current_utc_datetime + datetime.timedelta(seconds=request.get("timeout", 60))
    timeout = context.create_timer(deadline)
    approval = context.wait_for_external_event("Approval")
    winner = yield context.task_any([approval, timeout])
    if winner == approval:
        timeout.cancel()
        decision = approval.result
        return (yield context.call_activity("process_decision", decision))
    return (yield context.call_activity("escalate", request))


@app.activity_trigger(input_name="request")
def request_approval(request: dict) -> str:
    return f"approval requested for {request.get('item', 'something')}"


@app.activity_trigger(input_name="decision")
def process_decision(decision) -> str:
    return f"decision: {decision}"


@app.activity_trigger(input_name="request")
def escalate(request: dict) -> str:
    return f"escalated: {request.get('item', 'something')}"
