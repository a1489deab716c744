"""Step 1 of a checkpoint: send its outbound messages, and let them go once the history is committed.

Every message is in its queue before the history that issues it commits (DTFx's order), so a crash loses nothing;
and none can be acted on before that commit, so a checkpoint that fails (another host committed first) leaves
nothing behind: its messages are deleted.

- An activity this host has a free slot for: sent to `<hub>-workitems` hidden, and handed to this host's runner
  after the commit (the runner keeps it hidden while it works). Others: sent hidden and made visible after the
  commit, for any host's work-item poller.
- A message to an instance of a partition this host owns: sent hidden and handed over in memory after the commit
  (after its delay: a durable timer). A timer further away than `LOCAL_TIMER_MAX` is left to the queue: it shows
  up when it is due, on whichever host owns the partition then.
- A message to an instance elsewhere: sent hidden, made visible after the commit.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from ..storage.errors import StorageUnavailableError
from .delivery import Item

log = logging.getLogger("durafunc.engine")

MAX_QUEUE_DELAY = 6 * 24 * 3600.0     # queues hide a message for at most 7 days; long timers hop at 6
HIDDEN_UNTIL_COMMIT = 10.0            # how long a message for elsewhere hides if the commit never says go
LOCAL_TIMER_MAX = 2.0                 # timers due within this are handed over in memory


@dataclass
class Sent:
    item: Item
    mode: str            # "run-here" | "deliver-here" | "elsewhere" | "queue-delivers"
    delay: float = 0.0


class Outbox:
    def __init__(self, engine):
        self.engine = engine

    async def send(self, outbound: list, episode: int | None, sender: dict | None) -> list[Sent]:
        """Send them all at once, except that the messages to one instance go one after the other, so its
        queue holds them in the order the episode issued them (an entity runs its operations in that order)."""
        chains: dict[str, list[int]] = {}
        for i, o in enumerate(outbound):
            if not o.to_work_items:
                chains.setdefault(o.instance_id, []).append(i)
        # and all the messages to one instance take the same way (in memory or through its queue), decided
        # once: a partition this host takes meanwhile would otherwise split them and lose their order
        owned = {iid: self.engine.owns(iid) for iid in chains}
        results: list = [None] * len(outbound)

        async def one(i: int) -> None:
            try:
                results[i] = await self._send(outbound[i], episode, sender, owned.get(outbound[i].instance_id))
            except Exception as err:  # noqa: BLE001 - collected; handled below
                results[i] = err

        async def chain(indices: list[int]) -> None:
            for i in indices:
                await one(i)
                if isinstance(results[i], Exception):
                    return          # the rest would be deleted again: the checkpoint fails
        await asyncio.gather(*(one(i) for i, o in enumerate(outbound) if o.to_work_items),
                             *(chain(c) for c in chains.values()))
        sent = results
        failed = next((s for s in sent if isinstance(s, Exception)), None)
        if failed is not None:
            await self.abort([s for s in sent if isinstance(s, Sent)])
            raise failed
        return list(sent)

    async def _send(self, o, episode: int | None, sender: dict | None, owned: bool | None) -> Sent:
        e = self.engine
        if o.to_work_items:
            here = e.running and e.activities.reserve()
            hide = e.opt.work_item_visibility if here else HIDDEN_UNTIL_COMMIT
            try:
                qi = await e.hub.work_items.send(o.message, visibility_timeout=hide, episode=episode, sender=sender)
            except BaseException:
                if here:
                    e.activities.unreserve()
                raise
            return Sent(self._item(e.hub.work_items, qi, o.message, episode, sender, hide),
                        "run-here" if here else "elsewhere")
        queue = e.hub.control_queue_for(o.instance_id)
        delay = max(0.0, o.delay)
        if owned and delay <= LOCAL_TIMER_MAX:
            hide, mode = delay + e.opt.control_visibility, "deliver-here"
        elif delay > 0:
            hide, mode = min(delay, MAX_QUEUE_DELAY), "queue-delivers"
        else:
            hide, mode = HIDDEN_UNTIL_COMMIT, "elsewhere"
        qi = await queue.send(o.message, visibility_timeout=hide, episode=episode, sender=sender)
        item = self._item(queue, qi, o.message, episode, sender, e.opt.control_visibility)
        item.visible_at += hide - e.opt.control_visibility if mode == "deliver-here" else 0
        return Sent(item, mode, delay)

    @staticmethod
    def _item(queue, qi, message: dict, episode, sender, hide: float) -> Item:
        item = Item(queue, qi.id, qi.pop_receipt, 0, message, episode, raw=qi, sender=sender)
        item.hidden_for(hide)
        return item

    def release(self, sent: list[Sent]) -> None:
        """The history is committed: hand over what runs here, let the rest be seen."""
        e = self.engine
        loop = asyncio.get_running_loop()
        for s in sent:
            if s.mode == "run-here":
                e.activities.run_reserved(s.item)
            elif s.mode == "deliver-here":
                e.held.hold(s.item)
                if s.delay > 0:
                    loop.call_later(s.delay, e.deliver_later, s.item)
                else:
                    e.deliver(s.item)
            elif s.mode == "elsewhere":
                e.spawn(self._show(s.item))

    async def release_to_queues(self, sent: list[Sent]) -> None:
        """Whether the history committed is unknown: nothing is handed over in memory; every message is left to
        its queue, visible when it is due, for whichever host then checks it against the history."""
        e = self.engine

        async def show(s: Sent) -> None:
            if s.mode == "run-here":
                e.activities.unreserve()
            if s.mode == "queue-delivers":
                return
            e.held.release(s.item)
            try:
                await s.item.queue.set_visibility(s.item, s.delay if s.mode == "deliver-here" else 0)
            except StorageUnavailableError:
                pass      # it shows up by itself when its hiding ends
            e.wake(s.item.queue.name)
        await asyncio.gather(*(show(s) for s in sent))

    async def _show(self, item: Item) -> None:
        try:
            await item.queue.set_visibility(item, 0)
        except StorageUnavailableError:
            pass      # it shows up by itself after HIDDEN_UNTIL_COMMIT
        self.engine.wake(item.queue.name)

    async def abort(self, sent: list[Sent]) -> None:
        """The commit failed: nothing it sent may be acted on."""
        e = self.engine

        async def drop(s: Sent) -> None:
            if s.mode == "run-here":
                e.activities.unreserve()
            e.held.release(s.item)
            try:
                await s.item.queue.delete(s.item)
            except StorageUnavailableError:
                log.warning("could not delete %s after a failed checkpoint; it will be seen as a stale message",
                            s.item.describe())
        await asyncio.gather(*(drop(s) for s in sent))

    async def to_instance(self, instance_id: str, message: dict, *, delay: float = 0.0,
                          hold: bool = False) -> Sent:
        """A client's message (start, raise, terminate, ...): hidden if this host runs the instance, to be handed
        over by `release`; else visible at once, or after `delay` (a scheduled start), or (`hold`: a start
        whose row is still to be written) hidden until `release`."""
        e = self.engine
        queue = e.hub.control_queue_for(instance_id)
        here = e.running and e.owns(instance_id) and delay <= 0
        if here:
            hide, mode = e.opt.control_visibility, "deliver-here"
        elif delay > 0:
            hide, mode = min(delay, MAX_QUEUE_DELAY), "sent"
        elif hold:
            hide, mode = HIDDEN_UNTIL_COMMIT, "elsewhere"
        else:
            hide, mode = 0.0, "sent"
        qi = await queue.send(message, visibility_timeout=hide)
        if mode == "sent" and delay <= 0:
            e.wake(queue.name)
        return Sent(self._item(queue, qi, message, None, None, e.opt.control_visibility), mode)
