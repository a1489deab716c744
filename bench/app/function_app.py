"""The benchmark workloads as an ordinary v2 Durable Functions app (trivial activity bodies)."""
import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.route(route="start/{name}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def start(req: func.HttpRequest, client) -> func.HttpResponse:
    body = req.get_body()
    instance_id = await client.start_new(req.route_params["name"], None, req.get_json() if body else None)
    return client.create_check_status_response(req, instance_id)


@app.orchestration_trigger(context_name="context")
def sequential(context: df.DurableOrchestrationContext):
    n = context.get_input()
    for i in range(n):
        yield context.call_activity("noop", i)
    return n


@app.orchestration_trigger(context_name="context")
def fanout(context: df.DurableOrchestrationContext):
    n = context.get_input()
    results = yield context.task_all([context.call_activity("noop", i) for i in range(n)])
    return sum(results)


@app.orchestration_trigger(context_name="context")
def single(context: df.DurableOrchestrationContext):
    return (yield context.call_activity("noop", 1))


@app.orchestration_trigger(context_name="context")
def events(context: df.DurableOrchestrationContext):
    n = context.get_input()
    for _ in range(n):
        yield context.wait_for_external_event("tick")
    return n


@app.activity_trigger(input_name="x")
def noop(x):
    return x


CITIES = ["Tokyo", "Seattle", "London", "Cairo", "Lima"]


@app.orchestration_trigger(context_name="context")
def hello_cities(context: df.DurableOrchestrationContext):
    """Netherite's HelloCities5: five activities in sequence."""
    out = []
    for city in CITIES:
        out.append((yield context.call_activity("hello", city)))
    return out


@app.activity_trigger(input_name="city")
def hello(city: str) -> str:
    return f"Hello {city}!"


@app.orchestration_trigger(context_name="context")
def wait_one(context: df.DurableOrchestrationContext):
    """Waits for one event (the bench raises it once every instance waits)."""
    return (yield context.wait_for_external_event("go"))
