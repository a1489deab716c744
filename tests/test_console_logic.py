"""The pure parts of the console: table rendering, times, episode analysis, Core Tools' lines, lenient JSON,
route and methods checks, binding emulation, dates, messages (no I/O)."""
from __future__ import annotations

import io
import json
import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from rich.console import Console

from durafunc import display
from durafunc.functions import durable_log
from durafunc.functions.discovery import _Broken, _methods
from durafunc.functions.emulated import EMULATED_BINDINGS, dropped_outputs, start_warning
from durafunc.functions.logcontext import InvocationLog, failure_text
from durafunc.functions.model import Binding
from durafunc.functions.routes import RouteError, compile_route
from durafunc.host import listen_error, watched_path
from durafunc.jsonc import loads_jsonc
from durafunc.management import missing_hub_message, parse_date

T0 = datetime(2026, 12, 1, 20, 10, 5, 123000, tzinfo=timezone.utc)


# -- tables ------------------------------------------------------------------------------------------------------

def grid():
    g = display.Grid([display.Column("Instance ID", keep=True), display.Column("Name", keep=True),
                      display.Column("Details")])
    g.add(["a" * 50, "chaining", "x" * 120])
    g.add(["short", "n", "line one\nline two\tand a tab"])
    return g


def test_plain_never_cuts_or_wraps():
    text = display.plain(grid())
    lines = text.splitlines()
    assert len(lines) == 3                                     # header + one line per row
    assert lines[1] == "a" * 50 + "  chaining  " + "x" * 120
    assert lines[2].startswith("short" + " " * 47 + "n" + " " * 9 + "line one\\nline two\\tand a tab")
    assert lines[0].index("Name") == lines[1].index("chaining") == lines[2].index("n ")


def test_tsv_is_one_record_per_line():
    rows = [line.split("\t") for line in display.tsv(grid()).splitlines()]
    assert rows == [["Instance ID", "Name", "Details"], ["a" * 50, "chaining", "x" * 120],
                    ["short", "n", "line one\\nline two\\tand a tab"]]


@pytest.mark.parametrize("width", [72, 90, 120, 250])
def test_a_terminal_table_keeps_ids_and_names_whole(width):
    out = io.StringIO()
    Console(file=out, width=width, force_terminal=False, color_system=None).print(display.rich_table(grid(), width))
    text = out.getvalue()
    lines = text.splitlines()
    assert "a" * 50 in text and "chaining" in text                   # never wrapped or cut
    assert all(len(line) <= width for line in lines)
    assert len([line for line in lines if "aaaa" in line]) == 1       # one line per row
    if width < 200:
        assert "…" in text and "x" * 120 not in text                 # the other column gave way
    else:
        assert "x" * 120 in text


def test_a_terminal_too_narrow_for_the_ids_gets_plain_lines():
    assert display.rich_table(grid(), 60) is None                   # 50 + 8 + 4 + borders > 60
    assert display.fit_widths(grid(), 60) is None


def test_clock_one_zone_per_cell(monkeypatch):
    utc = display.Clock()
    assert utc.zone == "UTC" and utc.cell(T0) == "2026-12-01 20:10:05" and utc.stamp(T0) == "2026-12-01 20:10:05 UTC"
    assert utc.iso(T0) == "2026-12-01T20:10:05.123Z" and utc.clock_time(T0) == "20:10:05.123" and utc.cell(None) == "-"
    import time
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        local = display.Clock(local=True)
        assert local.zone == "UTC+05:30" and local.cell(T0) == "2026-12-02 01:40:05"
        assert local.iso(T0) == "2026-12-02T01:40:05.123+05:30"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_history_offsets_from_creation_never_negative():
    events = [{"EventType": 12, "Timestamp": (T0 + timedelta(milliseconds=800)).isoformat()},
              {"EventType": 0, "Name": "chain", "Timestamp": T0.isoformat(), "Input": '"x"'},
              {"EventType": 4, "EventId": 0, "Name": "hello", "Timestamp": (T0 + timedelta(seconds=1)).isoformat()},
              {"EventType": 5, "TaskScheduledId": 0, "Result": '"Hi\\nthere"',
               "Timestamp": (T0 - timedelta(milliseconds=5)).isoformat()}]     # another host's clock, a bit behind
    g = display.history_grid(events, created=T0)
    assert [r[2] for r in g.rows] == ["800", "0", "1000", "0"]
    assert g.rows[3][4] == "hello" and g.rows[3][5].endswith(': Hi\\nthere')
    g = display.history_grid(events)                               # no instance row: from the earliest event
    assert [r[2] for r in g.rows] == ["805", "5", "1005", "0"]


