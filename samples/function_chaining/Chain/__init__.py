import azure.durable_functions as df


def orchestrator_function(context: df.DurableOrchestrationContext):
    """Function chaining: each step's output is the next step's input."""
    text = context.get_input() or "durable"
    text = yield context.call_activity("SayHello", text)
    text = yield context.call_activity("SayHello", text)
    text = yield context.call_activity("SayHello", text)
    return text


main = df.Orchestrator.create(orchestrator_function)
