"""Upload records: who asked for an upload URL, for which blob in `incoming`, with which style
and model — written by the app when it issues the URL, read by the blob trigger.

The browser puts the file straight to storage with the URL, so the upload itself carries
nothing the app can trust (whoever holds the URL sets the blob's metadata). The record is the
app's own: it lives in `work` (``upload_record_blob``), where an upload URL cannot reach, and
it is written create-only, so it also *reserves* the name: two callers asking for one name at
once get two names. The trigger attributes the upload's job to the record's caller, with the
record's style and model, when the blob was committed while the URL was valid
(``UploadRecord.covers``); a later write of that name by anyone else is not attributed.

A record whose URL expired without an upload no longer holds its name; `work`'s lifecycle rule
removes old records with the rest of `work`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)

from shared.jobs import (
    INCOMING,
    WORK,
    upload_record_blob,
    validate_caller,
    validate_model,
    validate_style,
)
from shared.storage import BlobStore

_TIME = "%Y-%m-%dT%H:%M:%SZ"
# How far this app's clock may be off storage's (which enforces the URL's expiry): an expired
# record frees its name only this long after its expiry.
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class UploadRecord:
    blob: str  # name inside `incoming`
    caller: str  # who asked for the URL (shared/callers.py)
    style: str
    model: str
    expires: str  # ISO 8601 UTC, whole seconds: the upload URL's own expiry

    def to_json(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, str]) -> UploadRecord:
        rec = cls(**data)
        validate_caller(rec.caller)
        validate_style(rec.style)
        validate_model(rec.model)
        datetime.strptime(rec.expires, _TIME)
        return rec

    @property
    def expiry(self) -> datetime:
        return datetime.strptime(self.expires, _TIME).replace(tzinfo=UTC)

    def covers(self, committed: datetime) -> bool:
        """Whether a blob version committed at ``committed`` (its Last-Modified) came through
        this record's URL: storage refuses the URL after its expiry, by the same clock that
        stamps Last-Modified (both whole seconds)."""
        return committed <= self.expiry


def expiry_of(when: datetime) -> datetime:
    """An upload URL's expiry as the record and the SAS both state it: whole seconds."""
    return when.astimezone(UTC).replace(microsecond=0)


def reserve(store: BlobStore, record: UploadRecord, now: datetime) -> bool:
    """Write ``record`` if its name is free: no blob in `incoming` and no record whose URL is
    still valid. Returns False when the name is taken. Create-only (or replacing exactly the
    expired record it read), so of two callers racing for one name only one gets it."""
    if store.exists(INCOMING, record.blob):
        return False
    data = json.dumps(record.to_json(), separators=(",", ":")).encode()
    name = upload_record_blob(record.blob)
    try:
        store.write_bytes(WORK, name, data, overwrite=False)
        return True
    except ResourceExistsError:
        pass
    old, etag = _read(store, record.blob)
    if old is not None and old.expiry + CLOCK_SKEW >= now:
        return False  # an upload URL for this name is (or may still be) out
    try:
        store.write_bytes(WORK, name, data, if_etag=etag)
    except (ResourceModifiedError, ResourceNotFoundError, ResourceExistsError):
        return False  # someone else took it meanwhile
    return True


def read(store: BlobStore, blob: str) -> UploadRecord | None:
    """The record of the upload URL issued for ``incoming/<blob>``, if any."""
    return _read(store, blob)[0]


def _read(store: BlobStore, blob: str) -> tuple[UploadRecord | None, str | None]:
    try:
        downloader = store.blob(WORK, upload_record_blob(blob)).download_blob()
        data, etag = downloader.readall(), downloader.properties.etag
    except ResourceNotFoundError:
        return None, None
    try:
        rec = UploadRecord.from_json(json.loads(data))
    except (ValueError, TypeError):
        return None, etag  # unreadable: it attributes nothing, and its name may be reused
    return (rec if rec.blob == blob else None), etag
