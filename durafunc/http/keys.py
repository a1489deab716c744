"""Host keys for `--enable-auth`, named as on Azure: the master key (every route), function keys (user functions
of `function` level), and the Durable extension's system key `durabletask_extension` (the Durable HTTP API and the
client binding's RPC base). Kept in `.durafunc/keys.json` of the app, readable by its owner only (0600).

A key is given as `?code=<key>`, as the `x-functions-key` header (both as on Azure), or as the password of HTTP
Basic authentication: that is how the SDK's client, which calls the RPC base from inside a user function and
adds no key of its own, carries the system key (the binding's `rpcBaseUrl` holds it as user info).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import secrets
import stat
from pathlib import Path

from ..settings import SettingsError

log = logging.getLogger("durafunc.http")

SYSTEM_KEY_NAME = "durabletask_extension"
DEFAULT_FUNCTION_KEY = "default"


class KeysError(SettingsError):
    """keys.json cannot be used: one line naming the file and the field."""


def new_key() -> str:
    return secrets.token_urlsafe(32)


def _named_keys(value, path: Path, field: str) -> dict[str, str]:
    """`{"name": "value"}` (durafunc's shape) or Azure's `[{"name": ..., "value": ...}]` -> name -> value."""
    if value is None:
        return {}
    if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        return dict(value)
    if isinstance(value, list) and all(isinstance(k, dict) and isinstance(k.get("name"), str)
                                       and isinstance(k.get("value"), str) for k in value):
        return {k["name"]: k["value"] for k in value}
    raise KeysError(f"{path}: {field}: must map key names to key strings, e.g. {{\"default\": \"...\"}}")


def _master(value, path: Path) -> str | None:
    if value is None:
        return None
    if isinstance(value, dict):            # Azure's {"name": "master", "value": "..."}
        value = value.get("value")
    if not isinstance(value, str) or not value:
        raise KeysError(f"{path}: masterKey: must be a non-empty string")
    return value


def _write_private(path: Path, data: dict) -> None:
    """Write `data` as JSON readable by the owner only (0600), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(data, indent=2) + "\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


class Keys:
    """The keys of `.durafunc/keys.json`, created on first use, completed when a kind is missing, made 0600."""

    def __init__(self, path: Path):
        self.path = Path(path)
        data: dict = {}
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8-sig"))
            except ValueError as e:
                raise KeysError(f"{self.path}: invalid JSON: {e}") from None
            if not isinstance(data, dict):
                raise KeysError(f"{self.path}: must be a JSON object with masterKey, functionKeys, systemKeys")
        self.master = _master(data.get("masterKey"), self.path)
        self.function_keys = _named_keys(data.get("functionKeys"), self.path, "functionKeys")
        self.system_keys = _named_keys(data.get("systemKeys"), self.path, "systemKeys")
        changed = not self.path.is_file()
        if self.master is None:
            self.master, changed = new_key(), True
        if not self.function_keys:
            self.function_keys, changed = {DEFAULT_FUNCTION_KEY: new_key()}, True
        if SYSTEM_KEY_NAME not in self.system_keys:
            self.system_keys[SYSTEM_KEY_NAME], changed = new_key(), True
        if changed:
            _write_private(self.path, self.to_json())
        else:
            self._make_private()

    def to_json(self) -> dict:
        return {"masterKey": self.master, "functionKeys": dict(self.function_keys),
                "systemKeys": dict(self.system_keys)}

    def _make_private(self) -> None:
        mode = stat.S_IMODE(self.path.stat().st_mode)
        if mode & 0o077:
            os.chmod(self.path, 0o600)
            log.warning("%s was readable by others (mode %o); it is now 0600", self.path, mode)

    @property
    def system(self) -> str:
        """The Durable extension's system key (`durabletask_extension`)."""
        return self.system_keys[SYSTEM_KEY_NAME]

    # -- checking a request ---------------------------------------------------------------------------
    @staticmethod
    def given(request) -> str | None:
        """The key a request carries: `?code=`, `x-functions-key`, else a Basic authentication password."""
        key = request.query.get("code") or request.headers.get("x-functions-key")
        if key:
            return key
        auth = request.headers.get("Authorization", "")
        if auth[:6].lower() == "basic ":
            try:
                _, _, password = base64.b64decode(auth[6:].strip(), validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                return None
            return password or None
        return None

    @staticmethod
    def _same(a: str | None, b: str | None) -> bool:
        return bool(a) and bool(b) and hmac.compare_digest(a.encode(), b.encode())

    def is_master(self, key: str | None) -> bool:
        return self._same(key, self.master)

    def allows(self, request, auth_level: str | None) -> bool:
        """A user function of `auth_level` (anonymous, function, admin)."""
        level = (auth_level or "function").lower()
        if level == "anonymous":
            return True
        key = self.given(request)
        if self.is_master(key):
            return True
        return level == "function" and any(self._same(key, k) for k in self.function_keys.values())

    def allows_system(self, request) -> bool:
        """The Durable HTTP API and the RPC base: the `durabletask_extension` system key or the master key."""
        key = self.given(request)
        return self.is_master(key) or self._same(key, self.system)

    def allows_admin(self, request) -> bool:
        return self.is_master(self.given(request))

    def session_token(self, purpose: str) -> str:
        """A value derived from the master key (for the dashboard's cookie): changes when the master key does."""
        return hmac.new(self.master.encode(), purpose.encode(), hashlib.sha256).hexdigest()
