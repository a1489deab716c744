"""Binding expressions (durafunc/functions/expressions.py): pure, no I/O."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest

from durafunc.functions.expressions import (Expr, ExpressionError, blob_pattern, check_resolvable, expand_settings,
                                            format_datetime, json_properties, lookup, parse, resolve, system_data)

NOW = datetime(2024, 2, 16, 17, 59, 55, 123456, tzinfo=timezone.utc)
GUID = uuid.UUID("0f8fad5b-d9cb-469f-a165-70867728950e")


def res(text, data=None, **kw):
    return resolve(text, data or {}, now=lambda: NOW, new_guid=lambda: GUID, **kw)


def test_parse_literals_expressions_and_escaped_braces():
    t = parse("out/{name}.{ext:N}-{{x}}")
    assert t.parts == ("out/", Expr("name"), ".", Expr("ext", "N"), "-{x}")
    assert t.parameters == ["name", "ext"] and not t.is_literal
    assert parse("plain/path.txt").is_literal
    assert parse("{rand-guid}/{sys.utcnow}/{DateTime}").parameters == []      # builtins need no binding data


@pytest.mark.parametrize("text,message", [
    ("a/{name", "Missing closing bracket at position 3"),
    ("a/name}", "Missing opening bracket at position 7"),
    ("a/{}", "parameter name at position 3 is empty"),
    ("a/{x{y}}", "Missing closing bracket"),
])
def test_malformed_templates(text, message):
    with pytest.raises(ExpressionError, match=message):
        parse(text)


def test_binding_data_is_case_insensitive_and_dotted():
    data = {"Name": "file.txt", "data": {"Order": {"Id": 7}}, "Metadata": {"owner": "ann"}, "flag": True}
    assert res("{name}|{DATA.order.id}|{metadata.Owner}|{flag}", data) == "file.txt|7|ann|True"
    assert lookup(data, "data.order") == {"Id": 7}
    assert res("{data.order}", data) == '{"Id":7}'                   # an object in a path is its JSON


def test_a_missing_value_is_the_webjobs_error():
    with pytest.raises(ExpressionError) as e:
        res("out/{id}.txt", {"name": "x"})
    assert str(e.value) == "No value for named parameter 'id'."
    with pytest.raises(ExpressionError, match="'data.missing'"):
        res("{data.missing}", {"data": {"present": 1}})
    with pytest.raises(ExpressionError, match="'n'"):
        res("{n}", {"n": None})                                       # a JSON null is no value


def test_builtins_rand_guid_datetime_and_sys():
    assert res("{rand-guid}") == str(GUID)
    assert res("{rand-guid:N}") == GUID.hex and res("{rand-guid:B}") == "{" + str(GUID) + "}"
    assert res("{DateTime}.txt") == "2024-02-16T17-59-55Z.txt"        # Azure's default: no colons in names
    assert res("{datetime:yyyy/MM/dd}/{DateTime:HH'h'mm}") == "2024/02/16/17h59"
    data = system_data("fn", now=NOW, guid="g-1")
    assert res("{sys.methodname}/{sys.randguid}/{sys.utcnow}", data) == \
        "fn/g-1/2024-02-16T17:59:55.123456Z"
    assert res("{sys.utcnow:yyyy-MM-dd}", data) == "2024-02-16"
    with pytest.raises(ExpressionError, match="not a GUID format"):
        res("{rand-guid:Q}")


def test_rand_guid_is_new_each_time():
    a, b = resolve("{rand-guid}", {}), resolve("{rand-guid}", {})
    assert a != b and uuid.UUID(a) and uuid.UUID(b)


@pytest.mark.parametrize("fmt,expected", [
    ("yyyy-MM-ddTHH:mm:ss.fffK", "2024-02-16T17:59:55.123Z"),
    ("yy M d h tt", "24 2 16 5 PM"),
    ("dddd, MMMM dd", "Friday, February 16"),
    ("FFFFFF", "123456"), ("ffff", "1234"),
    ("'at' HH\\:mm", "at 17:59"),
])
def test_net_datetime_formats(fmt, expected):
    assert format_datetime(NOW, fmt) == expected


def test_app_settings():
    env = {"CONTAINER": "in", "Other": "x"}
    assert expand_settings("%CONTAINER%/{name}", env) == "in/{name}"
    assert expand_settings("%other%", env) == "x"                      # case-insensitive, as IConfiguration
    with pytest.raises(ExpressionError) as e:
        expand_settings("%NOPE%/x", env)
    assert str(e.value) == "app setting '%NOPE%' is not defined"


def test_json_payload_properties():
    assert json_properties('{"id": 42, "name": "n", "ok": true, "tags": [1], "none": null, "o": {"a": 1}}') == \
        {"id": "42", "name": "n", "ok": "True", "o": {"a": 1}}          # arrays and nulls add nothing
    assert json_properties(b'{"id": "x"}') == {"id": "x"}
    for text in ("not json", "[1, 2]", "{broken", "42", b"\xff\xfe", None):
        assert json_properties(text) == {}


def test_blob_trigger_patterns_capture_as_the_sdk():
    p = blob_pattern("samples/{name}")
    assert (p.container, p.prefix, p.parameters) == ("samples", "", ["name"])
    assert p.match("samples", "a/b.txt") == {"name": "a/b.txt"}       # virtual folders are part of the name
    assert p.match("other", "a.txt") is None
    p = blob_pattern("in/{name}.{ext}")
    assert p.match("in", "archive.tar.gz") == {"name": "archive.tar", "ext": "gz"}   # each parameter greedy
    assert p.match("in", "noextension") is None
    p = blob_pattern("in/images/{id}-thumb.png")
    assert p.prefix == "images/" and p.match("in", "images/7-thumb.png") == {"id": "7"}
    assert p.match("in", "images/7-thumb.jpg") is None and p.match("in", "docs/7-thumb.png") is None
    assert blob_pattern("in/literal.txt").match("in", "literal.txt") == {}
    p = blob_pattern("mycontainer")                                   # a container alone: every blob in it
    assert p.match("mycontainer", "any/thing.bin") == {} and p.match("other", "x") is None


@pytest.mark.parametrize("path,message", [
    ("container/", "Paths must be in the format 'container/blob'"),
    ("/blob", "Paths must be in the format 'container/blob'"),
    ("{c}/x", "Container paths cannot contain {resolve} tokens"),
    ("c/{a}/{A}", "'{A}' is used twice"),
    ("c/{sys.randguid}", "cannot be used in a trigger path"),
    ("c/{rand-guid}", "cannot be used in a trigger path"),
])
def test_bad_blob_trigger_paths(path, message):
    with pytest.raises(ExpressionError, match=message):
        blob_pattern(path)


def test_unresolvable_parameters_at_load():
    check_resolvable(parse("out/{name}-{sys.randguid}-{Metadata.k}"), {"name", "metadata"})
    with pytest.raises(ExpressionError) as e:
        check_resolvable(parse("out/{nme}"), {"name"})
    assert str(e.value).startswith("Unable to resolve binding parameter 'nme'. Binding expressions must map to")
