"""The chaos checker's reader: a task hub read whole from the real Azurite (rows written in DTFx's layout with the
Azure SDK), every execution's rows kept, large properties restored from their blobs, entities apart."""
from __future__ import annotations

import asyncio
import json
import uuid

from chaos.checker import check
from chaos.expect import Expect, Expectations
from chaos.sidelog import SideLog
from chaos.snapshot import read_snapshot
from chaos.timeline import Timeline
from durafunc.storage.taskhub import TaskHub

TS = "2030-01-01T00:00:00.0000000Z"


def row(iid: str, n: int, execution: str, event_type: str, **columns) -> dict:
    return {"PartitionKey": iid, "RowKey": f"{n:016X}", "ExecutionId": execution, "EventType": event_type,
            "EventId": columns.pop("EventId", -1), "IsPlayed": False, "_Timestamp": TS, **columns}


def test_read_snapshot_keeps_every_execution_and_restores_large_results(connection_string):
    async def run():
        hub = TaskHub(connection_string, "Snap" + uuid.uuid4().hex[:10], 4)
        await hub.create_if_not_exists()
        try:
            big = json.dumps("x" * 70_000)
            await hub.large_messages.upload("loop/history-0000000000000003-TaskCompleted-1-Result.json.gz", big)
            history = hub.history.client
            start = json.dumps({"InstanceId": "loop", "ExecutionId": "e2"})
            rows = [   # execution e2 (continue-as-new) rewrote rows 0-4; rows 5-6 of e1 stay behind
                row("loop", 0, "e2", "OrchestratorStarted"),
                row("loop", 1, "e2", "ExecutionStarted", Name="loop", OrchestrationInstance=start),
                row("loop", 2, "e2", "TaskScheduled", EventId=0, Name="Work"),
                row("loop", 3, "e2", "TaskCompleted", TaskScheduledId=0, Result="",
                    ResultBlobName="loop/history-0000000000000003-TaskCompleted-1-Result.json.gz"),
                row("loop", 4, "e2", "ExecutionCompleted", EventId=1, OrchestrationStatus="Completed", Result="6"),
                row("loop", 5, "e1", "TaskCompleted", TaskScheduledId=3, Result="1"),
                row("loop", 6, "e1", "OrchestratorCompleted"),
                {"PartitionKey": "loop", "RowKey": "sentinel", "ExecutionId": "e2", "IsCheckpointComplete": True},
            ]
            await asyncio.gather(*(history.upsert_entity(r) for r in rows))
            instances = hub.instances.client
            await instances.upsert_entity({"PartitionKey": "loop", "RowKey": "", "Name": "loop",
                                           "RuntimeStatus": "Completed", "ExecutionId": "e2", "Output": "6"})
            await instances.upsert_entity({"PartitionKey": "@counter@k", "RowKey": "", "Name": "counter",
                                           "RuntimeStatus": "Running", "Input": json.dumps(
                                               {"exists": True, "state": json.dumps({"value": 3, "ops": {"a": 1}})})})
            poison = hub.account.queue_service.get_queue_client(hub.names.control_queues[1] + "-poison")
            await poison.create_queue()
            await poison.send_message(json.dumps({"TaskMessage": {"Event": {"EventType": 5, "TaskScheduledId": 2},
                                                                  "OrchestrationInstance": {"InstanceId": "loop"}}}))
            snap = await read_snapshot(hub)
            assert [(p.queue, p.instance_id, p.event["TaskScheduledId"]) for p in snap.poisoned] == [
                (hub.names.control_queues[1] + "-poison", "loop", 2)]
            snap.poisoned = []
            rec = snap.instances["loop"]
            assert rec.current_execution == "e2" and rec.rows == list(range(7))
            assert [e["ExecutionId"] for e in rec.events] == ["e2"] * 5 + ["e1"] * 2
            assert rec.events[3]["Result"] == big                       # restored from its blob
            assert rec.events[4]["OrchestrationStatus"] == 1 and rec.row.output == "6"
            assert set(snap.instances) == {"loop"}                      # the entity is not an orchestration
            assert snap.entities == {"@counter@k": {"value": 3, "ops": {"a": 1}}}
            exp = Expectations({"loop": Expect("Completed", 6)})
            exp.entity("@counter@k").definite["a"] = 3
            report = check(snap, exp, SideLog(), Timeline())
            assert report.ok, report.format()
        finally:
            await hub.delete()
            await hub.close()
    asyncio.run(run())
