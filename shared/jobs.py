"""Jobs: ids, names, blob layout and the job status JSON.

Pure functions only (no I/O), so the orchestrator, the activities, the HTTP API and the
tests share one definition of every name that reaches a blob path or a query.

Blob layout (the contract; README "Names" documents it for users)::

    incoming/<folder/><stem>.<ext>            uploads (incoming/<style>/clip.mp4 names a style)
    styles/<style>.jpg|png                    style images
    models/<style>.pt                         trained fast models
    work/<job>/...                            per-job intermediates (probe.json, chunks/, ...)
    work/uploads/<sha256 of the name>.json    who asked for an upload URL (shared/uploads.py)
    outgoing/<folder/><stem>.<style>.<hash>.<ext>          results, plus
    outgoing/<folder/><stem>.<style>.<hash>.preview.jpg    the before/after preview

``<hash>`` is the job's hash (``JOB_HASH_HEX`` hex digits of SHA-256 over the blob's name,
ETag, style and model), so two jobs never share an output name: ``clip.mp4``,
``swirl/clip.mp4``, ``clip.MP4``, ``clip.avi`` and a re-upload of ``clip.mp4`` all get their own.
The job id is ``<ascii slug of the stem>-<hash>``.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import quote

from anyascii import anyascii

from shared.contract import MODEL_KINDS

INCOMING, STYLES, MODELS, WORK, OUTGOING = "incoming", "styles", "models", "work", "outgoing"
CONTAINERS = (INCOMING, STYLES, MODELS, WORK, OUTGOING)


VIDEO_EXTENSIONS = ("mp4", "mov", "mkv", "webm", "m4v")  # containers the output mirrors
# What an upload's name may end with: containers libav reads (the rest become mp4 outputs).
# Anything else fails at the door, before a byte is read.
INPUT_EXTENSIONS = (*VIDEO_EXTENSIONS, "avi", "ts", "mts", "m2ts", "mpg", "mpeg", "flv", "wmv",
                    "3gp", "ogv", "mxf")
STYLE_EXTENSIONS = ("jpg", "jpeg", "png")

# What a job publishes into outgoing/, in this order: the preview first, so the video's
# appearance means the job's results are all there.
PUBLISHED = ("preview", "video")
STATES = ("queued", "probing", "scanning", "splitting", "training", "scoring", "stitching",
          "completed", "failed", "cancelled")
TERMINAL_STATES = ("completed", "failed", "cancelled")
# The status's ``tasks`` timeline holds at most this many chunk attempts (the latest), so the
# status stays well under Durable's 16 KB custom-status limit whatever the chunk count.
MAX_TIMELINE_ROWS = 48

_JOB_ID = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,46}[a-z0-9])?$")
_STYLE = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,38}[a-z0-9])?$")
# Azure Storage's limits on a blob name (Azurite enforces the same length).
MAX_BLOB_NAME = 1024
_MAX_PATH_SEGMENTS = 254
# 16 hex digits = 64 bits of SHA-256: the odds that any two of n jobs share a hash are about
# n^2 / 2^65 (a million jobs: 3e-8). Ids stay <= 48 characters, within Durable instance ids
# and Batch job ids (letters, digits, '-', '_', <= 64), with room to spare.
JOB_HASH_HEX = 16
_SLUG_MAX = 48 - JOB_HASH_HEX - 1
_SHOWN_NAME = 200  # how much of a rejected name a status shows
# An API caller: an Entra object id (a GUID), or the local identity's short name.
_CALLER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")


class InvalidName(ValueError):
    """A job id, style or blob name that must not reach a blob path or a query."""


def validate_job_id(job_id: str) -> str:
    """Return ``job_id`` if it is a well-formed job id, else raise InvalidName.

    Job ids are lower-case letters, digits and inner hyphens, at most 48 characters: safe as a
    Durable instance id, a Batch job id (≤ 64) and a blob path segment.
    """
    if not isinstance(job_id, str) or not _JOB_ID.match(job_id):
        raise InvalidName(f"not a valid job id: {job_id!r}")
    return job_id


def validate_style(style: str) -> str:
    if not isinstance(style, str) or not _STYLE.match(style):
        raise InvalidName(
            f"not a valid style name: {style!r} (lower-case letters, digits, '-' and '_')")
    return style


def validate_model(model: str) -> str:
    if model not in MODEL_KINDS:
        raise InvalidName(f"model must be one of {', '.join(MODEL_KINDS)}, not {model!r}")
    return model


def validate_blob_name(name: str) -> str:
    """Accept a blob name inside a container: what Azure Storage accepts (1–1024 characters,
    at most 254 segments, not ending in '.'), relative, no traversal, no control characters,
    encodable as UTF-8. The reason names the problem, for a person to fix the upload."""
    if not isinstance(name, str) or not name:
        raise InvalidName("the blob name is empty")
    shown = shown_name(name)
    if len(name) > MAX_BLOB_NAME:
        raise InvalidName(f"the name is {len(name)} characters long; blob names hold at most "
                          f"{MAX_BLOB_NAME}: {shown!r}")
    for i, c in enumerate(name):
        if unicodedata.category(c) in ("Cc", "Cs"):
            raise InvalidName(f"the name holds a control character or an unpaired surrogate "
                              f"(U+{ord(c):04X}) at "
                              f"position {i + 1}: {shown!r}")
    if name.startswith("/") or "\\" in name:
        raise InvalidName(f"the name must be a relative path with '/' separators: {shown!r}")
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts) or len(parts) > _MAX_PATH_SEGMENTS:
        raise InvalidName(f"the name has an empty, '.' or '..' path segment (or more than "
                          f"{_MAX_PATH_SEGMENTS}): {shown!r}")
    if name.endswith("."):
        raise InvalidName(f"the name ends with '.': {shown!r}")
    return name


def validate_caller(caller: str) -> str:
    """Accept the id of whoever started a job through the API ('' = an upload started it)."""
    if not isinstance(caller, str) or (caller and not _CALLER.match(caller)):
        raise InvalidName(f"not a valid caller id: {caller!r}")
    return caller


def validate_input_name(name: str, style: str = "x" * 40) -> str:
    """Accept the name of an upload: a valid blob name with a video extension whose outputs
    (``output_names``, with the longest style) are valid blob names too."""
    validate_blob_name(name)
    _, ext = split_ext(name)
    if ext not in INPUT_EXTENSIONS:
        raise InvalidName(f"unsupported file extension {('.' + ext) if ext else '(none)'}: "
                          f"upload a video ({', '.join('.' + e for e in INPUT_EXTENSIONS)}): "
                          f"{shown_name(name)!r}")
    longest = max(output_names(name, style, "0" * JOB_HASH_HEX), key=len)
    if len(longest) > MAX_BLOB_NAME:
        raise InvalidName(f"the name is too long for its result's name "
                          f"({len(longest)} > {MAX_BLOB_NAME} characters): shorten it by "
                          f"{len(longest) - MAX_BLOB_NAME}: {shown_name(name)!r}")
    return name


def shown_name(name: str) -> str:
    """A name as a status or an error shows it: at most ``_SHOWN_NAME`` characters."""
    return name if len(name) <= _SHOWN_NAME else name[:_SHOWN_NAME - 1] + "…"


def metadata_value(text: str) -> str:
    """A blob metadata value (HTTP headers: ASCII only): UTF-8, percent-encoded ('/' kept)."""
    return quote(text, safe="/")


def slugify(text: str, max_len: int = 39) -> str:
    """'My Clip (final).mp4' -> 'my-clip-final-mp4', '视频' -> 'shipin' — ascii (transliterated),
    lower-case, hyphens."""
    ascii_text = anyascii(unicodedata.normalize("NFKC", text))
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:max_len].strip("-") or "video"


def job_hash(blob_name: str, etag: str, style: str, model: str, caller: str = "") -> str:
    """``JOB_HASH_HEX`` hex digits identifying one version (ETag) of one blob with one style
    and model (and, for a job started through the API, its caller: two callers never share a
    job or an output): the tail of the job id and part of the output names."""
    key = f"{blob_name}\n{etag.strip(chr(34))}\n{style}\n{model}"
    key = key + f"\n{caller}" if caller else key
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:JOB_HASH_HEX]


def make_job_id(blob_name: str, etag: str, style: str, model: str, caller: str = "") -> str:
    """Deterministic job id for one version (ETag) of one blob with one style and model
    (and caller, see ``job_hash``).

    The same upload delivered twice gives the same id, so the second start is a no-op; a
    re-upload (new ETag) or another style gives a new job.
    """
    stem = posixpath.splitext(posixpath.basename(blob_name))[0]
    digest = job_hash(blob_name, etag, style, model, caller)
    return validate_job_id(f"{slugify(stem, _SLUG_MAX)}-{digest}")


def split_ext(blob_name: str) -> tuple[str, str]:
    """('incoming/a/clip.MP4') -> ('clip', 'mp4')."""
    stem, ext = posixpath.splitext(posixpath.basename(blob_name))
    return stem, ext.lstrip(".").lower()


def style_from_path(blob_name: str) -> str | None:
    """incoming/<style>/clip.mp4 names the style by its first path segment."""
    parts = blob_name.split("/")
    return parts[0].lower() if len(parts) > 1 else None


def output_names(blob_name: str, style: str, digest: str) -> tuple[str, str]:
    """Blob names (in ``outgoing``) of the result video and its preview image:
    ``<folder/><stem>.<style>.<digest>.<ext>`` and ``….preview.jpg``, where ``<folder/>`` is
    the input's folder inside ``incoming`` and ``<digest>`` the job's hash (``job_hash``)."""
    folder = posixpath.dirname(blob_name)
    stem, ext = split_ext(blob_name)
    ext = ext if ext in VIDEO_EXTENSIONS else "mp4"
    ext = "mp4" if ext == "m4v" else ext
    base = posixpath.join(folder, f"{stem}.{style}.{digest}")
    return f"{base}.{ext}", f"{base}.preview.jpg"


def work_prefix(job_id: str) -> str:
    return f"{validate_job_id(job_id)}/"


def upload_record_blob(blob_name: str) -> str:
    """Name (in ``work``) of the record of the upload URL issued for ``incoming/<blob_name>``:
    a hash, so any valid upload name fits, and never a job's folder (job ids hold a '-')."""
    digest = hashlib.sha256(blob_name.encode("utf-8", "surrogatepass")).hexdigest()
    return f"uploads/{digest}.json"


