"""QueueListener and the queue side of Listeners and BindingIO in process, against the test Azurite: concurrency, visibility renewal, retry
delay, poison rules, shutdown. The invoked "function" is a plain coroutine of the test."""
from __future__ import annotations

import asyncio
import base64
import time
import uuid
from pathlib import Path

import pytest
from azure.storage.queue.aio import QueueClient

from durafunc.functions.model import Binding, FunctionInfo, LoadedApp
from durafunc.functions.triggers import Listeners
from durafunc.functions.triggers.queue import QueueListener
from durafunc.settings import QueuesOptions


@pytest.fixture
async def queue(connection_string):
    name = "l" + uuid.uuid4().hex[:12]
    client = QueueClient.from_connection_string(connection_string, name)
    poison = QueueClient.from_connection_string(connection_string, name + "-poison")
    yield name, client, poison
    for c in (client, poison):
        try:
            await c.delete_queue()
        except Exception:  # noqa: BLE001 - never created
            pass
        await c.close()


async def put(client, *bodies: str) -> None:
    for b in bodies:
        await client.send_message(base64.b64encode(b.encode()).decode())


async def visible(client) -> int:
    return len(await client.peek_messages(max_messages=32)) if await exists(client) else 0


async def exists(client) -> bool:
    try:
        await client.get_queue_properties()
        return True
    except Exception:  # noqa: BLE001
        return False


