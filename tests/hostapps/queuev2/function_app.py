"""Queue triggers and queue output bindings (v2 model). Queue names start with the QP app setting, so that
every test run has queues of its own."""
import json
import logging
import time
import typing

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.queue_trigger(arg_name="msg", queue_name="%QP%-start", connection="")
@app.durable_client_input(client_name="client")
@app.queue_output(arg_name="started", queue_name="%QP%-started", connection="AzureWebJobsStorage")
async def queue_start(msg: func.QueueMessage, client: df.DurableOrchestrationClient,
                      started: func.Out[str]) -> None:
    """The queue-triggered starter: the message's JSON is the orchestration's input."""
    instance_id = await client.start_new("greetings", None, msg.get_json())
    logging.info("Started orchestration with ID = '%s'.", instance_id)
    started.set(instance_id)


@app.orchestration_trigger(context_name="context")
def greetings(context: df.DurableOrchestrationContext):
    out = []
    for city in context.get_input()["cities"]:
        out.append((yield context.call_activity("greet", city)))
    return out


@app.activity_trigger(input_name="city")
@app.queue_output(arg_name="log", queue_name="%QP%-greeted", connection="")
def greet(city: str, log: func.Out[str]) -> str:
    log.set(city)                      # an output binding on an activity
    return f"Hello {city}!"


@app.queue_trigger(arg_name="msg", queue_name="%QP%-inspect", connection="")
@app.queue_output(arg_name="$return", queue_name="%QP%-inspected", connection="")
def inspect_message(msg: func.QueueMessage) -> str:
    """What the function sees of a message, as JSON on another queue."""
    return json.dumps({
        "type": type(msg).__name__, "id": msg.id, "dequeue_count": msg.dequeue_count,
        "body": msg.get_body().decode("utf-8", errors="replace"), "body_type": type(msg.get_body()).__name__,
        "pop_receipt": msg.pop_receipt,
        "insertion_time": msg.insertion_time.isoformat() if msg.insertion_time else None,
        "expiration_time": msg.expiration_time.isoformat() if msg.expiration_time else None,
        "time_next_visible": msg.time_next_visible.isoformat() if msg.time_next_visible else None,
    })


@app.queue_trigger(arg_name="text", queue_name="%QP%-text", connection="")
@app.queue_output(arg_name="out", queue_name="%QP%-text-out", connection="")
def as_text(text: str, out: func.Out[str]) -> None:
    out.set(f"{type(text).__name__}:{text}")


@app.queue_trigger(arg_name="msg", queue_name="%QP%-picky", connection="")
@app.queue_output(arg_name="done", queue_name="%QP%-picky-done", connection="")
def picky(msg: func.QueueMessage, done: func.Out[str]) -> None:
    body = msg.get_body().decode()
    if body.startswith("bad"):
        raise ValueError(f"cannot handle {body} (attempt {msg.dequeue_count})")
    done.set(body)


@app.queue_trigger(arg_name="msg", queue_name="%QP%-custom", connection="QueueConn")
@app.queue_output(arg_name="done", queue_name="%QP%-custom-done", connection="QueueConn")
def custom_connection(msg: func.QueueMessage, done: func.Out[str]) -> None:
    done.set("custom:" + msg.get_body().decode())


@app.queue_trigger(arg_name="msg", queue_name="%QP%-nowhere", connection="NoSuchSetting")
def missing_connection(msg: func.QueueMessage) -> None:
    raise AssertionError("never runs: its connection setting is not defined")


@app.route(route="enqueue", methods=["POST"])
@app.queue_output(arg_name="msgs", queue_name="%QP%-fanout", connection="")
def enqueue(req: func.HttpRequest, msgs: func.Out[typing.List[str]]) -> func.HttpResponse:
    """Several messages from one HTTP call (a list), in order."""
    items = req.get_json()
    msgs.set(items)
    return func.HttpResponse(f"queued {len(items)}")


@app.route(route="enqueue_one", methods=["POST"], binding_arg_name="resp")
@app.queue_output(arg_name="$return", queue_name="%QP%-single", connection="")
def enqueue_one(req: func.HttpRequest, resp: func.Out[func.HttpResponse]) -> bytes:
    """One message (bytes) from the return value; the HTTP response from the `resp` output."""
    resp.set(func.HttpResponse("queued", status_code=201))
    return req.get_body()


@app.route(route="enqueue_bad", methods=["POST"])
@app.queue_output(arg_name="msg", queue_name="%QP%-single", connection="")
def enqueue_bad(req: func.HttpRequest, msg: func.Out[str]) -> func.HttpResponse:
    msg.set({"not": "a message"})      # the worker's generic binding takes str or bytes only
    return func.HttpResponse("never sent")


@app.queue_trigger(arg_name="msg", queue_name="%QP%-slow", connection="")
@app.queue_output(arg_name="done", queue_name="%QP%-slow-done", connection="")
def slow(msg: func.QueueMessage, done: func.Out[str]) -> None:
    logging.info("slow started")
    time.sleep(2)
    done.set(msg.get_body().decode())
