import azure.functions as func


def main(msg: func.QueueMessage) -> None:
    raise RuntimeError(f"always fails ({msg.get_body().decode()}, attempt {msg.dequeue_count})")
