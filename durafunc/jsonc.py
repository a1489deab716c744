"""JSON as the Functions host reads its files (Json.NET): `//` and `/* */` comments and trailing commas allowed,
as Visual Studio and VS Code write host.json / local.settings.json."""
from __future__ import annotations

import json
import re

_TRAILING_COMMA = re.compile(r",(\s*[}\]])")


def strip_comments(text: str) -> str:
    """`text` with comments replaced by spaces (newlines kept, so error positions stay right) and trailing commas
    before `}` / `]` removed. Strings are left alone."""
    out, i, n = [], 0, len(text)
    in_string = False
    while i < n:
        c = text[i]
        if in_string:
            out.append(c)
            if c == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 2
                continue
            if c == '"':
                in_string = False
            i += 1
            continue
        if c == '"':
            in_string = True
            out.append(c)
            i += 1
            continue
        if text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            out.append(" " * (end - i))
            i = end
            continue
        if text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            out.append("".join(ch if ch == "\n" else " " for ch in text[i:end]))
            i = end
            continue
        out.append(c)
        i += 1
    return _drop_trailing_commas("".join(out))


def _drop_trailing_commas(text: str) -> str:
    """Remove a `,` that only has whitespace before the next `}` or `]` (outside strings)."""
    out, i, n, in_string = [], 0, len(text), False
    while i < n:
        c = text[i]
        if in_string:
            out.append(c)
            if c == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 2
                continue
            if c == '"':
                in_string = False
            i += 1
            continue
        if c == '"':
            in_string = True
        elif c == ",":
            m = _TRAILING_COMMA.match(text, i)
            if m:
                out.append(" ")       # keep the column of what follows
                i += 1
                continue
        out.append(c)
        i += 1
    return "".join(out)


def loads_jsonc(text: str):
    """json.loads of `text` after strip_comments; JSONDecodeError positions refer to `text`."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return json.loads(strip_comments(text))
