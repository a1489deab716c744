import azure.durable_functions as df


def orchestrator_function(context: df.DurableOrchestrationContext):
    out = []
    for city in context.get_input()["cities"]:
        out.append((yield context.call_activity("Greet", city)))
    return out


main = df.Orchestrator.create(orchestrator_function)
