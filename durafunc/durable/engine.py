"""The engine: owns partitions, reads control queues and the work-item queue, runs episodes and activities.

Checkpoint order is DTFx's: send outbound messages, write history (sentinel ETag), merge the instance row,
then delete the consumed messages. Work this host will do itself is handed over in memory at once; its queue
message is sent invisible, so it is still there for another host if this one dies.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import socket
import time
from dataclasses import dataclass, field
from datetime import timedelta

from ..storage.errors import SplitBrainError, StorageUnavailableError
from ..storage.schema import TERMINAL_STATUSES, EventType, OrchestrationStatus, parse_time, utcnow
from ..storage.taskhub import TaskHub
from . import events as ev
from .episode import (InstanceState, begin, completed_row, decide, needs_orchestrator, rewind_history,
                      status_from_history, triage)
from .activities import ActivityRunner
from .delivery import Item
from .protocol import context_json, parse_failure, parse_output
from .replay import HTTP_ACTIVITY, entries_of, replay, scheduled_input
from .rowwriter import RowWriter
from .worker import DurableFunctions, UserCodeError

log = logging.getLogger("durafunc.engine")
ET = EventType
MAX_QUEUE_DELAY = 6 * 24 * 3600.0        # queues hide a message for at most 7 days; hop at 6


@dataclass
class EngineOptions:
    max_concurrent_activities: int = 10 * (os.cpu_count() or 1)
    max_concurrent_orchestrations: int = 100
    control_batch_size: int = 32
    control_visibility: float = 30.0      # how long a received/handed-over control message stays hidden
    work_item_visibility: float = 60.0    # renewed while the activity runs
    max_polling_interval: float = 1.0
    poison_max_dequeue_count: int = 5
    store_inputs: bool = False
    lease_duration: float = 15.0
    local_activities: bool = True         # run own activities from history, without work-item messages
    row_refresh: float = 1.0              # min seconds between instance-row writes that change only times
    row_delay: float = 0.5                # how long a running instance's row changes may be held and merged
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")


def malformed(message: dict) -> str | None:
    """Why a parsed TaskMessage cannot be processed at all (None when it looks right)."""
    event = message.get("Event")
    if not isinstance(event, dict):
        return "the message has no Event"
    if not isinstance(event.get("EventType"), int) or event["EventType"] not in ET._value2member_map_:
        return f"unknown EventType {event.get('EventType')!r}"
    if not isinstance(event.get("Timestamp"), str):
        return "the event has no Timestamp"
    if not isinstance((message.get("OrchestrationInstance") or {}).get("InstanceId"), str):
        return "the message names no instance"
    return None


class _Session:
    __slots__ = ("pending", "task")

    def __init__(self):
        self.pending: list[Item] = []
        self.task: asyncio.Task | None = None


class Engine(ActivityRunner):
    def __init__(self, hub: TaskHub, functions: DurableFunctions, options: EngineOptions | None = None):
        self.hub = hub
        self.functions = functions
        self.opt = options or EngineOptions()
        self.owned: dict[str, asyncio.Task] = {}        # control queue name -> poll loop
        self.sessions: dict[str, _Session] = {}
        self.states: dict[str, InstanceState] = {}
        self.activity_slots = asyncio.Semaphore(self.opt.max_concurrent_activities)
        self.orchestration_slots = asyncio.Semaphore(self.opt.max_concurrent_orchestrations)
        self.wakeups: dict[str, asyncio.Event] = {}
        self.tasks: set[asyncio.Task] = set()
        self.running = False
        self.balancer = None
        self.outage_logged = False
        self.stats = {"episodes": 0, "activities": 0, "recovered": 0}
        self.inflight: set[tuple[str, int]] = set()       # (instance, task id) activities running here
        self.rows = RowWriter(hub.instances.merge, delay=self.opt.row_delay, refresh=self.opt.row_refresh,
                              still_mine=self.owns)
        self._local_ids = 0

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self, *, create: bool = True) -> None:
        from ..storage.leases import LeaseBalancer, PartitionLeases
        if create:
            await self.hub.create_if_not_exists()
        self.running = True
        leases = PartitionLeases(self.hub.account, self.hub.names, self.opt.worker_id,
                                 lease_duration=self.opt.lease_duration)
        self.balancer = LeaseBalancer(leases, self.hub.names.control_queues, self._on_acquired, self._on_lost,
                                      renew_interval=self.opt.lease_duration / 3, acquire_interval=1.0)
        self.balancer.start()
        self._spawn(self._work_item_loop())

    async def stop(self, grace: float = 10.0) -> None:
        """Stop taking work, let in-flight episodes and activities finish (bounded), release leases."""
        self.running = False
        for w in self.wakeups.values():
            w.set()
        busy = [s.task for s in self.sessions.values() if s.task and not s.task.done()]
        pending = [t for t in self.tasks if not t.done()]
        if busy or pending:
            await asyncio.wait(busy + pending, timeout=grace)
        for t in list(self.tasks) + list(self.owned.values()):
            t.cancel()
        await asyncio.gather(*self.tasks, *self.owned.values(), return_exceptions=True)
        await self.rows.flush_all()
        if self.balancer is not None:
            await self.balancer.stop()

    def _spawn(self, coro) -> asyncio.Task:
        t = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(t)
        t.add_done_callback(self.tasks.discard)
        return t

    async def _on_acquired(self, partition: str) -> None:
        if partition not in self.owned and self.running:
            log.info("partition %s acquired by %s", partition, self.opt.worker_id)
            queue = next(q for q in self.hub.control_queues if q.name == partition)
            self.owned[partition] = asyncio.get_running_loop().create_task(self._control_loop(queue))
            if self.opt.local_activities:
                self._spawn(self._recover_partition(partition))

    async def _on_lost(self, partition: str) -> None:
        task = self.owned.pop(partition, None)
        if task:
            log.info("partition %s released by %s", partition, self.opt.worker_id)
            task.cancel()
        gone = [i for i in self.states if self.hub.control_queue_for(i).name == partition]
        for iid in gone:
            self.states.pop(iid, None)
        self.rows.forget(gone)

    def owns(self, instance_id: str) -> bool:
        return self.running and self.hub.control_queue_for(instance_id).name in self.owned

    # -- polling --------------------------------------------------------------------------------
    def _wake(self, name: str) -> None:
        w = self.wakeups.get(name)
        if w:
            w.set()

    async def _sleep(self, name: str, delay: float) -> None:
        w = self.wakeups.setdefault(name, asyncio.Event())
        try:
            await asyncio.wait_for(w.wait(), delay)
        except asyncio.TimeoutError:
            pass
        w.clear()

    async def _storage_call(self, coro, what: str):
        """Run a storage call; on an outage log once, back off, and return None."""
        try:
            result = await coro
        except StorageUnavailableError as e:
            if not self.outage_logged:
                log.warning("storage unavailable (%s): %s; retrying with back-off", what, e)
                self.outage_logged = True
            raise
        if self.outage_logged:
            log.warning("storage is back")
            self.outage_logged = False
        return result

    async def _poll(self, queue, batch: int, visibility: float):
        delay = 0.01
        while self.running:
            try:
                items = await self._storage_call(queue.receive(batch, visibility), f"receive {queue.name}")
            except StorageUnavailableError:
                await asyncio.sleep(min(2.0, max(0.5, delay)))
                delay = min(2.0, delay * 2)
                continue
            if items:
                return items
            await self._sleep(queue.name, delay * random.uniform(0.8, 1.2))
            delay = min(self.opt.max_polling_interval, delay * 2 + 0.01)
        return []

    async def _control_loop(self, queue) -> None:
        while self.running:
            items = await self._poll(queue, self.opt.control_batch_size, self.opt.control_visibility)
            for qi in items:
                item = Item(queue, qi.id, qi.pop_receipt, qi.dequeue_count,
                            qi.data.task_message if qi.data else None,
                            qi.data.episode if qi.data else None, qi)
                await self._admit(item)

    def _local_item(self, message: dict | None, episode: int | None = None, **kw) -> Item:
        self._local_ids += 1
        return Item(None, f"local-{self._local_ids}", "", 1, message, episode, **kw)

    async def _recover_partition(self, partition: str) -> None:
        """After taking a partition: instances with activities that were running on a host that is gone
        have only their TaskScheduled rows to show for it; schedule a recovery pass for each."""
        try:
            token = None
            while self.running and partition in self.owned:
                rows, token = await self.hub.instances.query(
                    statuses=[OrchestrationStatus.Running, OrchestrationStatus.Pending], top=500, continuation=token)
                for row in rows:
                    if self.hub.control_queue_for(row.instance_id).name == partition:
                        await self._enqueue(row.instance_id, self._local_item(None, recover=True, raw=row))
                if not token:
                    return
        except StorageUnavailableError:
            await asyncio.sleep(2.0)
            if self.running and partition in self.owned:
                self._spawn(self._recover_partition(partition))

    async def _enqueue(self, iid: str, item: Item) -> None:
        session = self.sessions.get(iid)
        if session is None:
            session = self.sessions[iid] = _Session()
        if item.queue is not None and any(p.id == item.id for p in session.pending):
            return
        session.pending.append(item)
        if session.task is None or session.task.done():
            session.task = asyncio.get_running_loop().create_task(self._run_session(iid, session))

    async def _admit(self, item: Item) -> None:
        if item.recover:
            return
        if item.message is None:
            await self._poison(item, f"cannot parse message: {getattr(item.raw, 'error', 'unknown')}")
            return
        if item.dequeue_count > self.opt.poison_max_dequeue_count:
            await self._poison(item, f"processing failed {item.dequeue_count - 1} times")
            return
        problem = malformed(item.message)
        if problem:
            await self._poison(item, problem)
            return
        event = item.message.get("Event") or {}
        if event.get("EventType") == ET.TimerFired:
            fire_at = parse_time(event.get("FireAt"))
            if fire_at and (fire_at - utcnow()).total_seconds() > 1.0:   # a long timer's hop: requeue
                await self._requeue_timer(item, fire_at)
                return
        iid = (item.message.get("OrchestrationInstance") or {}).get("InstanceId")
        await self._enqueue(iid, item)

    async def _poison(self, item: Item, reason: str) -> None:
        if item.queue is None or item.raw is None:
            log.error("dropping message %s: %s", item.id, reason)
            return
        log.error("poison message %s in %s moved to %s-poison: %s", item.id, item.queue.name, item.queue.name,
                  reason)
        try:
            if item.raw is not None:
                await item.queue.move_to_poison(item.raw, reason)
        except StorageUnavailableError:
            pass

    async def _requeue_timer(self, item: Item, fire_at) -> None:
        remaining = (fire_at - utcnow()).total_seconds()
        await item.queue.send(item.message, visibility_timeout=min(remaining, MAX_QUEUE_DELAY),
                              episode=item.episode)
        await item.queue.delete(item.raw or item)

    # -- sessions and episodes ------------------------------------------------------------------
    async def _run_session(self, instance_id: str, session: _Session) -> None:
        while session.pending and self.running:
            items, session.pending = session.pending, []
            async with self.orchestration_slots:
                try:
                    await self._episode(instance_id, items)
                except SplitBrainError:
                    log.warning("instance %s was checkpointed by another host; will replay", instance_id)
                    self.states.pop(instance_id, None)
                    self._retry_in_memory(session, items, count=False)
                except StorageUnavailableError:
                    self.states.pop(instance_id, None)
                    self._retry_in_memory(session, items, count=False)
                    await asyncio.sleep(1.0)
                except Exception:  # noqa: BLE001 - never let one instance take the host down
                    log.exception("episode of instance %s failed; its messages will be retried", instance_id)
                    self.states.pop(instance_id, None)
                    self._retry_in_memory(session, items, count=True)
                    await asyncio.sleep(0.2)
        if not session.pending and self.sessions.get(instance_id) is session:
            del self.sessions[instance_id]

    def _retry_in_memory(self, session: _Session, items: list[Item], *, count: bool) -> None:
        """Messages that exist only in memory are not redelivered by a queue: keep them for the next try
        (queue messages come back by themselves when their visibility timeout ends)."""
        for item in items:
            if item.queue is not None:
                continue
            if count:
                item.dequeue_count += 1
                if item.dequeue_count > self.opt.poison_max_dequeue_count:
                    log.error("dropping in-memory message %s after %d failed episodes (the task runs again "
                              "when its partition is next taken)", item.id, item.dequeue_count - 1)
                    continue
            session.pending.append(item)

    async def _load(self, instance_id: str) -> InstanceState:
        state = self.states.get(instance_id)
        if state is None:
            snap = await self._storage_call(self.hub.history.load(instance_id), "load history")
            state = InstanceState(instance_id, snap.execution_id, list(snap.events), snap.etag,
                                  status_from_history(snap.events), stored_rows=snap.row_count)
            self.states[instance_id] = state
        return state

    async def _entity_episode(self, instance_id: str, items: list[Item]) -> None:
        """One batch of entity operations: run them through the SDK, answer callers, keep the state."""
        from .entities import EntityState, batch_context, parse_entity_id, response_message
        items = [i for i in items if not i.recover]
        if not items:
            return
        name, key = parse_entity_id(instance_id)
        requests, bad = [], []
        for item in items:
            event = item.message.get("Event") or {}
            try:
                req = json.loads(event.get("Input") or "")
                if not isinstance(req, dict) or "op" not in req:
                    raise ValueError
                requests.append((item, req))
            except ValueError:
                bad.append(item)
        for item in bad:
            await self._poison(item, "entity request is not a RequestMessage")
        if not requests:
            return
        row = await self.hub.instances.get(instance_id)
        state = EntityState.from_row_input(row.input if row else None)
        known = next((n for n in self.functions.entity_names() if n.lower() == name.lower()), None)
        now = utcnow()
        if known is None:
            results = [{"isError": True, "result": json.dumps(
                self._unknown("entity", name, self.functions.entity_names()))} for _ in requests]
        else:
            try:
                out = json.loads(await self.functions.run_entity(
                    known, batch_context(name, key, state, [r for _, r in requests])))
                results = out.get("results") or []
                state = EntityState(bool(out.get("entityExists")), out.get("entityState"))
            except UserCodeError as e:
                log.error("entity %s failed: %s: %s", instance_id, e.type_name, e.message)
                results = [{"isError": True, "result": json.dumps(f"{e.type_name}: {e.message}")} for _ in requests]
        from .episode import Outbound
        outbound = []
        for (_, req), res in zip(requests, results):
            if req.get("signal") or not req.get("parent"):
                continue
            answer = ev.event_raised(now, req["id"], response_message(res))
            outbound.append(Outbound(False, req["parent"],
                                     ev.task_message(answer, req["parent"], req.get("parentExecution"))))
        handoffs = await asyncio.gather(*(self._send(o, None, None) for o in outbound))
        fields = {"Name": name, "RuntimeStatus": "Running", "Input": state.to_row_input(), "LastUpdatedTime": now,
                  "Worker": self.opt.worker_id}
        if row is None:
            fields["CreatedTime"] = now
        await self.hub.instances.merge(instance_id, fields)
        for h in handoffs:
            if h is not None:
                h()
        await self._delete([i for i, _ in requests])
        self.stats["episodes"] += 1

    async def _episode(self, instance_id: str, items: list[Item]) -> None:
        if instance_id.startswith("@"):
            await self._entity_episode(instance_id, items)
            return
        # recovery is for instances nobody here runs: one already in memory is being run by this host
        recover = any(i.recover for i in items) and instance_id not in self.states
        rows = [i.raw for i in items if i.recover and i.raw is not None]
        items = [i for i in items if not i.recover]
        state = await self._load(instance_id)
        if recover:
            await self._repair_row(state)
            await self._redispatch(state)
            start = await self._start_from_row(state, rows[0]) if rows else None
            if start is not None:
                items.append(start)
        items.sort(key=lambda i: (i.message.get("Event") or {}).get("EventType") != ET.ExecutionStarted)
        if not items:
            return
        t = triage(state, [i.message for i in items])
        for idx, why in t.dropped:
            log.debug("instance %s: dropped message %s (%s)", instance_id, items[idx].id, why)
        if t.deferred:
            await asyncio.gather(*(self._defer(items[i]) for i in t.deferred))
        if not t.accepted:
            await self._delete([items[i] for i, _ in t.dropped])
            return
        now = utcnow()
        if state.history and now <= parse_time(state.history[-1]["Timestamp"]):
            now = parse_time(state.history[-1]["Timestamp"]) + timedelta(microseconds=1)
        rewind_ids = None
        rewrite = False
        if any(e.get("EventType") == ET.ExecutionRewound for e in t.accepted):
            state.history, rewind_ids = rewind_history(state.history)
            state.status = OrchestrationStatus.Running
            rewrite = True
        episode_events, reset = begin(state, t.accepted, now)
        start = episode_events[1] if reset else state.started_event
        name = (start or {}).get("Name") or ""
        output = None
        known = True
        if needs_orchestrator(state, t.accepted) and start is not None:
            known = any(n.lower() == name.lower() for n in self.functions.orchestrator_names())
            if not known:
                from .protocol import OrchestratorOutput
                output = OrchestratorOutput({}, self._unknown("orchestrator", name,
                                                              self.functions.orchestrator_names()))
            else:
                output = await self._call_orchestrator(instance_id, state, episode_events, reset, start)
        d = decide(state, episode_events, reset, output, now, store_inputs=self.opt.store_inputs,
                   known_orchestrator=known, rewind_ids=rewind_ids, missing_function=self._missing)
        for line in d.log:
            log.info("instance %s: %s", instance_id, line)
        await self._commit(state, d, items, t, rewrite)
        self.stats["episodes"] += 1

    async def _start_from_row(self, state: InstanceState, row) -> Item | None:
        """A Pending instance with no history: its start lived only in memory on a host that is gone (starts
        of new instances a host runs itself send no queue message); the row holds all it needs."""
        if state.history or row.runtime_status != OrchestrationStatus.Pending or not row.execution_id:
            return None
        row = await self.hub.instances.get(state.instance_id)     # the query left large inputs unresolved
        if row is None or row.runtime_status != OrchestrationStatus.Pending or not row.execution_id:
            return None
        if row.scheduled_start_time is not None and row.scheduled_start_time > utcnow():
            return None
        log.info("instance %s: starting it from its Pending row after a host change", state.instance_id)
        started = ev.execution_started(row.created_time or utcnow(), instance_id=state.instance_id,
                                       execution_id=row.execution_id, name=row.name, input=row.input,
                                       generation=row.generation or 0)
        return self._local_item(ev.task_message(started, state.instance_id, row.execution_id))

    def start_local(self, instance_id: str, message: dict) -> bool:
        """Run a brand-new instance's start here, in memory (its Pending row, written first, is the durable
        record). False when this host does not own the instance's partition."""
        if not self.owns(instance_id):
            return False
        self.states.setdefault(instance_id, InstanceState(instance_id, stored_rows=0))
        self._spawn(self._admit(self._local_item(message)))
        return True

    async def _repair_row(self, state: InstanceState) -> None:
        """A host that died between the history commit and the row write left the row behind: fix it."""
        if state.status not in (OrchestrationStatus.Completed, OrchestrationStatus.Failed,
                                OrchestrationStatus.Terminated, OrchestrationStatus.ContinuedAsNew):
            return
        fields = completed_row(state.history)
        if fields is not None:
            log.info("instance %s: repairing its row (%s per history)", state.instance_id, fields["RuntimeStatus"])
            await self.hub.instances.merge(state.instance_id, {**fields, "ExecutionId": state.execution_id,
                                                               "Worker": self.opt.worker_id})

    async def _redispatch(self, state: InstanceState) -> None:
        """Run again the activities scheduled in history that have no result and are not running here."""
        if state.status != OrchestrationStatus.Running or not state.history:
            return
        done = state.completed_ids()
        open_ids = {e["EventId"] for e in state.history
                    if e.get("EventType") == ET.TaskScheduled and e["EventId"] not in done
                    and (state.instance_id, e["EventId"]) not in self.inflight}
        if not open_ids:
            return
        start = state.started_event
        output = await self._call_orchestrator(state.instance_id, state, [], False, start)
        result = replay(entries_of(output.state), state.history, utcnow())
        episode_no = sum(1 for e in state.history if e.get("EventType") == ET.OrchestratorStarted)
        for node in result.issued:
            if node.id in open_ids and node.kind == "activity":
                message = ev.task_message(ev.task_scheduled(utcnow(), node.id, node.name, scheduled_input(node)),
                                          state.instance_id, state.execution_id)
                log.info("instance %s: running activity '%s' (task %s) again after a host change",
                         state.instance_id, node.name, node.id)
                self.stats["recovered"] += 1
                self._dispatch_activity(self._local_item(message, episode_no))

    async def _call_orchestrator(self, instance_id, state, episode_events, reset, start):
        history = ([] if reset else state.history) + episode_events
        parent = ((start.get("ParentInstance") or {}).get("OrchestrationInstance") or {}).get("InstanceId")
        body = context_json(instance_id=instance_id, history=history, input_text=start.get("Input"),
                            parent_instance_id=parent, is_replaying=bool(state.history) and not reset)
        try:
            return parse_output(await self.functions.run_orchestrator(start.get("Name"), body))
        except UserCodeError as e:
            out = parse_failure(e.message)
            log.error("orchestrator %s of instance %s failed: %s\n%s", start.get("Name"), instance_id, out.error,
                      e.traceback_text)
            return out
        except ValueError as e:
            log.exception("orchestrator %s returned an unreadable answer", start.get("Name"))
            return parse_failure(str(e))

    @staticmethod
    def _unknown(kind: str, name: str, known: list[str]) -> str:
        listing = (f"The following are the known {kind} functions: " + ", ".join(f"'{n}'" for n in known) + "."
                   if known else f"No {kind} functions are currently registered!")
        return f"The function '{name}' doesn't exist, is disabled, or is not an {kind} function. " \
               f"Additional info: {listing}"

    def _missing(self, kind: str, name: str | None) -> str | None:
        if kind == "activity" and name != HTTP_ACTIVITY:   # the host runs call_http's built-in activity
            names = self.functions.activity_names()
            if not any(n.lower() == (name or "").lower() for n in names):
                return self._unknown("activity", name, names)
        if kind == "suborch":
            names = self.functions.orchestrator_names()
            if not any(n.lower() == (name or "").lower() for n in names):
                return self._unknown("orchestrator", name, names)
        return None

    async def _commit(self, state: InstanceState, d, items: list[Item], t, rewrite: bool) -> None:
        iid = state.instance_id
        episode_no = sum(1 for e in state.history if e.get("EventType") == ET.OrchestratorStarted) + 1
        sender = {"InstanceId": iid, "ExecutionId": d.execution_id}
        # 1. outbound messages. Activities start at once, as a DTFx worker may take a work item sent before the
        #    history commit (a crash before the commit runs them again; activities are at-least-once).
        handoffs = await asyncio.gather(*(self._send(o, episode_no, sender) for o in d.outbound))
        for o, h in zip(d.outbound, handoffs):
            if h is not None and o.to_work_items:
                h()
        # 2. history (the commit point)
        if d.reset_history:
            base, start_index = [], 0
        elif rewrite:
            base, start_index = state.history, 0
        else:
            base, start_index = state.history, len(state.history)
        to_write = (base + d.new_events) if rewrite else d.new_events
        if to_write:
            state.etag = await self.hub.history.append(iid, d.execution_id, to_write, start_index, state.etag,
                                                       known_rows=state.stored_rows)
            if state.stored_rows is not None:
                state.stored_rows = max(state.stored_rows, start_index + len(to_write))
        state.history = base + d.new_events
        state.execution_id = d.execution_id
        state.status = d.status
        # the new work is durable now: hand over the rest of what this host does itself before the bookkeeping
        for o, h in zip(d.outbound, handoffs):
            if h is not None and not o.to_work_items:
                h()
        # 3. instance row, 4. consumed and dropped messages (both after the commit point, in parallel)
        row = dict(d.row)
        row["Worker"] = self.opt.worker_id
        final = d.status in TERMINAL_STATUSES
        if final:   # a finished instance's history leaves memory (a late message or a rewind loads it again)
            self.states.pop(iid, None)
        await asyncio.gather(self.rows.write(iid, row, final=final),
                             self._delete([items[i] for i in t.consumed] + [items[i] for i, _ in t.dropped]))
        if final:
            log.info("instance %s (%s) %s", iid, state.name, d.status.name.lower())

    async def _delete(self, items: list[Item]) -> None:
        async def one(i: Item):
            if i.queue is None:
                return
            try:
                await i.queue.delete(i.raw if i.raw is not None else i)
            except StorageUnavailableError:
                pass
        if items:
            await asyncio.gather(*(one(i) for i in items))

    async def _defer(self, item: Item) -> None:
        delay = min(2 ** max(0, item.dequeue_count - 1) * 0.5, 10.0)
        if item.queue is None:
            item.dequeue_count += 1
            asyncio.get_running_loop().call_later(
                delay, lambda: self._spawn(self._admit(item)) if self.running else None)
            return
        try:
            await item.queue.set_visibility(item.raw if item.raw is not None else item, delay)
        except Exception:  # noqa: BLE001 - it reappears after its visibility timeout anyway
            pass
        if item.raw is None:   # a handed-over message: deliver it again ourselves
            loop = asyncio.get_running_loop()
            loop.call_later(delay, lambda: self._spawn(self._admit(item)) if self.running else None)

    # -- sending with in-memory handoff ---------------------------------------------------------
    async def _send(self, o, episode: int | None, sender: dict | None):
        """Send one outbound message; returns a callback that hands it over locally (after commit)."""
        if o.to_work_items and self.running and self.opt.local_activities:
            item = self._local_item(o.message, episode)
            return lambda: self._dispatch_activity(item)
        if o.to_work_items:
            queue = self.hub.work_items
            local = self.running
            hide = self.opt.work_item_visibility if local else 0.0
        else:
            queue = self.hub.control_queue_for(o.instance_id)
            local = self.owns(o.instance_id)
            hide = o.delay
            if local:
                hide = min(o.delay + self.opt.control_visibility, MAX_QUEUE_DELAY) if o.delay < MAX_QUEUE_DELAY \
                    else MAX_QUEUE_DELAY
            else:
                hide = min(o.delay, MAX_QUEUE_DELAY)
        sent = await queue.send(o.message, visibility_timeout=hide, episode=episode, sender=sender)
        if not local or sent is None or o.delay >= MAX_QUEUE_DELAY:
            if not local:
                self._wake(queue.name)
            return None
        item = Item(queue, sent.id, sent.pop_receipt, 1, o.message, episode)

        def handoff():
            if o.to_work_items:
                self._dispatch_activity(item)
            elif o.delay > 0:
                asyncio.get_running_loop().call_later(
                    o.delay, lambda: self._spawn(self._admit(item)) if self.running else None)
            else:
                self._spawn(self._admit(item))
        return handoff

    async def send_to_instance(self, instance_id: str, message: dict, *, fresh: bool = False) -> None:
        """Used by clients in this process (start, raise, terminate...): send, and hand over if owned.
        `fresh`: the instance id was just generated, so it has no history yet."""
        from .episode import Outbound
        if fresh and self.owns(instance_id) and instance_id not in self.states:
            self.states[instance_id] = InstanceState(instance_id, stored_rows=0)
        h = await self._send(Outbound(False, instance_id, message), None, None)
        if h:
            h()

    def cached_status(self, instance_id: str) -> OrchestrationStatus | None:
        """The status of an instance this host runs and has in memory (None if not known here)."""
        state = self.states.get(instance_id)
        if state is None or not self.owns(instance_id) or state.status is None:
            return None
        return state.status
