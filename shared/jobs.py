"""Jobs: ids, names, blob layout and the job status JSON.

Pure functions only (no I/O), so the orchestrator, the activities, the HTTP API and the
tests share one definition of every name that reaches a blob path or a query.

Blob layout (contract, see ARCHITECTURE.md §3)::

    incoming/<name>.<ext>            uploads (optionally incoming/<style>/<name>.<ext>)
    styles/<style>.jpg|png           style images
    models/<style>.pt                trained fast models
    work/<job>/...                   per-job intermediates (probe.json, chunks/, stylized/, logs/)
    outgoing/<stem>.<style>.<ext>    results, plus <stem>.<style>.preview.jpg
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Any

INCOMING, STYLES, MODELS, WORK, OUTGOING = "incoming", "styles", "models", "work", "outgoing"
CONTAINERS = (INCOMING, STYLES, MODELS, WORK, OUTGOING)

MODELS_KINDS = ("gatys", "fast")
VIDEO_EXTENSIONS = ("mp4", "mov", "mkv", "webm", "m4v")
STYLE_EXTENSIONS = ("jpg", "jpeg", "png")

STATES = ("queued", "probing", "splitting", "training", "scoring", "stitching",
          "completed", "failed", "cancelled")
TERMINAL_STATES = ("completed", "failed", "cancelled")

_JOB_ID = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,46}[a-z0-9])?$")
_STYLE = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,38}[a-z0-9])?$")
_MAX_BLOB_NAME = 512
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
    if model not in MODELS_KINDS:
        raise InvalidName(f"model must be one of {', '.join(MODELS_KINDS)}, not {model!r}")
    return model


def validate_blob_name(name: str) -> str:
    """Accept a blob name inside a container: relative, no traversal, no control characters."""
    if not isinstance(name, str) or not name or len(name) > _MAX_BLOB_NAME:
        raise InvalidName(f"not a valid blob name: {name!r}")
    if name.startswith("/") or "\\" in name or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InvalidName(f"not a valid blob name: {name!r}")
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise InvalidName(f"not a valid blob name: {name!r}")
    return name


def validate_caller(caller: str) -> str:
    """Accept the id of whoever started a job through the API ('' = an upload started it)."""
    if not isinstance(caller, str) or (caller and not _CALLER.match(caller)):
        raise InvalidName(f"not a valid caller id: {caller!r}")
    return caller


def slugify(text: str, max_len: int = 39) -> str:
    """'My Clip (final).mp4' -> 'my-clip-final-mp4' — ascii, lower-case, hyphens."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:max_len].strip("-") or "video"


def make_job_id(blob_name: str, etag: str, style: str, model: str, caller: str = "") -> str:
    """Deterministic job id for one version (ETag) of one blob with one style and model
    (and, for a job started through the API, its caller: two callers never share a job).

    The same upload delivered twice gives the same id, so the second start is a no-op; a
    re-upload (new ETag) or another style gives a new job.
    """
    key = f"{blob_name}\n{etag.strip(chr(34))}\n{style}\n{model}"
    digest = hashlib.sha256((key + f"\n{caller}" if caller else key).encode())
    stem = posixpath.splitext(posixpath.basename(blob_name))[0]
    return validate_job_id(f"{slugify(stem)}-{digest.hexdigest()[:8]}")


def split_ext(blob_name: str) -> tuple[str, str]:
    """('incoming/a/clip.MP4') -> ('clip', 'mp4')."""
    stem, ext = posixpath.splitext(posixpath.basename(blob_name))
    return stem, ext.lstrip(".").lower()


def style_from_path(blob_name: str) -> str | None:
    """incoming/<style>/clip.mp4 names the style by its first path segment."""
    parts = blob_name.split("/")
    return parts[0].lower() if len(parts) > 1 else None


def output_names(blob_name: str, style: str) -> tuple[str, str]:
    """Blob names (in ``outgoing``) of the result video and its preview image."""
    stem, ext = split_ext(blob_name)
    ext = ext if ext in VIDEO_EXTENSIONS else "mp4"
    ext = "mp4" if ext == "m4v" else ext
    return f"{stem}.{style}.{ext}", f"{stem}.{style}.preview.jpg"


def work_prefix(job_id: str) -> str:
    return f"{validate_job_id(job_id)}/"


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
    caller: str = ""  # who started it through the API (shared/callers.py); '' = an upload

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobRequest:
        req = cls(**data)
        validate_job_id(req.job_id)
        validate_blob_name(req.blob)
        validate_style(req.style)
        validate_model(req.model)
        validate_caller(req.caller)
        return req


def new_job_request(blob_name: str, etag: str, style: str, model: str, created: str,
                    options: dict[str, Any] | None = None, caller: str = "") -> JobRequest:
    validate_blob_name(blob_name)
    validate_style(style)
    validate_model(model)
    validate_caller(caller)
    output, preview = output_names(blob_name, style)
    return JobRequest(job_id=make_job_id(blob_name, etag, style, model, caller), blob=blob_name,
                      etag=etag, style=style, model=model, output=output, preview=preview,
                      created=created, options=dict(options or {}), caller=caller)


def job_status(req: JobRequest, state: str, *, updated: str,
               frames_total: int = 0, frames_done: int = 0,
               chunks: dict[str, int] | None = None, eta_seconds: float | None = None,
               error: str | None = None, stage_percent: float | None = None,
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The job status JSON (contract), as stored in the orchestration's custom status.

    ``percent`` is overall progress: probing/splitting count for the first 5 %, scoring for
    5–95 % in proportion to frames done, stitching the rest.
    """
    assert state in STATES, state
    chunks = {"total": 0, "done": 0, "running": 0, "failed": 0, **(chunks or {})}
    if state == "completed":
        percent = 100.0
    elif state in ("queued", "probing"):
        percent = 0.0
    elif state in ("splitting", "training"):
        percent = 5.0 * (stage_percent or 0.0) / 100.0
    elif state == "scoring":
        percent = 5.0 + 90.0 * (frames_done / frames_total if frames_total else 0.0)
    elif state == "stitching":
        percent = 95.0
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
        "output": f"{OUTGOING}/{req.output}",  # where the result appears (is) when completed
        "preview": f"{OUTGOING}/{req.preview}",
        "error": error,
        "created": req.created,
        "updated": updated,
        "caller": req.caller or None,  # who started it through the API; None: an upload
    }
    if extra:
        status.update(extra)
    return status
