"""Every run of a timer, queue or blob triggered function is logged as Core Tools logs it, by a real `durafunc
start` writing into a pipe: `Executing 'Functions.f' (Reason='<the trigger's reason>', Id=<id>)`, the trigger's
`Trigger Details: ...`, the user's own lines under that id, `Executed 'Functions.f' (Succeeded|Failed, Id=<id>,
Duration=Nms)`, a failure with the user's exception and frames once."""
from __future__ import annotations

import base64
import json
import re
import time
import uuid
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.functions import meta
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

from durafunc.functions.queues import trigger_metadata
from durafunc.functions.triggers.base import details_time
from durafunc.functions.triggers.queue import queue_event
from durafunc.functions.triggers.timer import round_trip_time, status_time, timer_event
from hostutil import HERE, HostProcess
from runlog import LoggedRun, finished, wait_runs

APP = HERE / "hostapps" / "triggerlogapp"
STORAGE_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$")


# -- the reasons and trigger details (pure) -------------------------------------------------------------------

@pytest.fixture
def paris(monkeypatch):
    """The machine's local time zone is Europe/Paris (CET, CEST in summer)."""
    monkeypatch.setenv("TZ", "Europe/Paris")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_time_formats(paris):
    assert round_trip_time(datetime(2026, 12, 1, 20, 10, 0, 12345)) == "2026-12-01T20:10:00.0123450+01:00"
    assert round_trip_time(datetime(2026, 7, 1, 18, 10, tzinfo=timezone.utc)) == "2026-07-01T20:10:00.0000000+02:00"
    assert status_time(datetime(2026, 12, 1, 20, 15)) == "2026-12-01T20:15:00+01:00"
    assert status_time(datetime(2026, 7, 1, 20, 15, 0, 500000)) == "2026-07-01T20:15:00.5+02:00"
    assert details_time(datetime(2026, 12, 1, 19, 10, 0, 123456, tzinfo=timezone.utc)) == \
        "2026-12-01T19:10:00.123+00:00"
    assert details_time(datetime(2026, 12, 1, 20, 10, tzinfo=timezone(timedelta(hours=1)))) == \
        "2026-12-01T19:10:00.000+00:00"


def test_a_timer_event_says_when_it_fired_and_its_schedule_status(paris):
    fired = datetime(2026, 12, 1, 20, 10, 0, 4000)
    event = timer_event(datetime(2026, 12, 1, 20, 5, 0, 2500), datetime(2026, 12, 1, 20, 15), fired=fired)
    assert event.reason == "Timer fired at 2026-12-01T20:10:00.0040000+01:00"
    sent = json.loads(event.data.value)["ScheduleStatus"]
    assert event.details == "ScheduleStatus: " + json.dumps(sent, separators=(",", ":"))   # what the function got
    assert (sent["Last"], sent["Next"]) == ("2026-12-01T20:05:00.0025+01:00", "2026-12-01T20:15:00+01:00")
    assert json.loads(timer_event(None, fired, fired=fired).data.value)["ScheduleStatus"]["Last"] == \
        "0001-01-01T00:00:00"                                              # never ran: DateTime.MinValue


def test_a_queue_event_names_its_queue_and_message():
    inserted = datetime(2026, 12, 1, 19, 10, 5, tzinfo=timezone.utc)
    message = SimpleNamespace(id="5f1c", dequeue_count=3, inserted_on=inserted, expires_on=inserted,
                              next_visible_on=inserted, pop_receipt="p")
    data = meta.Datum("hello", "string")
    event = queue_event(data, trigger_metadata(message, data), "orders")
    assert event.reason == "New queue message detected on 'orders'."
    assert event.details == "MessageId: 5f1c, DequeueCount: 3, InsertedOn: 2026-12-01T19:10:05.000+00:00"


# -- a real host, through a pipe --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def app(connection_string):
    prefix = "tl" + uuid.uuid4().hex[:10]
    host = HostProcess(APP, connection_string, "TL" + uuid.uuid4().hex[:10], pipe=True,
                       env={"TP": prefix, "AzureFunctionsJobHost__id": "tl" + uuid.uuid4().hex[:12]}).wait_ready()
    yield host, prefix
    host.stop()


def user_lines(log: str, run: LoggedRun) -> list[int]:
    """Where the user's own log lines of `run` are (`[..] f (<id[:8]>): ...`)."""
    return [i for i, line in enumerate(log.splitlines()) if f"] {run.function} ({run.id[:8]}): " in line]


def assert_logged_as_one_run(log: str, run: LoggedRun, user_text: str) -> None:
    """Executing, Trigger Details, the user's line, Executed: in that order, all of one invocation id."""
    lines = log.splitlines()
    assert run.end_line is not None and run.duration_ms is not None and run.duration_ms >= 0, run
    assert run.details_line is not None and lines[run.details_line].endswith(f"] Trigger Details: {run.details_text}")
    mine = user_lines(log, run)
    assert len(mine) == 1 and run.start_line < run.details_line < mine[0] < run.end_line, (run, mine)
    assert lines[mine[0]].endswith(f"{run.function} ({run.id[:8]}): {user_text}")


