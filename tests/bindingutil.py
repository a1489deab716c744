"""The test's own view of the blobs, queues and tables of one app run (names start with the run's prefix),
through the real Azure SDKs; and waiting for log lines."""
from __future__ import annotations

import base64
import json
import re
import time

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueServiceClient


def wait_log(host, pattern: str, count: int = 1, timeout: float = 20.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.findall(pattern, host.log())
        if len(found) >= count:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{count} x {pattern!r} not in the log:\n{host.log()}")


class Storage:
    def __init__(self, connection_string: str, prefix: str, host_id: str = ""):
        self.blobs = BlobServiceClient.from_connection_string(connection_string)
        self.queues = QueueServiceClient.from_connection_string(connection_string)
        self.prefix, self.host_id = prefix, host_id

    def container(self, suffix: str, full: bool = False):
        return self.blobs.get_container_client(suffix if full else f"{self.prefix}-{suffix}")

    def put(self, suffix: str, name: str, data, metadata: dict | None = None) -> None:
        c = self.container(suffix)
        try:
            c.create_container()
        except ResourceExistsError:
            pass
        c.upload_blob(name, data.encode() if isinstance(data, str) else data, overwrite=True, metadata=metadata)

    def etag(self, suffix: str, name: str) -> str:
        return '"' + self.container(suffix).get_blob_client(name).get_blob_properties().etag.strip('"') + '"'

    def get(self, suffix: str, name: str, binary: bool = False, full: bool = False):
        data = self.container(suffix, full).download_blob(name).readall()
        return data if binary else data.decode()

    def exists(self, suffix: str, name: str, full: bool = False) -> bool:
        try:
            self.container(suffix, full).get_blob_client(name).get_blob_properties()
            return True
        except ResourceNotFoundError:
            return False

    def delete(self, suffix: str, name: str) -> None:
        self.container(suffix).delete_blob(name)

    def names(self, suffix: str, starts_with: str = "") -> list[str]:
        try:
            return sorted(b.name for b in self.container(suffix).list_blobs(name_starts_with=starts_with))
        except ResourceNotFoundError:
            return []

    def wait_blob(self, suffix: str, name: str, until=None, timeout: float = 20.0, full: bool = False) -> str:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = self.get(suffix, name, full=full)
                if until is None or until(last):
                    return last
            except ResourceNotFoundError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"blob {suffix}/{name} is {last!r} after {timeout} s")

    def send(self, suffix: str, text: str) -> None:
        q = self.queues.get_queue_client(f"{self.prefix}-{suffix}")
        try:
            q.create_queue()
        except ResourceExistsError:
            pass
        q.send_message(base64.b64encode(text.encode()).decode())

    def queue_texts(self, name: str) -> list[str]:
        try:
            return [m.content for m in self.queues.get_queue_client(name).peek_messages(max_messages=32)]
        except ResourceNotFoundError:
            return []

    def wait_queue(self, suffix: str, count: int = 1, timeout: float = 20.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            texts = self.queue_texts(f"{self.prefix}-{suffix}")
            if len(texts) >= count:
                return [base64.b64decode(t).decode() for t in texts]
            time.sleep(0.1)
        raise AssertionError(f"queue {self.prefix}-{suffix} has {self.queue_texts(f'{self.prefix}-{suffix}')}")

    def wait_poison(self, container: str, timeout: float = 30.0) -> dict:
        """The BlobTriggerMessage on webjobs-blobtrigger-poison for a blob of `container` (decoded JSON)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for text in self.queue_texts("webjobs-blobtrigger-poison"):
                msg = json.loads(base64.b64decode(text))
                if msg.get("ContainerName") == container:
                    return msg
            time.sleep(0.1)
        raise AssertionError(f"no poison message for {container}")
