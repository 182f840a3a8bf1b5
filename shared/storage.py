"""Blob storage: one small facade over azure-storage-blob used by every part of the app.

- Locally (Azurite) it connects with a connection string and signs SAS with the account key.
- In Azure it connects to ``STORAGE_ACCOUNT_URL`` with the app's managed identity
  (``DefaultAzureCredential``) and signs SAS with a *user delegation key*: short-lived,
  scoped to one blob, read-only or create/write-only, never an account key. Over an https
  endpoint every SAS also demands https (``spr=https``); Azurite runs over plain http.

Files move by streaming (chunked upload/download straight to and from disk), never by
holding a whole video in memory.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ResourceNotModifiedError,
)
from azure.storage.blob import (
    BlobSasPermissions,
    BlobServiceClient,
    generate_blob_sas,
)

from shared.jobs import CONTAINERS, validate_blob_name
from shared.settings import Settings

log = logging.getLogger(__name__)

# Azurite's well-known development account. Its Copy Blob reads the whole source in one go:
# 250 MB copied in 6 s on an idle machine, but a 243 MB copy under load and a 1.45 GB one
# answered 500 after about two minutes (Azure's takes any size, finishing asynchronously).
# Against it, a blob over 32 MiB is copied block by block through this process instead
# (``BlobCopy``): the local host is one machine anyway.
EMULATOR_ACCOUNT = "devstoreaccount1"
EMULATOR_COPY_LIMIT = 32 * 1024**2
_COPY_BLOCK = 8 * 1024**2
_TRANSFER = {"max_single_put_size": 8 * 1024**2, "max_block_size": 8 * 1024**2,
             "max_single_get_size": 8 * 1024**2, "max_chunk_get_size": 8 * 1024**2}


@dataclass(frozen=True)
class BlobInfo:
    name: str
    size: int
    etag: str
    metadata: dict[str, str]
    last_modified: datetime


class BlobStore:
    """The app's view of its storage account."""

    def __init__(self, service: BlobServiceClient, account_key: str | None = None):
        self.service = service
        self.account_name: str = service.account_name  # type: ignore[assignment]
        self.emulator = self.account_name == EMULATOR_ACCOUNT
        self._account_key = account_key
        self._delegation_key: Any = None
        self._delegation_expiry = datetime.min.replace(tzinfo=UTC)
        self._lock = threading.Lock()

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def from_settings(cls, settings: Settings) -> BlobStore:
        if settings.storage_connection_string:
            service = BlobServiceClient.from_connection_string(
                settings.storage_connection_string, **_TRANSFER)
            key = _connection_string_part(settings.storage_connection_string, "AccountKey")
            return cls(service, account_key=key)
        if settings.storage_account_url:
            from azure.identity import DefaultAzureCredential

            service = BlobServiceClient(settings.storage_account_url,
                                        credential=DefaultAzureCredential(), **_TRANSFER)
            return cls(service)
        raise ValueError("no storage configured: set STORAGE_ACCOUNT_URL (Azure, managed "
                         "identity) or STORAGE_CONNECTION_STRING (Azurite)")

    def ensure_containers(self) -> None:
        for name in CONTAINERS:
            try:
                self.service.create_container(name)
            except ResourceExistsError:
                pass

    # -- blobs ------------------------------------------------------------------------------

    def blob(self, container: str, name: str):
        return self.service.get_blob_client(container, validate_blob_name(name))

    def info(self, container: str, name: str) -> BlobInfo | None:
        try:
            p = self.blob(container, name).get_blob_properties()
        except ResourceNotFoundError:
            return None
        return BlobInfo(name=name, size=p.size, etag=p.etag.strip('"'),
                        metadata=dict(p.metadata or {}), last_modified=p.last_modified)

    def exists(self, container: str, name: str) -> bool:
        return self.blob(container, name).exists()

    def upload_file(self, container: str, name: str, path: str | os.PathLike,
                    metadata: dict[str, str] | None = None,
                    content_type: str | None = None, *, overwrite: bool = True,
                    if_etag: str | None = None) -> None:
        """Upload a file. ``overwrite=False`` writes only if no blob has the name (raises
        ResourceExistsError otherwise); ``if_etag`` replaces only that version of the blob
        (raises ResourceModifiedError if it changed)."""
        from azure.storage.blob import ContentSettings

        settings = ContentSettings(content_type=content_type) if content_type else None
        condition = _if_match(if_etag)
        with open(path, "rb") as fh:
            self.blob(container, name).upload_blob(
                fh, overwrite=overwrite or bool(condition), metadata=metadata,
                content_settings=settings, max_concurrency=4, **condition)

    def block_writer(self, container: str, name: str) -> BlockWriter:
        """A blob written block by block (each staged as it is ready, then committed whole)."""
        return BlockWriter(self.blob(container, name))

    def blob_copy(self, source: tuple[str, str], dest: tuple[str, str],
                  ttl: timedelta = timedelta(hours=1)) -> BlobCopy:
        """A blob ``dest`` (container, name) to be written by a server-side copy of ``source``
        (``BlobCopy``); ``ttl``: how long the service may read the source for it."""
        return BlobCopy(self, source, dest, ttl)

    def copy_state(self, container: str, name: str) -> CopyState | None:
        """The last copy into a blob (``BlobCopy``), or None when there is no such blob."""
        try:
            p = self.blob(container, name).get_blob_properties()
        except ResourceNotFoundError:
            return None
        copy = p.copy
        status = getattr(copy.status, "value", copy.status) if copy and copy.status else None
        return CopyState(status=status, description=copy.status_description if copy else None,
                         metadata=dict(p.metadata or {}))

    def download_file(self, container: str, name: str, path: str | os.PathLike) -> int:
        """Stream a blob to ``path`` (written atomically). Returns its size."""
        path = Path(path)
        tmp = path.with_name(path.name + ".part")
        with open(tmp, "wb") as fh:
            size = self.blob(container, name).download_blob(max_concurrency=4).readinto(fh)
        os.replace(tmp, path)
        return size

    def read_bytes(self, container: str, name: str) -> bytes:
        return self.blob(container, name).download_blob().readall()

    def write_bytes(self, container: str, name: str, data: bytes, *, overwrite: bool = True,
                    if_etag: str | None = None) -> None:
        """Write a small blob; ``overwrite`` and ``if_etag`` as in ``upload_file``."""
        condition = _if_match(if_etag)
        self.blob(container, name).upload_blob(data, overwrite=overwrite or bool(condition),
                                               **condition)

    def read_json(self, container: str, name: str) -> Any:
        return json.loads(self.read_bytes(container, name))

    def read_if_changed(self, container: str, name: str,
                        etag: str | None) -> tuple[bytes, str] | None:
        """The blob's bytes and ETag, or None when it is still version ``etag``: one
        conditional request (If-None-Match) that transfers no content while unchanged."""
        condition = {"etag": f'"{etag}"', "match_condition": MatchConditions.IfModified} \
            if etag else {}
        try:
            downloader = self.blob(container, name).download_blob(**condition)
        except (ResourceNotModifiedError, ResourceModifiedError) as exc:
            # A 304; the SDK names it by the error code the service sends (ConditionNotMet).
            if exc.status_code == 304:
                return None
            raise
        return downloader.readall(), downloader.properties.etag.strip('"')

    def write_json(self, container: str, name: str, value: Any) -> None:
        self.write_bytes(container, name, json.dumps(value, separators=(",", ":")).encode())

    def list(self, container: str, prefix: str = "") -> Iterator[BlobInfo]:
        for b in self.service.get_container_client(container).list_blobs(
                name_starts_with=prefix or None, include=["metadata"]):
            yield BlobInfo(name=b.name, size=b.size, etag=b.etag.strip('"'),
                           metadata=dict(b.metadata or {}), last_modified=b.last_modified)

    def source(self, container: str, name: str, etag: str | None = None) -> BlobFile:
        """A re-openable, seekable reader over a blob, for ``shared.video``. With ``etag``
        every read is conditional on that version: if the blob is replaced, reads fail with
        ResourceModifiedError instead of mixing two versions."""
        return BlobFile(self, container, validate_blob_name(name), etag)

    def delete(self, container: str, name: str) -> bool:
        try:
            self.blob(container, name).delete_blob(delete_snapshots="include")
            return True
        except ResourceNotFoundError:
            return False

    def delete_prefix(self, container: str, prefix: str) -> int:
        """Delete every blob under ``prefix`` (which must end with '/'). Returns how many."""
        assert prefix.endswith("/") and validate_blob_name(prefix.rstrip("/")), prefix
        names = [b.name for b in self.list(container, prefix)]
        client = self.service.get_container_client(container)
        for start in range(0, len(names), 256):
            batch = names[start:start + 256]
            try:
                client.delete_blobs(*batch)
            except Exception:  # some emulators lack batch delete: fall back blob by blob
                for n in batch:
                    self.delete(container, n)
        return len(names)

    def allow_browser(self, origins: list[str]) -> None:
        """CORS for the web page: a browser on ``origins`` may upload blocks with an upload
        URL and read with a read URL (the SAS still decides what each request may do).
        Azure's rule lives in infra/modules/storage.bicep; this sets Azurite's."""
        from azure.storage.blob import CorsRule

        self.service.set_service_properties(cors=[CorsRule(
            origins, ["GET", "HEAD", "PUT", "OPTIONS"], allowed_headers=["*"],
            exposed_headers=["etag", "x-ms-request-id", "content-length", "content-range"],
            max_age_in_seconds=3600)])

    # -- shared access signatures -------------------------------------------------------------

    def _signing(self, ttl: timedelta) -> dict[str, Any]:
        """Arguments that sign a SAS: the account key (Azurite/dev) or a user delegation key."""
        if self._account_key:
            return {"account_key": self._account_key}
        with self._lock:
            now = datetime.now(UTC)
            if self._delegation_key is None or self._delegation_expiry - now < ttl:
                # One delegation key per process, valid a little longer than the longest SAS.
                self._delegation_expiry = now + max(ttl, timedelta(hours=1)) + timedelta(minutes=5)
                self._delegation_key = self.service.get_user_delegation_key(
                    now - timedelta(minutes=5), self._delegation_expiry)
            return {"user_delegation_key": self._delegation_key}

    def blob_sas_token(self, container: str, name: str, *, write: bool = False,
                       ttl: timedelta = timedelta(hours=3),
                       content_disposition: str | None = None,
                       expiry: datetime | None = None) -> str:
        """A SAS for one blob: read-only, or create+write only (no read, list or delete).
        Valid from five minutes ago (clock skew) for ``ttl`` (or until ``expiry``); https-only
        on an https account. ``content_disposition`` (read URLs) is what the response says,
        e.g. to download."""
        now = datetime.now(UTC)
        expiry = expiry or now + ttl
        perms = (BlobSasPermissions(create=True, write=True) if write
                 else BlobSasPermissions(read=True))
        https = self.service.url.lower().startswith("https://")
        return generate_blob_sas(self.account_name, container, validate_blob_name(name),
                                 permission=perms, start=now - timedelta(minutes=5),
                                 expiry=expiry, protocol="https" if https else None,
                                 content_disposition=content_disposition,
                                 **self._signing(expiry - now))

    def blob_sas_url(self, container: str, name: str, *, write: bool = False,
                     ttl: timedelta = timedelta(hours=3),
                     content_disposition: str | None = None,
                     expiry: datetime | None = None) -> str:
        """URL of one blob with a SAS scoped to it (see ``blob_sas_token``)."""
        token = self.blob_sas_token(container, name, write=write, ttl=ttl,
                                    content_disposition=content_disposition, expiry=expiry)
        return f"{self.blob(container, name).url}?{token}"


