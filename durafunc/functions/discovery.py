"""Discover an app's functions: v1 (`*/function.json`) or v2 (`function_app.py` with FunctionApp/DFApp),
the way the Azure Python worker indexes them."""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import sys
import types
from pathlib import Path
from typing import Mapping

from ..jsonc import loads_jsonc
from .model import (AppLoadError, Binding, FunctionInfo, KNOWN_BINDINGS, LoadError, LoadedApp, durable_name,
                    kind_of)

V2_SCRIPT = "function_app.py"


def load_app(root: Path, *, env: Mapping[str, str], only: list[str] | None = None,
             strict: bool = False, only_source: str = "--functions") -> LoadedApp:
    """Load the app in `root`. Broken functions become LoadErrors (or raise AppLoadError when strict).
    `only` names the functions to keep; a name the app does not have raises AppLoadError naming `only_source`
    (where the list comes from) and the functions the app has."""
    root = Path(root).resolve()
    script = env.get("PYTHON_SCRIPT_FILE_NAME") or V2_SCRIPT
    _forget_modules(root)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    if (root / script).is_file():
        app = _load_v2(root, root / script)
    else:
        app = _load_v1(root)
    if only:
        _check_only(app, only, only_source)
        wanted = {n.lower() for n in only}
        app.functions = {k: v for k, v in app.functions.items() if k.lower() in wanted}
    for name, fn in list(app.functions.items()):
        if str(env.get(f"AzureWebJobs.{name}.Disabled", "")).lower() in ("true", "1") or fn.disabled:
            app.disabled.append(name)
            del app.functions[name]
    if strict and app.errors:
        e = app.errors[0]
        raise AppLoadError(f"{e.file}: {e.reason}")
    return app


def _check_only(app: LoadedApp, only: list[str], source: str) -> None:
    """Every name of `--functions` / host.json `functions` must be a function of the app (broken ones count)."""
    if any(e.function is None for e in app.errors):
        return          # the app itself did not load: that error says more than a missing name
    known = {n.lower() for n in app.functions} | {e.function.lower() for e in app.errors if e.function}
    unknown = [n for n in only if n.lower() not in known]
    if unknown:
        names = ", ".join(sorted(app.functions, key=str.lower)) or "none"
        which = ", ".join(f"'{n}'" for n in unknown)
        raise AppLoadError(f"{source}: no function named {which} in this app (its functions: {names})")


def _methods(value, where: Path, name: str) -> list[str] | None:
    """`methods` of an HTTP trigger: a list of method names; a single string means that one method (as the
    Functions host reads "methods": "get")."""
    if value is None or value == []:
        return None
    if isinstance(value, str):
        value = [m for m in value.replace(",", " ").split() if m]
    if not isinstance(value, (list, tuple)) or not all(isinstance(m, str) and m.strip() for m in value):
        raise _Broken(where, f"function '{name}': 'methods' must be a list of HTTP method names, got {value!r}")
    return [str(m).strip().upper() for m in value] or None


def _check_route(route: str | None, where: Path, name: str) -> None:
    from .routes import RouteError, compile_route
    try:
        compile_route(route or name)
    except RouteError as e:
        raise _Broken(where, f"function '{name}': {e}") from None


def _forget_modules(root: Path) -> None:
    """Drop the app's modules from sys.modules so a reload imports the new code."""
    prefix = str(root)
    for name, mod in list(sys.modules.items()):
        if name == "__app__" or name.startswith("__app__.") or name == "function_app":
            del sys.modules[name]
            continue
        f = getattr(mod, "__file__", None)
        if f and str(f).startswith(prefix + "/") and "/.venv/" not in str(f) and "site-packages" not in str(f):
            del sys.modules[name]


# -- v1 ------------------------------------------------------------------------------------------

def _load_v1(root: Path) -> LoadedApp:
    app = LoadedApp(root=root, model="v1")
    pkg = types.ModuleType("__app__")
    pkg.__path__ = [str(root)]
    sys.modules["__app__"] = pkg
    for fj in sorted(root.glob("*/function.json")):
        folder = fj.parent
        name = folder.name
        try:
            info = _load_v1_function(root, folder, fj)
        except _Broken as e:
            app.errors.append(LoadError(name, str(e.file), e.reason))
            continue
        app.functions[name] = info
    return app


class _Broken(Exception):
    def __init__(self, file, reason: str):
        super().__init__(reason)
        self.file, self.reason = file, reason


