"""Trigger listeners, side by side with one shape: timers (timer.py), storage queues (queue.py) and blobs
(blob.py). Each listener is started, stopped (running invocations get a grace period) and, on a reload, replaced
by the listeners of the new app; storage polls share one back-off (backoff.py). The host only starts, reloads
and stops a `Listeners`."""
from __future__ import annotations

import asyncio
from typing import Any, Callable

from ...settings import QueuesOptions
from ..clients import StorageClients
from ..errors import BindingError
from ..hostid import host_id as resolve_host_id
from ..model import LoadedApp
from .base import Listener, ListenerError, Run, TriggerEvent
from .blob import MAX_POLL, BlobTriggerListener, BlobTriggers
from .queue import RECEIVE_VISIBILITY, QueueListener, QueueTriggers
from .timer import TimerTriggers

__all__ = ["Listeners", "Listener", "ListenerError", "Run", "TriggerEvent"]


class Listeners:
    """The trigger listeners of a running host, and the start-time report of the functions' bindings (one
    `Error:` line per function that cannot work as configured, `Warning:` lines for likely mistakes)."""

    def __init__(self, clients: StorageClients, env, queues_options: QueuesOptions, *, io=None,
                 echo: Callable[[str], Any] = print, max_poll: float = MAX_POLL,
                 visibility: float = RECEIVE_VISIBILITY):
        self.clients, self.env, self.opt, self.io, self.echo = clients, env, queues_options, io, echo
        self.max_poll, self.visibility = max_poll, visibility
        self.active: list = []
        self.run: Run | None = None
        self._retiring: set[asyncio.Task] = set()

    @classmethod
    def for_host(cls, env, queues_options: QueuesOptions, *, echo: Callable[[str], Any] = print) -> "Listeners":
        """The listeners of a host with their storage clients and the app's storage bindings (`io`, for the
        Invoker): a write of this host to a watched queue or container wakes its listener."""
        from ..bindings import BindingIO
        listeners = cls(StorageClients(env), env, queues_options, echo=echo)
        listeners.io = BindingIO(listeners.clients, env, queues_options, on_queue_write=listeners.queue_written,
                                 on_blob_write=listeners.blob_written)
        return listeners

    def _kinds(self, app: LoadedApp) -> tuple[dict[str, Any], str | None]:
        kinds: dict[str, Any] = {
            "timertrigger": TimerTriggers(self.env),
            "queuetrigger": QueueTriggers(self.clients, self.opt, self.env, visibility=self.visibility),
        }
        try:
            hid = resolve_host_id(app.root, self.env)
        except BindingError as e:
            return kinds, str(e)
        kinds["blobtrigger"] = BlobTriggers(self.clients, self.opt, self.env, hid, max_poll=self.max_poll,
                                            visibility=self.visibility)
        return kinds, None

    def start(self, app: LoadedApp, run: Run) -> None:
        """Listen for the triggers of `app`. The listeners of a previous app stop (their running invocations
        finish in the background); a function that cannot listen is one line, the others run."""
        self.run = run
        self._retire()
        kinds, host_error = self._kinds(app)
        errors: dict[str, str] = {}
        warnings: list[str] = []
        if self.io is not None:
            for fn in app.functions.values():
                problems, hints = self.io.problems(fn)
                if problems:
                    listens = fn.trigger.type.lower() in kinds or fn.trigger.type.lower() == "blobtrigger"
                    errors[fn.name] = f"function '{fn.name}': {problems[0]}" + \
                        (" (the function does not listen)" if listens else "")
                warnings.extend(hints)
        groups: dict[str, list] = {}
        for fn in app.functions.values():
            if fn.name not in errors:
                groups.setdefault(fn.trigger.type.lower(), []).append(fn)
        if host_error and "blobtrigger" in groups:
            for fn in groups.pop("blobtrigger"):
                errors[fn.name] = f"function '{fn.name}': {host_error} (the function does not listen)"
        for trigger, fns in groups.items():
            kind = kinds.get(trigger)
            if kind is None:
                continue
            listeners, errs = kind.build_all(fns, run)
            self.active.extend(listeners)
            errors.update(errs)
        for fn in app.functions:
            if fn in errors:
                self.echo(f"Error: {errors[fn]}")
        for w in warnings:
            self.echo(f"Warning: {w}")
        for listener in self.active:
            listener.start()

    def reload(self, app: LoadedApp) -> None:
        self.start(app, self.run)

    def _retire(self) -> None:
        for old in self.active:
            task = asyncio.get_running_loop().create_task(old.stop())
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
        self.active = []

    def queue_written(self, conn: str, queue: str) -> None:
        """This host just wrote to `queue`: its listeners poll at once."""
        for listener in self.active:
            if isinstance(listener, QueueListener) and listener.queue == queue and listener.conn == conn:
                listener.wake()

    def blob_written(self, conn: str, container: str) -> None:
        """This host just wrote a blob to `container`: its scanner looks at once."""
        for listener in self.active:
            if isinstance(listener, BlobTriggerListener):
                listener.wake(conn, container)

    async def stop(self, grace: float = 10.0) -> None:
        """Stop every listener; running invocations get `grace` seconds to finish."""
        active, self.active = self.active, []
        await asyncio.gather(*(l.stop(grace) for l in active), *list(self._retiring), return_exceptions=True)

    async def close(self) -> None:
        """Close the storage clients (after `stop`)."""
        await self.clients.close()
