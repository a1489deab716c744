"""The blob trigger listener in process, against the test Azurite: receipts in the Storage extension's layout,
once per ETag across restarts and across two hosts with one host id, the shared queue, the poison queue. The
invoked "function" is a coroutine of the test; blobs are written with the real azure-storage-blob SDK."""
from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import time
import uuid
from pathlib import Path

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob.aio import BlobServiceClient
from azure.storage.queue.aio import QueueClient

from durafunc.functions import blobs
from durafunc.functions.clients import StorageClients
from durafunc.functions.model import Binding, FunctionInfo
from durafunc.functions.triggers.blob import BlobTriggers
from durafunc.settings import QueuesOptions


def blob_function(name: str, path: str, **raw) -> FunctionInfo:
    trigger = Binding("blobTrigger", "in", "myblob", {"path": path, "connection": "", **raw})

    def entry(myblob):
        pass
    return FunctionInfo(name, "other", trigger, [trigger], Path(__file__), entry, False, name)


class Host:
    """One 'host': the blob triggers of some functions, with a host id, recording what runs."""

    def __init__(self, connection_string: str, host_id: str, functions: list[FunctionInfo], *, fail=(),
                 max_dequeue_count: int = 5):
        self.env = {"AzureWebJobsStorage": connection_string}
        self.clients = StorageClients(self.env)
        self.ran: list[tuple[str, str, str]] = []
        self.events = []
        self.fail = set(fail)
        options = QueuesOptions(max_polling_interval=0.2, max_dequeue_count=max_dequeue_count)
        kind = BlobTriggers(self.clients, options, self.env, host_id, max_poll=0.2)
        listeners, self.errors = kind.build_all(functions, self.run)
        self.listener = listeners[0] if listeners else None

    async def run(self, name, event):
        self.events.append((name, event))
        value = event.decode(event.data, event.metadata, None)
        self.ran.append((name, event.metadata["BlobTrigger"].value, value.read().decode()))
        if name in self.fail:
            raise RuntimeError(f"{name} fails")

    async def __aenter__(self):
        self.listener.start()
        return self

    async def __aexit__(self, *exc):
        await self.listener.stop()
        await self.clients.close()


