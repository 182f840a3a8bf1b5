"""The pipeline's steps as plain functions: what each Durable activity does.

The activities in ``functions/activities.py`` are thin wrappers over these; tests call them
directly. Every function takes and returns small JSON-able values (blob names, counts,
summaries) — never frames or file bytes — because they travel through orchestration history.

Bad input is not an exception here: a step returns ``{"ok": False, "error": "<reason>"}`` so
the orchestrator fails the job at once with that reason instead of retrying. Exceptions mean
"transient, worth retrying" (storage hiccups, a node lost, ...).

A job works on the version of the input it was given: every read of ``incoming`` here is
conditional on the request's ETag, and the split and stitch tasks, which download it by name,
are checked against that ETag when they end. If the blob is replaced (or deleted) while the
job runs, the job fails with that reason — it never mixes two uploads; the new upload has a
job of its own.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from array import array
from collections import OrderedDict
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceModifiedError

from shared import plan
from shared.batch import (
    BatchBackend,
    BlobRef,
    OutputFile,
    ResourceFile,
    TaskSpec,
    chunk_task_id,
    get_backend,
    scan_task_id,
    split_task_id,
    stitch_task_id,
    train_task_id,
)
from shared.contract import ScanTask, SplitTask, StitchTask, StylizeTask, TrainTask
from shared.jobs import (
    INCOMING,
    MAX_TIMELINE_ROWS,
    MODELS,
    OUTGOING,
    STYLE_EXTENSIONS,
    STYLES,
    WORK,
    JobRequest,
    chunk_blob,
    metadata_value,
    model_blob,
    split_ext,
    stylized_blob,
    work_prefix,
)
from shared.redact import redact
from shared.settings import Settings
from shared.storage import BlobCopy, BlobStore, BlockWriter, get_store
from shared.video import (
    Chunk,
    Probe,
    VideoError,
    plan_chunks,
    probe_header,
)

log = logging.getLogger(__name__)


@dataclass
class Context:
    """What every step needs: settings, storage and the Batch backend."""

    settings: Settings
    store: BlobStore

    @property
    def backend(self) -> BatchBackend:
        return get_backend(self.settings, self.store)

    @classmethod
    def from_settings(cls, settings: Settings) -> Context:
        return cls(settings=settings, store=get_store(settings))


def _probe_blob(job_id: str) -> str:
    return f"{work_prefix(job_id)}probe.json"


def _chunks_blob(job_id: str) -> str:
    return f"{work_prefix(job_id)}chunks.json"


def _log_blob(job_id: str, task_id: str, stream: str) -> str:
    return f"{work_prefix(job_id)}logs/{task_id}.{stream}.txt"


def _bad(reason: str) -> dict[str, Any]:
    return {"ok": False, "error": reason}


def _input(ctx: Context, req: JobRequest) -> Any:
    """The job's input, pinned to the version (ETag) the job was started for."""
    return ctx.store.source(INCOMING, req.blob, etag=req.etag.strip('"'))


def input_changed(ctx: Context, req: JobRequest, when: str = "ran") -> str | None:
    """Why the job's input is no longer the version it was given, or None if it still is."""
    info = ctx.store.info(INCOMING, req.blob)
    if info is None:
        return f"the input {INCOMING}/{req.blob} was deleted while the job {when}"
    if info.etag != req.etag.strip('"'):
        return (f"the input {INCOMING}/{req.blob} was replaced while the job {when}; "
                "the new upload has a job of its own")
    return None


def _failed_reading_input(ctx: Context, req: JobRequest, exc: BaseException) -> dict[str, Any]:
    """The step's answer to an exception while it read the input: the input changed (bad,
    with that reason), the file is bad (its reason), else re-raise (transient: retried)."""
    changed = input_changed(ctx, req)
    if changed:
        return _bad(changed)
    if isinstance(exc, VideoError) and exc.bad_input:
        return _bad(str(exc))
    raise exc


def find_style(store: BlobStore, style: str) -> str | None:
    """Blob name of the style image ``style`` in ``styles``, or None."""
    for ext in STYLE_EXTENSIONS:
        if store.exists(STYLES, f"{style}.{ext}"):
            return f"{style}.{ext}"
    return None


# --------------------------------------------------------------------------------------------
# probe


