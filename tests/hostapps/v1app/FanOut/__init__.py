import azure.durable_functions as df


def orchestrator_function(context: df.DurableOrchestrationContext):
    cities = context.get_input() or ["a", "b", "c"]
    results = yield context.task_all([context.call_activity("Hello", c) for c in cities])
    return results


main = df.Orchestrator.create(orchestrator_function)
