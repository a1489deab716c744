"""The durable engine against a real Azurite, with real SDK orchestrators (in process)."""
from __future__ import annotations

import asyncio
import contextlib
import json

import pytest

import engine_apps
from durafunc.durable.client import DurableClient
from durafunc.durable.engine import Engine, EngineOptions
from durafunc.storage.schema import EventType, OrchestrationStatus as S
from durafunc.storage.taskhub import TaskHub


@pytest.fixture
async def env(connection_string, hub_name):
    hub = TaskHub(connection_string, hub_name, partition_count=4)
    engine = Engine(hub, engine_apps.function_table(), EngineOptions(max_polling_interval=0.2, lease_duration=15))
    await engine.start()
    client = DurableClient(hub, engine)
    yield client
    await engine.stop(grace=2)
    await hub.delete()
    await hub.close()


async def run(client, name, input_value=None, instance_id=None, timeout=30):
    iid = await client.start_new(name, instance_id, input_value)
    row = await client.wait_for(iid, timeout)
    assert row is not None and row.runtime_status in (S.Completed, S.Failed, S.Terminated), \
        f"{name} did not finish: {row and row.runtime_status}"
    return row


@contextlib.asynccontextmanager
async def own_engine(connection_string, hub_name, functions, partitions=4):
    """An engine of its own on a fresh hub, for tests with their own functions: (hub, engine, client)."""
    hub = TaskHub(connection_string, hub_name, partitions)
    engine = Engine(hub, functions, EngineOptions(max_polling_interval=0.1, lease_duration=15))
    await engine.start()
    try:
        yield hub, engine, DurableClient(hub, engine)
    finally:
        await engine.stop(grace=2)
        await hub.delete()
        await hub.close()


def output(row):
    return json.loads(row.output) if row.runtime_status == S.Completed else row.output


async def test_chain_and_custom_status(env):
    row = await run(env, "Chain")
    assert row.runtime_status == S.Completed
    assert output(row) == ["Hello Tokyo!", "Hello Seattle!", "Hello London!"]
    assert json.loads(row.custom_status) == {"done": 3}
    history = await env.history(row.instance_id)
    kinds = [EventType(e["EventType"]).name for e in history]
    assert kinds.count("TaskScheduled") == 3 and kinds.count("TaskCompleted") == 3
    assert kinds[-2:] == ["ExecutionCompleted", "OrchestratorCompleted"]
    assert row.instance_id not in env.engine.states     # a finished instance's history leaves memory


async def test_fan_out_fan_in_100(env):
    row = await run(env, "Fan", 100)
    assert output(row) == sum(i * 2 for i in range(100))
    history = await env.history(row.instance_id)
    assert sorted(e["TaskScheduledId"] for e in history if e["EventType"] == EventType.TaskCompleted) == list(range(100))


async def test_task_any_timer_timeout_and_approval(env):
    row = await run(env, "Approval", 1)
    assert output(row) == "timed out"
    iid = await env.start_new("Approval", None, 30)
    await env.wait_for(iid, 10, until={S.Running})
    await env.raise_event(iid, "Approval", "yes")
    row = await env.wait_for(iid, 10)
    assert output(row) == "approved: yes"


async def test_external_events_in_order(env):
    iid = await env.start_new("EventsInOrder")
    await env.wait_for(iid, 10, until={S.Running})
    for i in range(3):
        await env.raise_event(iid, "Step", i)
    row = await env.wait_for(iid, 10)
    assert output(row) == [0, 1, 2]


async def test_retry_two_failures_then_success(env):
    row = await run(env, "Retry")
    assert output(row) == "ok after 3"
    history = await env.history(row.instance_id)
    assert [EventType(e["EventType"]).name for e in history].count("TimerCreated") == 2


async def test_sub_orchestrations(env):
    row = await run(env, "Parent", instance_id="par1")
    assert output(row) == ["Hello one!", ["Hello 0!", "Hello 1!", "Hello 2!"]]
    child = await env.get("par1-child")
    assert child.runtime_status == S.Completed


async def test_continue_as_new(env):
    row = await run(env, "Eternal", 0)
    assert output(row) == 3
    history = await env.history(row.instance_id)
    assert history[1]["Input"] == json.dumps("3")   # the last execution's input


async def test_failures(env):
    row = await run(env, "ActivityFails")
    assert row.runtime_status == S.Failed
    assert row.output.startswith(
        "Orchestrator function 'ActivityFails' failed: Activity function 'Fails' failed:  ValueError: bad input 7")
    row = await run(env, "OrchestratorFails")
    assert row.runtime_status == S.Failed
    assert row.output == "Orchestrator function 'OrchestratorFails' failed: orchestrator broke"
    row = await run(env, "NoSuchOrchestrator")
    assert row.runtime_status == S.Failed and "doesn't exist" in row.output


