"""The Durable Functions HTTP API: `/runtime/webhooks/durabletask/...` (public) and `/durabletask/...` (the
RPC base the Python SDK's client calls). One handler serves both, as in the Durable extension."""
from __future__ import annotations

import json
import logging
from urllib.parse import quote

from aiohttp import web

from ..durable.client import ClientError, DurableClient
from ..management import parse_date, parse_statuses, status_payload
from ..storage.errors import StorageUnavailableError
from ..storage.schema import ACTIVE_STATUSES, OrchestrationStatus, TERMINAL_STATUSES

PUBLIC_BASE = "/runtime/webhooks/durabletask"
log = logging.getLogger("durafunc.http")
STORAGE_RETRY_AFTER = 5          # seconds a client is asked to wait while storage is unavailable
RPC_BASE = "/durabletask"
CONNECTION = "Storage"
SYSTEM_KEY_USER = "durabletask_extension"          # the user name before the system key in rpcBaseUrl


def error_response(status: int, message: str, exc_type: str = "System.ArgumentException") -> web.Response:
    headline = {400: "One or more of the arguments submitted is incorrect",
                500: "Something went wrong while processing your request"}
    body = {"Message": headline.get(status, message),
            "ExceptionMessage": message, "ExceptionType": exc_type, "StackTrace": None}
    return web.json_response(body, status=status)


def _truthy(v: str | None, default: bool = False) -> bool:
    return default if v is None else v.strip().lower() in ("true", "1", "yes")


