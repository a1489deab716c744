"""The dashboard's pages and actions on aiohttp, under `/_durafunc/` (and `/` when no user function claims it).

Pages are rendered on the server from templates/ (Jinja2); static/ holds the one stylesheet and the one script
(local times, live refresh, counts). Everything is read through management.py and the DurableClient, as the
CLI's commands read it.
"""
from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Callable
from urllib.parse import quote, urlencode

import jinja2
from aiohttp import web
from azure.core.exceptions import ResourceNotFoundError

from ... import __version__, management as mg
from ...durable.client import ClientError, DurableClient
from ...storage.errors import StorageUnavailableError
from ...storage.schema import ACTIVE_STATUSES, OrchestrationStatus, TERMINAL_STATUSES, utcnow
from . import views
from .security import CSRF_FIELD, Guard

log = logging.getLogger("durafunc.dashboard")

PREFIX = "/_durafunc"
HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
FLASH_COOKIE = "durafunc_flash"
PAGE_SIZES = (25, 50, 100, 200)
DEFAULT_PAGE_SIZE = 50
COUNTS_TTL = 2.0           # seconds a count of the hub's instances is reused (at least)
MAX_TRAIL = 30             # previous-page tokens kept in the URL
ACTIONS = ("raise-event", "terminate", "suspend", "resume", "rewind", "restart", "purge")


@dataclass
class HubSource:
    """The task hub a dashboard shows: a client on it, and what is known about who runs it."""
    client: DurableClient
    hub_name: str
    partition_count: int
    storage: str                                          # the endpoint, for the header
    worker_id: str | None = None                          # this host, when served by `durafunc start`
    orchestrator_names: Callable[[], list[str]] | None = None

    @property
    def hub(self):
        return self.client.hub


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    env.filters["utc"] = views.utc_text
    env.filters["iso"] = views.iso
    env.filters["q"] = lambda s: quote(str(s), safe="")
    env.filters["thousands"] = lambda n: f"{n:,}"
    return env


