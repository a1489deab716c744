"""The dashboard in a real browser: headless Chromium (Debian's `chromium`, installed by `make test`) driven by
Playwright. Open the list, find an instance, open it, see its timeline and events, raise an event from the page
and see the instance complete, terminate one; the list refreshes itself; 10,000 instances page quickly.

Screenshots go to tests/screenshots/ (git-ignored); docs/dashboard.png in the README is one of them."""
from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from dashutil import Client, wait_for
from hostutil import HostProcess, free_port

HERE = Path(__file__).resolve().parent
APP = HERE / "hostapps" / "dashapp"
SHOTS = HERE / "screenshots"
WEBHOOK = "/runtime/webhooks/durabletask"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str:
    path = os.environ.get("DURAFUNC_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    assert os.path.exists(path), "chromium is not installed: run 'make test' (it installs Debian's chromium)"
    return path


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    SHOTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    from playwright.sync_api import expect
    expect.set_options(timeout=20_000)         # live refreshes come every 1-5 s; a busy CI machine is slower
    context = browser.new_context(viewport={"width": 1400, "height": 900}, locale="en-US", timezone_id="UTC")
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.set_default_timeout(20_000)
    yield pg
    context.close()
    assert errors == [], errors                  # no script error, no failed asset, no CSP violation


@pytest.fixture(scope="module")
def host(connection_string, tmp_path_factory):
    app = tmp_path_factory.mktemp("browser") / "app"
    shutil.copytree(APP, app, ignore=shutil.ignore_patterns(".durafunc", "__pycache__"))
    h = HostProcess(app, connection_string, "Br" + uuid.uuid4().hex[:12]).wait_ready()
    yield h
    h.stop()


def start(h, name: str, body=None, iid: str | None = None) -> str:
    r = h.request("POST", f"/api/orchestrators/{name}" + (f"?id={iid}" if iid else ""), body)
    assert r.status == 202, r.text
    return r.json()["id"]


def runtime_status(h, iid: str) -> str | None:
    r = h.request("GET", f"{WEBHOOK}/instances/{iid}")
    return r.json()["runtimeStatus"] if r.status in (200, 202) else None


def test_find_an_instance_open_it_and_raise_an_event_until_it_completes(host, page):
    from playwright.sync_api import expect
    tag = uuid.uuid4().hex[:6]
    iid = f"approve-{tag}"
    for _ in range(4):
        start(host, "parent", 2)
    start(host, "approval", 300, iid)
    page.goto(host.base + "/")
    expect(page).to_have_url(re.compile(r"/_durafunc/$"))
    expect(page.locator("[data-count=total]")).to_have_text(re.compile(r"^\d[\d,]*$"))
    page.fill("#f-prefix", f"approve-{tag}")                   # find it
    page.click("#apply")
    rows = page.locator("table.instances tbody tr")
    expect(rows).to_have_count(1)
    page.get_by_role("link", name=iid).click()                 # open it
    expect(page.locator("#iid")).to_have_text(iid)
    expect(page.locator("#status")).to_have_text("Running")
    expect(page.locator(".tl-row.k-activity")).to_have_count(1)          # greet, done
    expect(page.locator(".tl-row.k-timer .tl-bar.st-open")).to_have_count(1)   # the timer, still open
    expect(page.locator("#events td.etype", has_text="TimerCreated")).to_have_count(1)
    result = page.locator("#events tr", has_text="TaskCompleted").locator("summary", has_text="Result")
    result.click()                                               # payloads expand
    expect(page.locator("#events tr", has_text="TaskCompleted").locator("pre")).to_have_text('Hello reviewer')
    page.screenshot(path=str(SHOTS / "instance-waiting.png"), full_page=True)

    page.locator("#act-raise-event summary").click()            # the action, then its confirmation
    expect(page.locator("#act-raise-event .confirm")).to_contain_text(iid)
    page.fill("#act-raise-event input[name=event]", "Approval")
    page.fill("#act-raise-event textarea[name=data]", '{"approved_by": "browser"}')
    page.locator("#act-raise-event button[type=submit]").click()
    expect(page.locator("#flash")).to_have_text(f"Raised event 'Approval' to instance '{iid}'.")
    page.evaluate("window.__sameDocument = true")
    expect(page.locator("#status")).to_have_text("Completed")    # the live refresh, no reload
    assert page.evaluate("window.__sameDocument") is True
    expect(page.locator("#events td.etype", has_text="EventRaised")).to_have_count(1)
    expect(page.locator("#events td.etype", has_text="TimerFired")).to_have_count(0)
    expect(page.locator("details[data-key=output] pre")).to_contain_text('"approved_by": "browser"')
    assert json.loads(host.request("GET", f"{WEBHOOK}/instances/{iid}").text)["output"]["approved"] == \
        {"approved_by": "browser"}
    episodes = page.locator("#events tr.episode").first
    expect(episodes).to_be_hidden()
    page.check("#show-episodes")
    expect(episodes).to_be_visible()
    page.screenshot(path=str(SHOTS / "instance-completed.png"), full_page=True)


def test_terminate_one_from_its_page(host, page):
    from playwright.sync_api import expect
    iid = start(host, "waits")
    wait_for(lambda: runtime_status(host, iid) == "Running", what="Running")
    page.goto(f"{host.base}/_durafunc/instance?id={iid}")
    expect(page.locator("#status")).to_have_text("Running")
    page.locator("#act-terminate summary").click()
    page.fill("#act-terminate input[name=reason]", "stopped from the browser")
    expect(page.locator("#act-terminate .confirm")).to_contain_text("cannot be resumed")
    page.locator("#act-terminate button[type=submit]").click()
    expect(page.locator("#flash")).to_have_text(f"Terminate message sent to instance '{iid}'.")
    expect(page.locator("#status")).to_have_text("Terminated")
    row = page.locator("#events tr", has_text="ExecutionTerminated")
    expect(row).to_contain_text("stopped from the browser")
    assert runtime_status(host, iid) == "Terminated"
    page.screenshot(path=str(SHOTS / "instance-terminated.png"), full_page=True)


def test_the_list_refreshes_itself_and_links_parents_and_children(host, page):
    from playwright.sync_api import expect
    tag = "live" + uuid.uuid4().hex[:6]
    page.goto(f"{host.base}/_durafunc/?prefix={tag}")
    expect(page.locator("td.empty")).to_have_text("No instances match.")
    iid = start(host, "parent", 6, f"{tag}-1")                   # started after the page was loaded
    link = page.get_by_role("link", name=iid)
    expect(link).to_be_visible()
    expect(page.locator(f"tr[data-id='{iid}'] .badge")).to_have_text("Completed")
    expect(page.locator("[data-count=Completed]")).to_have_text("1")
    expect(page.locator("[data-count=total]")).to_have_text("1")
    page.screenshot(path=str(SHOTS / "instances.png"), full_page=True)
    link.click()
    expect(page.locator("#status")).to_have_text("Completed")
    expect(page.locator(".tl-row.k-activity")).to_have_count(6)
    expect(page.locator(".tl-row.k-suborchestration")).to_have_count(2)
    page.screenshot(path=str(SHOTS / "instance-timeline.png"), full_page=True)
    page.locator("details[data-key=output]").evaluate("d => d.open = false")
    page.screenshot(path=str(SHOTS / "dashboard.png"))          # the README's picture (docs/dashboard.png)
    page.locator("a.child-link").first.click()
    expect(page.locator("#parent-link")).to_have_text(iid)
    page.locator("#parent-link").click()
    expect(page.locator("#iid")).to_have_text(iid)


def seed(conn: str, hub_name: str, n: int) -> None:
    """`n` instance rows as a host leaves them (no history needed to list them)."""
    from durafunc.storage.instances import InstanceRow
    from durafunc.storage.schema import OrchestrationStatus as S, utcnow
    from durafunc.storage.taskhub import TaskHub

    async def go():
        hub = TaskHub(conn, hub_name, 4)
        await hub.create_if_not_exists()
        now = utcnow()
        sem = asyncio.Semaphore(64)
        kinds = [S.Completed] * 8 + [S.Failed, S.Running]

        async def one(i: int) -> None:
            st = kinds[i % 10]
            row = InstanceRow(f"seed-{i:05d}", name="chain" if i % 3 else "fan_out", version="", input=str(i),
                              output="1" if st == S.Completed else None, custom_status="null", runtime_status=st,
                              created_time=now - timedelta(seconds=n - i), last_updated_time=now,
                              completed_time=None if st == S.Running else now, execution_id=uuid.uuid4().hex,
                              worker="seeder")
            async with sem:
                assert await hub.instances.insert(row)
        try:
            await asyncio.gather(*(one(i) for i in range(n)))
        finally:
            await hub.close()
    # a thread of its own: Playwright's sync API keeps an event loop in this one
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, go()).result()


def test_ten_thousand_instances_first_page_time(connection_string, page, tmp_path, capsys):
    """Reports (does not assert) how fast the first page of 10,000 instances renders; checks it is right."""
    from playwright.sync_api import expect
    n = 10_000
    hub = "Tk" + uuid.uuid4().hex[:12]
    t0 = time.perf_counter()
    seed(connection_string, hub, n)
    seeded = time.perf_counter() - t0
    port = free_port()
    log = tmp_path / "dashboard.log"
    proc = subprocess.Popen([sys.executable, "-m", "durafunc", "dashboard", "--port", str(port), "--task-hub-name",
                             hub], cwd=tmp_path, env={**os.environ, "AzureWebJobsStorage": connection_string},
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "Press Ctrl+C" in log.read_text() or proc.poll() is not None, what="the dashboard")
        assert proc.poll() is None, log.read_text()
        client, base = Client(port), f"http://127.0.0.1:{port}"
        first = client.get("/_durafunc/")
        assert first.ids() == [f"seed-{i:05d}" for i in range(50)]
        server = []
        for _ in range(5):
            t = time.perf_counter()
            assert client.get("/_durafunc/").status == 200
            server.append(time.perf_counter() - t)
        t = time.perf_counter()
        page.goto(base + "/_durafunc/")
        expect(page.locator("table.instances tbody tr")).to_have_count(50)
        browser_s = time.perf_counter() - t
        nav = page.evaluate("performance.getEntriesByType('navigation')[0].toJSON()")
        expect(page.locator("[data-count=total]")).to_have_text("10,000", timeout=30_000)
        counts_s = time.perf_counter() - t
        expect(page.locator("[data-count=Failed]")).to_have_text("1,000")
        page.locator("#next-page").click()
        expect(page.locator("table.instances tbody tr").first).to_have_attribute("data-id", "seed-00050")
        page.goto(base + "/_durafunc/?status=Running")
        expect(page.locator("table.instances tbody tr")).to_have_count(50)
        assert all(int(i.split("-")[1]) % 10 == 9 for i in page.locator("tr[data-id]").evaluate_all(
            "rows => rows.map(r => r.dataset.id)"))
    finally:
        page.goto("about:blank")             # no refresh of the page may hit the server while it stops
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    figures = {"instances": n, "seeded_s": round(seeded, 2),
               "first_page_server_ms_median": round(statistics.median(server) * 1000, 1),
               "first_page_browser_ms": round(browser_s * 1000, 1),
               "first_page_dom_content_loaded_ms": round(nav["domContentLoadedEventEnd"], 1),
               "counts_of_10000_shown_ms": round(counts_s * 1000, 1)}
    (SHOTS / "timings.json").write_text(json.dumps(figures, indent=2) + "\n")
    with capsys.disabled():
        print(f"\n[dashboard] first page of {n:,} instances: server {figures['first_page_server_ms_median']} ms "
              f"(median of 5), in the browser {figures['first_page_browser_ms']} ms (DOMContentLoaded "
              f"{figures['first_page_dom_content_loaded_ms']} ms); counts by status shown after "
              f"{figures['counts_of_10000_shown_ms']} ms")