async def test_terminate_suspend_resume(env):
    iid = await env.start_new("Waits")
    await env.wait_for(iid, 10, until={S.Running})
    await env.suspend(iid, "pause")
    row = await env.wait_for(iid, 10, until={S.Suspended})
    assert row.runtime_status == S.Suspended
    await env.raise_event(iid, "Go", "later")
    await asyncio.sleep(0.5)
    assert (await env.get(iid)).runtime_status == S.Suspended
    await env.resume(iid, "go on")
    row = await env.wait_for(iid, 10)
    assert output(row) == "later"

    iid = await env.start_new("Waits")
    await env.wait_for(iid, 10, until={S.Running})
    await env.terminate(iid, "enough")
    row = await env.wait_for(iid, 10)
    assert row.runtime_status == S.Terminated and row.output == "enough"


async def test_rewind(env):
    engine_apps.TOGGLE["fail"] = True
    row = await run(env, "Rewindable")
    assert row.runtime_status == S.Failed
    engine_apps.TOGGLE["fail"] = False
    await env.rewind(row.instance_id, "fixed")
    row = await env.wait_for(row.instance_id, 10, until={S.Completed, S.Failed})
    assert output(row) == ["Hello a!", "toggled b"]


async def test_storage_layout(env, connection_string, hub_name):
    from azure.data.tables.aio import TableServiceClient
    from azure.storage.blob.aio import BlobServiceClient
    from azure.storage.queue.aio import QueueServiceClient
    row = await run(env, "Chain", instance_id="layout1")
    assert row.runtime_status == S.Completed
    h = hub_name.lower()
    async with TableServiceClient.from_connection_string(connection_string) as ts:
        tables = {t.name async for t in ts.list_tables()}
        assert {f"{hub_name}History", f"{hub_name}Instances"} <= tables
        hist = ts.get_table_client(f"{hub_name}History")
        rows = [r async for r in hist.query_entities("PartitionKey eq 'layout1'")]
        keys = [r["RowKey"] for r in rows]
        assert keys[0] == "0000000000000000" and keys[-1] == "sentinel"
        first = rows[1]
        assert first["EventType"] == "ExecutionStarted" and "_Timestamp" in first and first["ExecutionId"]
        inst = await ts.get_table_client(f"{hub_name}Instances").get_entity("layout1", "")
        assert inst["RuntimeStatus"] == "Completed" and inst["Name"] == "Chain"
    async with QueueServiceClient.from_connection_string(connection_string) as qs:
        queues = {q.name async for q in qs.list_queues()}
        assert {f"{h}-control-00", f"{h}-control-01", f"{h}-control-02", f"{h}-control-03",
                f"{h}-workitems"} <= queues
    async with BlobServiceClient.from_connection_string(connection_string) as bs:
        containers = {c.name async for c in bs.list_containers()}
        assert f"{h}-leases" in containers


async def test_large_payloads_round_trip(env):
    big = "x" * (1024 * 1024)
    row = await run(env, "Child", json.dumps(big))   # as the SDK client sends a str input: JSON text
    assert output(row) == f"Hello {big}!"


async def test_new_uuid_time_and_is_replaying_are_deterministic(env):
    iid = await env.start_new("Deterministic")
    first_status = None
    for _ in range(200):
        row = await env.get(iid)
        if row and row.custom_status not in (None, "null"):
            first_status = json.loads(row.custom_status)
            break
        await asyncio.sleep(0.01)
    row = await env.wait_for(iid, 20)
    out = json.loads(row.output)
    assert out[:2] == first_status            # recomputed on every replay from the stored history
    assert out[2] is True and out[3] is False  # the start was replayed; the code after the last yield is new


async def test_entities_signal_call_and_state(env):
    row = await run(env, "UsesCounter", json.dumps("k1"))
    assert row.runtime_status == S.Completed, row.output
    value, error = output(row)
    assert value == 7 and "counter cannot fail" in error
    await env.signal_entity("Counter", "k1", "add", "10")
    for _ in range(100):
        exists, state = await env.read_entity("Counter", "k1")
        if state and json.loads(state) == 17:
            break
        await asyncio.sleep(0.05)
    assert exists and json.loads(state) == 17
    assert await env.read_entity("Counter", "never-used") == (False, None)


