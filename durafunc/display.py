"""Human output of the management commands: instance tables, a status view and a history timeline that survive
pipes.

A view is a Grid (columns and rows of one-line text cells), rendered one of three ways:
- a terminal: a rich table fitted to its width; ids and names are never wrapped or cut (other columns are
  shortened first, with an ellipsis);
- not a terminal (a pipe, a file): plain columns aligned with spaces, one row per line, nothing cut or wrapped,
  no colour (so `| grep <id>` and `| cut` work);
- `--output tsv`: tab-separated values with a header row, times in ISO 8601.
Each time is one value in one zone: UTC, or local time with `--local-time`.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone

from rich.console import Console
from rich.table import Table

from .management import parse_stored_json
from .storage.instances import InstanceRow
from .storage.schema import EventType, OrchestrationStatus, parse_time

ET = EventType
OUTPUTS = ("table", "json", "tsv")
STATUS_STYLE = {"Completed": "green", "Failed": "red", "Terminated": "magenta", "Running": "cyan",
                "Pending": "yellow", "Suspended": "yellow", "ContinuedAsNew": "cyan", "Canceled": "magenta"}


def console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def is_terminal(stream=None) -> bool:
    stream = stream or sys.stdout
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


# -- cells -------------------------------------------------------------------------------------------------------

class Clock:
    """How times are shown: UTC (default) or the local zone; one time per cell."""

    def __init__(self, local: bool = False):
        self.local = local

    @property
    def zone(self) -> str:
        if not self.local:
            return "UTC"
        offset = datetime.now().astimezone().strftime("%z")
        return f"UTC{offset[:3]}:{offset[3:]}" if offset else "local"

    def _at(self, dt: datetime) -> datetime:
        return dt.astimezone() if self.local else dt.astimezone(timezone.utc)

    def cell(self, dt: datetime | None) -> str:
        """`2026-01-12 20:10:05` in the clock's zone (named in the column header)."""
        return "-" if dt is None else f"{self._at(dt):%Y-%m-%d %H:%M:%S}"

    def stamp(self, dt: datetime | None) -> str:
        """A time that names its zone: `2026-01-12 20:10:05 UTC`."""
        return "-" if dt is None else f"{self.cell(dt)} {self.zone}"

    def iso(self, dt: datetime | None) -> str:
        if dt is None:
            return ""
        at = self._at(dt)
        text = at.isoformat(timespec="milliseconds")
        return text.replace("+00:00", "Z") if not self.local else text

    def clock_time(self, dt: datetime | None) -> str:
        return "" if dt is None else f"{self._at(dt):%H:%M:%S.%f}"[:-3]


def duration(start: datetime | None, end: datetime | None) -> str:
    if start is None:
        return "-"
    end = end or datetime.now(timezone.utc)
    secs = max(0.0, (end - start).total_seconds())
    if secs < 1:
        return f"{secs * 1000:.0f} ms"
    if secs < 120:
        return f"{secs:.1f} s"
    if secs < 7200:
        return f"{secs / 60:.1f} min"
    return f"{secs / 3600:.1f} h"