def probe_job(ctx: Context, req: JobRequest) -> dict[str, Any]:
    """The door: check the input and the style from the container's header and first frame,
    in a bounded read whatever the video's length (``shared.video.probe_header``). The packet
    scan that gives the per-frame timestamps (work/<job>/probe.json) is the scan task's
    (``scan_job``); ``scan: True`` in the result says so to the orchestrator. The probe's
    ``frames`` here is the header's estimate, ``frames_estimated`` says so."""
    s = ctx.settings
    changed = input_changed(ctx, req, "was queued")
    if changed:
        return _bad(changed)
    info = ctx.store.info(INCOMING, req.blob)
    assert info is not None
    if info.size == 0:
        return _bad("the file is empty (0 bytes)")
    if info.size > s.max_input_bytes:
        return _bad(f"the file is {info.size / 1e9:.1f} GB, larger than "
                    f"MAX_INPUT_BYTES={s.max_input_bytes}")
    style_blob = find_style(ctx.store, req.style)
    if style_blob is None:
        return _bad(f"style '{req.style}' not found: upload {STYLES}/{req.style}.jpg (or .png)")
    try:
        p = probe_header(_input(ctx, req), limits=s.input_limits(), size_bytes=info.size)
    except Exception as exc:
        return _failed_reading_input(ctx, req, exc)
    return {"ok": True, "probe": {**p.summary(), "frames_estimated": True},
            "style_blob": style_blob, "estimate": _estimate(ctx, req, p), "scan": True}


def _estimate(ctx: Context, req: JobRequest, p: Probe) -> dict[str, Any] | None:
    if p.frames <= 0:  # a header that gives neither a frame count nor a duration
        return None
    return plan.estimate_for_job(p.frames, p.width, p.height, req.model, ctx.settings,
                                 chunk_frames=job_chunk_frames(ctx, p, req)).to_status()


def load_probe(ctx: Context, job_id: str) -> Probe:
    return Probe.from_json(ctx.store.read_json(WORK, _probe_blob(job_id)))


# --------------------------------------------------------------------------------------------
# scan


def _input_file(req: JobRequest) -> str:
    """The input's name in a task's working directory: its extension kept (libav picks a
    demuxer by it too) when it is plain ASCII."""
    _, ext = split_ext(req.blob)
    return f"input.{ext}" if ext.isascii() and ext.isalnum() else "input"


def scan_job(ctx: Context, req: JobRequest, attempt: int = 1) -> dict[str, Any]:
    """Submit the scan task: the input's full probe on the pool. Bounded: one submit."""
    changed = input_changed(ctx, req)
    if changed:
        return _bad(changed)
    ctx.backend.submit(req.job_id, [scan_task(req, ctx.settings, attempt)])
    return {"ok": True}


def scan_task(req: JobRequest, settings: Settings, attempt: int) -> TaskSpec:
    """The Batch task that reads every packet of the input (``python -m scoring scan``) and
    uploads its probe, per-frame timestamps included, to work/<job>/probe.json."""
    task_id = scan_task_id(attempt)
    task = ScanTask(input=_input_file(req), limits=settings.input_limits())
    return TaskSpec(
        id=task_id, command=task.argv(),
        resource_files=[ResourceFile(BlobRef(INCOMING, req.blob), task.input)],
        output_files=[OutputFile(task.output, BlobRef(WORK, _probe_blob(req.job_id))),
                      *_log_files(req.job_id, task_id)],
        kind="scan", max_wall_s=settings.task_max_wall_s, max_retries=settings.task_max_retries)


def scan_state(ctx: Context, req: JobRequest, attempt: int) -> dict[str, Any]:
    """Where the scan task stands, as ``split_state`` says it of the split task;
    ``frames_done`` counts the frames scanned."""
    return _task_state(ctx, req, scan_task_id(attempt))


# --------------------------------------------------------------------------------------------
# split


def job_chunk_frames(ctx: Context, p: Probe, req: JobRequest) -> int:
    """Frames per chunk: the job's option, else sized by ``shared.plan`` (CHUNK_TARGET_SECONDS
    of work per task) or FRAMES_PER_CHUNK; never more than MAX_CHUNKS chunks."""
    return plan.choose_chunk_frames(p.frames, p.width, p.height, req.model, ctx.settings,
                                 explicit=req.options.get("frames_per_chunk"))


def split_job(ctx: Context, req: JobRequest, attempt: int = 1) -> dict[str, Any]:
    """Plan the chunks (work/<job>/chunks.json) and submit the split task that cuts them on the
    pool. Bounded whatever the video's length: the cut itself runs as Batch work."""
    changed = input_changed(ctx, req)
    if changed:
        return _bad(changed)
    p = load_probe(ctx, req.job_id)
    mode, chunks = plan_chunks(p, job_chunk_frames(ctx, p, req))
    save_chunks(ctx, req.job_id, mode, chunks)
    ctx.backend.submit(req.job_id, [split_task(req, ctx.settings, chunks, attempt)])
    # The scanned probe (exact count, warnings, ...) replaces what the header said.
    return {"ok": True, "mode": mode, "chunks": len(chunks), "probe": p.summary(),
            "estimate": _estimate(ctx, req, p)}


