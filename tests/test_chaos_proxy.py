"""The chaos fault proxy between the Azure SDKs and the real Azurite: it forwards, and its resets, stalls and 503
windows are what a storage client sees, each recorded with its times."""
from __future__ import annotations

import socket
import time
import uuid

import pytest
from azure.core.exceptions import HttpResponseError
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueServiceClient

from chaos.proxy import FaultProxy
from durafunc.storage.connection import parse_connection_string


@pytest.fixture
def proxy(connection_string):
    with FaultProxy(connection_string) as p:
        yield p


def name() -> str:
    return "p" + uuid.uuid4().hex[:12]


def test_the_connection_string_points_at_the_listeners(proxy, connection_string):
    orig, via = parse_connection_string(connection_string), parse_connection_string(proxy.connection_string)
    assert via["accountkey"] == orig["accountkey"] and via["accountname"] == orig["accountname"]
    for svc in ("blob", "queue", "table"):
        assert via[f"{svc}endpoint"] == f"http://127.0.0.1:{proxy.ports[svc]}/devstoreaccount1"
        assert proxy.ports[svc] != int(orig[f"{svc}endpoint"].split(":")[2].split("/")[0])


def test_it_forwards_all_three_services(proxy):
    q = QueueServiceClient.from_connection_string(proxy.connection_string).get_queue_client(name())
    q.create_queue()
    q.send_message("hello")
    assert [m.content for m in q.receive_messages()] == ["hello"]
    t = TableServiceClient.from_connection_string(proxy.connection_string).create_table(name())
    t.upsert_entity({"PartitionKey": "p", "RowKey": "r", "v": 42})
    assert t.get_entity("p", "r")["v"] == 42
    blobs = BlobServiceClient.from_connection_string(proxy.connection_string)
    c = blobs.create_container(name())
    c.upload_blob("b", b"x" * 300_000)
    assert c.download_blob("b").readall() == b"x" * 300_000
    assert proxy.stats["connections"] >= 3 and not proxy.windows


def test_reset_closes_open_connections_abruptly(proxy):
    s = socket.create_connection(("127.0.0.1", proxy.ports["queue"]))
    s.sendall(b"GET /devstoreaccount1?comp=list HTTP/1.1\r\nHost: x\r\n")    # half a request: it stays open
    deadline = time.monotonic() + 10
    while not proxy._conns["queue"] and time.monotonic() < deadline:
        time.sleep(0.01)
    w = proxy.reset(("queue",))
    s.settimeout(10)
    with pytest.raises(ConnectionResetError):
        s.recv(100)
    s.close()
    assert (w.kind, w.services, w.start == w.end) == ("reset", ("queue",), True)
    assert proxy.stats["resets"] == 1 and proxy.timeline.faults == [w]


def test_a_stall_holds_requests_until_it_ends(proxy):
    q = QueueServiceClient.from_connection_string(proxy.connection_string).get_queue_client(name())
    q.create_queue()
    w = proxy.stall(1.5, ("queue",))
    q.send_message("late")
    assert time.time() >= w.end       # the answer came only once forwarding resumed
    assert [m.content for m in q.receive_messages()] == ["late"]


def test_5xx_answers_503_server_busy_without_forwarding(proxy):
    tables = TableServiceClient.from_connection_string(proxy.connection_string, retry_total=0)
    table = tables.create_table(name())
    queues = QueueServiceClient.from_connection_string(proxy.connection_string, retry_total=0)
    w = proxy.fail(30, ("table",))
    fresh = TableServiceClient.from_connection_string(proxy.connection_string, retry_total=0)
    with pytest.raises(HttpResponseError) as e:
        fresh.get_table_client(table.table_name).create_entity({"PartitionKey": "p", "RowKey": "r"})
    assert e.value.status_code == 503 and "ServerBusy" in str(e.value)
    q = queues.create_queue(name())               # the other services are untouched
    q.send_message("ok")
    proxy.heal()
    assert w.end <= time.time() and proxy.stats["answered_5xx"] >= 1
    fresh.get_table_client(table.table_name).create_entity({"PartitionKey": "p", "RowKey": "r2"})
    assert [e["RowKey"] for e in table.list_entities()] == ["r2"]     # the refused insert never reached Azurite


def test_random_faults_are_recorded_and_heal_stops_them(proxy):
    q = QueueServiceClient.from_connection_string(proxy.connection_string).get_queue_client(name())
    q.create_queue()
    proxy.start_random(seed=5, mean_gap=0.1, max_seconds=0.3)
    deadline = time.monotonic() + 20
    while len(proxy.windows) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    proxy.heal()
    assert len(proxy.windows) >= 3, proxy.windows
    assert {w.kind for w in proxy.windows} <= {"reset", "stall", "5xx"}
    count = len(proxy.windows)
    q.send_message("after")           # the SDK's own retries ride out what was left
    assert [m.content for m in q.receive_messages()] == ["after"]
    assert all(w.end <= time.time() for w in proxy.windows) and len(proxy.windows) == count
