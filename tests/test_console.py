"""What `durafunc start` prints while it runs, as Core Tools prints it: every function's run (durable ones too,
replay-safe), failures once with the user's traceback, the app's logs without their replays, bindings durafunc
does not emulate; Azure's answers to operations in the wrong state; readiness; request limits."""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid

import pytest

from hostutil import HERE, HostProcess, gated_connection

APP = HERE / "hostapps" / "consoleapp"
EXECUTING = re.compile(r"Executing 'Functions\.(\w+)' \(Reason='(.*)', Id=([0-9a-f-]{36})\)$", re.M)
EXECUTED = re.compile(r"Executed 'Functions\.(\w+)' \((Succeeded|Failed), Id=([0-9a-f-]{36}), Duration=(\d+)ms\)$",
                      re.M)


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("console") / "app"
    shutil.copytree(APP, folder, ignore=shutil.ignore_patterns(".durafunc", "__pycache__"))
    return folder


@pytest.fixture(scope="module")
def host(app_dir, connection_string):
    h = HostProcess(app_dir, connection_string, "Con" + uuid.uuid4().hex[:12]).wait_ready()
    yield h
    h.stop()


def run(host, name, until=("Completed", "Failed", "Terminated")):
    r = host.request("POST", f"/api/starter/{name}")
    assert r.status == 202, r.text
    return host.wait_status(r.json()["statusQueryGetUri"], until=until), r.json()["id"]


def wait_log(host, pattern, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(pattern, host.log(), re.M)
        if m:
            return m
        time.sleep(0.05)
    raise AssertionError(f"{pattern!r} not in log:\n{host.log()}")


def runs(log: str, name: str, instance_id: str | None = None) -> list[tuple[str, str, str]]:
    """(reason, id, outcome) of each logged run of function `name` (of one orchestration instance)."""
    outcome = {m.group(3): m.group(2) for m in EXECUTED.finditer(log) if m.group(1) == name}
    return [(m.group(2), m.group(3), outcome.get(m.group(3))) for m in EXECUTING.finditer(log)
            if m.group(1) == name and (instance_id is None or f"'{instance_id}'" in m.group(2))]


def test_every_function_run_is_logged_like_core_tools(host):
    status, iid = run(host, "chatty")
    assert status["runtimeStatus"] == "Completed" and status["output"] == ["ONE", "TWO"]
    wait_log(host, rf"Executed 'Functions\.chatty' \(Succeeded, Id=[0-9a-f-]+, Duration=\d+ms\)$")
    log = host.log()
    starter = runs(log, "starter")
    assert starter and starter[0][0] == "This function was programmatically called via the host APIs." \
        and starter[0][2] == "Succeeded"
    # three episodes with something new: the start, and the results of the two activities
    episodes = runs(log, "chatty", iid)
    assert [r for r, _, _ in episodes] == [f"Orchestration instance '{iid}': ExecutionStarted",
                                           f"Orchestration instance '{iid}': TaskCompleted",
                                           f"Orchestration instance '{iid}': TaskCompleted"]
    assert all(outcome == "Succeeded" for _, _, outcome in episodes)
    activities = runs(log, "say", iid)
    assert len(activities) == 2 and all(outcome == "Succeeded" for _, _, outcome in activities)
    assert activities[0][0] == f"Orchestration instance '{iid}': TaskScheduled"
    ids = [i for _, i, _ in episodes + activities]
    assert len(set(ids)) == len(ids)                       # one invocation id per run


def test_user_logs_of_a_replay_are_hidden(host):
    """`logging.info` in an orchestrator runs again on every replay; only the first (not replaying) call shows,
    tagged with the function name and the invocation id of the run that made it."""
    before = host.log()
    status, iid = run(host, "chatty")
    assert status["runtimeStatus"] == "Completed"
    wait_log(host, rf"Executing 'Functions\.chatty' \(Reason='Orchestration instance '{iid}': TaskCompleted'")
    time.sleep(0.3)
    new = host.log()[len(before):]
    assert new.count("chatty: begins") == 1 and new.count("chatty: got ONE") == 1 \
        and new.count("chatty: got TWO") == 1
    first = runs(new, "chatty", iid)[0][1]
    assert re.search(rf"chatty \({first[:8]}\): chatty: begins$", new, re.M)


def test_user_logs_of_a_replay_are_hidden_without_sessions(connection_string, app_dir):
    """A host that replays every episode in full (no extended sessions) runs the orchestrator's code again each
    time: the replayed calls stay hidden."""
    h = HostProcess(app_dir, connection_string, "Rep" + uuid.uuid4().hex[:12],
                    env={"DURAFUNC_EXTENDED_SESSIONS": "0"}).wait_ready()
    try:
        status, _ = run(h, "chatty")
        assert status["runtimeStatus"] == "Completed"
        wait_log(h, r"chatty: got TWO")
        time.sleep(0.3)
        log = h.log()
    finally:
        h.stop()
    assert log.count("chatty: begins") == 1 and log.count("chatty: got ONE") == 1 and log.count("chatty: got TWO") == 1


def test_show_replay_logs_shows_them(connection_string, app_dir):
    # with extended sessions an orchestrator's code does not run again for the events it has seen: replays are
    # what a host without them (or after a session was dropped) does, so this host runs without them
    h = HostProcess(app_dir, connection_string, "Rep" + uuid.uuid4().hex[:12], "--show-replay-logs",
                    env={"DURAFUNC_EXTENDED_SESSIONS": "0"}).wait_ready()
    try:
        status, _ = run(h, "chatty")
        assert status["runtimeStatus"] == "Completed"
        wait_log(h, r"chatty: got TWO")
        log = h.log()
    finally:
        h.stop()
    assert log.count("chatty: begins") == 3 and log.count("chatty: got ONE") == 2 and log.count("chatty: got TWO") == 1


def test_a_failure_is_logged_once_with_the_users_traceback(host):
    """A fan-out whose second activity fails: the activity's failure and the orchestrator's, each once; the
    episodes that replay the failure while the others finish are not logged as new failed runs."""
    status, iid = run(host, "fan_fail")
    assert status["runtimeStatus"] == "Failed"
    deadline = time.monotonic() + 20                     # all four activities ran to their end
    while len([r for r in runs(host.log(), "maybe_fail", iid) if r[2]]) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)                                      # and whatever episodes their results caused
    log = host.log()
    assert len([r for r in runs(log, "maybe_fail", iid) if r[2]]) == 4
    failed_activities = [r for r in runs(log, "maybe_fail", iid) if r[2] == "Failed"]
    assert len(failed_activities) == 1
    block = log[log.index(f"Executed 'Functions.maybe_fail' (Failed, Id={failed_activities[0][1]}"):]
    assert block.splitlines()[1:3] == ["Result: Failure", "Exception: ValueError: activity one refuses"]
    assert re.match(r'Stack: File ".*function_app\.py", line \d+, in maybe_fail$', block.splitlines()[3])
    orchestrator = runs(log, "fan_fail", iid)
    assert [outcome for _, _, outcome in orchestrator].count("Failed") == 1
    assert "Exception: Exception: Activity function 'maybe_fail' failed:  ValueError: activity one refuses\n" in log
    assert "$OutOfProcData$" not in log


