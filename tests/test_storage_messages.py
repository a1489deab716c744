"""DTFx MessageData JSON: encoding with $type, decoding raw/Base64, round trips (storage-layout.md §4.1-4.3)."""
import base64
import json

import pytest

from durafunc.storage.errors import MessageFormatError
from durafunc.storage.messages import MessageData, decode_message, encode_message, encode_wrapper

TS = "2024-05-01T12:00:00.1234560Z"


def _task_message(event: dict, instance_id: str = "abc", execution_id: str | None = "0f9e") -> dict:
    return {"Event": event, "SequenceNumber": 0,
            "OrchestrationInstance": {"InstanceId": instance_id, "ExecutionId": execution_id},
            "OrchestrationExecutionContext": None}


def _started() -> dict:
    return {"EventType": 0, "EventId": -1, "IsPlayed": False, "Timestamp": TS,
            "OrchestrationInstance": {"InstanceId": "abc", "ExecutionId": "0f9e"},
            "ParentInstance": {"Name": "parent", "Version": "", "TaskScheduleId": 3,
                               "OrchestrationInstance": {"InstanceId": "p", "ExecutionId": "pe"}},
            "Name": "Orch", "Version": "", "Input": "\"héllo\"", "Tags": {"k": "v"}, "Correlation": None,
            "ParentTraceContext": None, "ScheduledStartTime": None, "Generation": 2, "GenerateNewTrace": False}


def _failed() -> dict:
    return {"EventType": 6, "EventId": -1, "IsPlayed": False, "Timestamp": TS, "TaskScheduledId": 4,
            "Reason": "boom", "Details": "trace",
            "FailureDetails": {"ErrorType": "ValueError", "ErrorMessage": "boom", "StackTrace": None,
                               "InnerFailure": {"ErrorType": "KeyError", "ErrorMessage": "k", "StackTrace": None,
                                                "InnerFailure": None, "IsNonRetriable": False,
                                                "Properties": None},
                               "IsNonRetriable": True, "Properties": {"x": 1}}}


def test_envelope_shape_and_type_names():
    tm = _task_message(_started())
    text = encode_message(tm, sequence_number=17, episode=1, sender={"InstanceId": "abc", "ExecutionId": "0f9e"},
                          activity_id="6f1c0000-0000-0000-0000-000000000001")
    raw = json.loads(text)
    assert list(raw) == ["$type", "ActivityId", "TaskMessage", "CompressedBlobName", "SequenceNumber", "Episode",
                         "Sender", "SerializableTraceContext"]
    assert raw["$type"] == "DurableTask.AzureStorage.MessageData"
    assert raw["ActivityId"] == "6f1c0000-0000-0000-0000-000000000001"
    assert raw["SequenceNumber"] == 17 and raw["Episode"] == 1
    assert raw["Sender"] == {"InstanceId": "abc", "ExecutionId": "0f9e"}  # no $type on Sender
    task = raw["TaskMessage"]
    assert next(iter(task)) == "$type" and task["$type"] == "DurableTask.Core.TaskMessage"
    event = task["Event"]
    assert list(event)[:2] == ["$type", "EventType"]
    assert event["$type"] == "DurableTask.Core.History.ExecutionStartedEvent"
    assert event["EventType"] == 0
    assert next(iter(event["OrchestrationInstance"])) == "$type"
    assert event["OrchestrationInstance"]["$type"] == "DurableTask.Core.OrchestrationInstance"
    assert event["ParentInstance"]["$type"] == "DurableTask.Core.ParentInstance"
    assert event["ParentInstance"]["OrchestrationInstance"]["$type"] == "DurableTask.Core.OrchestrationInstance"
    assert event["Tags"]["$type"].startswith("System.Collections.Generic.Dictionary`2[[System.String")
    assert event["Tags"]["k"] == "v"
    assert task["OrchestrationInstance"]["$type"] == "DurableTask.Core.OrchestrationInstance"
    assert task["OrchestrationExecutionContext"] is None
    assert "héllo" in text  # non-ASCII written raw, as Newtonsoft does


