"""Binding expressions, as the WebJobs SDK resolves them in binding properties (pure: no I/O).

- `%Setting%`: an app setting, resolved once when the function loads.
- `{name}`, `{name.prop}`: binding data of the invocation (trigger metadata, route parameters, the properties of a
  JSON payload), looked up case-insensitively; dotted names walk into objects.
- `{rand-guid}` (a new GUID each time, formats N/D/B/P), `{DateTime}` (UTC now, `yyyy-MM-ddTHH-mm-ssZ` unless a
  .NET format follows a colon), and the `sys` data of the invocation: `{sys.randguid}`, `{sys.utcnow}`,
  `{sys.methodname}`.

Blob trigger paths (`container/{name}.{ext}`) are patterns: `blob_pattern` compiles one and `match` gives the
binding data of a blob name, as the WebJobs SDK captures it (each parameter greedy).
"""
from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from .errors import BindingError

DATETIME_DEFAULT_FORMAT = "yyyy-MM-ddTHH-mm-ssZ"
# the names every trigger provides (the `sys` object of an invocation)
SYSTEM_NAMES = ("sys",)
BUILTINS = ("rand-guid", "datetime")
UNRESOLVED_HELP = ("Binding expressions must map to either a value provided by the trigger or a property of the "
                   "value the trigger is bound to, or must be a system binding expression (e.g. sys.randguid, "
                   "sys.utcnow, etc.).")


class ExpressionError(BindingError, ValueError):
    """A binding expression that is malformed or cannot be resolved; str() is one line."""


@dataclass(frozen=True)
class Expr:
    """`{name:format}` inside a template."""
    name: str
    format: str | None = None

    @property
    def head(self) -> str:
        """The binding data key the expression starts from (`data` for `data.name`)."""
        return self.name.split(".", 1)[0].strip().lower()

    @property
    def is_builtin(self) -> bool:
        return self.name.strip().lower() in BUILTINS or self.head in SYSTEM_NAMES


@dataclass(frozen=True)
class Template:
    text: str
    parts: tuple  # str | Expr

    @property
    def expressions(self) -> list[Expr]:
        return [p for p in self.parts if isinstance(p, Expr)]

    @property
    def parameters(self) -> list[str]:
        """The binding data names this template needs (builtins and sys excluded)."""
        return [e.name for e in self.expressions if not e.is_builtin]

    @property
    def is_literal(self) -> bool:
        return not self.expressions


def parse(text: str) -> Template:
    """`a/{b}/c{{d}}` -> literal and expression parts (`{{` and `}}` are literal braces)."""
    if not isinstance(text, str):
        raise ExpressionError(f"expected a string, got {text!r}")
    parts: list = []
    literal: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "{" and text.startswith("{{", i):
            literal.append("{")
            i += 2
        elif c == "}" and text.startswith("}}", i):
            literal.append("}")
            i += 2
        elif c == "{":
            end = text.find("}", i + 1)
            if end < 0:
                raise ExpressionError(f"Invalid template '{text}'. Missing closing bracket at position {i + 1}.")
            body = text[i + 1:end]
            if "{" in body:
                raise ExpressionError(f"Invalid template '{text}'. Missing closing bracket at position {i + 1}.")
            name, colon, fmt = body.partition(":")
            if not name.strip():
                raise ExpressionError(f"Invalid template '{text}'. The parameter name at position {i + 1} is "
                                      "empty.")
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(Expr(name.strip(), fmt if colon else None))
            i = end + 1
        elif c == "}":
            raise ExpressionError(f"Invalid template '{text}'. Missing opening bracket at position {i + 1}.")
        else:
            literal.append(c)
            i += 1
    if literal:
        parts.append("".join(literal))
    return Template(text, tuple(parts))


# -- app settings ---------------------------------------------------------------------------------------------

def expand_settings(text: str, env: Mapping[str, str]) -> str:
    """`%Name%` -> the app setting (environment, which holds local.settings.json Values); a setting that is not
    defined raises ExpressionError."""
    def repl(m: re.Match) -> str:
        name = m.group(1)
        if name in env:
            return env[name]
        low = name.lower()
        for k, v in env.items():
            if k.lower() == low:
                return v
        raise ExpressionError(f"app setting '%{name}%' is not defined")
    return re.sub(r"%([^%{}]+)%", repl, text)