class DurableApi:
    def __init__(self, client: DurableClient, hub_name: str, orchestrator_names, origin: str):
        self.client = client
        self.hub_name = hub_name
        self.orchestrator_names = orchestrator_names   # callable -> list of names
        self.origin = origin.rstrip("/")               # e.g. http://127.0.0.1:7071
        self._binding: str | None = None
        self.system_key: str | None = None             # --enable-auth: `durabletask_extension` (http/keys.py)

    def set_system_key(self, key: str | None) -> None:
        """Under --enable-auth the management URLs carry `code=<system key>` and the binding's RPC base carries
        it as user info (the SDK's client adds no key of its own; aiohttp sends it as Basic authentication)."""
        self.system_key = key
        self._binding = None

    def _code(self) -> str:
        return f"code={quote(self.system_key, safe='')}" if self.system_key else ""

    # -- the durable client binding -------------------------------------------------------------
    def query_suffix(self) -> str:
        code = f"&{self._code()}" if self.system_key else ""
        return f"taskHub={quote(self.hub_name)}&connection={CONNECTION}{code}"

    def management_urls(self, instance_id: str, origin: str | None = None) -> dict:
        base = f"{(origin or self.origin).rstrip('/')}{PUBLIC_BASE}"
        i = f"{base}/instances/{quote(instance_id, safe='')}"
        s = self.query_suffix()
        return {
            "id": instance_id,
            "statusQueryGetUri": f"{i}?{s}",
            "sendEventPostUri": f"{i}/raiseEvent/{{eventName}}?{s}",
            "terminatePostUri": f"{i}/terminate?reason={{text}}&{s}",
            "rewindPostUri": f"{i}/rewind?reason={{text}}&{s}",
            "purgeHistoryDeleteUri": f"{i}?{s}",
            "restartPostUri": f"{i}/restart?{s}",
            "suspendPostUri": f"{i}/suspend?reason={{text}}&{s}",
            "resumePostUri": f"{i}/resume?reason={{text}}&{s}",
        }

    def client_binding(self) -> str:
        """The JSON string given to `durableClient` / `orchestrationClient` bindings (the same for every call)."""
        if self._binding is None:
            self._binding = self._client_binding()
        return self._binding

    def _client_binding(self) -> str:
        base = f"{self.origin}{PUBLIC_BASE}"
        m = self.management_urls("INSTANCEID")
        return json.dumps({
            "taskHubName": self.hub_name,
            "connectionName": None,
            "creationUrls": {
                "createNewInstancePostUri": f"{base}/orchestrators/{{functionName}}[/{{instanceId}}]",
                "createAndWaitOnNewInstancePostUri": f"{base}/orchestrators/{{functionName}}[/{{instanceId}}]"
                                                     "?timeout={timeoutInSeconds}&pollingInterval={intervalInSeconds}",
            },
            "managementUrls": m,
            "baseUrl": base,
            "requiredQueryStringParameters": self._code(),
            "rpcBaseUrl": f"{self._rpc_origin()}{RPC_BASE}/",
            "httpBaseUrl": None,
        })

    def _rpc_origin(self) -> str:
        if not self.system_key:
            return self.origin
        scheme, _, rest = self.origin.partition("://")
        return f"{scheme}://{SYSTEM_KEY_USER}:{quote(self.system_key, safe='')}@{rest}"

    def check_status(self, instance_id: str, origin: str | None = None) -> dict:
        m = self.management_urls(instance_id, origin)
        return {k: m[k] for k in ("id", "statusQueryGetUri", "sendEventPostUri", "terminatePostUri",
                                  "purgeHistoryDeleteUri", "restartPostUri", "suspendPostUri", "resumePostUri")}

    # -- routing ---------------------------------------------------------------------------------
    def routes(self) -> list[web.RouteDef]:
        return [web.route("*", PUBLIC_BASE + "/{tail:.*}", self.handle),
                web.route("*", RPC_BASE + "/{tail:.*}", self.handle)]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.match_info["tail"].split("/") if p]
        engine = getattr(self.client, "engine", None)
        if engine is not None and engine.hub_gone:
            return self.unavailable()
        try:
            if parts and parts[0] == "orchestrators" and len(parts) in (2, 3):
                if request.method != "POST":
                    return error_response(404, "Not found", "NotFound")
                return await self.start(request, parts[1], parts[2] if len(parts) == 3 else None)
            if parts and parts[0] == "instances":
                return await self.instances(request, parts[1:])
            if parts and parts[0] == "entities" and len(parts) <= 3:
                return await self.entities(request, parts[1:])
            return error_response(404, f"No route matches '{request.path}'.", "NotFound")
        except ClientError as e:
            return error_response(e.status, str(e), getattr(e, "exc_type", "System.ArgumentException"))
        except ValueError as e:
            return error_response(400, str(e))
        except StorageUnavailableError as e:
            return self.unavailable(e)
        except Exception as e:  # noqa: BLE001 - a JSON answer, never aiohttp's plain-text 500
            log.exception("%s %s failed", request.method, request.path)
            return error_response(500, f"{type(e).__name__}: {e}", "System.Exception")

    def unavailable(self, error: Exception | None = None) -> web.Response:
        """503 while the task hub's storage cannot be reached (or the hub was deleted under the host)."""
        import time
        self.down_until = time.monotonic() + STORAGE_RETRY_AFTER
        engine = getattr(self.client, "engine", None)
        if engine is not None and engine.hub_gone:
            message = (f"The task hub '{self.hub_name}' was deleted while this host ran; restart the host to "
                       "create it again.")
        else:
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            message = f"The storage account of task hub '{self.hub_name}' is unavailable ({first[:200]})."
        resp = error_response(503, message, "Microsoft.WindowsAzure.Storage.StorageException")
        resp.headers["Retry-After"] = str(STORAGE_RETRY_AFTER)
        return resp

    def storage_down(self) -> bool:
        """Has this API answered 503 in the last few seconds (so a user function's failure is storage's)?"""
        import time
        return time.monotonic() < getattr(self, "down_until", 0.0)

    async def _body(self, request: web.Request):
        """(has_body, value): the request body parsed as JSON."""
        raw = await request.read()
        if not raw.strip():
            return False, None
        try:
            return True, json.loads(raw)
        except ValueError:
            raise ClientError("Invalid JSON content") from None

    def _origin(self, request: web.Request) -> str:
        return f"{request.scheme}://{request.host}"

    async def start(self, request: web.Request, name: str, instance_id: str | None) -> web.StreamResponse:
        if not any(n.lower() == name.lower() for n in self.orchestrator_names()):
            known = ", ".join(f"'{n}'" for n in self.orchestrator_names()) or "none"
            raise ClientError(f"The function '{name}' doesn't exist, is disabled, or is not an orchestrator "
                              f"function. Additional info: The following are the known orchestrator functions: "
                              f"{known}.")
        has_body, value = await self._body(request)
        iid = await self.client.start_new(name, instance_id, value, has_input=has_body)
        timeout = request.query.get("timeout")
        if timeout is not None:
            return await self._wait_or_check(request, iid, float(timeout),
                                             float(request.query.get("pollingInterval", "1")))
        return self._accepted(request, iid)

    def _accepted(self, request, iid: str) -> web.Response:
        body = self.check_status(iid, self._origin(request))
        return web.json_response(body, status=202, headers={"Location": body["statusQueryGetUri"],
                                                            "Retry-After": "10"})

    async def _wait_or_check(self, request, iid: str, timeout: float, interval: float) -> web.StreamResponse:
        row = await self.client.wait_for(iid, timeout, interval=min(interval, 0.1))
        if row is not None and row.runtime_status in TERMINAL_STATUSES:
            if row.runtime_status == OrchestrationStatus.Completed:
                return web.json_response(json.loads(row.output) if row.output else None, status=200)
            return web.json_response(status_payload(row), status=200)
        return self._accepted(request, iid)

    async def instances(self, request: web.Request, rest: list[str]) -> web.StreamResponse:
        if not rest:
            if request.method == "GET":
                return await self.list_instances(request)
            if request.method == "DELETE":
                return await self.purge_by(request)
            return error_response(404, "Not found", "NotFound")
        iid = rest[0]
        if len(rest) == 1:
            if request.method == "GET":
                return await self.status(request, iid)
            if request.method == "DELETE":
                result = await self.client.purge(iid)
                if not result.instances_deleted:
                    return error_response(404, f"No instance with ID '{iid}' found.", "NotFound")
                return web.json_response({"instancesDeleted": result.instances_deleted})
            return error_response(404, "Not found", "NotFound")
        if request.method != "POST":
            return error_response(404, "Not found", "NotFound")
        op = rest[1].lower()
        reason = request.query.get("reason")
        if op == "raiseevent" and len(rest) == 3:
            ctype = request.content_type or ""
            if ctype != "application/json":
                raise ClientError("Only application/json request content is supported")
            _, value = await self._body(request)
            await self.client.raise_event(iid, rest[2], value)
            return web.Response(status=202)
        if op == "terminate":
            await self.client.terminate(iid, reason)
            return web.Response(status=202)
        if op == "suspend":
            await self.client.suspend(iid, reason)
            return web.Response(status=202)
        if op == "resume":
            await self.client.resume(iid, reason)
            return web.Response(status=202)
        if op == "rewind":
            await self.client.rewind(iid, reason)
            return web.Response(status=202)
        if op == "restart":
            return await self.restart(request, iid)
        return error_response(404, f"Unknown operation '{rest[1]}'.", "NotFound")

    async def status(self, request: web.Request, iid: str) -> web.StreamResponse:
        row = await self.client.get(iid)
        if row is None:
            return web.Response(status=404)
        q = request.query
        history = None
        if _truthy(q.get("showHistory")):
            history = await self.client.history(iid)
        body = status_payload(row, show_input=_truthy(q.get("showInput"), True), history=history,
                              show_history_output=_truthy(q.get("showHistoryOutput")))
        s = row.runtime_status
        if s in ACTIVE_STATUSES or s == OrchestrationStatus.ContinuedAsNew:
            return web.json_response(body, status=202, headers={"Location": str(request.url), "Retry-After": "5"})
        if s == OrchestrationStatus.Failed and _truthy(q.get("returnInternalServerErrorOnFailure")):
            return web.json_response(body, status=500)
        return web.json_response(body, status=200)

    async def list_instances(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        statuses = parse_statuses(q.getall("runtimeStatus", []))
        top = int(q["top"]) if q.get("top") else None
        token = request.headers.get("x-ms-continuation-token") or None
        rows, next_token = await self.client.hub.instances.query(
            created_from=parse_date(q.get("createdTimeFrom"), "createdTimeFrom"),
            created_to=parse_date(q.get("createdTimeTo"), "createdTimeTo"),
            statuses=statuses, prefix=q.get("instanceIdPrefix") or None, top=top, continuation=token)
        show_input = _truthy(q.get("showInput"))
        body = [status_payload(r, show_input=show_input) for r in rows]
        headers = {"x-ms-continuation-token": next_token} if next_token else {}
        return web.json_response(body, headers=headers)

    async def purge_by(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        if not q.get("createdTimeFrom"):
            raise ClientError("Please provide value for 'createdTimeFrom' parameter.")
        result = await self.client.purge_by(
            created_from=parse_date(q.get("createdTimeFrom"), "createdTimeFrom"),
            created_to=parse_date(q.get("createdTimeTo"), "createdTimeTo"),
            statuses=parse_statuses(q.getall("runtimeStatus", [])))
        if not result.instances_deleted:
            return web.Response(status=404)
        return web.json_response({"instancesDeleted": result.instances_deleted})

    async def entities(self, request: web.Request, rest: list[str]) -> web.StreamResponse:
        from ..durable.entities import EntityState, parse_entity_id
        if len(rest) == 2:
            name, key = rest[0], "" if rest[1] == "$" else rest[1]
            if request.method in ("POST", "DELETE"):
                op = "delete" if request.method == "DELETE" else request.query.get("op", "")
                raw = await request.read()
                text = None
                if raw.strip() and (request.content_type or "") == "application/json":
                    try:
                        value = json.loads(raw)
                    except ValueError as e:
                        raise ClientError(f"Could not parse JSON content: {e}") from None
                    # the SDK's client sends the input's JSON text as a JSON string
                    text = value if isinstance(value, str) else json.dumps(value)
                elif raw.strip():
                    text = raw.decode()
                await self.client.signal_entity(name, key, op, text)
                return web.Response(status=202)
            if request.method == "GET":
                exists, state = await self.client.read_entity(name, key)
                if not exists:
                    return web.Response(status=404)
                return web.json_response(json.loads(state) if state else None)
            return error_response(404, "Not found", "NotFound")
        if request.method != "GET":
            return error_response(404, "Not found", "NotFound")
        prefix = f"@{rest[0].lower()}@" if rest else "@"
        rows, token = await self.client.hub.instances.query(
            prefix=prefix, top=int(request.query["top"]) if request.query.get("top") else None,
            continuation=request.headers.get("x-ms-continuation-token") or None)
        fetch = _truthy(request.query.get("fetchState"))
        body = []
        for r in rows:
            name, key = parse_entity_id(r.instance_id)
            item = {"entityId": {"name": name, "key": key},
                    "lastOperationTime": r.last_updated_time.strftime("%Y-%m-%dT%H:%M:%SZ")
                    if r.last_updated_time else None}
            if fetch:
                st = EntityState.from_row_input(r.input)
                item["state"] = json.loads(st.state) if st.state else None
            body.append(item)
        return web.json_response(body, headers={"x-ms-continuation-token": token} if token else {})

    async def restart(self, request: web.Request, iid: str) -> web.StreamResponse:
        from ..management import restart_instance
        new = await restart_instance(self.client, iid,
                                     new_instance_id=_truthy(request.query.get("restartWithNewInstanceId"), True))
        return self._accepted(request, new)
