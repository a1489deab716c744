"""The host's aiohttp application: user HTTP functions under the route prefix, the Durable HTTP API,
the admin endpoints (`/admin/host/status`, `POST /admin/functions/{name}`) and the dashboard (`/_durafunc/`).

Under `--enable-auth` (http/keys.py): user functions need a function key or the master key by their auth
level, the Durable HTTP API and the RPC base the `durabletask_extension` system key or the master key,
`/admin/*` the master key (except `/admin/host/ping`), the dashboard the master key (its own login)."""
from __future__ import annotations

import json
import logging
import time

import azure.functions as func
from aiohttp import web

from .dashboard import PREFIX as DASHBOARD_PREFIX, Dashboard, HubSource
from .durable_api import PUBLIC_BASE, RPC_BASE, DurableApi
from .keys import Keys  # noqa: F401 - the host builds its Keys from here

log = logging.getLogger("durafunc.http")


def json_error(status: int, message: str, **extra) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def _under(path: str, base: str) -> bool:
    return path == base or path.startswith(base + "/")


# Kestrel's limits (what Azure Functions answers): request headers of 32 KB in total (431), a request line of
# 8 KB (414). aiohttp's own parser limits are set far above them, so a too-large request reaches the host and
# gets a JSON answer; beyond those (a 1 MB header line) aiohttp answers 400 itself (see quiet_parse_errors).
MAX_HEADERS_TOTAL = 32 * 1024
MAX_REQUEST_LINE = 8 * 1024
PARSER_LIMITS = {"max_line_size": 1024 * 1024, "max_field_size": 1024 * 1024}
NOT_RUNNING = "Function host is not running."


