"""Which function invocation a log record belongs to (a contextvar and a logging filter)."""
from __future__ import annotations

import contextvars
import logging

invocation: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar("durafunc_invocation",
                                                                                     default=None)


class InvocationFilter(logging.Filter):
    """Adds `function_name` and `invocation_id` to every record (empty outside user code)."""

    def filter(self, record: logging.LogRecord) -> bool:
        current = invocation.get()
        record.function_name, record.invocation_id = current if current else ("", "")
        return True
