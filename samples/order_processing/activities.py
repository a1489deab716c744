"""The order workflow's activities (a blueprint). validate_payment fails its first attempts on purpose, as a
flaky payment provider would: the orchestrator's retry policy absorbs that."""
import json
import os
import tempfile

import azure.durable_functions as df

bp = df.Blueprint()


def _attempts_file(order_id: str) -> str:
    return os.path.join(tempfile.gettempdir(), f"durafunc-order-{order_id}.attempts")


@bp.activity_trigger(input_name="order")
def receive_order(order: dict) -> dict:
    order = dict(order or {})
    order.setdefault("id", "order-1")
    order.setdefault("items", ["book"])
    order["total"] = round(9.99 * len(order["items"]), 2)
    return order


@bp.activity_trigger(input_name="order")
def validate_payment(order: dict) -> dict:
    path = _attempts_file(order["id"])
    attempt = 1
    if os.path.exists(path):
        with open(path) as f:
            attempt = json.load(f) + 1
    with open(path, "w") as f:
        json.dump(attempt, f)
    if attempt <= order.get("payment_failures", 2):
        raise ConnectionError(f"payment provider timed out (attempt {attempt})")
    return {"valid": order["total"] < 1000, "attempt": attempt}


@bp.activity_trigger(input_name="order")
def ship_items(order: dict) -> dict:
    return {"tracking": f"TRK-{order['id']}", "items": len(order["items"])}


@bp.activity_trigger(input_name="details")
def send_confirmation(details: dict) -> str:
    return f"Order {details['order']['id']} ships as {details['shipment']['tracking']}"
