"""ASP.NET-style route templates of HTTP triggers: `{id}`, `{id?}`, `{id:int}`, `{name=default}`, `{*rest}`."""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime

_PARAM = re.compile(r"\{([^{}]+)\}")


class RouteError(ValueError):
    pass


def _check(constraint: str, value: str) -> bool:
    name, _, arg = constraint.partition("(")
    arg = arg[:-1] if arg.endswith(")") else arg
    name = name.strip().lower()
    try:
        if name in ("int", "long"):
            int(value)
            return re.fullmatch(r"-?\d+", value) is not None
        if name == "bool":
            return value.lower() in ("true", "false")
        if name in ("decimal", "double", "float"):
            float(value)
            return True
        if name == "guid":
            uuid.UUID(value)
            return True
        if name == "datetime":
            datetime.fromisoformat(value)
            return True
        if name == "alpha":
            return re.fullmatch(r"[A-Za-z]+", value) is not None
        if name == "minlength":
            return len(value) >= int(arg)
        if name == "maxlength":
            return len(value) <= int(arg)
        if name == "length":
            parts = [int(p) for p in arg.split(",")]
            return len(value) == parts[0] if len(parts) == 1 else parts[0] <= len(value) <= parts[1]
        if name == "min":
            return float(value) >= float(arg)
        if name == "max":
            return float(value) <= float(arg)
        if name == "range":
            lo, hi = (float(p) for p in arg.split(","))
            return lo <= float(value) <= hi
        if name == "regex":
            return re.search(arg, value) is not None
    except (ValueError, TypeError):
        return False
    raise RouteError(f"unknown route constraint '{constraint}'")


@dataclass
class _Param:
    name: str
    constraints: list[str]
    optional: bool
    default: str | None
    catch_all: bool


def _parse_param(text: str, template: str) -> _Param:
    catch_all = text.startswith("*")
    text = text.lstrip("*")
    default = None
    if "=" in text:
        text, default = text.split("=", 1)
    optional = text.endswith("?")
    text = text.rstrip("?")
    # constraints are ':'-separated, but regex(...) may itself contain ':'
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == ":" and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    name = parts[0].strip()
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise RouteError(f"route '{template}': bad parameter name '{name}'")
    constraints = [c for c in parts[1:] if c]
    if constraints and constraints[-1].endswith("?"):
        constraints[-1] = constraints[-1][:-1]
        optional = True
    for c in constraints:
        _check(c, "0")  # raises for unknown constraints
    return _Param(name, constraints, optional or default is not None, default, catch_all)


@dataclass
class Route:
    template: str
    regex: re.Pattern
    params: list[_Param]
    literal_segments: int

    def match(self, path: str) -> dict | None:
        m = self.regex.fullmatch(path.strip("/"))
        if not m:
            return None
        out = {}
        for p in self.params:
            value = m.group(p.name)
            if value is None or value == "":
                if p.default is not None:
                    out[p.name] = p.default
                continue
            if not all(_check(c, value) for c in p.constraints):
                return None
            out[p.name] = value
        return out


def _check_literals(template: str, literal: str) -> None:
    """What is left of a segment without its parameters must hold no brace (ASP.NET's template parser)."""
    if "{" in literal or "}" in literal:
        raise RouteError(f"route '{template}': There is an incomplete parameter in the route template. Check "
                         "that each '{' character has a matching '}' character.")


def compile_route(template: str) -> Route:
    segments = [s for s in template.strip("/").split("/") if s != ""]
    pattern, params, literals = "", [], 0
    for i, seg in enumerate(segments):
        sep = "/" if i else ""
        only = _PARAM.fullmatch(seg)
        if only:
            p = _parse_param(only.group(1), template)
            params.append(p)
            body = f"(?P<{p.name}>.*)" if p.catch_all else f"(?P<{p.name}>[^/]+)"
            pattern += f"(?:{sep}{body})?" if (p.optional or p.catch_all) else f"{sep}{body}"
            continue
        literals += 1
        _check_literals(template, _PARAM.sub("", seg))
        piece, last = "", 0
        for m in _PARAM.finditer(seg):
            piece += re.escape(seg[last:m.start()])
            p = _parse_param(m.group(1), template)
            params.append(p)
            piece += f"(?P<{p.name}>[^/]+?)"
            last = m.end()
        piece += re.escape(seg[last:])
        pattern += sep + piece
    try:
        regex = re.compile(pattern, re.IGNORECASE)
    except re.error as e:
        raise RouteError(f"route '{template}': {e}") from None
    return Route(template, regex, params, literals)


@dataclass
class MethodNotAllowed:
    allowed: list[str] = field(default_factory=list)


class RouteTable:
    """HTTP functions by route; literal routes are preferred over parameterized ones."""

    def __init__(self, entries: list[tuple[str, object, list[str] | None]]):
        compiled = [(compile_route(t), fn, [m.upper() for m in methods] if methods else None)
                    for t, fn, methods in entries]
        compiled.sort(key=lambda e: (-(len(e[0].params) == 0), -e[0].literal_segments, len(e[0].params)))
        self.entries = compiled

    @classmethod
    def for_app(cls, app, route_prefix: str) -> "RouteTable":
        prefix = route_prefix.strip("/")
        entries = []
        for fn in app.functions.values():
            if fn.kind == "http":
                route = (fn.route or fn.name).strip("/")
                entries.append((f"{prefix}/{route}" if prefix else route, fn, fn.methods))
        return cls(entries)

    def match(self, method: str, path: str):
        allowed: list[str] = []
        for route, fn, methods in self.entries:
            params = route.match(path)
            if params is None:
                continue
            if methods and method.upper() not in methods and not (method.upper() == "HEAD" and "GET" in methods):
                allowed += methods
                continue
            return fn, params
        return MethodNotAllowed(sorted(set(allowed))) if allowed else None
