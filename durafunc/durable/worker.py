"""What the engine needs from the function host: run orchestrators and activities by name."""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .extended import OrchestratorCall


class UserCodeError(Exception):
    """User code raised. `type_name` and `message` as Python reports them; `traceback_text` the user's trace."""

    def __init__(self, type_name: str, message: str, traceback_text: str = ""):
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message
        self.traceback_text = traceback_text


class DurableFunctions(Protocol):
    def orchestrator_names(self) -> list[str]: ...

    def activity_names(self) -> list[str]: ...

    async def run_orchestrator(self, name: str, call: "OrchestratorCall") -> str:
        """The SDK's JSON answer to one episode (extended.OrchestratorCall: the history, the session to continue);
        raises UserCodeError when the orchestrator raised."""

    async def run_activity(self, name: str, input_text: str | None, *, instance_id: str) -> str | None:
        """The JSON text of the result (None for null); raises UserCodeError."""

    def entity_names(self) -> list[str]: ...

    async def run_entity(self, name: str, context_json: str) -> str:
        """The SDK's entity batch result JSON; raises UserCodeError."""


class FunctionTable:
    """A DurableFunctions made of plain callables, for tests and embedding (no Azure Functions host).

    `orchestrators` maps names to SDK handles (`df.Orchestrator.create(fn)`); `activities` to functions
    taking the decoded input.
    """

    def __init__(self, orchestrators: dict, activities: dict, entities: dict | None = None):
        self._orch = {k.lower(): v for k, v in orchestrators.items()}
        self._act = {k.lower(): v for k, v in activities.items()}
        self._ent = {k.lower(): v for k, v in (entities or {}).items()}
        self._names = {"o": list(orchestrators), "a": list(activities), "e": list(entities or {})}

    def entity_names(self) -> list[str]:
        return self._names["e"]

    async def run_entity(self, name: str, context_json: str) -> str:
        import azure.functions as func
        try:
            return self._ent[name.lower()](func.EntityContext(context_json))
        except Exception as e:  # noqa: BLE001 - user code
            raise UserCodeError(type(e).__name__, str(e)) from e

    def orchestrator_names(self) -> list[str]:
        return self._names["o"]

    def activity_names(self) -> list[str]:
        return self._names["a"]

    async def run_orchestrator(self, name: str, call: "OrchestratorCall") -> str:
        import azure.functions as func

        from .sdk_session import SessionMismatch, run_call
        entry = self._orch[name.lower()]
        try:
            return run_call(entry, call, full=lambda: entry(func.OrchestrationContext(call.context_json())))
        except SessionMismatch:
            raise
        except Exception as e:  # noqa: BLE001 - user code
            raise UserCodeError(type(e).__name__, str(e)) from e

    async def run_activity(self, name: str, input_text: str | None, *, instance_id: str) -> str | None:
        import asyncio
        import inspect
        import json
        import traceback

        fn = self._act[name.lower()]
        try:
            value = json.loads(input_text) if input_text is not None else None
        except ValueError:
            value = input_text
        try:
            result = fn(value)
            if inspect.isawaitable(result):
                result = await result
            elif asyncio.iscoroutinefunction(fn):
                result = await result
        except Exception as e:  # noqa: BLE001 - user code
            raise UserCodeError(type(e).__name__, str(e), traceback.format_exc()) from e
        return None if result is None else json.dumps(result)
