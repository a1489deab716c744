import azure.durable_functions as df


def orchestrator_function(context: df.DurableOrchestrationContext):
    r1 = yield context.call_activity("Hello", "Tokyo")
    r2 = yield context.call_activity("Hello", "Seattle")
    r3 = yield context.call_activity("Hello", "London")
    return [r1, r2, r3]


main = df.Orchestrator.create(orchestrator_function)
