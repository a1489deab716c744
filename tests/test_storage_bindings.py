"""The pure parts of blob and table bindings, blob receipts and the host id: no Azurite."""
from __future__ import annotations

import io
from datetime import datetime, timezone
from types import SimpleNamespace

import azure.functions as func
import pytest
from azure.data.tables import EdmType, EntityProperty, TableEntity
from azure.functions import meta

from durafunc.functions import blobs, tables
from durafunc.functions.errors import BindingError
from durafunc.functions.hostid import default_host_id, host_id, stable_hash
from durafunc.functions.model import Binding
from durafunc.functions.triggers.receipts import (parse_scan_info, parse_trigger_message, receipt_name,
                                                  scan_info_text, trigger_message)
from durafunc.functions.triggers.timer import occurrences_message
from durafunc.functions.schedule import parse_schedule

T0 = datetime(2024, 5, 1, 10, 0, 0, tzinfo=timezone.utc)


# -- blobs ------------------------------------------------------------------------------------------------------

def test_blob_paths():
    assert blobs.split_path("cont/a/b.txt") == ("cont", "a/b.txt")
    with pytest.raises(BindingError) as e:
        blobs.split_path("nocontainer")
    assert str(e.value) == ("Invalid blob path specified : 'nocontainer'. Blob identifiers must be in the format "
                            "'container/blob'.")
    with pytest.raises(BindingError, match="Invalid container name: 'Upper'"):
        blobs.split_path("Upper/x")


def test_what_the_host_sends_and_the_worker_gives():
    b = Binding("blob", "in", "f", {})
    s = Binding("blob", "in", "f", {"dataType": "STRING"})
    assert blobs.content_datum(b"h\xc3\xa9", b) == meta.Datum(b"h\xc3\xa9", "bytes")
    assert blobs.content_datum(b"h\xc3\xa9", s) == meta.Datum("hé", "string")
    assert blobs.content_datum(None, b).type is None
    datum = blobs.content_datum(b"abc", b)
    assert blobs.input_value(datum, bytes) == b"abc" and blobs.input_value(datum, str) == b"abc"   # generic
    stream = blobs.input_value(datum, func.InputStream)
    assert isinstance(stream, func.InputStream) and stream.read() == b"abc" and stream.name is None
    assert blobs.input_value(blobs.content_datum(None, b), func.InputStream) is None   # a missing blob: None
    with pytest.raises(BindingError, match="dataType must be one of string, binary, stream, got 'text'"):
        blobs.data_type(Binding("blob", "in", "f", {"dataType": "text"}))


def test_annotation_hints():
    assert "annotated 'str' but its blobTrigger binding has no dataType 'string'" in \
        blobs.annotation_warning("f", Binding("blobTrigger", "in", "b", {}), str)
    assert "annotated 'bytes'" in blobs.annotation_warning("f", Binding("blob", "in", "b", {"dataType": "string"}),
                                                           bytes)
    assert blobs.annotation_warning("f", Binding("blob", "in", "b", {"dataType": "string"}), str) is None
    assert blobs.annotation_warning("f", Binding("blob", "in", "b", {}), func.InputStream) is None


def test_output_values_as_the_worker_encodes_them():
    assert blobs.output_content("héllo") == "héllo".encode()
    assert blobs.output_content(b"\x00\x01") == b"\x00\x01" and blobs.output_content(bytearray(b"x")) == b"x"
    assert blobs.output_content(io.StringIO("filelike")) == b"filelike"
    assert blobs.output_content(io.BytesIO(b"\xff")) == b"\xff"
    assert blobs.output_content(b"bytes into Out[str]", str) == b"bytes into Out[str]"
    assert blobs.output_content(None) is None
    with pytest.raises(TypeError, match='unsupported type "generic" for Python type "dict"'):
        blobs.output_content({"a": 1}, str)
    with pytest.raises(TypeError, match='unsupported type "blob" for Python type "int"'):
        blobs.output_content(42)