def chunk_blob(job_id: str, index: int, ext: str = "mkv") -> str:
    return f"{work_prefix(job_id)}chunks/{index:05d}.{ext}"


def stylized_blob(job_id: str, index: int, ext: str = "mkv") -> str:
    return f"{work_prefix(job_id)}stylized/{index:05d}.{ext}"


def model_blob(style: str) -> str:
    return f"{validate_style(style)}.pt"


@dataclass
class JobRequest:
    """The orchestration's input: everything the pipeline needs to know about one job."""

    job_id: str
    blob: str  # name inside `incoming`
    etag: str
    style: str
    model: str
    output: str  # name inside `outgoing`
    preview: str
    created: str  # ISO 8601 UTC, from the trigger
    options: dict[str, Any] = field(default_factory=dict)
    caller: str = ""  # whose job it is (shared/callers.py); '' = an upload without an upload URL

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def rejected(self) -> str | None:
        """Why the job was refused at the door (it fails at once with this reason), or None."""
        return self.options.get("reject")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobRequest:
        req = cls(**data)
        validate_job_id(req.job_id)
        if not req.rejected:  # a rejected name never reaches a path or a query
            validate_blob_name(req.blob)
        validate_style(req.style)
        validate_model(req.model)
        validate_caller(req.caller)
        return req


