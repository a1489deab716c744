"""Which function invocation a log record belongs to (a contextvar and a logging filter), Core Tools'
`Executing '...'` / `Executed '...'` lines of one invocation, and replay-safe user logs of orchestrators."""
from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
import time
import uuid

invocation: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar("durafunc_invocation",
                                                                                     default=None)

log = logging.getLogger("durafunc.function")

# The reason Core Tools gives for a function the host itself calls (HTTP triggers, POST /admin/functions/{name})
HOST_API_REASON = "This function was programmatically called via the host APIs."


class InvocationFilter(logging.Filter):
    """Adds `function_name` and `invocation_id` to every record (empty outside user code)."""

    def filter(self, record: logging.LogRecord) -> bool:
        current = invocation.get()
        record.function_name, record.invocation_id = current if current else ("", "")
        return True


class InvocationLog:
    """The two lines Core Tools prints for every invocation:

        Executing 'Functions.<name>' (Reason='<reason>', Id=<invocation id>)
        Executed 'Functions.<name>' (Succeeded|Failed, Id=<invocation id>, Duration=<n>ms)

    `quiet` logs them at DEBUG (a replay of an orchestrator that brings nothing new is not a new run). A failure
    adds the user's exception and traceback under the Executed line, once."""

    def __init__(self, function: str, reason: str | None, *, quiet: bool = False,
                 invocation_id: str | None = None):
        self.function = function
        self.reason = reason if reason else "(null)"
        self.id = invocation_id or str(uuid.uuid4())
        self.level = logging.DEBUG if quiet else logging.INFO
        self._t0 = time.monotonic()

    @property
    def duration_ms(self) -> int:
        return int((time.monotonic() - self._t0) * 1000)

    def started(self) -> "InvocationLog":
        self._t0 = time.monotonic()
        log.log(self.level, "Executing 'Functions.%s' (Reason='%s', Id=%s)", self.function, self.reason, self.id)
        return self

    def details(self, text: str) -> None:
        """Core Tools' `Trigger Details: ...` line under the Executing line of a triggered run (a queue message's
        `MessageId: ..., DequeueCount: N, InsertedOn: ...`)."""
        log.log(self.level, "Trigger Details: %s", text)

    def succeeded(self) -> None:
        log.log(self.level, "Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%dms)", self.function, self.id,
                self.duration_ms)

    def failed(self, error: BaseException | None, *, details: bool = True, level: int | None = None) -> None:
        """`details`: the exception and the user's traceback under the line (False: a failure already logged)."""
        text = f"Executed 'Functions.{self.function}' (Failed, Id={self.id}, Duration={self.duration_ms}ms)"
        if details and error is not None:
            text += "\n" + failure_text(error)
        log.log(level if level is not None else (logging.ERROR if self.level == logging.INFO else logging.DEBUG),
                "%s", text)


def _root(error: BaseException) -> BaseException:
    """The innermost cause: the user's exception (the SDK wraps an orchestrator's in its own, with its state)."""
    seen = set()
    while error.__cause__ is not None and id(error) not in seen:
        seen.add(id(error))
        error = error.__cause__
    return error


def failure_text(error: BaseException) -> str:
    """`Result: Failure / Exception: T: message / Stack: ...` as the Python worker reports a failed invocation:
    the user's exception (its first line: a task failure's details JSON stays in the history) and the frames
    of the user's code."""
    root = _root(error)
    if root is not error and not isinstance(root, type(error)):
        type_name, message = type(root).__name__, str(root)
    else:
        type_name = getattr(error, "type_name", None) or type(error).__name__
        message = getattr(error, "message", None)
        message = str(error) if message is None else message
    message = message.strip().split("\n", 1)[0].rstrip()
    lines = ["Result: Failure", f"Exception: {type_name}: {message}"]
    trace = (getattr(error, "traceback_text", "") or "").split("\n")
    frames = []
    for line in trace[1:] if trace and trace[0].startswith("Traceback") else []:
        if not line.startswith("  "):
            break               # the exception lines: already said above
        frames.append(line)
    if frames:
        lines.append("Stack: " + "\n".join(frames).lstrip())
    return "\n".join(lines)


# -- replay-safe user logs --------------------------------------------------------------------------------------

class _OrchestrationRun:
    """The orchestrator invocation running on this task: finds the SDK's DurableOrchestrationContext on first use."""

    __slots__ = ("context", "shadow")

    def __init__(self, shadow: bool = False):
        self.context = None
        self.shadow = shadow      # the check mode's second, full replay of an episode: its user logs are hidden


@contextlib.contextmanager
def shadow_replay():
    """While the check mode replays an episode a second time (durable.sdk_session.run_call)."""
    token = orchestration.set(_OrchestrationRun(shadow=True))
    try:
        yield
    finally:
        orchestration.reset(token)


orchestration: contextvars.ContextVar[_OrchestrationRun | None] = contextvars.ContextVar("durafunc_orchestration",
                                                                                          default=None)


def _orchestration_context_type():
    try:
        from azure.durable_functions.models.DurableOrchestrationContext import DurableOrchestrationContext
    except ImportError:  # pragma: no cover - the SDK is a dependency
        return None
    return DurableOrchestrationContext


def _context_in(frame_locals: dict, ctx_type):
    for value in frame_locals.values():
        if isinstance(value, ctx_type):
            return value
        inner = getattr(value, "context", None) if type(value).__name__ == "TaskOrchestrationExecutor" else None
        if isinstance(inner, ctx_type):
            return inner
    return None


def context_on_stack(frame=None):
    """The SDK's DurableOrchestrationContext of the orchestrator whose code is running on this thread's stack (the
    user's generator holds it as its context argument), or None."""
    ctx_type = _orchestration_context_type()
    if ctx_type is None:
        return None
    frame = frame or sys._getframe(1)
    while frame is not None:
        found = _context_in(frame.f_locals, ctx_type)
        if found is not None:
            return found
        frame = frame.f_back
    return None


def context_of_failure(error: BaseException):
    """The DurableOrchestrationContext an orchestrator failure was raised in (from the frames of its traceback)."""
    ctx_type = _orchestration_context_type()
    if ctx_type is None:
        return None
    seen = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        tb = e.__traceback__
        while tb is not None:
            found = _context_in(tb.tb_frame.f_locals, ctx_type)
            if found is not None:
                return found
            tb = tb.tb_next
        e = e.__cause__ or e.__context__
    return None


def failed_while_replaying(error: BaseException) -> bool:
    """Did the orchestrator raise while the SDK replayed history (the failure of an earlier run, seen again)?"""
    ctx = context_of_failure(error)
    return bool(ctx is not None and getattr(ctx, "is_replaying", False))


class ReplayFilter(logging.Filter):
    """Hides the app's own log records made while its orchestrator replays (`context.is_replaying`), as the
    replay-safe logger of Durable Functions does; `show` keeps them (`durafunc start --show-replay-logs`)."""

    def __init__(self, show: bool = False, system_loggers: tuple[str, ...] = ()):
        super().__init__()
        self.show = show
        self.system = system_loggers

    def filter(self, record: logging.LogRecord) -> bool:
        run = orchestration.get()
        if run is None or record.name.split(".")[0] in self.system:
            return True
        if run.shadow:
            return False
        if self.show:
            return True
        if run.context is None:
            run.context = context_on_stack()
        return not (run.context is not None and getattr(run.context, "is_replaying", False))
