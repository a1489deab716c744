"""`durafunc init` and `durafunc new`: Durable Functions apps and functions from the templates in `templates/`
(plain files with `$placeholders`; a wheel carries them as `durafunc/templates/`)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from string import Template



def _templates_dir() -> Path:
    """`durafunc/templates` of an installed wheel, else the source tree's top-level `templates/`."""
    here = Path(__file__).resolve().parent
    installed, source = here / "templates", here.parent / "templates"
    return installed if (installed / "app").is_dir() else source


TEMPLATES = _templates_dir()
TEMPLATE_NAMES = ["Durable Functions orchestrator", "Durable Functions activity", "Durable Functions HTTP starter",
                  "Durable Functions entity", "HTTP trigger", "Timer trigger", "Blob trigger"]
AUTH_LEVELS = ("anonymous", "function", "admin")
V1_APP = {  # folder -> template, as Core Tools' Python durable quickstart
    "DurableFunctionsHttpStart": ("Durable Functions HTTP starter", {"route": "orchestrators"}),
    "DurableFunctionsOrchestrator": ("Durable Functions orchestrator", {}),
    "Hello": ("Durable Functions activity", {}),
}




def _discovered_templates() -> list[str]:
    """Templates that are files only (a `v2/<name>.py.tmpl` and a `v1/<name>/` folder): adding one needs no code."""
    v2 = {p.name[: -len(".py.tmpl")] for p in (TEMPLATES / "v2").glob("*.py.tmpl")}
    v1 = {p.name for p in (TEMPLATES / "v1").iterdir() if p.is_dir()} if (TEMPLATES / "v1").is_dir() else set()
    return sorted((v1 & v2) - set(TEMPLATE_NAMES), key=str.lower)


TEMPLATE_NAMES = TEMPLATE_NAMES + _discovered_templates()
# Core Tools' names of the same templates
TEMPLATE_ALIASES = {"azure queue storage trigger": "Queue trigger"}


class ScaffoldError(Exception):
    """One-line reason a scaffolding request cannot be done."""


@dataclass
class InitResult:
    folder: Path
    model: str
    hub_name: str
    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)


def hub_name_for(folder_name: str) -> str:
    """A task hub name from a folder name, sanitized as Durable Functions does for default names."""
    name = "".join(c for c in folder_name if c.isascii() and c.isalnum())
    if not name:
        return "DefaultTaskHub"
    if name[0].isdigit():
        name = "t" + name
    name = name[:45]
    if len(name) < 3:
        name += "Hub"
    return name


def list_templates() -> list[str]:
    return list(TEMPLATE_NAMES)


def resolve_template(name: str) -> str:
    wanted = TEMPLATE_ALIASES.get(name.strip().lower(), name).strip().lower()
    for t in TEMPLATE_NAMES:
        if t.lower() == wanted:
            return t
    raise ScaffoldError(f"unknown template '{name}'. Valid templates: " + ", ".join(f"'{t}'" for t in TEMPLATE_NAMES))


def _render(path: Path, **values) -> str:
    return Template(path.read_text()).safe_substitute(**values)


def _write(path: Path, text: str, force: bool, result: InitResult) -> None:
    if path.exists() and not force:
        result.skipped.append(path)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    result.written.append(path)


