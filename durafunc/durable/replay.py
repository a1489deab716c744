"""The host side of an orchestration replay, as a pure function.

The Python SDK answers each episode with the cumulative list of actions it wants. On Azure, the Durable
extension replays that list into DTFx, which hands out sequence ids, matches them with the stored history
(non-determinism detection), runs retry policies, and decides what is new work. This module does the same
walk: `replay(entries, history, now)` -> which actions have which ids, what is new, what is still open.

Ids are handed out exactly where the SDK hands them out: for the actions of a yield when user code resumes
(which is when the previous yield's task resolves), and for the hidden timer / re-attempt of a retry policy
when the failure / the timer is processed. So both sides agree on every TaskScheduledId and TimerId.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..storage.schema import EventType, parse_time
from .events import SCHEDULING_TYPES

ET = EventType

# SDK action types (sdk-protocol.md 2.2)
CALL_ACTIVITY, CALL_ACTIVITY_RETRY, CALL_SUB, CALL_SUB_RETRY, CONTINUE_AS_NEW, CREATE_TIMER, WAIT_EVENT, \
    CALL_ENTITY, CALL_HTTP, SIGNAL_ENTITY, SCHEDULED_SIGNAL, WHEN_ANY, WHEN_ALL = range(13)

ACTION_CLASS = {CALL_ACTIVITY: "CallActivityAction", CALL_ACTIVITY_RETRY: "CallActivityWithRetryAction",
                CALL_SUB: "CallSubOrchestratorAction", CALL_SUB_RETRY: "CallSubOrchestratorWithRetryAction",
                CREATE_TIMER: "CreateTimerAction", CALL_ENTITY: "CallEntityAction", CALL_HTTP: "CallHttpAction",
                SIGNAL_ENTITY: "SignalEntityAction", CONTINUE_AS_NEW: "ContinueAsNewAction"}
HTTP_ACTIVITY = "BuiltIn::HttpActivity"
MAX_RETRY_INTERVAL = timedelta(days=6)

# What each id-consuming action records in history.
_RECORDED_AS = {"activity": ET.TaskScheduled, "suborch": ET.SubOrchestrationInstanceCreated,
                "timer": ET.TimerCreated, "entity": ET.EventSent, "signal": ET.EventSent}
_KIND_WORDS = {ET.TaskScheduled: "an activity task", ET.SubOrchestrationInstanceCreated: "a sub-orchestration task",
               ET.TimerCreated: "a timer task", ET.EventSent: "a send event task"}


@dataclass(eq=False)
class Node:
    """One task of the host's replay: atomic (has an id) or compound (all/any/retry)."""
    kind: str                       # activity|suborch|timer|wait|entity|signal|can|all|any|retry
    action: dict | None = None
    id: int | None = None
    name: str | None = None         # activity/orchestrator name, event name, entity op
    children: list["Node"] = field(default_factory=list)
    parent: "Node | None" = None
    done: bool = False
    failed: bool = False
    cancelled: bool = False         # a timer whose waiter was cancelled
    fire_at: datetime | None = None  # timers: when it fires (for new ones)
    retry_of: "Node | None" = None  # atomic attempt / timer created by a retry policy
    retry_timer: bool = False
    attempts: int = 0               # retry nodes: attempts made so far
    first_attempt_at: datetime | None = None
    request_id: str | None = None   # entity calls: the request GUID the response is named by
    pending: int = 0                # all nodes: children not resolved yet

    @property
    def is_open(self) -> bool:
        """Counts for DTFx's HasOpenTasks (keeps an orchestration from completing)."""
        return (not self.done and self.kind in ("activity", "suborch", "timer", "entity")
                and not self.cancelled)