def test_an_orchestrator_that_raises(host):
    status, iid = run(host, "gives_up")
    assert status["runtimeStatus"] == "Failed" and "the orchestrator gives up" in status["output"]
    [(_, run_id, outcome)] = [r for r in runs(host.log(), "gives_up", iid) if r[2] == "Failed"]
    block = host.log()[host.log().index(f"Executed 'Functions.gives_up' (Failed, Id={run_id}"):].splitlines()
    assert block[1:3] == ["Result: Failure", "Exception: RuntimeError: the orchestrator gives up"]
    assert re.match(r'Stack: File ".*function_app\.py", line \d+, in gives_up$', block[3])


def test_entity_runs_and_a_failed_operation(host):
    status, _ = run(host, "uses_counter")
    assert status["output"]["total"] >= 2 and "the counter cannot explode" in status["output"]["error"]
    m = wait_log(host, r"Entity '@counter@k' \(Functions\.Counter, Id=([0-9a-f-]{36})\): operation 'explode' "
                       r"failed: the counter cannot explode$")
    log = host.log()
    reasons = [r for r, _, _ in runs(log, "Counter")]
    assert "Entity '@counter@k': 1 operation (add)" in reasons and "Entity '@counter@k': 1 operation (explode)" \
        in reasons
    assert m.group(1) in [i for _, i, _ in runs(log, "Counter")]


def test_bindings_that_are_not_emulated_are_named(host):
    assert "Warning: function 'send_sms': binding 'twilioSms' (out) is not emulated locally; its value is dropped" \
        in host.log()
    ids = []
    for _ in range(2):
        r = host.request("POST", "/api/sms")
        assert r.status == 200 and r.text == "sent"
        ids.append(runs(host.log(), "send_sms")[-1][1])
    for i in ids:
        line = (f"Function 'send_sms' (Id={i}): binding 'message' (twilioSms) is not emulated locally; the value it "
                "was given is dropped")
        assert host.log().count(line) == 1


