"""Delivered messages, and the queue messages this host holds hidden while it works on them."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone


@dataclass(eq=False)
class Item:
    """A message delivered to an instance (or a work item to run): received from a queue, or sent hidden by this
    host and handed over in memory. Either way `queue`, `id` and `pop_receipt` name the queue message that is its
    durable record; it is deleted only once everything it caused is durable.

    The one exception is an activity's result handed over in memory (`queue` None): its durable record is the
    activity's work item (`source`), which is deleted when the result is.
    """
    queue: object | None          # the MessageQueue holding the message; None: an in-memory activity result
    id: str
    pop_receipt: str
    dequeue_count: int
    message: dict | None          # the TaskMessage
    episode: int | None = None
    raw: object = None            # the QueueItem it was received as (its text, for the poison queue)
    sender: dict | None = None    # MessageData.Sender: the orchestration that sent it (None: a client)
    source: "Item | None" = None  # in-memory result: the work item whose activity produced it
    row_checked: bool = False     # a start whose Pending row this host has just written
    row: object = None            # that row (InstanceRow)
    fresh: bool = False           # the instance id was generated for this start: it has no history to load
    visibility: float = 30.0      # seconds the message is hidden for at each renewal
    visible_at: float = 0.0       # time.monotonic() at which the queue shows it again (0: not hidden by us)
    failures: int = 0             # episodes that failed on it here (not counting deferrals)
    made: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    @property
    def inserted_on(self) -> datetime:
        """When it entered its queue (for an in-memory result: when it was made): a batch is taken in this
        order, as DTFx orders it (a suspend and a resume sent one after the other apply in that order)."""
        return getattr(self.raw, "inserted_on", None) or self.made

    @property
    def event(self) -> dict:
        return (self.message or {}).get("Event") or {}

    @property
    def instance_id(self) -> str | None:
        return ((self.message or {}).get("OrchestrationInstance") or {}).get("InstanceId")

    def describe(self) -> str:
        """`TaskCompleted for instance 'x' (message 1f2e…)`: for log lines about this message."""
        from ..storage.schema import EventType
        t = self.event.get("EventType")
        name = EventType(t).name if t in EventType._value2member_map_ else f"event type {t!r}"
        extra = f" '{self.event['Name']}'" if self.event.get("Name") else ""
        return f"{name}{extra} for instance '{self.instance_id}' (message {self.id})"

    def hidden_for(self, seconds: float) -> None:
        self.visibility = seconds
        self.visible_at = time.monotonic() + seconds


@dataclass
class HeldMessages:
    """Queue messages this host keeps hidden while it holds them (in a session, running, or waiting for the
    row write that lets them be deleted), by message id. The engine renews the ones about to show again."""
    items: dict[str, Item] = field(default_factory=dict)

    def hold(self, item: Item) -> None:
        if item.queue is not None:
            self.items[item.id] = item

    def release(self, item: Item) -> None:
        if self.items.get(item.id) is item:
            del self.items[item.id]

    def get(self, message_id: str) -> Item | None:
        return self.items.get(message_id)

    def due(self, now: float | None = None) -> list[Item]:
        """Held messages within half a renewal period of showing again."""
        now = time.monotonic() if now is None else now
        return [i for i in self.items.values() if i.visible_at and i.visible_at - now < i.visibility / 2]

    def __len__(self) -> int:
        return len(self.items)
