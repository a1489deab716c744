"""Durable HTTP calls: an orchestrator calls a (slow) web API with `context.call_http`, no activity needed.

The "shipping provider" API is part of this app so the sample runs offline: booking a shipment answers
202 Accepted with a Location to poll, as long-running APIs do; the Durable Functions HTTP call polls it by itself
and hands the orchestrator the final answer.
"""
import json

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)
POLLS_BEFORE_READY = 2
_polls: dict[str, int] = {}


@app.route(route="ship", methods=["POST"])
@app.durable_client_input(client_name="client")
async def ship(req: func.HttpRequest, client) -> func.HttpResponse:
    order = req.get_json()
    origin = req.url.split("/api/")[0]       # in real life: the provider's own URL, from an app setting
    instance_id = await client.start_new("ship_order", None, {"order": order, "provider": f"{origin}/api/provider"})
    return client.create_check_status_response(req, instance_id)


@app.orchestration_trigger(context_name="context")
def ship_order(context: df.DurableOrchestrationContext):
    job = context.get_input()
    response = yield context.call_http("POST", f"{job['provider']}/shipments", content=job["order"],
                                       headers={"Content-Type": "application/json"})
    if response["statusCode"] != 200:
        raise RuntimeError(f"the provider answered {response['statusCode']}: {response['content']}")
    shipment = json.loads(response["content"])
    return {"order": job["order"]["id"], "tracking": shipment["tracking"]}


# -- the provider's API (stands in for a third-party service) ----------------------------------------------

@app.route(route="provider/shipments", methods=["POST"])
def book_shipment(req: func.HttpRequest) -> func.HttpResponse:
    order = req.get_json()
    _polls[order["id"]] = 0
    return func.HttpResponse(status_code=202, headers={"Location": f"{req.url}/{order['id']}", "Retry-After": "0"})


@app.route(route="provider/shipments/{order_id}", methods=["GET"])
def shipment_status(req: func.HttpRequest) -> func.HttpResponse:
    order_id = req.route_params["order_id"]
    _polls[order_id] = _polls.get(order_id, 0) + 1
    if _polls[order_id] <= POLLS_BEFORE_READY:
        return func.HttpResponse(status_code=202, headers={"Location": req.url, "Retry-After": "0"})
    return func.HttpResponse(json.dumps({"tracking": f"TRK-{order_id}", "polls": _polls[order_id]}),
                             mimetype="application/json")
