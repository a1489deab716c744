from datetime import timedelta

import azure.durable_functions as df


def orchestrator_function(context: df.DurableOrchestrationContext):
    """Monitor: poll a job every `interval` seconds until it reports done (or `max_checks` is reached)."""
    job = context.get_input() or {}
    interval = job.get("interval", 1)
    checks = 0
    while checks < job.get("max_checks", 10):
        checks += 1
        status = yield context.call_activity("CheckJob", {"job": job.get("id", "job-1"), "check": checks,
                                                          "done_after": job.get("done_after", 3)})
        context.set_custom_status({"checks": checks, "status": status})
        if status == "done":
            return {"job": job.get("id", "job-1"), "checks": checks}
        yield context.create_timer(context.current_utc_datetime + timedelta(seconds=interval))
    return {"job": job.get("id", "job-1"), "checks": checks, "gave_up": True}


main = df.Orchestrator.create(orchestrator_function)