# -- Core Tools' lines -------------------------------------------------------------------------------------------

def test_invocation_lines(caplog):
    caplog.set_level(logging.DEBUG, logger="durafunc.function")
    run = InvocationLog("hello", "This function was programmatically called via the host APIs.").started()
    run.succeeded()
    quiet = InvocationLog("orch", None, quiet=True).started()
    quiet.succeeded()
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert lines[0] == (logging.INFO, f"Executing 'Functions.hello' (Reason='This function was programmatically "
                                      f"called via the host APIs.', Id={run.id})")
    assert lines[1][0] == logging.INFO and lines[1][1].startswith(f"Executed 'Functions.hello' (Succeeded, Id={run.id}"
                                                                  ", Duration=")
    assert lines[2] == (logging.DEBUG, f"Executing 'Functions.orch' (Reason='(null)', Id={quiet.id})")
    assert lines[3][0] == logging.DEBUG


def _raise_user_error():
    def user_code():
        raise ValueError("boom\nsecond line")
    try:
        user_code()
    except ValueError as e:
        from durafunc.functions.invoke import FunctionError, _user_traceback
        try:
            raise FunctionError(type(e).__name__, str(e), _user_traceback(e)) from e
        except FunctionError as f:
            return f


def test_failure_text_is_the_users_exception_and_frames():
    text = failure_text(_raise_user_error())
    lines = text.splitlines()
    assert lines[:2] == ["Result: Failure", "Exception: ValueError: boom"]
    assert lines[2].startswith('Stack: File "') and lines[-2].endswith(", in user_code")
    assert lines[-1].strip() == 'raise ValueError("boom\\nsecond line")'
    assert "invoke.py" not in text and "Traceback" not in text        # only the user's frames


# -- episodes ----------------------------------------------------------------------------------------------------

def ctx(history, iid="i1"):
    return json.dumps({"history": history, "instanceId": iid})


def ev(t, played=False):
    return {"EventType": t, "IsPlayed": played}


def test_episode_new_events():
    first = durable_log.episode(ctx([ev(12), ev(0)]))
    assert first.is_new_run and first.new_events == ["ExecutionStarted"] and \
        first.reason == "Orchestration instance 'i1': ExecutionStarted"
    # committed history keeps TaskScheduled with IsPlayed false; only what follows the open episode is new
    later = durable_log.episode(ctx([ev(12), ev(0, True), ev(4), ev(4), ev(13), ev(12), ev(5), ev(5)]))
    assert later.new_events == ["TaskCompleted", "TaskCompleted"] and later.reason.endswith("TaskCompleted x2")
    replay = durable_log.episode(ctx([ev(12), ev(0, True), ev(4), ev(13)]))     # nothing delivered: a replay
    assert not replay.is_new_run and replay.reason == "Orchestration instance 'i1': replay"
    assert not durable_log.episode("not json").is_new_run


def test_entity_batch_and_failed_operations():
    batch = durable_log.entity_batch(json.dumps({"self": {"name": "Counter", "key": "k"}, "exists": True,
                                                 "state": "1", "batch": [{"name": "add"}, {"name": "explode"},
                                                                         {"name": "add"}]}))
    assert batch.instance_id == "@counter@k" and batch.reason == "Entity '@counter@k': 3 operations (add, explode)"
    answer = json.dumps({"results": [{"isError": False, "result": "3"},
                                     {"isError": True, "result": json.dumps("cannot explode")},
                                     {"isError": False, "result": "4"}]})
    assert durable_log.failed_operations(batch, answer) == [("explode", "cannot explode")]


# -- bindings ----------------------------------------------------------------------------------------------------

class _Fn:
    name = "f"

    def __init__(self, bindings):
        self.bindings = bindings


class _Out:
    def __init__(self, v):
        self.v = v

    def get(self):
        return self.v


