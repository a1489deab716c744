"""`durafunc start` on a v2 app (with a blueprint), driven over HTTP only."""
from __future__ import annotations

import json
import re
import time
import uuid

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
    # the app's own logging, with the function name and invocation id as Core Tools shows it
    assert re.search(r"\] http_start \([0-9a-f]{8}\): Started orchestration with ID = '%s'" % p["id"], host.log())


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


# -- call_http against this host's own routes ------------------------------------------------------------

def test_call_http_get_post_errors_and_token_source(host):
    p = start(host, "http_calls", host.base)
    s = host.wait_status(p["statusQueryGetUri"])
    assert s["runtimeStatus"] == "Completed", s
    out = s["output"]
    get = out["get"]
    assert get["statusCode"] == 200 and get["headers"]["x-echo"] == "yes"
    assert "content-type" not in get["headers"]   # a content header: not in DurableHttpResponse.headers (Azure)
    echo = json.loads(get["content"])
    assert (echo["method"], echo["query"], echo["body"]) == ("GET", {"x": "1", "y": "two"}, "")
    echo = json.loads(out["post"]["content"])
    assert (echo["method"], echo["body"]) == ("POST", '{"a": [1, 2]}')
    assert echo["headers"]["content-type"] == "application/json" and echo["headers"]["x-custom"] == "yes"
    echo = json.loads(out["raw"]["content"])
    assert (echo["method"], echo["body"], echo["headers"]["content-type"]) == ("PUT", "plain words", "text/plain")
    assert out["missing"]["statusCode"] == 404
    assert out["broken"]["statusCode"] == 500 and "user code exploded" in out["broken"]["content"]
    echo = json.loads(out["token"]["content"])
    assert out["token"]["statusCode"] == 200 and "authorization" not in echo["headers"]
    assert "managed identity token for 'https://management.core.windows.net/' cannot be fetched" in host.log()
    hist = host.request("GET", p["statusQueryGetUri"] + "&showHistory=true").json()["historyEvents"]
    # the HTTP API folds each TaskScheduled into its completion: FunctionName is the TaskScheduled Name
    assert [e["FunctionName"] for e in hist if e["EventType"] == "TaskCompleted"] == ["BuiltIn::HttpActivity"] * 6


def test_call_http_polls_202_location_with_retry_after_or_the_host_json_interval(host):
    job = uuid.uuid4().hex
    with_retry = start(host, "http_async", f"{host.base}/api/jobs/{job}r?pending=1&retry=1")
    default = start(host, "http_async", f"{host.base}/api/jobs/{job}d?pending=2")
    for p in (with_retry, default):
        s = host.wait_status(p["statusQueryGetUri"])
        assert s["runtimeStatus"] == "Completed", s
        assert s["output"]["statusCode"] == 200 and s["output"]["after"] == "Hello after!"
    calls = host.wait_status(with_retry["statusQueryGetUri"])["output"]["calls"]
    assert [(c["method"], c["key"]) for c in calls] == [("POST", "secret"), ("GET", None)]
    assert calls[1]["at"] - calls[0]["at"] >= 0.9                      # Retry-After: 1
    calls = host.wait_status(default["statusQueryGetUri"])["output"]["calls"]
    assert [c["method"] for c in calls] == ["POST", "GET", "GET"]
    gaps = [b["at"] - a["at"] for a, b in zip(calls, calls[1:])]
    assert all(0.09 <= g < 5 for g in gaps), gaps                       # host.json 100 ms, not 30 s
    hist = host.request("GET", default["statusQueryGetUri"] + "&showHistory=true").json()["historyEvents"]
    assert [e["FunctionName"] for e in hist if e["EventType"] == "TaskCompleted"] == ["BuiltIn::HttpActivity",
                                                                                      "hello"]


def test_call_http_connection_refused_fails_the_orchestration(host):
    from hostutil import free_port
    p = start(host, "http_refused", f"http://127.0.0.1:{free_port()}/nobody")
    s = host.wait_status(p["statusQueryGetUri"])
    assert s["runtimeStatus"] == "Failed"
    assert "Activity function 'BuiltIn::HttpActivity' failed:  HttpRequestException: Connection refused" \
        in s["output"], s["output"]
    lines = host.log().splitlines()
    at = next(i for i, line in enumerate(lines) if f"BuiltIn::HttpActivity of instance {p['id']} failed" in line)
    assert "Connection refused" in lines[at] and not lines[at + 1:at + 2] == ["Traceback (most recent call last):"]