class BlobReader(io.RawIOBase):
    """A read-only, seekable file over one blob: ranged GETs through the SDK (its retries, its
    credentials), with a small cache of aligned blocks. libav reads videos through it, so a
    video is never held whole in memory or on disk, and no SAS or raw HTTP client is needed."""

    def __init__(self, blob_client: Any, size: int, block_size: int = 4 * 1024**2,
                 cache_blocks: int = 6, etag: str | None = None):
        super().__init__()
        self._blob = blob_client
        self._condition = _if_match(etag)
        self._size = size
        self._block = block_size
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._cache_blocks = cache_blocks
        self._pos = 0
        self.name = blob_client.url.split("?")[0]

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def _get_block(self, index: int) -> bytes:
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        start = index * self._block
        length = min(self._block, self._size - start)
        data = self._blob.download_blob(offset=start, length=length,
                                        **self._condition).readall()
        self._cache[index] = data
        if len(self._cache) > self._cache_blocks:
            self._cache.popitem(last=False)
        return data

    def readinto(self, buffer: Any) -> int:
        if self._pos >= self._size:
            return 0
        view = memoryview(buffer).cast("B")
        index, offset = divmod(self._pos, self._block)
        data = self._get_block(index)[offset:offset + len(view)]
        view[:len(data)] = data
        self._pos += len(data)
        return len(data)


