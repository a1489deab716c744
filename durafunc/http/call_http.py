"""`context.call_http`: the built-in activity `BuiltIn::HttpActivity`, made the way the Durable extension's
TaskHttpActivityShim makes it, with one aiohttp ClientSession for the host.

In: the SDK's DurableHttpRequest {method, uri, content, headers, tokenSource}. Out: the JSON text of a
DurableHttpResponse {statusCode, headers, content}. Any answer, 4xx and 5xx too, is a response. A request that gets
no answer (refused connection, bad URI, timeout) fails the task with UserCodeError.

Asynchronous pattern (the extension's default): while the answer is 202 with a Location header, wait Retry-After
seconds (else httpSettings.defaultAsyncRequestSleepTimeMilliseconds), then GET the Location. The .NET host adds a
timer and another activity for each poll. The Python SDK does not model those, so here the polling stays inside
this one task and the sequence ids stay as the SDK expects.

The pure functions (parse_request, wire_request, poll_request, poll_delay, durable_http_response) do no I/O, so
the tests call them directly. HttpCalls does the sending.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Iterable
from urllib.parse import urljoin, urlsplit

import aiohttp

from ..durable.worker import UserCodeError

log = logging.getLogger("durafunc.http")

REQUEST_TIMEOUT = 240.0   # seconds per request: the extension's HttpClient.Timeout (DurableHttpClientFactory)
DEFAULT_ASYNC_SLEEP_MS = 30000
# .NET keeps these in HttpContent.Headers, not in HttpResponseMessage.Headers, so a DurableHttpResponse never has
# them in `headers`. In a request, .NET only accepts Content-Type of them ("Misused header name").
CONTENT_HEADERS = frozenset(h.lower() for h in (
    "Allow", "Content-Disposition", "Content-Encoding", "Content-Language", "Content-Length", "Content-Location",
    "Content-MD5", "Content-Range", "Content-Type", "Expires", "Last-Modified"))


@dataclass(frozen=True)
class HttpCall:
    """One DurableHttpRequest, checked. `headers` are as the orchestrator gave them (Content-Type included)."""
    method: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    content: str | None = None
    token_resource: str | None = None   # a tokenSource was given (managed identity for this resource)
    async_pattern: bool = True


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    charset: str | None = None

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


# -- request ------------------------------------------------------------------------------------------------

def parse_request(input_text: str | None) -> HttpCall:
    """The activity input (DurableHttpRequest JSON) -> HttpCall. Bad input raises UserCodeError with the reason."""
    try:
        req = json.loads(input_text) if input_text is not None else None
    except ValueError as e:
        raise UserCodeError("ArgumentException", f"the call_http request is not JSON: {e}") from None
    if not isinstance(req, dict):
        raise UserCodeError("ArgumentException",
                            f"the call_http request must be a JSON object, got {type(req).__name__}")
    method = req.get("method")
    if not isinstance(method, str) or not method.strip() or any(c.isspace() for c in method.strip()):
        raise UserCodeError("ArgumentException", f"call_http needs an HTTP method like 'GET', got {method!r}")
    uri = req.get("uri")
    parts = urlsplit(uri) if isinstance(uri, str) else None
    if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise UserCodeError("InvalidOperationException", f"An invalid request URI was provided: {uri!r}. "
                                                         "call_http needs an absolute http:// or https:// URI.")
    content = req.get("content")
    if content is not None and not isinstance(content, str):
        content = json.dumps(content)
    token = req.get("tokenSource")
    resource = None if not token else str(token.get("resource") or "") if isinstance(token, dict) else str(token)
    return HttpCall(method.strip().upper(), uri, _headers(req.get("headers")), content, resource,
                    req.get("asynchronousPatternEnabled", True) is not False)


def _headers(raw) -> tuple[tuple[str, str], ...]:
    """Header values may be strings or lists of strings (StringValues in .NET)."""
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise UserCodeError("ArgumentException",
                            f"call_http headers must be an object of names to values, got {raw!r}")
    out = []
    for name, value in raw.items():
        values = value if isinstance(value, list) else [value]
        for v in values:
            if not isinstance(v, str):
                raise UserCodeError("ArgumentException", f"call_http header '{name}' must be a string or a list "
                                                         f"of strings, got {v!r}")
            out.append((str(name), v))
    return tuple(out)


def wire_request(call: HttpCall) -> tuple[list[tuple[str, str]], bytes | None]:
    """The headers and body to send. As the shim builds HttpRequestMessage: a Content-Type header sets the
    content type (multipart is refused), the content goes as UTF-8 with text/plain when no type is given."""
    content_type = ""
    headers = []
    for name, value in call.headers:
        low = name.lower()
        if low == "content-type":
            if "multipart" in value:
                raise UserCodeError("FunctionFailedException", "Multipart content is not supported with CallHttpAsync.")
            content_type = value
        elif low in CONTENT_HEADERS:
            raise UserCodeError("InvalidOperationException", f"Misused header name, '{name}'. call_http sets the "
                                                             "content headers itself; only Content-Type may be given.")
        else:
            headers.append((name, value))
    if call.content is None:
        return headers, None
    content_type = content_type or "text/plain"
    if content_type.lower() == "application/x-www-form-urlencoded":
        content_type += "; charset=utf-8"
    headers.append(("Content-Type", content_type))
    return headers, call.content.encode("utf-8")


def poll_request(call: HttpCall, answer: HttpAnswer) -> HttpCall | None:
    """The next request of the asynchronous pattern, or None when `answer` is final: a GET of the Location with
    the same headers except x-functions-key (the status endpoint usually needs another key), no content."""
    location = answer.header("Location")
    if not call.async_pattern or answer.status != 202 or not location:
        return None
    headers = tuple((k, v) for k, v in call.headers if k.lower() != "x-functions-key")
    return replace(call, method="GET", url=urljoin(call.url, location), headers=headers, content=None)


def poll_delay(answer: HttpAnswer, default_ms: int, now: datetime | None = None) -> float:
    """Seconds to wait before the next poll: Retry-After (seconds or an HTTP date), else the default."""
    value = (answer.header("Retry-After") or "").strip()
    if value.isdigit():
        return float(value)
    if value:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            when = None
        if when is not None:
            when = when if when.tzinfo else when.replace(tzinfo=timezone.utc)
            return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())
    return max(0, default_ms) / 1000.0


# -- response -----------------------------------------------------------------------------------------------

def response_headers(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """DurableHttpResponse.headers: name -> value, a repeated header's values joined with ', ', and no content
    headers (Content-Type, Content-Length, ...), as .NET's HttpResponseMessage.Headers has them."""
    out: dict[str, str] = {}
    names: dict[str, str] = {}
    for name, value in pairs:
        low = name.lower()
        if low in CONTENT_HEADERS:
            continue
        if low in names:
            out[names[low]] += ", " + value
        else:
            names[low] = name
            out[name] = value
    return out