def new_job_request(blob_name: str, etag: str, style: str, model: str, created: str,
                    options: dict[str, Any] | None = None, caller: str = "") -> JobRequest:
    validate_style(style)
    validate_model(model)
    validate_caller(caller)
    validate_input_name(blob_name, style)
    digest = job_hash(blob_name, etag, style, model, caller)
    output, preview = output_names(blob_name, style, digest)
    return JobRequest(job_id=make_job_id(blob_name, etag, style, model, caller), blob=blob_name,
                      etag=etag, style=style, model=model, output=output, preview=preview,
                      created=created, options=dict(options or {}), caller=caller)


def rejected_request(blob_name: str, etag: str, model: str, created: str, reason: str,
                     options: dict[str, Any] | None = None, caller: str = "") -> JobRequest:
    """A job for an upload refused at the door (a bad name, style or model): it fails at once
    with ``reason``, so the refusal is a job record a user can find, not a log line. Its
    ``blob`` is the name as shown (cut to ``_SHOWN_NAME``); it has no outputs."""
    return JobRequest(job_id=make_job_id(blob_name, etag, "invalid", model, caller),
                      blob=shown_name(blob_name), etag=etag, style="invalid", model=model,
                      output="", preview="", created=created,
                      options={**(options or {}), "reject": reason}, caller=caller)