def split_task(req: JobRequest, settings: Settings, chunks: list[Chunk],
               attempt: int) -> TaskSpec:
    """The Batch task that cuts the input into its chunks (``python -m scoring split``): one
    pass over the video on a node, each chunk uploaded to work/<job>/chunks/."""
    task_id = split_task_id(attempt)
    task = SplitTask(input=_input_file(req))
    command = task.argv()
    resources = [ResourceFile(BlobRef(INCOMING, req.blob), task.input),
                 ResourceFile(BlobRef(WORK, _probe_blob(req.job_id)), task.probe),
                 ResourceFile(BlobRef(WORK, _chunks_blob(req.job_id)), task.chunks)]
    outputs = [OutputFile(task.chunk_file(c.index), BlobRef(WORK, chunk_blob(req.job_id,
                                                                              c.index)))
               for c in chunks]
    return TaskSpec(
        id=task_id, command=command, resource_files=resources,
        output_files=[*outputs, *_log_files(req.job_id, task_id)],
        kind="split", frames=sum(c.frames for c in chunks),
        max_wall_s=settings.task_max_wall_s, max_retries=settings.task_max_retries)


def split_state(ctx: Context, req: JobRequest, attempt: int) -> dict[str, Any]:
    """Where the split task stands: ``state`` (pending, running, succeeded, failed, or
    missing when the backend does not know it), ``frames_done``, and a failure's reason.

    A split that read a replaced input (the task downloads the blob by name) fails here,
    with that reason, before any chunk is scored."""
    return _task_state(ctx, req, split_task_id(attempt))


def _task_state(ctx: Context, req: JobRequest, task_id: str) -> dict[str, Any]:
    """One task of the job as the scan, split and stitch monitors read it; a task that read a
    replaced input (tasks download the blob by name) is failed with that reason."""
    t = next((t for t in ctx.backend.task_states(req.job_id) if t.id == task_id), None)
    if t is None:
        return {"state": "missing", "frames_done": 0}
    result = {"state": t.state, "frames_done": t.frames_done, "exit_code": t.exit_code,
              "bad_input": t.bad_input, "error": _short(t.error)}
    changed = input_changed(ctx, req) if t.state == "succeeded" else None
    if changed:
        result.update(state="failed", bad_input=True, error=changed)
    return result


def _log_files(job_id: str, task_id: str) -> list[OutputFile]:
    """A task's stdout and stderr, kept in work/<job>/logs/ whatever the outcome."""
    return [OutputFile(f"{stream}.txt", BlobRef(WORK, _log_blob(job_id, task_id, stream)),
                       "always") for stream in ("stdout", "stderr")]


def save_chunks(ctx: Context, job_id: str, mode: str, chunks: list[Chunk]) -> None:
    """The job's chunk plan, in work/<job>/chunks.json: every later step reads it from there
    (the orchestrator holds only the count)."""
    ctx.store.write_json(WORK, _chunks_blob(job_id),
                         {"mode": mode, "chunks": [c.to_json() for c in chunks]})


@dataclass(frozen=True)
class _Plan:
    """A job's chunk plan in compact form: chunk ``i`` is frames ``start[i]`` to
    ``start[i] + frames[i]`` (a plan lists its chunks in order, numbered from 0)."""

    etag: str
    start: array
    frames: array


# Every monitor poll (progress) needs the plan, which is ~60 bytes a chunk in chunks.json (600
# KB at MAX_CHUNKS). Each process keeps the plans of its latest jobs, 16 bytes a chunk, keyed
# by the blob's ETag: a poll revalidates with one conditional read that transfers nothing
# while the plan is unchanged, and a rewritten plan (a split run again, a restarted job) is
# read afresh, so a stale plan is never used and nothing depends on which process served
# the previous poll.
PLAN_CACHE_JOBS = 16
_plans: OrderedDict[tuple[str, str], _Plan] = OrderedDict()
_plans_lock = threading.Lock()


def _load_plan(ctx: Context, job_id: str) -> _Plan:
    key = (ctx.store.account_name, job_id)
    with _plans_lock:
        cached = _plans.get(key)
    fresh = ctx.store.read_if_changed(WORK, _chunks_blob(job_id), cached and cached.etag)
    if fresh is None:
        assert cached is not None
        plan = cached
    else:
        data, etag = fresh
        chunks = json.loads(data)["chunks"]
        if [c["index"] for c in chunks] != list(range(len(chunks))):
            raise ValueError(f"the chunk plan of {job_id} does not number its chunks in order")
        plan = _Plan(etag, array("q", (c["start"] for c in chunks)),
                     array("q", (c["frames"] for c in chunks)))
    with _plans_lock:
        _plans[key] = plan
        _plans.move_to_end(key)
        while len(_plans) > PLAN_CACHE_JOBS:
            _plans.popitem(last=False)
    return plan


