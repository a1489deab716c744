"""The SDK's own orchestration objects, kept alive between episodes and fed only the events they have not seen.

A full replay is what the SDK's `Orchestrator.create(fn)` handle does: `DurableOrchestrationContext.from_json`,
then `Orchestrator(fn).handle(context)`, whose `TaskOrchestrationExecutor` runs the user's generator over the
whole history. `SdkOrchestration.open` does exactly those steps with the SDK's classes and keeps the executor and
the context; `advance` then gives the executor the events a full replay would process beyond what it has seen
(`process_event` per event, as `execute` does, with the same old/new boundary: the last OrchestratorStarted), and
returns the same state JSON. Those are SDK internals: they are used only for the SDK versions durafunc is tested
with (`SUPPORTED`), and for anything else (another version, an entry point that is not the SDK's handle, an
orchestrator that is not a generator) every episode is a full replay.

`compare` is the check mode (`DURAFUNC_SESSION_CHECK=1`): the same episode replayed in full from the same
history, and the two answers compared — actions, output, custom status, failure, and what `context.is_replaying`
and `context.current_utc_datetime` returned to user code.
"""
from __future__ import annotations

import functools
import json
import sys
from importlib.metadata import PackageNotFoundError, version
from types import SimpleNamespace
from typing import Any, Callable

ORCHESTRATOR_STARTED = 12


@functools.lru_cache(maxsize=None)
def _sdk() -> SimpleNamespace | None:
    """The SDK's classes, imported on first use (importing the SDK runs its own start-up checks, as when the
    user's code imports it)."""
    try:
        from azure.durable_functions.models.DurableOrchestrationContext import DurableOrchestrationContext
        from azure.durable_functions.models.history.HistoryEvent import HistoryEvent
        from azure.durable_functions.orchestrator import Orchestrator
    except ImportError:  # pragma: no cover - the SDK is a dependency
        return None
    return SimpleNamespace(Context=DurableOrchestrationContext, HistoryEvent=HistoryEvent, Orchestrator=Orchestrator,
                           RecordingContext=_recording_context(DurableOrchestrationContext))


def _sdk_version() -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in version("azure-functions-durable").split(".")[:2])
    except (PackageNotFoundError, ValueError):
        return ()


# tested: 1.2.x (make test-sdk-oldest) through 1.7 (the newest on PyPI when this was written)
SUPPORTED = (1, 2) <= _sdk_version() <= (1, 7)


def user_function(entry: Callable) -> Callable | None:
    """The user's generator function behind an entry point that is the SDK's `Orchestrator.create(fn)` handle
    (v1: `main = df.Orchestrator.create(fn)`; v2: what `@app.orchestration_trigger` registers), else None."""
    fn = getattr(entry, "orchestrator_function", None)      # SDK >= 1.3 sets it
    if fn is None and getattr(entry, "__qualname__", "") == "Orchestrator.create.<locals>.handle" \
            and getattr(entry, "__module__", "") == "azure.durable_functions.orchestrator":
        cells = dict(zip(entry.__code__.co_freevars, entry.__closure__ or ()))
        fn = cells["fn"].cell_contents if "fn" in cells else None
    return fn if callable(fn) else None


def supports(entry: Callable) -> bool:
    return SUPPORTED and user_function(entry) is not None and _sdk() is not None


class SdkOrchestration:
    """One running orchestration's SDK objects."""

    def __init__(self, executor, context):
        self.executor = executor
        self.context = context

    @classmethod
    def open(cls, entry: Callable, context_json: str, *, record: bool = False) -> tuple[str, "SdkOrchestration | None"]:
        """A full replay, as the SDK's handle runs it; returns (state JSON, the objects to continue, or None when
        there is nothing to continue: the orchestrator finished, or is not a generator). Raises as the handle
        does (the SDK's formatted error, from the user's exception)."""
        sdk = _sdk()
        ctx = _context(entry, context_json, sdk.RecordingContext if record else sdk.Context)
        orchestrator = sdk.Orchestrator(user_function(entry))
        state = orchestrator.handle(ctx)
        executor = orchestrator.task_orchestration_executor
        if getattr(executor, "generator", None) is None or executor.has_execution_completed:
            return state, None
        return state, cls(executor, ctx)

    def advance(self, events: list[dict]) -> str:
        """Process the events a full replay would process after those already seen; the state JSON of the
        episode (or the SDK's error, raised as a full replay raises it)."""
        ex, ctx = self.executor, self.context
        new = [_sdk().HistoryEvent(**e) for e in json.loads(json.dumps(events))]   # as from_json reads them
        boundary = max((i for i, e in enumerate(new) if e.event_type == ORCHESTRATOR_STARTED), default=0)
        ctx._histories.extend(new)
        tracks_new = hasattr(ex, "_is_processing_new_events")                # SDK >= 1.5
        if tracks_new:
            ex._is_processing_new_events = False
        for i, event in enumerate(new):
            if tracks_new and i >= boundary:
                ex._is_processing_new_events = True
            ex.process_event(event)
            if ex.has_execution_completed:
                break
        return ex.get_orchestrator_state_str()

    @property
    def done(self) -> bool:
        """The orchestration returned, failed or continued as new: nothing to continue."""
        return self.executor.has_execution_completed

    def observed(self, since: int = 0) -> list:
        """What user code saw (check mode), from the `since`-th observation."""
        return list(getattr(self.context, "observations", ())[since:])


