"""Blob and table bindings and binding expressions (v2 model). Container, queue and table names start with the
BP / BPT app settings, so that every test run has its own."""
import hashlib
import json

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


# -- blob triggers ----------------------------------------------------------------------------------------------

@app.blob_trigger(arg_name="myblob", path="%BP%-in/{name}.txt", connection="AzureWebJobsStorage")
@app.blob_output(arg_name="$return", path="%BP%-out/{name}.json", connection="AzureWebJobsStorage")
def on_upload(myblob: func.InputStream) -> str:
    """What the function sees of a blob (func.InputStream), written next to it as JSON."""
    return json.dumps({"type": type(myblob).__name__, "name": myblob.name, "length": myblob.length,
                       "uri": myblob.uri, "content": myblob.read().decode(), "metadata": myblob.metadata})


@app.blob_trigger(arg_name="text", path="%BP%-text/{name}", connection="", data_type="STRING",
                  source="EventGrid")
@app.blob_output(arg_name="out", path="%BP%-out/text-{name}", connection="")
def on_text(text: str, out: func.Out[str]) -> None:
    out.set(f"{type(text).__name__}:{text.upper()}")


@app.blob_trigger(arg_name="data", path="%BP%-bin/{name}", connection="")
@app.blob_output(arg_name="out", path="%BP%-out/sha-{name}", connection="")
def on_bytes(data: bytes, out: func.Out[bytes]) -> None:
    out.set(f"{type(data).__name__}:{hashlib.sha256(data).hexdigest()}".encode())


@app.blob_trigger(arg_name="myblob", path="%BP%-bad/{name}", connection="")
def always_fails(myblob: func.InputStream) -> None:
    raise ValueError(f"cannot handle {myblob.name}")


# -- blob input / output through HTTP -------------------------------------------------------------------------

@app.route(route="files/{id}", methods=["GET"])
@app.blob_input(arg_name="file", path="%BP%-in/{id}.txt", connection="")
def read_file(req: func.HttpRequest, file: func.InputStream) -> func.HttpResponse:
    if file is None:
        return func.HttpResponse("no such file", status_code=404)
    return func.HttpResponse(file.read(), mimetype="text/plain")


@app.route(route="files/{id}", methods=["POST"])
@app.blob_output(arg_name="out", path="%BP%-out/{id}/{Query.kind}-{rand-guid}.bin", connection="")
def write_file(req: func.HttpRequest, out: func.Out[bytes]) -> func.HttpResponse:
    out.set(req.get_body())
    return func.HttpResponse("stored", status_code=201)


@app.route(route="unresolved", methods=["POST"])
@app.blob_output(arg_name="out", path="%BP%-out/{missing}.txt", connection="")
def unresolved(req: func.HttpRequest, out: func.Out[str]) -> func.HttpResponse:
    out.set("never written")
    return func.HttpResponse("never sent")


# -- a queue trigger with expressions from its JSON payload -----------------------------------------------------

@app.queue_trigger(arg_name="msg", queue_name="%BP%-jobs", connection="")
@app.blob_input(arg_name="template", path="%BP%-in/{template}.txt", connection="", data_type="STRING")
@app.blob_output(arg_name="out", path="%BP%-out/job-{id}.txt", connection="")
@app.queue_output(arg_name="done", queue_name="%BP%-done-{id}", connection="")
def job(msg: func.QueueMessage, template: str, out: func.Out[str], done: func.Out[str]) -> None:
    body = msg.get_json()
    out.set(template.replace("NAME", body["who"]))
    done.set(f"job {body['id']} done (dequeue {msg.dequeue_count})")


# -- tables ------------------------------------------------------------------------------------------------------

@app.route(route="rows/{pk}", methods=["POST"])
@app.table_output(arg_name="rows", table_name="%BPT%people", partition_key="{pk}", connection="")
def add_rows(req: func.HttpRequest, rows: func.Out[str]) -> func.HttpResponse:
    rows.set(req.get_body().decode())
    return func.HttpResponse("added", status_code=201)


@app.route(route="rows/{pk}/{rk}", methods=["GET"])
@app.table_input(arg_name="row", table_name="%BPT%people", partition_key="{pk}", row_key="{rk}",
                 connection="")
def get_row(req: func.HttpRequest, row) -> func.HttpResponse:
    if row is None:
        return func.HttpResponse("no such row", status_code=404)
    return func.HttpResponse(json.dumps({"type": type(row).__name__, "row": json.loads(row)}),
                             mimetype="application/json")


@app.route(route="adults/{pk}", methods=["GET"])
@app.table_input(arg_name="rows", table_name="%BPT%people", partition_key="{pk}", filter="Age ge 18", take=2,
                 connection="")
def adults(req: func.HttpRequest, rows: str) -> func.HttpResponse:
    return func.HttpResponse(rows, mimetype="application/json")


@app.route(route="missing-table", methods=["GET"])
@app.table_input(arg_name="rows", table_name="%BPT%nosuchtable", connection="")
def missing_table(req: func.HttpRequest, rows: str) -> func.HttpResponse:
    return func.HttpResponse("never runs")


@app.activity_trigger(input_name="report")
@app.blob_output(arg_name="out", path="%BP%-out/report-{data.name}-{instanceId}.json", connection="")
def save_report(report: dict, out: func.Out[str]) -> str:
    out.set(json.dumps(report))
    return "saved"


@app.orchestration_trigger(context_name="context")
def report(context: df.DurableOrchestrationContext):
    return (yield context.call_activity("save_report", context.get_input()))


@app.route(route="report", methods=["POST"])
@app.durable_client_input(client_name="client")
async def start_report(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    instance_id = await client.start_new("report", req.params.get("id"), req.get_json())
    return client.create_check_status_response(req, instance_id)


@app.blob_trigger(arg_name="myblob", path="%BP%-in/{nme}.csv", connection="")
@app.blob_output(arg_name="out", path="%BP%-out/{name}.csv", connection="")
def typo(myblob: func.InputStream, out: func.Out[str]) -> None:
    """{name} is not a parameter of this trigger path: an error at start, the function does not listen."""


@app.queue_trigger(arg_name="msg", queue_name="%BP%-echo", connection="")
@app.blob_output(arg_name="$return", path="%BP%-out/echo-{queueTrigger}.txt", connection="")
def echo(msg: str) -> str:
    return f"echo {msg}"


@app.blob_trigger(arg_name="text", path="%BP%-loose/{name}", connection="")
@app.blob_output(arg_name="out", path="%BP%-out/loose-{name}", connection="")
def str_without_data_type(text: str, out: func.Out[str]) -> None:
    """Annotated str, but no data_type="STRING": the host sends bytes (a warning at start says so)."""
    out.set(type(text).__name__)