def test_trigger_metadata_builds_the_sdk_input_stream():
    props = SimpleNamespace(last_modified=T0, creation_time=T0, size=5, etag="0x8D1", blob_type="BlockBlob",
                            metadata={"k": "v"}, content_settings=SimpleNamespace(
                                content_type="text/plain", content_encoding=None, content_language=None,
                                content_disposition=None, cache_control=None, content_md5=bytearray(b"\x01")),
                            lease=None, blob_tier=None)
    p = blobs.properties_json(props)
    assert p["ContentLength"] == 5 and p["ETag"] == '"0x8D1"' and p["BlobType"] == "Block"
    assert p["LastModified"] == "2024-05-01T10:00:00+00:00" and p["ContentHash"] == "AQ=="
    md = blobs.trigger_metadata("c", "a/b.txt", "http://x/c/a/b.txt", p, {"k": "v"}, {"name": "a/b"})
    stream = blobs.trigger_value(meta.Datum(b"hello", "bytes"), md, None)
    assert (stream.name, stream.length, stream.uri, stream.read()) == ("c/a/b.txt", 5, "http://x/c/a/b.txt",
                                                                       b"hello")
    assert stream.metadata == {"k": "v"} and stream.blob_properties["ContentType"] == "text/plain"
    data = blobs.binding_data("c", "a/b.txt", "u", p, {"k": "v"}, {"name": "a/b"})
    assert data["name"] == "a/b" and data["BlobTrigger"] == "c/a/b.txt" and data["Metadata"] == {"k": "v"}


# -- receipts and the host id ------------------------------------------------------------------------------------

def test_receipt_names_and_messages_in_the_storage_extension_layout():
    assert receipt_name("myhost-1", "Host.Functions.f", '"0x8D"', "samples", "a/b.txt") == \
        'blobreceipts/myhost-1/Host.Functions.f/"0x8D"/samples/a/b.txt'
    text = trigger_message("Host.Functions.f", "BlockBlob", "samples", "a/b.txt", '"0x8D"')
    assert text == ('{\n  "Type": "BlobTrigger",\n  "FunctionId": "Host.Functions.f",\n  "BlobType": "BlockBlob",\n'
                    '  "ContainerName": "samples",\n  "BlobName": "a/b.txt",\n  "ETag": "\\"0x8D\\""\n}')
    assert parse_trigger_message(text.encode())["BlobName"] == "a/b.txt"
    for bad, message in [("nope", "Invalid blob trigger message."), ("[1]", "Invalid blob trigger message."),
                         ('{"Type": "BlobTrigger"}', "Invalid function ID."),
                         ('{"FunctionId": "x", "ContainerName": "c"}', "Invalid blob trigger message.")]:
        with pytest.raises(ValueError, match=message):
            parse_trigger_message(bad)
    assert parse_scan_info(scan_info_text(T0)) == T0 and parse_scan_info("garbage") is None


def test_host_id_as_the_functions_host_derives_it():
    assert stable_hash("") == 23 and stable_hash("a") == 23 * 31 + 97
    assert stable_hash("x" * 40) == -723220201       # wraps as a 32-bit integer (checked with ctypes.c_int32)
    assert default_host_id("/home/dev/app", machine="Dev-Box_1") == "devbox1-1245021457"
    assert default_host_id("/p", machine="A" * 40) == "a" * 32              # at most 32 characters
    assert default_host_id("/p", machine="B" * 31) == "b" * 31              # and no trailing dash
    assert host_id("/p", {"AzureFunctionsJobHost__id": "Shared-Host"}) == "shared-host"
    with pytest.raises(BindingError, match="'-bad-' is not a valid host ID"):
        host_id("/p", {"AzureFunctionsJobHost__id": "-bad-"})


# -- tables ------------------------------------------------------------------------------------------------------

def test_entities_read_as_the_extension_writes_their_json():
    e = TableEntity(PartitionKey="p", RowKey="r", n=1, big=EntityProperty(5, EdmType.INT64), when=T0, raw=b"\x01")
    e._metadata = {"etag": 'W/"datetime\'x\'"', "timestamp": T0}
    assert tables.entity_json(e) == {"odata.etag": 'W/"datetime\'x\'"', "PartitionKey": "p", "RowKey": "r",
                                     "Timestamp": "2024-05-01T10:00:00+00:00", "n": 1, "big": 5,
                                     "when": "2024-05-01T10:00:00+00:00", "raw": "AQ=="}
    assert list(tables.entity_json(e))[:4] == ["odata.etag", "PartitionKey", "RowKey", "Timestamp"]


