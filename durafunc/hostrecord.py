"""The record a running `durafunc start` keeps in `.durafunc/run/host-<pid>.json` of its app: where it serves, its
task hub and worker id, its orchestrators. The management commands read it for facts (the status URL of a new
instance, the orchestrators that exist), never guessing a port."""
from __future__ import annotations

import json
import os
from pathlib import Path


def _folder(app_root: Path) -> Path:
    return Path(app_root) / ".durafunc" / "run"


def write(app_root: Path, data: dict) -> Path:
    folder = _folder(app_root)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"host-{os.getpid()}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), **data}))
    tmp.replace(path)
    return path


def remove(path: Path | None) -> None:
    if path is not None:
        Path(path).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_hosts(app_root: Path | None) -> list[dict]:
    """Records of the `durafunc start` processes of this app that still run (stale records are removed)."""
    if app_root is None:
        return []
    folder = _folder(app_root)
    out = []
    for path in sorted(folder.glob("host-*.json")) if folder.is_dir() else []:
        try:
            data = json.loads(path.read_text())
            pid = int(data["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue            # being written, or not ours to judge
        if not _alive(pid):
            path.unlink(missing_ok=True)
            continue
        out.append(data)
    return out
