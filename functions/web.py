"""The web page: drop a video, pick a style and a model, watch the jobs, steer one.

    GET  /api/ui                the page (HTML with its CSS and JS inlined: one request)
    GET  /api/styles            the style gallery: names with short-lived thumbnail URLs
    POST /api/uploads           {"name": "clip.mp4", "style": ..., "model": ..., "size": n}
                                → a short-lived URL for ONE new blob in `incoming`;
                                {"kind": "style", "name": "starry.jpg"} → one for a new
                                style image, `styles/<name>.<ext>`
    GET  /api/uploads?blob=…    the job an upload through such a URL started: {"blob", "job",
                                "started"} (the asker's own uploads; admins any)
    GET  /api/jobs/{id}/links   short-lived read URLs of a completed job's result and preview

Same auth as the API: the function key (the page passes its own ``?code=`` on to every call)
and the caller (``functions.api._caller``: 401 without one; a job's links only for a caller
who may see it). No video byte passes through a function: the browser puts the file's
blocks straight to blob storage with the upload URL (Put Block / Put Block List), the blob
trigger starts the job — the caller's, with the style and model asked for, from the record the
app wrote when it issued the URL (``shared/uploads.py``) — and the page looks that job up and
follows it through the API: one upload, one job. Assets are files in
``functions/static/`` shipped with the app; nothing is fetched from elsewhere.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import posixpath
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import azure.durable_functions as df
import azure.functions as func

from functions.access import Caller
from functions.api import _caller, _error, _json, too_many_jobs, visible_job
from functions.starter import resolve_style, upload_request
from shared import uploads
from shared.jobs import (
    INCOMING,
    MODEL_KINDS,
    OUTGOING,
    STYLE_EXTENSIONS,
    STYLES,
    InvalidName,
    slugify,
    split_ext,
    validate_blob_name,
    validate_input_name,
    validate_style,
)
from shared.settings import get_settings
from shared.storage import BlobStore, get_store

bp = df.Blueprint(http_auth_level=func.AuthLevel.FUNCTION)
STATIC = Path(__file__).resolve().parent / "static"

# How long the URLs the page gets stay valid: an upload must finish within UPLOAD_TTL (its
# Put Block List is the last request), a read URL is used at once (thumbnails, play, download).
UPLOAD_TTL = timedelta(minutes=30)
READ_TTL = timedelta(minutes=15)
_FREE_NAME_TRIES = 50


def page_html() -> str:
    """index.html with app.css and app.js inlined."""
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    css = (STATIC / "app.css").read_text(encoding="utf-8")
    js = (STATIC / "app.js").read_text(encoding="utf-8")
    return (html.replace('<link rel="stylesheet" href="app.css">', f"<style>\n{css}</style>")
                .replace('<script src="app.js"></script>', f"<script>\n{js}</script>"))


@bp.route(route="ui", methods=["GET"])
def web_page(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(page_html(), mimetype="text/html", charset="utf-8",
                             headers={"Cache-Control": "no-store",
                                      "X-Content-Type-Options": "nosniff"})


def list_styles(store: BlobStore) -> list[dict[str, str]]:
    styles = []
    for blob in store.list(STYLES):
        stem, ext = split_ext(blob.name)
        if ext in STYLE_EXTENSIONS and "/" not in blob.name:
            styles.append({"name": stem.lower(),
                           "url": store.blob_sas_url(STYLES, blob.name, ttl=READ_TTL)})
    return sorted(styles, key=lambda s: s["name"])


@bp.route(route="styles", methods=["GET"])
async def web_styles(req: func.HttpRequest) -> func.HttpResponse:
    _, denied = _caller(req)
    if denied:
        return denied
    settings = get_settings()
    styles = await asyncio.to_thread(list_styles, get_store(settings))
    return _json({"styles": styles, "models": list(MODEL_KINDS),
                  "default_style": settings.default_style,
                  "default_model": settings.default_model})


def reserve_name(store: BlobStore, name: str, record: uploads.UploadRecord,
                 now: datetime) -> uploads.UploadRecord:
    """Reserve ``name``, or ``stem (2).ext``… when a blob or another upload URL has it: an
    upload URL is only ever issued for a name no blob holds and no other URL was issued for,
    so it can never replace another upload. Returns the record written."""
    folder, base = posixpath.split(name)
    stem, dot, ext = base.rpartition(".")
    for n in range(1, _FREE_NAME_TRIES + 1):
        candidate = name if n == 1 else posixpath.join(folder, f"{stem} ({n}){dot}{ext}")
        mine = dataclasses.replace(record, blob=candidate)
        if uploads.reserve(store, mine, now):
            return mine
    raise InvalidName(f"{_FREE_NAME_TRIES} uploads already have the name {name!r}: rename it")


def issue_upload(store: BlobStore, body: Any, settings: Any, caller: str,
                 now: datetime | None = None, ttl: timedelta = UPLOAD_TTL) -> dict[str, Any]:
    """Check an upload at the door and issue its URL: one new blob in `incoming`, create and
    write only (no read, list or delete), valid for ``ttl``; record that ``caller`` asked for
    it, with which style and model (the blob trigger starts their job from that record).
    Raises InvalidName with the reason a person can act on."""
    if not isinstance(body, dict) or not isinstance(body.get("name"), str):
        raise InvalidName("\"name\" (the file's name) is required")
    name = body["name"].strip().replace("\\", "/").rsplit("/", 1)[-1]  # a file, not a path
    for key in ("style", "model"):
        if body.get(key) is not None and not isinstance(body[key], str):
            raise InvalidName(f"{key} must be a string")
    style, model = resolve_style(name, {}, settings, body.get("style"), body.get("model"))
    validate_input_name(name, style)
    size = body.get("size")
    if isinstance(size, int) and size > settings.max_input_bytes:
        raise InvalidName(f"the file is {size} bytes, larger than the limit MAX_INPUT_BYTES = "
                          f"{settings.max_input_bytes}")
    if isinstance(size, int) and size <= 0:
        raise InvalidName("the file is empty")
    now = now or datetime.now(UTC)
    expires = uploads.expiry_of(now + ttl)
    record = reserve_name(store, name, uploads.UploadRecord(
        blob=name, caller=caller, style=style, model=model,
        expires=expires.strftime("%Y-%m-%dT%H:%M:%SZ")), now)
    return {"blob": record.blob,
            "url": store.blob_sas_url(INCOMING, record.blob, write=True, expiry=expires),
            "expires": record.expires, "style": style, "model": model}


def issue_style_upload(store: BlobStore, body: dict[str, Any],
                       ttl: timedelta = UPLOAD_TTL) -> dict[str, Any]:
    """An upload URL for a new style image: ``styles/<name>.<ext>``, a name no style has."""
    stem, ext = split_ext(body["name"].strip().replace("\\", "/").rsplit("/", 1)[-1])
    if ext not in STYLE_EXTENSIONS:
        raise InvalidName(f"a style image must be one of "
                          f"{', '.join('.' + e for e in STYLE_EXTENSIONS)}, not "
                          f"{('.' + ext) if ext else 'a file without extension'}")
    style = validate_style(slugify(stem).replace("_", "-")[:40].strip("-"))
    if any(split_ext(b.name)[0].lower() == style for b in store.list(STYLES, style)):
        raise InvalidName(f"a style named {style!r} exists already: rename the image")
    name = f"{style}.{ext}"
    return {"blob": name, "style": style,
            "url": store.blob_sas_url(STYLES, name, write=True, ttl=ttl),
            "headers": {"x-ms-blob-type": "BlockBlob"}}


@bp.route(route="uploads", methods=["POST"])
@bp.durable_client_input(client_name="client")
async def web_upload(req: func.HttpRequest, client: df.DurableOrchestrationClient
                     ) -> func.HttpResponse:
    caller, denied = _caller(req)
    if denied:
        return denied
    try:
        body = req.get_json()
    except (ValueError, RecursionError):
        return _error(400, "the body must be JSON: {\"name\": \"clip.mp4\", \"style\": ..., "
                           "\"model\": ...}")
    settings = get_settings()
    try:
        if isinstance(body, dict) and body.get("kind") == "style" and isinstance(
                body.get("name"), str):
            issued = await asyncio.to_thread(issue_style_upload, get_store(settings), body)
        else:
            # The upload's job will be the caller's: the limit of `POST /api/jobs` holds.
            refused = await too_many_jobs(client, caller, settings)
            if refused:
                return refused
            issued = await asyncio.to_thread(issue_upload, get_store(settings), body, settings,
                                             caller.id)
    except InvalidName as exc:
        return _error(400, str(exc))
    return _json(issued, 201)


def upload_job(store: BlobStore, blob: str, caller: Caller, settings: Any
               ) -> dict[str, Any] | None:
    """The job an upload through an issued URL starts, as the blob trigger computes it (its
    id: the blob's name, ETag, style, model and uploader); None when ``caller`` did not ask
    for that URL (admins: anyone's). ``job`` is None until the blob is there."""
    record = uploads.read(store, blob)
    if record is None or not caller.may_manage(record.caller):
        return None
    info = store.info(INCOMING, blob)
    if info is None:
        return {"blob": blob, "job": None}
    job = upload_request(blob, info.etag, info.metadata, info.last_modified, record, settings)
    return {"blob": blob, "job": job.job_id}


@bp.route(route="uploads", methods=["GET"])
@bp.durable_client_input(client_name="client")
async def web_upload_job(req: func.HttpRequest, client: df.DurableOrchestrationClient
                         ) -> func.HttpResponse:
    caller, denied = _caller(req)
    if denied:
        return denied
    blob = req.params.get("blob", "")
    try:
        validate_blob_name(blob)
    except InvalidName as exc:
        return _error(400, str(exc))
    found = await asyncio.to_thread(upload_job, get_store(get_settings()), blob, caller,
                                    get_settings())
    if found is None:
        return _error(404, f"no upload URL of yours for {INCOMING}/{blob}")
    status = await client.get_status(found["job"]) if found["job"] else None
    found["started"] = bool(status and status.runtime_status)
    return _json(found, headers={"Cache-Control": "no-store"})


@bp.route(route="jobs/{id}/links", methods=["GET"])
@bp.durable_client_input(client_name="client")
async def web_links(req: func.HttpRequest, client: df.DurableOrchestrationClient
                    ) -> func.HttpResponse:
    job_id, body, refused = await visible_job(req, client)
    if refused:
        return refused
    if body["state"] != "completed":
        return _error(409, f"job {job_id} is {body['state']}: it has no result yet")
    store = get_store(get_settings())

    def sign(path: str | None, disposition: str | None = None) -> str | None:
        if not path:
            return None
        container, _, name = path.partition("/")
        assert container == OUTGOING, path
        return store.blob_sas_url(OUTGOING, name, ttl=READ_TTL,
                                  content_disposition=disposition)

    def links() -> dict[str, str | None]:
        output = body.get("output")
        filename = posixpath.basename(output or "").replace('"', "")
        return {"play": sign(output), "preview": sign(body.get("preview")),
                "download": sign(output, f'attachment; filename="{quote(filename)}"')}

    links = await asyncio.to_thread(links)
    return func.HttpResponse(json.dumps(links), mimetype="application/json",
                             headers={"Cache-Control": "no-store"})