def test_emulated_bindings_and_warnings():
    assert {"blob", "blobtrigger", "table", "queue", "queuetrigger", "http"} <= EMULATED_BINDINGS
    sms = Binding("twilioSms", "out", "message")
    assert start_warning(_Fn([]), sms) == "function 'f': binding 'twilioSms' (out) is not emulated locally; its " \
                                          "value is dropped"
    assert "never fires" in start_warning(_Fn([]), Binding("eventHubTrigger", "in", "ev"))
    assert "gets None for 'doc'" in start_warning(_Fn([]), Binding("cosmosDB", "in", "doc"))
    fn = _Fn([sms, Binding("queue", "out", "q"), Binding("sendGrid", "out", "$return")])
    assert dropped_outputs(fn, None, {"message": _Out("hi"), "q": _Out("x")}) == [sms]
    assert dropped_outputs(fn, None, {"message": _Out(None)}) == []
    assert [b.type for b in dropped_outputs(fn, {"to": "a"}, {})] == ["sendGrid"]


# -- bad input ---------------------------------------------------------------------------------------------------

def test_jsonc():
    assert loads_jsonc('{"a": "x // not a comment", /* c */ "b": [1, 2,], // end\n}') == \
        {"a": "x // not a comment", "b": [1, 2]}
    with pytest.raises(json.JSONDecodeError) as e:
        loads_jsonc('{\n  // c\n  "a": }')
    assert (e.value.lineno, e.value.colno) == (3, 8)


def test_routes_and_methods():
    with pytest.raises(RouteError, match=r"route 'x/\{id:int': There is an incomplete parameter"):
        compile_route("x/{id:int")
    with pytest.raises(RouteError):
        compile_route("x/id}")
    assert compile_route("x/{id:int}").match("x/12") == {"id": "12"}
    where = Path("f/function.json")
    assert _methods("get", where, "f") == ["GET"] and _methods(["get", "Post"], where, "f") == ["GET", "POST"]
    assert _methods("get, post", where, "f") == ["GET", "POST"] and _methods(None, where, "f") is None
    with pytest.raises(_Broken):
        _methods(42, where, "f")


@pytest.mark.parametrize("text,expected", [
    ("12/01/2026 20:10", datetime(2026, 12, 1, 20, 10, tzinfo=timezone.utc)),
    ("2026-12-01", datetime(2026, 12, 1, tzinfo=timezone.utc)),
    ("2026-12-01T20:10:00+01:00", datetime(2026, 12, 1, 19, 10, tzinfo=timezone.utc)),
    ("Dec 1 2026 8:10 PM", datetime(2026, 12, 1, 20, 10, tzinfo=timezone.utc)),
])
def test_core_tools_dates(text, expected):
    assert parse_date(text, "--created-before") == expected


@pytest.mark.parametrize("text", ["yesterday-ish", "5", "13/45/2026"])
def test_not_dates(text):
    with pytest.raises(ValueError, match=f"--created-after: '{text}' is not a date"):
        parse_date(text, "--created-after")


def test_missing_hub_message():
    where = "'devstoreaccount1' (http://127.0.0.1:10002/devstoreaccount1)"
    assert missing_hub_message("myap", where, ["MyApp", "Other"], "get-instances") == (
        "Task hub 'myap' does not exist in storage account 'devstoreaccount1' (http://127.0.0.1:10002/devstoreaccount1)."
        " Task hubs there: 'MyApp', 'Other'; try 'durafunc get-instances --task-hub-name MyApp'.")
    assert "(task hub names are case-sensitive)" in missing_hub_message("myapp", where, ["Other", "MyApp"], "x")
    assert missing_hub_message("x", where, [], "get-history").endswith("It has no task hub yet: 'durafunc start' "
                                                                       "creates one.")


def test_watched_paths():
    assert watched_path("/app", "/app/function_app.py") and watched_path("/app", "/app/Chain/function.json")
    for ignored in ("/app/.durafunc/azurite/__azurite_db_queue__.json", "/app/.venv/lib/x.py",
                    "/app/node_modules/a/b.json", "/app/Chain/__pycache__/x.py", "/app/.git/config", "/other/x.py"):
        assert not watched_path("/app", ignored), ignored


def test_listen_errors():
    import errno
    assert "Port 7071 is unavailable" in listen_error(OSError(errno.EADDRINUSE, "in use"), "127.0.0.1", 7071, "--x")
    assert listen_error(OSError(errno.EADDRNOTAVAIL, "x"), "10.9.9.9", 7071, "--address") == \
        "--address: cannot listen on '10.9.9.9': it is not an address of this machine"
