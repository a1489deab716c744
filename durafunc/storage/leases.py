"""Partition ownership with blob leases in `h-leases`, in DTFx's blob lease format (§9.1, §9.2).

A worker reads a control queue only while it holds that partition's `ownership/{queue}` lease. Ownership is advisory:
the History sentinel ETag is what really prevents two workers from committing the same instance.
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Awaitable, Callable

from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.storage.blob.aio import BlobLeaseClient

from .account import StorageAccount
from .errors import StorageUnavailableError, guard
from .names import TaskHubNames
from .schema import format_time, utcnow

log = logging.getLogger(__name__)

OWNERSHIP_FOLDER = "ownership"
TASKHUB_INFO_BLOB = "taskhub.json"
_LOST = frozenset({404, 409, 412})


@dataclass
class LeaseInfo:
    partition: str
    owner: str | None
    token: str | None
    epoch: int
    leased: bool

    @property
    def expired(self) -> bool:
        """Available to take: the blob is not leased, or nobody is named as owner."""
        return not self.leased or not self.owner


def _lease_json(partition: str, owner: str | None, token: str | None, epoch: int) -> str:
    return json.dumps({"PartitionId": partition, "Owner": owner, "Token": token, "Epoch": epoch})


async def _create_quietly(blob, data: str) -> bool:
    """Upload If-None-Match *; False (no error) when the blob already exists."""
    try:
        await blob.upload_blob(data, overwrite=False)
        return True
    except HttpResponseError as e:
        if e.status_code in (409, 412):
            return False
        raise


@guard
async def create_lease_store(account: StorageAccount, names: TaskHubNames) -> None:
    """Container `h-leases`, `taskhub.json` (rewritten when stale) and one ownership blob per control queue."""
    container = account.blob_service.get_container_client(names.leases_container)
    try:
        await container.create_container()
    except ResourceExistsError:
        pass
    info = {"TaskHubName": names.hub, "CreatedAt": format_time(utcnow()), "PartitionCount": names.partition_count}
    hub_blob = container.get_blob_client(TASKHUB_INFO_BLOB)

    async def hub_info() -> None:
        if await _create_quietly(hub_blob, json.dumps(info)):
            return
        current = json.loads(await (await hub_blob.download_blob()).readall() or b"{}")
        if (str(current.get("TaskHubName", "")).lower() != names.hub.lower()
                or current.get("PartitionCount") != names.partition_count):
            log.warning("task hub info %s is stale (%s); rewriting it", TASKHUB_INFO_BLOB, current)
            await hub_blob.upload_blob(json.dumps(info), overwrite=True)

    await asyncio.gather(hub_info(), *(
        _create_quietly(container.get_blob_client(f"{OWNERSHIP_FOLDER}/{q}"), _lease_json(q, None, None, 0))
        for q in names.control_queues))


class PartitionLeases:
    """This worker's view of the ownership leases: read them all, take, renew, release."""

    def __init__(self, account: StorageAccount, names: TaskHubNames, worker_id: str, lease_duration: float = 15.0):
        self.account = account
        self.names = names
        self.worker_id = worker_id
        self.lease_duration = max(15, min(60, int(lease_duration)))  # Azure allows 15..60 s
        self._tokens: dict[str, str] = {}   # partition -> our current lease id
        self._epochs: dict[str, int] = {}
        self._container = None

    def _blob(self, partition: str):
        if self._container is None:
            self._container = self.account.blob_service.get_container_client(self.names.leases_container)
        return self._container.get_blob_client(f"{OWNERSHIP_FOLDER}/{partition}")

    def is_mine(self, owner: str | None) -> bool:
        return bool(owner) and owner.lower() == self.worker_id.lower()

    async def create_store(self) -> None:
        await create_lease_store(self.account, self.names)

    async def _read(self, partition: str) -> LeaseInfo:
        stream = await self._blob(partition).download_blob()
        content = json.loads(await stream.readall() or b"{}")
        return LeaseInfo(partition=partition, owner=content.get("Owner"), token=content.get("Token"),
                         epoch=int(content.get("Epoch") or 0), leased=stream.properties.lease.state == "leased")

    @guard
    async def list(self) -> list[LeaseInfo]:
        return list(await asyncio.gather(*(self._read(p) for p in self.names.control_queues)))

    async def _take(self, lease: LeaseInfo) -> bool:
        """Acquire (not leased) or change (leased, using the published token) the lease, then publish us."""
        blob = self._blob(lease.partition)
        new_id = str(uuid.uuid4())
        try:
            if lease.leased:
                if not lease.token:
                    return False
                await BlobLeaseClient(blob, lease_id=lease.token).change(proposed_lease_id=new_id)
            else:
                await blob.acquire_lease(lease_duration=self.lease_duration, lease_id=new_id)
            epoch = lease.epoch + 1
            await blob.upload_blob(_lease_json(lease.partition, self.worker_id, new_id, epoch), overwrite=True,
                                   lease=new_id)
        except HttpResponseError as e:
            if e.status_code in _LOST:
                return False
            raise
        self._tokens[lease.partition] = new_id
        self._epochs[lease.partition] = epoch
        return True

    @guard
    async def acquire(self, partition: str, lease: LeaseInfo | None = None) -> bool:
        """Take the lease if it is free (or already named ours, e.g. after a restart); False otherwise."""
        lease = lease or await self._read(partition)
        if not lease.expired and not self.is_mine(lease.owner):
            return False
        return await self._take(lease)

    @guard
    async def steal(self, partition: str, lease: LeaseInfo) -> bool:
        """Take the lease from its current owner (changing the lease id it published)."""
        return await self._take(lease)

    @guard
    async def renew(self, partition: str) -> bool:
        token = self._tokens.get(partition)
        if token is None:
            return False
        try:
            await BlobLeaseClient(self._blob(partition), lease_id=token).renew()
            return True
        except HttpResponseError as e:
            if e.status_code in _LOST:
                self.forget(partition)
                return False
            raise

    @guard
    async def release(self, partition: str) -> None:
        """Publish no owner, then release the lease (a lease already lost is ignored)."""
        token = self._tokens.pop(partition, None)
        epoch = self._epochs.pop(partition, 0)
        if token is None:
            return
        blob = self._blob(partition)
        try:
            await blob.upload_blob(_lease_json(partition, None, None, epoch), overwrite=True, lease=token)
            await BlobLeaseClient(blob, lease_id=token).release()
        except HttpResponseError as e:
            if e.status_code not in _LOST:
                raise

    def forget(self, partition: str) -> None:
        self._tokens.pop(partition, None)
        self._epochs.pop(partition, None)

    @property
    def owned(self) -> set[str]:
        return set(self._tokens)