def one_line(value) -> str:
    """A value as one line of text: JSON for non-strings, newlines and tabs escaped."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n").replace("\t", "\\t") \
        if any(c in text for c in "\r\n\t") else text


def short(value, limit: int = 60) -> str:
    text = one_line(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def status_name(status: OrchestrationStatus | None) -> str:
    return status.name if status is not None else "Unknown"


# -- grids and their rendering -----------------------------------------------------------------------------------

@dataclass
class Column:
    header: str
    keep: bool = False          # an id or a name: never wrapped or cut
    justify: str = "left"


@dataclass
class Grid:
    columns: list[Column]
    rows: list[list[str]] = field(default_factory=list)
    styles: list[dict[int, str]] = field(default_factory=list)    # per row: column index -> rich style

    def add(self, cells: list[str], styles: dict[int, str] | None = None) -> None:
        self.rows.append([one_line(c) if not isinstance(c, str) or any(x in c for x in "\r\n\t") else c
                          for c in cells])
        self.styles.append(styles or {})


def plain(grid: Grid, *, header: bool = True) -> str:
    """Columns aligned with two spaces, one row per line, nothing cut (for pipes and files)."""
    rows = ([[c.header for c in grid.columns]] if header else []) + grid.rows
    if not rows:
        return ""
    widths = [max(len(r[i]) for r in rows) for i in range(len(grid.columns))]
    lines = []
    for r in rows:
        cells = [r[i].rjust(widths[i]) if grid.columns[i].justify == "right" else r[i].ljust(widths[i])
                 for i in range(len(r))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def tsv(grid: Grid, *, header: bool = True) -> str:
    rows = ([[c.header for c in grid.columns]] if header else []) + grid.rows
    return "\n".join("\t".join(r) for r in rows)


def fit_widths(grid: Grid, total: int, *, header: bool = True) -> list[int] | None:
    """Column widths for a boxed table `total` characters wide: ids and names (`keep`) get their full width, the
    other columns share the rest (at least 4 characters each: room for `x…`). None when even that does not fit."""
    n = len(grid.columns)
    natural = [max([len(c.header) if header else 0] + [len(r[i]) for r in grid.rows]) for i, c in enumerate(grid.columns)]
    avail = total - (3 * n + 1)                    # a box: padding of 1 each side, n + 1 rules
    if sum(natural) <= avail:
        return natural
    others = [i for i, c in enumerate(grid.columns) if not c.keep]
    room = avail - sum(natural[i] for i, c in enumerate(grid.columns) if c.keep)
    widths = list(natural)
    mins = {i: min(natural[i], 4) for i in others}
    if room < sum(mins.values()):
        return None
    deficit = sum(natural[i] - mins[i] for i in others)
    spare = room - sum(mins.values())
    for i in others:
        widths[i] = mins[i] + ((natural[i] - mins[i]) * spare // deficit if deficit else 0)
    return widths


def rich_table(grid: Grid, width: int, *, header: bool = True) -> Table | None:
    """A table for a terminal `width` wide: ids and names keep their full width, the other columns are shortened
    (with an ellipsis) first; None when the ids and names alone are wider than the terminal."""
    from rich.text import Text
    widths = fit_widths(grid, width, header=header)
    if widths is None:
        return None
    t = Table(show_header=header, header_style="bold")
    for c, w in zip(grid.columns, widths):
        t.add_column(c.header, width=w, no_wrap=True, justify=c.justify,
                     overflow="ignore" if c.keep else "ellipsis")
    for row, styles in zip(grid.rows, grid.styles):
        t.add_row(*(Text(cell, style=styles.get(i, "")) for i, cell in enumerate(row)))
    return t


def emit(grid: Grid, output: str = "table", *, header: bool = True) -> None:
    """Print a grid as `output` (table / tsv) to stdout: a fitted rich table on a terminal, plain columns
    otherwise (and on a terminal too narrow for the ids and names: plain lines, which it wraps but nothing cuts)."""
    if output == "tsv":
        sys.stdout.write(tsv(grid, header=header) + "\n")
        sys.stdout.flush()
        return
    if is_terminal():
        out = console()
        table = rich_table(grid, out.width, header=header)
        if table is not None:
            out.print(table)
            return
    text = plain(grid, header=header)
    sys.stdout.write(text + ("\n" if text else ""))
    sys.stdout.flush()


# -- instances ---------------------------------------------------------------------------------------------------

def row_json(row: InstanceRow, *, show_input: bool = True, show_output: bool = True) -> dict:
    """Stable machine keys for --json output."""
    return {
        "instanceId": row.instance_id,
        "name": row.name,
        "runtimeStatus": row.runtime_status.name if row.runtime_status is not None else None,
        "createdTime": row.created_time.isoformat() if row.created_time else None,
        "lastUpdatedTime": row.last_updated_time.isoformat() if row.last_updated_time else None,
        "completedTime": row.completed_time.isoformat() if row.completed_time else None,
        "executionId": row.execution_id,
        "input": parse_stored_json(row.input) if show_input else None,
        "output": parse_stored_json(row.output) if show_output else None,
        "customStatus": parse_stored_json(row.custom_status),
        "worker": row.worker,
    }


def _end(r: InstanceRow) -> datetime | None:
    return r.completed_time or (r.last_updated_time if r.runtime_status in (
        OrchestrationStatus.Completed, OrchestrationStatus.Failed, OrchestrationStatus.Terminated) else None)


def instances_grid(rows: list[InstanceRow], *, show_input: bool = False, clock: Clock | None = None,
                   iso: bool = False) -> Grid:
    clock = clock or Clock()
    when = clock.iso if iso else clock.cell
    cols = [Column("Instance ID", keep=True), Column("Name", keep=True), Column("Status", keep=True),
            Column(f"Created ({clock.zone})"), Column(f"Last updated ({clock.zone})"),
            Column("Duration", justify="right"), Column("Worker", keep=True)]
    if show_input:
        cols.append(Column("Input"))
    g = Grid(cols)
    for r in rows:
        status = status_name(r.runtime_status)
        cells = [r.instance_id, r.name or "", status, when(r.created_time), when(r.last_updated_time),
                 duration(r.created_time, _end(r)), r.worker or "-"]
        if show_input:
            cells.append(one_line(parse_stored_json(r.input)) if r.input is not None else "-")
        g.add(cells, {2: STATUS_STYLE.get(status, "")})
    return g


def status_grid(row: InstanceRow, *, show_input: bool, show_output: bool, clock: Clock | None = None,
                iso: bool = False) -> Grid:
    """One instance as `field  value` lines."""
    clock = clock or Clock()
    when = clock.iso if iso else clock.stamp
    g = Grid([Column("Field", keep=True), Column("Value", keep=True)])
    status = status_name(row.runtime_status)
    g.add(["Instance ID", row.instance_id])
    g.add(["Name", row.name or ""])
    g.add(["Status", status], {1: STATUS_STYLE.get(status, "")})
    g.add(["Created", when(row.created_time)])
    g.add(["Last updated", when(row.last_updated_time)])
    if row.completed_time:
        g.add(["Completed", when(row.completed_time)])
    g.add(["Duration", duration(row.created_time, _end(row))])
    g.add(["Execution ID", row.execution_id or "-"])
    g.add(["Worker", row.worker or "-"])
    custom = parse_stored_json(row.custom_status)
    if custom is not None:
        g.add(["Custom status", one_line(custom)])
    if show_input:
        g.add(["Input", one_line(parse_stored_json(row.input)) if row.input is not None else "-"])
    if show_output:
        g.add(["Output", one_line(parse_stored_json(row.output)) if row.output is not None else "-"])
    return g


def emit_status(grid: Grid, output: str = "table") -> None:
    """The status view: on a terminal a borderless two-column table whose long values wrap; else plain lines."""
    if output == "tsv" or not is_terminal():
        emit(grid, output, header=False)
        return
    t = Table(show_header=False, box=None)
    t.add_column(style="bold", no_wrap=True)
    t.add_column(overflow="fold")
    from rich.text import Text
    for row, styles in zip(grid.rows, grid.styles):
        t.add_row(row[0], Text(row[1], style=styles.get(1, "")))
    console().print(t)


# -- history -----------------------------------------------------------------------------------------------------

def history_json(events: list[dict]) -> list[dict]:
    out = []
    for e in events:
        item = dict(e)
        t = item.get("EventType")
        item["EventType"] = ET(t).name if t in ET._value2member_map_ else t
        if isinstance(item.get("OrchestrationStatus"), int):
            item["OrchestrationStatus"] = OrchestrationStatus(item["OrchestrationStatus"]).name
        out.append(item)
    return out


def offset_ms(ts: datetime | None, origin: datetime | None) -> str:
    """Milliseconds from the instance's creation, never negative (clocks of different hosts disagree a little)."""
    if ts is None or origin is None:
        return ""
    return f"{max(0.0, (ts - origin).total_seconds() * 1000):.0f}"


