"""Timer trigger schedules (NCRONTAB and TimeSpan), and timer functions firing under `durafunc start`."""
from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from durafunc.functions.schedule import ScheduleError, parse_schedule
from hostutil import HERE, HostProcess

T0 = datetime(2024, 1, 1, 10, 7, 30, tzinfo=timezone.utc)   # a Monday


@pytest.mark.parametrize("expr,expected", [
    ("0 */5 * * * *", datetime(2024, 1, 1, 10, 10, 0, tzinfo=timezone.utc)),
    ("*/10 * * * * *", datetime(2024, 1, 1, 10, 7, 40, tzinfo=timezone.utc)),
    ("0 30 9 * * 1-5", datetime(2024, 1, 2, 9, 30, 0, tzinfo=timezone.utc)),
    ("0 0 0 1 Feb *", datetime(2024, 2, 1, 0, 0, 0, tzinfo=timezone.utc)),
    ("0 0 12 * * Sun", datetime(2024, 1, 7, 12, 0, 0, tzinfo=timezone.utc)),
    ("15 10 * * *", datetime(2024, 1, 1, 10, 15, 0, tzinfo=timezone.utc)),   # 5 fields: seconds 0
    ("00:00:30", T0 + timedelta(seconds=30)),
])
def test_next_occurrence(expr, expected):
    assert parse_schedule(expr).next_after(T0) == expected


@pytest.mark.parametrize("expr,text", [("* * *", "is not an NCRONTAB expression"), ("61 * * * * *", "second: 61"),
                                       ("0 0 0 * Foo *", "'foo' is not a number"), ("00:00:00", "must be positive")])
def test_bad_schedules(expr, text):
    with pytest.raises(ScheduleError, match=text):
        parse_schedule(expr)


def test_timer_function_fires_on_startup_and_on_schedule(connection_string, tmp_path):
    log = tmp_path / "ticks.log"
    queue = "tick" + uuid.uuid4().hex[:10]
    host = HostProcess(HERE / "hostapps" / "timerapp", connection_string, "Tm" + uuid.uuid4().hex[:10],
                       env={"TICK_LOG": str(log), "TICK_QUEUE": queue}).wait_ready()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 3):
            time.sleep(0.1)
        lines = log.read_text().splitlines()
        assert len(lines) >= 3 and lines[0] == "tick past_due=False"
        assert "Tick: timerTrigger" in host.log()
        log_lines = host.log().splitlines()
        header = [i for i, line in enumerate(log_lines)
                  if line.endswith("The next 5 occurrences of the 'Kick' schedule (Cron: '0 0 0 1 1 *') will be:")]
        assert len(header) == 1, host.log()
        years = [int(line[6:10]) for line in log_lines[header[0] + 1:header[0] + 6]]   # MM/dd/yyyy HH:mm:ss
        assert all(line.startswith("01/01/") for line in log_lines[header[0] + 1:header[0] + 6])
        assert years == list(range(years[0], years[0] + 5)) and years[0] in (time.gmtime().tm_year,
                                                                              time.gmtime().tm_year + 1)
        assert "The next 5 occurrences of the 'Tick' schedule (Cron: '*/1 * * * * *') will be:" in host.log()
        from azure.storage.queue import QueueClient
        texts = [m.content for m in QueueClient.from_connection_string(connection_string, queue).peek_messages(32)]
        assert len(texts) >= 2 and set(texts) == {"dGljaw=="}        # the return value, base64: "tick"
        # a timer-triggered starter gets its durable client binding and starts an orchestration
        status = host.wait_status(f"/runtime/webhooks/durabletask/instances/kicked-on-startup", timeout=20)
        assert status["runtimeStatus"] == "Completed" and status["output"] == "kicked by the timer", status
    finally:
        host.stop()
