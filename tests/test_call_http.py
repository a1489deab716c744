"""call_http's built-in activity: the pure request/response conversions, then HttpCalls against a real local
aiohttp server (timeouts, refused connections, cookies)."""
from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from azure.durable_functions.models.actions.CallHttpAction import CallHttpAction
from azure.durable_functions.models.DurableHttpRequest import DurableHttpRequest
from azure.durable_functions.models.TokenSource import ManagedIdentityTokenSource

from durafunc.durable.worker import UserCodeError
from durafunc.http.call_http import (HttpAnswer, HttpCall, HttpCalls, decode_content, durable_http_response,
                                     parse_request, poll_delay, poll_request, response_headers, wire_request)

from hostutil import free_port


def sdk_request(*args, **kwargs) -> str:
    """The activity input for a call_http, built by the SDK's own classes (as the action carries it)."""
    return json.dumps(CallHttpAction(DurableHttpRequest(*args, **kwargs)).to_json()["httpRequest"])


def failure(fn, *args) -> UserCodeError:
    with pytest.raises(UserCodeError) as e:
        fn(*args)
    return e.value


# -- request ------------------------------------------------------------------------------------------------

def test_parse_request_from_the_sdk():
    call = parse_request(sdk_request("post", "https://example.org/a?b=1", json.dumps({"k": 1}),
                                     {"X-One": "1"}, ManagedIdentityTokenSource("https://graph.microsoft.com/")))
    assert call == HttpCall("POST", "https://example.org/a?b=1", (("X-One", "1"),), '{"k": 1}',
                            "https://graph.microsoft.com/", True)
    call = parse_request(sdk_request("GET", "http://localhost:7071/api/x"))
    assert (call.headers, call.content, call.token_resource) == ((), None, None)
    call = parse_request(json.dumps({"method": "GET", "uri": "http://h/", "headers": {"A": ["1", "2"]},
                                     "asynchronousPatternEnabled": False}))
    assert call.headers == (("A", "1"), ("A", "2")) and call.async_pattern is False


@pytest.mark.parametrize("text,type_name,words", [
    ("{nope", "ArgumentException", "the call_http request is not JSON"),
    ('"GET"', "ArgumentException", "must be a JSON object, got str"),
    ('{"uri": "http://h/"}', "ArgumentException", "needs an HTTP method like 'GET', got None"),
    ('{"method": "GET", "uri": "api/relative"}', "InvalidOperationException",
     "An invalid request URI was provided: 'api/relative'"),
    ('{"method": "GET", "uri": "ftp://h/file"}', "InvalidOperationException", "absolute http:// or https:// URI"),
    ('{"method": "GET", "uri": null}', "InvalidOperationException", "An invalid request URI was provided: None"),
    ('{"method": "GET", "uri": "http://h/", "headers": {"X-N": 5}}', "ArgumentException",
     "header 'X-N' must be a string or a list of strings, got 5"),
])
def test_parse_request_errors(text, type_name, words):
    e = failure(parse_request, text)
    assert e.type_name == type_name and words in e.message, e.message


def test_wire_request_content_type_rules():
    call = HttpCall("POST", "http://h/", (("X-A", "1"),), "héllo")
    assert wire_request(call) == ([("X-A", "1"), ("Content-Type", "text/plain")], "héllo".encode())
    call = HttpCall("POST", "http://h/", (("content-type", "application/json"),), "{}")
    assert wire_request(call) == ([("Content-Type", "application/json")], b"{}")
    call = HttpCall("POST", "http://h/", (("Content-Type", "application/x-www-form-urlencoded"),), "a=1")
    assert wire_request(call)[0] == [("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")]
    call = HttpCall("GET", "http://h/", (("Content-Type", "application/json"), ("A", "1"), ("A", "2")))
    assert wire_request(call) == ([("A", "1"), ("A", "2")], None)     # no content: no content type


def test_wire_request_refuses_multipart_and_content_headers():
    e = failure(wire_request, HttpCall("POST", "http://h/", (("Content-Type", "multipart/form-data; b=x"),), "x"))
    assert (e.type_name, e.message) == ("FunctionFailedException",
                                        "Multipart content is not supported with CallHttpAsync.")
    e = failure(wire_request, HttpCall("POST", "http://h/", (("Content-Length", "3"),), "abc"))
    assert e.type_name == "InvalidOperationException" and "Misused header name, 'Content-Length'" in e.message


# -- the asynchronous pattern -------------------------------------------------------------------------------

def test_poll_request_follows_202_location_without_the_function_key():
    call = HttpCall("POST", "http://h/api/start?x=1", (("x-functions-key", "k"), ("X-A", "1")), "go", "res")
    following = poll_request(call, HttpAnswer(202, (("Location", "/api/status/7"),), b""))
    assert following == HttpCall("GET", "http://h/api/status/7", (("X-A", "1"),), None, "res", True)
    absolute = poll_request(call, HttpAnswer(202, (("location", "https://other/s"), ("Retry-After", "1")), b""))
    assert absolute.url == "https://other/s"
    assert poll_request(call, HttpAnswer(200, (("Location", "/x"),), b"")) is None
    assert poll_request(call, HttpAnswer(202, (), b"")) is None          # 202 without Location: the answer
    off = HttpCall("GET", "http://h/", async_pattern=False)
    assert poll_request(off, HttpAnswer(202, (("Location", "/x"),), b"")) is None


