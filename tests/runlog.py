"""The function runs a `durafunc start` log shows, parsed from Core Tools' lines:

    [..] Executing 'Functions.f' (Reason='...', Id=<id>)
    [..] Trigger Details: MessageId: ..., DequeueCount: N, InsertedOn: ...      (triggered runs)
    [..] Executed 'Functions.f' (Succeeded|Failed, Id=<id>, Duration=Nms)
    Result: Failure / Exception: ... / Stack: ...                               (under a failure)
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Callable

EXECUTING = re.compile(r"Executing 'Functions\.([\w.-]+)' \(Reason='(.*)', Id=([0-9a-f-]{36})\)$")
EXECUTED = re.compile(r"Executed 'Functions\.([\w.-]+)' \((Succeeded|Failed), Id=([0-9a-f-]{36}), "
                      r"Duration=(\d+)ms\)$")
DETAILS = re.compile(r"^\[[^\]]+\] Trigger Details: (.*)$")
STAMPED = re.compile(r"^\[\d{4}-\d\d-\d\dT[^\]]+\] ")


@dataclass
class LoggedRun:
    function: str
    reason: str
    id: str
    details: dict[str, str] = field(default_factory=dict)
    details_text: str | None = None
    outcome: str | None = None          # None while it runs
    duration_ms: int | None = None
    failure: str = ""                   # the lines under its Failed line
    start_line: int = 0                 # where its lines are in the log
    details_line: int | None = None
    end_line: int | None = None


def parse_details(text: str) -> dict[str, str]:
    """`MessageId: x, DequeueCount: 1, InsertedOn: t` -> {"MessageId": "x", ...}."""
    out = {}
    for part in text.split(", "):
        key, _, value = part.partition(": ")
        out[key] = value
    return out


def logged_runs(log: str, function: str | None = None) -> list[LoggedRun]:
    """Every run in the log (of `function`), in the order they started. A run's trigger details are the first
    `Trigger Details:` line after its Executing line, before any other run's Executing line (the host logs the two
    with nothing in between on its event loop)."""
    lines = log.splitlines()
    by_id: dict[str, LoggedRun] = {}
    order: list[LoggedRun] = []
    waiting_details: LoggedRun | None = None
    for i, line in enumerate(lines):
        m = EXECUTING.search(line)
        if m and STAMPED.match(line):
            run = LoggedRun(m.group(1), m.group(2), m.group(3), start_line=i)
            by_id[run.id] = run
            order.append(run)
            waiting_details = run
            continue
        d = DETAILS.match(line)
        if d and waiting_details is not None:
            waiting_details.details_text = d.group(1)
            waiting_details.details = parse_details(d.group(1))
            waiting_details.details_line = i
            waiting_details = None
            continue
        m = EXECUTED.search(line)
        if m and STAMPED.match(line) and m.group(3) in by_id:
            run = by_id[m.group(3)]
            run.outcome, run.duration_ms, run.end_line = m.group(2), int(m.group(4)), i
            if run.outcome == "Failed":
                under = []
                for following in lines[i + 1:]:
                    if STAMPED.match(following):
                        break
                    under.append(following)
                run.failure = "\n".join(under)
    return [r for r in order if function is None or r.function == function]


def wait_runs(host, check: Callable[[list[LoggedRun]], bool], function: str | None = None,
              timeout: float = 20.0) -> list[LoggedRun]:
    """The runs (of `function`) once `check(runs)` holds."""
    deadline = time.monotonic() + timeout
    while True:
        found = logged_runs(host.log(), function)
        if check(found):
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"runs of {function or 'any function'} never as expected:\n{host.log()}")
        time.sleep(0.05)


def finished(runs: list[LoggedRun], outcome: str | None = None, **where) -> list[LoggedRun]:
    """The finished runs (with `outcome`) whose reason/details hold `where`: `reason_ends="x"`, `MessageId="y"`."""
    out = []
    for r in runs:
        if r.outcome is None or (outcome is not None and r.outcome != outcome):
            continue
        if "reason_ends" in where and not r.reason.endswith(where["reason_ends"]):
            continue
        if any(r.details.get(k) != v for k, v in where.items() if k != "reason_ends"):
            continue
        out.append(r)
    return out
