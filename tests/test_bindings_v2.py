"""Blob triggers, blob and table inputs and outputs and binding expressions under `durafunc start`, v2 model.
Blobs, queues and tables are written and read back with the real Azure SDKs against the test Azurite."""
from __future__ import annotations

import hashlib
import json
import re
import uuid

import pytest
from azure.data.tables import TableServiceClient

from bindingutil import Storage
from hostutil import HERE, HostProcess
from runlog import finished, logged_runs, wait_runs

APP = HERE / "hostapps" / "bindingsv2"


@pytest.fixture(scope="module")
def v2(connection_string):
    prefix = "b" + uuid.uuid4().hex[:10]
    host_id = "t" + uuid.uuid4().hex[:12]
    host = HostProcess(APP, connection_string, "BV2" + uuid.uuid4().hex[:10],
                       env={"BP": prefix, "BPT": prefix, "AzureFunctionsJobHost__id": host_id}).wait_ready()
    yield host, Storage(connection_string, prefix, host_id)
    host.stop()


def test_start_reports_the_function_that_cannot_listen(v2):
    host, s = v2
    errors = [line for line in host.log().splitlines() if line.startswith("Error:")]
    assert errors == ["Error: function 'typo': binding 'out' (blob): Unable to resolve binding parameter 'name'. "
                      "Binding expressions must map to either a value provided by the trigger or a property of the "
                      "value the trigger is bound to, or must be a system binding expression (e.g. sys.randguid, "
                      "sys.utcnow, etc.). (the function does not listen)"]
    assert "on_upload: blobTrigger" in host.log()


def test_blob_trigger_gives_an_input_stream_and_writes_the_return_value(v2):
    host, s = v2
    s.put("in", "hello.txt", "hello world", metadata={"owner": "ann"})
    seen = json.loads(s.wait_blob("out", "hello.json"))
    assert seen == {"type": "InputStream", "name": f"{s.prefix}-in/hello.txt", "length": 11,
                    "uri": seen["uri"], "content": "hello world", "metadata": {"owner": "ann"}}
    assert seen["uri"].endswith(f"/devstoreaccount1/{s.prefix}-in/hello.txt")
    reason = f"New blob detected(LogsAndContainerScan): {s.prefix}-in/hello.txt"
    wait_runs(host, lambda runs: finished(runs, "Succeeded", reason_ends=reason), "on_upload")
    etag = s.etag("in", "hello.txt")
    receipt = f'blobreceipts/{s.host_id}/Host.Functions.on_upload/{etag}/{s.prefix}-in/hello.txt'
    assert s.exists("azure-webjobs-hosts", receipt, full=True)


def test_str_with_data_type_string_and_bytes_by_annotation(v2):
    host, s = v2
    s.put("text", "note", "grüße")
    assert s.wait_blob("out", "text-note") == "str:GRÜSSE"
    payload = bytes(range(256))
    s.put("bin", "blob.bin", payload)
    assert s.wait_blob("out", "sha-blob.bin") == f"bytes:{hashlib.sha256(payload).hexdigest()}"


def test_str_annotation_without_data_type_gets_bytes_with_a_warning_at_start(v2):
    host, s = v2
    warnings = [line for line in host.log().splitlines() if line.startswith("Warning:")]
    assert warnings == ["Warning: function 'str_without_data_type': parameter 'text' is annotated 'str' but its "
                        "blobTrigger binding has no dataType 'string': it gets bytes, as on Azure (set "
                        "\"dataType\": \"string\", data_type=\"STRING\" in the v2 model)"]
    s.put("loose", "x.txt", "text")
    assert s.wait_blob("out", "loose-x.txt") == "bytes"


def test_a_changed_blob_runs_again_an_unchanged_one_does_not(v2):
    host, s = v2
    s.put("text", "again", "one")
    assert s.wait_blob("out", "text-again") == "str:ONE"
    s.put("text", "again", "two")
    assert s.wait_blob("out", "text-again", until=lambda t: t == "str:TWO") == "str:TWO"
    again = f": {s.prefix}-text/again"
    wait_runs(host, lambda runs: len(finished(runs, "Succeeded", reason_ends=again)) >= 2, "on_text")
    s.put("text", "later", "x")                      # a later blob is processed: the scans went on
    assert s.wait_blob("out", "text-later") == "str:X"
    assert len([r for r in logged_runs(host.log(), "on_text") if r.reason.endswith(again)]) == 2


def test_a_failing_blob_function_goes_to_the_poison_queue(v2):
    host, s = v2
    s.put("bad", "doomed.txt", "x")
    etag = s.etag("bad", "doomed.txt")
    msg = s.wait_poison(f"{s.prefix}-bad")
    assert msg == {"Type": "BlobTrigger", "FunctionId": "Host.Functions.always_fails", "BlobType": "BlockBlob",
                   "ContainerName": f"{s.prefix}-bad", "BlobName": "doomed.txt", "ETag": etag}
    doomed = f": {s.prefix}-bad/doomed.txt"
    runs = wait_runs(host, lambda runs: len(finished(runs, reason_ends=doomed)) >= 2, "always_fails")
    failures = finished(runs, reason_ends=doomed)
    assert [(r.outcome, r.details["DequeueCount"]) for r in failures] == [("Failed", "1"), ("Failed", "2")]
    assert len({r.details["MessageId"] for r in failures}) == 1         # one message, host.json maxDequeueCount: 2
    assert f"Exception: ValueError: cannot handle {s.prefix}-bad/doomed.txt" in failures[-1].failure
    assert "Moving message to queue 'webjobs-blobtrigger-poison'" in host.log()


