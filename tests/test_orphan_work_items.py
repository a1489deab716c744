"""Work items of a checkpoint that never committed (its host stopped between sending them and committing): a host
that receives one deletes it instead of running the activity a second time (real engine, real Azurite)."""
from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta

import azure.durable_functions as df

from durafunc.durable import events as ev
from durafunc.durable.engine import Engine, EngineOptions
from durafunc.durable.client import DurableClient
from durafunc.durable.worker import FunctionTable
from durafunc.storage.schema import EventType, OrchestrationStatus as S, parse_time
from durafunc.storage.taskhub import TaskHub


async def _count(queue) -> int:
    props = await queue.client.get_queue_properties()
    return props.approximate_message_count


async def _until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_work_item_whose_checkpoint_never_committed_is_deleted_not_run(connection_string, hub_name, caplog):
    caplog.set_level(logging.INFO, logger="durafunc.engine")
    runs: list[str] = []
    gate = asyncio.Event()

    async def block(x):
        runs.append(x)
        await gate.wait()
        return x

    def orch(ctx):
        return (yield ctx.call_activity("Block", "only-once"))

    hub = TaskHub(connection_string, hub_name, 1)
    engine = Engine(hub, FunctionTable({"Gated": df.Orchestrator.create(orch)}, {"Block": block}),
                    EngineOptions(max_polling_interval=0.1, lease_duration=15))
    await engine.start()
    client = DurableClient(hub, engine)
    try:
        iid = await client.start_new("Gated", "gated")
        await _until(lambda: asyncio.sleep(0, result=runs == ["only-once"]), 30, "the activity to start")
        history = await client.history(iid)
        scheduled = next(e for e in history if e["EventType"] == EventType.TaskScheduled)
        execution = next(e for e in history if e["EventType"] == EventType.ExecutionStarted)[
            "OrchestrationInstance"]["ExecutionId"]

        def work_item(task_id: int, seconds_later: float) -> dict:
            at = parse_time(scheduled["Timestamp"]) + timedelta(seconds=seconds_later)
            return ev.task_message(ev.task_scheduled(at, task_id, "Block", scheduled.get("Input") or '["only-once"]'),
                                   iid, execution)
        # what a host that stopped before its commit leaves: the same task from another checkpoint ...
        await hub.work_items.send(work_item(0, 1.5))
        # ... and a task the history does not schedule (yet): it waits, it is not run
        await hub.work_items.send(work_item(5, 1.5))
        # the three in the queue: the running activity's (hidden), the orphan, the early one
        await _until(lambda: _left(hub, 2), 30, "the orphan to be deleted")
        assert runs == ["only-once"] and len(orphans(caplog)) == 1
        gate.set()
        row = await client.wait_for(iid, 30)
        assert row.runtime_status == S.Completed and row.output == '"only-once"'
        # the instance is done: the waiting work item's task can never be scheduled now, so it goes too
        await _until(lambda: _left(hub, 0), 30, "the early work item to be deleted")
        assert runs == ["only-once"] and len(orphans(caplog)) == 2
    finally:
        gate.set()
        await engine.stop(grace=2)
        await hub.delete()
        await hub.close()


async def _left(hub, n: int) -> bool:
    return await _count(hub.work_items) == n


def orphans(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "by a checkpoint that never committed" in r.getMessage()]
