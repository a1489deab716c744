"""Fan-out/fan-in: process many items in parallel, then aggregate."""
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
def fan_out_fan_in(context: df.DurableOrchestrationContext):
    files = yield context.call_activity("list_files", context.get_input() or 10)
    sizes = yield context.task_all([context.call_activity("measure", f) for f in files])
    return {"files": len(files), "total_bytes": sum(sizes)}


@app.activity_trigger(input_name="count")
def list_files(count: int) -> list:
    return [f"file-{i:03d}.txt" for i in range(count)]


@app.activity_trigger(input_name="name")
def measure(name: str) -> int:
    return len(name) * 100
