import azure.durable_functions as df
import azure.functions as func


async def main(msg: func.QueueMessage, starter: str) -> str:
    client = df.DurableOrchestrationClient(starter)
    return await client.start_new("Greetings", None, msg.get_json())