# -- binding data -------------------------------------------------------------------------------------------

def lookup(data: Mapping[str, Any], name: str) -> Any:
    """The value of `a.b.c` in binding data (case-insensitive at every level); KeyError when absent or null."""
    value: Any = data
    for key in name.split("."):
        key = key.strip()
        if not isinstance(value, Mapping):
            raise KeyError(name)
        if key in value:
            value = value[key]
        else:
            low = key.lower()
            found = [v for k, v in value.items() if isinstance(k, str) and k.lower() == low]
            if not found:
                raise KeyError(name)
            value = found[0]
    if value is None:
        raise KeyError(name)
    return value


def to_text(value: Any) -> str:
    """A binding data value as it appears in a resolved property (.NET's ToString for scalars, JSON for objects)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, datetime):
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", errors="replace")
    return json.dumps(value, separators=(",", ":"))


def json_properties(text: Any) -> dict[str, Any]:
    """The binding data a JSON object payload adds (a queue message, an HTTP body): its top-level properties
    that are not arrays or null, objects kept as objects and scalars as their text (as the Functions host does).
    Anything that is not a JSON object adds nothing."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            return {}
    if not isinstance(text, str):
        return {}
    stripped = text.strip()
    if not (stripped.startswith("{") and stripped.endswith("}")):
        return {}
    try:
        parsed = json.loads(stripped)
    except ValueError:
        return {}
    if not isinstance(parsed, dict):
        return {}
    return {k: (v if isinstance(v, dict) else to_text(v)) for k, v in parsed.items()
            if v is not None and not isinstance(v, list)}


def system_data(function_name: str, now: datetime | None = None, guid: str | None = None) -> dict[str, Any]:
    """The `sys` binding data of one invocation (the same values for every binding of that invocation)."""
    now = now or datetime.now(timezone.utc)
    return {"sys": {"MethodName": function_name, "UtcNow": now, "RandGuid": guid or str(uuid.uuid4())}}


# -- resolution ---------------------------------------------------------------------------------------------

_NET_TOKENS = [("yyyy", "%Y"), ("yy", "%y"), ("MMMM", "%B"), ("MMM", "%b"), ("MM", "%m"), ("dddd", "%A"),
               ("ddd", "%a"), ("dd", "%d"), ("HH", "%H"), ("hh", "%I"), ("mm", "%M"), ("ss", "%S"), ("tt", "%p")]


def format_datetime(value: datetime, fmt: str) -> str:
    """A .NET custom date and time format (`yyyy-MM-dd`, `HH'h'mm`, `fff`, `K`, ...) applied to a datetime."""
    out, i = [], 0
    while i < len(fmt):
        if fmt[i] in "'\"":
            end = fmt.find(fmt[i], i + 1)
            end = len(fmt) if end < 0 else end
            out.append(fmt[i + 1:end])
            i = end + 1
            continue
        if fmt[i] == "\\" and i + 1 < len(fmt):
            out.append(fmt[i + 1])
            i += 2
            continue
        m = re.match(r"f{1,7}|F{1,7}", fmt[i:])
        if m:
            digits = f"{value.microsecond:06d}0"[:len(m.group())]
            out.append(digits.rstrip("0") if m.group()[0] == "F" else digits)
            i += len(m.group())
            continue
        if fmt[i] == "K":
            off = value.utcoffset()
            out.append("" if off is None else "Z" if not off else value.strftime("%z")[:3] + ":" +
                       value.strftime("%z")[3:])
            i += 1
            continue
        for token, directive in _NET_TOKENS:
            if fmt.startswith(token, i):
                out.append(value.strftime(directive))
                i += len(token)
                break
        else:
            if fmt[i] in "dhHmMsy" and (i + 1 >= len(fmt) or fmt[i + 1] != fmt[i]):
                single = {"d": value.day, "h": value.hour % 12 or 12, "H": value.hour, "m": value.minute,
                          "M": value.month, "s": value.second, "y": value.year % 100}[fmt[i]]
                out.append(str(single))
            else:
                out.append(fmt[i])
            i += 1
    return "".join(out)


