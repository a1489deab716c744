"""Activities: work items of `<hub>-workitems`, run with bounded concurrency by whichever host takes them.

Every activity in flight is a work-item message that this host keeps hidden (renewed) while it runs, so no other
host runs it meanwhile; a host that dies stops renewing, and the message shows up again for another host after
`workItemQueueVisibilityTimeout`. The result goes back to the orchestration: in memory when this host runs that
orchestration (the work item, still hidden, is its durable record until the result is committed and the work item
is deleted with the checkpoint's other messages), else as a message to the orchestration's control queue, after
which the work item is deleted.
"""
from __future__ import annotations

import asyncio
import json
import logging
import traceback

from ..storage.errors import StorageUnavailableError
from ..storage.schema import TERMINAL_STATUSES, utcnow
from . import events as ev
from .delivery import Item
from .replay import HTTP_ACTIVITY
from .worker import UserCodeError

log = logging.getLogger("durafunc.engine")
BACKLOG_MAX = 20000          # work items that may wait here for a slot while this host is alone on the hub


def activity_input(scheduled: str | None) -> str | None:
    """The JSON text an activity is given, from TaskScheduled.Input (a one-element parameter array): the string
    for a user activity; an object (call_http's DurableHttpRequest) as its JSON text."""
    try:
        args = json.loads(scheduled or "[]")
    except ValueError:
        return scheduled
    if not isinstance(args, list) or not args:
        return None
    first = args[0]
    return first if first is None or isinstance(first, str) else json.dumps(first)


