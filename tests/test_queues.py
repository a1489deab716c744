"""The pure parts of queue triggers and queue outputs (durafunc/functions/queues.py): no Azurite."""
from __future__ import annotations

import base64
import typing
from datetime import datetime, timezone
from types import SimpleNamespace

import azure.functions as func
import pytest

from durafunc.functions.model import Binding
from durafunc.functions.clients import MissingConnection, resolve_connection
from durafunc.functions.queues import (MessageDecodeError, QueueBindingError, decode_body, encode_body,
                                       output_messages, resolve_queue_name, trigger_data, trigger_metadata,
                                       trigger_value)
from durafunc.functions.triggers.backoff import MIN_POLL, next_delay
from durafunc.settings import DEVELOPMENT_STORAGE

T0 = datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=timezone.utc)


# -- encodings ----------------------------------------------------------------------------------------------

def test_base64_round_trip_and_none():
    assert decode_body(base64.b64encode("héllo".encode()).decode(), "base64") == "héllo".encode()
    assert decode_body("aGVs\nbG8=", "base64") == b"hello"               # whitespace ignored, as in .NET
    assert encode_body("héllo", "base64") == base64.b64encode("héllo".encode()).decode()
    assert encode_body(b"\x00\xff", "base64") == "AP8="
    assert decode_body("plain {json}", "none") == b"plain {json}"
    assert encode_body("plain", "none") == "plain" and encode_body(b"bytes", "none") == "bytes"


@pytest.mark.parametrize("text", ["not base64!", "abc", "aGVsbG8", "{\"a\": 1}"])
def test_text_that_is_not_base64_does_not_decode(text):
    with pytest.raises(MessageDecodeError, match="not valid base64"):
        decode_body(text, "base64")


def test_bytes_that_are_not_utf8_cannot_be_sent_without_encoding():
    with pytest.raises(ValueError, match="must be UTF-8 text when messageEncoding is none"):
        encode_body(b"\xff\xfe", "none")


# -- what the function sees ---------------------------------------------------------------------------------

def message(**kw):
    fields = dict(id="m-1", dequeue_count=2, expires_on=T0.replace(year=9999), inserted_on=T0,
                  next_visible_on=T0.replace(minute=5), pop_receipt="pr", content="")
    fields.update(kw)
    return SimpleNamespace(**fields)


def test_queue_message_as_the_worker_builds_it():
    data = trigger_data('{"a": 1}'.encode())
    msg = trigger_value(data, trigger_metadata(message(), data), func.QueueMessage)
    assert isinstance(msg, func.QueueMessage)
    assert (msg.id, msg.dequeue_count, msg.pop_receipt, msg.get_body(), msg.get_json()) == \
        ("m-1", 2, "pr", b'{"a": 1}', {"a": 1})
    assert msg.insertion_time == T0 and msg.time_next_visible == T0.replace(minute=5)
    assert msg.expiration_time == T0.replace(year=9999) and msg.insertion_time.tzinfo is timezone.utc


def test_no_annotation_also_gets_a_queue_message():
    data = trigger_data(b"x")
    assert isinstance(trigger_value(data, trigger_metadata(message(), data), None), func.QueueMessage)


def test_str_and_bytes_annotations_get_the_value_as_sent():
    data = trigger_data("grüße".encode())
    assert (data.type, data.value) == ("string", "grüße")
    assert trigger_value(data, {}, str) == "grüße"
    binary = trigger_data(b"\xff\x00", Binding("queueTrigger", "in", "msg"))
    assert (binary.type, binary.value) == ("bytes", b"\xff\x00")       # not UTF-8: sent as bytes
    as_binary = trigger_data(b"abc", Binding("queueTrigger", "in", "msg", {"dataType": "binary"}))
    assert trigger_value(as_binary, {}, bytes) == b"abc"


