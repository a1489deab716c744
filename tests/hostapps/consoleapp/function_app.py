"""The console tests' app: orchestrators that log, fail in a fan-out, fail themselves; an entity with a failing
operation; a function with an output binding durafunc does not emulate (twilioSms)."""
import logging
import time

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.orchestration_trigger(context_name="context")
def chatty(context: df.DurableOrchestrationContext):
    # not guarded by `if not context.is_replaying`: durafunc hides the replayed calls
    logging.info("chatty: begins")
    a = yield context.call_activity("say", "one")
    logging.info("chatty: got %s", a)
    b = yield context.call_activity("say", "two")
    logging.info("chatty: got %s", b)
    return [a, b]


@app.activity_trigger(input_name="word")
def say(word: str) -> str:
    return word.upper()


@app.orchestration_trigger(context_name="context")
def fan_fail(context: df.DurableOrchestrationContext):
    results = yield context.task_all([context.call_activity("maybe_fail", i) for i in range(4)])
    return results


@app.activity_trigger(input_name="i")
def maybe_fail(i: int) -> int:
    if i == 1:
        raise ValueError("activity one refuses")
    time.sleep(0.3 * i)          # the others finish after the failure, each its own episode
    return i


@app.orchestration_trigger(context_name="context")
def gives_up(context: df.DurableOrchestrationContext):
    yield context.call_activity("say", "first")
    raise RuntimeError("the orchestrator gives up")


@app.entity_trigger(context_name="context")
def Counter(context: df.DurableEntityContext):
    if context.operation_name == "add":
        value = context.get_state(lambda: 0) + context.get_input()
        context.set_state(value)
        context.set_result(value)
    elif context.operation_name == "explode":
        raise ValueError("the counter cannot explode")


@app.orchestration_trigger(context_name="context")
def uses_counter(context: df.DurableOrchestrationContext):
    entity = df.EntityId("Counter", "k")
    total = yield context.call_entity(entity, "add", 2)
    try:
        yield context.call_entity(entity, "explode")
    except Exception as e:  # noqa: BLE001
        return {"total": total, "error": str(e)}
    return {"total": total}


@app.route(route="sms", methods=["POST"])
@app.generic_output_binding(arg_name="message", type="twilioSms", from_number="+15555550100",
                            account_sid_setting="TwilioAccountSid", auth_token_setting="TwilioAuthToken")
def send_sms(req: func.HttpRequest, message: func.Out[str]) -> func.HttpResponse:
    message.set("Your approval code is 1234")
    return func.HttpResponse("sent", status_code=200)


@app.route(route="starter/{name}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def starter(req: func.HttpRequest, client) -> func.HttpResponse:
    instance_id = await client.start_new(req.route_params["name"])
    return client.create_check_status_response(req, instance_id)


@app.orchestration_trigger(context_name="context")
def waits(context: df.DurableOrchestrationContext):
    value = yield context.wait_for_external_event("Go")
    return value
