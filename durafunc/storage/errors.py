"""Errors raised by the task hub storage layer, and the translation of transport failures into them."""
from __future__ import annotations

import functools
from typing import Awaitable, Callable, TypeVar

from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

T = TypeVar("T")

_UNAVAILABLE_STATUS = frozenset({500, 502, 503, 504})


class StorageError(Exception):
    """Base class of the storage layer's own errors."""


class SplitBrainError(StorageError):
    """Another worker committed history for this instance first (sentinel 409/412): abort and replay later."""


class MessageFormatError(StorageError, ValueError):
    """A queue message that is not a DTFx MessageData."""


class StorageUnavailableError(StorageError):
    """The storage service cannot be reached or is overloaded; back off and retry."""


def is_unavailable(error: BaseException) -> bool:
    import asyncio

    import aiohttp
    if isinstance(error, (ServiceRequestError, ServiceResponseError, ConnectionError,
                          aiohttp.ClientConnectionError, asyncio.TimeoutError)):
        return True
    if type(error).__name__ in ("RawStatusError", "BatchFailed"):
        return getattr(error, "status_code", None) in _UNAVAILABLE_STATUS
    return isinstance(error, HttpResponseError) and error.status_code in _UNAVAILABLE_STATUS


def guard(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Decorate an async storage call: connection failures and 5xx become StorageUnavailableError."""
    @functools.wraps(fn)
    async def wrapper(*args, **kwargs):
        try:
            return await fn(*args, **kwargs)
        except StorageError:
            raise
        except Exception as e:
            if is_unavailable(e):
                raise StorageUnavailableError(f"storage unavailable: {type(e).__name__}: {e}") from e
            raise
    return wrapper
