"""Shared fixtures: a real Azurite (in memory, free ports) for the whole session, one task hub per test."""
from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

import pytest

from durafunc.azurite import AzuriteConfig, ManagedAzurite, find_binary

REPO = Path(__file__).resolve().parent.parent

# Every test app and sample runs in the extended sessions' check mode: each incremental episode is also replayed
# in full from the same history and the two answers compared (a difference fails the episode, loudly). The hosts
# the tests start inherit it.
os.environ.setdefault("DURAFUNC_SESSION_CHECK", "1")


@pytest.fixture(scope="session")
def azurite():
    """A ManagedAzurite in memory on free ports. Fails loudly (never skips) when it cannot start."""
    binary = find_binary(REPO)
    assert binary, "Azurite is not installed: run 'make install' (npm install azurite)"
    work = Path(tempfile.mkdtemp(prefix="durafunc-azurite-"))
    cfg = AzuriteConfig(blob_port=0, queue_port=0, table_port=0, in_memory=True)
    m = ManagedAzurite(cfg, work, binary=binary)
    m.start(timeout=60)
    yield m
    m.stop()


@pytest.fixture(scope="session")
def connection_string(azurite) -> str:
    return azurite.connection_string


@pytest.fixture
def hub_name() -> str:
    """A fresh task hub name per test, so tests never share state."""
    return "T" + uuid.uuid4().hex[:16]
