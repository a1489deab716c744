"""The instance management commands against the test Azurite, with instances made by a running engine. Every
command runs as a real `durafunc` process whose stdout is a pipe (not a terminal), as in `durafunc ... | grep`."""
from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import uuid

import pytest

from durafunc.durable.client import DurableClient
from durafunc.management import task_hubs
from durafunc.storage.schema import OrchestrationStatus as S
from durafunc.storage.taskhub import TaskHub
from test_engine_crash import start_engine

LONG_ID = "order-" + "0123456789abcdef" * 3 + "-tail"          # 59 characters: wider than a narrow terminal


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
        long = await client.start_new("Chain", LONG_ID)
        for i in done + [failed, long]:
            await client.wait_for(i, 30)
        await client.wait_for(running, 30, until={S.Running})
        await hub.close()
    asyncio.run(setup())
    yield {"hub": hub_name, "conn": connection_string, "cwd": tmp_path_factory.mktemp("noapp")}
    proc.send_signal(signal.SIGTERM)
    proc.wait(20)


class Run:
    def __init__(self, p: subprocess.CompletedProcess):
        self.exit_code, self.stdout, self.stderr = p.returncode, p.stdout, p.stderr

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def cli(world, *args, input=None, env=None, hub=True):
    """`durafunc ARGS --task-hub-name <hub>` with stdout and stderr as pipes and stdin not a terminal."""
    extra = ["--task-hub-name", world["hub"]] if hub else []
    p = subprocess.run([sys.executable, "-m", "durafunc", *args, *extra], cwd=world["cwd"], input=input or "",
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "AzureWebJobsStorage": world["conn"], "COLUMNS": "40", **(env or {})})
    return Run(p)


def one_line_error(r, *needles):
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, r.stderr
    for n in needles:
        assert n in errors[0], errors[0]
    return errors[0]


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
    assert sorted(seen) == sorted([f"done-{i:02d}" for i in range(25)] + [LONG_ID])


def test_get_instances_through_a_pipe_one_row_per_line(world):
    """Not a terminal (COLUMNS=40): plain aligned columns, every value whole on its row, `grep <id>` works."""
    r = cli(world, "get-instances", "--runtime-status", "completed failed running", "--top", "100")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert re.match(r"Instance ID +Name +Status +Created \(UTC\) +Last updated \(UTC\) +Duration +Worker$", lines[0])
    assert "│" not in r.stdout and "…" not in r.stdout and "\x1b[" not in r.stdout      # no box, no cut, no colour
    row = [line for line in lines if LONG_ID in line]
    assert len(row) == 1 and row[0].startswith(LONG_ID + " ")
    cells = row[0].split()
    assert cells[1:3] == ["Chain", "Completed"] and cells[-1] == "cli-host"
    # one time per cell, UTC: 2026-12-01 20:10:05 twice (created, last updated)
    assert re.search(r"Completed +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d +\S+ m?s +cli-host$",
                     row[0]), row[0]
    assert "(" not in row[0]                                         # no second zone in the cell
    failed = [line for line in lines if line.startswith("failed-1 ")]
    assert len(failed) == 1 and " Failed " in failed[0]
    columns = [len(line) for line in lines[1:] if line and not line.startswith("Continuation")]
    assert lines[0].index("Name") == row[0].index("Chain")            # aligned columns
    assert max(columns) > 40                                          # wider than COLUMNS: nothing was fitted
    assert "Continuation token for next set of results: ''" in r.stdout


