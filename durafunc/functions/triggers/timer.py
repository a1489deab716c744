"""Timer triggers: one TimerListener per function, as the Timers extension runs them. The schedule (NCRONTAB or
a TimeSpan) is evaluated in the machine's local time zone, as Core Tools does; at start the listener logs the
next 5 occurrences (`The next 5 occurrences of the 'f' schedule (Cron: '0 */5 * * * *') will be:`), then fires
on schedule (and once at start with `runOnStartup`). An invocation that fails is logged and the schedule goes
on."""
from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from azure.functions import meta
from azure.functions.timer import TimerRequestConverter

from ..expressions import ExpressionError, expand_settings
from ..model import FunctionInfo
from ..schedule import Schedule, ScheduleError, parse_schedule
from .base import Run, TriggerEvent

log = logging.getLogger("durafunc.timer")

OCCURRENCES = 5
DATE_FORMAT = "%m/%d/%Y %H:%M:%S"          # .NET "MM'/'dd'/'yyyy HH':'mm':'ss" (then K)
NEVER = "0001-01-01T00:00:00"


def local_now() -> datetime:
    """The local wall-clock time (naive), which NCRONTAB schedules are evaluated in."""
    return datetime.now()


def local_is_utc() -> bool:
    """TimeZoneInfo.Local.HasSameRules(TimeZoneInfo.Utc)."""
    return time.timezone == 0 and (not time.daylight or time.altzone == 0)


def _timespan(delta: timedelta) -> str:
    """.NET TimeSpan.ToString(): `[d.]hh:mm:ss`."""
    total = int(delta.total_seconds())
    days, rest = divmod(total, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return (f"{days}." if days else "") + f"{h:02d}:{m:02d}:{s:02d}"


def describe(schedule: Schedule) -> str:
    """The schedule as the Timers extension prints it: `Cron: '...'` or `Constant: hh:mm:ss`."""
    if schedule.interval is not None:
        return f"Constant: {_timespan(schedule.interval)}"
    return f"Cron: '{schedule.text}'"


def next_occurrences(schedule: Schedule, now: datetime, count: int = OCCURRENCES) -> list[datetime]:
    out, t = [], now
    for _ in range(count):
        t = schedule.next_after(t)
        out.append(t)
    return out


def _with_offset(local: datetime) -> str:
    aware = local.astimezone()
    offset = aware.strftime("%z")
    return f"{aware.strftime(DATE_FORMAT)}{offset[:3]}:{offset[3:]}"


def occurrences_message(function: str, schedule: Schedule, now: datetime, *, is_utc: bool | None = None,
                        to_utc: Callable[[datetime], datetime] | None = None) -> str:
    """Core Tools' lines at start: the header, then one line per occurrence (UTC as `...Z`; elsewhere the local
    time with its offset, then the UTC time in parentheses)."""
    is_utc = local_is_utc() if is_utc is None else is_utc
    to_utc = to_utc or (lambda local: local.astimezone().astimezone(timezone.utc))
    lines = [f"The next {OCCURRENCES} occurrences of the '{function}' schedule ({describe(schedule)}) will be:"]
    for occurrence in next_occurrences(schedule, now):
        utc = f"{to_utc(occurrence).strftime(DATE_FORMAT)}Z"
        lines.append(utc if is_utc else f"{_with_offset(occurrence)} ({utc})")
    return "\n".join(lines)


def timer_value(data: meta.Datum, metadata: dict, pytype: Any) -> Any:
    if pytype in (str, bytes):
        return data.value
    return TimerRequestConverter.decode(data, trigger_metadata=metadata)


def timer_event(last: datetime | None, next_: datetime, past_due: bool = False) -> TriggerEvent:
    """The TimerInfo the host sends (Schedule, ScheduleStatus, IsPastDue)."""
    now = local_now().isoformat()
    info = {"Schedule": {"AdjustForDST": True},
            "ScheduleStatus": {"Last": last.isoformat() if last else NEVER, "Next": next_.isoformat(),
                               "LastUpdated": now},
            "IsPastDue": past_due}
    return TriggerEvent(meta.Datum(json.dumps(info), "json"), {}, {}, decode=timer_value)


class TimerListener:
    def __init__(self, function: str, schedule: Schedule, run_on_startup: bool, run: Run, *,
                 clock: Callable[[], datetime] = local_now):
        self.function, self.schedule, self.run_on_startup, self.run = function, schedule, run_on_startup, run
        self.clock = clock
        self.fired = 0
        self._last: datetime | None = None
        self._task: asyncio.Task | None = None
        self._current: asyncio.Task | None = None

    def start(self) -> None:
        log.info("%s", occurrences_message(self.function, self.schedule, self.clock()))
        self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"timer:{self.function}")

    async def stop(self, grace: float = 10.0) -> None:
        """No new occurrence; a running invocation gets `grace` seconds to finish."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._current is not None and not self._current.done():
            done, _ = await asyncio.wait({self._current}, timeout=grace)
            if not done:
                self._current.cancel()
                await asyncio.gather(self._current, return_exceptions=True)

    async def _loop(self) -> None:
        if self.run_on_startup:
            await self._fire()
        while True:
            due = self.schedule.next_after(self.clock())
            await asyncio.sleep(max(0.0, (due.astimezone() - self.clock().astimezone()).total_seconds()))
            await self._fire()

    async def _fire(self) -> None:
        self._current = asyncio.get_running_loop().create_task(self._invoke())
        await asyncio.shield(self._current)

    async def _invoke(self) -> None:
        now = self.clock()
        t0 = time.monotonic()
        event = timer_event(self._last, self.schedule.next_after(now))
        self._last = now
        self.fired += 1
        try:
            await self.run(self.function, event)
        except Exception as e:  # noqa: BLE001 - user code; the schedule goes on
            log.error("Executed 'Functions.%s' (Failed): %s\n%s", self.function, e, getattr(e, "traceback_text", ""))
            return
        log.info("Executed 'Functions.%s' (timer, %d ms)", self.function, (time.monotonic() - t0) * 1000)


class TimerTriggers:
    kind = "timer"

    def __init__(self, env):
        self.env = env

    def build_all(self, functions: list[FunctionInfo], run: Run) -> tuple[list, dict[str, str]]:
        listeners, errors = [], {}
        for fn in functions:
            raw = fn.trigger.raw
            try:
                schedule = parse_schedule(expand_settings(str(raw.get("schedule", "")), self.env))
            except (ScheduleError, ExpressionError) as e:
                errors[fn.name] = f"function '{fn.name}': {e} (the function does not listen)"
                continue
            startup = str(raw.get("runOnStartup", raw.get("run_on_startup", False))).lower() == "true"
            listeners.append(TimerListener(fn.name, schedule, startup, run))
        return listeners, errors
