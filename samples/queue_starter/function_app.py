"""A queue-triggered starter: orders put on a storage queue start one orchestration each.

`POST /api/orders` puts the order on the `orders` queue with a queue output binding; the queue trigger picks it
up and starts `process_order` with the order as input and a deterministic instance id (`order-<id>`), so a
message delivered twice does not start the order twice.
"""
import json
import logging

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.route(route="orders", methods=["POST"])
@app.queue_output(arg_name="queued", queue_name="orders", connection="AzureWebJobsStorage")
def place_order(req: func.HttpRequest, queued: func.Out[str]) -> func.HttpResponse:
    order = req.get_json()
    queued.set(json.dumps(order))
    return func.HttpResponse(json.dumps({"queued": order["id"]}), status_code=202, mimetype="application/json")


@app.queue_trigger(arg_name="msg", queue_name="orders", connection="AzureWebJobsStorage")
@app.durable_client_input(client_name="client")
async def start_order(msg: func.QueueMessage, client) -> None:
    order = msg.get_json()
    instance_id = f"order-{order['id']}"
    existing = await client.get_status(instance_id)
    if existing and existing.runtime_status is not None:
        logging.info("order %s already started (%s)", order["id"], existing.runtime_status.name)
        return
    await client.start_new("process_order", instance_id, order)
    logging.info("started %s for message %s (dequeue count %d)", instance_id, msg.id, msg.dequeue_count)


@app.orchestration_trigger(context_name="context")
def process_order(context: df.DurableOrchestrationContext):
    order = context.get_input()
    reserved = yield context.call_activity("reserve_stock", order)
    return {"order": order["id"], "reserved": reserved}


@app.activity_trigger(input_name="order")
def reserve_stock(order: dict) -> str:
    return f"{order.get('quantity', 1)} x {order['item']}"
