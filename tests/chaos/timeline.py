"""What a scenario did, with wall-clock times (time.time(), the clock of the side-effect log): each host's life,
each storage fault window of the proxy, each rewind, and the answers the client got. Pure data; appending is
thread-safe (the proxy records from its own thread)."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class HostSpan:
    """One `durafunc start` process. `how` is how it ended: SIGKILL / SIGTERM (sent by the scenario), died (it
    exited by itself), or None while it runs. `ended` is when the signal was sent (or the death noticed),
    `exited` when the process was gone."""
    worker: str
    pid: int
    port: int
    started: float
    how: str | None = None
    ended: float | None = None
    exited: float | None = None
    exit_code: int | None = None
    log_tail: str = ""
    traceback: bool = False      # its log holds a Python traceback (a failed start must be one clear line)

    @property
    def name(self) -> str:
        return f"{self.worker} (pid {self.pid})"

    def ended_within(self, t0: float, t1: float) -> bool:
        """Was the process killed, stopped or dead at some moment of [t0, t1]?"""
        if self.ended is None:
            return False
        return self.ended <= t1 and (self.exited if self.exited is not None else self.ended) >= t0


@dataclass
class FaultWindow:
    kind: str            # reset / stall / 5xx
    services: tuple      # ('blob', 'queue', 'table') or a subset
    start: float
    end: float

    def overlaps(self, t0: float, t1: float) -> bool:
        return self.start <= t1 and self.end >= t0

    def describe(self, t0: float = 0.0) -> str:
        return f"{self.kind} of {'/'.join(self.services)} {self.start - t0:+.3f}..{self.end - t0:+.3f}"


@dataclass
class Rewind:
    instance_id: str
    at: float


@dataclass
class ClientAnswer:
    """One answer a client operation got from a host's HTTP API (channel 'webhook': the Durable HTTP API;
    'starter': the app's own HTTP starter through the SDK's client binding)."""
    channel: str
    op: str
    target: str
    status: int
    content_type: str
    body: str
    at: float
    created_behind_error: bool = False     # a start answered 5xx, and the instance had been created anyway


@dataclass
class Timeline:
    """`t0`: the moment reports count from (the chaos phase's start), so evidence reads '+12.345'."""
    hosts: list[HostSpan] = field(default_factory=list)
    faults: list[FaultWindow] = field(default_factory=list)
    rewinds: list[Rewind] = field(default_factory=list)
    answers: list[ClientAnswer] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    t0: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, what) -> None:
        with self._lock:
            {HostSpan: self.hosts, FaultWindow: self.faults, Rewind: self.rewinds,
             ClientAnswer: self.answers}[type(what)].append(what)

    def note(self, text: str) -> None:
        with self._lock:
            self.notes.append(text)

    def host_by_pid(self, pid: int) -> HostSpan | None:
        return next((h for h in self.hosts if h.pid == pid), None)
