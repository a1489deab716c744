"""Storage trouble is an answer, not a crash: `durafunc start` while Azurite is down (503 with a JSON body and
Retry-After, no tracebacks, everything done once it is back), and a task hub deleted under a running host
(said once, the engine stops, the API says why)."""
from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from durafunc.azurite import AzuriteConfig, ManagedAzurite, find_binary
from durafunc.storage.taskhub import TaskHub
from hostutil import HERE, HostProcess, free_port

REPO = Path(__file__).resolve().parent.parent
APP = HERE / "hostapps" / "v2app"
API = "/runtime/webhooks/durabletask"


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_storage_down_is_a_503_with_json_and_nothing_is_lost(tmp_path):
    cfg = AzuriteConfig(blob_port=free_port(), queue_port=free_port(), table_port=free_port(), in_memory=False,
                        location=str(tmp_path / "data"))
    az = ManagedAzurite(cfg, tmp_path, binary=find_binary(REPO))
    conn = az.start()
    host = HostProcess(APP, conn, "OutageApi", "--worker-id", "outage").wait_ready()
    try:
        first = host.request("POST", f"{API}/orchestrators/chaining")
        assert first.status == 202, first.text
        host.wait_status(first.json()["statusQueryGetUri"], 30)
        az.stop()
        started = host.request("POST", f"{API}/orchestrators/chaining")
        assert started.status == 503, started.text
        assert started.headers["Retry-After"] and int(started.headers["Retry-After"]) > 0
        assert started.headers["Content-Type"].startswith("application/json")
        assert "unavailable" in started.json()["ExceptionMessage"]
        status = host.request("GET", first.json()["statusQueryGetUri"])
        assert status.status == 503 and status.json()["ExceptionMessage"]
        # the app's own starter: its durable client got a 503, so the function's caller does too
        user = host.request("POST", "/api/orchestrators/chaining")
        assert user.status == 503, user.text
        assert "storage is unavailable" in user.json()["error"]
        az.start()
        after = wait_until(lambda: (r := host.request("POST", f"{API}/orchestrators/chaining")).status == 202 and r,
                           30, "starts to work again")
        done = host.wait_status(after.json()["statusQueryGetUri"], 60)
        assert done["runtimeStatus"] == "Completed" and done["output"] == ["Hello Tokyo!", "Hello Seattle!",
                                                                          "LONDON!"]
        log = host.log()
        assert "Traceback" not in log, log[-4000:]
        assert "Server got itself in trouble" not in log
    finally:
        host.stop()
        az.stop()


def test_a_hub_deleted_under_a_running_host_is_said_once_and_its_engine_stops(connection_string, hub_name):
    host = HostProcess(APP, connection_string, hub_name, "--worker-id", "deleted").wait_ready()
    try:
        first = host.request("POST", f"{API}/orchestrators/chaining")
        assert first.status == 202
        host.wait_status(first.json()["statusQueryGetUri"], 30)

        async def delete():
            hub = TaskHub(connection_string, hub_name, 4)
            try:
                assert await hub.delete()
            finally:
                await hub.close()
        asyncio.run(delete())
        wait_until(lambda: "was deleted" in host.log(), 30, "the host to notice")
        time.sleep(3)                 # a few more rounds of its loops: nothing more is said
        log = host.log()
        assert log.count("was deleted") == 1, log[-3000:]
        assert "ContainerNotFound" not in log and "Traceback" not in log, log[-3000:]
        after = host.request("POST", f"{API}/orchestrators/chaining")
        assert after.status == 503 and "was deleted" in after.json()["ExceptionMessage"], after.text
        assert host.proc.poll() is None                         # the host itself keeps serving
        assert host.request("GET", "/api/greet/x").status == 200
    finally:
        host.stop()


def remote_looking(ports: dict) -> str:
    """A connection string to 127.0.0.2: loopback, but not what `durafunc start` manages an Azurite for."""
    return ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey="
            "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
            f"BlobEndpoint=http://127.0.0.2:{ports['blob_port']}/devstoreaccount1;"
            f"QueueEndpoint=http://127.0.0.2:{ports['queue_port']}/devstoreaccount1;"
            f"TableEndpoint=http://127.0.0.2:{ports['table_port']}/devstoreaccount1;")


def test_a_host_started_while_storage_is_down_waits_for_it(tmp_path):
    ports = dict(blob_port=free_port(), queue_port=free_port(), table_port=free_port())
    cfg = AzuriteConfig(**ports, in_memory=True, host="0.0.0.0")
    az = ManagedAzurite(cfg, tmp_path, binary=find_binary(REPO))
    host = HostProcess(APP, remote_looking(ports), "LateStorage", "--worker-id", "late")
    try:
        wait_until(lambda: "is unavailable; waiting for it" in host.log() or host.proc.poll() is not None, 20,
                   "the host to say it waits")
        assert host.proc.poll() is None
        az.start()
        host.wait_ready(30)
        r = host.request("POST", f"{API}/orchestrators/chaining")
        assert r.status == 202
        assert host.wait_status(r.json()["statusQueryGetUri"], 30)["runtimeStatus"] == "Completed"
        log = host.log()
        assert log.count("is unavailable; waiting for it") == 1 and "Traceback" not in log, log[-3000:]
    finally:
        host.stop()
        az.stop()


def test_a_host_whose_storage_never_answers_stops_in_one_line(tmp_path):
    conn = remote_looking(dict(blob_port=free_port(), queue_port=free_port(), table_port=free_port()))
    host = HostProcess(APP, conn, "NoStorage", "--worker-id", "none", "--timeout", "3")
    try:
        assert host.proc.wait(30) == 1
        log = host.log()
        errors = [line for line in log.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and "did not start within 3 seconds" in errors[0] and "storage at" in errors[0], log
        assert "Traceback" not in log, log
    finally:
        host.stop()
