"""Gzip blobs in `h-largemessages` for queue messages and table properties too large to store inline (§2.6, §4.5)."""
from __future__ import annotations

import asyncio
import gzip
from urllib.parse import quote, unquote, urlsplit

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

from .account import StorageAccount
from .errors import guard
from .names import escape_key

_DELETE_CONCURRENCY = 16


def compress(text: str) -> bytes:
    return gzip.compress(text.encode("utf-8"), compresslevel=6)


def decompress(data: bytes) -> str:
    return gzip.decompress(data).decode("utf-8")


class LargeMessages:
    def __init__(self, account: StorageAccount, container_name: str):
        self.account = account
        self.container_name = container_name
        self._container = None

    @property
    def container(self):
        if self._container is None:
            self._container = self.account.blob_service.get_container_client(self.container_name)
        return self._container

    @property
    def container_url(self) -> str:
        return self.container.url.rstrip("/")

    def url(self, name: str) -> str:
        """Absolute blob URL, each '/'-separated segment percent-escaped (Uri.EscapeDataString)."""
        return self.container_url + "/" + "/".join(quote(seg, safe="") for seg in name.split("/"))

    def name_from_url(self, url: str) -> str | None:
        """The blob name in this container that `url` points at, or None if it is not such a URL."""
        try:
            parts = urlsplit(url)
        except ValueError:
            return None
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return None
        segments = parts.path.split("/")
        if self.container_name not in segments:
            return None
        rest = segments[segments.index(self.container_name) + 1:]
        return "/".join(unquote(s) for s in rest) or None

    def is_blob_url(self, value: object) -> bool:
        return isinstance(value, str) and value.startswith(("http://", "https://")) and " " not in value \
            and self.name_from_url(value) is not None

    @guard
    async def upload(self, name: str, text: str) -> None:
        """Upload gzip(UTF-8 text), overwriting; the container is created when the first upload finds none."""
        data = compress(text)
        blob = self.container.get_blob_client(name)
        try:
            await blob.upload_blob(data, overwrite=True)
        except ResourceNotFoundError:
            try:
                await self.container.create_container()
            except ResourceExistsError:
                pass
            await blob.upload_blob(data, overwrite=True)

    @guard
    async def download(self, name: str) -> str:
        stream = await self.container.get_blob_client(name).download_blob()
        return decompress(await stream.readall())

    async def download_url(self, url: str) -> str:
        name = self.name_from_url(url)
        if name is None:
            raise ValueError(f"not a blob URL of container '{self.container_name}': {url}")
        return await self.download(name)

    @guard
    async def delete_prefix(self, prefix: str) -> int:
        """Delete every blob whose name starts with `prefix` (no trailing '/' added); returns the count."""
        container = self.container
        try:
            names = [b.name async for b in container.list_blobs(name_starts_with=prefix)]
        except ResourceNotFoundError:
            return 0
        sem = asyncio.Semaphore(_DELETE_CONCURRENCY)

        async def delete(name: str) -> int:
            async with sem:
                try:
                    await container.delete_blob(name)
                    return 1
                except ResourceNotFoundError:
                    return 0
        return sum(await asyncio.gather(*(delete(n) for n in names)))

    async def delete_instance_blobs(self, instance_id: str) -> int:
        """Delete the instance's message blobs (`{raw id}/...`) and property blobs (`{escaped id}/...`).

        Unlike DTFx's purge the prefixes end with '/', so `abc` does not take `abcd`'s blobs with it."""
        prefixes = {instance_id + "/", escape_key(instance_id) + "/"}
        return sum(await asyncio.gather(*(self.delete_prefix(p) for p in prefixes)))
