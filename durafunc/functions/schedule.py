"""Timer trigger schedules: NCRONTAB (`{second} {minute} {hour} {day} {month} {day-of-week}`) or a TimeSpan
(`hh:mm:ss`), as the Azure Functions timer trigger reads them."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

_MONTHS = {m: i for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split(), 1)}
_DAYS = {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())}
_RANGES = [(0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6)]
_NAMES = ["second", "minute", "hour", "day", "month", "day-of-week"]


class ScheduleError(ValueError):
    pass


def _field(text: str, lo: int, hi: int, names: dict, what: str) -> frozenset[int]:
    values: set[int] = set()
    for part in text.lower().split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            if not step_text.isdigit() or int(step_text) == 0:
                raise ScheduleError(f"{what}: bad step '{step_text}'")
            step = int(step_text)

        def num(t: str) -> int:
            if t in names:
                return names[t]
            if not t.isdigit():
                raise ScheduleError(f"{what}: '{t}' is not a number")
            n = int(t)
            if what == "day-of-week" and n == 7:
                n = 0
            if not lo <= n <= hi:
                raise ScheduleError(f"{what}: {n} is outside {lo}-{hi}")
            return n
        if part in ("*", "?"):
            start, end = lo, hi
        elif "-" in part:
            a, b = part.split("-", 1)
            start, end = num(a), num(b)
        else:
            start = num(part)
            end = hi if step > 1 else start
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Schedule:
    text: str
    fields: tuple[frozenset[int], ...] | None = None
    interval: timedelta | None = None

    def next_after(self, now: datetime) -> datetime:
        if self.interval is not None:
            return now + self.interval
        sec, minute, hour, day, month, dow = self.fields
        t = now.replace(microsecond=0) + timedelta(seconds=1)
        for _ in range(366 * 24 * 60 * 2):   # minutes scanned at most: two years
            if t.month not in month or t.day not in day or (t.weekday() + 1) % 7 not in dow:
                t = (t + timedelta(days=1)).replace(hour=0, minute=0, second=0)
                continue
            if t.hour not in hour:
                t = (t + timedelta(hours=1)).replace(minute=0, second=0)
                continue
            if t.minute not in minute:
                t = (t + timedelta(minutes=1)).replace(second=0)
                continue
            later = [s for s in sorted(sec) if s >= t.second]
            if later:
                return t.replace(second=later[0])
            t = (t + timedelta(minutes=1)).replace(second=0)
        raise ScheduleError(f"schedule '{self.text}' never fires")


def parse_schedule(text: str) -> Schedule:
    """NCRONTAB with 6 fields (5 are accepted too, seconds = 0) or a TimeSpan like `00:05:00`."""
    text = (text or "").strip()
    m = re.fullmatch(r"(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})", text)
    if m:
        d, h, mi, s = (int(x or 0) for x in m.groups())
        interval = timedelta(days=d, hours=h, minutes=mi, seconds=s)
        if interval.total_seconds() <= 0:
            raise ScheduleError(f"schedule '{text}': the interval must be positive")
        return Schedule(text, interval=interval)
    parts = text.split()
    if len(parts) == 5:
        parts = ["0"] + parts
    if len(parts) != 6:
        raise ScheduleError(f"schedule '{text}' is not an NCRONTAB expression "
                            "('{second} {minute} {hour} {day} {month} {day-of-week}') or a TimeSpan (hh:mm:ss)")
    fields = []
    for part, (lo, hi), what in zip(parts, _RANGES, _NAMES):
        names = _MONTHS if what == "month" else _DAYS if what == "day-of-week" else {}
        try:
            fields.append(_field(part, lo, hi, names, what))
        except ScheduleError as e:
            raise ScheduleError(f"schedule '{text}': {e}") from None
    return Schedule(text, tuple(fields))


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
