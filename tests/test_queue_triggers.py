"""Queue triggers and queue output bindings under `durafunc start` (v2 and v1 apps), on the test Azurite.

Messages are put on queues and read back with the real azure-storage-queue SDK; for base64 queues the test
encodes them itself, as Azure clients do."""
from __future__ import annotations

import base64
import json
import re
import time
import uuid

import pytest
from azure.storage.queue import QueueServiceClient

from hostutil import HERE, HostProcess
from runlog import finished, wait_runs

V2 = HERE / "hostapps" / "queuev2"
V1 = HERE / "hostapps" / "queuev1"


class Queues:
    """The test's own view of the queues of one app run (names prefixed with the run's QP setting)."""

    def __init__(self, connection_string: str, prefix: str, encoding: str = "base64"):
        self.service = QueueServiceClient.from_connection_string(connection_string)
        self.prefix, self.encoding = prefix, encoding

    def client(self, name: str):
        return self.service.get_queue_client(f"{self.prefix}-{name}")

    def put(self, name: str, body: str | bytes, raw: bool = False) -> str:
        """Send a message (base64-encoded for a base64 queue unless raw); returns its id."""
        data = body.encode() if isinstance(body, str) else body
        text = base64.b64encode(data).decode() if self.encoding == "base64" and not raw else data.decode()
        q = self.client(name)
        try:
            return q.send_message(text).id
        except Exception:  # noqa: BLE001 - not created yet by the host
            q.create_queue()
            return q.send_message(text).id

    def texts(self, name: str) -> list[str]:
        """Every message of a queue, as stored (peek: they stay)."""
        try:
            return [m.content for m in self.client(name).peek_messages(max_messages=32)]
        except Exception:  # noqa: BLE001 - the queue does not exist (yet)
            return []

    def bodies(self, name: str) -> list[str]:
        texts = self.texts(name)
        return [base64.b64decode(t).decode() for t in texts] if self.encoding == "base64" else texts

    def wait(self, name: str, count: int = 1, timeout: float = 20.0, raw: bool = False) -> list[str]:
        """The bodies (the stored texts if raw) once the queue holds at least `count` messages."""
        read = self.texts if raw else self.bodies
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = read(name)
            if len(found) >= count:
                return found
            time.sleep(0.1)
        raise AssertionError(f"queue {self.prefix}-{name} has {read(name)}, expected {count} messages")