def _guid(fmt: str | None, new_guid: Callable[[], uuid.UUID]) -> str:
    g = new_guid()
    f = (fmt or "D").upper()
    if f == "N":
        return g.hex
    if f == "B":
        return "{" + str(g) + "}"
    if f == "P":
        return "(" + str(g) + ")"
    if f == "D":
        return str(g)
    raise ExpressionError(f"'{fmt}' is not a GUID format (N, D, B or P)")


def resolve(template: Template | str, data: Mapping[str, Any], *, now: Callable[[], datetime] | None = None,
            new_guid: Callable[[], uuid.UUID] = uuid.uuid4) -> str:
    """The template with every `{expression}` replaced from the binding data; raises ExpressionError naming the
    first one that has no value (`No value for named parameter 'x'.`)."""
    t = template if isinstance(template, Template) else parse(template)
    out = []
    for part in t.parts:
        if isinstance(part, str):
            out.append(part)
            continue
        low = part.name.lower()
        if low == "rand-guid":
            out.append(_guid(part.format, new_guid))
            continue
        if low == "datetime":
            when = (now or (lambda: datetime.now(timezone.utc)))()
            out.append(format_datetime(when, part.format or DATETIME_DEFAULT_FORMAT))
            continue
        try:
            value = lookup(data, part.name)
        except KeyError:
            raise ExpressionError(f"No value for named parameter '{part.name}'.") from None
        out.append(format_datetime(value, part.format) if part.format and isinstance(value, datetime)
                   else to_text(value))
    return "".join(out)


def check_resolvable(template: Template, available: set[str]) -> None:
    """At load time: every parameter of the template must come from the trigger's binding data contract
    (`available`, lower-case names); raises ExpressionError naming the first one that does not."""
    for name in template.parameters:
        head = name.split(".", 1)[0].strip().lower()
        if head not in available:
            raise ExpressionError(f"Unable to resolve binding parameter '{name}'. {UNRESOLVED_HELP}")


# -- blob trigger paths -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BlobPattern:
    """A blob trigger's `path`: a literal container and a blob name pattern."""
    path: str
    container: str
    blob: Template
    regex: re.Pattern

    @property
    def parameters(self) -> list[str]:
        return self.blob.parameters

    @property
    def prefix(self) -> str:
        """The literal start of the blob name (a listing may ask for just these names)."""
        first = self.blob.parts[0] if self.blob.parts else ""
        return first if isinstance(first, str) else ""

    def match(self, container: str, name: str) -> dict[str, str] | None:
        """The binding data of a blob (its pattern parameters), or None when it does not match."""
        if container != self.container:
            return None
        m = self.regex.match(name)
        return None if m is None else {e.name: m.group(i + 1) for i, e in enumerate(self.blob.expressions)}


def blob_pattern(path: str) -> BlobPattern:
    """Compile `container/pattern` (`samples/{name}`, `in/{name}.{ext}`, `in/images/{name}`; a container alone
    matches every blob in it), as the Storage extension's BlobPathSource; raises ExpressionError for an empty
    container or blob part, a container with an expression, or a pattern that reuses a name."""
    if not isinstance(path, str) or not path:
        raise ExpressionError("Blob paths must not be null.")
    container, slash, blob = path.partition("/")
    if (slash and (not container or not blob)) or "\\" in container:
        raise ExpressionError(f"Invalid blob trigger path '{path}'. Paths must be in the format "
                              "'container/blob'.")
    if "{" in container or "}" in container:
        raise ExpressionError(f"Invalid blob trigger path '{path}'. Container paths cannot contain {{resolve}} "
                              "tokens.")
    if not slash:
        return BlobPattern(path, container, parse(""), re.compile(r"^.*$", re.S))
    template = parse(blob)
    seen: set[str] = set()
    regex = ["^"]
    for part in template.parts:
        if isinstance(part, str):
            regex.append(re.escape(part))
            continue
        if part.is_builtin or part.format or "." in part.name:
            raise ExpressionError(f"Invalid blob trigger path '{path}': '{{{part.name}}}' cannot be used in a "
                                  "trigger path.")
        if part.name.lower() in seen:
            raise ExpressionError(f"Invalid blob trigger path '{path}': '{{{part.name}}}' is used twice.")
        seen.add(part.name.lower())
        regex.append("(.*)")
    regex.append("$")
    return BlobPattern(path, container, template, re.compile("".join(regex), re.S))
