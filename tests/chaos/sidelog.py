"""The side-effect log the chaos app writes (tests/hostapps/chaos): one JSON line per activity begin/end and per
entity operation applied. Pure parsing: torn or foreign lines are counted and skipped, never fatal."""
from __future__ import annotations

import json
from dataclasses import dataclass, field


@dataclass
class Run:
    """One activity run: begun at `start` by process `pid` (worker `worker`); `end`/`ok` None when it never
    finished (its host died, or it still runs)."""
    key: str                   # instance id + ':' + the call's tag: one logical activity call
    instance_id: str
    run_id: str
    pid: int
    worker: str
    start: float               # wall-clock (time.time())
    end: float | None = None
    ok: bool | None = None

    def describe(self, t0: float = 0.0) -> str:
        """Times as seconds after `t0` (the scenario's start)."""
        how = "still running or cut off" if self.end is None else \
            f"ended {self.end - t0:+.3f} ({'ok' if self.ok else 'failed'})"
        return f"run {self.run_id[:8]} on {self.worker or '?'} (pid {self.pid}) began {self.start - t0:+.3f}, {how}"


@dataclass
class EntityOp:
    entity_key: str
    op_id: str
    pid: int
    worker: str
    at: float


@dataclass
class SideLog:
    runs: list[Run] = field(default_factory=list)
    entity_ops: list[EntityOp] = field(default_factory=list)
    torn: int = 0              # lines that were not whole JSON records (a torn last line after a SIGKILL)

    def runs_by_key(self) -> dict[str, list[Run]]:
        out: dict[str, list[Run]] = {}
        for r in sorted(self.runs, key=lambda r: (r.start, r.run_id)):
            out.setdefault(r.key, []).append(r)
        return out

    def workers(self) -> set[str]:
        return {r.worker for r in self.runs}


def parse(text: str) -> SideLog:
    """Merge begin/end lines by run id; an end whose begin line is missing still makes a run."""
    log = SideLog()
    runs: dict[str, Run] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            kind = rec["k"]
            if kind == "entity":
                log.entity_ops.append(EntityOp(str(rec["entity"]), str(rec["op"]), int(rec["pid"]),
                                               str(rec.get("worker", "")), float(rec["t0"])))
                continue
            run_id = str(rec["run"])
            run = runs.get(run_id)
            if run is None:
                run = runs[run_id] = Run(str(rec["key"]), str(rec["iid"]), run_id, int(rec["pid"]),
                                         str(rec.get("worker", "")), float(rec["t0"]))
            if kind == "end":
                run.end, run.ok = float(rec["t1"]), bool(rec["ok"])
            elif kind != "begin":
                raise KeyError(kind)
        except (ValueError, KeyError, TypeError):
            log.torn += 1
    log.runs = list(runs.values())
    return log


def read(path) -> SideLog:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return parse(f.read())
    except FileNotFoundError:
        return SideLog()
