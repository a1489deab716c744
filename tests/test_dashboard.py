"""The dashboard over HTTP on a real `durafunc start` (and `durafunc dashboard`): pages, filters, paging,
counts, the instance page, every action with its CSRF guard, entities, the hub, `/` and routePrefix ""."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest

from dashutil import Client, wait_for
from hostutil import HostProcess, free_port

HOSTAPPS = Path(__file__).parent / "hostapps"
APP = HOSTAPPS / "dashapp"
WEBHOOK = "/runtime/webhooks/durabletask"


@pytest.fixture(scope="module")
def host(connection_string, tmp_path_factory):
    app = tmp_path_factory.mktemp("dash") / "app"
    shutil.copytree(APP, app, ignore=shutil.ignore_patterns(".durafunc", "__pycache__"))
    hub = "Da" + uuid.uuid4().hex[:12]
    h = HostProcess(app, connection_string, hub).wait_ready()
    h.app, h.hub, h.conn = app, hub, connection_string
    h.client = Client(h.port)
    yield h
    h.stop()


def start(h, name: str, body=None, iid: str | None = None) -> str:
    r = h.request("POST", f"/api/orchestrators/{name}" + (f"?id={quote(iid)}" if iid else ""), body)
    assert r.status == 202, r.text
    return r.json()["id"]


def status(h, iid: str) -> str | None:
    r = h.request("GET", f"{WEBHOOK}/instances/{quote(iid, safe='')}")
    return r.json()["runtimeStatus"] if r.status in (200, 202) else None


def wait_status(h, iid: str, *wanted: str) -> str:
    return wait_for(lambda: status(h, iid) in wanted and status(h, iid), what=f"{iid} in {wanted}")


@pytest.fixture(scope="module")
def batch(host):
    """25 instances with ids `B-00`..: 20 completed `parent`, 5 `waits` running."""
    prefix = "B" + uuid.uuid4().hex[:6]
    ids = [f"{prefix}-{i:02d}" for i in range(25)]
    for i, iid in enumerate(ids):
        start(host, "waits" if i % 5 == 4 else "parent", 1, iid)
    for i, iid in enumerate(ids):
        wait_status(host, iid, "Running" if i % 5 == 4 else "Completed")
    return prefix, ids


def test_root_and_prefix_lead_to_the_dashboard(host):
    c = host.client
    r = c.get("/")
    assert r.status == 302 and r.location == "/_durafunc/"
    assert c.get("/_durafunc").location == "/_durafunc/"
    page = c.get("/_durafunc/")
    assert page.status == 200 and f'id="hub-name">{host.hub}<' in page.text
    assert "Content-Security-Policy" in page.headers and page.headers["X-Frame-Options"] == "DENY"
    for path, marker in (("/_durafunc/entities", "<h1>Entities</h1>"), ("/_durafunc/hub", f"Task hub {host.hub}")):
        p = c.get(path)
        assert p.status == 200 and marker in p.text, path
    missing = c.get("/_durafunc/nothing/here")
    assert missing.status == 404 and "There is no dashboard page at /_durafunc/nothing/here" in missing.text
    assert host.request("GET", "/api/no-such-route").json()["error"].startswith("No function matches")
    for asset, ctype in (("dashboard.css", "text/css"), ("dashboard.js", "javascript"), ("favicon.svg", "svg")):
        r = c.get(f"/_durafunc/static/{asset}")
        assert r.status == 200 and ctype in r.headers["Content-Type"], asset


def test_paging_follows_the_continuation_token_forward_and_back(host, batch):
    prefix, ids = batch
    c = host.client
    pages, url = [], f"/_durafunc/?prefix={prefix}&top=10"
    while url:
        page = c.get(url if url.startswith("/") else "/_durafunc/" + url)
        assert page.status == 200
        pages.append(page)
        url = page.link("next-page")
    assert [len(p.ids()) for p in pages] == [10, 10, 5]
    assert [i for p in pages for i in p.ids()] == ids                    # each once, in id order
    assert "Page 3 · 5 shown" in pages[2].text
    back = c.get("/_durafunc/" + pages[2].link("prev-page"))
    assert back.ids() == ids[10:20] and "Page 2" in back.text
    first = c.get("/_durafunc/" + back.link("prev-page"))
    assert first.ids() == ids[:10] and first.link("prev-page") is None
    assert c.get("/_durafunc/" + pages[2].link("first-page")).ids() == ids[:10]
    partial = c.get(f"/_durafunc/partial/instances?prefix={prefix}&top=10")
    assert partial.ids() == ids[:10] and "<html" not in partial.text


def test_filters_by_status_name_created_range_and_prefix(host, batch):
    prefix, ids = batch
    c = host.client
    waiting = [i for n, i in enumerate(ids) if n % 5 == 4]
    assert c.get(f"/_durafunc/?prefix={prefix}&status=Running").ids() == waiting
    assert c.get(f"/_durafunc/?prefix={prefix}&status=Running&status=Completed&top=200").ids() == ids
    assert c.get(f"/_durafunc/?prefix={prefix}&name=wai&top=200").ids() == waiting
    assert len(c.get(f"/_durafunc/?prefix={prefix}&name=parent&top=200").ids()) == 20
    assert c.get(f"/_durafunc/?prefix={prefix}-0&top=200").ids() == ids[:10]
    assert c.get(f"/_durafunc/?prefix={prefix}&from=2000-01-01T00:00:00&top=200").ids() == ids
    late = c.get(f"/_durafunc/?prefix={prefix}&from=2999-01-01T00:00:00")
    assert late.ids() == [] and "No instances match." in late.text
    assert c.get(f"/_durafunc/?prefix={prefix}&to=2000-01-01T00:00").ids() == []
    counts = c.get(f"/_durafunc/api/counts?prefix={prefix}").json()
    assert counts["total"] == 25 and counts["complete"] is True
    assert counts["counts"]["Completed"] == 20 and counts["counts"]["Running"] == 5
    assert c.get(f"/_durafunc/api/counts?prefix={prefix}&name=wait").json()["total"] == 5
    bad = c.get("/_durafunc/?status=Sleeping")
    assert bad.status == 400 and "unknown runtime status &#39;Sleeping&#39;" in bad.text
    bad = c.get("/_durafunc/?from=yesterday")
    assert bad.status == 400 and "created from: &#39;yesterday&#39; is not a date" in bad.text
    assert c.get("/_durafunc/?top=0").status == 400
    assert c.get("/_durafunc/api/counts?from=nope").json()["error"].startswith("created from")


def test_instance_page_timeline_events_and_links(host):
    c = host.client
    iid = start(host, "parent", 3)
    wait_status(host, iid, "Completed")
    page = c.get(f"/_durafunc/instance?id={iid}")
    assert page.status == 200 and 'id="status">Completed<' in page.text
    assert page.count('class="tl-row k-activity"') == 3 and page.count('class="tl-row k-suborchestration"') == 2
    for event_type in ("ExecutionStarted", "TaskScheduled", "TaskCompleted", "SubOrchestrationInstanceCreated",
                       "SubOrchestrationInstanceCompleted", "ExecutionCompleted"):
        assert f'<td class="etype">{event_type}</td>' in page.text, event_type
    assert '&#34;doubled&#34;: [\n    0,\n    2,\n    4\n  ]' in page.text        # the output, as JSON
    children = [l for l in page.text.split('class="child-link" href="')[1:]]
    assert len(children) == 2
    child_url = children[0].split('"')[0].replace("&amp;", "&")
    child = c.get(child_url)
    assert child.status == 200 and f'id="parent-link" href="/_durafunc/instance?id={quote(iid, safe="")}"' in child.text
    assert 'class="tl-row k-activity"' in child.text
    live = c.get(f"/_durafunc/partial/instance?id={iid}")
    assert live.status == 200 and 'data-final="1"' in live.text and "<html" not in live.text
    missing = c.get("/_durafunc/instance?id=no-such-instance")
    assert missing.status == 404 and "No instance with ID &#39;no-such-instance&#39; found" in missing.text
    assert c.get("/_durafunc/instance").status == 400


def test_failed_instance_shows_the_failure_and_its_stack(host):
    iid = start(host, "fails", "pie")
    wait_status(host, iid, "Failed")
    page = host.client.get(f"/_durafunc/instance?id={iid}")
    assert '<section class="failure" id="failure">' in page.text
    assert "cannot handle &#39;pie&#39;" in page.text
    stack = page.text.split('<pre id="stack">')[1].split("</pre>")[0]
    assert "ValueError" in stack and "explode" in page.text
    assert 'class="tl-bar st-failed"' in page.text


def test_actions_need_the_csrf_token_and_a_same_origin(host):
    c = Client(host.port)
    iid = start(host, "waits")
    wait_status(host, iid, "Running")
    refused = c.request("POST", "/_durafunc/instance/terminate", form={"id": iid})
    assert refused.status == 403 and "Nothing was changed" in refused.text
    token = c.get(f"/_durafunc/instance?id={iid}").csrf()
    assert c.cookies.get("durafunc_csrf") == token
    evil = c.request("POST", "/_durafunc/instance/terminate", form={"id": iid, "csrf": token},
                     headers={"Origin": "http://evil.test"})
    assert evil.status == 403 and "another site" in evil.text
    other = Client(host.port)                       # another browser: its own cookie, not this token
    other.get("/_durafunc/")
    assert other.request("POST", "/_durafunc/instance/terminate", form={"id": iid, "csrf": token}).status == 403
    assert status(host, iid) == "Running"
    ok = c.request("POST", "/_durafunc/instance/terminate", form={"id": iid, "csrf": token},
                   headers={"Origin": f"http://127.0.0.1:{host.port}"})
    assert ok.status == 303
    wait_status(host, iid, "Terminated")
    assert c.request("POST", "/_durafunc/instance/explode", form={"id": iid, "csrf": token}).status == 404


def test_raise_event_suspend_resume_and_bad_json(host):
    c = Client(host.port)
    iid = start(host, "approval", 300)
    wait_for(lambda: "TimerCreated" in c.get(f"/_durafunc/instance?id={iid}").text, what="the timer")
    wait_status(host, iid, "Running")
    page = c.act(iid, "raise-event", event="Approval", data="{not json")
    assert page.flash().startswith("err: Raise event failed: the event data is not valid JSON")
    assert status(host, iid) == "Running" and "EventRaised" not in page.text
    assert c.act(iid, "raise-event", event="", data="1").flash() == "err: Raise event failed: the event needs a name"
    page = c.act(iid, "suspend", reason="coffee")
    assert page.flash() == f"ok: Suspend message sent to instance '{iid}'."
    wait_status(host, iid, "Suspended")
    c.act(iid, "resume", reason="back")
    wait_status(host, iid, "Running")
    page = c.act(iid, "raise-event", event="Approval", data='{"by": "dashboard"}')
    assert page.flash() == f"ok: Raised event 'Approval' to instance '{iid}'."
    assert page.location is None and 'id="iid">' + iid in page.text         # back on the instance page
    wait_status(host, iid, "Completed")
    out = host.request("GET", f"{WEBHOOK}/instances/{iid}").json()["output"]
    assert out == {"greeting": "Hello reviewer", "approved": {"by": "dashboard"}}
    final = c.get(f"/_durafunc/instance?id={iid}")
    for t in ("ExecutionSuspended", "ExecutionResumed", "EventRaised"):
        assert f'<td class="etype">{t}</td>' in final.text, t
    assert final.flash() is None                                               # shown once
    gone = c.act(iid, "raise-event", event="Approval", data="1")
    assert gone.flash().startswith("err: Raise event failed: Instance with ID") and "gone" in gone.flash()


def test_rewind_restart_and_purge(host):
    c = Client(host.port)
    failed = start(host, "fails", "x")
    wait_status(host, failed, "Failed")
    assert c.act(failed, "rewind", reason="try again").flash() == f"ok: Rewind message sent to instance '{failed}'."
    wait_for(lambda: "ExecutionRewound" in c.get(f"/_durafunc/instance?id={failed}").text, what="the rewind")
    wait_status(host, failed, "Failed")
    done = start(host, "parent", 2)
    wait_status(host, done, "Completed")
    page = c.act(done, "restart")
    new = page.flash().split("as instance '")[1].split("'")[0]
    assert new != done and f'id="iid">{new}<' in page.text
    wait_status(host, new, "Completed")
    again = c.act(done, "restart", same_id="1")
    assert f"as instance '{done}'" in again.flash()
    wait_for(lambda: host.request("GET", f"{WEBHOOK}/instances/{done}").json()["createdTime"] and True)
    wait_status(host, done, "Completed")
    running = start(host, "waits")
    wait_status(host, running, "Running")
    refused = c.act(running, "purge")
    assert refused.flash().startswith(f"err: Purge failed: Instance '{running}' is Running: terminate it first")
    page = c.act(new, "purge")
    assert page.flash().startswith(f"ok: Purged instance '{new}'") and "<h1" not in page.text.split("<main>")[0]
    assert c.get(f"/_durafunc/instance?id={new}").status == 404
    assert host.request("GET", f"{WEBHOOK}/instances/{new}").status == 404


def test_entities_page_lists_state(host):
    key = "k" + uuid.uuid4().hex[:6]
    wait_status(host, start(host, "counting", key), "Completed")
    c = host.client

    def listed():
        page = c.get("/_durafunc/entities?name=Counter")
        return key in page.text and "<pre>5</pre>" in page.text and page
    page = wait_for(listed, what="the entity's state")
    assert f'href="/_durafunc/instance?id={quote(f"@counter@{key}", safe="")}"' in page.text
    assert c.get("/_durafunc/entities?name=nothing").count("No entities.") == 1


def test_hub_page_shows_owners_depths_and_poison_queues(host):
    import asyncio

    from azure.storage.queue.aio import QueueClient

    async def poison():
        async with QueueClient.from_connection_string(host.conn, f"{host.hub.lower()}-control-02-poison") as q:
            await q.create_queue()
            await q.send_message("a poisoned message")
    asyncio.run(poison())
    page = host.client.get("/_durafunc/hub")
    worker = f"-{host.port}"
    rows = page.text.split('<table class="partitions"')[1].split("</table>")[0]
    assert rows.count("leased") == 4 and rows.count(worker) == 4
    assert f"{host.hub.lower()}-workitems" in rows
    assert f"{host.hub.lower()}-control-02-poison" in page.text and "a poisoned message" in page.text


def test_standalone_dashboard_reads_the_same_hub(host, batch, tmp_path):
    prefix, ids = batch
    port = free_port()
    env = {**os.environ, "AzureWebJobsStorage": host.conn}
    log = tmp_path / "dashboard.log"
    proc = subprocess.Popen([sys.executable, "-m", "durafunc", "dashboard", "--port", str(port),
                             "--task-hub-name", host.hub], cwd=host.app, env=env, stdout=open(log, "w"),
                            stderr=subprocess.STDOUT)
    try:
        c = Client(port)
        wait_for(lambda: "Press Ctrl+C" in log.read_text() or proc.poll() is not None, what="the dashboard")
        assert proc.poll() is None, log.read_text()
        assert f"Dashboard of task hub '{host.hub}': http://localhost:{port}/_durafunc/" in log.read_text()
        assert c.get("/").location == "/_durafunc/"
        page = c.get(f"/_durafunc/?prefix={prefix}&top=200")
        assert page.ids() == ids and "standalone" in page.text
        assert c.get(f"/_durafunc/api/counts?prefix={prefix}").json()["counts"]["Running"] == 5
        running = ids[4]
        inst = c.get(f"/_durafunc/instance?id={running}")
        assert 'id="status">Running<' in inst.text
        page = c.act(running, "terminate", reason="from the standalone dashboard")
        assert page.flash() == f"ok: Terminate message sent to instance '{running}'."    # a host runs: no note
        assert f"dashboard: terminate {running}: Terminate message sent" in log.read_text()   # logged
        wait_status(host, running, "Terminated")
        wait_for(lambda: c.get("/_durafunc/api/counts?prefix=" + prefix).json()["counts"]["Terminated"] == 1,
                 what="the count of terminated instances (counts are reused for 2 s)")
        hub = c.get("/_durafunc/hub")
        assert hub.text.count("leased") == 4          # the host's leases, seen from outside
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0


def test_standalone_dashboard_errors_are_one_line(tmp_path, connection_string):
    dead = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1"
            "OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFr/+OCwAHx/YGMVwEwQ==;BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;"
            "QueueEndpoint=http://127.0.0.1:9/devstoreaccount1;TableEndpoint=http://127.0.0.1:9/devstoreaccount1;")
    r = subprocess.run([sys.executable, "-m", "durafunc", "dashboard", "--port", str(free_port())], cwd=tmp_path,
                       env={**os.environ, "AzureWebJobsStorage": dead}, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("Error: storage unavailable")
    env = {k: v for k, v in os.environ.items() if k != "AzureWebJobsStorage"}
    r = subprocess.run([sys.executable, "-m", "durafunc", "dashboard"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "No storage connection string found" in r.stderr


def test_route_prefix_empty_keeps_user_routes(connection_string, tmp_path):
    app = tmp_path / "app"
    shutil.copytree(HOSTAPPS / "dashroot", app, ignore=shutil.ignore_patterns(".durafunc", "__pycache__"))
    for disabled, root_answer in (("false", "the user's root page"), ("true", None)):
        h = HostProcess(app, connection_string, "Dr" + uuid.uuid4().hex[:12],
                        env={"AzureWebJobs.root.Disabled": disabled}).wait_ready()
        try:
            c = Client(h.port)
            r = c.get("/")
            if root_answer:
                assert r.status == 200 and r.text == root_answer
            else:
                assert r.status == 302 and r.location == "/_durafunc/"
            assert c.get("/hub").text == "the user's hub route"
            assert "<h2>Partitions</h2>" in c.get("/_durafunc/hub").text
        finally:
            h.stop()


def test_standalone_dashboard_with_auth_and_storage_going_away(tmp_path):
    """Its own Azurite, stopped under a running `durafunc dashboard --enable-auth`: 503, not a crash."""
    from durafunc.azurite import AzuriteConfig, ManagedAzurite, find_binary
    az = ManagedAzurite(AzuriteConfig(blob_port=0, queue_port=0, table_port=0, in_memory=True), tmp_path / "az",
                        binary=find_binary(Path(__file__).resolve().parent.parent))
    az.start(timeout=60)
    port = free_port()
    log = tmp_path / "dashboard.log"
    proc = None
    try:
        proc = subprocess.Popen([sys.executable, "-m", "durafunc", "dashboard", "--port", str(port), "--enable-auth",
                                 "--task-hub-name", "Gone" + uuid.uuid4().hex[:8]], cwd=tmp_path,
                                env={**os.environ, "AzureWebJobsStorage": az.connection_string},
                                stdout=open(log, "w"), stderr=subprocess.STDOUT)
        wait_for(lambda: "Press Ctrl+C" in log.read_text() or proc.poll() is not None, what="the dashboard")
        assert proc.poll() is None, log.read_text()
        assert "does not exist yet" in log.read_text() and "master key required" in log.read_text()
        import json as _json
        master = _json.loads((tmp_path / ".durafunc" / "keys.json").read_text())["masterKey"]
        c = Client(port)
        assert c.get("/_durafunc/").status == 401
        page = c.follow(c.get(f"/_durafunc/?code={master}"))
        assert page.status == 200 and "No instances match." in page.text          # a hub never used: empty
        assert c.get("/_durafunc/hub").text.count("no queue") == 5
        assert c.get("/_durafunc/instance?id=x").status == 404        # no history table: not found, no 500
        az.stop()
        down = c.get("/_durafunc/")
        assert down.status == 503 and "Storage is not reachable" in down.text and down.headers["Retry-After"] == "5"
        api = c.get("/_durafunc/api/counts")
        assert api.status == 503 and api.json()["error"].startswith("storage unavailable")
        assert proc.poll() is None                                                  # still serving
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)
        az.stop()
