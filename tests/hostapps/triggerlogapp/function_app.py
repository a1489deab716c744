"""One function per trigger kind that durafunc listens for, each logging a line of its own (the console test
checks that the host logs every run as Core Tools does, with the user's lines under the run's id)."""
import logging

import azure.functions as func

app = func.FunctionApp()
ticks = 0


@app.timer_trigger(arg_name="timer", schedule="*/1 * * * * *")
def tick(timer: func.TimerRequest) -> None:
    global ticks
    ticks += 1
    logging.info("tick %d", ticks)
    if ticks == 2:
        raise RuntimeError("the second tick fails")


@app.queue_trigger(arg_name="msg", queue_name="%TP%-work", connection="AzureWebJobsStorage")
def on_message(msg: func.QueueMessage) -> None:
    body = msg.get_body().decode()
    logging.info("message says %s", body)
    if body.startswith("fail"):
        raise ValueError(f"refusing {body} (attempt {msg.dequeue_count})")


@app.blob_trigger(arg_name="blob", path="%TP%-in/{name}", connection="AzureWebJobsStorage")
def on_blob(blob: func.InputStream) -> None:
    logging.info("blob says %s", blob.read().decode())
