"""The record a running `durafunc start` keeps in `.durafunc/run/host-<pid>.json` of its app: where it serves, its
task hub and worker id, its orchestrators. The management commands read it for facts (the status URL of a new
instance, the orchestrators that exist), never guessing a port."""
from __future__ import annotations

import json
import os
from pathlib import Path

from .runfolder import pid_alive, run_dir


def write(app_root: Path, data: dict) -> Path:
    folder = run_dir(app_root)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"host-{os.getpid()}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), **data}))
    tmp.replace(path)
    return path


def remove(path: Path | None) -> None:
    if path is not None:
        Path(path).unlink(missing_ok=True)


def running_hosts(app_root: Path | None) -> list[dict]:
    """Records of the `durafunc start` processes of this app that still run (stale records are removed)."""
    if app_root is None:
        return []
    folder = run_dir(app_root)
    out = []
    for path in sorted(folder.glob("host-*.json")) if folder.is_dir() else []:
        try:
            data = json.loads(path.read_text())
            pid = int(data["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue            # being written, or not ours to judge
        if not pid_alive(pid):
            path.unlink(missing_ok=True)
            continue
        out.append(data)
    return out