def load_chunks(ctx: Context, job_id: str) -> list[Chunk]:
    plan = _load_plan(ctx, job_id)
    return [Chunk(i, s, f) for i, (s, f) in enumerate(zip(plan.start, plan.frames))]


# --------------------------------------------------------------------------------------------
# tasks


def chunk_codec(req: JobRequest, settings: Settings) -> str:
    """The stylized video codec: the configured one, unless the container cannot hold it."""
    _, ext = split_ext(req.output)
    if ext == "webm" and settings.output_codec not in ("libvpx-vp9", "libaom-av1", "libsvtav1"):
        return "libvpx-vp9"  # WebM holds only VP8/VP9/AV1
    return settings.output_codec


def chunk_task(req: JobRequest, settings: Settings, chunk: Chunk, attempt: int,
               style_blob: str, chunks_total: int = 0) -> TaskSpec:
    """The Batch task that stylizes one chunk (the chunk task contract: shared/contract.py).
    ``chunks_total``: how many chunks the job has (a chunk before the last gets a lead-out)."""
    task_id = chunk_task_id(chunk.index, attempt)
    style_file = "style" + os.path.splitext(style_blob)[1]
    resources = [ResourceFile(BlobRef(WORK, chunk_blob(req.job_id, chunk.index)), "chunk.mkv"),
                 ResourceFile(BlobRef(STYLES, style_blob), style_file)]
    lead_in = None
    lead_out = 0
    if settings.lead_in_frames > 0:
        # No seam between chunks: a chunk first scores the previous chunk's last frames (dropped);
        # one with a successor cross-fades its last frames into what that lead-in computes.
        if chunk.index > 0:
            lead_in = "lead_in.mkv"
            resources.append(ResourceFile(
                BlobRef(WORK, chunk_blob(req.job_id, chunk.index - 1)), lead_in))
        if chunk.index < chunks_total - 1:
            lead_out = settings.lead_in_frames
    model_file = None
    if req.model != "gatys":
        model_file = "model.pt"
        resources.append(ResourceFile(BlobRef(MODELS, model_blob(req.style)), model_file))
    command = StylizeTask(
        input="chunk.mkv", output="out.mkv", style=style_file, model=req.model,
        model_file=model_file,
        max_side=int(req.options.get("max_side", settings.scoring_max_side)),
        steps=int(req.options.get("steps", settings.gatys_steps)),
        warm_steps=int(req.options.get("warm_steps", settings.gatys_warm_steps)),
        codec=chunk_codec(req, settings), crf=settings.output_crf,
        preset=settings.output_preset, pix_fmt=settings.output_pix_fmt,
        temporal=settings.temporal_stage,
        temporal_weight=settings.temporal_weight_for(req.model),
        chroma_sigma=settings.chroma_sigma, lead_in=lead_in,
        lead_in_frames=settings.lead_in_frames, lead_out_frames=lead_out).argv()
    return TaskSpec(
        id=task_id, command=command, resource_files=resources,
        output_files=[
            OutputFile("out.mkv", BlobRef(WORK, stylized_blob(req.job_id, chunk.index))),
            *_log_files(req.job_id, task_id),
        ],
        kind="chunk", chunk=chunk.index, frames=chunk.frames,
        max_wall_s=settings.task_max_wall_s, max_retries=settings.task_max_retries)


def train_task(req: JobRequest, settings: Settings, chunks: list[Chunk], attempt: int,
               style_blob: str) -> TaskSpec:
    """The Batch task that trains a fast model for the style on frames of this very video."""
    task_id = train_task_id(attempt)
    style_file = "style" + os.path.splitext(style_blob)[1]
    # A few chunks spread over the video are the training content.
    picks = sorted({chunks[int(i * (len(chunks) - 1) / 3)].index for i in range(4)}) \
        if len(chunks) > 1 else [chunks[0].index]
    resources = [ResourceFile(BlobRef(STYLES, style_blob), style_file)]
    resources += [ResourceFile(BlobRef(WORK, chunk_blob(req.job_id, i)), f"content/{i:05d}.mkv")
                  for i in picks]
    command = TrainTask(
        style=style_file, output="model.pt",
        content=[f"content/{i:05d}.mkv" for i in picks],
        steps=int(req.options.get("train_steps", settings.train_steps))).argv()
    return TaskSpec(
        id=task_id, command=command, resource_files=resources,
        output_files=[
            OutputFile("model.pt", BlobRef(MODELS, model_blob(req.style))),
            *_log_files(req.job_id, task_id),
        ],
        kind="train", max_wall_s=settings.task_max_wall_s, max_retries=settings.task_max_retries)


