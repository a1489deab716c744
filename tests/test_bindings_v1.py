"""Blob triggers, blob and table bindings and binding expressions under `durafunc start`, v1 model
(function.json), with host.json `messageEncoding: none` (the blob trigger queue holds plain JSON then)."""
from __future__ import annotations

import json
import uuid

import pytest

from bindingutil import Storage
from hostutil import HERE, HostProcess
from runlog import finished, wait_runs

APP = HERE / "hostapps" / "bindingsv1"


@pytest.fixture(scope="module")
def v1(connection_string):
    prefix = "c" + uuid.uuid4().hex[:10]
    host_id = "t" + uuid.uuid4().hex[:12]
    host = HostProcess(APP, connection_string, "BV1" + uuid.uuid4().hex[:10],
                       env={"BP": prefix, "BPT": prefix, "AzureFunctionsJobHost__id": host_id}).wait_ready()
    yield host, Storage(connection_string, prefix, host_id)
    host.stop()


def test_blob_triggered_starter_fans_out_and_an_activity_writes_the_report(v1):
    host, s = v1
    assert [line for line in host.log().splitlines() if line.startswith(("Error:", "Warning:"))] == []
    s.put("start", "poem.txt", "the quick brown fox\njumps over\nthe lazy dog")
    report = json.loads(s.wait_blob("reports", "poem.txt.json", timeout=30))
    assert report == {"name": "poem.txt", "lines": 3, "words": 9, "counts": [4, 2, 3]}
    reason = f"New blob detected(LogsAndContainerScan): {s.prefix}-start/poem.txt"
    wait_runs(host, lambda runs: finished(runs, "Succeeded", reason_ends=reason), "BlobStarter")
    assert "Started orchestration with ID = '" in host.log()


def test_blob_input_as_bytes_by_data_type_and_input_stream_unannotated(v1):
    host, s = v1
    s.put("reports", "given.json", json.dumps({"x": 1}))
    r = host.request("GET", "/api/reports/given.json")
    assert r.status == 200 and r.json() == {"type": "bytes", "raw_type": "InputStream", "report": {"x": 1}}
    assert host.request("GET", "/api/reports/none.json").status == 404


def test_table_output_from_return_with_keys_from_the_route_and_a_query_input(v1):
    host, s = v1
    for rk, name in (("1", "Ann"), ("2", "Bob")):
        r = host.request("POST", f"/api/rows/team/{rk}", {"Name": name})
        assert r.status == 201 and r.text == "row added"
    r = host.request("POST", "/api/rows/other/1", {"Name": "Cy"})
    assert r.status == 201
    got = host.request("GET", "/api/rows/team").json()
    assert got["type"] == "str"                                 # unannotated: the JSON text as sent
    assert [(row["PartitionKey"], row["RowKey"], row["Name"]) for row in got["rows"]] == \
        [("team", "1", "Ann"), ("team", "2", "Bob")]
    r = host.request("POST", "/api/rows/team/1", {"Name": "Ann again"})
    assert r.status == 500 and "EntityAlreadyExists" in r.text
