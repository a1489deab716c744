"""Who may see the dashboard and post its actions.

Under `--enable-auth` every page needs the master key: `?code=<master key>` once (answered with a cookie and a
redirect to the same page without the key), or the `x-functions-key` header. Actions are POST forms guarded
against cross-site requests twice: a token in the form that must equal the token in a SameSite=Strict cookie
(double submit), and an `Origin` header, when the browser sends one, that must be this server's own.
"""
from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlencode

from aiohttp import web

AUTH_COOKIE = "durafunc_dashboard"
CSRF_COOKIE = "durafunc_csrf"
CSRF_FIELD = "csrf"


def _same(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(a.encode(), b.encode())


class Guard:
    def __init__(self, keys, prefix: str):
        self.keys = keys            # http.keys.Keys, or None when auth is off
        self.prefix = prefix

    @property
    def enabled(self) -> bool:
        return self.keys is not None

    def _cookie_value(self) -> str:
        return self.keys.session_token("durafunc-dashboard")

    def authorized(self, request: web.Request) -> bool:
        if self.keys is None:
            return True
        if _same(request.cookies.get(AUTH_COOKIE), self._cookie_value()):
            return True
        return self.keys.is_master(request.headers.get("x-functions-key"))

    def login(self, request: web.Request) -> web.StreamResponse | None:
        """`?code=<master key>`: a cookie, and a redirect to the same URL without the key. None otherwise."""
        if self.keys is None or not self.keys.is_master(request.query.get("code")):
            return None
        rest = [(k, v) for k, v in request.query.items() if k != "code"]
        target = request.path + ("?" + urlencode(rest) if rest else "")
        resp = web.Response(status=303, headers={"Location": target, "Cache-Control": "no-store"})
        resp.set_cookie(AUTH_COOKIE, self._cookie_value(), path=self.prefix, httponly=True, samesite="Strict")
        return resp

    # -- CSRF -----------------------------------------------------------------------------------------
    @staticmethod
    def csrf_token(request: web.Request) -> tuple[str, bool]:
        """(token, new): the browser's CSRF cookie, or a new token to set."""
        token = request.cookies.get(CSRF_COOKIE)
        if token and len(token) >= 20:
            return token, False
        return secrets.token_urlsafe(24), True

    def set_csrf_cookie(self, resp: web.StreamResponse, token: str) -> None:
        resp.set_cookie(CSRF_COOKIE, token, path=self.prefix, httponly=True, samesite="Strict")

    @staticmethod
    def csrf_problem(request: web.Request, form) -> str | None:
        """Why a POST is refused (None: it is fine)."""
        origin = request.headers.get("Origin")
        if origin and origin != "null" and origin.rstrip("/") != f"{request.scheme}://{request.host}":
            return f"the request came from another site ({origin})"
        if origin == "null":
            return "the request came from an opaque origin"
        if not _same(form.get(CSRF_FIELD), request.cookies.get(CSRF_COOKIE)):
            return "the form's token does not match this browser's (reload the page and try again)"
        return None
