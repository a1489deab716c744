"""What every trigger listener shares: the event it hands to the host for one invocation (with the reason and
trigger details the host logs for it), its shape (`start()`, `await stop(grace)`; a reload is a stop of the old
listeners and a start of new ones), and the time format of trigger details."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Protocol

from azure.functions import meta

from ..errors import BindingError


@dataclass
class TriggerEvent:
    """One trigger firing, as the Functions host sends it to the Python worker."""
    data: meta.Datum                                   # the trigger value (TypedData)
    metadata: dict[str, meta.Datum]                    # the trigger metadata (for the SDK's converters)
    binding_data: dict[str, Any] = field(default_factory=dict)   # for the expressions of the other bindings
    # (data, metadata, annotated python type) -> the parameter value, as the worker converts it
    decode: Callable[[meta.Datum, dict, Any], Any] | None = None
    # what the host's `Executing 'Functions.f' (Reason='...', Id=...)` line says, and its `Trigger Details: ...`
    reason: str | None = None
    details: str | None = None


Run = Callable[[str, TriggerEvent], Awaitable[None]]    # (function name, event); raises when the function failed


class Listener(Protocol):
    function: str

    def start(self) -> None:
        """Begin listening (inside a running event loop)."""

    async def stop(self, grace: float = 10.0) -> None:
        """Stop listening; running invocations get `grace` seconds to finish."""


class ListenerError(BindingError):
    """A trigger that cannot listen as configured; the function is reported and does not listen."""


def details_time(moment: datetime | None) -> str:
    """A storage time as the trigger details print it: `2026-12-01T20:10:00.000+00:00` (UTC)."""
    if moment is None:
        return ""
    utc = moment.astimezone(timezone.utc) if moment.tzinfo else moment
    return f"{utc.strftime('%Y-%m-%dT%H:%M:%S')}.{utc.microsecond // 1000:03d}+00:00"
