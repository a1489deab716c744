"""Timer triggers: one TimerListener per function, as the Timers extension runs them. The schedule (NCRONTAB or
a TimeSpan) is evaluated in the machine's local time zone, as Core Tools does; at start the listener logs the
next 5 occurrences (`The next 5 occurrences of the 'f' schedule (Cron: '0 */5 * * * *') will be:`), then fires
on schedule (and once at start with `runOnStartup`), each run with the Timers extension's reason
(`Timer fired at 2026-12-01T20:10:00.0012340+00:00`) and trigger details (`ScheduleStatus: {...}`). An invocation
that fails is logged by the host and the schedule goes on."""
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


def _local(moment: datetime) -> tuple[datetime, str]:
    aware = moment.astimezone()          # a naive moment is local time
    offset = aware.strftime("%z")
    return aware, f"{offset[:3]}:{offset[3:]}"


def _with_offset(local: datetime) -> str:
    aware, offset = _local(local)
    return f"{aware.strftime(DATE_FORMAT)}{offset}"


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


def round_trip_time(moment: datetime) -> str:
    """.NET's round-trip format ("o") of a local time, as the Timers extension's reason prints it:
    `2026-12-01T20:10:00.0123450+01:00`."""
    aware, offset = _local(moment)
    return f"{aware.strftime('%Y-%m-%dT%H:%M:%S')}.{aware.microsecond:06d}0{offset}"


def status_time(moment: datetime) -> str:
    """A local time as the host's JSON of ScheduleStatus holds it: `2026-12-01T20:10:00.012345+01:00`, without
    trailing zeros of the fraction (`2026-12-01T20:15:00+01:00`)."""
    aware, offset = _local(moment)
    fraction = f"{aware.microsecond:06d}".rstrip("0")
    return aware.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + offset


def timer_value(data: meta.Datum, metadata: dict, pytype: Any) -> Any:
    if pytype in (str, bytes):
        return data.value
    return TimerRequestConverter.decode(data, trigger_metadata=metadata)


def timer_event(last: datetime | None, next_: datetime, past_due: bool = False, *,
                fired: datetime | None = None) -> TriggerEvent:
    """The TimerInfo the host sends (Schedule, ScheduleStatus, IsPastDue), with the reason and trigger details
    of its run (`fired`: the local time it fired at)."""
    now = local_now()
    status = {"Last": status_time(last) if last else NEVER, "Next": status_time(next_), "LastUpdated": status_time(now)}
    info = {"Schedule": {"AdjustForDST": True}, "ScheduleStatus": status, "IsPastDue": past_due}
    return TriggerEvent(meta.Datum(json.dumps(info), "json"), {}, {}, decode=timer_value,
                        reason=f"Timer fired at {round_trip_time(fired or now)}",
                        details=f"ScheduleStatus: {json.dumps(status, separators=(',', ':'))}")


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
        event = timer_event(self._last, self.schedule.next_after(now), fired=now)
        self._last = now
        self.fired += 1
        try:
            await self.run(self.function, event)
        except Exception as e:  # noqa: BLE001 - user code, logged by the host's Executed line; the schedule goes on
            log.debug("timer function '%s' failed (%s); its schedule goes on", self.function, type(e).__name__)


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
