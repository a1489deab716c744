"""The engine: owns partitions, reads control queues and the work-item queue, runs episodes and activities.

The invariants (README, "Durability"):
- a queue message is deleted only after everything it caused is durable: the outbound messages, the history
  (the commit point, guarded by the sentinel ETag), then the instance row;
- every activity in flight is a work-item message a host keeps hidden while it runs it;
- every piece of work is a queue message (sent hidden and handed over in memory when this host does it itself),
  so a host that takes a partition finds its work in the queues, and repairs a row its history is ahead of;
- one execution per instance id: a client's start counts only once its Pending row, inserted If-None-Match
  (or replaced If-Match), names it.
"""
from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
from dataclasses import dataclass, field

from azure.core.exceptions import ResourceNotFoundError

from ..storage.errors import SplitBrainError, StorageUnavailableError
from ..storage.schema import EventType, OrchestrationStatus, parse_time, utcnow
from ..storage.taskhub import TaskHub
from .activities import ActivityRunner
from .delivery import HeldMessages, Item
from .entity_episodes import EntityEpisodes
from .episode import InstanceState
from .extended import ExtendedSessions
from .orchestrations import OrchestrationEpisodes
from .outbox import MAX_QUEUE_DELAY, Outbox
from .rowwriter import RowWriter
from .worker import DurableFunctions

log = logging.getLogger("durafunc.engine")
ET = EventType
BUFFER_LIMIT = 2000              # messages waiting in sessions above which control queues are not read (DTFx
                                 # buffers up to 256 a queue)
RENEW_CHECK = 1.0                # seconds between looks for held messages to renew


@dataclass
class EngineOptions:
    max_concurrent_activities: int = 10 * (os.cpu_count() or 1)
    max_concurrent_orchestrations: int = 100
    control_batch_size: int = 32
    control_visibility: float = 30.0      # how long a received/handed-over control message stays hidden (renewed)
    work_item_visibility: float = 60.0    # renewed while the activity runs
    max_polling_interval: float = 1.0
    poison_max_dequeue_count: int = 5
    store_inputs: bool = False
    lease_duration: float = 15.0
    row_refresh: float = 1.0              # min seconds between instance-row writes that change only times
    row_delay: float = 0.5                # how long a running instance's row changes may be held and merged
    # extended sessions (extended.py): running orchestrations stay loaded between episodes
    extended_sessions: bool = field(default_factory=lambda: os.environ.get("DURAFUNC_EXTENDED_SESSIONS") != "0")
    session_idle: float = 30.0
    max_sessions: int = 2000
    # every incremental episode also replayed in full and compared (tests)
    session_check: bool = field(default_factory=lambda: os.environ.get("DURAFUNC_SESSION_CHECK") == "1")
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


