"""The History table on Azurite: exact round trips, sentinel ETags, large properties, executions, purge (§2)."""
import gzip

import pytest

from durafunc.storage.errors import SplitBrainError
from durafunc.storage.names import escape_key
from durafunc.storage.schema import EventType
from durafunc.storage.taskhub import TaskHub

TS = "2024-05-01T12:00:00.1234560Z"
FIRE = "2024-05-01T12:05:00.0000000Z"


@pytest.fixture
async def hub(connection_string, hub_name):
    h = TaskHub(connection_string, hub_name)
    await h.create_if_not_exists()
    yield h
    await h.close()


def _e(event_type: EventType, event_id: int = -1, **members) -> dict:
    return {"EventType": int(event_type), "EventId": event_id, "IsPlayed": False, "Timestamp": TS, **members}


FAILURE = {"ErrorType": "ValueError", "ErrorMessage": "bad", "StackTrace": "at x", "InnerFailure": None,
           "IsNonRetriable": False, "Properties": None}
TRACE = {"TraceParent": "00-abc-def-01", "TraceState": None, "Id": "x", "SpanId": "def", "ActivityStartTime": None}


def every_event_type() -> list[dict]:
    ET = EventType
    return [
        _e(ET.OrchestratorStarted),
        _e(ET.ExecutionStarted, OrchestrationInstance={"InstanceId": "i/1", "ExecutionId": "e1"},
           ParentInstance={"Name": "P", "OrchestrationInstance": {"InstanceId": "p", "ExecutionId": "pe"},
                           "TaskScheduleId": 2, "Version": ""},
           Name="Orch", Version="", Input='{"a": [1, 2]}', Tags={"k": "v"}, Correlation=None,
           ParentTraceContext=None, ScheduledStartTime="2024-05-01T13:00:00.0000000Z", Generation=1,
           GenerateNewTrace=False),
        _e(ET.TaskScheduled, 0, Name="Act", Version="", Input=None, ParentTraceContext=TRACE, Tags=None),
        _e(ET.TimerCreated, 1, FireAt=FIRE),
        _e(ET.SubOrchestrationInstanceCreated, 2, Name="Sub", Version="", InstanceId="sub-1", Input='"x"',
           ClientSpanId=None, Tags=None),
        _e(ET.EventSent, 3, InstanceId="other", Name="ping", Input='"hi"'),
        _e(ET.OrchestratorCompleted),
        _e(ET.TaskCompleted, TaskScheduledId=0, Result='"done"'),
        _e(ET.TaskFailed, TaskScheduledId=0, Reason="bad", Details="trace", FailureDetails=FAILURE),
        _e(ET.TimerFired, TimerId=1, FireAt=FIRE),
        _e(ET.SubOrchestrationInstanceCompleted, TaskScheduledId=2, Result="42"),
        _e(ET.SubOrchestrationInstanceFailed, TaskScheduledId=2, Reason="r", Details=None, FailureDetails=None),
        _e(ET.EventRaised, Name="approval", Input="true", ParentTraceContext=None),
        _e(ET.ExecutionSuspended, Reason="pause"),
        _e(ET.ExecutionResumed, Reason=None),
        _e(ET.GenericEvent, Data="hello"),
        _e(ET.HistoryState, State={"Name": "Orch", "OrchestrationStatus": 0}),
        _e(ET.ExecutionRewound, Reason="rewind", ParentExecutionId=None, InstanceId="i/1", ParentTraceContext=None),
        _e(ET.ExecutionTerminated, Input='"stop"'),
        _e(ET.ExecutionCompleted, 4, OrchestrationStatus=1, Result='"ok"', FailureDetails=None),
        _e(ET.ContinueAsNew, 5, OrchestrationStatus=2, Result='"again"', FailureDetails=None),
    ]


