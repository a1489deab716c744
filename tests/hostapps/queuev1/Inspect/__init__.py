import json

import azure.functions as func


def main(msg: func.QueueMessage, seen: func.Out[str]) -> None:
    seen.set(json.dumps({"id": msg.id, "dequeue_count": msg.dequeue_count, "body": msg.get_body().decode(),
                         "pop_receipt": msg.pop_receipt}))