def test_blob_input_from_a_route_parameter_and_none_when_missing(v2):
    host, s = v2
    s.put("in", "page.txt", "the page")
    r = host.request("GET", "/api/files/page")
    assert r.status == 200 and r.text == "the page"
    r = host.request("GET", "/api/files/nothing-here")
    assert r.status == 404 and r.text == "no such file"


def test_blob_output_with_route_query_and_rand_guid_expressions(v2):
    host, s = v2
    r = host.request("POST", "/api/files/abc?kind=raw", raw=b"\x00\x01stored bytes")
    assert r.status == 201
    [name] = s.names("out", "abc/")
    assert re.fullmatch(r"abc/raw-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.bin", name), name
    assert s.get("out", name, binary=True) == b"\x00\x01stored bytes"


def test_an_expression_without_a_value_fails_the_invocation_in_one_line(v2):
    host, s = v2
    r = host.request("POST", "/api/unresolved")
    assert r.status == 500
    assert r.json()["error"] == ("Function 'unresolved' failed: FunctionInvocationException: Error while handling "
                                 "parameter _binder after function returned:. path '%BP%-out/{missing}.txt': No "
                                 "value for named parameter 'missing'. (blob output binding 'out')")


def test_queue_trigger_payload_properties_in_blob_and_queue_paths(v2):
    host, s = v2
    s.put("in", "greeting.txt", "Hello NAME!")
    s.send("jobs", json.dumps({"id": "j1", "who": "Ann", "template": "greeting"}))
    assert s.wait_blob("out", "job-j1.txt") == "Hello Ann!"
    assert s.wait_queue("done-j1") == ["job j1 done (dequeue 1)"]


def test_queue_trigger_text_in_a_blob_path(v2):
    host, s = v2
    s.send("echo", "plain-words")
    assert s.wait_blob("out", "echo-plain-words.txt") == "echo plain-words"


def test_table_output_then_input_by_keys_and_by_query(v2, connection_string):
    host, s = v2
    rows = [{"RowKey": "1", "Name": "Ann", "Age": 30}, {"RowKey": "2", "Name": "Bob", "Age": 12},
            {"RowKey": "3", "Name": "Cy", "Age": 40}, {"RowKey": "4", "Name": "Di", "Age": 50}]
    r = host.request("POST", "/api/rows/p1", rows)
    assert r.status == 201, r.text
    r = host.request("GET", "/api/rows/p1/1")
    assert r.status == 200
    got = r.json()
    assert got["type"] == "str"                                           # JSON text, as the worker gives it
    row = got["row"]
    assert list(row)[:4] == ["odata.etag", "PartitionKey", "RowKey", "Timestamp"]
    assert (row["PartitionKey"], row["RowKey"], row["Name"], row["Age"]) == ("p1", "1", "Ann", 30)
    assert host.request("GET", "/api/rows/p1/99").status == 404
    adults = host.request("GET", "/api/adults/p1").json()
    assert [a["Name"] for a in adults] == ["Ann", "Cy"]                   # Age ge 18, take 2
    table = TableServiceClient.from_connection_string(connection_string).get_table_client(f"{s.prefix}people")
    stored = table.get_entity("p1", "4")
    assert stored["Age"].edm_type.value == "Edm.Int64" and stored["Age"].value == 50   # JSON numbers: Int64


def test_an_existing_row_key_fails_the_invocation_with_the_409_message(v2):
    host, s = v2
    assert host.request("POST", "/api/rows/dup", {"RowKey": "x", "V": 1}).status == 201
    r = host.request("POST", "/api/rows/dup", {"RowKey": "x", "V": 2})
    assert r.status == 500
    assert r.json()["error"] == ("Function 'add_rows' failed: FunctionInvocationException: Error while handling "
                                 "parameter _binder after function returned:. Azure.Data.Tables: The specified "
                                 "entity already exists. Status: 409 (Conflict) ErrorCode: EntityAlreadyExists "
                                 "(table output binding 'rows')")
    assert host.request("POST", "/api/rows/dup", {"RowKey": "x/y"}).status == 500


def test_a_table_input_of_a_missing_table_fails_as_on_azure(v2):
    host, _ = v2
    r = host.request("GET", "/api/missing-table")
    assert r.status == 500
    assert r.json()["error"] == ("Function 'missing_table' failed: FunctionInvocationException: Exception binding "
                                 "parameter 'rows'. Azure.Data.Tables: The table specified does not exist. Status: "
                                 "404 (Not Found) ErrorCode: TableNotFound")


def test_activity_output_binding_with_data_and_instance_id(v2):
    host, s = v2
    r = host.request("POST", "/api/report?id=rep-1", {"name": "q3", "total": 7})
    assert r.status == 202, r.text
    status = host.wait_status(r.json()["statusQueryGetUri"])
    assert status["runtimeStatus"] == "Completed" and status["output"] == "saved", status
    assert json.loads(s.wait_blob("out", "report-q3-rep-1.json")) == {"name": "q3", "total": 7}


def test_run_a_blob_triggered_function_by_hand(v2):
    host, s = v2
    r = host.request("POST", "/admin/functions/on_text", {"input": f"{s.prefix}-text/not-there"})
    assert r.status == 500 and "does not exist" in r.text
    s.put("text", "byhand", "manual")
    assert s.wait_blob("out", "text-byhand") == "str:MANUAL"
    s.delete("out", "text-byhand")
    r = host.request("POST", "/admin/functions/on_text", {"input": f"{s.prefix}-text/byhand"})
    assert r.status == 202, r.text
    assert s.get("out", "text-byhand") == "str:MANUAL"                    # written before the answer