def test_episode_and_sender_omitted_when_none():
    raw = json.loads(encode_message(_task_message(_started()), sequence_number=1))
    assert "Episode" not in raw and "Sender" not in raw
    assert raw["ActivityId"] and len(raw["ActivityId"]) == 36


def test_failure_details_typed_recursively():
    raw = json.loads(encode_message(_task_message(_failed()), sequence_number=1))
    fd = raw["TaskMessage"]["Event"]["FailureDetails"]
    assert raw["TaskMessage"]["Event"]["$type"] == "DurableTask.Core.History.TaskFailedEvent"
    assert fd["$type"] == "DurableTask.Core.FailureDetails"
    assert fd["InnerFailure"]["$type"] == "DurableTask.Core.FailureDetails"
    assert fd["Properties"]["$type"].startswith("System.Collections.Generic.Dictionary`2")


@pytest.mark.parametrize("event", [_started(), _failed(),
                                   {"EventType": 4, "EventId": 0, "IsPlayed": False, "Timestamp": TS, "Name": "A",
                                    "Version": "", "Input": None, "ParentTraceContext": None, "Tags": None}])
def test_round_trip_strips_every_type(event):
    tm = _task_message(event)
    data = decode_message(encode_message(tm, sequence_number=5, episode=3, sender={"InstanceId": "s",
                                                                                    "ExecutionId": "se"}))
    assert data.task_message == tm
    assert "$type" not in json.dumps(data.task_message)
    assert (data.sequence_number, data.episode, data.sender) == (5, 3, {"InstanceId": "s", "ExecutionId": "se"})
    assert data.compressed_blob_name is None
    assert data.instance_id == "abc" and data.execution_id == "0f9e" and data.event == event


def test_base64_body_is_accepted():
    tm = _task_message(_started(), execution_id=None)
    text = encode_message(tm, sequence_number=9)
    encoded = base64.b64encode(text.encode("utf-8")).decode()
    data = decode_message(encoded)
    assert data.task_message == tm and data.sequence_number == 9 and data.execution_id is None


def test_wrapper_decodes_to_blob_reference():
    data = decode_message(encode_wrapper("abc/message-00ff-ExecutionStarted.json.gz"))
    assert data == MessageData(activity_id="00000000-0000-0000-0000-000000000000", task_message=None,
                               compressed_blob_name="abc/message-00ff-ExecutionStarted.json.gz", sequence_number=0)


def test_dotnet_sample_with_extra_members_decodes():
    text = json.dumps({"$type": "DurableTask.AzureStorage.MessageData", "ActivityId": "a",
                       "TaskMessage": {"$type": "DurableTask.Core.TaskMessage",
                                       "Event": {"$type": "DurableTask.Core.History.TaskCompletedEvent",
                                                 "EventType": 5, "TaskScheduledId": 0, "Result": "1",
                                                 "EventId": -1, "IsPlayed": False, "Timestamp": TS},
                                       "SequenceNumber": 0,
                                       "OrchestrationInstance": {"$type": "DurableTask.Core.OrchestrationInstance",
                                                                 "InstanceId": "i", "ExecutionId": "e"},
                                       "OrchestrationExecutionContext": {
                                           "$type": "DurableTask.Core.OrchestrationExecutionContext",
                                           "OrchestrationTags": {"$type": "System.Collections.Generic.Dict"}}},
                       "CompressedBlobName": None, "SequenceNumber": 3, "Episode": 1,
                       "Sender": {"InstanceId": "i", "ExecutionId": "e"}, "SerializableTraceContext": None})
    data = decode_message(text)
    assert data.task_message["OrchestrationExecutionContext"] == {"OrchestrationTags": {}}
    assert data.event["Result"] == "1" and data.episode == 1


@pytest.mark.parametrize("garbage", ["", "not json", "{broken", "[1,2]", "!!!***",
                                     base64.b64encode(b"\xff\xfe").decode(),
                                     json.dumps({"TaskMessage": None}),
                                     json.dumps({"TaskMessage": {"Event": {"EventType": "x"}}}),
                                     json.dumps({"TaskMessage": {"Event": {"EventType": 1}}, "SequenceNumber": "a"})])
def test_garbage_raises_message_format_error(garbage):
    with pytest.raises(MessageFormatError):
        decode_message(garbage)
