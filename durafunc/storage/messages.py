"""Queue message bodies: DTFx `MessageData` JSON in Newtonsoft's TypeNameHandling.Objects form (§4.1/4.2)."""
from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from typing import Any

from .errors import MessageFormatError
from .schema import EVENT_CLASS, EventType

MESSAGE_DATA_TYPE = "DurableTask.AzureStorage.MessageData"
TASK_MESSAGE_TYPE = "DurableTask.Core.TaskMessage"
EVENT_TYPE_PREFIX = "DurableTask.Core.History."
EMPTY_GUID = "00000000-0000-0000-0000-000000000000"
_STRING_DICT = ("System.Collections.Generic.Dictionary`2[[System.String, System.Private.CoreLib],"
                "[System.String, System.Private.CoreLib]]")
_OBJECT_DICT = ("System.Collections.Generic.Dictionary`2[[System.String, System.Private.CoreLib],"
                "[System.Object, System.Private.CoreLib]]")

# $type of a nested object, by the member name that holds it.
_MEMBER_TYPES = {
    "OrchestrationInstance": "DurableTask.Core.OrchestrationInstance",
    "ParentInstance": "DurableTask.Core.ParentInstance",
    "FailureDetails": "DurableTask.Core.FailureDetails",
    "InnerFailure": "DurableTask.Core.FailureDetails",
    "ParentTraceContext": "DurableTask.Core.Tracing.DistributedTraceContext",
    "State": "DurableTask.Core.OrchestrationState",
    "OrchestrationExecutionContext": "DurableTask.Core.OrchestrationExecutionContext",
    "Tags": _STRING_DICT,
    "OrchestrationTags": _STRING_DICT,
    "Properties": _OBJECT_DICT,
}
_DICTIONARY_TYPES = {_STRING_DICT, _OBJECT_DICT}


@dataclass
class MessageData:
    activity_id: str | None
    task_message: dict | None
    compressed_blob_name: str | None = None
    sequence_number: int = 0
    episode: int | None = None
    sender: dict | None = None
    serializable_trace_context: str | None = None

    @property
    def event(self) -> dict:
        return self.task_message["Event"]

    @property
    def instance_id(self) -> str:
        return (self.task_message.get("OrchestrationInstance") or {}).get("InstanceId")

    @property
    def execution_id(self) -> str | None:
        return (self.task_message.get("OrchestrationInstance") or {}).get("ExecutionId")


def _typed_members(obj: dict) -> dict:
    return {k: _typed(v, _MEMBER_TYPES[k]) if k in _MEMBER_TYPES else v for k, v in obj.items() if k != "$type"}


def _typed(value: Any, type_name: str) -> Any:
    """`value` with "$type" first, and the known nested members typed too."""
    if not isinstance(value, dict):
        return value
    if type_name in _DICTIONARY_TYPES:  # dictionaries: keys are data, do not descend
        return {"$type": type_name, **{k: v for k, v in value.items() if k != "$type"}}
    return {"$type": type_name, **_typed_members(value)}


def event_type_name(event: dict) -> str:
    return EventType(event["EventType"]).name


def _typed_event(event: dict) -> dict:
    et = EventType(int(event["EventType"]))
    return {"$type": EVENT_TYPE_PREFIX + EVENT_CLASS[et], "EventType": int(et),
            **_typed_members({k: v for k, v in event.items() if k != "EventType"})}


def _dumps(obj: dict) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def encode_message(task_message: dict, *, sequence_number: int, episode: int | None = None,
                   sender: dict | None = None, activity_id: str | None = None) -> str:
    """TaskMessage dict -> MessageData JSON text (raw UTF-8 JSON, as DT.AzureStorage 2.x writes)."""
    rest = {k: v for k, v in task_message.items() if k != "Event"}
    tm = {"$type": TASK_MESSAGE_TYPE, "Event": _typed_event(task_message["Event"]), **_typed_members(rest)}
    data: dict[str, Any] = {"$type": MESSAGE_DATA_TYPE, "ActivityId": activity_id or str(uuid.uuid4()),
                            "TaskMessage": tm, "CompressedBlobName": None, "SequenceNumber": sequence_number}
    if episode is not None:
        data["Episode"] = episode
    if sender is not None:
        data["Sender"] = {k: v for k, v in sender.items() if k != "$type"}
    data["SerializableTraceContext"] = None
    return _dumps(data)


def encode_wrapper(blob_name: str) -> str:
    """The small message that points at an offloaded MessageData blob (§4.5)."""
    return _dumps({"$type": MESSAGE_DATA_TYPE, "ActivityId": EMPTY_GUID, "TaskMessage": None,
                   "CompressedBlobName": blob_name, "SequenceNumber": 0, "SerializableTraceContext": None})


def strip_types(value: Any) -> Any:
    """Remove every "$type" key, at any depth."""
    if isinstance(value, dict):
        return {k: strip_types(v) for k, v in value.items() if k != "$type"}
    if isinstance(value, list):
        return [strip_types(v) for v in value]
    return value


def _parse_json(text: str) -> Any:
    body = text.lstrip("\ufeff").strip()
    if not body.startswith("{"):
        try:
            body = base64.b64decode(body, validate=True).decode("utf-8").lstrip("\ufeff").strip()
        except (binascii.Error, UnicodeDecodeError, ValueError) as e:
            raise MessageFormatError(f"message is neither JSON nor Base64 of JSON: {text[:80]!r}") from e
    try:
        return json.loads(body)
    except ValueError as e:
        raise MessageFormatError(f"message is not valid JSON: {e}") from e


def decode_message(text: str | bytes) -> MessageData:
    """MessageData JSON (raw or Base64) -> MessageData; MessageFormatError when it is not one."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise MessageFormatError("message is not UTF-8") from e
    raw = _parse_json(text or "")
    if not isinstance(raw, dict):
        raise MessageFormatError("message JSON is not an object")
    blob = raw.get("CompressedBlobName") or None
    tm = raw.get("TaskMessage")
    if blob is None:
        if not isinstance(tm, dict) or not isinstance(tm.get("Event"), dict):
            raise MessageFormatError("message has no TaskMessage.Event")
        et = tm["Event"].get("EventType")
        if not isinstance(et, int) or isinstance(et, bool):
            raise MessageFormatError(f"message event has no integer EventType: {et!r}")
    elif not isinstance(blob, str):
        raise MessageFormatError(f"CompressedBlobName is not a string: {blob!r}")
    seq = raw.get("SequenceNumber") or 0
    episode = raw.get("Episode")
    if not isinstance(seq, int) or (episode is not None and not isinstance(episode, int)):
        raise MessageFormatError("SequenceNumber/Episode are not integers")
    sender = raw.get("Sender")
    return MessageData(activity_id=raw.get("ActivityId"), task_message=strip_types(tm) if tm is not None else None,
                       compressed_blob_name=blob, sequence_number=seq, episode=episode,
                       sender=strip_types(sender) if isinstance(sender, dict) else None,
                       serializable_trace_context=raw.get("SerializableTraceContext"))