class BlockWriter:
    """Stages numbered blocks of one block blob (in any order, each once or again with the
    same content), then commits them: the blob appears whole or not at all, and memory holds
    one block at a time. Uncommitted blocks are invisible and expire on their own."""

    def __init__(self, blob: Any):
        self._blob = blob
        self.count = 0  # how many blocks: 0..count-1

    @staticmethod
    def block_id(index: int) -> str:
        # Ids of one length, as the service requires; deterministic, so a retry restages.
        return base64.b64encode(f"{index:08d}".encode()).decode()

    def stage(self, index: int, data: bytes) -> None:
        self._blob.stage_block(self.block_id(index), data, length=len(data))
        self.count = max(self.count, index + 1)

    def seal(self, count: int) -> None:
        """The blob is blocks ``0..count-1`` (a writer that started over may have staged more)."""
        self.count = count

    def commit(self, metadata: dict[str, str] | None = None, content_type: str | None = None,
               *, overwrite: bool = True, if_etag: str | None = None) -> None:
        """Commit blocks ``0..count-1``. ``overwrite=False`` commits only if no blob has the
        name (raises ResourceExistsError otherwise); ``if_etag`` replaces only that version."""
        from azure.storage.blob import BlobBlock, ContentSettings

        condition = _if_match(if_etag)
        if not overwrite and not condition:
            condition = {"match_condition": MatchConditions.IfMissing}  # If-None-Match: *
        try:
            self._blob.commit_block_list(
                [BlobBlock(self.block_id(i)) for i in range(self.count)], metadata=metadata,
                content_settings=ContentSettings(content_type=content_type)
                if content_type else None, **condition)
        except ResourceModifiedError:
            if condition.get("match_condition") is MatchConditions.IfMissing:
                raise ResourceExistsError("the blob exists") from None
            raise