def test_poll_delay_retry_after_seconds_date_or_default():
    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
    answer = lambda *h: HttpAnswer(202, h, b"")   # noqa: E731
    assert poll_delay(answer(("Retry-After", "3")), 30000, now) == 3.0
    assert poll_delay(answer(("retry-after", "0")), 30000, now) == 0.0
    assert poll_delay(answer(), 30000, now) == 30.0
    assert poll_delay(answer(), 250, now) == 0.25
    assert poll_delay(answer(("Retry-After", format_datetime(now + timedelta(seconds=10), usegmt=True))),
                      30000, now) == 10.0
    assert poll_delay(answer(("Retry-After", format_datetime(now - timedelta(seconds=10), usegmt=True))),
                      30000, now) == 0.0
    assert poll_delay(answer(("Retry-After", "soon")), 1000, now) == 1.0


# -- response -----------------------------------------------------------------------------------------------

def test_response_headers_join_repeats_and_leave_out_content_headers():
    pairs = [("Vary", "Accept"), ("Set-Cookie", "a=1"), ("vary", "Origin"), ("Content-Type", "text/html"),
             ("Content-Length", "5"), ("Location", "/next"), ("Set-Cookie", "b=2"), ("Last-Modified", "x")]
    assert response_headers(pairs) == {"Vary": "Accept, Origin", "Set-Cookie": "a=1, b=2", "Location": "/next"}


def test_decode_content_charsets():
    assert decode_content("é".encode("latin-1"), "ISO-8859-1") == "é"
    assert decode_content("\ufeffhi é".encode(), None) == "hi é"
    assert decode_content("hi".encode(), "no-such-charset") == "hi"
    assert decode_content(b"\xff", "utf-8") == "\ufffd"


def test_durable_http_response_json():
    text = durable_http_response(HttpAnswer(404, (("X-A", "1"), ("Content-Type", "application/json")),
                                            b'{"error": "nope"}', "utf-8"))
    assert json.loads(text) == {"statusCode": 404, "headers": {"X-A": "1"}, "content": '{"error": "nope"}'}
    assert json.loads(durable_http_response(HttpAnswer(204, (), b"")))["content"] == ""


# -- sending, against a real local server ---------------------------------------------------------------

@pytest.fixture
async def server():
    seen = []

    async def slow(request):
        await asyncio.sleep(2)
        return web.Response(text="late")

    async def cookie(request):
        seen.append(request.headers.get("Cookie"))
        resp = web.Response(text="ok")
        resp.set_cookie("session", "s1")
        return resp

    async def job(request):
        seen.append((request.method, await request.text()))
        if len(seen) == 1:
            return web.Response(status=202, headers={"Location": "/job", "Retry-After": "0"})
        return web.Response(status=200, text="done", headers={"X-Polls": str(len(seen) - 1)})

    app = web.Application()
    app.add_routes([web.get("/slow", slow), web.get("/cookie", cookie), web.route("*", "/job", job)])
    srv = TestServer(app, host="127.0.0.1")
    await srv.start_server()
    srv.seen = seen
    yield srv
    await srv.close()


def request_for(method: str, url: str, content: str | None = None) -> str:
    return json.dumps({"method": method, "uri": url, "content": content, "headers": None})


async def test_timeout_fails_with_a_clear_reason(server):
    calls = HttpCalls(timeout=0.3)
    try:
        with pytest.raises(UserCodeError) as e:
            await calls.run(request_for("GET", str(server.make_url("/slow"))))
    finally:
        await calls.close()
    assert e.value.type_name == "TaskCanceledException"
    assert "HttpClient.Timeout of 0.3 seconds elapsing, for GET http://127.0.0.1:" in e.value.message


async def test_connection_refused_names_the_address():
    port = free_port()
    calls = HttpCalls()
    try:
        with pytest.raises(UserCodeError) as e:
            await calls.run(request_for("GET", f"http://127.0.0.1:{port}/x"))
    finally:
        await calls.close()
    assert (e.value.type_name, e.value.message) == (
        "HttpRequestException", f"Connection refused (127.0.0.1:{port}) for GET http://127.0.0.1:{port}/x")


async def test_no_cookies_are_kept_between_calls_and_202_is_polled(server):
    calls = HttpCalls(async_sleep_ms=30000)
    try:
        for _ in range(2):
            r = json.loads(await calls.run(request_for("GET", str(server.make_url("/cookie")))))
            assert r["statusCode"] == 200 and r["headers"]["Set-Cookie"].startswith("session=s1")
        assert server.seen == [None, None]
        server.seen.clear()
        r = json.loads(await calls.run(request_for("POST", str(server.make_url("/job")), "go")))
    finally:
        await calls.close()
    assert (r["statusCode"], r["content"], r["headers"]["X-Polls"]) == (200, "done", "1")
    assert server.seen == [("POST", "go"), ("GET", "")]
    assert calls._session is None
