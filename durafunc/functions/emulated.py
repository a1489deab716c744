"""Which binding types durafunc emulates locally, and what it says about the others (named at start, and each
invocation that gives one a value)."""
from __future__ import annotations

# The one list of binding types (lower-case) that do something under `durafunc start`. A binding type that is
# known (functions/model.py KNOWN_BINDINGS) but not listed here loads, and is reported as not emulated.
EMULATED_BINDINGS = frozenset({
    "httptrigger", "http",
    "orchestrationtrigger", "activitytrigger", "entitytrigger", "durableclient", "orchestrationclient",
    "timertrigger",
    "queuetrigger", "queue",
    "blobtrigger", "blob",
    "table",
})


def is_emulated(binding_type: str) -> bool:
    return binding_type.lower() in EMULATED_BINDINGS


def not_emulated(fn) -> list:
    """The bindings of a FunctionInfo that durafunc does not emulate."""
    return [b for b in fn.bindings if not is_emulated(b.type)]


def start_warning(fn, binding) -> str:
    """The line printed at start for one binding that is not emulated."""
    head = f"function '{fn.name}': binding '{binding.type}' ({binding.direction}) is not emulated locally"
    if binding.is_trigger:
        return f"{head}; it never fires (run the function by hand: POST /admin/functions/{fn.name})"
    if binding.direction == "out":
        return f"{head}; its value is dropped"
    if binding.direction == "inout":
        return f"{head}; the function gets None and what it sets is dropped"
    return f"{head}; the function gets None for '{binding.name}'"


def start_warnings(app) -> list[str]:
    return [start_warning(fn, b) for fn in app.functions.values() for b in not_emulated(fn)]


def dropped_outputs(fn, result, outs: dict) -> list:
    """The not-emulated output bindings an invocation gave a value (its return value for `$return`, the value set
    on its `func.Out` parameter otherwise)."""
    dropped = []
    for b in fn.bindings:
        if b.direction not in ("out", "inout") or is_emulated(b.type):
            continue
        if b.name == "$return":
            value = result
        elif b.name in outs:
            value = outs[b.name].get()
        else:
            continue
        if value is not None:
            dropped.append(b)
    return dropped