@dataclass(frozen=True)
class CopyState:
    """Where the last server-side copy into a blob stands (Copy Blob's properties)."""

    status: str | None  # pending, success, aborted, failed; None: the blob was not copied
    description: str | None
    metadata: dict[str, str]


class BlobCopy:
    """A blob written by a server-side copy of another blob of the same account (Copy Blob):
    no byte of it passes through this process, whatever its size, and the request returns at
    once. The copy may finish later (``status`` pending): ``BlobStore.copy_state`` follows it.
    The destination takes the source's content type, so ``commit`` sets that on the source
    first, and the metadata given here."""

    def __init__(self, store: BlobStore, source: tuple[str, str], dest: tuple[str, str],
                 ttl: timedelta):
        self._store, self._source, self._dest, self._ttl = store, source, dest, ttl
        self.status: str | None = None  # the copy's status once started

    def commit(self, metadata: dict[str, str] | None = None, content_type: str | None = None,
               *, overwrite: bool = True, if_etag: str | None = None) -> None:
        """Start the copy. ``overwrite=False`` copies only if no blob has the name (raises
        ResourceExistsError otherwise); ``if_etag`` replaces only that version."""
        from azure.storage.blob import ContentSettings

        store = self._store
        if store.emulator:  # the source's size is asked only where it decides anything
            size = store.blob(*self._source).get_blob_properties().size
            if size > EMULATOR_COPY_LIMIT:
                self._copy_through(size, metadata, content_type, overwrite=overwrite,
                                   if_etag=if_etag)
                return
        if content_type:
            store.blob(*self._source).set_http_headers(ContentSettings(content_type=content_type))
        # The service reads the source with a read-only SAS for that one blob (Copy Blob takes
        # no token for it); it lives until the copy can have finished.
        url = store.blob_sas_url(*self._source, ttl=self._ttl)
        condition = _if_match(if_etag)
        if not overwrite and not condition:
            condition = {"match_condition": MatchConditions.IfMissing}  # If-None-Match: *
        try:
            result = store.blob(*self._dest).start_copy_from_url(url, metadata=metadata,
                                                                 **condition)
        except ResourceModifiedError:
            if condition.get("match_condition") is MatchConditions.IfMissing:
                raise ResourceExistsError("the blob exists") from None
            raise
        self.status = str(result.get("copy_status") or "pending")

    def _copy_through(self, size: int, metadata: dict[str, str] | None,
                      content_type: str | None, *, overwrite: bool, if_etag: str | None) -> None:
        """The emulator's stand-in for a big Copy Blob: the source read in 8 MiB ranges and
        staged as blocks of the destination, committed whole under the same conditions (one
        block in memory at a time)."""
        source = self._store.blob(*self._source)
        writer = BlockWriter(self._store.blob(*self._dest))
        count = 0
        for count, offset in enumerate(range(0, size, _COPY_BLOCK), start=1):
            length = min(_COPY_BLOCK, size - offset)
            writer.stage(count - 1, source.download_blob(offset=offset, length=length).readall())
        writer.seal(count)
        writer.commit(metadata, content_type, overwrite=overwrite, if_etag=if_etag)
        self.status = "success"


