import azure.durable_functions as df


def orchestrator_function(context: df.DurableOrchestrationContext):
    decision = yield context.wait_for_external_event("Approval")
    return {"decision": decision}


main = df.Orchestrator.create(orchestrator_function)
