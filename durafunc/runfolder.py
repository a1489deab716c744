"""`.durafunc/run/` of an app: the records durafunc keeps of the processes it runs for it (hosts, Azurites), and
whether a recorded pid still runs."""
from __future__ import annotations

import os
from pathlib import Path


def run_dir(app_root: Path) -> Path:
    return Path(app_root) / ".durafunc" / "run"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
