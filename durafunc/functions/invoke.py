"""Invoke user functions as the Azure Python worker does: bindings in, outputs back, sync in a thread pool."""
from __future__ import annotations

import asyncio
import contextvars
import inspect
import json
import logging
import re
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import azure.functions as func
from azure.functions import meta
from azure.functions.durable_functions import ActivityTriggerConverter

from ..durable.extended import OrchestratorCall
from ..durable.sdk_session import SessionMismatch, run_call, supports
from ..durable.worker import UserCodeError
from . import blobs, queues
from .expressions import json_properties, system_data
from .emulated import dropped_outputs
from .logcontext import _OrchestrationRun, invocation, orchestration, shadow_replay
from .model import FunctionInfo, LoadedApp

CLIENT_TYPES = ("durableclient", "orchestrationclient")
log = logging.getLogger("durafunc.function")


class FunctionNotFound(Exception):
    pass


class FunctionError(UserCodeError):
    """User code raised: `type_name: message`, with the user's traceback (what the engine expects)."""


@dataclass
class HttpResult:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


class _Context(func.Context):
    """`func.Context` for a parameter named `context` that is not a binding."""

    def __init__(self, fn: FunctionInfo, invocation_id: str):
        self._fn, self._id = fn, invocation_id
        self._tls = __import__("threading").local()

    @property
    def invocation_id(self) -> str:
        return self._id

    @property
    def function_name(self) -> str:
        return self._fn.name

    @property
    def function_directory(self) -> str:
        return str(self._fn.directory or self._fn.script_file.parent)

    @property
    def trace_context(self):
        return None

    @property
    def retry_context(self):
        return None

    @property
    def thread_local_storage(self):
        return self._tls


class _Out(func.Out):
    def __init__(self):
        self._value = None

    def set(self, val) -> None:
        self._value = val

    def get(self):
        return self._value


# durafunc's own frames, the Azure SDKs', and the thread pool / event loop that run user code
_HOST_FRAME = re.compile("|".join([re.escape(str(Path(__file__).resolve().parent.parent)) + r"[/\\]",
                                   r"[/\\]site-packages[/\\]azure[/\\]",
                                   r"[/\\]concurrent[/\\]futures[/\\]", r"[/\\]asyncio[/\\]"]))


def _user_traceback(e: BaseException) -> str:
    """The user's part of a traceback: the innermost cause (the SDK re-raises orchestrator errors), without the
    frames of durafunc and the Azure SDKs."""
    root = e
    while root.__cause__ is not None:
        root = root.__cause__
    frames = [f for f in traceback.extract_tb(root.__traceback__) if not _HOST_FRAME.search(f.filename)]
    text = "".join(traceback.format_list(frames)) if frames else ""
    return "Traceback (most recent call last):\n" + text + "".join(traceback.format_exception_only(type(root), root))


STORAGE_OUTPUTS = ("queue", "blob", "table")


def http_binding_data(req: func.HttpRequest) -> dict[str, Any]:
    """An HTTP trigger's binding data: the properties of a JSON body, the query parameters, the route
    parameters (in rising precedence), and `Query` and `Headers` as objects."""
    data: dict[str, Any] = json_properties(req.get_body())
    data.update(dict(req.params))
    data.update(dict(req.route_params))
    data["Query"] = dict(req.params)
    data["Headers"] = dict(req.headers)
    return data


def activity_binding_data(input_text: str | None, instance_id: str, param: str) -> dict[str, Any]:
    """An activity trigger's binding data, as the Durable extension gives it: `instanceId`, `data` (the input
    as JSON) and the parameter name."""
    try:
        value = json.loads(input_text) if input_text else None
    except ValueError:
        value = input_text
    return {"instanceId": instance_id, "data": value, param: value}


