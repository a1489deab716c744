"""Every sample app runs under `durafunc start` and its orchestration completes with the documented output."""
from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from hostutil import HostProcess
from runlog import finished, wait_runs

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def run(connection_string, sample, path, body=None, wait_for=("Completed", "Failed", "Terminated"), then=None):
    host = HostProcess(SAMPLES / sample, connection_string, "S" + uuid.uuid4().hex[:12]).wait_ready()
    try:
        r = host.request("POST", path, body)
        assert r.status == 202, r.text
        payload = r.json()
        if then:
            then(host, payload)
        status = host.wait_status(payload["statusQueryGetUri"], timeout=30, until=wait_for)
        return status, host
    finally:
        host.stop()


def test_hello(connection_string):
    s, _ = run(connection_string, "hello", "/api/orchestrators/hello_orchestrator")
    assert s["output"] == ["Hello Tokyo", "Hello Seattle", "Hello London"]


def test_function_chaining_v1(connection_string):
    s, _ = run(connection_string, "function_chaining", "/api/orchestrators/Chain", "world")
    assert s["output"] == "Hello(Hello(Hello(world)))"


def test_fan_out_fan_in(connection_string):
    s, _ = run(connection_string, "fan_out_fan_in", "/api/orchestrators/fan_out_fan_in", 20)
    assert s["output"] == {"files": 20, "total_bytes": 24000}


def test_async_http_api(connection_string):
    seen = {}

    def poll(host, payload):
        r = host.request("GET", payload["statusQueryGetUri"])
        seen["first"] = r.status
        r = host.request("GET", f"/api/jobs/{payload['id']}")
        seen["own"] = r.json()

    s, _ = run(connection_string, "async_http_api", "/api/jobs", {"name": "report", "steps": 3}, then=poll)
    assert seen["first"] == 202 and seen["own"]["status"] in ("Running", "Pending")
    assert s["output"] == ["report:step0", "report:step1", "report:step2"]
    assert s["customStatus"] == {"completed": 3, "of": 3}


def test_monitor_v1(connection_string):
    s, _ = run(connection_string, "monitor", "/api/orchestrators/Monitor", {"id": "job-7", "interval": 1,
                                                                           "done_after": 3})
    assert s["output"] == {"job": "job-7", "checks": 3}


@pytest.mark.parametrize("approve", [True, False])
def test_human_interaction(connection_string, approve):
    def send(host, payload):
        host.wait_status(payload["statusQueryGetUri"], until=("Running",))
        if approve:
            url = payload["sendEventPostUri"].replace("{eventName}", "Approval")
            assert host.request("POST", url, "approved").status == 202

    s, _ = run(connection_string, "human_interaction", "/api/orchestrators/approval_workflow",
               {"item": "laptop", "timeout": 60 if approve else 1}, then=send)
    assert s["output"] == ("decision: approved" if approve else "escalated: laptop")


def test_order_processing_with_retries(connection_string):
    order_id = "T" + uuid.uuid4().hex[:8]
    s, _ = run(connection_string, "order_processing", "/api/orchestrators/process_order",
               {"id": order_id, "items": ["book", "pen"]})
    assert s["runtimeStatus"] == "Completed", s
    assert s["output"]["status"] == "confirmed" and s["output"]["payment_attempts"] == 3
    assert s["output"]["tracking"] == f"TRK-{order_id}"


def test_sub_orchestrations(connection_string):
    s, _ = run(connection_string, "sub_orchestrations", "/api/orchestrators/provision_all",
               ["westeurope", "eastus", "japaneast"])
    assert [r["region"] for r in s["output"]] == ["westeurope", "eastus", "japaneast"]
    assert s["output"][1]["resources"] == ["created:eastus/network", "created:eastus/vm"]


def test_eternal_continue_as_new(connection_string):
    s, _ = run(connection_string, "eternal", "/api/orchestrators/cleanup_loop", {"rounds": 3, "pause": 1})
    assert s["output"] == {"rounds": 3, "cleaned": 6}


def test_counter_entity(connection_string):
    key = "k" + uuid.uuid4().hex[:6]

    def poke(host, payload):
        assert host.request("POST", f"/api/counters/{key}", 10).status == 202

    s, host = run(connection_string, "counter_entity", f"/api/tally/{key}", then=poke)
    assert s["runtimeStatus"] == "Completed" and s["output"] in (6, 16)   # the +10 may land before or after


def test_http_call_with_the_202_polling_pattern(connection_string):
    s, host = run(connection_string, "http_call", "/api/ship", {"id": "o-7", "item": "book"})
    assert s["runtimeStatus"] == "Completed" and s["output"] == {"order": "o-7", "tracking": "TRK-o-7"}, s
    log = host.log()
    assert log.count("Executed 'Functions.shipment_status'") == 3     # polled twice while 202, then 200


def test_queue_starter(connection_string):
    host = HostProcess(SAMPLES / "queue_starter", connection_string, "S" + uuid.uuid4().hex[:12]).wait_ready()
    try:
        r = host.request("POST", "/api/orders", {"id": "42", "item": "book", "quantity": 2})
        assert r.status == 202 and r.json() == {"queued": "42"}
        s = host.wait_status("/runtime/webhooks/durabletask/instances/order-42", timeout=30)
        assert s["runtimeStatus"] == "Completed" and s["output"] == {"order": "42", "reserved": "2 x book"}, s
        reason = "New queue message detected on 'orders'."
        runs = finished(wait_runs(host, lambda runs: finished(runs, "Succeeded"), "start_order"), "Succeeded")
        assert [(r.reason, r.details["DequeueCount"]) for r in runs] == [(reason, "1")], runs
    finally:
        host.stop()


def test_blob_fan_out(connection_string):
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.blob import BlobServiceClient
    host = HostProcess(SAMPLES / "blob_fan_out", connection_string, "S" + uuid.uuid4().hex[:12]).wait_ready()
    try:
        service = BlobServiceClient.from_connection_string(connection_string)
        try:
            service.create_container("uploads")
        except ResourceExistsError:
            pass
        name = f"poem-{uuid.uuid4().hex[:8]}.txt"
        service.get_blob_client("uploads", name).upload_blob(b"the quick brown fox\njumps over\nthe lazy dog\n")
        s = host.wait_status(f"/runtime/webhooks/durabletask/instances/lines-{name}", timeout=30)
        assert s["runtimeStatus"] == "Completed" and s["output"] == {"file": name, "lines": 3, "words": 9}, s
        report = json.loads(service.get_blob_client("reports", f"{name}.json").download_blob().readall())
        assert (report["name"], report["longest"]) == (name, 1)
        assert [r["upper"] for r in report["results"]] == ["THE QUICK BROWN FOX", "JUMPS OVER", "THE LAZY DOG"]
        reason = f"New blob detected(LogsAndContainerScan): uploads/{name}"
        wait_runs(host, lambda runs: finished(runs, "Succeeded", reason_ends=reason), "start_from_upload")
    finally:
        host.stop()
