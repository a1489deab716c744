"""Control/work-item queues on Azurite: send/receive, offload of large messages, visibility, poison (§4)."""
import base64
import gzip
import json

import pytest

from durafunc.storage.messages import encode_message
from durafunc.storage.queues import MAX_INLINE_BYTES
from durafunc.storage.taskhub import TaskHub

TS = "2024-05-01T12:00:00.1234560Z"


@pytest.fixture
async def hub(connection_string, hub_name):
    h = TaskHub(connection_string, hub_name)
    await h.create_if_not_exists()
    yield h
    await h.close()


def _task_message(instance_id: str = "inst-1", input_: str | None = '"x"') -> dict:
    event = {"EventType": 4, "EventId": 0, "IsPlayed": False, "Timestamp": TS, "Name": "Act", "Version": "",
             "Input": input_, "ParentTraceContext": None, "Tags": None}
    return {"Event": event, "SequenceNumber": 0,
            "OrchestrationInstance": {"InstanceId": instance_id, "ExecutionId": "e1"},
            "OrchestrationExecutionContext": None}


async def test_send_receive_round_trip(hub):
    q = hub.work_items
    tm = _task_message()
    sent = await q.send(tm, episode=2, sender={"InstanceId": "inst-1", "ExecutionId": "e1"})
    assert sent.id and sent.pop_receipt and sent.blob_url is None and sent.dequeue_count == 0
    assert sent.data.task_message == tm and sent.data.episode == 2
    await q.send(_task_message("inst-2"))
    items = await q.receive()
    assert len(items) == 2
    first = next(i for i in items if i.data.instance_id == "inst-1")
    assert first.text.startswith('{"$type":"DurableTask.AzureStorage.MessageData"')  # raw JSON, not Base64
    assert first.data.task_message == tm and first.data.episode == 2
    assert first.dequeue_count == 1 and first.error is None and first.inserted_on is not None
    seqs = sorted(i.data.sequence_number for i in items)
    assert seqs[0] >= 1 and seqs[1] > seqs[0]  # process-wide counter
    assert await q.receive() == []  # both are invisible now
    for item in items:
        await q.delete(item)
    await q.delete(items[0])  # already gone: ignored
    assert await q.peek_count() == 0


async def test_initial_visibility_delay(hub):
    q = hub.control_queue_for("timer")
    await q.send(_task_message("timer"), visibility_timeout=30.2)
    assert await q.receive() == []
    assert await q.peek_count() == 1


async def test_large_message_is_offloaded_and_restored(hub):
    q = hub.control_queue_for("big/one")
    tm = _task_message("big/one", input_='"' + "é" * 30_000 + '"')
    url = (await q.send(tm)).blob_url
    raw = await q.client.peek_messages()
    wrapper = json.loads(raw[0].content)
    assert len(raw[0].content.encode()) < 1024
    assert wrapper["TaskMessage"] is None and "Episode" not in wrapper
    assert wrapper["ActivityId"] == "00000000-0000-0000-0000-000000000000"
    name = wrapper["CompressedBlobName"]
    assert name.startswith("big/one/message-") and name.endswith("-TaskScheduled.json.gz")
    assert len(name.split("/message-")[1].split("-")[0]) == 32  # ActivityId in "N" format
    body = gzip.decompress(await (await hub.large_messages.container.download_blob(name)).readall()).decode()
    assert len(body.encode()) > MAX_INLINE_BYTES and json.loads(body)["CompressedBlobName"] is None
    assert url == hub.large_messages.url(name)
    items = await q.receive()
    assert items[0].data.task_message == tm and items[0].data.compressed_blob_name is None


async def test_set_visibility_renews_and_abandons(hub):
    q = hub.work_items
    await q.send(_task_message())
    [item] = await q.receive(visibility_timeout=300)
    receipt = item.pop_receipt
    await q.set_visibility(item, 0)
    assert item.pop_receipt != receipt
    [again] = await q.receive()
    assert again.id == item.id and again.dequeue_count == 2
    await q.delete(again)


async def test_unparseable_message_and_poison(hub):
    q = hub.control_queues[0]
    await q.client.send_message("this is not json")
    [item] = await q.receive()
    assert item.data is None and "JSON" in item.error
    await q.move_to_poison(item, "cannot parse")
    assert await q.peek_count() == 0
    poison = hub.account.queue_service.get_queue_client(q.name + "-poison")
    [moved] = await poison.peek_messages()
    assert moved.content == "this is not json"


async def test_base64_message_from_older_hosts_is_accepted(hub):
    q = hub.control_queues[1]
    tm = _task_message()
    await q.client.send_message(base64.b64encode(encode_message(tm, sequence_number=3).encode()).decode())
    [item] = await q.receive()
    assert item.data.task_message == tm and item.data.sequence_number == 3


async def test_clear(hub):
    q = hub.work_items
    for _ in range(3):
        await q.send(_task_message())
    assert await q.peek_count() == 3
    await q.clear()
    assert await q.peek_count() == 0


async def test_send_creates_a_missing_queue(connection_string, hub_name):
    async with TaskHub(connection_string, hub_name) as hub:  # hub never created
        q = hub.control_queue_for("lazy")
        await q.send(_task_message("lazy"))
        [item] = await q.receive()
        assert item.data.instance_id == "lazy"


async def test_sent_item_can_be_handled_without_receiving(hub):
    q = hub.work_items
    sent = await q.send(_task_message(), visibility_timeout=300)  # kept invisible for a local hand-off
    assert await q.receive() == []
    await q.set_visibility(sent, 300)  # renew with the receipt send() returned
    await q.delete(sent)
    assert await q.peek_count() == 0