async def test_every_event_type_round_trips_exactly(hub):
    events = every_event_type()
    assert {e["EventType"] for e in events} == {int(t) for t in EventType} - {int(EventType.ExecutionFailed)}
    etag = await hub.history.append("i/1", "e1", events, 0, None)
    snap = await hub.history.load("i/1")
    assert snap.events == events
    assert snap.execution_id == "e1" and snap.etag == etag
    assert snap.last_checkpoint_time is not None
    assert [e["EventType"] for e in snap.events] == [e["EventType"] for e in events]


async def test_table_columns_follow_dtfx(hub):
    events = every_event_type()
    await hub.history.append("i/1", "e1", events, 0, None)
    rows = await hub.history.load_all_executions_raw("i/1")
    assert [r["RowKey"] for r in rows] == [f"{i:016X}" for i in range(len(events))] + ["sentinel"]
    assert all(r["PartitionKey"] == "i^01" and r["ExecutionId"] == "e1" for r in rows)
    started = rows[1]
    assert started["EventType"] == "ExecutionStarted"
    assert started["OrchestrationInstance"] == '{"InstanceId":"i/1","ExecutionId":"e1"}'
    assert started["Tags"] == '{"k":"v"}' and started["ParentTraceContext"] == "null"
    assert "Correlation" not in started  # a null string is an absent property
    assert "Timestamp" not in started and started["_Timestamp"].year == 2024
    assert rows[2]["Tags"] == "null" and "Input" not in rows[2]
    completed = rows[-3]
    assert completed["EventType"] == "ExecutionCompleted" and completed["OrchestrationStatus"] == "Completed"
    sentinel = rows[-1]
    assert sentinel["IsCheckpointComplete"] is True and "CheckpointCompletedTimestamp" in sentinel


async def test_stale_etag_is_split_brain(hub):
    first = [_e(EventType.OrchestratorStarted)]
    etag = await hub.history.append("inst", "e1", first, 0, None)
    with pytest.raises(SplitBrainError):  # a second "first writer": the sentinel already exists
        await hub.history.append("inst", "e1", first, 0, None)
    etag2 = await hub.history.append("inst", "e1", [_e(EventType.OrchestratorCompleted)], 1, etag)
    assert etag2 != etag
    with pytest.raises(SplitBrainError):  # the other worker still holds the old ETag
        await hub.history.append("inst", "e1", [_e(EventType.OrchestratorCompleted)], 1, etag)
    snap = await hub.history.load("inst")
    assert len(snap.events) == 2 and snap.etag == etag2


async def test_megabyte_result_goes_through_a_blob(hub):
    big = '"' + "x€" * 500_000 + '"'
    events = [_e(EventType.OrchestratorStarted), _e(EventType.TaskCompleted, TaskScheduledId=0, Result=big)]
    await hub.history.append("big/1", "e1", events, 0, None)
    raw = (await hub.history.load_all_executions_raw("big/1"))[1]
    assert raw["Result"] == ""
    name = raw["ResultBlobName"]
    assert name.startswith(escape_key("big/1") + "/history-0000000000000001-TaskCompleted-")
    assert name.endswith("-Result.json.gz")
    blob = await (await hub.large_messages.container.download_blob(name)).readall()
    assert gzip.decompress(blob).decode("utf-8") == big
    snap = await hub.history.load("big/1")
    assert snap.events == events


async def test_large_failure_details_round_trip(hub):
    details = dict(FAILURE, StackTrace="s" * 40_000)
    events = [_e(EventType.TaskFailed, TaskScheduledId=0, Reason="r", Details="d" * 31_000, FailureDetails=details)]
    await hub.history.append("fd", "e1", events, 0, None)
    raw = (await hub.history.load_all_executions_raw("fd"))[0]
    assert raw["FailureDetailsBlobName"] and raw["DetailsBlobName"] and raw["Reason"] == "r"
    assert (await hub.history.load("fd")).events == events