def job_status(req: JobRequest, state: str, *, updated: str,
               frames_total: int = 0, frames_done: int = 0,
               chunks: dict[str, int] | None = None, eta_seconds: float | None = None,
               error: str | None = None, stage_percent: float | None = None,
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The job status JSON (contract), as stored in the orchestration's custom status.

    ``percent`` is overall progress: scanning and splitting count for the first 5 % (2 and
    3), scoring for 5–95 % in proportion to frames done, stitching the rest (up to 99 % until
    completed).
    """
    assert state in STATES, state
    chunks = {"total": 0, "done": 0, "running": 0, "failed": 0, **(chunks or {})}
    if state == "completed":
        percent = 100.0
    elif state in ("queued", "probing"):
        percent = 0.0
    elif state == "scanning":
        percent = 2.0 * (stage_percent or 0.0) / 100.0
    elif state == "splitting":
        percent = 2.0 + 3.0 * (stage_percent or 0.0) / 100.0
    elif state == "training":
        percent = 5.0 * (stage_percent or 0.0) / 100.0
    elif state == "scoring":
        percent = 5.0 + 90.0 * (frames_done / frames_total if frames_total else 0.0)
    elif state == "stitching":  # the stitch task's progress, then publishing
        percent = 95.0 + 4.0 * (stage_percent or 0.0) / 100.0
    else:  # failed / cancelled keep the progress they had
        percent = 5.0 + 90.0 * (frames_done / frames_total) if frames_total else 0.0
    status: dict[str, Any] = {
        "id": req.job_id,
        "state": state,
        "input": f"{INCOMING}/{req.blob}",
        "style": req.style,
        "model": req.model,
        "frames": {"total": frames_total, "done": frames_done},
        "chunks": chunks,
        "percent": round(percent, 1),
        "eta_seconds": None if eta_seconds is None else max(0, round(eta_seconds)),
        # where the result appears (is) when completed; none for a job refused at the door
        "output": f"{OUTGOING}/{req.output}" if req.output else None,
        "preview": f"{OUTGOING}/{req.preview}" if req.preview else None,
        "error": error,
        "created": req.created,
        "updated": updated,
        "caller": req.caller or None,  # who started it through the API; None: an upload
    }
    if extra:
        status.update(extra)
    return status
