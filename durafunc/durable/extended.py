"""Extended sessions: running orchestrations whose SDK objects stay loaded between episodes (pure bookkeeping).

The owner host keeps, per running instance, the SDK's objects of its last episode (an `SdkOrchestration`: the
user's generator, its context, the SDK's executor), so the next episode feeds the SDK only the events it has not
seen instead of replaying the whole history. Storage stays the truth and a session is only a cache: it is used
only while the instance's committed history is exactly the one the session was kept for (same length, same
sentinel ETag, same execution), and it is dropped on idle (`extendedSessionIdleTimeoutInSeconds`), beyond a bound
on sessions held, on partition loss, reload, rewind, a new execution, a finished instance, and any failed episode.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class ExtendedSession:
    sdk: Any                        # the functions layer's live orchestration (SdkOrchestration)
    fed: int = 0                    # history events the SDK has processed (history[:fed])
    committed_len: int = -1         # len(history) when kept
    etag: str | None = None         # the history's sentinel ETag when kept
    execution_id: str | None = None
    last_used: float = field(default=0.0)
    replayer: Any = None            # the host-side replay (durable.replay.Replayer), walked over history[:replayed]
    replayed: int = -1


@dataclass
class OrchestratorCall:
    """One episode's call of an orchestrator: everything a full replay needs, and the session that may make it
    incremental. The functions layer sets `opened` when it could keep the SDK's objects of a full replay."""
    instance_id: str
    history: list[dict]                     # the whole history the SDK sees this episode, its new events last
    context_json: Callable[[], str]         # the orchestration trigger value of a full replay
    session: ExtendedSession | None = None  # continue this one: feed it history[session.fed:]
    want_session: bool = True               # may the functions layer open one
    check: bool = False                     # also replay in full and compare (DURAFUNC_SESSION_CHECK)
    opened: Any = None                      # an SdkOrchestration, set by the functions layer

    @property
    def unseen(self) -> list[dict]:
        return self.history[self.session.fed:] if self.session is not None else self.history


class ExtendedSessions:
    """The sessions of one engine, least recently used first."""

    def __init__(self, *, idle_seconds: float = 30.0, max_sessions: int = 2000, enabled: bool = True,
                 clock: Callable[[], float] = time.monotonic):
        self.idle = idle_seconds
        self.max = max_sessions
        self.enabled = enabled
        self.clock = clock
        self._held: OrderedDict[str, ExtendedSession] = OrderedDict()
        self.stats = {"continued": 0, "opened": 0, "stale": 0, "idle": 0, "bound": 0}

    def __len__(self) -> int:
        return len(self._held)

    def take(self, instance_id: str, *, history_len: int, etag: str | None,
             execution_id: str | None) -> ExtendedSession | None:
        """The session kept for exactly this committed history (it leaves the cache: an episode owns it until it
        is kept again), else None; a session that storage disagrees with is dropped."""
        s = self._held.pop(instance_id, None)
        if s is None:
            return None
        if (s.committed_len != history_len or s.etag != etag or s.execution_id != execution_id
                or self.clock() - s.last_used > self.idle):
            self.stats["stale"] += 1
            return None
        return s

    def keep(self, instance_id: str, session: ExtendedSession, *, history_len: int, etag: str | None,
             execution_id: str | None) -> None:
        """After a committed episode: the session now matches that history."""
        if not self.enabled:
            return
        session.committed_len, session.etag, session.execution_id = history_len, etag, execution_id
        session.last_used = self.clock()
        self._held[instance_id] = session
        self._held.move_to_end(instance_id)
        while len(self._held) > self.max:
            self._held.popitem(last=False)
            self.stats["bound"] += 1
        self.sweep()

    def sweep(self) -> None:
        """Drop the sessions idle for longer than the idle timeout."""
        limit = self.clock() - self.idle
        while self._held:
            iid, s = next(iter(self._held.items()))
            if s.last_used >= limit:
                break
            del self._held[iid]
            self.stats["idle"] += 1

    def drop(self, instance_id: str) -> None:
        self._held.pop(instance_id, None)

    def drop_where(self, predicate: Callable[[str], bool]) -> None:
        for iid in [i for i in self._held if predicate(i)]:
            del self._held[iid]

    def clear(self) -> None:
        self._held.clear()