@dataclass
class ReplayResult:
    issued: list[Node]              # atomic nodes with ids, in id order
    new_work: list[Node]            # issued nodes whose scheduling event is not in history yet
    entries_done: bool              # every action entry was issued and the last one resolved
    open_tasks: int                 # activities/sub-orchestrations/timers/entity calls not resolved
    nondeterminism: str | None      # DTFx's message when replay no longer matches history
    next_id: int
    pending_events: dict[str, list[Any]] = field(default_factory=dict)


def entries_of(sdk_state: dict) -> list[dict]:
    """The top-level action entries from the SDK state (V2/V3 flat list; V1 list-per-yield)."""
    actions = sdk_state.get("actions") or []
    schema = sdk_state.get("schemaVersion", 0) or 0
    if schema and actions:
        return list(actions[0]) if isinstance(actions[0], list) else list(actions)
    entries = []
    for inner in actions:  # V1: each yield is one list; the host awaits any of it
        if isinstance(inner, list):
            if len(inner) == 1:
                entries.append(inner[0])
            elif inner:
                entries.append({"actionType": WHEN_ANY, "compoundActions": inner})
        elif isinstance(inner, dict):
            entries.append(inner)
    return entries


def scheduled_input(node: Node) -> str:
    """TaskScheduled.Input of an activity node: DTFx serializes the parameter array, so a user activity gets
    `["<input JSON text>"]` and call_http's BuiltIn::HttpActivity `[<DurableHttpRequest object>]` (what the
    extension's TaskHttpActivityShim reads back as a list of DurableHttpRequest)."""
    a = node.action or {}
    if a.get("actionType") == CALL_HTTP:
        return json.dumps([a.get("httpRequest")])
    return json.dumps([a.get("input")])


def retry_delay(options: dict, attempt: int) -> timedelta:
    """Delay before re-attempt number `attempt + 1` (attempt counts from 1), as DTFx RetryOptions compute it."""
    first = float(options.get("firstRetryIntervalInMilliseconds") or 0)
    backoff = float(options.get("backoffCoefficient") or 1.0)
    cap_ms = options.get("maxRetryIntervalInMilliseconds")
    delay = timedelta(milliseconds=first * (backoff ** (attempt - 1)))
    cap = timedelta(milliseconds=float(cap_ms)) if cap_ms else MAX_RETRY_INTERVAL
    return min(delay, cap)