async def test_many_events_span_several_transactions(hub):
    events = [_e(EventType.EventRaised, Name=f"e{i}", Input=str(i), ParentTraceContext=None) for i in range(250)]
    etag = await hub.history.append("many", "e1", events, 0, None)
    snap = await hub.history.load("many")
    assert snap.events == events and snap.etag == etag
    more = [_e(EventType.OrchestratorStarted)]
    await hub.history.append("many", "e1", more, 250, etag)
    assert (await hub.history.load("many")).events == events + more


async def test_new_execution_hides_stale_rows(hub):
    old = [_e(EventType.OrchestratorStarted) for _ in range(5)]
    etag = await hub.history.append("can", "e1", old, 0, None)
    new = [_e(EventType.OrchestratorStarted), _e(EventType.GenericEvent, Data="second")]
    etag = await hub.history.append("can", "e2", new, 0, etag)
    snap = await hub.history.load("can")
    assert snap.execution_id == "e2" and snap.events == new and snap.etag == etag
    assert (await hub.history.load("can", "e2")).events == new
    other = await hub.history.load("can", "e1")
    assert other.events == [] and other.execution_id == "e2" and other.etag is None
    assert len(await hub.history.load_all_executions_raw("can")) == 6  # 5 rows + sentinel


async def test_unknown_instance_is_empty(hub):
    snap = await hub.history.load("nobody")
    assert snap.events == [] and snap.etag is None and snap.execution_id is None


async def test_non_final_batch_leaves_checkpoint_incomplete(hub):
    await hub.history.append("nf", "e1", [_e(EventType.OrchestratorStarted)], 0, None, final=False)
    sentinel = (await hub.history.load_all_executions_raw("nf"))[-1]
    assert sentinel["IsCheckpointComplete"] is False and "CheckpointCompletedTimestamp" not in sentinel


async def test_delete_instance_removes_every_row(hub):
    events = [_e(EventType.GenericEvent, Data=str(i)) for i in range(130)]
    await hub.history.append("del'me", "e1", events, 0, None)
    await hub.history.append("keep", "e1", events[:2], 0, None)
    assert await hub.history.delete_instance("del'me") == 131
    assert await hub.history.load_all_executions_raw("del'me") == []
    assert len((await hub.history.load("keep")).events) == 2
    assert await hub.history.delete_instance("del'me") == 0


async def test_rows_known_to_be_new_are_inserted_and_a_wrong_guess_is_a_conflict(hub):
    # a first execution of 5 rows, then a second one of 3 written over rows 0..2 (stale rows 3..4 remain)
    old = [_e(EventType.GenericEvent, Data=f"old{i}") for i in range(5)]
    etag = await hub.history.append("kr", "e1", old, 0, None, known_rows=0)
    assert (await hub.history.load("kr")).row_count == 5
    new = [_e(EventType.GenericEvent, Data=f"new{i}") for i in range(3)]
    etag = await hub.history.append("kr", "e2", new, 0, etag, known_rows=5)    # upserts rows 0..2
    more = [_e(EventType.GenericEvent, Data=f"more{i}") for i in range(4)]
    etag = await hub.history.append("kr", "e2", more, 3, etag, known_rows=5)   # upserts 3..4, inserts 5..6
    snap = await hub.history.load("kr")
    assert [e["Data"] for e in snap.events] == ["new0", "new1", "new2", "more0", "more1", "more2", "more3"]
    assert snap.etag == etag and snap.row_count == 7
    # a caller that wrongly believes rows 0.. do not exist: the insert conflicts and nothing is written
    with pytest.raises(SplitBrainError):
        await hub.history.append("kr", "e3", [_e(EventType.GenericEvent, Data="x")], 0, etag, known_rows=0)
    after = await hub.history.load("kr")
    assert after.events == snap.events and after.etag == etag
    # filtered by execution, the partition is not read whole: the row count is unknown
    assert (await hub.history.load("kr", "e2")).row_count is None