class Engine:
    def __init__(self, hub: TaskHub, functions: DurableFunctions, options: EngineOptions | None = None):
        self.hub = hub
        self.functions = functions
        self.opt = options or EngineOptions()
        self.owned: dict[str, asyncio.Task] = {}        # control queue name -> poll loop
        self.sessions: dict[str, _Session] = {}
        self.states: dict[str, InstanceState] = {}
        self.extended = ExtendedSessions(idle_seconds=self.opt.session_idle, max_sessions=self.opt.max_sessions,
                                         enabled=self.opt.extended_sessions)
        self.held = HeldMessages()
        self.outbox = Outbox(self)
        self.activities = ActivityRunner(self)
        self.orchestrations = OrchestrationEpisodes(self)
        self.entities = EntityEpisodes(self)
        self.rows = RowWriter(hub.instances.write, self._row_etag, hub.history.sentinel_etag, self._delete_later,
                              delay=self.opt.row_delay, refresh=self.opt.row_refresh)
        self.orchestration_slots = asyncio.Semaphore(self.opt.max_concurrent_orchestrations)
        self.wakeups: dict[str, asyncio.Event] = {}
        self.tasks: set[asyncio.Task] = set()
        self.running = False
        self.hub_gone = False
        self.balancer = None
        self._stop_task: asyncio.Task | None = None
        self._hub_check: asyncio.Task | None = None
        self.outage_logged = False
        self.stats = {"episodes": 0, "activities": 0, "repaired": 0, "poisoned": 0}

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self, *, create: bool = True) -> None:
        from ..storage.leases import LeaseBalancer, PartitionLeases
        if create:
            await self.hub.create_if_not_exists()
        self.running = True
        leases = PartitionLeases(self.hub.account, self.hub.names, self.opt.worker_id,
                                 lease_duration=self.opt.lease_duration)
        self.balancer = LeaseBalancer(leases, self.hub.names.control_queues, self._on_acquired, self._on_lost,
                                      renew_interval=self.opt.lease_duration / 3, acquire_interval=1.0,
                                      on_missing=self._check_hub)
        self.balancer.start()
        self.spawn(self.activities.poll_loop())
        self.spawn(self._keeper())

    async def stop(self, grace: float = 10.0) -> None:
        """Stop taking work, let in-flight episodes and activities finish (bounded), write what is held, give
        every message still held back to its queue, release the leases. (Once: a second call waits for the
        first.)"""
        if self._stop_task is None:
            self._stop_task = asyncio.get_running_loop().create_task(self._stop(grace))
        await asyncio.shield(self._stop_task)

    async def _stop(self, grace: float) -> None:
        if not self.running and self.balancer is None:
            return
        self.running = False
        for w in self.wakeups.values():
            w.set()
        loops = list(self.owned.values())
        self.owned.clear()
        for t in loops:
            t.cancel()
        busy = [s.task for s in self.sessions.values() if s.task and not s.task.done()]
        await asyncio.gather(self.activities.stop(grace),
                             asyncio.wait(busy, timeout=grace) if busy else asyncio.sleep(0))
        await self.rows.flush_all()
        me = asyncio.current_task()
        others = [t for t in self.tasks if t is not me]
        for t in others:
            t.cancel()
        await asyncio.gather(*others, *loops, return_exceptions=True)
        leftovers = [i for s in self.sessions.values() for i in s.pending]
        self.sessions.clear()
        await self.release_items(leftovers + list(self.held.items.values()))
        self.states.clear()
        self.extended.clear()
        if self.balancer is not None:
            balancer, self.balancer = self.balancer, None
            await balancer.stop(release=not self.hub_gone)

    def spawn(self, coro) -> asyncio.Task:
        t = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(t)
        t.add_done_callback(self.tasks.discard)
        return t

    # -- partitions -----------------------------------------------------------------------------
    async def _on_acquired(self, partition: str) -> None:
        if partition not in self.owned and self.running:
            log.info("partition %s acquired by %s", partition, self.opt.worker_id)
            queue = next(q for q in self.hub.control_queues if q.name == partition)
            self.owned[partition] = asyncio.get_running_loop().create_task(self._control_loop(queue))

    async def _on_lost(self, partition: str) -> None:
        task = self.owned.pop(partition, None)
        if task is None:
            return
        log.info("partition %s released by %s", partition, self.opt.worker_id)
        task.cancel()
        gone = [i for i in list(self.states) if self.hub.control_queue_for(i).name == partition]
        for iid in gone:
            self.states.pop(iid, None)
        self.extended.drop_where(lambda iid: self.hub.control_queue_for(iid).name == partition)
        self.entities.forget()
        # what is committed gets its row and its deletes now (the writes are conditional: never over a newer one);
        # sessions see the partition gone and hand their pending messages back
        self.spawn(self.rows.flush(gone))

    def owns(self, instance_id: str) -> bool:
        return self.running and self.hub.control_queue_for(instance_id).name in self.owned

    async def _check_hub(self) -> None:
        """A table, queue or container of the hub was not found: if the hub is gone, say so once and stop."""
        if self.hub_gone or not self.running:
            return
        if self._hub_check is None or self._hub_check.done():     # one look at a time, however many ask
            self._hub_check = asyncio.get_running_loop().create_task(self._look_for_hub())
        await asyncio.shield(self._hub_check)

    async def _look_for_hub(self) -> None:
        try:
            exists = await self.hub.exists()
        except StorageUnavailableError:
            return
        if exists or self.hub_gone:
            return
        self.hub_gone = True
        log.error("task hub '%s' was deleted (its History table is gone): the durable engine stops; restart the "
                  "host to create the hub again", self.hub.hub_name)
        self._stop_task = asyncio.get_running_loop().create_task(self._stop(grace=1.0))   # not one of self.tasks

    # -- polling --------------------------------------------------------------------------------
    def wake(self, name: str) -> None:
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
        """Run a storage call; an outage is logged once (and its end)."""
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

    async def poll(self, queue, batch: int, visibility: float):
        delay = 0.01
        while self.running:
            try:
                items = await self._storage_call(queue.receive(batch, visibility), f"receive {queue.name}")
            except StorageUnavailableError:
                await asyncio.sleep(min(2.0, max(0.5, delay)))
                delay = min(2.0, delay * 2)
                continue
            except ResourceNotFoundError:
                await self._check_hub()
                await asyncio.sleep(1.0)
                continue
            if items:
                return items
            await self._sleep(queue.name, delay * random.uniform(0.8, 1.2))
            delay = min(self.opt.max_polling_interval, delay * 2 + 0.01)
        return []

    def refresh(self, qi) -> None:
        """A message this host holds was received again (it showed up before a renewal): keep it, with the
        new pop receipt."""
        item = self.held.get(qi.id)
        if item is not None:
            item.pop_receipt = qi.pop_receipt
            item.dequeue_count = qi.dequeue_count
            item.hidden_for(item.visibility)

    async def _control_loop(self, queue) -> None:
        while self.running and queue.name in self.owned:
            if sum(len(s.pending) for s in self.sessions.values()) > BUFFER_LIMIT:
                await asyncio.sleep(0.05)
                continue
            items = await self.poll(queue, self.opt.control_batch_size, self.opt.control_visibility)
            if queue.name not in self.owned:
                return        # lost meanwhile: what was received shows up again for the new owner
            for qi in items:
                if self.held.get(qi.id) is not None:
                    self.refresh(qi)
                    continue
                item = Item(queue, qi.id, qi.pop_receipt, qi.dequeue_count,
                            qi.data.task_message if qi.data else None,
                            qi.data.episode if qi.data else None, qi, sender=qi.data.sender if qi.data else None)
                item.hidden_for(self.opt.control_visibility)
                self.held.hold(item)
                self.deliver(item)

    async def _keeper(self) -> None:
        """Renew the held messages about to show up again (a long episode, a busy host, a waiting delete)."""
        while self.running:
            await asyncio.sleep(RENEW_CHECK)
            self.extended.sweep()
            await self.activities.share()
            due = self.held.due()
            for i in range(0, len(due), 50):
                await asyncio.gather(*(self._renew(item) for item in due[i:i + 50]))

    async def _renew(self, item: Item) -> None:
        try:
            if await item.queue.set_visibility(item, item.visibility):
                item.hidden_for(item.visibility)
            else:   # deleted, or received by someone else after it showed: it is not ours any more
                log.debug("lost hold of %s", item.describe())
                self.held.release(item)
        except StorageUnavailableError:
            pass
        except Exception:  # noqa: BLE001
            log.debug("renewing %s failed", item.describe(), exc_info=True)

    # -- delivery -------------------------------------------------------------------------------
    def deliver(self, item: Item) -> None:
        """A message for an instance: into its session (admission checks first)."""
        if not self.running:
            self.spawn(self.release_items([item]))
            return
        if item.message is None:
            self.spawn(self.poison(item, f"cannot parse message: {getattr(item.raw, 'error', 'unknown')}"))
            return
        problem = malformed(item.message)
        if problem:
            self.spawn(self.poison(item, problem))
            return
        event = item.event
        if event.get("EventType") == ET.TimerFired and item.queue is not None:
            fire_at = parse_time(event.get("FireAt"))
            if fire_at and (fire_at - utcnow()).total_seconds() > 1.0:   # a long timer's hop: requeue
                self.spawn(self._requeue_timer(item, fire_at))
                return
        iid = item.instance_id
        session = self.sessions.get(iid)
        if session is None:
            session = self.sessions[iid] = _Session()
        if item.queue is not None and any(p.id == item.id for p in session.pending):
            return
        session.pending.append(item)
        if session.task is None or session.task.done():
            session.task = asyncio.get_running_loop().create_task(self._run_session(iid, session))

    def deliver_later(self, item: Item) -> None:
        """A short timer handed over in memory is due."""
        if self.held.get(item.id) is item:
            self.deliver(item)

    async def _requeue_timer(self, item: Item, fire_at) -> None:
        remaining = (fire_at - utcnow()).total_seconds()
        try:
            await item.queue.send(item.message, visibility_timeout=min(remaining, MAX_QUEUE_DELAY),
                                  episode=item.episode, sender=item.sender)
            await self.delete_items([item])
        except StorageUnavailableError:
            self.held.release(item)    # shows up again, and hops then

    async def send_durably(self, instance_id: str, message: dict, episode, sender) -> None:
        """Put a message for an instance into its control queue (handed over in memory if this host runs it)."""
        queue = self.hub.control_queue_for(instance_id)
        here = self.owns(instance_id)
        qi = await queue.send(message, visibility_timeout=self.opt.control_visibility if here else 0,
                              episode=episode, sender=sender)
        if here:
            item = Item(queue, qi.id, qi.pop_receipt, 0, message, episode, qi, sender=sender)
            item.hidden_for(self.opt.control_visibility)
            self.held.hold(item)
            self.deliver(item)
        else:
            self.wake(queue.name)

    async def delete_items(self, items: list[Item]) -> None:
        """Delete the messages (an in-memory result: its work item) whose effects are durable."""
        async def one(item: Item) -> None:
            target = item if item.queue is not None else item.source
            if target is None or target.queue is None:
                return
            self.held.release(target)
            try:
                await target.queue.delete(target)
            except StorageUnavailableError:
                pass    # it shows up again: a duplicate then, dropped (and deleted) by whoever gets it
        if items:
            await asyncio.gather(*(one(i) for i in items))

    async def _delete_later(self, items: list[Item]) -> None:
        """The row writer's deletes: in the background (they are held, and renewed, until done)."""
        self.spawn(self.delete_items(items))

    async def release_items(self, items: list[Item]) -> None:
        """Give messages this host will not process back to their queues, visible at once (an in-memory result
        is sent to its orchestration's queue first, then its work item deleted)."""
        async def one(item: Item) -> None:
            try:
                if item.queue is None:
                    if item.source is not None and self.held.get(item.source.id) is not item.source:
                        return    # its work item was given up already: it runs again
                    queue = self.hub.control_queue_for(item.instance_id)
                    await queue.send(item.message, episode=item.episode, sender=item.sender)
                    await self.delete_items([item])
                    return
                if self.held.get(item.id) is not item:
                    return
                self.held.release(item)
                await item.queue.set_visibility(item, 0)
            except StorageUnavailableError:
                pass        # it shows up by itself when its visibility timeout ends
            except Exception:  # noqa: BLE001
                log.debug("could not give back %s", item.describe(), exc_info=True)
        seen, unique = set(), []
        for i in items:
            if id(i) not in seen:
                seen.add(id(i))
                unique.append(i)
        # results first: each needs its work item still held (giving that back means the activity runs again)
        await asyncio.gather(*(one(i) for i in unique if i.queue is None))
        await asyncio.gather(*(one(i) for i in unique if i.queue is not None))

    async def poison(self, item: Item, reason: str) -> None:
        self.stats["poisoned"] += 1
        if item.queue is None:
            log.error("%s cannot be processed (%s); it goes back to its queue", item.describe(), reason)
            await self.release_items([item])
            return
        log.error("poison message: %s moved to %s-poison: %s", item.describe(), item.queue.name, reason)
        self.held.release(item)
        try:
            raw = item.raw if item.raw is not None else item
            if not getattr(raw, "text", None):
                from ..storage.messages import encode_message
                raw.text = encode_message(item.message, episode=item.episode, sender=item.sender)
            raw.pop_receipt = item.pop_receipt
            await item.queue.move_to_poison(raw, reason)
        except StorageUnavailableError:
            pass

    def defer(self, item: Item, delay: float) -> None:
        """Not yet (its instance has not started, its task is not committed yet): try again in `delay` s."""
        if item.queue is None:
            asyncio.get_running_loop().call_later(delay, lambda: self.deliver(item) if self.running else None)
            return
        self.held.release(item)
        self.spawn(self._hide(item, delay))

    async def _hide(self, item: Item, delay: float) -> None:
        try:
            await item.queue.set_visibility(item, delay)
        except StorageUnavailableError:
            pass

    # -- sessions -------------------------------------------------------------------------------
    async def _run_session(self, instance_id: str, session: _Session) -> None:
        while session.pending and self.running:
            async with self.orchestration_slots:
                if not self.owns(instance_id):
                    await self._give_back(instance_id, session)
                    break
                items, session.pending = session.pending, []
                try:
                    if instance_id.startswith("@"):
                        await self.entities.run(instance_id, items)
                    else:
                        await self.orchestrations.run(instance_id, items)
                    self.stats["episodes"] += 1
                except SplitBrainError:
                    log.info("instance %s was checkpointed by another host; its messages are processed again "
                             "from the new history", instance_id)
                    self.states.pop(instance_id, None)
                    session.pending[:0] = items
                except StorageUnavailableError:
                    self.states.pop(instance_id, None)
                    session.pending[:0] = items
                    await asyncio.sleep(1.0)
                except Exception:  # noqa: BLE001 - never let one instance take the host down
                    log.exception("episode of instance %s failed; its messages are retried", instance_id)
                    self.states.pop(instance_id, None)
                    await self._failed(session, items)
                    await asyncio.sleep(0.2)
        if not session.pending and self.sessions.get(instance_id) is session:
            del self.sessions[instance_id]

    async def _failed(self, session: _Session, items: list[Item]) -> None:
        """An episode raised (a bug, not user code): count it against each of its messages; one that keeps
        failing goes to the poison queue, so it never blocks its instance or partition."""
        retry = []
        for item in items:
            item.failures += 1
            if item.failures > self.opt.poison_max_dequeue_count:
                await self.poison(item, f"processing failed {item.failures} times")
            else:
                retry.append(item)
        session.pending[:0] = retry

    async def _give_back(self, instance_id: str, session: _Session) -> None:
        items, session.pending = session.pending, []
        if self.sessions.get(instance_id) is session:
            del self.sessions[instance_id]
        await self.release_items(items)

    # -- for clients in this process ------------------------------------------------------------
    def cached_status(self, instance_id: str) -> OrchestrationStatus | None:
        """The status of an instance this host runs and has in memory (None if not known here)."""
        state = self.states.get(instance_id)
        if state is None or not self.owns(instance_id) or state.status is None:
            return None
        return state.status

    async def _row_etag(self, instance_id: str) -> str | None:
        row = await self.hub.instances.get(instance_id, resolve_large=False)
        return None if row is None else row.etag

    def holding(self) -> int:
        """Messages this host holds hidden (for tests and the dashboard)."""
        return len(self.held)

    def now(self) -> float:
        return time.monotonic()
