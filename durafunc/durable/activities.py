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
from datetime import datetime

from ..storage.errors import StorageUnavailableError
from ..storage.history import TaskRecord
from ..storage.schema import TERMINAL_STATUSES, EventType as ET, parse_time, utcnow
from . import events as ev
from .delivery import Item
from .replay import HTTP_ACTIVITY
from .worker import UserCodeError

log = logging.getLogger("durafunc.engine")
BACKLOG_MAX = 20000          # work items that may wait here for a slot while this host is alone on the hub
EARLY_DELAY_MAX = 30.0       # a work item whose task is not in the history yet is tried again after at most this
EARLY_MAX_DEQUEUES = 20      # ... and given up (moved to the poison queue) after this many tries (~8 min)

RUN, ANSWERED, ORPHAN, EARLY = "run", "answered", "orphan", "early"


def verdict(execution: str | None, sent_at: datetime | None, record: TaskRecord) -> str:
    """What to do with a work item received from the queue, from what the history says about its task.

    A work item is sent, hidden, before the checkpoint that schedules it commits. If that host stops before the
    commit, the work item shows up later although the checkpoint never happened: the instance is replayed
    from its last commit and schedules the task again, with a new work item. Its TaskScheduled carries the
    time of the checkpoint that sent it, so a work item belongs to the history only if its TaskScheduled is there
    with the same timestamp.

    - ANSWERED: the history holds the task's result (its host stopped between the commit and the delete).
    - RUN: the history schedules the task as the work item does (or cannot say: an older execution whose rows
      were overwritten by the current one; or a work item without a timestamp).
    - ORPHAN: the history schedules that task id otherwise (another checkpoint, another kind of task), or the
      execution ended without it.
    - EARLY: not in the history yet: the checkpoint may still be committing, or the instance is still to be
      replayed after its host stopped (then the history will say ORPHAN).
    """
    if record.answered:
        return ANSWERED
    if record.scheduled:
        if sent_at is None or any(kind == "TaskScheduled" and at == sent_at for kind, at in record.scheduled):
            return RUN
        return ORPHAN
    if record.ended:
        return ORPHAN
    if record.current_execution is None or (execution or "").lower() == record.current_execution.lower():
        return EARLY
    return RUN


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
            if item.dequeue_count > 0 and not await self._should_run(item, inst):
                return
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

    async def _should_run(self, item: Item, inst: dict) -> bool:
        """A work item from the queue (not handed over by this host's own commit): run it only if the checkpoint
        that scheduled it is the one in the history and its result is not (see `verdict`). Else it is deleted,
        or (its checkpoint may still be committing) tried again later."""
        e = self.engine
        iid = inst.get("InstanceId")
        execution = inst.get("ExecutionId")
        task_id = item.event.get("EventId")
        sent_at = parse_time(item.event.get("Timestamp"))
        if not isinstance(task_id, int):
            return True
        if e.owns(iid):                   # this host keeps the instance's committed history: ask it first
            state, _ = await e.orchestrations.load(iid, [])
            if state.status in TERMINAL_STATUSES and e.states.get(iid) is state:
                e.states.pop(iid, None)       # finished instances stay out of memory
            if (execution or "") == (state.execution_id or ""):
                record = TaskRecord(current_execution=state.execution_id, answered=task_id in state.completed_ids())
                record.scheduled = [(ET(x["EventType"]).name, parse_time(x.get("Timestamp"))) for x in state.history
                                    if x.get("EventId") == task_id and x.get("EventType") in ev.SCHEDULING_TYPES]
                if verdict(execution, sent_at, record) == RUN:
                    return True
        record = await e.hub.history.task_record(iid, execution, task_id)
        decision = verdict(execution, sent_at, record)
        if decision == RUN:
            return True
        if decision == EARLY:
            if item.dequeue_count > max(EARLY_MAX_DEQUEUES, e.opt.poison_max_dequeue_count):
                await e.poison(item, f"its orchestration did not schedule task {task_id} in "
                                     f"{item.dequeue_count} tries")
            else:
                log.debug("%s: its task is not in the history yet; trying again later", item.describe())
                e.defer(item, min(2.0 ** (item.dequeue_count - 1), EARLY_DELAY_MAX))
            return False
        if decision == ANSWERED:
            log.info("%s was answered already (its result is in the history); deleting it", item.describe())
        else:
            log.warning("%s was sent by a checkpoint that never committed (its host stopped first; the history "
                        "scheduled task %s again, or not at all); deleting it", item.describe(), task_id)
        await e.delete_items([item])
        return False

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
