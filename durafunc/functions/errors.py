"""The one error type of bindings that cannot work (a missing connection setting, a bad path, an expression
without a value); str() is one line, naming what is wrong."""
from __future__ import annotations

import re
from http import HTTPStatus


class BindingError(Exception):
    """A binding that cannot work as configured (or, at invocation, cannot be resolved)."""


def service_message(e: Exception, product: str) -> str:
    """An Azure SDK HttpResponseError as the .NET SDKs word it, on one line: `<product>: <message> Status: 409
    (Conflict) ErrorCode: EntityAlreadyExists` (a batch's `N:` index dropped from the message)."""
    text = (getattr(e, "message", None) or str(e) or "").splitlines()
    first = re.sub(r"^\d+:", "", text[0] if text else "").strip() or type(e).__name__
    parts = [f"{product}: {first}"]
    status = getattr(e, "status_code", None)
    if status:
        try:
            parts.append(f"Status: {status} ({HTTPStatus(status).phrase})")
        except ValueError:
            parts.append(f"Status: {status}")
    code = getattr(e, "error_code", None)
    code = getattr(code, "value", code)
    if code:
        parts.append(f"ErrorCode: {code}")
    return " ".join(parts)
