"""Where the host-less Durable host keeps its instances: one JSON blob per instance in storage.

The Durable extension keeps a task hub in the app's storage account (an Instances table, a
History table, control and work-item queues, a large-messages container), so orchestrations
survive any restart of the Functions host. ``DurableHost`` (stylebatch/durable_host.py) keeps
the same promise locally with this store, in the same storage (Azurite):

- container ``<taskhub>-instances``, blob ``<instance id>.json``: the instance's name, input,
  runtime status, custom status, output, history, the events not yet replayed and the pending
  timers — everything needed to carry on after a crash;
- each save is one Put Blob of the whole record, which storage applies atomically: a reader
  after a crash sees the previous record or the new one, never half of each;
- small state of the local trigger stand-ins (the blob poller's checkpoint) lives beside them
  under ``_host/``.

How this differs from the extension's storage, and why, is written down in
docs/local-durability.md.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient

log = logging.getLogger(__name__)

_HOST_PREFIX = "_host/"


class BlobInstanceStore:
    """Instance records as JSON blobs in ``<taskhub>-instances``."""

    def __init__(self, service: BlobServiceClient, task_hub: str = "stylebatch"):
        self.container: ContainerClient = service.get_container_client(
            f"{task_hub.lower()}-instances")
        try:
            self.container.create_container()
        except ResourceExistsError:
            pass

    @classmethod
    def from_connection_string(cls, conn: str, task_hub: str = "stylebatch"
                               ) -> BlobInstanceStore:
        return cls(BlobServiceClient.from_connection_string(conn), task_hub)

    def load_all(self) -> list[dict[str, Any]]:
        """Every instance record; an unreadable one is logged and skipped."""
        records = []
        for blob in self.container.list_blobs():
            if blob.name.startswith(_HOST_PREFIX) or not blob.name.endswith(".json"):
                continue
            try:
                records.append(json.loads(self.container.download_blob(blob.name).readall()))
            except (ValueError, ResourceNotFoundError) as exc:
                log.error("skipping unreadable instance record %s: %s", blob.name, exc)
        return records

    def save(self, record: dict[str, Any]) -> None:
        self.container.upload_blob(f"{record['id']}.json", json.dumps(record).encode(),
                                   overwrite=True)

    def read_host_state(self, name: str) -> Any:
        try:
            return json.loads(self.container.download_blob(_HOST_PREFIX + name).readall())
        except (ResourceNotFoundError, ValueError):
            return None

    def write_host_state(self, name: str, value: Any) -> None:
        self.container.upload_blob(_HOST_PREFIX + name, json.dumps(value).encode(),
                                   overwrite=True)
