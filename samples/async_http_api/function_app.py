"""Async HTTP API: start a long job, answer 202 with status URLs, let the client poll."""
import datetime

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.route(route="jobs", methods=["POST"])
@app.durable_client_input(client_name="client")
async def submit_job(req: func.HttpRequest, client) -> func.HttpResponse:
    instance_id = await client.start_new("long_job", None, req.get_json())
    return client.create_check_status_response(req, instance_id)


@app.route(route="jobs/{instance_id}", methods=["GET"])
@app.durable_client_input(client_name="client")
async def job_status(req: func.HttpRequest, client) -> func.HttpResponse:
    status = await client.get_status(req.route_params["instance_id"])
    if not status:
        return func.HttpResponse('{"error": "no such job"}', status_code=404, mimetype="application/json")
    import json
    return func.HttpResponse(json.dumps({"status": status.runtime_status.name, "progress": status.custom_status,
                                         "result": status.output}), mimetype="application/json")


@app.orchestration_trigger(context_name="context")
def long_job(context: df.DurableOrchestrationContext):
    job = context.get_input() or {}
    steps = job.get("steps", 3)
    done = []
    for i in range(steps):
        done.append((yield context.call_activity("work", {"step": i, "name": job.get("name", "job")})))
        context.set_custom_status({"completed": i + 1, "of": steps})
        yield context.create_timer(context.current_utc_datetime + datetime.timedelta(milliseconds=200))
    return done


@app.activity_trigger(input_name="task")
def work(task: dict) -> str:
    return f"{task['name']}:step{task['step']}"