Callback = Callable[[str], Awaitable[None]]


class LeaseBalancer:
    """DTFx's LeaseCollectionBalancer (§9.2): a taker loop (expired leases first, then steal one at a time from the
    busiest owner, up to ceil(leases / workers)) and a renewer loop. Callbacks get the control queue name."""

    def __init__(self, leases: PartitionLeases, partitions: list[str], on_acquired: Callback, on_lost: Callback,
                 renew_interval: float = 5.0, acquire_interval: float = 2.0,
                 on_missing: Callable[[], Awaitable[None]] | None = None):
        self.leases = leases
        self.partitions = list(partitions)
        self.on_acquired = on_acquired
        self.on_lost = on_lost
        self.on_missing = on_missing     # the lease container or a lease blob is gone (the hub was deleted?)
        self.renew_interval = renew_interval
        self.acquire_interval = acquire_interval
        self.owned: set[str] = set()
        self._tasks: list[asyncio.Task] = []
        self._adopted = False
        self.first_pass = asyncio.Event()    # set once the first take pass is over (this host knows its partitions)

    def start(self) -> None:
        if not self._tasks:
            self._adopted = False
            self._tasks = [asyncio.create_task(self._loop(self._take_pass, self.acquire_interval)),
                           asyncio.create_task(self._loop(self._renew_pass, self.renew_interval))]

    async def stop(self, *, release: bool = True) -> None:
        """Stop the loops, release every owned lease (unless the lease store is gone) and report each as lost."""
        tasks, self._tasks = self._tasks, []
        me = asyncio.current_task()
        for t in tasks:
            if t is not me:
                t.cancel()
        await asyncio.gather(*(t for t in tasks if t is not me), return_exceptions=True)
        owned = sorted(self.owned)
        if not release:
            for p in owned:
                await self._lose(p)
            return
        results = await asyncio.gather(*(self.leases.release(p) for p in owned), return_exceptions=True)
        for p, r in zip(owned, results):
            if isinstance(r, Exception):
                log.warning("releasing lease %s failed: %s", p, r)
            await self._lose(p)

    async def _loop(self, step: Callable[[], Awaitable[None]], interval: float) -> None:
        failing = False
        while True:
            try:
                await step()
                failing = False
            except asyncio.CancelledError:
                raise
            except StorageUnavailableError as e:   # an outage: say it once, try again next round
                if not failing:
                    log.debug("lease %s failed: %s", step.__name__.strip("_"), e)
                failing = True
            except Exception as e:  # other storage hiccups: try again next round, said once
                if getattr(e, "status_code", None) == 404 and self.on_missing is not None:
                    await self.on_missing()
                elif not failing:
                    log.warning("lease %s failed: %s", step.__name__.strip("_"),
                                str(e).splitlines()[0] if str(e) else type(e).__name__)
                failing = True
            await asyncio.sleep(interval)

    async def _gain(self, partition: str) -> None:
        self.owned.add(partition)
        try:
            await self.on_acquired(partition)
        except Exception:
            log.exception("on_acquired(%s) failed", partition)

    async def _lose(self, partition: str) -> None:
        if partition not in self.owned:
            return
        self.owned.discard(partition)
        self.leases.forget(partition)
        try:
            await self.on_lost(partition)
        except Exception:
            log.exception("on_lost(%s) failed", partition)

    async def _renew_pass(self) -> None:
        owned = sorted(self.owned)
        results = await asyncio.gather(*(self.leases.renew(p) for p in owned), return_exceptions=True)
        for p, ok in zip(owned, results):
            if ok is False:
                await self._lose(p)   # other errors count as renewed, as in DTFx

    async def _take_pass(self) -> None:
        try:
            await self._take()
        finally:
            self.first_pass.set()

    async def _take(self) -> None:
        leases = [lease for lease in await self.leases.list() if lease.partition in self.partitions]
        for lease in leases:  # taken over by someone else since our last renewal
            if lease.partition in self.owned and not self.leases.is_mine(lease.owner):
                await self._lose(lease.partition)
        if not self._adopted:  # restart recovery: adopt leases still published under our worker id
            self._adopted = True
            for lease in leases:
                if lease.leased and self.leases.is_mine(lease.owner) and lease.partition not in self.owned:
                    if await self.leases.acquire(lease.partition, lease):
                        await self._gain(lease.partition)
        live = [lease for lease in leases if not lease.expired]
        workers = {lease.owner.lower() for lease in live} | {self.leases.worker_id.lower()}
        target = max(1, math.ceil(len(leases) / len(workers)))
        needed = target - len(self.owned)
        if needed <= 0:
            return
        available = [lease for lease in leases if lease.expired and lease.partition not in self.owned]
        for lease in available[:needed]:
            if await self.leases.acquire(lease.partition, lease):
                await self._gain(lease.partition)
        if available:
            return
        others = Counter(lease.owner.lower() for lease in live if not self.leases.is_mine(lease.owner))
        if not others:
            return
        busiest, count = others.most_common(1)[0]
        if count > target - (1 if needed > 1 else 0):
            victim = next(lease for lease in live if lease.owner.lower() == busiest)
            if await self.leases.steal(victim.partition, victim):
                # its old owner notices on its next pass and stops reading; in-flight work there finishes
                # (the history ETag keeps both from committing one instance): wait that long before reading
                await asyncio.sleep(self.acquire_interval * 2 + 0.5)
                if self.leases.owned and victim.partition in self.leases.owned:
                    await self._gain(victim.partition)
