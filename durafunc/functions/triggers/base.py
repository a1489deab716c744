"""What every trigger listener shares: the event it hands to the host for one invocation, and its shape
(`start()`, `await stop(grace)`; a reload is a stop of the old listeners and a start of new ones)."""
from __future__ import annotations

from dataclasses import dataclass, field
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


Run = Callable[[str, TriggerEvent], Awaitable[None]]    # (function name, event); raises when the function failed


class Listener(Protocol):
    function: str

    def start(self) -> None:
        """Begin listening (inside a running event loop)."""

    async def stop(self, grace: float = 10.0) -> None:
        """Stop listening; running invocations get `grace` seconds to finish."""


class ListenerError(BindingError):
    """A trigger that cannot listen as configured; the function is reported and does not listen."""
