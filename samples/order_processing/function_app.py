"""Order processing: receive -> validate payment (flaky, retried) -> ship -> confirm. Activities in a blueprint."""
import azure.durable_functions as df
import azure.functions as func

from activities import bp

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)
app.register_functions(bp)


@app.route(route="orchestrators/{functionName}", methods=["POST", "GET"])
@app.durable_client_input(client_name="client")
async def http_start(req: func.HttpRequest, client) -> func.HttpResponse:
    body = req.get_body()
    instance_id = await client.start_new(req.route_params["functionName"], None, req.get_json() if body else None)
    return client.create_check_status_response(req, instance_id)


@app.orchestration_trigger(context_name="context")
def process_order(context: df.DurableOrchestrationContext):
    order = yield context.call_activity("receive_order", context.get_input())
    retry = df.RetryOptions(first_retry_interval_in_milliseconds=500, max_number_of_attempts=4)
    payment = yield context.call_activity_with_retry("validate_payment", retry, order)
    if not payment["valid"]:
        return {"order": order["id"], "status": "rejected"}
    shipment = yield context.call_activity("ship_items", order)
    confirmation = yield context.call_activity("send_confirmation", {"order": order, "shipment": shipment})
    return {"order": order["id"], "status": "confirmed", "tracking": shipment["tracking"],
            "payment_attempts": payment["attempt"], "confirmation": confirmation}
