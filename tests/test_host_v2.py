"""`durafunc start` on a v2 app (with a blueprint), driven over HTTP only."""
from __future__ import annotations

import time

import pytest

from hostutil import HERE, HostProcess

APP = HERE / "hostapps" / "v2app"


@pytest.fixture(scope="module")
def host(connection_string):
    import uuid
    h = HostProcess(APP, connection_string, "V2" + uuid.uuid4().hex[:12]).wait_ready()
    yield h
    h.stop()


def start(host, name, body=None):
    r = host.request("POST", f"/api/orchestrators/{name}", body)
    assert r.status == 202, r.text
    payload = r.json()
    assert r.headers["Location"] == payload["statusQueryGetUri"]
    return payload


def test_function_listing_and_status(host):
    log = host.log()
    assert "Functions:" in log
    assert f"http_start: [POST,GET] http://localhost:{host.port}/api/orchestrators/{{functionName}}" in log
    assert "chaining: orchestrationTrigger" in log and "shout: activityTrigger" in log
    status = host.request("GET", "/admin/host/status").json()
    assert status["state"] == "Running" and "shout" in status["functions"]


def test_chaining_with_blueprint_activity(host):
    p = start(host, "chaining")
    s = host.wait_status(p["statusQueryGetUri"])
    assert s["runtimeStatus"] == "Completed", s
    assert s["output"] == ["Hello Tokyo!", "Hello Seattle!", "LONDON!"]


def test_fan_out_fan_in(host):
    p = start(host, "fan_out", 25)
    s = host.wait_status(p["statusQueryGetUri"])
    assert s["output"] == sum(i * 2 for i in range(25))


def test_human_interaction_via_send_event_uri(host):
    p = start(host, "approval", 60)
    host.wait_status(p["statusQueryGetUri"], until=("Running",))
    url = p["sendEventPostUri"].replace("{eventName}", "Approval")
    r = host.request("POST", url, "yes")
    assert r.status == 202, r.text
    s = host.wait_status(p["statusQueryGetUri"])
    assert s["output"] == {"approved": "yes"}


def test_monitor_with_timers(host):
    p = start(host, "monitor")
    s = host.wait_status(p["statusQueryGetUri"], timeout=20)
    assert s["output"] == 3
    hist = host.request("GET", p["statusQueryGetUri"] + "&showHistory=true").json()["historyEvents"]
    assert sum(1 for e in hist if e["EventType"] == "TimerFired") == 2


def test_terminate_and_purge(host):
    p = start(host, "forever")
    host.wait_status(p["statusQueryGetUri"], until=("Running",))
    r = host.request("POST", p["terminatePostUri"].replace("{text}", "stop"))
    assert r.status == 202
    s = host.wait_status(p["statusQueryGetUri"])
    assert s["runtimeStatus"] == "Terminated" and s["output"] == "stop"
    r = host.request("DELETE", p["purgeHistoryDeleteUri"])
    assert r.status == 200 and r.json() == {"instancesDeleted": 1}
    assert host.request("GET", p["statusQueryGetUri"]).status == 404


def test_wait_for_completion_or_check_status(host):
    r = host.request("POST", "/api/wait/fan_out", 5)
    assert r.status == 200, r.text
    assert r.json() == 20


def test_plain_http_route_params_query_headers_settings(host):
    r = host.request("GET", "/api/greet/Ann/2?punct=?", headers={"x-who": "tester"})
    assert r.status == 200
    assert r.json() == {"text": "Howdy Ann? Howdy Ann?", "who": "tester"}
    assert host.request("GET", "/api/greet/Ann/notanint").status == 404
    assert host.request("POST", "/api/greet/Ann").status == 405
    assert host.request("GET", "/api/nothing").status == 204
    assert host.request("GET", "/api/no/such/route").status == 404


def test_user_error_is_500_and_host_keeps_serving(host):
    r = host.request("GET", "/api/boom")
    assert r.status == 500 and "user code exploded" in r.json()["error"]
    assert host.request("GET", "/api/greet/x").status == 200


def test_bad_inputs_get_4xx_json(host):
    r = host.request("POST", "/runtime/webhooks/durabletask/orchestrators/chaining", raw=b"{not json",
                     headers={"Content-Type": "application/json"})
    assert r.status == 400 and "Invalid JSON" in r.json()["ExceptionMessage"]
    r = host.request("POST", "/runtime/webhooks/durabletask/orchestrators/nope")
    assert r.status == 400 and "doesn't exist" in r.json()["ExceptionMessage"]
    r = host.request("GET", "/runtime/webhooks/durabletask/instances/unknown-id-123")
    assert r.status == 404
    r = host.request("POST", "/runtime/webhooks/durabletask/orchestrators/chaining/bad%23id")
    assert r.status == 400 and "invalid characters" in r.json()["ExceptionMessage"]
    r = host.request("POST", "/runtime/webhooks/durabletask/orchestrators/chaining/" + "x" * 101)
    assert r.status == 400 and "100 characters" in r.json()["ExceptionMessage"]
    r = host.request("POST", "/runtime/webhooks/durabletask/instances/unknown-id-123/raiseEvent/E", {"a": 1})
    assert r.status == 404
    assert host.request("GET", "/api/greet/still-alive").status == 200


def test_activity_output_not_json_and_unknown_activity(host):
    s = host.wait_status(start(host, "not_json")["statusQueryGetUri"])
    assert s["runtimeStatus"] == "Failed"
    assert "Activity function 'returns_object' failed:  ValueError: activity trigger output must be json " \
           "serializable" in s["output"]
    s = host.wait_status(start(host, "calls_missing")["statusQueryGetUri"])
    assert s["runtimeStatus"] == "Failed"
    assert "The function 'no_such_activity' doesn't exist, is disabled, or is not an activity function" in s["output"]


def test_purge_of_running_instance_is_refused(host):
    p = start(host, "forever")
    host.wait_status(p["statusQueryGetUri"], until=("Running",))
    r = host.request("DELETE", p["purgeHistoryDeleteUri"])
    assert r.status == 409 and "terminate it first" in r.json()["ExceptionMessage"]
    assert host.request("GET", p["statusQueryGetUri"]).json()["runtimeStatus"] == "Running"


def test_entities_through_the_sdk_client_and_http_api(host):
    key = "k" + str(time.monotonic_ns())
    s = host.wait_status(start(host, "counting", key)["statusQueryGetUri"])
    assert s["runtimeStatus"] == "Completed" and s["output"] == 3
    assert host.request("POST", f"/api/counter/{key}", 4).status == 202
    deadline = time.monotonic() + 10
    body = None
    while time.monotonic() < deadline:
        body = host.request("GET", f"/api/counter/{key}").json()
        if body["state"] == 7:
            break
        time.sleep(0.05)
    assert body == {"exists": True, "state": 7}
    r = host.request("GET", f"/runtime/webhooks/durabletask/entities/Counter/{key}")
    assert r.status == 200 and r.json() == 7
    assert host.request("GET", "/runtime/webhooks/durabletask/entities/Counter/nobody").status == 404
    listing = host.request("GET", "/runtime/webhooks/durabletask/entities/Counter?fetchState=true").json()
    assert {"entityId": {"name": "counter", "key": key}, "state": 7}.items() <= \
        next(e for e in listing if e["entityId"]["key"] == key).items()