def _load_v1_function(root: Path, folder: Path, fj: Path) -> FunctionInfo:
    name = folder.name
    try:
        meta = loads_jsonc(fj.read_text(encoding="utf-8-sig"))
    except ValueError as e:
        raise _Broken(fj, f"invalid JSON: {e}") from None
    if not isinstance(meta, dict):
        raise _Broken(fj, "expected a JSON object")
    raw_bindings = meta.get("bindings")
    if not isinstance(raw_bindings, list) or not raw_bindings:
        raise _Broken(fj, "'bindings' must be a non-empty list")
    bindings = []
    for i, b in enumerate(raw_bindings):
        if not isinstance(b, dict) or not b.get("type") or not b.get("name"):
            raise _Broken(fj, f"bindings[{i}] needs 'type' and 'name'")
        direction = str(b.get("direction", "in")).lower()
        if direction not in ("in", "out", "inout"):
            raise _Broken(fj, f"bindings[{i}] ('{b['name']}'): direction must be 'in' or 'out', got '{direction}'")
        if str(b["type"]).lower() not in KNOWN_BINDINGS:
            raise _Broken(fj, f"bindings[{i}] ('{b['name']}'): unknown binding type '{b['type']}'")
        if b["name"] == "$return" and direction != "out":
            raise _Broken(fj, "'$return' binding must be direction 'out'")
        bindings.append(Binding(str(b["type"]), direction, str(b["name"]), b))
    triggers = [b for b in bindings if b.is_trigger]
    if len(triggers) != 1:
        raise _Broken(fj, f"a function needs exactly one trigger binding, found {len(triggers)}")
    script = folder / meta.get("scriptFile", "__init__.py")
    if not script.is_file():
        raise _Broken(script, f"script file '{meta.get('scriptFile', '__init__.py')}' not found")
    module_name = f"__app__.{name}" if script.name == "__init__.py" else f"__app__.{name}.{script.stem}"
    try:
        if script.name != "__init__.py" and not (folder / "__init__.py").exists():
            pkg = types.ModuleType(f"__app__.{name}")
            pkg.__path__ = [str(folder)]
            sys.modules[pkg.__name__] = pkg
        module = importlib.import_module(module_name)
    except Exception as e:  # noqa: BLE001 - user code
        raise _Broken(script, f"import failed: {type(e).__name__}: {e}") from None
    entry_name = meta.get("entryPoint", "main")
    entry = getattr(module, entry_name, None)
    if entry is None or not callable(entry):
        raise _Broken(script, f"entry point '{entry_name}' not found (set 'entryPoint' in function.json)")
    _check_params(script, name, entry, bindings)
    trigger = triggers[0]
    kind = kind_of(trigger)
    methods = _methods(trigger.raw.get("methods"), fj, name) if kind == "http" else None
    if kind == "http":
        _check_route(trigger.raw.get("route"), fj, name)
    return FunctionInfo(
        name=name, kind=kind, trigger=trigger, bindings=bindings, script_file=script, entry=entry,
        is_async=inspect.iscoroutinefunction(entry), durable_name=durable_name(name, trigger),
        route=(trigger.raw.get("route") or name) if kind == "http" else None,
        methods=methods,
        auth_level=trigger.raw.get("authLevel") if kind == "http" else None,
        disabled=bool(meta.get("disabled")), directory=folder)


def _check_params(script: Path, name: str, entry, bindings: list[Binding]) -> None:
    try:
        params = inspect.signature(entry).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return
    declared = {b.name for b in bindings if b.name != "$return"}
    pnames = set(params)
    missing = declared - pnames
    if missing:
        raise _Broken(script, f"cannot load the {name} function: the following parameters are declared in "
                              f"function.json but not in Python: {sorted(missing)}")
    extra = {p for p in pnames - declared if p != "context"
             and params[p].default is inspect.Parameter.empty}
    if extra:
        raise _Broken(script, f"cannot load the {name} function: the following parameters are declared in "
                              f"Python but not in function.json: {sorted(extra)}")


# -- v2 ------------------------------------------------------------------------------------------

def _load_v2(root: Path, script: Path) -> LoadedApp:
    app = LoadedApp(root=root, model="v2")
    try:
        spec = importlib.util.spec_from_file_location(script.stem, script)
        module = importlib.util.module_from_spec(spec)
        sys.modules[script.stem] = module
        spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - user code
        sys.modules.pop(script.stem, None)
        app.errors.append(LoadError(None, str(script), f"import failed: {type(e).__name__}: {e}"))
        return app
    from azure.functions.decorators.function_app import FunctionRegister
    registers = [v for v in vars(module).values() if isinstance(v, FunctionRegister)]
    if not registers:
        app.errors.append(LoadError(None, str(script), f"Could not find top level function app instances in "
                                                       f"{script.name}."))
        return app
    if len(registers) > 1:
        app.errors.append(LoadError(None, str(script), f"More than one top level function app instances are "
                                                       f"defined in {script.name}."))
        return app
    try:
        functions = registers[0].get_functions()
    except Exception as e:  # noqa: BLE001 - the SDK validates the decorators here
        app.errors.append(LoadError(None, str(script), f"{type(e).__name__}: {e}"))
        return app
    for fn in functions:
        name = fn.get_function_name()
        try:
            app.functions[name] = _v2_function(root, script, fn, name)
        except _Broken as e:
            app.errors.append(LoadError(name, str(e.file), e.reason))
    return app


def _v2_function(root: Path, script: Path, fn, name: str) -> FunctionInfo:
    bindings = []
    for raw in fn.get_raw_bindings():
        b = json.loads(raw) if isinstance(raw, str) else dict(raw)
        direction = str(b.get("direction", "IN")).lower()
        btype = str(b.get("type", ""))
        if btype.lower() not in KNOWN_BINDINGS:
            raise _Broken(script, f"function '{name}': unknown binding type '{btype}'")
        bindings.append(Binding(btype, direction, str(b.get("name")), b))
    triggers = [b for b in bindings if b.is_trigger]
    if len(triggers) != 1:
        raise _Broken(script, f"function '{name}' needs exactly one trigger, found {len(triggers)}")
    trigger = triggers[0]
    entry = fn.get_user_function()
    kind = kind_of(trigger)
    methods = _methods(trigger.raw.get("methods"), script, name) if kind == "http" else None
    if kind == "http":
        _check_route(trigger.raw.get("route"), script, name)
    src = Path(getattr(fn, "function_script_file", None) or inspect.getsourcefile(entry) or script)
    return FunctionInfo(
        name=name, kind=kind, trigger=trigger, bindings=bindings, script_file=src, entry=entry,
        is_async=inspect.iscoroutinefunction(entry), durable_name=durable_name(name, trigger),
        route=(trigger.raw.get("route") or name) if kind == "http" else None,
        methods=methods,
        auth_level=str(trigger.raw.get("authLevel")) if kind == "http" and trigger.raw.get("authLevel") else None,
        directory=root)