async def test_call_http_cut_off_by_a_stop_runs_again_on_the_next_host(connection_string, hub_name):
    """A call_http whose host stopped before the answer came: its work item goes back to the queue, and the next
    host runs BuiltIn::HttpActivity again with the DurableHttpRequest as its input."""
    import azure.durable_functions as df
    from durafunc.durable.worker import FunctionTable

    def orch(ctx):
        r = yield ctx.call_http("GET", "http://example.invalid/status", headers={"X-Try": "1"})
        return [r["statusCode"], r["content"]]

    started = asyncio.Event()

    async def hangs(request):
        started.set()
        await asyncio.sleep(3600)

    def answers(request):
        return {"statusCode": 200, "headers": {},
                "content": f"{request['method']} {request['uri']} {request['headers']}"}

    orchestrators = {"CallsHttp": df.Orchestrator.create(orch)}
    hub = TaskHub(connection_string, hub_name, 4)
    first = Engine(hub, FunctionTable(orchestrators, {"BuiltIn::HttpActivity": hangs}),
                   EngineOptions(max_polling_interval=0.2, lease_duration=15, worker_id="first"))
    await first.start()
    try:
        iid = await DurableClient(hub, first).start_new("CallsHttp")
        await asyncio.wait_for(started.wait(), 20)
    finally:
        await first.stop(grace=0.2)
    second = Engine(hub, FunctionTable(orchestrators, {"BuiltIn::HttpActivity": answers}),
                    EngineOptions(max_polling_interval=0.2, lease_duration=15, worker_id="second"))
    await second.start()
    try:
        client = DurableClient(hub, second)
        row = await client.wait_for(iid, 30)
        assert row.runtime_status == S.Completed, row.output
        assert output(row) == [200, "GET http://example.invalid/status {'X-Try': '1'}"]
        history = await client.history(iid)
        assert [(e["EventId"], e["Name"]) for e in history if e["EventType"] == EventType.TaskScheduled] == \
            [(0, "BuiltIn::HttpActivity")]
        assert sum(1 for e in history if e["EventType"] == EventType.TaskCompleted) == 1
        assert second.stats["activities"] == 1
    finally:
        await second.stop(grace=2)
        await hub.delete()
        await hub.close()


async def test_a_host_side_failure_of_an_activity_still_ends_its_task(connection_string, hub_name):
    """Not only user code can fail: an exception from the host's side of an activity (here: no runner for
    call_http's built-in activity) fails the task instead of leaving the orchestration waiting forever."""
    import azure.durable_functions as df
    from durafunc.durable.worker import FunctionTable

    def orch(ctx):
        yield ctx.call_http("GET", "http://example.invalid/")
        return "unreachable"

    async with own_engine(connection_string, hub_name, FunctionTable({"CallsHttp": df.Orchestrator.create(orch)},
                                                                      {})) as (hub, engine, client):
        row = await client.wait_for(await client.start_new("CallsHttp"), 30)
        assert row.runtime_status == S.Failed
        assert "Activity function 'BuiltIn::HttpActivity' failed:  KeyError" in row.output


async def test_a_timer_beyond_the_queue_limit_hops(connection_string, hub_name):
    """Queues hide a message for at most 7 days: a 10-day timer's message is sent hidden for 6 days, and when it
    shows up early it is sent again for the time left, without firing the timer."""
    from datetime import timedelta

    import azure.durable_functions as df
    from durafunc.durable import events as ev
    from durafunc.durable.worker import FunctionTable
    from durafunc.storage.schema import format_time, utcnow

    def orch(ctx):
        yield ctx.create_timer(ctx.current_utc_datetime + timedelta(days=10))
        return "fired"

    async with own_engine(connection_string, hub_name, FunctionTable({"Sleeper": df.Orchestrator.create(orch)}, {}),
                          partitions=1) as (hub, engine, client):
        iid = await client.start_new("Sleeper")
        await client.wait_for(iid, 20, until={S.Running})
        for _ in range(100):
            created = [e for e in await client.history(iid) if e["EventType"] == EventType.TimerCreated]
            if created:
                break
            await asyncio.sleep(0.1)
        queue = hub.control_queue_for(iid)
        for _ in range(100):                            # the start message goes once the Running row is written
            if await queue.peek_count() == 1:
                break
            await asyncio.sleep(0.05)
        assert await queue.peek_count() == 1            # the timer's message, hidden (the limit is 7 days)
        assert await queue.client.peek_messages(max_messages=5) == []
        # as if six days had passed: the message shows up while the timer is still 4 days away
        fire_at = format_time(utcnow() + timedelta(days=4))
        early = ev.task_message(ev.timer_fired(utcnow(), created[0]["EventId"], fire_at), iid, None)
        await queue.send(early)
        await asyncio.sleep(1.5)
        assert await queue.peek_count() == 2            # the original and the re-sent hop, both hidden
        assert await queue.client.peek_messages(max_messages=5) == []
        assert not [e for e in await client.history(iid) if e["EventType"] == EventType.TimerFired]
        assert (await client.get(iid)).runtime_status == S.Running