def attempt_of(retried: dict[str, int], chunk: int) -> int:
    """A chunk's current attempt: ``retried`` holds only the chunks past their first."""
    return int(retried.get(str(chunk), 1))


def submit_job(ctx: Context, req: JobRequest, chunks: list[list[int]], retried: dict[str, int],
               style_blob: str, train_attempt: int = 0) -> dict[str, Any]:
    """Add the tasks of the current attempt of the given chunks (``chunks``: inclusive index
    ranges, ``shared.plan.chunk_ranges``), and of training attempt ``train_attempt`` when
    not 0; idempotent per task id. The backend adds them in bulk (Azure: 100 per request)."""
    by_index = {c.index: c for c in load_chunks(ctx, req.job_id)}
    tasks = []
    if train_attempt:
        tasks.append(train_task(req, ctx.settings, list(by_index.values()), train_attempt,
                                style_blob))
    tasks += [chunk_task(req, ctx.settings, by_index[i], attempt_of(retried, i), style_blob,
                         len(by_index))
              for i in plan.expand_ranges(chunks)]
    ctx.backend.submit(req.job_id, tasks)
    return {"submitted": len(tasks)}


def model_exists(ctx: Context, style: str) -> bool:
    return ctx.store.exists(MODELS, model_blob(style))


# --------------------------------------------------------------------------------------------
# progress

_STATE_CODE = {"pending": "P", "running": "R", "succeeded": "S", "failed": "F"}
# At most this many failed chunks are reported per round (the rest come in the next ones),
# and this many backend-retry reasons: one round's result stays small whatever fails.
FAILURES_PER_ROUND = 20
RETRY_REASONS_PER_ROUND = 10


def progress_job(ctx: Context, req: JobRequest, chunks: int, retried: dict[str, int],
                 train_attempt: int = 0, since: str | None = None,
                 open_rows: list[str] | None = None, slots: int = 1) -> dict[str, Any]:
    """Where the current attempts of the job's ``chunks`` chunks stand, in a result whose size
    does not grow with the chunk count (it goes into orchestration history every round).

    ``retried``: the chunks past their first attempt ({"<chunk>": attempt}); ``since``: the
    latest task end the caller has seen (ISO), ``open_rows``: the timeline rows
    ("<chunk>:<attempt>") it holds that had not ended; ``slots``: how many tasks have run at
    once so far.

    Returns ``counts`` (current attempts by state: pending, running, succeeded, failed,
    missing), ``frames_done`` (finished chunks plus what running tasks reported),
    ``failures`` (at most FAILURES_PER_ROUND failed chunks, with ``failures_left`` more),
    ``missing`` (index ranges of chunks whose task the backend does not know: lost with a local
    pool, or a deleted Batch job), ``timeline`` ({"<chunk>:<attempt>": [created, started,
    ended, node, state code]} for tasks that run, ended after ``since`` or are open rows; at
    most MAX_TIMELINE_ROWS new ones), ``retries_total`` and ``retry_reasons`` (retries the
    backend made itself, over all the job's tasks, and the latest reasons as [chunk, reason]),
    ``slots`` and ``makespan_frames`` (the ETA's work left: ``plan.remaining_makespan``).
    """
    states = ctx.backend.task_states(req.job_id)
    by_id = {t.id: t for t in states}
    chunk_frames = _load_plan(ctx, req.job_id).frames if chunks else array("q")
    counts = dict.fromkeys(("pending", "running", "succeeded", "failed", "missing"), 0)
    failures: list[dict[str, Any]] = []
    failed_total = 0
    missing: list[int] = []
    running_left: list[int] = []
    pending_frames: list[int] = []
    timeline: dict[str, list[Any]] = {}
    wanted_rows = set(open_rows or ())
    frames_done = 0
    for index in range(chunks):
        attempt = attempt_of(retried, index)
        task_id = chunk_task_id(index, attempt)
        t = by_id.get(task_id)
        frames = chunk_frames[index] if index < len(chunk_frames) else 0
        if t is None:
            counts["missing"] += 1
            missing.append(index)
            pending_frames.append(frames)
            continue
        counts[t.state] += 1
        row = f"{index}:{attempt}"
        if t.started and (t.state == "running" or row in wanted_rows
                          or (t.ended and (since is None or t.ended >= since))):
            timeline[row] = [t.created, t.started, t.ended, t.node, _STATE_CODE[t.state]]
        if t.state == "succeeded":
            frames_done += frames
        elif t.state == "running":
            partial = min(t.frames_done, frames)
            frames_done += partial
            running_left.append(frames - partial)
        elif t.state == "pending":
            pending_frames.append(frames)
        elif t.state == "failed":
            failed_total += 1
            if len(failures) < FAILURES_PER_ROUND:
                failures.append({"chunk": index, "attempt": attempt, "task": task_id,
                                 "exit_code": t.exit_code, "bad_input": t.bad_input,
                                 "error": _short(t.error), "log": t.log})
            pending_frames.append(frames)  # it runs again unless the job fails
    if len(timeline) > MAX_TIMELINE_ROWS:  # the latest: open rows first, then by start
        keep = sorted(timeline, key=lambda k: (k in wanted_rows, timeline[k][1] or ""))
        timeline = {k: timeline[k] for k in keep[-MAX_TIMELINE_ROWS:]}
    # Retries the backend made itself: a total over every task the job has had (old attempts
    # too), so the caller needs no per-task memory to see new ones; reasons of the latest.
    retried_tasks = [t for t in states if t.retries]
    retried_tasks.sort(key=lambda t: (t.ended is None, t.ended or t.started or ""))
    reasons = [[_chunk_of(t.id), _short(t.retry_error)] for t in retried_tasks
               if _chunk_of(t.id) is not None][-RETRY_REASONS_PER_ROUND:]
    slots = max(1, slots, counts["running"])
    result: dict[str, Any] = {
        "counts": counts, "frames_done": frames_done, "failures": failures,
        "failures_left": failed_total - len(failures), "missing": plan.chunk_ranges(missing),
        "timeline": timeline, "retries_total": sum(t.retries for t in states),
        "retry_reasons": reasons, "slots": slots,
        "makespan_frames": plan.remaining_makespan(running_left, pending_frames, slots)}
    if train_attempt:
        t = by_id.get(train_task_id(train_attempt))
        result["train"] = None if t is None else {
            "state": t.state, "exit_code": t.exit_code, "error": _short(t.error),
            "bad_input": t.bad_input, "progress": t.frames_done}
    return result


