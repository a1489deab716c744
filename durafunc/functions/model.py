"""What a loaded function app is made of: functions, their bindings, and what failed to load."""
from __future__ import annotations

import inspect
import typing
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable

DURABLE_TRIGGERS = {"orchestrationtrigger": "orchestrator", "activitytrigger": "activity",
                    "entitytrigger": "entity"}
# Binding types of Azure Functions that durafunc knows (lower-case). Others are reported as unknown.
KNOWN_BINDINGS = {
    "httptrigger", "http", "orchestrationtrigger", "activitytrigger", "entitytrigger", "durableclient",
    "orchestrationclient", "timertrigger", "queuetrigger", "queue", "blobtrigger", "blob", "table",
    "eventhubtrigger", "eventhub", "servicebustrigger", "servicebus", "cosmosdbtrigger", "cosmosdb",
    "eventgridtrigger", "eventgrid", "signalr", "signalrconnectioninfo", "sendgrid", "twiliosms",
    "kafkatrigger", "kafka", "rabbitmqtrigger", "rabbitmq", "sqltrigger", "sql", "daprservicebinding",
    "generic", "mysql", "mysqltrigger", "assistantskilltrigger", "textcompletion",
}


class AppLoadError(Exception):
    """Raised with `strict=True` (or when nothing can be loaded at all)."""


@dataclass
class Binding:
    type: str
    direction: str          # 'in' | 'out' | 'inout'
    name: str
    raw: dict = field(default_factory=dict)

    @property
    def is_trigger(self) -> bool:
        return self.type.lower().endswith("trigger")


@dataclass
class FunctionInfo:
    name: str
    kind: str               # 'http' | 'orchestrator' | 'activity' | 'entity' | 'other'
    trigger: Binding
    bindings: list[Binding]
    script_file: Path
    entry: Callable
    is_async: bool
    durable_name: str
    route: str | None = None
    methods: list[str] | None = None
    auth_level: str | None = None
    disabled: bool = False
    directory: Path | None = None

    @cached_property
    def parameters(self) -> dict[str, inspect.Parameter]:
        """The entry's parameters by name (empty when it has no readable signature)."""
        try:
            return dict(inspect.signature(self.entry).parameters)
        except (TypeError, ValueError):
            return {}

    @cached_property
    def annotations(self) -> dict[str, typing.Any]:
        """The entry's resolved type hints (the raw annotations when they do not resolve)."""
        try:
            return typing.get_type_hints(self.entry)
        except Exception:  # noqa: BLE001 - user code: forward references that do not resolve, ...
            hints = {n: p.annotation for n, p in self.parameters.items() if p.annotation is not p.empty}
            try:
                ret = inspect.signature(self.entry).return_annotation
            except (TypeError, ValueError):
                ret = inspect.Signature.empty
            if ret is not inspect.Signature.empty:
                hints["return"] = ret
            return hints

    def binding_type(self, name: str) -> typing.Any:
        """The Python type a binding's parameter is annotated with, as the worker reads it: `T` of
        `func.Out[T]`, the return annotation for `$return`, None when not annotated."""
        hint = self.annotations.get("return" if name == "$return" else name)
        origin = typing.get_origin(hint)
        if isinstance(origin, type) and origin.__name__ == "Out":
            args = typing.get_args(hint)
            return args[0] if args else None
        return hint


@dataclass
class LoadError:
    function: str | None
    file: str
    reason: str


@dataclass
class LoadedApp:
    root: Path
    model: str
    functions: dict[str, FunctionInfo] = field(default_factory=dict)
    errors: list[LoadError] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)

    def _by_kind(self, kind: str, name: str) -> FunctionInfo | None:
        low = (name or "").lower()
        for f in self.functions.values():
            if f.kind == kind and f.durable_name.lower() == low:
                return f
        return None

    def orchestrator(self, name: str) -> FunctionInfo | None:
        return self._by_kind("orchestrator", name)

    def activity(self, name: str) -> FunctionInfo | None:
        return self._by_kind("activity", name)

    def entity(self, name: str) -> FunctionInfo | None:
        return self._by_kind("entity", name)

    def _names(self, kind: str) -> list[str]:
        return [f.durable_name for f in self.functions.values() if f.kind == kind]

    @property
    def orchestrator_names(self) -> list[str]:
        return self._names("orchestrator")

    @property
    def activity_names(self) -> list[str]:
        return self._names("activity")

    @property
    def entity_names(self) -> list[str]:
        return self._names("entity")


def kind_of(trigger: Binding) -> str:
    t = trigger.type.lower()
    if t == "httptrigger":
        return "http"
    return DURABLE_TRIGGERS.get(t, "other")


def durable_name(name: str, trigger: Binding) -> str:
    """Orchestration/activity/entity name: the binding's override key, else the function name."""
    for key in ("orchestration", "activity", "entityName"):
        value = trigger.raw.get(key)
        if value:
            return str(value)
    return name