class Invoker:
    """Runs the functions of one loaded app. `io` (a bindings.BindingIO) reads blob and table inputs before a
    function runs and writes queue, blob and table outputs after it returns; without it inputs are None and
    outputs are dropped."""

    def __init__(self, app: LoadedApp, *, max_workers: int = 10, io=None):
        self.app = app
        self.io = io
        self.pool = ThreadPoolExecutor(max_workers=max(1, max_workers), thread_name_prefix="durafunc-fn")

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=False)

    def _get(self, name: str) -> FunctionInfo:
        fn = self.app.functions.get(name)
        if fn is None:
            fn = next((f for n, f in self.app.functions.items() if n.lower() == name.lower()), None)
        if fn is None:
            raise FunctionNotFound(f"The function '{name}' doesn't exist, is disabled, or is not loaded.")
        return fn

    async def _call(self, fn: FunctionInfo, kwargs: dict, *, inline: bool = False,
                    invocation_id: str | None = None, target: Callable[[], Any] | None = None) -> Any:
        """Call the entry with kwargs (plus context/Out params); sync in the pool unless inline.
        `invocation_id`: the id the host logs for this invocation (a new one when not given). `target`: call this
        instead of the entry, inline (an orchestrator's episode through its extended session)."""
        invocation_id = invocation_id or str(uuid.uuid4())
        params = fn.parameters
        outs = {}
        for b in fn.bindings:
            if b.direction == "out" and b.name != "$return" and b.name in params and b.name not in kwargs:
                outs[b.name] = kwargs[b.name] = _Out()
        if "context" in params and "context" not in kwargs and not any(b.name == "context" for b in fn.bindings):
            kwargs["context"] = _Context(fn, invocation_id)
        token = invocation.set((fn.name, invocation_id))
        replay_token = orchestration.set(_OrchestrationRun()) if fn.kind == "orchestrator" else None
        try:
            if target is not None:
                result = target()
            elif fn.is_async:
                result = await fn.entry(**kwargs)
            elif inline:
                result = fn.entry(**kwargs)
            else:
                ctx = contextvars.copy_context()
                result = await asyncio.get_running_loop().run_in_executor(
                    self.pool, lambda: ctx.run(fn.entry, **kwargs))
            if inspect.isawaitable(result):
                result = await result
        except SessionMismatch:
            raise                   # durafunc's bug, not the user's: the episode fails and is retried
        except Exception as e:  # noqa: BLE001 - user code
            raise FunctionError(type(e).__name__, str(e), _user_traceback(e)) from e
        finally:
            invocation.reset(token)
            if replay_token is not None:
                orchestration.reset(replay_token)
        for b in dropped_outputs(fn, result, outs):
            log.warning("Function '%s' (Id=%s): binding '%s' (%s) is not emulated locally; the value it was "
                        "given is dropped", fn.name, invocation_id, b.name, b.type)
        return result, outs

    async def _write_outputs(self, fn: FunctionInfo, result: Any, outs: dict, data: dict) -> None:
        """Queue, blob and table output bindings, after the function returned: an `Out` parameter's value, or
        the return value for `$return`. A value that cannot be written fails the invocation (as in the host)."""
        if self.io is None:
            return
        for b in fn.bindings:
            kind = b.type.lower()
            if b.direction != "out" or kind not in STORAGE_OUTPUTS:
                continue
            if b.name == "$return":
                value = result
            elif b.name in outs:
                value = outs[b.name].get()
            else:
                continue
            try:
                await self.io.write(fn, b, value, data)
            except TypeError as e:           # the worker's converters refused the value
                raise FunctionError(type(e).__name__, f"{e} ({kind} output binding '{b.name}')") from e
            except Exception as e:  # noqa: BLE001 - the host failed to write it
                raise FunctionError(getattr(e, "type_name", type(e).__name__),
                                    getattr(e, "message", str(e))) from e

    async def _inputs(self, fn: FunctionInfo, trigger_value: Any, client_json: str | None,
                      data: dict | None = None) -> dict:
        kwargs = {}
        params = fn.parameters
        wanted = set()
        for b in fn.bindings:
            if b.direction != "in" or (b.name not in params and params):
                continue
            t = b.type.lower()
            if b.is_trigger:
                kwargs[b.name] = trigger_value
            elif t in CLIENT_TYPES:
                kwargs[b.name] = client_json
            else:
                kwargs[b.name] = None   # input bindings that are not emulated
                if t in ("blob", "table"):
                    wanted.add(b.name)
        if wanted and self.io is not None:
            try:
                kwargs.update(await self.io.read_inputs(fn, data or {}, wanted))
            except Exception as e:  # noqa: BLE001 - the host failed to bind an input: the function does not run
                raise FunctionError(getattr(e, "type_name", type(e).__name__), getattr(e, "message", str(e))) \
                    from e
        return kwargs

    @staticmethod
    def _data(fn: FunctionInfo, trigger_data: dict | None) -> dict:
        """The binding data of one invocation: the trigger's, and `sys`."""
        return {**(trigger_data or {}), **system_data(fn.name)}

    async def _run(self, fn: FunctionInfo, value: Any, client_json: str | None, trigger_data: dict | None, *,
                   returns_to_trigger: bool = False, invocation_id: str | None = None):
        """Inputs, the call, outputs. `returns_to_trigger`: the return value is the trigger's (an activity's
        result), not a `$return` binding's."""
        data = self._data(fn, trigger_data)
        result, outs = await self._call(fn, await self._inputs(fn, value, client_json, data),
                                        invocation_id=invocation_id)
        await self._write_outputs(fn, None if returns_to_trigger else result, outs, data)
        return result, outs

    async def run_orchestrator(self, name: str, call: OrchestratorCall, *, invocation_id: str | None = None) -> str:
        """One episode (durable.extended.OrchestratorCall): through the orchestration's extended session when it has
        one or the entry is the SDK's handle, else the entry called as the worker calls it, with the whole
        history."""
        fn = self._get(name)
        if (call.session is not None and call.session.sdk is not None) or (call.want_session and supports(fn.entry)):
            result, _ = await self._call(fn, {}, inline=True, invocation_id=invocation_id,
                                         target=lambda: run_call(fn.entry, call, full=None, shadow=shadow_replay))
        else:
            result, _ = await self._call(
                fn, await self._inputs(fn, func.OrchestrationContext(call.context_json()), None), inline=True,
                invocation_id=invocation_id)
        return result if isinstance(result, str) else json.dumps(result)

    async def run_entity(self, name: str, context_json: str, *, invocation_id: str | None = None) -> str:
        fn = self._get(name)
        result, _ = await self._call(fn, await self._inputs(fn, func.EntityContext(context_json), None),
                                     inline=True, invocation_id=invocation_id)
        return result if isinstance(result, str) else json.dumps(result)

    async def run_activity(self, name: str, input_text: str | None, *, instance_id: str,
                           invocation_id: str | None = None) -> str | None:
        fn = self._get(name)
        datum = meta.Datum(value=input_text if input_text is not None else "null", type="string")
        value = ActivityTriggerConverter.decode(datum, trigger_metadata={"instanceId": instance_id})
        result, outs = await self._run(fn, value, None,
                                       activity_binding_data(input_text, instance_id, fn.trigger.name),
                                       returns_to_trigger=True, invocation_id=invocation_id)
        try:
            encoded = ActivityTriggerConverter.encode(result, expected_type=None)
        except Exception as e:  # noqa: BLE001 - not JSON-serializable
            raise FunctionError(type(e).__name__, str(e)) from e
        text = encoded.value if encoded is not None else None
        return None if text in (None, "null") else text

    async def run_http(self, name: str, request: func.HttpRequest, client_json: str | None, *,
                       invocation_id: str | None = None) -> HttpResult:
        fn = self._get(name)
        result, outs = await self._run(fn, request, client_json, http_binding_data(request),
                                       invocation_id=invocation_id)
        for b in fn.bindings:
            if b.direction == "out" and b.type.lower() == "http" and b.name in outs:
                result = outs[b.name].get()
        return to_http_result(result)

    async def run_triggered(self, name: str, event, client_json: str | None = None, *,
                            invocation_id: str | None = None) -> None:
        """A function fired by a listener (timer, queue, blob): `event` is a triggers.TriggerEvent, the data
        and metadata the host sends; the parameter value is converted as the worker converts it."""
        fn = self._get(name)
        pytype = fn.binding_type(fn.trigger.name)
        decode = event.decode or (lambda data, metadata, t: data.value)
        try:
            value = decode(event.data, event.metadata, pytype)
        except Exception as e:  # noqa: BLE001 - the SDK's converter refused the data
            raise FunctionError(type(e).__name__, str(e)) from e
        await self._run(fn, value, client_json, event.binding_data, invocation_id=invocation_id)

    async def run_function(self, name: str, input_text: str | None, client_json: str | None = None, *,
                           invocation_id: str | None = None) -> None:
        """Run a non-HTTP function by hand (POST /admin/functions/{name}): a queue trigger gets the input as the
        message body, a blob trigger the blob the input names (`container/name`), as the Functions host does."""
        fn = self._get(name)
        if fn.kind == "activity":
            await self.run_activity(name, json.dumps(input_text) if input_text is not None else None,
                                    instance_id="", invocation_id=invocation_id)
            return
        trigger = fn.trigger.type.lower()
        value: Any = input_text
        data: dict[str, Any] = {}
        if trigger == "timertrigger":
            value = _TimerRequest()
        elif trigger == "queuetrigger":
            datum = meta.Datum(input_text or "", "string")
            value = queues.trigger_value(datum, {}, fn.binding_type(fn.trigger.name))
            data = {**json_properties(input_text or ""), "QueueTrigger": input_text or ""}
        elif trigger == "blobtrigger":
            value, data = await self._blob_by_hand(fn, input_text or "")
        await self._run(fn, value, client_json, data, invocation_id=invocation_id)

    async def _blob_by_hand(self, fn: FunctionInfo, path: str) -> tuple[Any, dict]:
        from .expressions import blob_pattern, expand_settings
        container, name = blobs.split_path(path.strip("/"))
        if self.io is None:
            return None, {}
        conn = self.io.clients.resolve(fn.trigger.raw.get("connection"))
        service = self.io.clients.account(conn).blobs
        found = await blobs.read(service, container, name)
        if found is None:
            raise FunctionError("InvalidOperationException", f"Blob '{container}/{name}' does not exist.")
        content, props = found
        pattern = blob_pattern(expand_settings(str(fn.trigger.raw.get("path", "")), self.io.env))
        path_data = pattern.match(container, name) or {}
        uri = service.get_blob_client(container, name).url
        properties = blobs.properties_json(props)
        metadata = dict(props.metadata or {})
        md = blobs.trigger_metadata(container, name, uri, properties, metadata, path_data)
        value = blobs.trigger_value(blobs.content_datum(content, fn.trigger), md, fn.binding_type(fn.trigger.name))
        return value, blobs.binding_data(container, name, uri, properties, metadata, path_data)


class _TimerRequest(func.TimerRequest):
    @property
    def past_due(self) -> bool:
        return False


def to_http_result(result: Any) -> HttpResult:
    if result is None:
        return HttpResult(204)
    if isinstance(result, func.HttpResponse):
        headers = [(k, v) for k, v in result.headers.items()]
        if not any(k.lower() == "content-type" for k, _ in headers):
            mt = result.mimetype or "text/plain"
            headers.append(("Content-Type", f"{mt}; charset={result.charset}" if mt.startswith("text/") else mt))
        return HttpResult(result.status_code, headers, result.get_body() or b"")
    if isinstance(result, (bytes, bytearray)):
        return HttpResult(200, [("Content-Type", "application/octet-stream")], bytes(result))
    if isinstance(result, str):
        return HttpResult(200, [("Content-Type", "text/plain; charset=utf-8")], result.encode())
    return HttpResult(200, [("Content-Type", "application/json")], json.dumps(result).encode())


