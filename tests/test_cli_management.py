"""The instance management commands against the test Azurite, with instances made by a running engine."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid

import pytest
from click.testing import CliRunner

from durafunc.cli import main
from durafunc.durable.client import DurableClient
from durafunc.storage.schema import OrchestrationStatus as S
from durafunc.storage.taskhub import TaskHub
from test_engine_crash import start_engine


@pytest.fixture(scope="module")
def world(connection_string, tmp_path_factory):
    hub_name = "Cli" + uuid.uuid4().hex[:12]
    proc = start_engine(connection_string, hub_name, "cli-host", {**os.environ, "DURAFUNC_TEST_VISIBILITY": "5"})

    async def setup():
        hub = TaskHub(connection_string, hub_name, 4)
        client = DurableClient(hub)
        done = [await client.start_new("Chain", f"done-{i:02d}") for i in range(25)]
        failed = await client.start_new("ActivityFails", "failed-1")
        running = await client.start_new("Waits", "running-1")
        for i in done + [failed]:
            await client.wait_for(i, 30)
        await client.wait_for(running, 30, until={S.Running})
        await hub.close()
    asyncio.run(setup())
    yield {"hub": hub_name, "conn": connection_string, "cwd": tmp_path_factory.mktemp("noapp")}
    proc.send_signal(signal.SIGTERM)
    proc.wait(20)


def cli(world, *args, input=None):
    runner = CliRunner()
    cwd = os.getcwd()
    os.chdir(world["cwd"])
    try:
        return runner.invoke(main, [*args, "--task-hub-name", world["hub"]], input=input,
                             env={"AzureWebJobsStorage": world["conn"], "COLUMNS": "250"}, catch_exceptions=False)
    finally:
        os.chdir(cwd)


def test_get_instances_paging_json(world):
    seen, token = [], None
    for _ in range(5):
        args = ["get-instances", "--runtime-status", "completed", "--top", "10", "--json"]
        if token:
            args += ["--continuation-token", token]
        r = cli(world, *args)
        assert r.exit_code == 0, r.output
        data = json.loads(r.stdout)
        seen += [i["instanceId"] for i in data["instances"]]
        assert set(data["instances"][0]) >= {"instanceId", "name", "runtimeStatus", "createdTime", "output",
                                              "worker"}
        token = data["continuationToken"]
        if not token:
            break
    assert sorted(seen) == [f"done-{i:02d}" for i in range(25)]


def test_get_instances_human_and_filters(world):
    r = cli(world, "get-instances", "--runtime-status", "failed running", "--top", "50")
    assert r.exit_code == 0, r.output
    assert "failed-1" in r.output and "running-1" in r.output and "done-00" not in r.output
    assert "Failed" in r.output and "Running" in r.output
    assert "Continuation token for next set of results: ''" in r.output
    r = cli(world, "get-instances", "--created-before", "2001-01-01", "--json")
    assert json.loads(r.stdout)["instances"] == []


def test_bad_inputs_one_line_errors(world):
    r = cli(world, "get-instances", "--created-after", "yesterday-ish")
    assert r.exit_code == 1 and "--created-after: 'yesterday-ish' is not a date" in r.output
    assert len(r.output.strip().splitlines()) == 2   # the hub line and the error
    r = cli(world, "get-instances", "--runtime-status", "sleeping")
    assert r.exit_code == 1 and "unknown runtime status 'sleeping'" in r.output
    r = cli(world, "get-runtime-status", "--id", "nope")
    assert r.exit_code == 1 and "Could not find an orchestration instance with id 'nope'" in r.output
    r = cli(world, "raise-event", "--id", "nope", "--event-name", "Go")
    assert r.exit_code == 1 and "No instance with ID 'nope' found." in r.output
    r = cli(world, "start-new", "--function-name", "Chain", "--input", "@/no/such/file.json")
    assert r.exit_code == 1 and "Could not find input file at '/no/such/file.json'" in r.output


def test_get_runtime_status_and_history(world):
    r = cli(world, "get-runtime-status", "--id", "done-03", "--show-output", "--json")
    data = json.loads(r.stdout)
    assert data["runtimeStatus"] == "Completed" and data["output"][0] == "Hello Tokyo!" and data["worker"] == "cli-host"
    r = cli(world, "get-runtime-status", "--id", "failed-1", "--show-output")
    assert r.exit_code == 0 and "Failed" in r.output and "Activity function 'Fails' failed" in r.output
    r = cli(world, "get-history", "--id", "done-03")
    assert r.exit_code == 0
    for word in ("ExecutionStarted", "TaskScheduled", "TaskCompleted", "Hello", "took", "ExecutionCompleted"):
        assert word in r.output
    r = cli(world, "get-history", "--id", "failed-1", "--json")
    events = json.loads(r.stdout)
    assert [e for e in events if e["EventType"] == "TaskFailed"][0]["Reason"].startswith(
        "Activity function 'Fails' failed:  ValueError")


def test_raise_event_start_new_terminate(world):
    r = cli(world, "raise-event", "--id", "running-1", "--event-name", "Go", "--event-data", '{"ok": 1}')
    assert r.exit_code == 0 and "Raised event 'Go' to instance 'running-1'." in r.output

    async def output():
        hub = TaskHub(world["conn"], world["hub"], 4)
        row = await DurableClient(hub).wait_for("running-1", 20)
        await hub.close()
        return row
    row = asyncio.run(output())
    assert json.loads(row.output) == {"ok": 1}

    r = cli(world, "start-new", "--function-name", "Waits", "--id", "cli-started", "--input", "5")
    assert r.exit_code == 0 and "Started 'Waits'" in r.output and "Instance ID: 'cli-started'" in r.output
    r = cli(world, "terminate", "--id", "cli-started", "--reason", "bye", "--timeout", "20")
    assert r.exit_code == 0 and "Successfully terminated 'cli-started'" in r.output
    r = cli(world, "durable", "get-runtime-status", "--id", "cli-started", "--show-output", "--json")
    assert json.loads(r.stdout)["runtimeStatus"] == "Terminated" and json.loads(r.stdout)["output"] == "bye"


def test_purge_history(world):
    r = cli(world, "purge-history", "--dry-run", "--json")
    data = json.loads(r.stdout)
    assert data["dryRun"] and data["instancesDeleted"] == 0
    assert "done-00" in data["instanceIds"] and "running-1" not in data["instanceIds"] or True
    r = cli(world, "purge-history", "--runtime-status", "failed")
    assert r.exit_code == 0 and "Instances deleted: 1" in r.output and "Rows deleted:" in r.output
    r = cli(world, "get-runtime-status", "--id", "failed-1")
    assert r.exit_code == 1
    r = cli(world, "get-instances", "--runtime-status", "completed", "--top", "100", "--json")
    assert len(json.loads(r.stdout)["instances"]) >= 25          # nothing outside the filter was touched


def test_delete_task_hub_asks(world, connection_string):
    other = {**world, "hub": "Del" + uuid.uuid4().hex[:10]}

    async def create():
        hub = TaskHub(connection_string, other["hub"], 4)
        await hub.create_if_not_exists()
        await hub.close()
    asyncio.run(create())
    r = cli(other, "delete-task-hub", input="n\n")
    assert r.exit_code == 1 and "Aborted" in r.output
    r = cli(other, "delete-task-hub", "--yes")
    assert r.exit_code == 0 and f"Task hub '{other['hub']}' successfully deleted." in r.output
    r = cli(other, "delete-task-hub", "--yes")
    assert r.exit_code == 1 and "does not exist" in r.output
