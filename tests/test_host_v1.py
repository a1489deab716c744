"""`durafunc start` on a v1 (function.json) app, driven over HTTP only."""
from __future__ import annotations

import json
import uuid

import pytest

from hostutil import HERE, HostProcess

APP = HERE / "hostapps" / "v1app"


@pytest.fixture(scope="module")
def host(connection_string):
    h = HostProcess(APP, connection_string, "V1" + uuid.uuid4().hex[:12]).wait_ready()
    yield h
    h.stop()


def start(host, name, body=None):
    r = host.request("POST", f"/api/orchestrators/{name}", body)
    assert r.status == 202, r.text
    return r.json()


def test_broken_function_reported_others_loaded(host):
    log = host.log()
    assert "Broken/function.json: invalid JSON" in log
    assert "WeirdBinding/function.json: bindings[1] ('x'): unknown binding type 'carrierPigeon'" in log
    assert "Chain: orchestrationTrigger" in log and "Hello: activityTrigger" in log


def test_chain_with_relative_import_and_app_setting(host):
    s = host.wait_status(start(host, "Chain")["statusQueryGetUri"])
    assert s["runtimeStatus"] == "Completed"
    assert s["output"] == ["Hello Tokyo!", "Hello Seattle!", "Hello London!"]


def test_fan_out(host):
    s = host.wait_status(start(host, "FanOut", ["x", "y"])["statusQueryGetUri"])
    assert s["output"] == ["Hello x!", "Hello y!"]


def test_event_and_status_listing(host):
    p = start(host, "Approval")
    host.wait_status(p["statusQueryGetUri"], until=("Running",))
    r = host.request("POST", p["sendEventPostUri"].replace("{eventName}", "Approval"), {"ok": True})
    assert r.status == 202
    s = host.wait_status(p["statusQueryGetUri"])
    assert s["output"] == {"decision": {"ok": True}}
    listing = host.request("GET", "/runtime/webhooks/durabletask/instances/?runtimeStatus=Completed").json()
    assert p["id"] in {i["instanceId"] for i in listing}
    r = host.request("POST", p["sendEventPostUri"].replace("{eventName}", "Approval"), {"ok": True})
    assert r.status == 410


def test_out_binding_context_and_route_constraint(host):
    r = host.request("POST", "/api/echo/42", {"a": 1})
    assert r.status == 201
    assert r.json() == {"id": 42, "body": {"a": 1}, "fn": "Echo"}
    assert host.request("POST", "/api/echo/abc", {"a": 1}).status == 404


def test_enable_auth_requires_keys(connection_string, tmp_path):
    h = HostProcess(APP, connection_string, "V1A" + uuid.uuid4().hex[:12], "--enable-auth").wait_ready()
    try:
        assert h.request("POST", "/api/echo/1", {"a": 1}).status == 401
        keys = json.loads((APP / ".durafunc" / "keys.json").read_text())
        key = next(iter(keys["functionKeys"].values()))
        assert h.request("POST", f"/api/echo/1?code={key}", {"a": 1}).status == 201
        assert h.request("POST", "/api/echo/1", {"a": 1}, headers={"x-functions-key": key}).status == 201
        # anonymous functions stay open
        assert h.request("POST", "/api/orchestrators/Chain").status == 202
    finally:
        h.stop()


def test_functions_filter_disabled_and_cors(connection_string):
    h = HostProcess(APP, connection_string, "V1F" + uuid.uuid4().hex[:12], "--functions", "Chain Hello HttpStart",
                    "FanOut", "--cors", "http://app.test",
                    env={"AzureWebJobs.FanOut.Disabled": "true"}).wait_ready()
    try:
        log = h.log()
        assert "Chain: orchestrationTrigger" in log and "Hello: activityTrigger" in log
        assert "Approval" not in log and "Echo" not in log
        assert "Function FanOut is disabled." in log
        r = h.request("OPTIONS", "/api/orchestrators/Chain",
                      headers={"Origin": "http://app.test", "Access-Control-Request-Method": "POST"})
        assert r.status == 204 and r.headers["Access-Control-Allow-Origin"] == "http://app.test"
        r = h.request("POST", "/api/orchestrators/Chain", headers={"Origin": "http://evil.test"})
        assert r.status == 202 and "Access-Control-Allow-Origin" not in r.headers
    finally:
        h.stop()