def _chunk_of(task_id: str) -> int | None:
    m = _TASK_ID.match(task_id)
    return int(m.group(1)) if m and m.group(1) else None


def _short(text: str | None, limit: int = 300) -> str | None:
    """A task's failure reason as it may enter history and the job status: redacted, short."""
    if text is None:
        return None
    text = redact(text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


# --------------------------------------------------------------------------------------------
# stitch and cleanup


def _result_work_blob(job_id: str, ext: str) -> str:
    """Where the stitch task leaves the output video, before ``publish`` copies it."""
    return f"{work_prefix(job_id)}result.{ext}"


def _preview_work_blob(job_id: str) -> str:
    return f"{work_prefix(job_id)}preview.jpg"


def _stitch_summary_blob(job_id: str) -> str:
    return f"{work_prefix(job_id)}stitch.json"


def stitch_job(ctx: Context, req: JobRequest, attempt: int = 1) -> dict[str, Any]:
    """Submit the stitch task (``python -m scoring stitch``), which joins the stylized chunks
    with the original's other streams into work/<job>/result.<ext> and the preview on a node.
    Bounded whatever the video's length: the join itself runs as Batch work."""
    for name in (req.output, req.preview):
        taken = _result_taken(ctx, req, name)
        if taken:  # before the work: a name another job holds stays refused
            return _bad(taken)
    changed = input_changed(ctx, req)
    if changed:
        return _bad(changed)
    chunks = load_chunks(ctx, req.job_id)
    ctx.backend.submit(req.job_id, [stitch_task(req, ctx.settings, chunks, attempt)])
    return {"ok": True, "chunks": len(chunks)}


def stitch_task(req: JobRequest, settings: Settings, chunks: list[Chunk],
                attempt: int) -> TaskSpec:
    """The Batch task that joins the stylized chunks (the stitch task contract): one
    resource file per chunk, the output video, the preview and a summary out to work/<job>/."""
    task_id = stitch_task_id(attempt)
    _, ext = split_ext(req.output)  # one of VIDEO_EXTENSIONS: a plain word
    task = StitchTask(input=_input_file(req), output=f"result.{ext}")
    middle = chunks[StitchTask.preview_chunk(len(chunks))].index
    resources = [ResourceFile(BlobRef(INCOMING, req.blob), task.input),
                 ResourceFile(BlobRef(WORK, _probe_blob(req.job_id)), task.probe),
                 ResourceFile(BlobRef(WORK, _chunks_blob(req.job_id)), task.chunks),
                 ResourceFile(BlobRef(WORK, chunk_blob(req.job_id, middle)),
                              task.preview_source),
                 *(ResourceFile(BlobRef(WORK, stylized_blob(req.job_id, c.index)),
                                task.stylized_file(c.index)) for c in chunks)]
    outputs = [OutputFile(task.output, BlobRef(WORK, _result_work_blob(req.job_id, ext))),
               OutputFile(task.preview, BlobRef(WORK, _preview_work_blob(req.job_id))),
               OutputFile(task.summary, BlobRef(WORK, _stitch_summary_blob(req.job_id)))]
    return TaskSpec(
        id=task_id, command=task.argv(), resource_files=resources,
        output_files=[*outputs, *_log_files(req.job_id, task_id)],
        kind="stitch", frames=sum(c.frames for c in chunks),
        max_wall_s=settings.task_max_wall_s, max_retries=settings.task_max_retries)


def stitch_state(ctx: Context, req: JobRequest, attempt: int) -> dict[str, Any]:
    """Where the stitch task stands, as ``split_state`` says it for the split; once it has
    succeeded, also its summary: ``frames``, ``size_bytes``, ``streams_dropped``.

    The task downloads the input by name: a replaced input fails the job here, with that
    reason, before anything is published."""
    result = _task_state(ctx, req, stitch_task_id(attempt))
    if result["state"] == "succeeded":
        summary = ctx.store.read_json(WORK, _stitch_summary_blob(req.job_id))
        result.update({k: summary[k] for k in ("frames", "size_bytes", "streams_dropped")})
    return result


def _published(req: JobRequest, item: str) -> tuple[str, str, str]:
    """(source in work/, name in outgoing/, content type) of one published result."""
    if item == "preview":
        return _preview_work_blob(req.job_id), req.preview, "image/jpeg"
    if item != "video":
        raise ValueError(f"nothing to publish called {item!r}")
    _, ext = split_ext(req.output)
    return (_result_work_blob(req.job_id, ext), req.output,
            f"video/{'x-matroska' if ext == 'mkv' else ext}")


def publish_job(ctx: Context, req: JobRequest, item: str) -> dict[str, Any]:
    """Copy one of the stitch task's results (``item``: preview or video) from work/ into
    outgoing/ by reference: a server-side copy (Copy Blob), so no byte passes through the
    Function and the call takes one request whatever the size. Under the rules of
    ``write_result``: never onto another job's blob. Returns ``copy``: the copy's status
    (``pending`` until the service has finished it: ``publish_state`` follows it)."""
    source, name, content_type = _published(req, item)
    copy = ctx.store.blob_copy((WORK, source), (OUTGOING, name), ttl=_copy_ttl(ctx.settings))
    state = ctx.store.copy_state(OUTGOING, name)
    if state is not None and state.metadata.get("job") == req.job_id and \
            state.status == "pending":
        # Started by an earlier try of this call (only this job's publish copies onto a blob
        # labelled with its id); a second copy would be refused while this one runs.
        return {"ok": True, "copy": "pending"}
    # Metadata travels as HTTP headers (ASCII): the source name is percent-encoded UTF-8.
    meta = {"job": req.job_id, "source": metadata_value(f"{INCOMING}/{req.blob}"),
            "style": req.style, "model": req.model}
    taken = write_result(ctx, req, name, copy, meta, content_type)
    if taken:
        return _bad(taken)
    return {"ok": True, "copy": copy.status, "output": f"{OUTGOING}/{name}"}


def publish_state(ctx: Context, req: JobRequest, item: str) -> dict[str, Any]:
    """Where the copy ``publish_job`` started stands: ``copy`` (pending, success, failed,
    aborted) and the service's description of a failure."""
    _, name, _ = _published(req, item)
    state = ctx.store.copy_state(OUTGOING, name)
    if state is None or state.metadata.get("job") != req.job_id:
        return {"copy": "failed", "error": f"{OUTGOING}/{name} is not there any more"}
    return {"copy": state.status or "success", "error": _short(state.description)}


def _copy_ttl(settings: Settings) -> timedelta:
    """How long the storage service may read a copy's source: as long as a task's SAS."""
    return timedelta(seconds=settings.task_max_wall_s, minutes=settings.sas_slack_minutes)


def _result_taken(ctx: Context, req: JobRequest, name: str) -> str | None:
    """Why ``name`` in outgoing/ is not this job's to write, or None."""
    info = ctx.store.info(OUTGOING, name)
    owner = info.metadata.get("job") if info else None
    if info is not None and owner != req.job_id:
        return (f"{OUTGOING}/{name} already exists and belongs to "
                f"{'job ' + owner if owner else 'another writer'}; it was left as it is")
    return None


def write_result(ctx: Context, req: JobRequest, name: str, what: Path | BlockWriter | BlobCopy,
                 meta: dict[str, str], content_type: str) -> str | None:
    """Write one result to outgoing/ without ever replacing another job's blob: create it
    only if the name is free (If-None-Match), or replace it only if this job wrote it (a
    retried stitch) and only that version (If-Match). ``what`` is a local file, staged
    blocks to commit, or a server-side copy to start. Returns why not, or None when written."""

    def put(**condition: Any) -> None:
        if isinstance(what, BlockWriter | BlobCopy):
            what.commit(meta, content_type, **condition)
        else:
            ctx.store.upload_file(OUTGOING, name, what, metadata=meta,
                                  content_type=content_type, **condition)

    try:
        put(overwrite=False)
        return None
    except ResourceExistsError:
        pass
    info = ctx.store.info(OUTGOING, name)
    taken = _result_taken(ctx, req, name)
    if taken:
        return taken
    try:
        put(overwrite=info is not None, if_etag=info.etag if info else None)
    except (ResourceExistsError, ResourceModifiedError):
        return f"{OUTGOING}/{name} was written by someone else meanwhile; it was left as it is"
    return None


_TASK_ID = re.compile(r"^(?:chunk-(\d+)-a(\d+)|(train|split|scan|stitch)-a(\d+))$")


def task_report(ctx: Context, req: JobRequest) -> list[dict[str, Any]]:
    """Every Batch task of the job with its own timestamps, node and frames: the trace's task
    spans and the task metrics (read before cleanup deletes the Batch job)."""
    try:
        states = ctx.backend.task_states(req.job_id)
        frames = {c.index: c.frames for c in load_chunks(ctx, req.job_id)} if states else {}
    except Exception as exc:  # telemetry must never fail a job
        log.warning("no task report for %s: %s", req.job_id, exc)
        return []
    report = []
    for t in states:
        m = _TASK_ID.match(t.id)
        if not m:
            continue
        chunk = int(m.group(1)) if m.group(1) else None
        report.append({"id": t.id, "stage": m.group(3) or "score",
                       "chunk": chunk, "attempt": int(m.group(2) or m.group(4)),
                       "state": t.state, "created": t.created, "started": t.started,
                       "ended": t.ended, "node": t.node,
                       "frames": frames.get(chunk) if chunk is not None else None})
    return report


def cleanup_job(ctx: Context, req: JobRequest, failed: bool) -> dict[str, Any]:
    """Delete work/<job>/ and the Batch job; on failure keep work/ when so configured."""
    try:
        _stop_batch_job(ctx, req.job_id, CANCEL_WAIT_S)
    except Exception as exc:  # cleanup must not fail a finished job
        log.warning("could not delete Batch job %s: %s", req.job_id, exc)
    if failed and ctx.settings.keep_work_on_failure:
        return {"deleted": 0, "kept": f"{WORK}/{work_prefix(req.job_id)}"}
    return {"deleted": ctx.store.delete_prefix(WORK, work_prefix(req.job_id))}


# How long a cancel waits for the job's tasks to stop before it deletes their folder anyway.
CANCEL_WAIT_S = 120.0


def cancel_job(ctx: Context, job_id: str, wait_s: float = CANCEL_WAIT_S) -> bool:
    """Stop the Batch side of a cancelled job and drop its intermediates (the HTTP cancel
    route terminates the orchestration, which therefore cannot clean up itself).

    The tasks are stopped and waited for *before* work/<job>/ is deleted, so no late upload
    (a killed task's log) lands afterwards; then the Batch job is deleted, so a restart of the
    job starts from a clean slate. Returns False when the tasks did not stop in time (the
    folder is deleted all the same)."""
    stopped = _stop_batch_job(ctx, job_id, wait_s)
    ctx.store.delete_prefix(WORK, work_prefix(job_id))
    return stopped


def _stop_batch_job(ctx: Context, job_id: str, wait_s: float) -> bool:
    """Terminate the Batch job, wait for its tasks to end (a failed job's other chunks may
    still run and would upload their logs late), then delete it."""
    backend = ctx.backend
    backend.cancel(job_id)
    stopped = backend.wait_stopped(job_id, wait_s)
    if not stopped:
        log.warning("tasks of job %s still running after %.0f s; deleting it anyway",
                    job_id, wait_s)
    backend.delete(job_id)
    return stopped
