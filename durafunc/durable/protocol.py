"""The out-of-process orchestration protocol of the Python SDK: the context we send, the state it returns."""
from __future__ import annotations

import json
from dataclasses import dataclass

OUT_OF_PROC_MARKER = "\n\n$OutOfProcData$:"


def context_json(*, instance_id: str, history: list[dict], input_text: str | None,
                 parent_instance_id: str | None, is_replaying: bool) -> str:
    """The orchestration trigger value (sdk-protocol.md 1.1).

    The long-timer keys are left out on purpose: the SDK then emits one CreateTimer for any length, and the
    engine splits timers longer than the queue limit into hops itself.
    """
    return json.dumps({
        "history": history,
        "input": sdk_input(input_text),
        "instanceId": instance_id,
        "isReplaying": is_replaying,
        "parentInstanceId": parent_instance_id,
        "upperSchemaVersion": 1,
        "upperSchemaVersionNew": 2,
        "defaultHttpAsyncRequestSleepTimeMillseconds": 30000,
    })


def sdk_input(stored: str | None):
    """ExecutionStarted.Input (JSON text) -> the envelope's `input` (a str the SDK df_loads, or a dict)."""
    if stored is None:
        return None
    try:
        value = json.loads(stored)
    except ValueError:
        return stored
    if value is None or isinstance(value, (str, dict)):
        return value
    return stored  # numbers/lists/bools: hand the JSON text, df_loads parses it


@dataclass
class OrchestratorOutput:
    state: dict          # isDone, actions, output, customStatus, schemaVersion
    error: str | None    # the orchestrator's exception text, when it failed


def parse_output(text: str) -> OrchestratorOutput:
    state = json.loads(text)
    if not isinstance(state, dict):
        raise ValueError("Out of proc orchestrators must return a valid JSON schema")
    return OrchestratorOutput(state, state.get("error") or None)


def parse_failure(message: str) -> OrchestratorOutput:
    """An orchestrator raised: the SDK put its state after the $OutOfProcData$ marker."""
    head, marker, tail = message.partition(OUT_OF_PROC_MARKER)
    if marker:
        tail = tail.split("\nStack:", 1)[0]
        try:
            state = json.loads(tail)
            if isinstance(state, dict):
                return OrchestratorOutput(state, state.get("error") or head or "unknown error")
        except ValueError:
            pass
    return OrchestratorOutput({"isDone": False, "actions": []}, message or "unknown error")
