import azure.durable_functions as df
import azure.functions as func


async def main(mytimer: func.TimerRequest, starter: str) -> None:
    """A timer-triggered starter, a common way to kick off a monitor: the durable client binding works here too."""
    client = df.DurableOrchestrationClient(starter)
    await client.start_new("Kicked", "kicked-on-startup", "by the timer")
