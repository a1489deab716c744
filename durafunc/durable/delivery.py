"""A delivered message, from a queue poll or handed over in memory."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Item:
    """A delivered message: from a queue poll, or handed over in memory (same fields)."""
    queue: object                 # MessageQueue it lives in; None: in memory only (history is the record)
    id: str
    pop_receipt: str
    dequeue_count: int
    message: dict | None          # the TaskMessage
    episode: int | None = None
    raw: object = None            # the QueueItem when it came from a poll
    recover: bool = False         # a request to re-dispatch the instance's open local activities
    fresh: bool = False           # a start of a brand-new instance id: there is no history to load