async def until(predicate, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


def listener(queue, invoke, *, visibility: float = 30.0, **options) -> QueueListener:
    name, client, poison = queue
    return QueueListener("fn", None, name, client, poison, QueuesOptions(max_polling_interval=0.2, **options),
                         invoke, visibility=visibility)


async def test_creates_its_queue_and_runs_a_message(queue):
    seen = []

    async def invoke(fn, data, metadata):
        seen.append((fn, data.value, metadata["DequeueCount"].value))

    _, client, _ = queue
    q = listener(queue, invoke)
    q.start()
    await until(lambda: exists(client))
    await put(client, "hello")
    await until(lambda: asyncio.sleep(0, bool(seen)))
    await q.stop()
    assert seen == [("fn", "hello", 1)] and await visible(client) == 0 and q.stats["succeeded"] == 1


@pytest.mark.parametrize("batch,threshold,expected", [(2, 1, 3), (1, None, 1), (4, None, 6)])
async def test_at_most_batch_size_plus_new_batch_threshold_at_once(queue, batch, threshold, expected):
    """In each batch the first `threshold` messages run long: once the others are done, a new batch comes."""
    running, peak, done = 0, 0, []
    t = batch // 2 if threshold is None else threshold

    async def invoke(fn, data, metadata):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(float(data.value.split(":")[1]))
        running -= 1
        done.append(data.value)

    _, client, _ = queue
    await client.create_queue()
    bodies = [f"m{i}:{1.0 if i % batch < t else 0.05}" for i in range(4 * batch)]
    await put(client, *bodies)
    q = listener(queue, invoke, batch_size=batch, new_batch_threshold=threshold)
    q.start()
    await until(lambda: asyncio.sleep(0, len(done) == len(bodies)), timeout=30)
    await q.stop()
    assert peak == expected and sorted(done) == sorted(bodies)


async def test_a_long_function_keeps_its_message_hidden(queue):
    calls = []

    async def invoke(fn, data, metadata):
        calls.append(time.monotonic())
        await asyncio.sleep(4.5)

    _, client, _ = queue
    await client.create_queue()
    await put(client, "slow")
    q = listener(queue, invoke, visibility=1.5)      # renewed every second
    q.start()
    await until(lambda: asyncio.sleep(0, bool(calls)))
    for _ in range(6):                               # without renewals it would be visible after 1.5 s
        await asyncio.sleep(0.5)
        assert await visible(client) == 0
    await until(lambda: asyncio.sleep(0, q.stats["succeeded"] == 1))
    await q.stop()
    assert len(calls) == 1 and await visible(client) == 0


async def test_failure_retries_after_the_visibility_timeout_then_poison(queue):
    attempts = []

    async def invoke(fn, data, metadata):
        attempts.append((time.monotonic(), metadata["DequeueCount"].value))
        raise RuntimeError("no")

    _, client, poison = queue
    await client.create_queue()
    await put(client, "doomed")
    q = listener(queue, invoke, visibility_timeout=1.5, max_dequeue_count=3)
    q.start()
    await until(lambda: visible(poison), timeout=20)
    await q.stop()
    assert [count for _, count in attempts] == [1, 2, 3]
    assert attempts[1][0] - attempts[0][0] >= 1.0 and attempts[2][0] - attempts[1][0] >= 1.0
    assert [m.content for m in await poison.peek_messages()] == [base64.b64encode(b"doomed").decode()]
    assert await visible(client) == 0 and q.stats == {"succeeded": 0, "failed": 3, "poisoned": 1}


async def test_a_message_dequeued_too_often_goes_to_poison_without_running(queue):
    calls = []

    async def invoke(fn, data, metadata):
        calls.append(data.value)

    _, client, poison = queue
    await client.create_queue()
    await put(client, "seen-before")
    [m] = [m async for m in client.receive_messages(visibility_timeout=1)]    # dequeue 1 by someone else
    await asyncio.sleep(1.2)
    q = listener(queue, invoke, max_dequeue_count=1)                         # gets it with dequeue count 2
    q.start()
    await until(lambda: visible(poison))
    await q.stop()
    assert calls == [] and m.dequeue_count == 1 and await visible(client) == 0


async def test_stop_lets_running_invocations_finish(queue):
    finished = []

    async def invoke(fn, data, metadata):
        await asyncio.sleep(1.0)
        finished.append(data.value)

    _, client, _ = queue
    await client.create_queue()
    await put(client, "in-flight")
    q = listener(queue, invoke)
    q.start()
    await until(lambda: asyncio.sleep(0, bool(q.inflight)))
    await q.stop(grace=10)
    assert finished == ["in-flight"] and await visible(client) == 0


async def test_stop_past_the_grace_makes_the_message_visible_again(queue):
    async def invoke(fn, data, metadata):
        await asyncio.sleep(30)

    _, client, _ = queue
    await client.create_queue()
    await put(client, "too-slow")
    q = listener(queue, invoke)                      # hidden for 30 s while it runs
    q.start()
    await until(lambda: asyncio.sleep(0, bool(q.inflight)))
    t0 = time.monotonic()
    await q.stop(grace=0.5)
    assert time.monotonic() - t0 < 5 and not q.inflight
    assert await visible(client) == 1                # released at once, not after 30 s


async def test_bindings_write_outputs_that_a_listener_receives(connection_string):
    prefix = "b" + uuid.uuid4().hex[:10]
    env = {"AzureWebJobsStorage": connection_string, "P": prefix}
    trigger = Binding("queueTrigger", "in", "msg", {"queueName": "%P%-in", "connection": ""})
    out = Binding("queue", "out", "out", {"queueName": "%P%-in", "connection": "Storage"})

    def entry(msg):
        pass
    fn = FunctionInfo("reader", "other", trigger, [trigger], Path(__file__), entry, False, "reader")
    writer = FunctionInfo("writer", "other", out, [out], Path(__file__), entry, False, "writer")
    app = LoadedApp(root=Path(__file__).parent, model="v2", functions={"reader": fn, "writer": writer})
    got = []

    async def run(name, event):
        got.append((name, event.data.value, event.binding_data["QueueTrigger"]))

    lines = []
    listeners = Listeners.for_host(env, QueuesOptions(), echo=lines.append)
    io = listeners.io
    try:
        listeners.start(app, run)
        assert [l.function for l in listeners.active] == ["reader"] and lines == []
        await io.write(writer, out, ["one", "two"], {})
        await until(lambda: asyncio.sleep(0, len(got) == 2))
        assert sorted(got) == [("reader", "one", "one"), ("reader", "two", "two")]
        listeners.reload(LoadedApp(root=app.root, model="v2"))           # a reload without it: it stops
        assert listeners.active == []
        await io.write(writer, out, None, {})                              # None writes nothing
    finally:
        await listeners.stop()
        client = QueueClient.from_connection_string(connection_string, f"{prefix}-in")
        assert [m.content for m in await client.peek_messages()] == []
        await client.delete_queue()
        await client.close()
        await listeners.close()