async def test_a_retried_commit_that_had_landed_is_told_apart_from_another_writer(hub):
    """A batch retried after a connection failure conflicts with its own first attempt when that one was applied:
    the error says the checkpoint is committed (its outbound messages must stand). Another writer's checkpoint at
    the same rows is not ours."""
    etag = await hub.history.append("amb", "e1", [_e(EventType.OrchestratorStarted)], 0, None)
    mine = [_e(EventType.TaskCompleted, TaskScheduledId=0, Result="1"),
            {**_e(EventType.OrchestratorCompleted), "Timestamp": "2024-05-01T12:00:01.0000010Z"}]
    await hub.history.append("amb", "e1", mine, 1, etag)                  # the first attempt, applied
    with pytest.raises(SplitBrainError) as again:                          # its retry: the same rows, the old ETag
        await hub.history.append("amb", "e1", mine, 1, etag)
    assert again.value.committed is True
    theirs = [_e(EventType.TaskCompleted, TaskScheduledId=0, Result="1"),
              {**_e(EventType.OrchestratorCompleted), "Timestamp": "2024-05-01T12:00:02.0000020Z"}]
    with pytest.raises(SplitBrainError) as other:
        await hub.history.append("amb", "e1", theirs, 1, etag)
    assert other.value.committed is False
    with pytest.raises(SplitBrainError) as first:                          # a second first writer of the sentinel
        await hub.history.append("amb2", "e1", [_e(EventType.OrchestratorStarted)], 0, None)
        await hub.history.append("amb2", "e1", [{**_e(EventType.OrchestratorStarted),
                                                 "Timestamp": "2024-05-01T12:00:03.0000000Z"}], 0, None)
    assert first.value.committed is False


async def test_task_record_tells_what_the_history_says_about_one_task(hub):
    """One query: the task's scheduling rows with their timestamps, whether it is answered, whether the execution
    ended, and the instance's current execution (the sentinel's)."""
    from durafunc.storage.schema import parse_time
    sched = {**_e(EventType.TaskScheduled, 1, Name="A", Version="", Input="[1]"),
             "Timestamp": "2024-05-01T12:00:00.7654321Z"}
    first = [_e(EventType.OrchestratorStarted), _e(EventType.ExecutionStarted, Name="O", Input="null"),
             _e(EventType.TaskScheduled, 0, Name="A", Version="", Input="[0]"), sched,
             _e(EventType.TimerCreated, 2, FireAt=FIRE), _e(EventType.OrchestratorCompleted)]
    etag = await hub.history.append("rec", "e1", first, 0, None)
    r = await hub.history.task_record("rec", "e1", 1)
    assert r.current_execution == "e1" and not r.answered and not r.ended
    assert r.scheduled == [("TaskScheduled", parse_time("2024-05-01T12:00:00.765432Z"))]
    assert (await hub.history.task_record("rec", "e1", 2)).scheduled[0][0] == "TimerCreated"
    assert (await hub.history.task_record("rec", "e1", 7)).scheduled == []
    done = [_e(EventType.OrchestratorStarted), _e(EventType.TaskCompleted, TaskScheduledId=1, Result="1"),
            _e(EventType.ExecutionCompleted, OrchestrationStatus=1, Result="1", FailureDetails=None),
            _e(EventType.OrchestratorCompleted)]
    await hub.history.append("rec", "e1", done, len(first), etag)
    r = await hub.history.task_record("rec", "e1", 1)
    assert r.answered and r.ended
    r = await hub.history.task_record("rec", "e1", 0)
    assert not r.answered and r.ended and r.scheduled
    other = await hub.history.task_record("rec", "e0", 1)        # rows of another execution are not counted
    assert other.current_execution == "e1" and other.scheduled == [] and not other.ended
    none = await hub.history.task_record("nothing-here", "e1", 1)
    assert none.current_execution is None and none.scheduled == [] and not none.answered
