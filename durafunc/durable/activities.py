"""Activities: run by the host that owns their orchestration (from the committed TaskScheduled row, or from a
work-item message from elsewhere), with bounded concurrency; the result goes back to the orchestration."""
from __future__ import annotations

import asyncio
import json
import logging
import traceback

from ..storage.schema import utcnow
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
    """The activity half of the Engine (a mixin: it uses the engine's queues, sessions and handoff)."""

    async def _work_item_loop(self) -> None:
        queue = self.hub.work_items
        while self.running:
            await self.activity_slots.acquire()
            self.activity_slots.release()
            items = await self._poll(queue, 32, self.opt.work_item_visibility)
            for qi in items:
                item = Item(queue, qi.id, qi.pop_receipt, qi.dequeue_count,
                            qi.data.task_message if qi.data else None, qi.data.episode if qi.data else None, qi)
                self._dispatch_activity(item)

    def _dispatch_activity(self, item: Item) -> None:
        """Run an activity here; it counts as in flight from now on (so a recovery pass leaves it alone)."""
        e = (item.message or {}).get("Event") or {}
        inst = (item.message or {}).get("OrchestrationInstance") or {}
        self.inflight.add((inst.get("InstanceId"), e.get("EventId")))
        self._spawn(self._run_activity(item))

    async def _run_activity(self, item: Item) -> None:
        if item.message is None:
            await self._poison(item, f"cannot parse message: {getattr(item.raw, 'error', 'unknown')}")
            return
        e = item.message.get("Event") or {}
        inst = item.message.get("OrchestrationInstance") or {}
        name = e.get("Name") or ""
        if item.dequeue_count > self.opt.poison_max_dequeue_count:
            await self._poison(item, f"activity '{name}' was attempted {item.dequeue_count - 1} times")
            await self._activity_result(item, inst, ev.task_failed(
                utcnow(), e.get("EventId"), f"Activity function '{name}' failed:  PoisonMessage: the work item "
                f"was moved to {item.queue.name}-poison after {item.dequeue_count - 1} attempts", None))
            return
        key = (inst.get("InstanceId"), e.get("EventId"))
        self.inflight.add(key)
        async with self.activity_slots:
            renew = self._spawn(self._keep_hidden(item)) if item.queue is not None else None
            try:
                input_text = activity_input(e.get("Input"))
                try:
                    try:
                        result = await self.functions.run_activity(name, input_text,
                                                                   instance_id=inst.get("InstanceId"))
                    except UserCodeError:
                        raise
                    except Exception as other:  # noqa: BLE001 - a host-side failure still ends the task
                        raise UserCodeError(type(other).__name__, str(other),
                                            "".join(traceback.format_exception(other))) from other
                    done = ev.task_completed(utcnow(), e.get("EventId"), result)
                except UserCodeError as err:
                    log.error("activity %s of instance %s failed: %s: %s%s", name, inst.get("InstanceId"),
                              err.type_name, err.message, f"\n{err.traceback_text}" if err.traceback_text else "")
                    details = json.dumps({"$type": "Microsoft.Azure.WebJobs.Script.Workers.Rpc.RpcException",
                                          "Message": f"Result: Failure\nException: {err.type_name}: {err.message}",
                                          "StackTrace": err.traceback_text})
                    done = ev.task_failed(utcnow(), e.get("EventId"),
                                          f"Activity function '{name}' failed:  {err.type_name}: {err.message}",
                                          details)
            finally:
                if renew is not None:
                    renew.cancel()
            try:
                await self._activity_result(item, inst, done)
            finally:
                self.inflight.discard(key)
            self.stats["activities"] += 1

    async def _activity_result(self, item: Item, inst: dict, done: dict) -> None:
        from .episode import Outbound
        iid = inst.get("InstanceId")
        msg = ev.task_message(done, iid, inst.get("ExecutionId"))
        if item.queue is None and self.owns(iid):
            # in memory: the history commit that consumes it is the durable record (a crash before it
            # re-runs the activity, from its TaskScheduled row)
            await self._admit(self._local_item(msg, item.episode))
            return
        h = await self._send(Outbound(False, iid, msg), item.episode, inst)
        if h:
            h()   # the result is durable in its queue: deliver it, then forget the work item
        if item.queue is not None:
            await item.queue.delete(item.raw if item.raw is not None else item)

    async def _keep_hidden(self, item: Item) -> None:
        """Renew a running activity's visibility so no other host starts it meanwhile."""
        period = max(1.0, self.opt.work_item_visibility / 3)
        while True:
            await asyncio.sleep(period)
            try:
                await item.queue.set_visibility(item.raw if item.raw is not None else item,
                                                self.opt.work_item_visibility)
            except Exception:  # noqa: BLE001
                log.debug("could not renew work item %s", item.id)