def test_wrong_state_operations_get_azures_answers(host):
    """The Durable HTTP API as the extension answers: 410 for a finished instance, 500 InvalidOperationException
    for a suspend of a suspended / resume of a running / rewind of a running instance, with the host's warning."""
    status, iid = run(host, "waits", until=("Running",))
    base = f"/runtime/webhooks/durabletask/instances/{iid}"
    assert host.request("POST", f"{base}/suspend?reason=hold").status == 202
    host.wait_status(base, until=("Suspended",))
    r = host.request("POST", f"{base}/suspend")
    assert r.status == 500 and r.json() == {
        "Message": "Something went wrong while processing your request",
        "ExceptionMessage": f"Cannot suspend the orchestration instance {iid} because instance is in the Suspended "
                            "state.", "ExceptionType": "System.InvalidOperationException", "StackTrace": None}
    wait_log(host, rf"WARNING: Cannot suspend orchestration instance in the Suspended state\. InstanceId: {iid}\. "
                   r"Function: waits\.")
    assert host.request("GET", base).json()["output"] == "hold"
    assert host.request("POST", f"{base}/resume?reason=back%20to%20work").status == 202
    assert host.wait_status(base, until=("Running",))["output"] == "back to work"
    r = host.request("POST", f"{base}/resume")
    assert r.status == 500 and r.json()["ExceptionMessage"] == \
        f"Cannot resume the orchestration instance {iid} because instance is in the Running state."
    r = host.request("POST", f"{base}/rewind")
    assert r.status == 500 and r.json()["ExceptionMessage"] == \
        "The rewind operation is only supported on failed orchestration instances."
    assert host.request("POST", f"{base}/raiseEvent/Go", {"x": 1}).status == 202
    assert host.wait_status(base)["runtimeStatus"] == "Completed"
    for op in ("suspend", "resume", "rewind"):
        assert host.request("POST", f"{base}/{op}").status == 410


def test_request_limits_get_json_answers_and_no_traceback(host):
    r = host.request("GET", "/api/sms", headers={"X-Big": "x" * 100_000})
    assert r.status == 431 and "Request Header Fields Too Large" in r.json()["error"] and "X-Big" in r.json()["error"]
    r = host.request("GET", "/api/" + "a" * 9000)
    assert r.status == 414 and "Request URI Too Long" in r.json()["error"]
    with socket.create_connection(("127.0.0.1", host.port)) as s:       # beyond what aiohttp parses at all
        s.sendall(b"GET /api/sms HTTP/1.1\r\nHost: x\r\nX-Huge: " + b"y" * 2_000_000 + b"\r\n\r\n")
        answer = s.recv(100)
    assert answer.startswith(b"HTTP/1.") and b" 400 " in answer
    wait_log(host, r"WARNING: Bad HTTP request refused \(400\)")
    log = host.log()
    assert "LineTooLong" not in log and "Traceback" not in log.split("Bad HTTP request refused")[-1]
    assert host.request("GET", "/admin/host/status").json()["state"] == "Running"


def test_start_new_from_the_app_folder_uses_the_hosts_record(host, app_dir, connection_string):
    """`durafunc start-new` in the app folder: the status URL of the host that runs the hub (its record, not a
    guessed port); an unknown orchestrator is refused naming the known ones."""
    hub = host.proc.args[host.proc.args.index("--task-hub-name") + 1]
    env = {**os.environ, "AzureWebJobsStorage": connection_string}
    r = subprocess.run([sys.executable, "-m", "durafunc", "start-new", "--function-name", "chatty", "--id",
                        "from-cli", "--task-hub-name", hub], cwd=app_dir, capture_output=True, text=True,
                       env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert f"Status: http://127.0.0.1:{host.port}/runtime/webhooks/durabletask/instances/from-cli" in r.stdout
    assert host.wait_status(f"/runtime/webhooks/durabletask/instances/from-cli")["runtimeStatus"] == "Completed"
    r = subprocess.run([sys.executable, "-m", "durafunc", "start-new", "--function-name", "nosuch", "--task-hub-name",
                        hub], cwd=app_dir, capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.splitlines()[-1] == (
        "Error: The function 'nosuch' doesn't exist, is disabled, or is not an orchestrator function. Additional "
        "info: The following are the known orchestrator functions: 'chatty', 'fan_fail', 'gives_up', "
        "'uses_counter', 'waits'.")


def test_user_routes_wait_until_the_host_runs(connection_string, app_dir):
    """While storage does not answer yet the engine cannot start: /admin/host/status says Initialized and user
    routes get 503; once storage answers, Running and the routes work."""
    conn, proxies = gated_connection(connection_string)
    h = HostProcess(app_dir, conn, "Gate" + uuid.uuid4().hex[:10])
    try:
        deadline = time.monotonic() + 30
        state = None
        while time.monotonic() < deadline and state is None:
            try:
                state = h.request("GET", "/admin/host/status").json()["state"]
            except OSError:
                time.sleep(0.05)
        assert state == "Initialized"
        r = h.request("POST", "/api/sms")
        assert r.status == 503 and r.json() == {"error": "Function host is not running.", "state": "Initialized"}
        assert h.request("GET", "/runtime/webhooks/durabletask/instances").status == 503
        assert "Host started" not in h.log()
        for p in proxies:
            p.open()
        h.wait_ready()
        assert h.request("GET", "/admin/host/status").json()["state"] == "Running"
        assert h.request("POST", "/api/sms").status == 200
    finally:
        h.stop()
        for p in proxies:
            p.close()
