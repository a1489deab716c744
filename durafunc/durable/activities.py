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
from .worker import UserCodeError

log = logging.getLogger("durafunc.engine")


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
    def __init__(self, engine):
        self.engine = engine
        self.capacity = max(1, engine.opt.max_concurrent_activities)
        self.used = 0                    # slots reserved or running
        self._freed = asyncio.Event()
        self.running: dict[str, asyncio.Task] = {}   # work-item message id -> its task
        self.completed = 0

    # -- slots ------------------------------------------------------------------------------------
    def reserve(self) -> bool:
        """Take a slot for an activity this host is about to schedule (False: all busy; let another host run
        it)."""
        if self.used >= self.capacity:
            return False
        self.used += 1
        return True

    def unreserve(self) -> None:
        self.used = max(0, self.used - 1)
        self._freed.set()

    def run_reserved(self, item: Item) -> None:
        """Run a work item this host sent itself (its slot is reserved)."""
        self._start(item)

    def _start(self, item: Item) -> None:
        self.engine.held.hold(item)
        self.running[item.id] = self.engine.spawn(self._run(item))

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
                self.used += 1
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
            self.unreserve()

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
                raise UserCodeError(type(other).__name__, str(other),
                                    "".join(traceback.format_exception(other))) from other
            return ev.task_completed(utcnow(), event.get("EventId"), result)
        except UserCodeError as err:
            log.error("activity %s of instance %s failed: %s: %s%s", name, inst.get("InstanceId"),
                      err.type_name, err.message, f"\n{err.traceback_text}" if err.traceback_text else "")
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
        """Let running activities finish (bounded); the ones cut off show up again for another host."""
        tasks = list(self.running.values())
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        cut = [(i, t) for i, t in self.running.items() if not t.done()]
        for _, t in cut:
            t.cancel()
        await asyncio.gather(*(t for _, t in cut), return_exceptions=True)