async def until_async(call, check, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check(await call()):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


async def until(predicate, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


@pytest.fixture
async def storage(connection_string):
    container = "bl" + uuid.uuid4().hex[:12]
    service = BlobServiceClient.from_connection_string(connection_string)
    await service.create_container(container)
    yield service, container
    await service.delete_container(container)
    await service.close()


async def put(service, container, name, text):
    client = service.get_blob_client(container, name)
    await client.upload_blob(text.encode(), overwrite=True)
    return blobs.quoted_etag((await client.get_blob_properties()).etag)


async def settle(host: Host, polls: int = 3):
    """Let the scanner sweep a few more times (for asserting that nothing else runs)."""
    start = host.listener.scanners[next(iter(host.listener.scanners))].stats["scans"]
    await until(lambda: all(s.stats["scans"] >= start + polls for s in host.listener.scanners.values()))
    await asyncio.sleep(0.3)


async def test_fires_once_per_etag_with_the_sdk_receipt_and_what_the_worker_gets(connection_string, storage):
    service, container = storage
    hid = "h" + uuid.uuid4().hex[:12]
    fn = blob_function("on_text", f"{container}/{{name}}.txt")
    async with Host(connection_string, hid, [fn]) as host:
        etag = await put(service, container, "docs/readme.txt", "hello")
        await put(service, container, "image.png", "not text")            # does not match: never runs
        await until(lambda: len(host.ran) == 1)
        await settle(host)
        assert host.ran == [("on_text", f"{container}/docs/readme.txt", "hello")]
        name, event = host.events[0]
        stream = event.decode(event.data, event.metadata, None)
        assert (stream.name, stream.length) == (f"{container}/docs/readme.txt", 5)
        assert stream.uri.endswith(f"/{container}/docs/readme.txt")
        assert event.data.type == "bytes"                                  # no dataType: bytes, as on Azure
        assert event.binding_data["name"] == "docs/readme"
        assert event.binding_data["Properties"]["ContentLength"] == 5
        assert event.reason == f"New blob detected(LogsAndContainerScan): {container}/docs/readme.txt"
        assert re.fullmatch(r"MessageId: [0-9a-f-]{36}, DequeueCount: 1, InsertedOn: \S+\+00:00, "
                            r"BlobCreated: \S+\+00:00, BlobLastModified: \S+\+00:00", event.details), event.details
        receipt = service.get_blob_client(
            "azure-webjobs-hosts", f"blobreceipts/{hid}/Host.Functions.on_text/{etag}/{container}/docs/readme.txt")
        props = await receipt.get_blob_properties()
        assert props.metadata == {} and props.size == 0                   # completed: no 'Incomplete' left
        queue = QueueClient.from_connection_string(connection_string, f"azure-webjobs-blobtrigger-{hid}")
        await until_async(lambda: queue.peek_messages(), lambda peeked: peeked == [])   # its message is deleted
        await queue.close()
        etag2 = await put(service, container, "docs/readme.txt", "changed")     # a new ETag: runs again
        await until(lambda: len(host.ran) == 2)
        assert host.ran[1][2] == "changed" and etag2 != etag


async def test_a_restart_does_not_run_a_blob_again_but_runs_what_came_meanwhile(connection_string, storage):
    service, container = storage
    hid = "h" + uuid.uuid4().hex[:12]
    fn = blob_function("f", f"{container}/{{name}}")
    async with Host(connection_string, hid, [fn]) as first:
        await put(service, container, "one", "1")
        await until(lambda: len(first.ran) == 1)
    scan_info = service.get_blob_client("azure-webjobs-hosts",
                                        f"blobscaninfo/{hid}/devstoreaccount1/{container}/scanInfo")
    assert "LatestScan" in json.loads(await (await scan_info.download_blob()).readall())
    await put(service, container, "two", "2")                                # while no host runs
    async with Host(connection_string, hid, [fn]) as second:
        await until(lambda: len(second.ran) == 1)
        await settle(second)
        assert [r[1] for r in second.ran] == [f"{container}/two"]
    async with Host(connection_string, "other" + uuid.uuid4().hex[:8], [fn]) as other:   # another host id
        await until(lambda: len(other.ran) == 2)                                         # has receipts of its own
        assert sorted(r[1] for r in other.ran) == [f"{container}/one", f"{container}/two"]


async def test_two_hosts_with_one_host_id_run_each_blob_once(connection_string, storage):
    service, container = storage
    hid = "h" + uuid.uuid4().hex[:12]
    fns = [blob_function("a", f"{container}/{{name}}"), blob_function("b", f"{container}/in-{{id}}")]
    async with Host(connection_string, hid, fns) as h1, Host(connection_string, hid, fns) as h2:
        names = [f"in-{i}" for i in range(12)] + ["other"]
        await asyncio.gather(*(put(service, container, n, n) for n in names))
        await until(lambda: len(h1.ran) + len(h2.ran) == 12 + 13)
        await settle(h1)
        await settle(h2)
        runs = sorted(h1.ran + h2.ran)
        assert runs == sorted([("a", f"{container}/{n}", n) for n in names] +
                              [("b", f"{container}/{n}", n) for n in names[:12]])


async def test_an_incomplete_receipt_left_by_a_crash_is_taken_over(connection_string, storage):
    service, container = storage
    hid = "h" + uuid.uuid4().hex[:12]
    etag = await put(service, container, "x.txt", "x")
    receipt = service.get_blob_client("azure-webjobs-hosts",
                                      f"blobreceipts/{hid}/Host.Functions.f/{etag}/{container}/x.txt")
    await receipt.upload_blob(b"", metadata={"Incomplete": "Incomplete"})    # created, never completed
    async with Host(connection_string, hid, [blob_function("f", f"{container}/{{name}}")]) as host:
        await until(lambda: len(host.ran) == 1)
    assert (await receipt.get_blob_properties()).metadata == {}


async def test_failures_go_to_the_poison_queue_after_max_dequeue_count(connection_string, storage):
    service, container = storage
    hid = "h" + uuid.uuid4().hex[:12]
    poison = QueueClient.from_connection_string(connection_string, "webjobs-blobtrigger-poison")
    try:
        await poison.create_queue()
    except ResourceExistsError:
        pass                                    # another test made it
    async with Host(connection_string, hid, [blob_function("bad", f"{container}/{{name}}"),
                                             blob_function("good", f"{container}/{{name}}")],
                    fail={"bad"}, max_dequeue_count=2) as host:
        etag = await put(service, container, "doomed.txt", "d")
        ours = []

        async def poisoned():
            async for m in poison.receive_messages(visibility_timeout=1):
                msg = json.loads(base64.b64decode(m.content))
                if msg["ContainerName"] == container:
                    ours.append((m.content, msg))
                    await poison.delete_message(m)

        deadline = time.monotonic() + 20
        while not ours and time.monotonic() < deadline:
            await poisoned()
            await asyncio.sleep(0.1)
        assert [r[0] for r in host.ran].count("bad") == 2 and [r[0] for r in host.ran].count("good") == 1
    await poison.close()
    [(text, msg)] = ours
    assert msg == {"Type": "BlobTrigger", "FunctionId": "Host.Functions.bad", "BlobType": "BlockBlob",
                   "ContainerName": container, "BlobName": "doomed.txt", "ETag": etag}
    assert base64.b64decode(text).decode().startswith('{\n  "Type": "BlobTrigger",\n  "FunctionId"')   # indented


async def test_a_message_that_is_not_a_blob_trigger_message_is_a_warning_then_poison(connection_string, storage,
                                                                                      caplog):
    _, container = storage
    hid = "h" + uuid.uuid4().hex[:12]
    caplog.set_level(logging.WARNING, logger="durafunc.blobs")
    poison = QueueClient.from_connection_string(connection_string, "webjobs-blobtrigger-poison")
    try:
        await poison.create_queue()
    except ResourceExistsError:
        pass
    marker = f"not a message {uuid.uuid4().hex}"
    async with Host(connection_string, hid, [blob_function("any", f"{container}/{{name}}")],
                    max_dequeue_count=2) as host:
        queue = QueueClient.from_connection_string(connection_string, f"azure-webjobs-blobtrigger-{hid}")
        sent = await queue.send_message(base64.b64encode(marker.encode()).decode())
        await queue.close()
        found = []

        async def poisoned():
            async for m in poison.receive_messages(visibility_timeout=1):
                if base64.b64decode(m.content).decode() == marker:
                    found.append(m)
                    await poison.delete_message(m)
            return found

        await until_async(poisoned, bool)
        assert host.ran == []
    await poison.close()
    warnings = [r.getMessage() for r in caplog.records if sent.id in r.getMessage()]
    assert warnings == [f"Blob trigger message {sent.id} on queue 'azure-webjobs-blobtrigger-{hid}' failed: "
                        "ValueError: Invalid blob trigger message."] * 2          # each attempt, one line


async def test_trigger_errors_are_one_line_and_the_others_listen(connection_string):
    host = Host(connection_string, "h" + uuid.uuid4().hex[:8], [
        blob_function("nocontainer", "/justaname"), blob_function("badsource", "c1/{name}", source="Queue"),
        blob_function("badconn", "c1/{name}", connection="Nope"), blob_function("fine", "c1/{name}",
                                                                                source="EventGrid")])
    assert host.errors == {
        "nocontainer": "function 'nocontainer': Invalid blob trigger path '/justaname'. Paths must be in the format "
                       "'container/blob'. (the function does not listen)",
        "badsource": "function 'badsource': source must be 'LogsAndContainerScan' or 'EventGrid', got 'Queue' "
                     "(the function does not listen)",
        "badconn": "function 'badconn': Storage account connection string 'AzureWebJobsNope' does not exist. Make "
                   "sure that it is a defined App Setting. (the function does not listen)"}
    assert list(host.listener.registrations) == ["Host.Functions.fine"]
    await host.clients.close()
