import azure.durable_functions as df


def orchestrator(context: df.DurableOrchestrationContext):
    return f"kicked {context.get_input()}"


main = df.Orchestrator.create(orchestrator)