@dataclass(frozen=True)
class BlobFile:
    """A blob that ``shared.video`` opens like a file, any number of times (not to be confused
    with ``azure.functions.BlobSource``, which says where a blob trigger's events come from)."""

    store: BlobStore
    container: str
    name: str
    etag: str | None = None  # when set, only this version of the blob is ever read

    def open(self) -> io.BufferedReader:
        blob = self.store.blob(self.container, self.name)
        try:
            props = blob.get_blob_properties(**_if_match(self.etag))
        except ResourceNotFoundError:
            raise FileNotFoundError(f"{self.container}/{self.name}") from None
        return io.BufferedReader(BlobReader(blob, props.size, etag=self.etag),
                                 buffer_size=256 * 1024)

    def __str__(self) -> str:
        return f"{self.container}/{self.name}"


def _if_match(etag: str | None) -> dict[str, Any]:
    """SDK keyword arguments for a request conditional on one version of a blob."""
    if not etag:
        return {}
    return {"etag": f'"{etag.strip(chr(34))}"', "match_condition": MatchConditions.IfNotModified}


def _connection_string_part(conn: str, key: str) -> str | None:
    for part in conn.split(";"):
        k, _, v = part.partition("=")
        if k.strip().lower() == key.lower():
            return v.strip()
    return None


# Why process-wide: a Functions worker process serves many invocations, and every one asks for
# its store; one client per configuration keeps one connection pool (and, in Azure, one token
# cache). Owned by ``get_store``.
_stores: dict[tuple[str, str], BlobStore] = {}
_stores_lock = threading.Lock()


def get_store(settings: Settings) -> BlobStore:
    """One BlobStore per storage configuration per process (clients are thread-safe)."""
    key = (settings.storage_connection_string, settings.storage_account_url)
    with _stores_lock:
        if key not in _stores:
            _stores[key] = BlobStore.from_settings(settings)
        return _stores[key]