def decode_content(body: bytes, charset: str | None) -> str:
    """The body as text: the charset of its Content-Type, else UTF-8 (a BOM dropped), like ReadAsStringAsync."""
    codec = (charset or "utf-8").strip().strip('"')
    if codec.lower().replace("_", "-") in ("utf-8", "utf8"):
        codec = "utf-8-sig"
    try:
        return body.decode(codec, errors="replace")
    except LookupError:
        return body.decode("utf-8-sig", errors="replace")


def durable_http_response(answer: HttpAnswer) -> str:
    """The activity result: the JSON text of {statusCode, headers, content}."""
    return json.dumps({"statusCode": answer.status, "headers": response_headers(answer.headers),
                       "content": decode_content(answer.body, answer.charset)})


def _os_reason(e: OSError) -> str:
    """'Connection refused' rather than asyncio's 'Connect call failed (...)'; SSL errors as they say."""
    if isinstance(e, ssl.SSLError):
        return str(e)
    if isinstance(e.errno, int) and e.errno > 0:
        return os.strerror(e.errno)
    return e.strerror or str(e) or type(e).__name__


# -- sending ------------------------------------------------------------------------------------------------

class HttpCalls:
    """Runs BuiltIn::HttpActivity for the host: one shared ClientSession (opened on first use, `close()` on
    shutdown), no cookies kept between calls."""

    def __init__(self, async_sleep_ms: int = DEFAULT_ASYNC_SLEEP_MS, timeout: float = REQUEST_TIMEOUT):
        self.async_sleep_ms = async_sleep_ms
        self.timeout = timeout
        self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout),
                                                  cookie_jar=aiohttp.DummyCookieJar())
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def run(self, input_text: str | None, *, instance_id: str = "") -> str:
        """The DurableHttpResponse JSON for one call_http; raises UserCodeError when no answer came."""
        call = parse_request(input_text)
        if call.token_resource is not None:
            log.warning("call_http of instance %s: the managed identity token for '%s' cannot be fetched locally; "
                        "sending %s %s without an Authorization header", instance_id, call.token_resource,
                        call.method, call.url)
        answer = await self.send(call)
        polls = 0
        while (following := poll_request(call, answer)) is not None:
            await asyncio.sleep(poll_delay(answer, self.async_sleep_ms))
            call = following
            polls += 1
            answer = await self.send(call)
        if polls:
            log.info("call_http of instance %s: %s answered %d after %d poll(s)", instance_id, call.url,
                     answer.status, polls)
        return durable_http_response(answer)

    async def send(self, call: HttpCall) -> HttpAnswer:
        headers, body = wire_request(call)
        t0 = time.monotonic()
        try:
            async with self._client().request(call.method, call.url, headers=headers, data=body) as resp:
                data = await resp.read()
                answer = HttpAnswer(resp.status, tuple(resp.headers.items()), data, resp.charset)
        except asyncio.TimeoutError:
            raise UserCodeError("TaskCanceledException", f"The request was canceled due to the configured "
                                                         f"HttpClient.Timeout of {self.timeout:g} seconds elapsing, "
                                                         f"for {call.method} {call.url}.") from None
        except aiohttp.ClientConnectorError as e:
            raise UserCodeError("HttpRequestException", f"{_os_reason(e.os_error)} ({e.host}:{e.port}) for "
                                                        f"{call.method} {call.url}") from None
        except aiohttp.InvalidURL as e:
            raise UserCodeError("InvalidOperationException", f"An invalid request URI was provided: {e}") from None
        except (aiohttp.ClientError, OSError) as e:
            raise UserCodeError("HttpRequestException",
                                f"{type(e).__name__}: {e}, for {call.method} {call.url}") from None
        log.info("Executed 'BuiltIn::HttpActivity' (%s %s -> %d, %d ms)", call.method, call.url, answer.status,
                 (time.monotonic() - t0) * 1000)
        return answer