def test_query_filters_and_take():
    assert tables.query_filter("p", None) == "PartitionKey eq 'p'"
    assert tables.query_filter("o'b", "Age gt 3") == "PartitionKey eq 'o''b' and Age gt 3"
    assert tables.query_filter(None, "Age gt 3") == "Age gt 3" and tables.query_filter(None, None) is None
    assert tables.take_of(None) is None and tables.take_of("5") == 5 and tables.take_of(0) is None
    with pytest.raises(BindingError, match="'take' must be a number"):
        tables.take_of("five")


def test_output_values_become_entities_as_the_extension_converts_them():
    items = tables.parse_output('[{"partitionKey": "from-entity", "RowKey": 7, "Name": "n", "Age": 3, '
                                '"Score": 1.5, "Ok": true, "When": "2024-05-01T10:00:00Z", "Nothing": null}]')
    entity, etag = tables.to_entity(items[0], "from-binding", None)
    assert etag is None and entity["PartitionKey"] == "from-entity" and entity["RowKey"] == "7"
    assert entity["Age"] == EntityProperty(3, EdmType.INT64) and entity["Score"] == 1.5 and entity["Ok"] is True
    assert entity["When"] == T0 and "Nothing" not in entity
    entity, _ = tables.to_entity({"Name": "x"}, "pk", "rk")                # keys from the binding
    assert (entity["PartitionKey"], entity["RowKey"]) == ("pk", "rk")
    assert tables.to_entity({"RowKey": "r", "odata.etag": "*"}, "p", None)[1] == "*"
    with pytest.raises(BindingError, match="the entity has no RowKey"):
        tables.to_entity({"Name": "x"}, "pk", None)
    with pytest.raises(BindingError, match="Unable to cast object of type 'Newtonsoft.Json.Linq.JObject'"):
        tables.to_entity({"RowKey": "r", "Nested": {"a": 1}}, "p", None)
    with pytest.raises(BindingError, match="contains a character that is not allowed"):
        tables.to_entity({"RowKey": "a/b"}, "p", None)
    with pytest.raises(BindingError, match="not JSON"):
        tables.parse_output("not json")
    with pytest.raises(BindingError, match="a JSON object or an array of JSON objects"):
        tables.parse_output("[1, 2]")
    with pytest.raises(TypeError, match='unsupported type "generic" for Python type "dict"'):
        tables.parse_output({"RowKey": "r"})
    assert tables.parse_output(None) is None


def test_batches_per_partition_with_repeated_row_keys_flushed():
    def e(pk, rk, etag=None):
        return {"PartitionKey": pk, "RowKey": rk}, etag
    out = tables.batches([e("a", "1"), e("b", "1"), e("a", "2"), e("a", "1", "*"), e("b", "2", 'W/"x"')])
    assert [[(a[0], a[1]["PartitionKey"], a[1]["RowKey"]) for a in batch] for batch in out] == [
        [("create", "a", "1"), ("create", "a", "2")],
        [("create", "b", "1"), ("update", "b", "2")],
        [("upsert", "a", "1")]]
    big = tables.batches([e("p", str(i)) for i in range(250)])
    assert [len(b) for b in big] == [100, 100, 50]


# -- timers --------------------------------------------------------------------------------------------------

def test_next_occurrences_as_core_tools_prints_them():
    now = datetime(2024, 1, 1, 10, 7, 30)
    text = occurrences_message("Tick", parse_schedule("0 */5 * * * *"), now, is_utc=True,
                               to_utc=lambda d: d.replace(tzinfo=timezone.utc))
    assert text.splitlines() == [
        "The next 5 occurrences of the 'Tick' schedule (Cron: '0 */5 * * * *') will be:",
        "01/01/2024 10:10:00Z", "01/01/2024 10:15:00Z", "01/01/2024 10:20:00Z", "01/01/2024 10:25:00Z",
        "01/01/2024 10:30:00Z"]
    text = occurrences_message("Every", parse_schedule("1.02:00:00"), now, is_utc=True,
                               to_utc=lambda d: d.replace(tzinfo=timezone.utc))
    assert text.splitlines()[0] == "The next 5 occurrences of the 'Every' schedule (Constant: 1.02:00:00) will be:"
    assert text.splitlines()[1:3] == ["01/02/2024 12:07:30Z", "01/03/2024 14:07:30Z"]