def init_app(folder: Path, model: str = "v2", force: bool = False) -> InitResult:
    """Create a Durable Functions app in `folder` that runs under `durafunc start` and deploys to Azure."""
    model = model.lower()
    if model not in ("v1", "v2"):
        raise ScaffoldError(f"--model must be v1 or v2, got '{model}'")
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    hub = hub_name_for(folder.name)
    result = InitResult(folder, model, hub)
    app = TEMPLATES / "app"
    _write(folder / "host.json", _render(app / "host.json", hub=hub), force, result)
    _write(folder / "local.settings.json", (app / "local.settings.json").read_text(), force, result)
    durable_req = "azure-functions-durable" if model == "v2" else "azure-functions-durable>=1.2,<2"
    _write(folder / "requirements.txt", f"# Do not include azure-functions-worker; the platform manages it.\n"
                                        f"azure-functions\n{durable_req}\n", force, result)
    _write(folder / ".gitignore", (app / "gitignore").read_text(), force, result)
    _write(folder / ".funcignore", (app / "funcignore").read_text(), force, result)
    if model == "v2":
        _write(folder / "function_app.py", (TEMPLATES / "v2" / "function_app.py").read_text(), force, result)
    else:
        for fn_name, (template, extra) in V1_APP.items():
            for path in _v1_files(fn_name, template, "anonymous", extra.get("route", fn_name)):
                _write(folder / fn_name / path[0], path[1], force, result)
    return result


def _v1_files(name: str, template: str, authlevel: str, route: str | None = None) -> list[tuple[str, str]]:
    src = TEMPLATES / "v1" / template
    values = {"name": route or name, "authlevel": authlevel}
    return [(p.name, _render(p, **values)) for p in sorted(src.iterdir()) if p.is_file()]


def detect_model(app_root: Path) -> str:
    return "v2" if (app_root / "function_app.py").is_file() else "v1"


def _existing_v2_names(files: list[Path]) -> set[str]:
    names = set()
    for f in files:
        if f.is_file():
            text = f.read_text()
            names |= set(re.findall(r"^\s*(?:async\s+)?def\s+([A-Za-z_]\w*)\s*\(", text, re.M))
            names |= set(re.findall(r"function_name\(\s*(?:name\s*=\s*)?[\"']([^\"']+)[\"']", text))
    return {n.lower() for n in names}


def new_function(app_root: Path, template: str, name: str, file: str | None = None,
                 authlevel: str | None = None) -> list[Path]:
    """Add function `name` from `template` to the app; returns the files written or changed."""
    template = resolve_template(template)
    app_root = Path(app_root).resolve()
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name or ""):
        raise ScaffoldError(f"function name '{name}' is not valid: use letters, digits and underscores, "
                            "starting with a letter")
    level = (authlevel or "function").lower()
    if level not in AUTH_LEVELS:
        raise ScaffoldError(f"--authlevel must be one of {', '.join(AUTH_LEVELS)}, got '{authlevel}'")
    if detect_model(app_root) == "v1":
        if file:
            raise ScaffoldError("--file applies to the v2 model (function_app.py) only")
        folder = app_root / name
        if folder.exists():
            raise ScaffoldError(f"a function named '{name}' already exists ({folder})")
        written = []
        for fname, text in _v1_files(name, template, level):
            (folder / fname).parent.mkdir(parents=True, exist_ok=True)
            (folder / fname).write_text(text)
            written.append(folder / fname)
        return written
    main = app_root / "function_app.py"
    target = app_root / file if file else main
    if target.suffix != ".py":
        raise ScaffoldError(f"--file must name a Python file, got '{file}'")
    blueprints = sorted(p for p in app_root.glob("*.py"))
    if name.lower() in _existing_v2_names(blueprints):
        raise ScaffoldError(f"a function named '{name}' already exists in this app")
    snippet = _render(TEMPLATES / "v2" / f"{template}.py.tmpl", name=name, target="bp" if file else "app",
                      authlevel_upper=level.upper())
    changed = []
    if file and not target.exists():
        target.write_text((TEMPLATES / "v2" / "blueprint.py").read_text())
    with target.open("a") as f:
        f.write(snippet)
    changed.append(target)
    if file:
        module = target.stem
        text = main.read_text()
        if not re.search(rf"^from\s+{re.escape(module)}\s+import\s+bp\b", text, re.M):
            with main.open("a") as f:
                f.write(f"\n\nfrom {module} import bp as {module}_bp  # noqa: E402\n\n"
                        f"app.register_functions({module}_bp)\n")
            changed.append(main)
    return changed
