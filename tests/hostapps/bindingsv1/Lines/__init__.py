import azure.durable_functions as df


def orchestrator(context: df.DurableOrchestrationContext):
    job = context.get_input()
    counts = yield context.task_all([context.call_activity("CountWords", line) for line in job["lines"]])
    return (yield context.call_activity("SaveReport", {"name": job["name"], "lines": len(counts),
                                                       "words": sum(counts), "counts": counts}))


main = df.Orchestrator.create(orchestrator)
