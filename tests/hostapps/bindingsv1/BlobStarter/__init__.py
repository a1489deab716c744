import logging

import azure.durable_functions as df
import azure.functions as func


async def main(myblob: func.InputStream, starter: str) -> None:
    """A blob-triggered starter: the uploaded file's lines are the orchestration's input."""
    client = df.DurableOrchestrationClient(starter)
    name = myblob.name.split("/", 1)[1]
    instance_id = await client.start_new("Lines", None, {"name": name,
                                                         "lines": myblob.read().decode().splitlines()})
    logging.info("Started orchestration with ID = '%s' for %s.", instance_id, name)