def near_now(moment: datetime, seconds: float = 120) -> bool:
    return abs((moment - datetime.now(timezone.utc)).total_seconds()) < seconds


def test_timer_runs(app):
    host, _ = app
    runs = wait_runs(host, lambda runs: len(finished(runs)) >= 3, "tick")
    first = finished(runs)[:3]
    assert [r.outcome for r in first] == ["Succeeded", "Failed", "Succeeded"]   # the schedule goes on
    assert len({r.id for r in first}) == 3
    log = host.log()
    for n, run in enumerate(first, 1):
        m = re.fullmatch(r"Timer fired at (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6})\d([+-]\d\d:\d\d)", run.reason)
        assert m, run.reason                                 # .NET's round-trip format, local time
        assert near_now(datetime.fromisoformat(m.group(1) + m.group(2)))
        assert list(run.details) == ["ScheduleStatus"]
        assert set(json.loads(run.details["ScheduleStatus"])) == {"Last", "Next", "LastUpdated"}
        assert_logged_as_one_run(log, run, f"tick {n}")
    assert first[1].failure.splitlines()[:2] == ["Result: Failure", "Exception: RuntimeError: the second tick fails"]
    assert 'function_app.py", line' in first[1].failure and "in tick" in first[1].failure
    assert log.count("Exception: RuntimeError: the second tick fails") == 1
    assert first[1].failure.count("Traceback") == 0


def test_queue_runs(app, connection_string):
    host, prefix = app
    queue = QueueClient.from_connection_string(connection_string, f"{prefix}-work")
    try:
        queue.create_queue()
    except ResourceExistsError:
        pass
    good = queue.send_message(base64.b64encode(b"hello").decode()).id
    bad = queue.send_message(base64.b64encode(b"fail-me").decode()).id
    runs = wait_runs(host, lambda runs: finished(runs, MessageId=good) and len(finished(runs, MessageId=bad)) >= 2,
                     "on_message")
    log = host.log()
    [ok] = finished(runs, MessageId=good)
    assert ok.outcome == "Succeeded"
    assert ok.reason == f"New queue message detected on '{prefix}-work'."
    assert list(ok.details) == ["MessageId", "DequeueCount", "InsertedOn"] and ok.details["DequeueCount"] == "1"
    assert STORAGE_TIME.match(ok.details["InsertedOn"]) and near_now(datetime.fromisoformat(ok.details["InsertedOn"]))
    assert_logged_as_one_run(log, ok, "message says hello")
    failures = finished(runs, MessageId=bad)
    assert [(r.outcome, r.details["DequeueCount"]) for r in failures] == [("Failed", "1"), ("Failed", "2")]
    assert failures[0].id != failures[1].id
    for n, run in enumerate(failures, 1):
        assert_logged_as_one_run(log, run, "message says fail-me")
        assert f"Exception: ValueError: refusing fail-me (attempt {n})" in run.failure
        assert log.count(f"Exception: ValueError: refusing fail-me (attempt {n})") == 1
    poison = f"Message has reached MaxDequeueCount of 2. Moving message to queue '{prefix}-work-poison'."
    deadline = time.monotonic() + 20
    while poison not in host.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = host.log().splitlines()
    where = [i for i, line in enumerate(lines) if line.endswith(poison)]
    assert len(where) == 1 and where[0] > failures[1].end_line          # the listener's own line, after the run


def test_blob_runs(app, connection_string):
    host, prefix = app
    service = BlobServiceClient.from_connection_string(connection_string)
    container = service.get_container_client(f"{prefix}-in")
    try:
        container.create_container()
    except ResourceExistsError:
        pass
    container.upload_blob("note.txt", b"a note")
    props = container.get_blob_client("note.txt").get_blob_properties()
    reason = f"New blob detected(LogsAndContainerScan): {prefix}-in/note.txt"
    [run] = finished(wait_runs(host, lambda runs: finished(runs, reason_ends=reason), "on_blob"))
    assert (run.outcome, run.reason) == ("Succeeded", reason)
    assert list(run.details) == ["MessageId", "DequeueCount", "InsertedOn", "BlobCreated", "BlobLastModified"]
    assert run.details["DequeueCount"] == "1" and STORAGE_TIME.match(run.details["InsertedOn"])
    assert run.details["BlobLastModified"] == props.last_modified.strftime("%Y-%m-%dT%H:%M:%S.000+00:00")
    assert run.details["BlobCreated"] == props.creation_time.strftime("%Y-%m-%dT%H:%M:%S.000+00:00")
    assert_logged_as_one_run(host.log(), run, "blob says a note")


def test_no_listener_prints_its_old_lines(app):
    host, _ = app
    wait_runs(host, lambda runs: finished(runs), "tick")
    log = host.log()
    assert not re.search(r"Executed 'Functions\.\w+' \((Succeeded|Failed)(, (queue|blob) '|\)|: )", log)
    assert not re.search(r"\(timer, \d+ ms\)|dequeue count \d", log)