def history_grid(events: list[dict], *, created: datetime | None = None, clock: Clock | None = None,
                 iso: bool = False) -> Grid:
    """Events in order with what they mean: activity names, durations since scheduling, failures. `+ms` counts
    from the instance's creation (`created`; else the earliest event)."""
    clock = clock or Clock()
    g = Grid([Column("#", justify="right"), Column(f"Time ({clock.zone})"), Column("+ms", justify="right"),
              Column("Event", keep=True), Column("Name", keep=True), Column("Details")])
    scheduled = {e.get("EventId"): e for e in events if e.get("EventType") in (
        ET.TaskScheduled, ET.SubOrchestrationInstanceCreated, ET.TimerCreated)}
    stamps = [t for t in (parse_time(e.get("Timestamp")) for e in events) if t is not None]
    origin = created or (min(stamps) if stamps else None)
    for i, e in enumerate(events):
        et = e.get("EventType")
        name = ET(et).name if et in ET._value2member_map_ else str(et)
        ts = parse_time(e.get("Timestamp"))
        label, details, style = "", "", ""
        sid = e.get("TaskScheduledId", e.get("TimerId"))
        origin_event = scheduled.get(sid) if sid is not None else None
        if et in (ET.TaskScheduled, ET.SubOrchestrationInstanceCreated):
            label = e.get("Name") or ""
            details = f"task {e.get('EventId')}" + (f" → {e.get('InstanceId')}" if e.get("InstanceId") else "")
        elif et == ET.TimerCreated:
            details = f"timer {e.get('EventId')} fires at {e.get('FireAt')}"
        elif et in (ET.TaskCompleted, ET.SubOrchestrationInstanceCompleted, ET.TimerFired):
            label = (origin_event or {}).get("Name") or ""
            took = duration(parse_time(origin_event["Timestamp"]), ts) if origin_event else ""
            details = f"task {sid}, took {took}" + (f": {one_line(parse_stored_json(e.get('Result')))}"
                                                     if e.get("Result") is not None else "")
        elif et in (ET.TaskFailed, ET.SubOrchestrationInstanceFailed):
            label = (origin_event or {}).get("Name") or ""
            details = f"task {sid} failed: {one_line(e.get('Reason') or '')}"
            style = "red"
        elif et == ET.ExecutionStarted:
            label = e.get("Name") or ""
            details = f"input {one_line(parse_stored_json(e.get('Input')))}" if e.get("Input") is not None else ""
        elif et in (ET.ExecutionCompleted, ET.ContinueAsNew):
            status = OrchestrationStatus(e.get("OrchestrationStatus", 1)).name
            details = f"{status}: {one_line(parse_stored_json(e.get('Result')))}" if e.get("Result") else status
            style = "red" if status == "Failed" else "green"
        elif et == ET.EventRaised:
            label = e.get("Name") or ""
            details = one_line(parse_stored_json(e.get("Input"))) if e.get("Input") is not None else ""
        elif et in (ET.ExecutionTerminated,):
            details = one_line(e.get("Input") or "")
            style = "magenta"
        elif et in (ET.ExecutionSuspended, ET.ExecutionResumed):
            details = one_line(e.get("Reason") or "")
        elif et == ET.GenericEvent:
            details = one_line(e.get("Data") or "")
        g.add([str(i), clock.iso(ts) if iso else clock.clock_time(ts), offset_ms(ts, origin), name, label, details],
              {3: style} if style else None)
    return g