def test_next_occurrences_in_another_time_zone_show_local_then_utc():
    text = occurrences_message("Tick", parse_schedule("0 0 9 * * *"), datetime(2024, 1, 1, 10, 0, 0),
                               is_utc=False)
    first = text.splitlines()[1]
    local = datetime(2024, 1, 2, 9, 0, 0).astimezone()
    utc = local.astimezone(timezone.utc)
    offset = local.strftime("%z")
    assert first == (f"01/02/2024 09:00:00{offset[:3]}:{offset[3:]} ({utc.strftime('%m/%d/%Y %H:%M:%S')}Z)")


# -- start-time checks of a function's storage bindings (no I/O) ------------------------------------------------

def _fn(trigger: Binding, *bindings: Binding, annotations: dict | None = None):
    from pathlib import Path

    from durafunc.functions.model import FunctionInfo

    def entry(**kwargs):
        pass
    entry.__annotations__ = dict(annotations or {})
    return FunctionInfo("f", "other", trigger, [trigger, *bindings], Path(__file__), entry, False, "f")


def test_binding_problems_reported_at_start():
    from durafunc.functions.bindings import BindingIO
    from durafunc.functions.clients import StorageClients
    from durafunc.settings import QueuesOptions
    env = {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "OUT": "results"}
    io = BindingIO(StorageClients(env), env, QueuesOptions())
    http = Binding("httpTrigger", "in", "req", {})
    timer = Binding("timerTrigger", "in", "t", {"schedule": "0 * * * * *"})
    blob_trigger = Binding("blobTrigger", "in", "b", {"path": "in/{name}"})

    def problems(trigger, *bindings, annotations=None):
        return io.problems(_fn(trigger, *bindings, annotations=annotations))

    assert problems(http, Binding("blob", "out", "o", {"path": "%OUT%/{id}.txt"})) == ([], [])
    assert problems(http, Binding("blob", "out", "o", {"path": "%OUT%/{id}.txt", "connection": "Nope"}))[0] == [
        "binding 'o' (blob): Storage account connection string 'AzureWebJobsNope' does not exist. Make sure that "
        "it is a defined App Setting."]
    assert problems(http, Binding("blob", "in", "o", {"path": "nocontainer"}))[0] == [
        "binding 'o' (blob): Invalid blob path specified : 'nocontainer'. Blob identifiers must be in the format "
        "'container/blob'."]
    assert problems(http, Binding("blob", "in", "o", {"path": "c1x/a", "dataType": "text"}))[0] == [
        "binding 'o' (blob): dataType must be one of string, binary, stream, got 'text'"]
    assert problems(http, Binding("table", "out", "o", {"tableName": "bad-name"}))[0] == [
        "binding 'o' (table): Invalid table name: 'bad-name' (3-63 letters and digits, starting with a letter)"]
    assert problems(http, Binding("queue", "out", "o", {"queueName": "%MISSING%"}))[0] == [
        "binding 'o' (queue): app setting '%MISSING%' is not defined"]
    errors, _ = problems(timer, Binding("blob", "out", "o", {"path": "out/{name}"}))   # a timer has no {name}
    assert errors[0].startswith("binding 'o' (blob): Unable to resolve binding parameter 'name'.")
    assert problems(blob_trigger, Binding("blob", "out", "o", {"path": "out/{name}-{sys.randguid}"})) == ([], [])
    _, warnings = problems(http, Binding("blob", "in", "o", {"path": "c1x/a"}), annotations={"o": str})
    assert warnings == ["function 'f': parameter 'o' is annotated 'str' but its blob binding has no dataType "
                        "'string': it gets bytes, as on Azure (set \"dataType\": \"string\", data_type=\"STRING\" "
                        "in the v2 model)"]
