"""The host ID (the WebJobs host's identity in storage: blob receipts, the blob trigger queue), as the Functions
host derives it: `AzureFunctionsJobHost__id` when set, else, locally, the machine name and a stable hash of the
app's path (`<machine>-<hash>`, lower-case, at most 32 characters)."""
from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Mapping

from .errors import BindingError

MAX_LENGTH = 32
SETTINGS = ("AzureFunctionsJobHost__id", "AzureFunctionsJobHost:id")
HOST_ID_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")


def stable_hash(value: str) -> int:
    """Utility.GetStableHash of the Functions host: 23, then hash * 31 + each UTF-16 code unit, as a wrapping
    32-bit integer."""
    h = 23
    data = value.encode("utf-16-le")
    for i in range(0, len(data), 2):
        h = (h * 31 + int.from_bytes(data[i:i + 2], "little")) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def machine_name() -> str:
    """Environment.MachineName on Linux and macOS: the host name up to its first dot."""
    return socket.gethostname().split(".")[0]


def default_host_id(script_path: str, machine: str | None = None) -> str:
    sanitized = "".join(c for c in (machine if machine is not None else machine_name()) if c.isalnum())
    host_id = f"{sanitized}-{abs(stable_hash(script_path))}"[:MAX_LENGTH]
    return host_id.lower().rstrip("-")


def host_id(app_root: Path | str, env: Mapping[str, str]) -> str:
    for name in SETTINGS:
        for key, value in env.items():
            if key.lower() == name.lower() and value:
                configured = value.strip().lower()
                if not HOST_ID_RE.match(configured):
                    raise BindingError(f"{key}: '{value}' is not a valid host ID (1-32 lower-case letters, digits "
                                       "and dashes, not starting or ending with a dash)")
                return configured
    return default_host_id(str(Path(app_root)))
