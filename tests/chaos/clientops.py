"""Client operations of a scenario over three channels: the Durable HTTP API of a live host ('webhook'), the app's
own HTTP starter through the SDK's client binding ('starter', starts only) and DurableClient on storage
('storage'). Every HTTP answer goes into the Timeline. Idempotent operations are retried (bounded) after an
ambiguous failure (no answer, a 5xx); an entity signal is not (its op is then 'maybe' applied)."""
from __future__ import annotations

import asyncio
import json
import random
import time
from urllib.parse import quote

import aiohttp

from durafunc.durable.client import ClientError, DurableClient
from durafunc.storage.errors import StorageError

from .expect import Expectations
from .hosts import HostPool
from .timeline import ClientAnswer, Rewind, Timeline

WEBHOOK = "/runtime/webhooks/durabletask"
ENTITY = "Counter"
_AMBIGUOUS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


class ClientOps:
    def __init__(self, pool: HostPool, client: DurableClient, timeline: Timeline, expected: Expectations,
                 rng: random.Random, deadline: float = 45.0):
        self.pool, self.client, self.tl, self.exp, self.rng = pool, client, timeline, expected, rng
        self.deadline = deadline
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> "ClientOps":
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20))
        return self

    async def __aexit__(self, *exc) -> None:
        await self.session.close()

    # -- plumbing -------------------------------------------------------------------------------------------------
    def _host(self):
        ready = self.pool.ready()
        return self.rng.choice(ready) if ready else None

    async def _http(self, channel: str, op: str, target: str, method: str, path: str, body=None):
        """(answer, None) or (None, the exception) when there was no answer."""
        host = self._host()
        if host is None:
            return None, ConnectionError("no live host")
        kw = {"json": body} if body is not None else {}
        try:
            async with self.session.request(method, host.proc.base + path, **kw) as r:
                text = await r.text(errors="replace")
                a = ClientAnswer(channel, op, target, r.status, r.headers.get("Content-Type", ""), text[:20000],
                                 time.time())
        except _AMBIGUOUS as e:
            return None, e
        self.tl.add(a)
        return a, None

    def _channel(self, wanted: str) -> str:
        return wanted if wanted == "storage" or self.pool.ready() else "storage"

    async def _retrying(self, op: str, target: str, attempt) -> bool:
        """Call `attempt()` until it returns True (done) or the deadline; False when it never succeeded."""
        end = time.monotonic() + self.deadline
        delay = 0.2
        while time.monotonic() < end:
            if await attempt():
                return True
            await asyncio.sleep(delay * self.rng.uniform(0.8, 1.2))
            delay = min(delay * 2, 2.0)
        self.tl.note(f"{op} {target}: gave up after {self.deadline:g} s")
        return False

    # -- operations -----------------------------------------------------------------------------------------------
    async def start(self, iid: str, name: str, value, channel: str) -> bool:
        errors: list[ClientAnswer] = []      # 5xx answers of the Durable HTTP API so far
        tried = [False]

        async def created() -> bool:
            """Did an earlier attempt create it after all? (its row may come a moment after its answer)"""
            end = time.monotonic() + 3.0
            while True:
                if await self.client.get(iid) is not None:
                    return True
                if time.monotonic() >= end:
                    return False
                await asyncio.sleep(0.2)

        async def attempt() -> bool:
            if tried[0] and await created():
                for a in errors:
                    a.created_behind_error = True
                return True
            tried[0] = True
            ch = self._channel(channel)
            if ch == "storage":
                try:
                    await self.client.start_new(name, iid, value, has_input=True)
                    return True
                except ClientError as e:
                    self.tl.note(f"start {iid} on storage: {e}")
                    return e.status == 409
                except StorageError:
                    return False
            path = (f"{WEBHOOK}/orchestrators/{name}/{quote(iid)}" if ch == "webhook"
                    else f"/api/start/{name}/{quote(iid)}")
            a, err = await self._http(ch, "start", iid, "POST", path, value)
            if a is None:
                return False
            if a.status in (200, 202):
                return True
            if a.status >= 500:
                if ch == "webhook":
                    errors.append(a)
                return False
            self.tl.note(f"start {iid} via {ch}: {a.status} {a.body[:120]}")
            return a.status == 409
        return await self._retrying("start", iid, attempt)

    async def _instance_op(self, op: str, iid: str, channel: str, path: str, body=None, call=None) -> bool:
        async def attempt() -> bool:
            ch = self._channel(channel)
            if ch == "storage":
                try:
                    await call()
                    return True
                except ClientError as e:
                    if e.status == 410:
                        self.tl.note(f"{op} {iid} on storage: {e}")
                        return True
                    return False        # 404: its row is not there (yet)
                except StorageError:
                    return False
            a, _ = await self._http("webhook", op, iid, "POST", path, body)
            if a is None or a.status >= 500 or a.status == 404:
                return False
            if a.status != 202:
                self.tl.note(f"{op} {iid}: {a.status} {a.body[:120]}")
            return True
        return await self._retrying(op, iid, attempt)

    async def raise_event(self, iid: str, name: str, value, channel: str) -> bool:
        return await self._instance_op("raise", iid, channel,
                                       f"{WEBHOOK}/instances/{quote(iid)}/raiseEvent/{name}", value,
                                       lambda: self.client.raise_event(iid, name, value))

    async def terminate(self, iid: str, reason: str, channel: str) -> bool:
        return await self._instance_op("terminate", iid, channel,
                                       f"{WEBHOOK}/instances/{quote(iid)}/terminate?reason={quote(reason)}", None,
                                       lambda: self.client.terminate(iid, reason))

    async def suspend(self, iid: str, channel: str) -> bool:
        return await self._instance_op("suspend", iid, channel,
                                       f"{WEBHOOK}/instances/{quote(iid)}/suspend?reason=chaos", None,
                                       lambda: self.client.suspend(iid, "chaos"))

    async def resume(self, iid: str, channel: str) -> bool:
        return await self._instance_op("resume", iid, channel,
                                       f"{WEBHOOK}/instances/{quote(iid)}/resume?reason=chaos", None,
                                       lambda: self.client.resume(iid, "chaos"))

    async def rewind(self, iid: str, channel: str) -> bool:
        self.tl.add(Rewind(iid, time.time()))
        return await self._instance_op("rewind", iid, channel,
                                       f"{WEBHOOK}/instances/{quote(iid)}/rewind?reason=chaos", None,
                                       lambda: self.client.rewind(iid, "chaos"))

    async def signal(self, key: str, op_id: str, amount: int, channel: str) -> None:
        """One 'add' to Counter `key`; definite when it was surely sent, else maybe (never sent twice)."""
        entity = self.exp.entity(f"@{ENTITY.lower()}@{key}")
        payload = {"id": op_id, "amount": amount}
        ch = self._channel(channel)
        if ch == "storage":
            try:
                await self.client.signal_entity(ENTITY, key, "add", json.dumps(payload))
                entity.definite[op_id] = amount
            except StorageError:
                entity.maybe[op_id] = amount
            return
        a, err = await self._http("webhook", "signal", f"@{ENTITY.lower()}@{key}", "POST",
                                  f"{WEBHOOK}/entities/{ENTITY}/{quote(key)}?op=add", payload)
        if a is not None and a.status == 202:
            entity.definite[op_id] = amount
        elif a is None or a.status >= 500:
            entity.maybe[op_id] = amount
        else:
            self.tl.note(f"signal {key} {op_id}: {a.status} {a.body[:120]}")