def quiet_parse_errors(logger: logging.Logger) -> None:
    """aiohttp logs a request it cannot parse (a header line over its limit, bytes that are not HTTP) with a
    traceback: one warning line instead."""
    def one_line(record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None or not type(exc).__module__.startswith("aiohttp"):
            return True
        from aiohttp.http_exceptions import HttpProcessingError
        if not isinstance(exc, HttpProcessingError):
            return True
        record.msg, record.args = "Bad HTTP request refused (%s): %s", (getattr(exc, "code", 400),
                                                                         getattr(exc, "message", str(exc)))
        record.exc_info, record.exc_text = None, None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True
    logger.addFilter(one_line)


class HostApp:
    """Wires the loaded functions into aiohttp routes. `host` supplies `app` (the LoadedApp),
    `invoker`, `route_table()`, and the settings; it may swap them on hot reload."""

    def __init__(self, host, api: DurableApi, *, cors: list[str] | None = None, cors_credentials: bool = False,
                 keys: Keys | None = None):
        self.host = host
        self.api = api
        self.cors = cors or []
        self.cors_credentials = cors_credentials
        self.keys = keys
        self.started = time.monotonic()
        if keys is not None:
            api.set_system_key(keys.system)

    def dashboard(self) -> Dashboard:
        from ..management import describe_storage
        host = self.host
        s = host.settings
        source = HubSource(client=self.api.client, hub_name=s.hub_name, partition_count=s.partition_count,
                           storage=describe_storage(host.hub.account.connection_string if host.hub else ""),
                           worker_id=host.worker_id, orchestrator_names=lambda: host.app.orchestrator_names)
        return Dashboard(source, self.keys)

    def build(self) -> web.Application:
        app = web.Application(middlewares=[self.limits_middleware, self.ready_middleware, self.cors_middleware,
                                           self.auth_middleware],
                              client_max_size=100 * 1024 * 1024, handler_args=PARSER_LIMITS)
        app.add_routes(self.api.routes())
        app.add_routes(self.dashboard().routes())
        app.add_routes([
            web.route("GET", "/admin/host/ping", self.ping),
            web.route("POST", "/admin/host/ping", self.ping),
            web.get("/admin/host/keys", self.host_keys),
            web.get("/admin/host/systemkeys", self.system_keys),
            web.get("/admin/host/status", self.host_status),
            web.post("/admin/functions/{name}", self.run_function),
            web.get("/admin/functions", self.list_functions),
            web.route("*", "/{tail:.*}", self.user_function),
        ])
        return app

    @web.middleware
    async def limits_middleware(self, request: web.Request, handler):
        """Kestrel's request limits, as JSON answers: 414 for a request line over 8 KB, 431 for headers over
        32 KB in total."""
        line = len(request.method) + len(request.raw_path) + 10
        if line > MAX_REQUEST_LINE:
            log.warning("Request refused: its request line is %d bytes (the limit is %d)", line, MAX_REQUEST_LINE)
            return json_error(414, f"Request URI Too Long: the request line is {line} bytes; the limit is "
                                   f"{MAX_REQUEST_LINE} bytes.")
        size = sum(len(k) + len(v) + 4 for k, v in request.raw_headers)
        if size > MAX_HEADERS_TOTAL:
            big = max(request.raw_headers, key=lambda kv: len(kv[1]))[0].decode("latin-1")
            log.warning("Request %s %s refused: its headers are %d bytes (the limit is %d; largest: %s)",
                        request.method, request.path, size, MAX_HEADERS_TOTAL, big)
            return json_error(431, f"Request Header Fields Too Large: the request headers are {size} bytes; the "
                                   f"limit is {MAX_HEADERS_TOTAL} bytes (largest header: {big}).")
        return await handler(request)

    @web.middleware
    async def ready_middleware(self, request: web.Request, handler):
        """Until the engine runs and the functions are loaded (host state Running), only /admin/host/status
        answers; other requests get 503, as the Functions host answers while it is not running."""
        if getattr(self.host, "state", "Running") != "Running" and \
                request.path not in ("/admin/host/status", "/admin/host/ping"):
            return web.json_response({"error": NOT_RUNNING, "state": self.host.state}, status=503,
                                     headers={"Retry-After": "1"})
        return await handler(request)

    @web.middleware
    async def cors_middleware(self, request: web.Request, handler):
        origin = request.headers.get("Origin")
        allowed = origin and self.cors and ("*" in self.cors or origin in self.cors)
        if allowed and request.method == "OPTIONS" and request.headers.get("Access-Control-Request-Method"):
            resp = web.Response(status=204)
        else:
            resp = await handler(request)
        if allowed:
            resp.headers["Access-Control-Allow-Origin"] = origin if (self.cors_credentials or "*" not in self.cors) \
                else "*"
            resp.headers["Access-Control-Allow-Methods"] = request.headers.get(
                "Access-Control-Request-Method", "GET, POST, PUT, PATCH, DELETE, OPTIONS")
            resp.headers["Access-Control-Allow-Headers"] = request.headers.get("Access-Control-Request-Headers", "*")
            if self.cors_credentials:
                resp.headers["Access-Control-Allow-Credentials"] = "true"
        return resp

    @web.middleware
    async def auth_middleware(self, request: web.Request, handler):
        """The system key (or master) for the Durable API and RPC base, the master key for /admin/*. User
        functions are checked by their auth level in `user_function`, the dashboard by its own login."""
        if self.keys is None:
            return await handler(request)
        path = request.path
        if _under(path, PUBLIC_BASE) or _under(path, RPC_BASE):
            if not self.keys.allows_system(request):
                return json_error(401, "The Durable Functions HTTP API requires the system key "
                                       "'durabletask_extension' or the master key: pass ?code=<key> or the "
                                       "x-functions-key header (keys are in .durafunc/keys.json).")
        elif _under(path, "/admin") and path.rstrip("/") != "/admin/host/ping":
            if not self.keys.allows_admin(request):
                return json_error(401, "Admin endpoints require the master key: pass ?code=<masterKey> or the "
                                       "x-functions-key header (keys are in .durafunc/keys.json).")
        return await handler(request)

    async def ping(self, request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def host_keys(self, request: web.Request) -> web.Response:
        """Azure's `GET /admin/host/keys`: the host's function keys (master key required)."""
        keys = self.keys.function_keys if self.keys is not None else {}
        return web.json_response({"keys": [{"name": n, "value": v} for n, v in keys.items()]})

    async def system_keys(self, request: web.Request) -> web.Response:
        """Azure's `GET /admin/host/systemkeys`: the system keys, `durabletask_extension` among them."""
        keys = self.keys.system_keys if self.keys is not None else {}
        return web.json_response({"keys": [{"name": n, "value": v} for n, v in keys.items()]})

    async def host_status(self, request: web.Request) -> web.Response:
        from .. import __version__
        app = self.host.app
        return web.json_response({
            "id": self.host.worker_id, "state": getattr(self.host, "state", "Running"),
            "version": f"durafunc {__version__}",
            "processUptime": int((time.monotonic() - self.started) * 1000),
            "functions": sorted(app.functions) if app is not None else [], "taskHub": self.host.settings.hub_name,
            "errors": [f"{e.file}: {e.reason}" for e in app.errors] if app is not None else [],
        })

    async def list_functions(self, request: web.Request) -> web.Response:
        return web.json_response([
            {"name": f.name, "kind": f.kind, "trigger": f.trigger.type, "route": f.route, "methods": f.methods}
            for f in self.host.app.functions.values()])

    async def run_function(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        fn = next((f for n, f in self.host.app.functions.items() if n.lower() == name.lower()), None)
        if fn is None:
            return json_error(404, f"No function named '{name}'.")
        if fn.kind == "http":
            return json_error(400, f"'{fn.name}' is an HTTP function: call its route instead.")
        raw = await request.read()
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return json_error(400, "The request body must be JSON like {\"input\": \"...\"}.")
        value = body.get("input") if isinstance(body, dict) else None
        from ..functions.logcontext import HOST_API_REASON, InvocationLog
        run = InvocationLog(fn.name, HOST_API_REASON).started()
        try:
            await self.host.invoker.run_function(fn.name, value if value is None or isinstance(value, str)
                                                 else json.dumps(value),
                                                 self.host.client_json(fn), invocation_id=run.id)
        except Exception as e:  # noqa: BLE001 - user code
            run.failed(e)
            return json_error(500, f"{getattr(e, 'type_name', None) or type(e).__name__}: "
                                   f"{getattr(e, 'message', None) or e}")
        run.succeeded()
        return web.Response(status=202)

    async def user_function(self, request: web.Request) -> web.StreamResponse:
        from ..functions.routes import MethodNotAllowed
        match = self.host.route_table().match(request.method, request.path)
        if match is None and request.path == "/" and request.method in ("GET", "HEAD"):
            raise web.HTTPFound(DASHBOARD_PREFIX + "/")     # no user function claims `/`: the dashboard
        if match is None:
            return json_error(404, f"No function matches {request.method} {request.path}.")
        if isinstance(match, MethodNotAllowed):
            return json_error(405, f"Method {request.method} is not allowed for {request.path}.",
                              allowed=list(getattr(match, "allowed", []) or []))
        fn, route_params = match
        if self.keys is not None and not self.keys.allows(request, fn.auth_level):
            return json_error(401, "A function key is required: pass ?code=<key> or the x-functions-key header "
                                   "(keys are in .durafunc/keys.json).")
        body = await request.read()
        req = func.HttpRequest(method=request.method, url=str(request.url),
                               headers={k: v for k, v in request.headers.items()},
                               params={k: v for k, v in request.query.items()},
                               route_params=route_params, body=body)
        client_json = self.host.client_json(fn)
        from ..functions.logcontext import HOST_API_REASON, InvocationLog
        run = InvocationLog(fn.name, HOST_API_REASON).started()
        try:
            result = await self.host.invoker.run_http(fn.name, req, client_json, invocation_id=run.id)
        except Exception as e:  # noqa: BLE001 - user code failed; the host keeps serving
            message = getattr(e, "message", None) or str(e)
            type_name = getattr(e, "type_name", None) or type(e).__name__
            if self.api.storage_down():     # its durable client got a 503: say so, and when to try again
                run.failed(None, details=False)
                resp = json_error(503, f"Function '{fn.name}' failed: the task hub's storage is unavailable "
                                       f"({type_name}: {message})")
                resp.headers["Retry-After"] = "5"
                return resp
            run.failed(e)
            return json_error(500, f"Function '{fn.name}' failed: {type_name}: {message}")
        run.succeeded()
        log.debug("%s %s -> %s (Functions.%s, Id=%s)", request.method, request.path, result.status, fn.name, run.id)
        resp = web.Response(status=result.status, body=result.body)
        for k, v in result.headers:
            if k.lower() == "content-length":
                continue
            if k.lower() == "content-type":
                resp.headers["Content-Type"] = v
            else:
                resp.headers.add(k, v)
        return resp
