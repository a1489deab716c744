"""Storage queue bindings, as the Functions host and the Python worker do them (the listener of queue triggers
is in triggers/queue.py).

The pure part turns queue messages into what a function sees (`func.QueueMessage` built by the SDK's own
converter from the trigger metadata the host sends, or the text for a `str`/`bytes` parameter) and output values
into message bodies (the SDK's `QueueMessageOutConverter`), with the host.json `messageEncoding`; queue names are
resolved from app settings and, for outputs, binding expressions (`{queueTrigger}`, `{id}`, route parameters).
"""
from __future__ import annotations

import base64
import binascii
import json
import re
from contextlib import suppress
from datetime import datetime
from typing import Any, Mapping

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.functions import meta
from azure.functions.queue import QueueMessageInConverter, QueueMessageOutConverter

from .errors import BindingError
from .expressions import ExpressionError, expand_settings, parse, resolve
from .model import Binding

POISON_SUFFIX = "-poison"
QUEUE_NAME_RE = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$")


class QueueBindingError(BindingError):
    """A queue binding that cannot work (missing connection setting, bad queue name); str() is one line."""


class MessageDecodeError(ValueError):
    """A message that is not what `messageEncoding` says (not base64)."""


# -- pure: names ----------------------------------------------------------------------------------------------

def resolve_queue_name(raw: Any, env: Mapping[str, str], where: str,
                       binding_data: Mapping[str, Any] | None = None) -> str:
    """`queueName` with `%AppSetting%` expanded (and, for an output, its binding expressions resolved from
    `binding_data`), lower-cased and checked as the Queues extension does."""
    if not isinstance(raw, str) or not raw:
        raise QueueBindingError(f"{where}: 'queueName' is required")
    try:
        name = expand_settings(raw, env)
    except ExpressionError as e:
        raise QueueBindingError(f"{where}: {e}") from None
    if binding_data is not None:
        try:
            name = resolve(parse(name), binding_data)
        except ExpressionError as e:
            raise QueueBindingError(f"{where}: queueName '{raw}': {e}") from None
    name = name.lower()
    if not QUEUE_NAME_RE.match(name):
        raise QueueBindingError(f"{where}: invalid queue name '{name}': 3-63 lower-case letters, digits and "
                                "single hyphens, starting and ending with a letter or digit")
    return name


# -- pure: message bodies --------------------------------------------------------------------------------

def decode_body(text: str, encoding: str) -> bytes:
    """The bytes of a received message: base64-decoded (whitespace ignored, as .NET does), or the UTF-8 of the
    text for `none`. Raises MessageDecodeError when a base64 queue holds something else."""
    if encoding == "none":
        return text.encode("utf-8")
    compact = re.sub(r"\s+", "", text)
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise MessageDecodeError("the message is not valid base64 (messageEncoding is base64)") from None


def encode_body(body: bytes | str, encoding: str) -> str:
    """The text to send for a message body: base64 of its bytes, or the text itself for `none`."""
    if encoding == "none":
        if isinstance(body, (bytes, bytearray)):
            try:
                return bytes(body).decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError("a bytes queue message must be UTF-8 text when messageEncoding is none") from None
        return body
    raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    return base64.b64encode(raw).decode("ascii")


def trigger_data(body: bytes, binding: Binding | None = None) -> meta.Datum:
    """The trigger value the host sends: the body as text (`string`), or `bytes` when the binding's dataType is
    binary or the body is not UTF-8 text."""
    if binding is not None and str(binding.raw.get("dataType", "")).lower() == "binary":
        return meta.Datum(body, "bytes")
    try:
        return meta.Datum(body.decode("utf-8"), "string")
    except UnicodeDecodeError:
        return meta.Datum(body, "bytes")


def _time(value: datetime | None) -> meta.Datum | None:
    # the host sends DateTimeOffset metadata as JSON strings ("2024-05-01T10:00:00+00:00")
    return meta.Datum(json.dumps(value.isoformat()), "json") if value is not None else None


def trigger_metadata(message: Any, data: meta.Datum) -> dict[str, meta.Datum]:
    """The queue trigger's metadata (Id, DequeueCount, ExpirationTime, InsertionTime, NextVisibleTime,
    PopReceipt, QueueTrigger) for a received message (azure.storage.queue's QueueMessage or alike)."""
    md = {
        "Id": meta.Datum(message.id, "string"),
        "DequeueCount": meta.Datum(int(message.dequeue_count or 0), "int"),
        "ExpirationTime": _time(message.expires_on),
        "InsertionTime": _time(message.inserted_on),
        "NextVisibleTime": _time(message.next_visible_on),
        "PopReceipt": meta.Datum(message.pop_receipt, "string"),
        "QueueTrigger": meta.Datum(data.value if data.type == "string" else
                                   data.value.decode("utf-8", errors="replace"), "string"),
    }
    return {k: v for k, v in md.items() if v is not None}


def trigger_value(data: meta.Datum, metadata: Mapping[str, meta.Datum], pytype: Any) -> Any:
    """What the function's parameter gets, as the Python worker decides: a `str` or `bytes` annotation uses the
    generic binding (the value as sent), anything else the SDK's QueueMessageInConverter (a func.QueueMessage)."""
    if pytype in (str, bytes):
        return data.value
    return QueueMessageInConverter.decode(data, trigger_metadata=dict(metadata))


def output_messages(value: Any, pytype: Any = None) -> list[str | bytes]:
    """The message bodies an output value stands for, converted as the Python worker and the host do: `None`
    writes nothing; a parameter annotated `str`/`bytes` takes the generic binding (str or bytes only); else the
    SDK's QueueMessageOutConverter (str, bytes, func.QueueMessage, or a list of str / func.QueueMessage)."""
    if value is None:
        return []
    if pytype in (str, bytes):
        if isinstance(value, str):
            datum = meta.Datum(value, "string")
        elif isinstance(value, (bytes, bytearray)):
            datum = meta.Datum(bytes(value), "bytes")
        else:
            raise TypeError(f'unable to encode outgoing TypedData: unsupported type "generic" for Python type '
                            f'"{type(value).__name__}"')
    else:
        try:
            datum = QueueMessageOutConverter.encode(value, expected_type=pytype)
        except NotImplementedError:
            raise TypeError(f'unable to encode outgoing TypedData: unsupported type "queue" for Python type '
                            f'"{type(value).__name__}"') from None
    if datum is None or datum.value is None:
        return []
    if datum.type in ("string", "bytes"):
        return [datum.value]
    parsed = json.loads(datum.value)            # 'json': one func.QueueMessage, or a list
    items = parsed if isinstance(parsed, list) else [parsed]
    return [item["body"] if isinstance(item, dict) and "body" in item else
            item if isinstance(item, str) else json.dumps(item) for item in items]


# -- storage --------------------------------------------------------------------------------------------------

async def send_text(client, text: str) -> None:
    """Send one message (the service's default time to live); a missing queue is created and the send repeated."""
    try:
        await client.send_message(text)
    except ResourceNotFoundError:
        with suppress(ResourceExistsError):
            await client.create_queue()
        await client.send_message(text)


async def write_output(client, value: Any, pytype: Any, encoding: str) -> int:
    """Write a queue output binding's value as messages (queue created if missing); returns how many."""
    messages = output_messages(value, pytype)
    for body in messages:
        await send_text(client, encode_body(body, encoding))
    return len(messages)
