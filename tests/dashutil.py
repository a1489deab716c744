"""Helpers of the dashboard tests: an HTTP client with cookies that does not follow redirects, and the few
things the tests read out of the pages."""
from __future__ import annotations

import html
import http.client
import json
import re
import time
from urllib.parse import urlencode


class Page:
    def __init__(self, status: int, text: str, headers):
        self.status, self.text, self.headers = status, text, headers

    @property
    def location(self) -> str | None:
        return self.headers.get("Location")

    def ids(self) -> list[str]:
        """Instance ids of the instances table, in order."""
        return [html.unescape(i) for i in re.findall(r'<tr data-id="([^"]*)"', self.text)]

    def link(self, element_id: str) -> str | None:
        m = re.search(rf'<a href="([^"]*)"[^>]*id="{element_id}"', self.text) or \
            re.search(rf'id="{element_id}"[^>]*href="([^"]*)"', self.text)
        return html.unescape(m.group(1)) if m else None

    def csrf(self) -> str:
        return re.search(r'name="csrf" value="([^"]+)"', self.text).group(1)

    def flash(self) -> str | None:
        m = re.search(r'<div class="flash (ok|err)"[^>]*>(.*?)</div>', self.text, re.S)
        return f"{m.group(1)}: {html.unescape(m.group(2))}" if m else None

    def count(self, needle: str) -> int:
        return self.text.count(needle)

    def json(self):
        return json.loads(self.text)


class Client:
    """Keeps cookies like a browser (per name; a cookie set empty or expired is dropped)."""

    def __init__(self, port: int):
        self.port = port
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, form: dict | list | None = None, headers: dict | None = None) -> Page:
        h = dict(headers or {})
        body = None
        if form is not None:
            body = urlencode(form).encode()
            h["Content-Type"] = "application/x-www-form-urlencoded"
        if self.cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            text = r.read().decode("utf-8", "replace")
            for header in r.msg.get_all("Set-Cookie") or []:
                name, _, rest = header.partition("=")
                value = rest.split(";")[0].strip().strip('"')
                if not value or "max-age=0" in header.lower():
                    self.cookies.pop(name.strip(), None)
                else:
                    self.cookies[name.strip()] = value
            return Page(r.status, text, r.headers)
        finally:
            c.close()

    def get(self, path: str, **kw) -> Page:
        return self.request("GET", path, **kw)

    def follow(self, page: Page) -> Page:
        assert page.status in (302, 303), (page.status, page.text[:500])
        return self.get(page.location)

    def act(self, iid: str, action: str, **fields) -> Page:
        """Open the instance page (for the CSRF token), post the action, follow the redirect."""
        from urllib.parse import quote
        page = self.get(f"/_durafunc/instance?id={quote(iid, safe='')}")
        assert page.status == 200, page.text[:500]
        done = self.request("POST", f"/_durafunc/instance/{action}",
                            form={"csrf": page.csrf(), "id": iid, **fields})
        return self.follow(done)


def wait_for(fn, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached after {timeout} s (last: {last!r})")