class Replayer:
    """The walk, resumable: `walk(events)` takes history events in order (each once), `result()` answers for
    the history walked so far and the current `entries` without changing what later walks see. An extended
    session keeps one across episodes (`follow` takes the next episode's entries), so an episode costs what it
    adds, not the whole history."""

    def __init__(self, entries: list[dict], now: datetime):
        self.entries = entries
        self.now = now                  # orchestration time of the episode being decided
        self.time: datetime | None = None
        self.next_id = 0
        self.by_id: dict[int, Node] = {}
        self.issued: list[Node] = []
        self.cursor = 0
        self.current: Node | None = None
        self.started = False
        self.waiters: dict[str, list[Node]] = {}
        self.early_events: dict[str, list[Any]] = {}
        self.entity_calls: dict[str, Node] = {}
        self.recorded: dict[int, dict] = {}   # EventId -> scheduling event in history
        self.unchecked: set[int] = set()      # recorded ids not yet matched against a node of the walk
        self.unrecorded: set[int] = set()     # ids of the walk's nodes whose scheduling event is not in history
        self.open_ids: set[int] = set()       # ids of the walk's nodes that may still be open

    # -- building nodes ---------------------------------------------------------------------
    def _alloc(self, node: Node) -> Node:
        node.id = self.next_id
        self.next_id += 1
        self.by_id[node.id] = node
        self.issued.append(node)
        if node.kind != "can" and node.id not in self.recorded:
            self.unrecorded.add(node.id)
        self.open_ids.add(node.id)
        return node

    def _build(self, action: dict, parent: Node | None) -> Node:
        t = action.get("actionType")
        if t in (WHEN_ALL, WHEN_ANY):
            node = Node("all" if t == WHEN_ALL else "any", action, parent=parent)
            node.children = [self._build(a, node) for a in action.get("compoundActions") or []]
            node.pending = sum(1 for c in node.children if not c.done)
            if node.pending == 0 if t == WHEN_ALL else (not node.children or node.pending < len(node.children)):
                node.done = True
            return node
        if t in (CALL_ACTIVITY_RETRY, CALL_SUB_RETRY):
            node = Node("retry", action, parent=parent, attempts=1, first_attempt_at=self.time)
            node.children = [self._attempt(node)]
            return node
        if t in (CALL_ACTIVITY, CALL_HTTP):
            name = HTTP_ACTIVITY if t == CALL_HTTP else action.get("functionName")
            return self._alloc(Node("activity", action, name=name, parent=parent))
        if t == CALL_SUB:
            return self._alloc(Node("suborch", action, name=action.get("functionName"), parent=parent))
        if t == CREATE_TIMER:
            node = Node("timer", action, parent=parent, fire_at=parse_time(action.get("fireAt")))
            self._alloc(node)
            if action.get("isCanceled"):
                node.cancelled = node.done = True
            return node
        if t == WAIT_EVENT:
            name = action.get("externalEventName") or ""
            node = Node("wait", action, name=name, parent=parent)
            queued = self.early_events.get(name.lower())
            if queued:
                queued.pop(0)
                node.done = True
            else:
                self.waiters.setdefault(name.lower(), []).append(node)
            return node
        if t == CALL_ENTITY:
            return self._alloc(Node("entity", action, name=action.get("operation"), parent=parent))
        if t in (SIGNAL_ENTITY, SCHEDULED_SIGNAL):
            node = self._alloc(Node("signal", action, name=action.get("operation"), parent=parent))
            node.done = True
            return node
        if t == CONTINUE_AS_NEW:
            node = self._alloc(Node("can", action, parent=parent))
            node.done = True
            return node
        raise ValueError(f"unknown action type {t!r} in orchestrator output")

    def _attempt(self, retry: Node) -> Node:
        a = retry.action
        kind = "suborch" if a.get("actionType") == CALL_SUB_RETRY else "activity"
        child = self._alloc(Node(kind, a, name=a.get("functionName"), parent=retry, retry_of=retry))
        return child

    # -- resolving ------------------------------------------------------------------------------
    def _resolve(self, node: Node, failed: bool) -> None:
        if node.done:
            return
        node.done, node.failed = True, failed
        self.open_ids.discard(node.id)
        parent = node.parent
        if parent is None or parent.done:
            return
        if parent.kind == "retry":
            self._retry_step(parent, node)
        elif parent.kind == "any":
            self._resolve(parent, False)
        elif parent.kind == "all":
            parent.pending -= 1         # a count, not a scan: a fan-in of n results costs O(n), not O(n²)
            if parent.pending <= 0:
                self._resolve(parent, any(c.failed for c in parent.children))

    def _retry_step(self, retry: Node, child: Node) -> None:
        if child.retry_timer:
            if retry.attempts >= int(retry.action.get("retryOptions", {}).get("maxNumberOfAttempts") or 1):
                self._resolve(retry, True)
            else:
                retry.attempts += 1
                retry.children.append(self._attempt(retry))
            return
        if not child.failed:
            self._resolve(retry, False)
            return
        # a failed attempt: DTFx waits on a timer before re-attempting (or, after the last one, fires at once)
        opts = retry.action.get("retryOptions") or {}
        now = self.time or self.now
        last = retry.attempts >= int(opts.get("maxNumberOfAttempts") or 1)
        fire = now if last else now + retry_delay(opts, retry.attempts)
        timer = self._alloc(Node("timer", None, parent=retry, fire_at=fire, retry_of=retry, retry_timer=True))
        retry.children.append(timer)

    def _advance(self) -> None:
        while self.started and self.cursor < len(self.entries) and (self.current is None or self.current.done):
            node = self._build(self.entries[self.cursor], None)
            self.cursor += 1
            self.current = node

    # -- the walk --------------------------------------------------------------------------------
    def follow(self, entries: list[dict], now: datetime) -> bool:
        """The next episode's entries (the SDK's cumulative list): False when they do not extend the ones
        walked so far (then this replayer cannot go on; replay in full)."""
        n = self.cursor
        if len(entries) < n or entries[:n] != self.entries[:n]:    # C-level compares: ~0.2 µs an entry
            return False
        self.entries, self.now = entries, now
        return True

    def run(self, history: list[dict]) -> ReplayResult:
        self.walk(history)
        return self.result()

    def walk(self, events: list[dict]) -> None:
        for ev in events:
            t = ev.get("EventType")
            if t == ET.OrchestratorStarted:
                ts = parse_time(ev.get("Timestamp"))
                if self.time is None or (ts and ts > self.time):
                    self.time = ts
            elif t == ET.ExecutionStarted:
                self.started = True
            elif t in SCHEDULING_TYPES:
                self.recorded[ev.get("EventId")] = ev
                self.unchecked.add(ev.get("EventId"))
                self.unrecorded.discard(ev.get("EventId"))
                if t == ET.TimerCreated:
                    node = self.by_id.get(ev.get("EventId"))
                    if node is not None and node.kind == "timer":
                        node.fire_at = parse_time(ev.get("FireAt"))
                if t == ET.EventSent:
                    self._note_request_id(ev)
            elif t in (ET.TaskCompleted, ET.TaskFailed, ET.SubOrchestrationInstanceCompleted,
                       ET.SubOrchestrationInstanceFailed):
                node = self.by_id.get(ev.get("TaskScheduledId"))
                if node is not None and node.kind in ("activity", "suborch"):
                    self._resolve(node, t in (ET.TaskFailed, ET.SubOrchestrationInstanceFailed))
            elif t == ET.TimerFired:
                node = self.by_id.get(ev.get("TimerId"))
                if node is not None and node.kind == "timer":
                    node.cancelled = False
                    self._resolve(node, False)
            elif t == ET.EventRaised:
                self._event_raised(ev)
            self._advance()

    def result(self) -> ReplayResult:
        self._advance()      # entries new since the last walk, when the current one is resolved
        self.open_ids = {i for i in self.open_ids if self.by_id[i].is_open}
        # Entries the SDK listed beyond the last resolved yield (a yield of an already-scheduled task keeps
        # the SDK waiting without a new entry): issue them now so their ids follow in order. A later walk
        # builds them where the history resolves the ones before (as a full replay then would), so what is
        # built here is taken back afterwards.
        mark = (len(self.issued), self.next_id, self.cursor, self.current, set(self.unrecorded),
                set(self.open_ids), {k: list(v) for k, v in self.waiters.items()},
                {k: list(v) for k, v in self.early_events.items()})
        while self.started and self.cursor < len(self.entries):
            self.current = self._build(self.entries[self.cursor], None)
            self.cursor += 1
        try:
            return self._result(mark[1])
        finally:
            n, self.next_id, self.cursor, self.current, self.unrecorded, self.open_ids, self.waiters, \
                self.early_events = mark
            for node in self.issued[n:]:
                del self.by_id[node.id]
            del self.issued[n:]

    def _note_request_id(self, ev: dict) -> None:
        node = self.by_id.get(ev.get("EventId"))
        if node is None or node.kind != "entity":
            return
        try:
            rid = json.loads(ev.get("Input") or "{}").get("id")
        except (ValueError, AttributeError):
            rid = None
        if rid:
            node.request_id = rid
            self.entity_calls[rid] = node

    def _event_raised(self, ev: dict) -> None:
        name = ev.get("Name") or ""
        call = self.entity_calls.pop(name, None)
        if call is not None:
            self._resolve(call, False)
            return
        stack = self.waiters.get(name.lower())
        if stack:
            self._resolve(stack.pop(), False)
        else:
            self.early_events.setdefault(name.lower(), []).append((name, ev.get("Input")))

    def _result(self, walked_ids: int) -> ReplayResult:
        """The answer; ids from `walked_ids` on are nodes built only for it (the trailing entries)."""
        problem = None
        for eid in sorted(self.unchecked):
            node = self.by_id.get(eid)
            problem = self._mismatch(self.recorded[eid], node)
            if problem:
                break
            if node is not None and eid < walked_ids:
                self.unchecked.discard(eid)          # a node of the walk matches it: it stays matched
        trailing = self.issued[len(self.issued) - (self.next_id - walked_ids):] if self.next_id > walked_ids \
            else []
        ids = sorted(self.unrecorded | {n.id for n in trailing if n.id not in self.recorded and n.kind != "can"})
        new_work = [self.by_id[i] for i in ids]
        entries_done = self.started and self.cursor >= len(self.entries) and (
            self.current is None or self.current.done)
        open_tasks = sum(1 for i in self.open_ids if i < walked_ids) + sum(1 for n in trailing if n.is_open)
        return ReplayResult(list(self.issued), new_work, entries_done, open_tasks, problem, self.next_id,
                            {k: list(v) for k, v in self.early_events.items() if v})

    @staticmethod
    def _mismatch(ev: dict, node: Node | None) -> str | None:
        t = ET(ev["EventType"])
        n, name = ev.get("EventId"), ev.get("Name") or ""
        words = _KIND_WORDS[t]
        tail = " Was a change made to the orchestrator code after this instance had already started running?"
        prefix = "Non-Deterministic workflow detected: "
        if node is None:
            return (f"{prefix}A previous execution of this orchestration scheduled {words} with sequence ID {n} "
                    f"and name '{name}' (version ''), but the current replay execution hasn't (yet?) scheduled "
                    f"this task.{tail}")
        if _RECORDED_AS.get(node.kind) != t:
            cls = ACTION_CLASS.get((node.action or {}).get("actionType"), "CreateTimerAction")
            return (f"{prefix}A previous execution of this orchestration scheduled {words} with sequence number "
                    f"{n} named '{name}', but the current orchestration replay instead produced a {cls} action "
                    f"with this sequence number.{tail}")
        if t in (ET.TaskScheduled, ET.SubOrchestrationInstanceCreated) and \
                (node.name or "").lower() != name.lower():
            return (f"{prefix}A previous execution of this orchestration scheduled {words} with sequence number "
                    f"{n} named '{name}', but the current orchestration replay instead scheduled "
                    f"{words} named '{node.name}' with this sequence number. {tail}")
        return None


class ReplayMismatch(AssertionError):
    """Check mode: an incremental host-side replay answered otherwise than a full one (a bug of durafunc)."""


def _signature(r: ReplayResult) -> tuple:
    def node(n: Node) -> tuple:
        return (n.id, n.kind, n.name, n.done, n.failed, n.cancelled, n.fire_at, n.request_id)
    return ([node(n) for n in r.issued], [n.id for n in r.new_work], r.entries_done, r.open_tasks,
            r.nondeterminism, r.next_id, r.pending_events)


def compare_replays(incremental: ReplayResult, full: ReplayResult, instance_id: str) -> None:
    a, b = _signature(incremental), _signature(full)
    if a != b:
        fields = ("issued", "new work", "entries done", "open tasks", "non-determinism", "next id", "events")
        diff = "; ".join(f"{f}: {x!r} != {y!r}" for f, x, y in zip(fields, a, b) if x != y)
        raise ReplayMismatch(f"instance {instance_id}: the incremental host-side replay differs from a full "
                             f"one: {diff[:2000]}")


def replay(entries: list[dict], history: list[dict], now: datetime) -> ReplayResult:
    """Walk `history` with the SDK's action `entries`; see the module docstring."""
    return Replayer(entries, now).run(history)
