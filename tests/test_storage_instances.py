"""The Instances table on Azurite: insert/replace with ETags, merge, large values, queries, delete (§3)."""
from datetime import datetime, timedelta, timezone

import pytest

from durafunc.storage.instances import InstanceRow
from durafunc.storage.messages import encode_message
from durafunc.storage.schema import OrchestrationStatus as S
from durafunc.storage.taskhub import TaskHub

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)


@pytest.fixture
async def hub(connection_string, hub_name):
    h = TaskHub(connection_string, hub_name)
    await h.create_if_not_exists()
    yield h
    await h.close()


def _row(instance_id: str, status: S = S.Pending, created: datetime = T0, **kw) -> InstanceRow:
    fields = dict(name="Orch", version="", input='"in"', runtime_status=status, created_time=created,
                  last_updated_time=created, execution_id="e" * 32)
    return InstanceRow(instance_id=instance_id, **{**fields, **kw})


async def test_insert_get_and_conflicts(hub):
    row = _row("a/b#1", tags={"team": "x"}, scheduled_start_time=T0 + timedelta(minutes=5), generation=1)
    assert await hub.instances.insert(row)
    assert row.etag
    got = await hub.instances.get("a/b#1")
    assert got == row
    assert isinstance(got.runtime_status, S) and got.created_time == T0
    assert not await hub.instances.insert(_row("a/b#1"))  # exists: Insert conflicts
    stale = _row("a/b#1", etag=row.etag)
    assert await hub.instances.insert(stale)  # replace If-Match
    assert not await hub.instances.insert(_row("a/b#1", etag=row.etag))  # that ETag is stale now
    raw = await hub.instances.client.get_entity("a^0b^21", "")
    assert raw["TaskHubName"] == hub.hub_name and raw["RuntimeStatus"] == "Pending" and raw["Tags"] == "null"
    assert await hub.instances.get("missing") is None


async def test_merge_fields(hub):
    await hub.instances.insert(_row("m1"))
    done = T0 + timedelta(seconds=3)
    await hub.instances.merge("m1", {"RuntimeStatus": S.Completed, "Output": '"out"', "CompletedTime": done,
                                     "CustomStatus": "null", "Worker": "host-a", "Input": None})
    got = await hub.instances.get("m1")
    assert got.runtime_status == S.Completed and got.output == '"out"' and got.completed_time == done
    assert got.custom_status == "null" and got.worker == "host-a" and got.input == '"in"'
    await hub.instances.merge("new", {"RuntimeStatus": "Running", "Tags": {"a": "b"}})  # InsertOrMerge creates
    assert (await hub.instances.get("new")).tags == {"a": "b"}
    assert (await hub.instances.client.get_entity("new", ""))["TaskHubName"] == hub.hub_name
    assert not await hub.instances.merge("absent", {"RuntimeStatus": "Terminated"}, must_exist=True)
    assert await hub.instances.get("absent") is None
    assert await hub.instances.merge("m1", {"RuntimeStatus": "Terminated"}, must_exist=True)


async def test_large_values_go_to_blobs(hub):
    big_in = '"' + "i" * 40_000 + '"'
    assert await hub.instances.insert(_row("big", input=big_in))
    raw = await hub.instances.client.get_entity("big", "")
    assert raw["Input"] == "" and raw["InputBlobName"].startswith("big/history--Input-")
    big_out = '"' + "o" * 40_000 + '"'
    await hub.instances.merge("big", {"Output": big_out})
    raw = await hub.instances.client.get_entity("big", "")
    assert raw["Output"].startswith(hub.large_messages.container_url + "/big/history--Output-")
    got = await hub.instances.get("big")
    assert got.input == big_in and got.output == big_out
    assert (await hub.instances.get("big", resolve_large=False)).output == raw["Output"]


async def test_input_url_of_an_offloaded_start_message(hub):
    event = {"EventType": 0, "EventId": -1, "IsPlayed": False, "Timestamp": "2024-05-01T12:00:00.0000000Z",
             "Name": "Orch", "Version": "", "Input": '"from message"'}
    body = encode_message({"Event": event, "SequenceNumber": 0, "OrchestrationInstance":
                           {"InstanceId": "s 1", "ExecutionId": "e"}, "OrchestrationExecutionContext": None},
                          sequence_number=1)
    name = "s 1/message-0123456789abcdef0123456789abcdef-ExecutionStarted.json.gz"
    await hub.large_messages.upload(name, body)
    url = hub.large_messages.url(name)
    assert "/s%201/message-" in url
    assert await hub.instances.insert(_row("s 1", input=url))
    assert (await hub.instances.get("s 1")).input == '"from message"'


async def test_query_filters_and_pages(hub):
    rows = [_row(f"order-{i}", S.Completed if i % 2 else S.Running, T0 + timedelta(minutes=i)) for i in range(7)]
    rows += [_row("@counter@k1", S.Running), _row("other", S.Failed, T0 + timedelta(days=1))]
    for r in rows:
        assert await hub.instances.insert(r)

    def ids(result):
        return [r.instance_id for r in result[0]]
    all_rows = await hub.instances.query()
    assert ids(all_rows) == [f"order-{i}" for i in range(7)] + ["other"] and all_rows[1] is None
    assert ids(await hub.instances.query(prefix="@")) == ["@counter@k1"]
    assert ids(await hub.instances.query(statuses=[S.Running])) == ["order-0", "order-2", "order-4", "order-6"]
    assert ids(await hub.instances.query(statuses=[S.Failed, S.Completed], prefix="oth")) == ["other"]
    window = await hub.instances.query(created_from=T0 + timedelta(minutes=2), created_to=T0 + timedelta(minutes=4))
    assert ids(window) == ["order-2", "order-3", "order-4"]
    seen, token = [], None
    for _ in range(4):
        page, token = await hub.instances.query(prefix="order-", top=3, continuation=token)
        seen += [r.instance_id for r in page]
        assert len(page) <= 3
        if token is None:
            break
    assert seen == [f"order-{i}" for i in range(7)]
    with pytest.raises(ValueError, match="continuation"):
        await hub.instances.query(continuation="garbage!")


async def test_delete(hub):
    await hub.instances.insert(_row("gone"))
    assert await hub.instances.delete("gone") is True
    assert await hub.instances.get("gone") is None
    assert await hub.instances.delete("gone") is False
