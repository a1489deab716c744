"""Sub-orchestrations: a parent runs one child after another, then several in parallel."""
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
def provision_all(context: df.DurableOrchestrationContext):
    regions = context.get_input() or ["westeurope", "eastus", "japaneast"]
    first = yield context.call_sub_orchestrator("provision_region", regions[0], f"{context.instance_id}-first")
    rest = yield context.task_all([context.call_sub_orchestrator("provision_region", r) for r in regions[1:]])
    return [first] + rest


@app.orchestration_trigger(context_name="context")
def provision_region(context: df.DurableOrchestrationContext):
    region = context.get_input()
    network = yield context.call_activity("create_resource", f"{region}/network")
    vm = yield context.call_activity("create_resource", f"{region}/vm")
    return {"region": region, "resources": [network, vm]}


@app.activity_trigger(input_name="name")
def create_resource(name: str) -> str:
    return f"created:{name}"