class Dashboard:
    def __init__(self, source: HubSource, keys=None):
        self.source = source
        self.guard = Guard(keys, PREFIX)
        self.env = _env()
        self._counts: dict[str, tuple[float, dict, bool]] = {}

    # -- wiring -------------------------------------------------------------------------------------------
    def routes(self) -> list[web.AbstractRouteDef]:
        p = PREFIX
        return [
            web.get(p, self.to_index, allow_head=True),
            web.get(p + "/", self.instances_page, allow_head=True),
            web.get(p + "/partial/instances", self.instances_partial),
            web.get(p + "/api/counts", self.counts_api),
            web.get(p + "/instance", self.instance_page, allow_head=True),
            web.get(p + "/partial/instance", self.instance_partial),
            web.post(p + "/instance/{action}", self.action),
            web.get(p + "/entities", self.entities_page, allow_head=True),
            web.get(p + "/hub", self.hub_page, allow_head=True),
            web.static(p + "/static", STATIC, append_version=False),
            web.route("*", p + "/{tail:.*}", self.not_found),
        ]

    @staticmethod
    async def to_index(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(PREFIX + "/" + (f"?{request.query_string}" if request.query_string else ""))

    # -- rendering ------------------------------------------------------------------------------------------
    def _render(self, request: web.Request, template: str, code: int = 200, **ctx) -> web.Response:
        token, new_token = self.guard.csrf_token(request)
        flash = _read_flash(request)
        s = self.source
        ctx.setdefault("nav", template.split(".")[0])
        ctx.setdefault("public", False)
        html = self.env.get_template(template).render(
            prefix=PREFIX, version=__version__, csrf_field=CSRF_FIELD, csrf=token, flash=flash,
            hub_name=s.hub_name, partition_count=s.partition_count, storage=s.storage, worker_id=s.worker_id,
            auth=self.guard.enabled, statuses=[st.name for st in OrchestrationStatus], **ctx)
        resp = web.Response(text=html, content_type="text/html", status=code)
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers["Content-Security-Policy"] = ("default-src 'self'; img-src 'self' data:; "
                                                   "style-src 'self' 'unsafe-inline'; script-src 'self'; "
                                                   "frame-ancestors 'none'; form-action 'self'")
        if new_token:
            self.guard.set_csrf_cookie(resp, token)
        if flash is not None:
            resp.del_cookie(FLASH_COOKIE, path=PREFIX)
        return resp

    def _fragment(self, template: str, code: int = 200, **ctx) -> web.Response:
        html = self.env.get_template(template).render(prefix=PREFIX, **ctx)
        resp = web.Response(text=html, content_type="text/html", status=code)
        resp.headers["Cache-Control"] = "no-store"
        return resp

    async def _guarded(self, request: web.Request, page, *, html: bool = True) -> web.StreamResponse:
        """Authorization and the errors every page shares: storage down -> 503, bad input -> 400."""
        login = self.guard.login(request)
        if login is not None:
            return login
        if not self.guard.authorized(request):
            if not html:
                return web.json_response({"error": "The master key is required (?code=<master key> or the "
                                                   "x-functions-key header)."}, status=401)
            return self._render(request, "login.html", code=401, public=True,
                                bad_key=bool(request.query.get("code")), path=request.path)
        try:
            return await page()
        except StorageUnavailableError as e:
            if not html:
                return web.json_response({"error": str(e)}, status=503, headers={"Retry-After": "5"})
            resp = self._render(request, "error.html", code=503, title="Storage is not reachable",
                                message=f"{e}. The page will work again once storage answers.")
            resp.headers["Retry-After"] = "5"
            return resp
        except ValueError as e:
            if not html:
                return web.json_response({"error": str(e)}, status=400)
            return self._render(request, "error.html", code=400, title="Bad request", message=str(e))
        except ResourceNotFoundError:
            text = (f"The task hub '{self.source.hub_name}' does not exist in this storage account (it was never "
                    "run, or it was deleted).")
            if not html:
                return web.json_response({"error": text}, status=404)
            return self._render(request, "error.html", code=404, title="No such task hub", message=text)
        except web.HTTPException:
            raise
        except Exception as e:  # noqa: BLE001 - a page that says what failed, never a bare 500
            log.exception("dashboard: %s %s failed", request.method, request.path)
            if not html:
                return web.json_response({"error": f"{type(e).__name__}: {e}"}, status=500)
            return self._render(request, "error.html", code=500, title="Something failed",
                                message=f"{type(e).__name__}: {e}")

    async def not_found(self, request: web.Request) -> web.StreamResponse:
        async def page():
            return self._render(request, "error.html", code=404, title="Not found",
                                message=f"There is no dashboard page at {request.path}.")
        return await self._guarded(request, page)

    # -- instances -------------------------------------------------------------------------------------------
    def _filters(self, request: web.Request) -> tuple[mg.InstanceFilter, dict]:
        q = request.query
        chosen = [v for v in q.getall("status", []) if v]
        form = {"status": chosen, "name": q.get("name", "").strip(), "from": q.get("from", "").strip(),
                "to": q.get("to", "").strip(), "prefix": q.get("prefix", "").strip()}
        flt = mg.InstanceFilter(statuses=mg.parse_statuses(chosen), name=form["name"] or None,
                                created_from=mg.parse_date(form["from"], "created from"),
                                created_to=mg.parse_date(form["to"], "created to"), prefix=form["prefix"] or None)
        return flt, form

    @staticmethod
    def _page_size(request: web.Request) -> int:
        try:
            top = int(request.query.get("top") or DEFAULT_PAGE_SIZE)
        except ValueError:
            raise ValueError(f"top: '{request.query.get('top')}' is not a number") from None
        if not 1 <= top <= 1000:
            raise ValueError(f"top: must be from 1 to 1000, got {top}")
        return top

    async def _instances_context(self, request: web.Request) -> dict:
        flt, form = self._filters(request)
        top = self._page_size(request)
        token = request.query.get("token") or None
        trail = [t for t in request.query.getall("prev", [])][-MAX_TRAIL:]
        rows, next_token = await mg.query_instances(self.source.hub, flt, top=top, continuation=token)
        now = utcnow()
        base = [(k, v) for k, v in request.query.items() if k not in ("token", "prev", "page")]
        try:
            page_no = max(1, int(request.query.get("page") or 1)) if token else 1
        except ValueError:
            page_no = 1
        next_url = prev_url = None
        if next_token:
            next_url = "?" + urlencode(base + [("prev", p) for p in trail] + [("prev", token or "")]
                                       + [("token", next_token), ("page", str(page_no + 1))])
        if token:
            back = trail[:-1]
            prev_url = "?" + urlencode(base + [("prev", p) for p in back]
                                       + ([("token", trail[-1]), ("page", str(page_no - 1))]
                                          if trail and trail[-1] else []))
        keep = [(k, v) for k, v in base if k not in ("from", "to")]
        quick = [(label, "?" + urlencode(keep + [("from", (now - delta).strftime("%Y-%m-%dT%H:%M:%S"))]))
                 for label, delta in (("5 min", timedelta(minutes=5)), ("hour", timedelta(hours=1)),
                                      ("24 h", timedelta(days=1)), ("7 days", timedelta(days=7)))]
        filter_qs = urlencode([(k, v) for k, v in request.query.items()
                               if k in ("status", "name", "from", "to", "prefix")])
        nostatus_qs = urlencode([(k, v) for k, v in request.query.items() if k in ("name", "from", "to", "prefix")])
        return {"rows": [views.instance_item(r, now) for r in rows], "form": form, "top": top,
                "page_sizes": PAGE_SIZES, "next_url": next_url, "prev_url": prev_url, "page_no": page_no,
                "first_url": "?" + urlencode(base) if token else None, "filter_qs": filter_qs,
                "nostatus_qs": nostatus_qs, "quick_ranges": quick,
                "query_string": request.query_string,
                "known_names": sorted(self.source.orchestrator_names() if self.source.orchestrator_names else [])}

    async def instances_page(self, request: web.Request) -> web.StreamResponse:
        async def page():
            ctx = await self._instances_context(request)
            return self._render(request, "instances.html", **ctx)
        return await self._guarded(request, page)

    async def instances_partial(self, request: web.Request) -> web.StreamResponse:
        async def page():
            ctx = await self._instances_context(request)
            return self._fragment("_instances_table.html", **ctx)
        return await self._guarded(request, page, html=False)

    async def counts_api(self, request: web.Request) -> web.StreamResponse:
        async def page():
            flt, _ = self._filters(request)
            key = flt.without_status().odata()
            cached = self._counts.get(key)
            if cached is not None and time.monotonic() < cached[0]:
                counts, complete = cached[1], cached[2]
            else:
                t0 = time.monotonic()
                counts, complete = await mg.count_by_status(self.source.hub, flt)
                took = time.monotonic() - t0
                if len(self._counts) > 64:
                    self._counts.clear()
                # reused for 2 s, or 5 times what counting took (a big hub is not scanned over and over)
                self._counts[key] = (time.monotonic() + max(COUNTS_TTL, 5 * took), counts, complete)
            return web.json_response({"counts": counts, "total": sum(counts.values()), "complete": complete},
                                     headers={"Cache-Control": "no-store"})
        return await self._guarded(request, page, html=False)

    # -- one instance ----------------------------------------------------------------------------------------
    async def _instance_context(self, request: web.Request) -> dict | None:
        iid = request.query.get("id", "")
        if not iid:
            raise ValueError("id: give the instance id, e.g. /_durafunc/instance?id=abc")
        client = self.source.client
        row, events = await asyncio.gather(client.get(iid), client.history(iid))
        if row is None and not events:
            return None
        now = utcnow()
        status = row.runtime_status if row is not None else None
        running = status in ACTIVE_STATUSES or status is None
        show_all = request.query.get("all") == "1"
        rows = views.event_rows(events)
        limit = None if show_all else 1000
        return {
            "iid": iid, "row": row, "status": views.status_name(status),
            "final": status in TERMINAL_STATUSES,
            "item": views.instance_item(row, now) if row is not None else None,
            "input": views.pretty(row.input) if row is not None else None,
            "output": views.pretty(row.output) if row is not None else None,
            "custom": views.pretty(row.custom_status) if row is not None and row.custom_status not in (None, "null")
            else None,
            "failure": views.failure_of(row, events), "parent": views.parent_of(events),
            "children": views.children_of(events),
            "timeline": views.timeline(events, now=now, running=running, limit=10_000 if show_all else 300),
            "events": rows[:limit] if limit else rows, "events_hidden": max(0, len(rows) - limit) if limit else 0,
            "is_entity": iid.startswith("@"), "q_id": quote(iid, safe=""),
        }

    async def instance_page(self, request: web.Request) -> web.StreamResponse:
        async def page():
            ctx = await self._instance_context(request)
            if ctx is None:
                iid = request.query.get("id", "")
                return self._render(request, "error.html", code=404, title="No such instance",
                                    message=f"No instance with ID '{iid}' found in task hub "
                                            f"'{self.source.hub_name}'.")
            return self._render(request, "instance.html", **ctx)
        return await self._guarded(request, page)

    async def instance_partial(self, request: web.Request) -> web.StreamResponse:
        async def page():
            ctx = await self._instance_context(request)
            if ctx is None:
                return web.json_response({"error": "No such instance."}, status=404)
            return self._fragment("_instance_live.html", **ctx)
        return await self._guarded(request, page, html=False)

    # -- actions -------------------------------------------------------------------------------------------
    async def action(self, request: web.Request) -> web.StreamResponse:
        async def page():
            form = await request.post()
            problem = self.guard.csrf_problem(request, form)
            if problem is not None:
                return self._render(request, "error.html", code=403, title="Action refused",
                                    message=f"This action was refused: {problem}. Nothing was changed.")
            name = request.match_info["action"]
            iid = str(form.get("id") or "")
            if name not in ACTIONS:
                return self._render(request, "error.html", code=404, title="Unknown action",
                                    message=f"'{name}' is not an action (valid: {', '.join(ACTIONS)}).")
            if not iid:
                return self._render(request, "error.html", code=400, title="Bad request",
                                    message="The form has no instance id.")
            here = f"{PREFIX}/instance?id={quote(iid, safe='')}"
            try:
                text, target = await self._do(name, iid, form)
                ok = True
            except ClientError as e:
                text, target, ok = f"{_ACTION_TITLE[name]} failed: {e}", here, False
            log.info("dashboard: %s %s: %s", name, iid, text)
            return _flash_redirect(target or here, ok, text)
        return await self._guarded(request, page)

    async def _do(self, name: str, iid: str, form) -> tuple[str, str | None]:
        client = self.source.client
        reason = str(form.get("reason") or "").strip() or None
        later = "" if await self._host_runs() else " No host is running: it takes effect when one starts."
        if name == "raise-event":
            event = str(form.get("event") or "").strip()
            if not event:
                raise ClientError("the event needs a name")
            raw = str(form.get("data") or "").strip()
            try:
                value = json.loads(raw) if raw else None
            except ValueError as e:
                raise ClientError(f"the event data is not valid JSON ({e}); nothing was sent") from None
            await client.raise_event(iid, event, value)
            return f"Raised event '{event}' to instance '{iid}'.{later}", None
        if name == "terminate":
            await client.terminate(iid, reason)
            return f"Terminate message sent to instance '{iid}'.{later}", None
        if name == "suspend":
            await client.suspend(iid, reason)
            return f"Suspend message sent to instance '{iid}'.{later}", None
        if name == "resume":
            await client.resume(iid, reason)
            return f"Resume message sent to instance '{iid}'.{later}", None
        if name == "rewind":
            await client.rewind(iid, reason)
            return f"Rewind message sent to instance '{iid}'.{later}", None
        if name == "restart":
            new = await mg.restart_instance(client, iid, new_instance_id=form.get("same_id") != "1")
            return (f"Restarted '{iid}' as instance '{new}'.{later}",
                    f"{PREFIX}/instance?id={quote(new, safe='')}")
        result = await client.purge(iid)      # purge
        if not result.instances_deleted:
            raise ClientError(f"No instance with ID '{iid}' found.", 404)
        return f"Purged instance '{iid}' ({result.rows_deleted} rows deleted).", PREFIX + "/"

    async def _host_runs(self) -> bool:
        if self.source.worker_id is not None:
            return True
        return await mg.host_is_running(self.source.hub)

    # -- entities, hub ---------------------------------------------------------------------------------------
    async def entities_page(self, request: web.Request) -> web.StreamResponse:
        async def page():
            top = self._page_size(request)
            name = request.query.get("name", "").strip() or None
            token = request.query.get("token") or None
            items, next_token = await mg.list_entities(self.source.hub, top=top, continuation=token, name=name)
            for it in items:
                it["state_text"] = views.pretty(it["state"]) if it["exists"] else None
                it["q_id"] = quote(it["instanceId"], safe="")
            base = [(k, v) for k, v in request.query.items() if k != "token"]
            return self._render(request, "entities.html", entities=items, name=name or "",
                                next_url="?" + urlencode(base + [("token", next_token)]) if next_token else None,
                                first_url="?" + urlencode(base) if token else None)
        return await self._guarded(request, page)

    async def hub_page(self, request: web.Request) -> web.StreamResponse:
        async def page():
            overview = await mg.hub_overview(self.source.hub)
            return self._render(request, "hub.html", overview=overview)
        return await self._guarded(request, page)


_ACTION_TITLE = {"raise-event": "Raise event", "terminate": "Terminate", "suspend": "Suspend", "resume": "Resume",
                 "rewind": "Rewind", "restart": "Restart", "purge": "Purge"}


def see_other(target: str) -> web.Response:
    return web.Response(status=303, headers={"Location": target, "Cache-Control": "no-store"})


def _flash_redirect(target: str, ok: bool, text: str) -> web.StreamResponse:
    resp = see_other(target)
    value = base64.urlsafe_b64encode(json.dumps({"ok": ok, "text": text[:600]}).encode()).decode()
    resp.set_cookie(FLASH_COOKIE, value, path=PREFIX, httponly=True, samesite="Strict")
    return resp


def _read_flash(request: web.Request) -> dict | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        return {"ok": bool(data.get("ok")), "text": str(data.get("text", ""))}
    except (ValueError, TypeError, AttributeError):
        return None