class ActivityRunner:
    """Runs up to `capacity` activities at once. While this host is the only one on the hub, the activities it
    schedules beyond that wait here (their work items held hidden) instead of going through the queue; when
    another host shows up, they are given back to the queue, for every host."""

    def __init__(self, engine):
        self.engine = engine
        self.capacity = max(1, engine.opt.max_concurrent_activities)
        self.reserved = 0                # slots promised to work items being sent
        self.backlog: list[Item] = []    # held work items waiting for a slot (this host alone on the hub)
        self._freed = asyncio.Event()
        self.running: dict[str, asyncio.Task] = {}   # work-item message id -> its task
        self.completed = 0

    @property
    def used(self) -> int:
        return len(self.running) + self.reserved + len(self.backlog)

    def alone(self) -> bool:
        b = self.engine.balancer
        return b is not None and b.first_pass.is_set() and not b.other_workers

    # -- slots ------------------------------------------------------------------------------------
    def reserve(self) -> bool:
        """Promise a slot to an activity this host is about to schedule (False: all busy and other hosts share
        the hub; let one of them run it)."""
        if self.used >= self.capacity and not (self.alone() and len(self.backlog) < BACKLOG_MAX):
            return False
        self.reserved += 1
        return True

    def unreserve(self) -> None:
        self.reserved = max(0, self.reserved - 1)
        self._freed.set()

    def run_reserved(self, item: Item) -> None:
        """Run a work item this host sent itself (its slot was reserved), or keep it for the next free slot."""
        self.reserved = max(0, self.reserved - 1)
        self.engine.held.hold(item)
        if len(self.running) < self.capacity:
            self._start(item)
        else:
            self.backlog.append(item)

    def _start(self, item: Item) -> None:
        self.engine.held.hold(item)
        self.running[item.id] = self.engine.spawn(self._run(item))

    def _next(self) -> None:
        while self.backlog and len(self.running) < self.capacity and self.engine.running:
            item = self.backlog.pop(0)
            if self.engine.held.get(item.id) is item:
                self._start(item)
        self._freed.set()

    async def share(self) -> None:
        """Other hosts share the hub now: the work items waiting here go back to the queue, for all."""
        if not self.backlog or self.alone():
            return
        items, self.backlog = self.backlog, []
        log.info("giving %d waiting activities back to %s for the other hosts", len(items),
                 self.engine.hub.work_items.name)
        await self.engine.release_items(items)
        self._freed.set()

    # -- polling the work-item queue --------------------------------------------------------------
    async def poll_loop(self) -> None:
        e = self.engine
        queue = e.hub.work_items
        if e.balancer is not None:       # know this host's partitions first (see _answered)
            try:
                await asyncio.wait_for(e.balancer.first_pass.wait(), 10)
            except asyncio.TimeoutError:
                pass
        while e.running:
            free = self.capacity - self.used
            if free <= 0:
                self._freed.clear()
                await self._freed.wait()
                continue
            items = await e.poll(queue, min(free, 32), e.opt.work_item_visibility)
            for qi in items:
                if e.held.get(qi.id) is not None:          # ours, shown again: it is still ours
                    e.refresh(qi)
                    continue
                item = Item(queue, qi.id, qi.pop_receipt, qi.dequeue_count,
                            qi.data.task_message if qi.data else None, qi.data.episode if qi.data else None, qi,
                            sender=qi.data.sender if qi.data else None)
                item.hidden_for(e.opt.work_item_visibility)
                if not e.running:
                    break
                self._start(item)

    # -- running --------------------------------------------------------------------------------
    async def _run(self, item: Item) -> None:
        e = self.engine
        try:
            if item.message is None:
                await e.poison(item, f"cannot parse message: {getattr(item.raw, 'error', 'unknown')}")
                return
            ev_ = item.event
            inst = item.message.get("OrchestrationInstance") or {}
            name = ev_.get("Name") or ""
            if item.dequeue_count > e.opt.poison_max_dequeue_count:
                reason = f"activity '{name}' was attempted {item.dequeue_count - 1} times"
                done = ev.task_failed(utcnow(), ev_.get("EventId"), f"Activity function '{name}' failed:  "
                                      f"PoisonMessage: the work item was moved to {item.queue.name}-poison after "
                                      f"{item.dequeue_count - 1} attempts", None)
                await e.send_durably(inst.get("InstanceId"), ev.task_message(done, inst.get("InstanceId"),
                                                                            inst.get("ExecutionId")),
                                     item.episode, inst)
                await e.poison(item, reason)
                return
            if item.dequeue_count > 0 and await self._answered(item, inst):
                return
            done = await self._execute(name, ev_, inst)
            await self._result(item, inst, done)
            self.completed += 1
            e.stats["activities"] += 1
        except asyncio.CancelledError:
            raise
        except StorageUnavailableError:
            log.warning("could not return the result of %s (storage unavailable); it runs again when its work "
                        "item shows up", item.describe())
            e.held.release(item)
        except Exception:  # noqa: BLE001 - never let one work item take the host down
            log.exception("running %s failed; its work item shows up again", item.describe())
            e.held.release(item)
        finally:
            self.running.pop(item.id, None)
            self._next()

    async def _answered(self, item: Item, inst: dict) -> bool:
        """A work item from the queue: has its result been committed already (its host died between the commit
        and the delete)? Then it is deleted, not run again."""
        e = self.engine
        iid = inst.get("InstanceId")
        task_id = item.event.get("EventId")
        if e.owns(iid):
            state, _ = await e.orchestrations.load(iid, [])
            answered = (inst.get("ExecutionId") or "") == (state.execution_id or "") and \
                task_id in state.completed_ids()
            if state.status in TERMINAL_STATUSES and e.states.get(iid) is state:
                e.states.pop(iid, None)       # finished instances stay out of memory
            if not answered:
                return False
        elif not await e.hub.history.has_completion(iid, inst.get("ExecutionId"), task_id):
            return False
        log.info("%s was answered already (its result is in the history); deleting it", item.describe())
        await e.delete_items([item])
        return True

    async def _execute(self, name: str, event: dict, inst: dict) -> dict:
        e = self.engine
        try:
            try:
                result = await e.functions.run_activity(name, activity_input(event.get("Input")),
                                                        instance_id=inst.get("InstanceId"))
            except UserCodeError:
                raise
            except Exception as other:  # noqa: BLE001 - a host-side failure still ends the task
                log.warning("activity '%s' of instance %s could not run: %s: %s", name, inst.get("InstanceId"),
                            type(other).__name__, other)
                raise UserCodeError(type(other).__name__, str(other),
                                    "".join(traceback.format_exception(other))) from other
            return ev.task_completed(utcnow(), event.get("EventId"), result)
        except UserCodeError as err:
            # the host logs a user function's failure with its traceback (Executed ... Failed); the engine says
            # only what no function run shows: the built-in HTTP activity's failures, a function that is not there
            if name == HTTP_ACTIVITY or err.type_name == "FunctionNotFound":
                log.warning("activity %s of instance %s failed: %s: %s", name, inst.get("InstanceId"),
                            err.type_name, err.message)
            else:
                log.debug("activity %s of instance %s failed: %s: %s", name, inst.get("InstanceId"),
                          err.type_name, err.message)
            details = json.dumps({"$type": "Microsoft.Azure.WebJobs.Script.Workers.Rpc.RpcException",
                                  "Message": f"Result: Failure\nException: {err.type_name}: {err.message}",
                                  "StackTrace": err.traceback_text})
            return ev.task_failed(utcnow(), event.get("EventId"),
                                  f"Activity function '{name}' failed:  {err.type_name}: {err.message}", details)

    async def _result(self, item: Item, inst: dict, done: dict) -> None:
        e = self.engine
        iid = inst.get("InstanceId")
        msg = ev.task_message(done, iid, inst.get("ExecutionId"))
        if e.running and e.owns(iid):
            # in memory: the work item (still hidden, renewed) stays the record until the result is committed
            e.deliver(Item(None, f"result-of-{item.id}", "", 0, msg, item.episode, sender=inst, source=item))
            return
        await e.send_durably(iid, msg, item.episode, inst)
        await e.delete_items([item])

    # -- stopping ----------------------------------------------------------------------------------
    async def stop(self, grace: float) -> None:
        """Let running activities finish (bounded); the ones cut off (and the ones waiting) show up again for
        another host."""
        self.backlog.clear()          # still held: the engine gives them back
        tasks = list(self.running.values())
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        cut = [(i, t) for i, t in self.running.items() if not t.done()]
        for _, t in cut:
            t.cancel()
        await asyncio.gather(*(t for _, t in cut), return_exceptions=True)