def _context(entry: Callable, context_json: str, cls):
    """The context as the SDK's handle makes it (with the decorator's input type, SDK >= 1.5)."""
    ctx = cls.from_json(context_json)
    ctx._input_expected_type = getattr(entry, "_df_input_type", None)
    return ctx


def _recording_context(base):
    class RecordingContext(base):
        """The SDK's context, noting what `is_replaying` and `current_utc_datetime` return to user code (check
        mode only; the SDK's and durafunc's own reads are not noted)."""

        def __init__(self, *args, **kwargs):
            self.observations: list[tuple[str, Any]] = []
            super().__init__(*args, **kwargs)

        def _note(self, what: str, value) -> None:
            caller = sys._getframe(2).f_globals.get("__name__", "")
            if not caller.startswith(("azure.", "durafunc.")):
                self.observations.append((what, value))

        @property
        def is_replaying(self) -> bool:
            value = base.is_replaying.fget(self)
            self._note("is_replaying", value)
            return value

        @property
        def current_utc_datetime(self):
            value = base.current_utc_datetime.fget(self)
            self._note("current_utc_datetime", value)
            return value

        @current_utc_datetime.setter
        def current_utc_datetime(self, value):
            base.current_utc_datetime.fset(self, value)

    return RecordingContext


def full_replay(entry: Callable, context_json: str) -> tuple[str | BaseException, list]:
    """The check: the same episode as a full replay (an answer or the error it raised, and what user code saw)."""
    sdk = _sdk()
    ctx = _context(entry, context_json, sdk.RecordingContext)
    try:
        return sdk.Orchestrator(user_function(entry)).handle(ctx), ctx.observations
    except Exception as e:  # noqa: BLE001 - user code: the failure is part of the answer
        return e, ctx.observations


def compare(incremental: str | BaseException, full: str | BaseException, seen_now: list, seen_full: list) -> str | None:
    """None when the incremental episode answered as the full replay did, else what differs."""
    if isinstance(incremental, BaseException) or isinstance(full, BaseException):
        a = _error_text(incremental) if isinstance(incremental, BaseException) else f"state {incremental[:300]}"
        b = _error_text(full) if isinstance(full, BaseException) else f"state {full[:300]}"
        return None if a == b else f"incremental: {a} / full replay: {b}"
    ia, fa = json.loads(incremental), json.loads(full)
    for key in sorted(set(ia) | set(fa)):
        if ia.get(key) != fa.get(key):
            return f"{key}: incremental {json.dumps(ia.get(key))[:300]} / full replay {json.dumps(fa.get(key))[:300]}"
    tail = seen_full[len(seen_full) - len(seen_now):] if seen_now else []
    if len(seen_full) < len(seen_now) or tail != seen_now:
        return f"user code saw {seen_now[:10]} incrementally, {tail[:10]} in the full replay"
    return None


def _error_text(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e).split(chr(10), 1)[0]}"


class SessionMismatch(Exception):
    """Check mode: an incremental episode answered differently from the full replay of the same history (a bug
    of durafunc's, never the user's)."""


def run_call(entry: Callable, call, full: Callable[[], str] | None = None, shadow=None) -> str:
    """Run one episode's orchestrator call (an extended.OrchestratorCall) with `entry`, the registered function:
    continue its session, else replay in full — opening a session when the entry is the SDK's handle, else
    through `full` (the plain call of the entry). Raises what the orchestrator raises. `shadow`: a context
    manager for the check's full replay (the host hides its user logs)."""
    sdk = call.session.sdk if call.session is not None else None
    if isinstance(sdk, SdkOrchestration):
        mark = len(sdk.observed())
        try:
            answer: str | BaseException = sdk.advance(call.unseen)
        except Exception as e:  # noqa: BLE001 - user code; raised below, after the check
            answer = e
        if call.check:
            if shadow is not None:
                with shadow():
                    replayed, seen = full_replay(entry, call.context_json())
            else:
                replayed, seen = full_replay(entry, call.context_json())
            diff = compare(answer, replayed, sdk.observed(mark), seen)
            if diff is not None:
                raise SessionMismatch(f"instance {call.instance_id}: the incremental episode differs from a full "
                                      f"replay: {diff}")
        if isinstance(answer, BaseException):
            raise answer
        return answer
    if call.want_session and supports(entry):
        state, call.opened = SdkOrchestration.open(entry, call.context_json(), record=call.check)
        return state
    if full is None:
        raise TypeError("run_call: no session and the entry is not the SDK's handle")
    return full()
