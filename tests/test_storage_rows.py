"""Pure table-row helpers: event <-> row conversion, size limits, batching, OData literals (§2.2-2.6)."""
from datetime import datetime, timezone

from azure.data.tables import EdmType

from durafunc.storage.account import DEVELOPMENT_STORAGE, expand_connection_string
from durafunc.storage.history import MAX_EVENTS_PER_BATCH, _batches
from durafunc.storage.rows import (LARGE_PROPERTY_BYTES, event_to_row, is_large, odata_literal,
                                   offload_large_properties, row_to_event, time_text)

TS = "2024-05-01T12:00:00.1234560Z"


def test_event_to_row_columns():
    event = {"EventType": 1, "EventId": 7, "IsPlayed": True, "Timestamp": TS, "OrchestrationStatus": 3,
             "Result": None, "FailureDetails": None}
    row = event_to_row(event, "pk", "0000000000000007", "exec")
    assert row == {"PartitionKey": "pk", "RowKey": "0000000000000007", "ExecutionId": "exec",
                   "EventType": "ExecutionCompleted", "EventId": 7, "IsPlayed": True,
                   "_Timestamp": (TS, EdmType.DATETIME), "OrchestrationStatus": "Failed", "FailureDetails": "null"}
    back = row_to_event({**row, "_Timestamp": datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)})
    assert back == event


def test_times_are_normalised_to_seven_digits():
    row = event_to_row({"EventType": 11, "EventId": -1, "IsPlayed": False, "Timestamp": "2024-05-01T12:00:00Z",
                        "TimerId": 1, "FireAt": "2024-05-01T14:00:00.5+02:00"}, "pk", "0", "e")
    assert row["_Timestamp"] == ("2024-05-01T12:00:00.0000000Z", EdmType.DATETIME)
    assert row["FireAt"] == ("2024-05-01T12:00:00.5000000Z", EdmType.DATETIME)
    assert time_text(datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)) == "2024-01-02T03:04:05.0000000Z"


def test_large_threshold_is_utf16_bytes():
    limit_chars = LARGE_PROPERTY_BYTES // 2
    assert not is_large("x" * limit_chars)
    assert is_large("x" * (limit_chars + 1))
    assert is_large("😀" * (limit_chars // 2 + 1))  # surrogate pairs: 4 bytes each
    assert not is_large(None) and not is_large(12)


def test_offload_names_and_columns():
    row = event_to_row({"EventType": 5, "EventId": -1, "IsPlayed": False, "Timestamp": TS, "TaskScheduledId": 0,
                        "Result": "r" * 40_000}, "a^0b", "000000000000000C", "e")
    [(name, text)] = offload_large_properties(row)
    assert text == "r" * 40_000 and row["Result"] == "" and row["ResultBlobName"] == name
    prefix = "a^0b/history-000000000000000C-TaskCompleted-"
    assert name.startswith(prefix) and name.endswith("-Result.json.gz")
    rand = name[len(prefix):-len("-Result.json.gz")]
    assert len(rand) == 8 and int(rand, 16) >= 0 and rand.upper() == rand


def test_batches_split_at_99_events_and_3mb():
    small = [{"Input": "x"} for _ in range(250)]
    assert [len(b) for b in _batches(small)] == [MAX_EVENTS_PER_BATCH, MAX_EVENTS_PER_BATCH, 52]
    big = [{"Input": "x" * 30_000} for _ in range(80)]  # ~61 KB each by DTFx's estimate
    sizes = [len(b) for b in _batches(big)]
    assert sum(sizes) == 80 and len(sizes) == 2
    assert _batches([]) == [[]]


def test_odata_literal():
    assert odata_literal("it's") == "'it''s'"
    assert odata_literal(datetime(2024, 5, 1, tzinfo=timezone.utc)) == "datetime'2024-05-01T00:00:00.000000Z'"


def test_development_storage_expands():
    assert expand_connection_string("UseDevelopmentStorage=true") == DEVELOPMENT_STORAGE
    proxied = expand_connection_string("UseDevelopmentStorage=true;DevelopmentStorageProxyUri=http://10.0.0.5")
    assert "BlobEndpoint=http://10.0.0.5:10000/devstoreaccount1" in proxied
    assert expand_connection_string("AccountName=x;AccountKey=y") == "AccountName=x;AccountKey=y"