def test_get_instances_tsv_and_local_time(world):
    r = cli(world, "get-instances", "--runtime-status", "completed", "--top", "100", "--output", "tsv")
    assert r.exit_code == 0, r.output
    rows = [line.split("\t") for line in r.stdout.splitlines()]
    assert rows[0] == ["Instance ID", "Name", "Status", "Created (UTC)", "Last updated (UTC)", "Duration", "Worker"]
    mine = [row for row in rows if row[0] == LONG_ID]
    assert len(mine) == 1 and mine[0][2] == "Completed" and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z",
                                                                         mine[0][3])
    assert all(len(row) == 7 for row in rows)
    assert "Continuation token" not in r.stdout                      # tsv stays data only (the token is on stderr)
    utc = cli(world, "get-runtime-status", "--id", LONG_ID, "--output", "tsv", env={"TZ": "UTC"})
    tokyo = cli(world, "get-runtime-status", "--id", LONG_ID, "--output", "tsv", "--local-time",
                env={"TZ": "Asia/Tokyo"})
    created_utc = dict(line.split("\t") for line in utc.stdout.splitlines())["Created"]
    created_tokyo = dict(line.split("\t") for line in tokyo.stdout.splitlines())["Created"]
    assert created_utc.endswith("Z") and created_tokyo.endswith("+09:00")
    from datetime import datetime
    assert datetime.fromisoformat(created_utc.replace("Z", "+00:00")) == datetime.fromisoformat(created_tokyo)
    r = cli(world, "get-instances", "--top", "100", "--local-time", env={"TZ": "Asia/Tokyo"})
    assert "Created (UTC+09:00)" in r.stdout.splitlines()[0]


def test_bad_inputs_one_line_errors(world):
    one_line_error(cli(world, "get-instances", "--created-after", "yesterday-ish"),
                   "--created-after: 'yesterday-ish' is not a date")
    one_line_error(cli(world, "get-instances", "--runtime-status", "sleeping"), "unknown runtime status 'sleeping'")
    one_line_error(cli(world, "get-runtime-status", "--id", "nope"),
                   "Could not find an orchestration instance with id 'nope'")
    one_line_error(cli(world, "raise-event", "--id", "nope", "--event-name", "Go"), "No instance with ID 'nope' found.")
    one_line_error(cli(world, "start-new", "--function-name", "Chain", "--input", "@/no/such/file.json"),
                   "Could not find input file at '/no/such/file.json'")