def test_metadata_names_and_types():
    data = trigger_data(b"body")
    md = trigger_metadata(message(), data)
    assert sorted(md) == ["DequeueCount", "ExpirationTime", "Id", "InsertionTime", "NextVisibleTime", "PopReceipt",
                          "QueueTrigger"]
    assert (md["DequeueCount"].type, md["DequeueCount"].value) == ("int", 2)
    assert md["InsertionTime"].type == "json" and md["InsertionTime"].value == '"2024-05-01T10:00:00.123456+00:00"'
    assert md["QueueTrigger"].value == "body"


# -- what an output value writes ----------------------------------------------------------------------------

def test_output_values_through_the_sdk_converter():
    assert output_messages(None) == []
    assert output_messages("one") == ["one"] and output_messages(b"\x00") == [b"\x00"]
    assert output_messages(["a", "b"], typing.List[str]) == ["a", "b"]
    assert output_messages(func.QueueMessage(body="qm")) == ["qm"]
    assert output_messages([func.QueueMessage(body="x"), "y"]) == ["x", "y"]
    assert output_messages("s", str) == ["s"] and output_messages(b"b", str) == [b"b"]   # generic binding


@pytest.mark.parametrize("value,pytype,kind", [
    ({"a": 1}, str, "generic"), (["a"], str, "generic"), (42, None, "queue"), (42, typing.List[str], "queue"),
])
def test_output_values_the_worker_refuses(value, pytype, kind):
    with pytest.raises(TypeError, match=f'unsupported type "{kind}" for Python type "{type(value).__name__}"'):
        output_messages(value, pytype)


def test_a_list_of_bytes_is_refused_as_by_the_sdk_converter():
    with pytest.raises(TypeError, match='unsupported type "queue" for Python type "list"'):
        output_messages([b"a"], typing.List[bytes])


# -- names, connections, back-off -----------------------------------------------------------------------------

def test_queue_names_are_expanded_lower_cased_and_checked():
    assert resolve_queue_name("%Q%-Items", {"Q": "Orders"}, "function 'f'") == "orders-items"
    with pytest.raises(QueueBindingError, match="function 'f': app setting '%Q%' is not defined"):
        resolve_queue_name("%Q%", {}, "function 'f'")
    for bad in ("ab", "a--b", "-ab", "a_b", "x" * 64):
        with pytest.raises(QueueBindingError, match=f"function 'f': invalid queue name '{bad}'"):
            resolve_queue_name(bad, {}, "function 'f'")
    with pytest.raises(QueueBindingError, match="'queueName' is required"):
        resolve_queue_name(None, {}, "function 'f'")


def test_connections_resolve_as_in_the_webjobs_sdk():
    env = {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "AzureWebJobsMine": "A=1", "Mine": "B=2",
           "other": "C=3"}
    assert resolve_connection("", env) == ("AzureWebJobsStorage", DEVELOPMENT_STORAGE)
    assert resolve_connection(None, env)[0] == "AzureWebJobsStorage"
    assert resolve_connection("Storage", env)[0] == "AzureWebJobsStorage"
    assert resolve_connection("Mine", env) == ("AzureWebJobsMine", "A=1")      # the prefixed name first
    assert resolve_connection("OTHER", env) == ("OTHER", "C=3")                 # case-insensitive
    with pytest.raises(MissingConnection) as e:
        resolve_connection("Nope", {"AzureWebJobsNope": ""})
    assert str(e.value) == ("Storage account connection string 'AzureWebJobsNope' does not exist. Make sure that "
                            "it is a defined App Setting.")


def test_back_off_doubles_with_jitter_up_to_the_maximum():
    assert next_delay(None, 2.0, rand=lambda: 0.5) == MIN_POLL
    delays, d = [], None
    for _ in range(8):
        d = next_delay(d, 2.0, rand=lambda: 0.5)
        delays.append(round(d, 3))
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0]
    assert 0.8 * 0.4 <= next_delay(0.2, 2.0, rand=lambda: 0.0) < 0.4 < next_delay(0.2, 2.0, rand=lambda: 1.0)
    assert next_delay(1.9, 2.0, rand=lambda: 1.0) == 2.0