def wait_log(host, pattern: str, count: int = 1, timeout: float = 20.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.findall(pattern, host.log())
        if len(found) >= count:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{count} x {pattern!r} not in the log:\n{host.log()}")


# == v2 =======================================================================================================

@pytest.fixture(scope="module")
def v2(connection_string):
    prefix = "q" + uuid.uuid4().hex[:10]
    host = HostProcess(V2, connection_string, "QV2" + uuid.uuid4().hex[:10],
                       env={"QP": prefix, "AzureWebJobsQueueConn": connection_string}).wait_ready()
    yield host, Queues(connection_string, prefix)
    host.stop()


def test_listing_and_missing_connection_is_one_error_line(v2):
    host, _ = v2
    log = host.log()
    assert "queue_start: queueTrigger" in log and "picky: queueTrigger" in log
    errors = [line for line in log.splitlines() if "missing_connection" in line and line.startswith("Error:")]
    assert errors == ["Error: function 'missing_connection': Storage account connection string "
                      "'AzureWebJobsNoSuchSetting' does not exist. Make sure that it is a defined App Setting. "
                      "(the function does not listen)"]


def test_queue_triggered_starter_runs_an_orchestration(v2):
    host, q = v2
    q.put("start", json.dumps({"cities": ["Tokyo", "Lima"]}))
    instance_id = q.wait("started")[0]
    status = host.wait_status(f"/runtime/webhooks/durabletask/instances/{instance_id}")
    assert status["runtimeStatus"] == "Completed", status
    given = status["input"]                    # the Python SDK's client sends its input as JSON text
    assert (json.loads(given) if isinstance(given, str) else given) == {"cities": ["Tokyo", "Lima"]}
    assert status["output"] == ["Hello Tokyo!", "Hello Lima!"]
    assert sorted(q.wait("greeted", 2)) == ["Lima", "Tokyo"]        # the activity's queue output
    assert q.texts("start") == []                                     # deleted after success
    reason = f"New queue message detected on '{q.prefix}-start'."
    wait_runs(host, lambda runs: finished(runs, "Succeeded", reason_ends=reason), "queue_start")


def test_queue_message_fields(v2):
    host, q = v2
    before = time.time()
    message_id = q.put("inspect", '{"n": 1}')
    seen = json.loads(q.wait("inspected")[0])
    assert seen["type"] == "QueueMessage" and seen["id"] == message_id
    assert seen["dequeue_count"] == 1 and seen["body"] == '{"n": 1}' and seen["body_type"] == "bytes"
    assert seen["pop_receipt"]
    inserted = time.mktime(time.strptime(seen["insertion_time"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    assert abs(inserted - before) < 60 and seen["insertion_time"].endswith("+00:00")
    assert seen["expiration_time"] > seen["insertion_time"] and seen["time_next_visible"] > seen["insertion_time"]


def test_str_parameter_gets_the_text(v2):
    _, q = v2
    q.put("text", "grüße")
    assert q.wait("text-out") == ["str:grüße"]


def test_failing_function_poisons_after_five_attempts_and_the_queue_goes_on(v2):
    host, q = v2
    bad = q.put("picky", "bad-one")
    q.put("picky", "good-one")
    assert q.wait("picky-done") == ["good-one"]
    poison = q.wait("picky-poison")
    assert poison == ["bad-one"] and q.texts("picky-poison") == [base64.b64encode(b"bad-one").decode()]
    runs = wait_runs(host, lambda runs: len(finished(runs, MessageId=bad)) >= 5, "picky")
    failures = finished(runs, MessageId=bad)
    assert [(r.outcome, r.details["DequeueCount"]) for r in failures] == [("Failed", str(n)) for n in range(1, 6)]
    assert "Exception: ValueError: cannot handle bad-one (attempt 5)" in failures[-1].failure
    assert 'raise ValueError(f"cannot handle {body}' in host.log()            # the user's traceback
    assert "Moving message to queue '%s-picky-poison'" % q.prefix in host.log()
    time.sleep(0.5)
    assert q.texts("picky") == []


def test_message_that_is_not_base64_goes_to_poison_at_once(v2):
    host, q = v2
    bad = q.put("inspect", "this is not base64!", raw=True)
    assert q.wait("inspect-poison", raw=True) == ["this is not base64!"]
    assert f"message {bad}" not in host.log()          # the function was not called for it
    assert "Message decoding has failed! Check MessageEncoding settings" in host.log()
    before = len(q.bodies("inspected"))
    q.put("inspect", "fine")                   # and the queue still works
    assert [json.loads(t)["body"] for t in q.wait("inspected", before + 1)[before:]] == ["fine"]


def test_http_function_writes_a_list_of_messages(v2):
    host, q = v2
    r = host.request("POST", "/api/enqueue", ["one", "two", "three"])
    assert r.status == 200 and r.text == "queued 3"
    assert q.wait("fanout", 3) == ["one", "two", "three"]
    assert q.texts("fanout")[0] == base64.b64encode(b"one").decode()


def test_return_value_to_queue_and_http_response_from_its_own_binding(v2):
    host, q = v2
    r = host.request("POST", "/api/enqueue_one", raw=b"\x00\x01binary")
    assert r.status == 201 and r.text == "queued"
    assert [base64.b64decode(t) for t in q.texts("single")] == [b"\x00\x01binary"]


def test_output_value_of_a_wrong_type_fails_the_function(v2):
    host, q = v2
    r = host.request("POST", "/api/enqueue_bad")
    assert r.status == 500
    assert r.json()["error"] == ("Function 'enqueue_bad' failed: TypeError: unable to encode outgoing TypedData: "
                                 "unsupported type \"generic\" for Python type \"dict\" (queue output binding "
                                 "'msg')")


def test_connection_from_a_custom_app_setting(v2):
    _, q = v2
    q.put("custom", "hi")
    assert q.wait("custom-done") == ["custom:hi"]


# == v1 (function.json), host.json: messageEncoding none, maxDequeueCount 2, batchSize 4 ========================

@pytest.fixture(scope="module")
def v1(connection_string):
    prefix = "q" + uuid.uuid4().hex[:10]
    host = HostProcess(V1, connection_string, "QV1" + uuid.uuid4().hex[:10], env={"QP": prefix}).wait_ready()
    yield host, Queues(connection_string, prefix, encoding="none")
    host.stop()


def test_v1_queue_triggered_starter_with_plain_text_messages(v1):
    host, q = v1
    q.put("start", json.dumps({"cities": ["Oslo"]}))
    [instance_id] = q.wait("started")
    assert q.texts("started") == [instance_id]                      # not base64: messageEncoding is none
    status = host.wait_status(f"/runtime/webhooks/durabletask/instances/{instance_id}")
    assert status["runtimeStatus"] == "Completed" and status["output"] == ["Hello Oslo!"], status


def test_v1_queue_message_fields(v1):
    _, q = v1
    message_id = q.put("inspect", "plain words")
    seen = json.loads(q.wait("inspected")[0])
    assert (seen["id"], seen["dequeue_count"], seen["body"]) == (message_id, 1, "plain words")
    assert seen["pop_receipt"]


def test_v1_max_dequeue_count_from_host_json(v1):
    host, q = v1
    bad = q.put("fails", "doomed")
    assert q.wait("fails-poison") == ["doomed"]
    runs = wait_runs(host, lambda runs: len(finished(runs, MessageId=bad)) >= 2, "Fails")
    failures = finished(runs, MessageId=bad)
    assert [(r.outcome, r.details["DequeueCount"]) for r in failures] == [("Failed", "1"), ("Failed", "2")]
    assert "Exception: RuntimeError: always fails (doomed, attempt 2)" in failures[-1].failure
    assert "Message has reached MaxDequeueCount of 2. Moving message to queue '%s-fails-poison'." % q.prefix \
        in host.log()


def test_v1_http_function_writes_several_plain_messages(v1):
    host, q = v1
    r = host.request("POST", "/api/enqueue", ["x", "y"])
    assert r.status == 202
    assert q.wait("fanout", 2) == ["x", "y"]


def test_reload_restarts_listeners_and_shutdown_finishes_running_invocations(connection_string, tmp_path):
    import shutil
    app = tmp_path / "app"
    shutil.copytree(V2, app, ignore=shutil.ignore_patterns("__pycache__", ".durafunc"))
    prefix = "q" + uuid.uuid4().hex[:10]
    q = Queues(connection_string, prefix)
    host = HostProcess(app, connection_string, "QR" + uuid.uuid4().hex[:10], env={"QP": prefix},
                       reload=True).wait_ready()
    try:
        q.put("text", "before")
        assert q.wait("text-out") == ["str:before"]
        code = (app / "function_app.py").read_text()
        (app / "function_app.py").write_text(code.replace('out.set(f"{type(text).__name__}:{text}")',
                                                          'out.set(f"reloaded:{text}")'))
        wait_log(host, r"Reloaded \d+ functions")
        q.put("text", "after")
        assert q.wait("text-out", 2) == ["str:before", "reloaded:after"]
        wait_runs(host, lambda runs: len(finished(runs, "Succeeded")) >= 2, "as_text")
        assert len(wait_runs(host, lambda runs: True, "as_text")) == 2                    # no double run
        q.put("slow", "finish me")
        wait_log(host, "slow started")
        t0 = time.monotonic()
        assert host.stop() == 0
        assert time.monotonic() - t0 < 15
    finally:
        host.stop()
    assert q.bodies("slow-done") == ["finish me"]          # the running invocation finished before the exit
    assert q.texts("slow") == []


def test_run_a_queue_triggered_function_by_hand(v2):
    """POST /admin/functions/{name}: the input is the message body; the durableClient binding is there too."""
    host, q = v2
    texts, started = len(q.bodies("text-out")), q.bodies("started")
    assert host.request("POST", "/admin/functions/as_text", {"input": "by hand"}).status == 202
    assert q.wait("text-out", texts + 1)[texts:] == ["str:by hand"]
    r = host.request("POST", "/admin/functions/queue_start", {"input": json.dumps({"cities": ["Rome"]})})
    assert r.status == 202, r.text
    [instance_id] = q.wait("started", len(started) + 1)[len(started):]
    status = host.wait_status(f"/runtime/webhooks/durabletask/instances/{instance_id}")
    assert status["output"] == ["Hello Rome!"], status