def test_core_tools_date_formats(world):
    """.NET DateTime.Parse formats, as Core Tools documents them: month first, no zone = UTC."""
    r = cli(world, "get-instances", "--created-before", "12/01/2099 20:10", "--runtime-status", "completed",
            "--top", "100", "--json")
    assert r.exit_code == 0, r.output
    assert LONG_ID in [i["instanceId"] for i in json.loads(r.stdout)["instances"]]
    r = cli(world, "get-instances", "--created-before", "1/1/2001 12:00:00 AM", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["instances"] == []
    r = cli(world, "purge-history", "--created-after", "Dec 1 2099 8:10 PM", "--dry-run", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["instancesMatched"] == 0


def test_get_runtime_status_and_history(world):
    r = cli(world, "get-runtime-status", "--id", "done-03", "--show-output", "--json")
    data = json.loads(r.stdout)
    assert data["runtimeStatus"] == "Completed" and data["output"][0] == "Hello Tokyo!" and data["worker"] == "cli-host"
    r = cli(world, "get-runtime-status", "--id", "failed-1", "--show-output")
    assert r.exit_code == 0 and "Failed" in r.stdout and "Activity function 'Fails' failed" in r.stdout
    status = dict(re.split(r"  +", line, 1) for line in r.stdout.splitlines())
    assert status["Instance ID"] == "failed-1" and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC",
                                                                status["Created"])
    r = cli(world, "get-history", "--id", "done-03")
    assert r.exit_code == 0
    for word in ("ExecutionStarted", "TaskScheduled", "TaskCompleted", "Hello", "took", "ExecutionCompleted"):
        assert word in r.stdout
    r = cli(world, "get-history", "--id", "failed-1", "--json")
    events = json.loads(r.stdout)
    assert [e for e in events if e["EventType"] == "TaskFailed"][0]["Reason"].startswith(
        "Activity function 'Fails' failed:  ValueError")


def test_get_history_offsets_count_from_creation(world):
    """`+ms` is the time since the instance was created: 0 for ExecutionStarted, never negative (the first row in
    storage, an OrchestratorStarted, is written after ExecutionStarted's time)."""
    r = cli(world, "get-history", "--id", "done-05", "--output", "tsv")
    rows = [line.split("\t") for line in r.stdout.splitlines()]
    assert rows[0] == ["#", "Time (UTC)", "+ms", "Event", "Name", "Details"]
    offsets = {row[3]: int(row[2]) for row in reversed(rows[1:])}       # first occurrence of each event
    assert offsets["ExecutionStarted"] == 0
    assert all(int(row[2]) >= 0 for row in rows[1:])
    assert offsets["ExecutionCompleted"] >= offsets["TaskCompleted"] >= offsets["TaskScheduled"]
    r = cli(world, "get-history", "--id", "done-05")
    assert all(not line.split()[2].startswith("-") for line in r.stdout.splitlines()[1:])


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
    # the engine of this hub holds its partition leases: a fact, not a guessed port
    assert f"A host runs task hub '{world['hub']}' (worker cli-host): it runs the instance." in r.stdout
    r = cli(world, "terminate", "--id", "cli-started", "--reason", "bye", "--timeout", "20")
    assert r.exit_code == 0 and "Successfully terminated 'cli-started'" in r.output
    r = cli(world, "durable", "get-runtime-status", "--id", "cli-started", "--show-output", "--json")
    assert json.loads(r.stdout)["runtimeStatus"] == "Terminated" and json.loads(r.stdout)["output"] == "bye"


def test_wrong_state_operations_get_azures_answers(world):
    """Suspend of a finished instance / of a suspended one, resume of a running one, rewind of a completed or
    running one: the Durable extension's messages, one line each, exit code 1."""
    one_line_error(cli(world, "suspend", "--id", "done-01"), "Instance with ID done-01 is gone: it is Completed.")
    one_line_error(cli(world, "resume", "--id", "done-01"), "is gone: it is Completed.")
    one_line_error(cli(world, "rewind", "--id", "done-01"),
                   "The rewind operation is only supported on failed orchestration instances.")
    r = cli(world, "start-new", "--function-name", "Waits", "--id", "wrong-state")
    assert r.exit_code == 0, r.output

    async def wait(until):
        hub = TaskHub(world["conn"], world["hub"], 4)
        row = await DurableClient(hub).wait_for("wrong-state", 20, until=until)
        await hub.close()
        return row
    asyncio.run(wait({S.Running}))
    one_line_error(cli(world, "resume", "--id", "wrong-state"),
                   "Cannot resume the orchestration instance wrong-state because instance is in the Running state.")
    one_line_error(cli(world, "rewind", "--id", "wrong-state"),
                   "The rewind operation is only supported on failed orchestration instances.")
    assert cli(world, "suspend", "--id", "wrong-state", "--reason", "hold on").exit_code == 0
    assert asyncio.run(wait({S.Suspended})).output == "hold on"
    one_line_error(cli(world, "suspend", "--id", "wrong-state"),
                   "Cannot suspend the orchestration instance wrong-state because instance is in the Suspended "
                   "state.")
    assert cli(world, "resume", "--id", "wrong-state", "--reason", "carry on").exit_code == 0
    row = asyncio.run(wait({S.Running}))
    assert row.runtime_status == S.Running and row.output == "carry on"        # the resume reason, as on Azure
    assert cli(world, "terminate", "--id", "wrong-state", "--timeout", "20").exit_code == 0


def test_a_task_hub_that_does_not_exist(world):
    """A missing hub is one line naming it, the account and the hubs that exist; nothing is created."""
    for args in (["get-instances"], ["get-history", "--id", "x"], ["get-runtime-status", "--id", "x"],
                 ["purge-history"], ["raise-event", "--id", "x"], ["start-new", "--function-name", "Chain"],
                 ["terminate", "--id", "x"], ["suspend", "--id", "x"], ["delete-task-hub", "--yes"]):
        r = cli(world, *args, "--task-hub-name", "myap", hub=False)
        line = one_line_error(r, "Task hub 'myap' does not exist in storage account 'devstoreaccount1' (http://",
                              f"'{world['hub']}'", f"try 'durafunc {args[0]} --task-hub-name ")
        assert "Traceback" not in r.output and len(r.stderr.splitlines()) == 2, r.stderr   # the hub line, the error
        assert line.count("\n") == 0

    async def hubs():
        hub = TaskHub(world["conn"], world["hub"], 4)
        try:
            return await task_hubs(hub.account)
        finally:
            await hub.close()
    assert world["hub"] in asyncio.run(hubs()) and "myap" not in asyncio.run(hubs())   # start-new created nothing


def test_purge_history(world):
    r = cli(world, "purge-history", "--dry-run", "--json")
    data = json.loads(r.stdout)
    assert data["dryRun"] and data["instancesDeleted"] == 0 and "done-00" in data["instanceIds"]
    r = cli(world, "purge-history", "--dry-run")
    assert r.exit_code == 0 and re.search(r"^done-00 +Chain +Completed ", r.stdout, re.M)
    r = cli(world, "purge-history", "--runtime-status", "failed")
    assert r.exit_code == 0 and "Instances deleted: 1" in r.output and "Rows deleted:" in r.output
    r = cli(world, "get-runtime-status", "--id", "failed-1")
    assert r.exit_code == 1
    r = cli(world, "get-instances", "--runtime-status", "completed", "--top", "100", "--json")
    assert len(json.loads(r.stdout)["instances"]) >= 25          # nothing outside the filter was touched


def _new_hub(connection_string) -> str:
    name = "Del" + uuid.uuid4().hex[:10]

    async def create():
        hub = TaskHub(connection_string, name, 4)
        await hub.create_if_not_exists()
        await hub.close()
    asyncio.run(create())
    return name


def test_delete_task_hub_needs_yes_without_a_terminal(world, connection_string):
    other = {**world, "hub": _new_hub(connection_string)}
    one_line_error(cli(other, "delete-task-hub"), "stdin is not a terminal: pass --yes", other["hub"])
    r = cli(other, "delete-task-hub", "--yes")
    assert r.exit_code == 0 and f"Task hub '{other['hub']}' successfully deleted." in r.output
    one_line_error(cli(other, "delete-task-hub", "--yes"), f"Task hub '{other['hub']}' does not exist")


def test_delete_task_hub_asks_on_a_terminal(world, connection_string):
    """With a terminal on stdin it asks; 'n' keeps the hub."""
    import pty
    other = {**world, "hub": _new_hub(connection_string)}
    controller, terminal = pty.openpty()
    try:
        p = subprocess.Popen([sys.executable, "-m", "durafunc", "delete-task-hub", "--task-hub-name", other["hub"]],
                             cwd=world["cwd"], stdin=terminal, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env={**os.environ, "AzureWebJobsStorage": world["conn"]})
        os.write(controller, b"n\n")
        out, err = p.communicate(timeout=60)
    finally:
        os.close(controller)
        os.close(terminal)
    assert p.returncode == 1 and "Delete task hub" in out + err and "Aborted" in out + err

    async def exists():
        hub = TaskHub(connection_string, other["hub"], 4)
        try:
            return await hub.exists()
        finally:
            await hub.close()
    assert asyncio.run(exists())


def test_delete_task_hub_refuses_while_a_host_holds_its_leases(world, connection_string):
    other = {**world, "hub": _new_hub(connection_string)}

    async def hold():
        hub = TaskHub(connection_string, other["hub"], 4)
        leases = hub.partition_leases("busy-host-7071", lease_duration=60)
        assert await leases.acquire(hub.names.control_queues[1])
        return hub, leases
    loop = asyncio.new_event_loop()
    hub, leases = loop.run_until_complete(hold())
    try:
        one_line_error(cli(other, "delete-task-hub", "--yes"), f"Task hub '{other['hub']}' is in use",
                       "worker 'busy-host-7071' holds 1 of its partition leases", "--force")
        r = cli(other, "delete-task-hub", "--yes", "--force")
        assert r.exit_code == 0 and "successfully deleted" in r.stdout
    finally:
        loop.run_until_complete(hub.close())
        loop.close()


def test_start_new_without_a_host_says_so_from_the_leases(world, connection_string):
    other = {**world, "hub": _new_hub(connection_string)}
    r = cli(other, "start-new", "--function-name", "Chain", "--id", "lonely")
    assert r.exit_code == 0, r.output
    assert f"No host is running task hub '{other['hub']}' (no live partition lease)" in r.stdout
    assert "7071" not in r.output
    r = cli(other, "terminate", "--id", "lonely", "--timeout", "1")
    assert r.exit_code == 0 and "No host is running task hub" in r.stdout


def test_storage_that_does_not_answer(world):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conn = world["conn"]
    for m in re.findall(r":(\d+)/devstoreaccount1", conn):
        conn = conn.replace(f":{m}/", f":{port}/")
    r = cli(world, "get-instances", env={"AzureWebJobsStorage": conn})
    one_line_error(r, f"nothing answers on ports {port}/{port}/{port} of this machine", "durafunc azurite start")


def test_commands_find_the_azurite_started_here_on_other_ports(tmp_path):
    """`durafunc azurite start --blob-port ...` in the app folder: the connection's own ports do not answer, so
    the management commands and `durafunc start` use that Azurite (its record knows the ports)."""
    from durafunc.azurite import azurite_connection_string
    from hostutil import free_port
    from test_azurite import free_ports
    app = tmp_path / "app"
    app.mkdir()
    closed = free_ports()                                   # what local.settings.json points at: nothing there
    (app / "host.json").write_text(json.dumps({"version": "2.0", "extensions": {"durableTask": {
        "hubName": "FoundHub"}}}))
    (app / "local.settings.json").write_text(json.dumps({"Values": {
        "AzureWebJobsStorage": azurite_connection_string("127.0.0.1", *closed)}}))
    (app / "function_app.py").write_text(
        "import azure.durable_functions as df\nimport azure.functions as func\n\n"
        "app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)\n\n\n"
        "@app.orchestration_trigger(context_name='context')\ndef hi(context):\n    return 'hi'\n")
    env = {k: v for k, v in os.environ.items() if k != "AzureWebJobsStorage"}

    def run(*args, timeout=120):
        return subprocess.run([sys.executable, "-m", "durafunc", *args], cwd=app, capture_output=True, text=True,
                              env=env, timeout=timeout)
    b, q, t = free_ports()
    r = run("azurite", "start", "--in-memory", "--blob-port", str(b), "--queue-port", str(q), "--table-port", str(t))
    assert r.returncode == 0, r.stderr
    host = None
    try:
        r = run("get-instances")
        assert r.returncode == 1 and f"(the Azurite started here, pid " in r.stderr, r.stderr
        assert f"Task hub 'FoundHub' does not exist in storage account 'devstoreaccount1' (http://127.0.0.1:{t}/" \
               in r.stderr                                   # reached that Azurite: no 'storage unavailable'
        port = free_port()
        host = subprocess.Popen([sys.executable, "-m", "durafunc", "start", "--no-reload", "--port", str(port)],
                                cwd=app, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = []
        for line in host.stdout:
            lines.append(line)
            if "Host started" in line or len(lines) > 200:
                break
        out = "".join(lines)
        assert f"Using the Azurite started here (pid " in out and f"blob {b}, queue {q}, table {t}" in out, out
        assert "Started Azurite" not in out                 # no second Azurite on the closed ports
        r = run("start-new", "--function-name", "hi", "--id", "found-1")
        assert r.returncode == 0 and f"Status: http://127.0.0.1:{port}/runtime/webhooks/durabletask/instances/" \
                                     "found-1" in r.stdout, r.stdout + r.stderr
    finally:
        if host is not None:
            host.terminate()
            host.wait(20)
        run("azurite", "stop")
