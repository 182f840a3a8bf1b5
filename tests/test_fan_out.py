"""Fan-out at scale: a job of thousands of chunks through the real ``video_pipeline``
orchestrator (replayed by the Durable SDK in the repo's Durable host, on a virtual clock) and
the real progress/cleanup steps, over the Azure Batch backend against the loopback Batch fake
(2000 chunks; its simulated tasks cost next to nothing) and over the real local Batch backend
(400 chunks of ``sh`` printing the chunk task's frame events). The orchestration's history per
generation, its input and the job status must stay within the same bounds whatever the chunk
count, and progress and counts must come out right."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import azure.durable_functions as df
import pytest

from functions import orchestrator
from shared import pipeline, plan
from shared.batch import TaskSpec, chunk_task_id
from shared.jobs import new_job_request
from shared.settings import get_settings, install_settings, settings_from_env
from shared.storage import get_store
from shared.video import Chunk
from stylebatch import worker
from stylebatch.durable_host import DurableHost, VirtualClock

FRAMES_PER_CHUNK = 2
NODE_RETRY = 11  # local: its first run exits 1 and the "node" retries it (TASK_MAX_RETRIES)
ROUNDS_PER_GENERATION = 3
DURABLE_STATUS_LIMIT = 16 * 1024

app = df.DFApp()
app.register_functions(orchestrator.bp)
# The job the activities play: its chunk count, the chunks whose first attempt fails, the
# backend, and a folder for the local tasks' markers (set by the fixture).
JOB: dict[str, Any] = {}


def _fail_once(chunks: int) -> set[int]:
    return {7, chunks // 2, chunks - 1}


def _ctx() -> pipeline.Context:
    return pipeline.Context.from_settings(get_settings())


# The activities: probe, scan, scan_state, split and split_state stand in for a video of
# JOB["chunks"] * FRAMES_PER_CHUNK frames (the chunk plan is written where the real split task's
# plan goes, and the scan and the split are done at once); submit adds tasks whose command
# is a shell line printing frame events; progress and cleanup are the real steps; the stitch
# and the publish are done at once.

def _summary() -> dict:
    frames = JOB["chunks"] * FRAMES_PER_CHUNK
    return {"frames": frames, "width": 64, "height": 36, "fps": "25/1",
            "duration_s": frames / 25, "audio_streams": 0, "rotation": 0, "warnings": []}


@app.activity_trigger(input_name="payload", activity="probe")
def probe(payload: dict) -> dict:
    return {"ok": True, "style_blob": "swirl.jpg", "estimate": None,
            "probe": {**_summary(), "frames_estimated": True}, "scan": True}


@app.activity_trigger(input_name="payload", activity="scan")
def scan(payload: dict) -> dict:
    return {"ok": True}


@app.activity_trigger(input_name="payload", activity="scan_state")
def scan_state(payload: dict) -> dict:
    return {"state": "succeeded", "frames_done": JOB["chunks"] * FRAMES_PER_CHUNK}


@app.activity_trigger(input_name="payload", activity="split")
def split(payload: dict) -> dict:
    job_id = payload["request"]["job_id"]
    chunks = [Chunk(i, i * FRAMES_PER_CHUNK, FRAMES_PER_CHUNK) for i in range(JOB["chunks"])]
    pipeline.save_chunks(_ctx(), job_id, "copy", chunks)
    return {"ok": True, "mode": "copy", "chunks": len(chunks),
            "probe": _summary()}


@app.activity_trigger(input_name="payload", activity="split_state")
def split_state(payload: dict) -> dict:
    return {"state": "succeeded", "frames_done": JOB["chunks"] * FRAMES_PER_CHUNK}


@app.activity_trigger(input_name="payload", activity="model_exists")
def model_exists(payload: dict) -> dict:
    return {"exists": True}


def _task(chunk: int, attempt: int) -> TaskSpec:
    if JOB["backend"] == "azure":  # the fake's simulated executor plays it (JOB["fake"])
        return TaskSpec(id=chunk_task_id(chunk, attempt), command=["python", "-m", "scoring"],
                        kind="chunk", chunk=chunk, frames=FRAMES_PER_CHUNK, max_wall_s=60)
    frames = "; ".join(f"echo '{{\"event\": \"frame\", \"index\": {i}}}'"
                       for i in range(FRAMES_PER_CHUNK))
    fail = "echo '{\"event\": \"error\", \"reason\": \"first try\"}' >&2; exit 1"
    script = frames
    if chunk in JOB["fail_once"] and attempt == 1:
        script = fail
    elif chunk == NODE_RETRY:
        marker = JOB["dir"] / "node-retry"
        script = f"if [ -e {marker} ]; then {frames}; else touch {marker}; {fail}; fi"
    return TaskSpec(id=chunk_task_id(chunk, attempt), command=["sh", "-c", script],
                    kind="chunk", chunk=chunk, frames=FRAMES_PER_CHUNK, max_wall_s=60,
                    max_retries=1 if chunk == NODE_RETRY else 0)


@app.activity_trigger(input_name="payload", activity="submit")
def submit(payload: dict) -> dict:
    ctx = _ctx()
    tasks = [_task(i, pipeline.attempt_of(payload["retried"], i))
             for i in plan.expand_ranges(payload["chunks"])]
    ctx.backend.submit(payload["request"]["job_id"], tasks)
    return {"submitted": len(tasks)}


@app.activity_trigger(input_name="payload", activity="progress")
def progress(payload: dict) -> dict:
    from shared.jobs import JobRequest

    return pipeline.progress_job(
        _ctx(), JobRequest.from_json(payload["request"]), int(payload["chunks"]),
        payload["retried"], int(payload.get("train_attempt", 0)), payload.get("since"),
        payload.get("open_rows"), int(payload.get("slots", 1)))


@app.activity_trigger(input_name="payload", activity="stitch")
def stitch(payload: dict) -> dict:
    return {"ok": True, "chunks": JOB["chunks"]}


@app.activity_trigger(input_name="payload", activity="stitch_state")
def stitch_state(payload: dict) -> dict:
    frames = JOB["chunks"] * FRAMES_PER_CHUNK
    return {"state": "succeeded", "frames_done": frames, "frames": frames, "size_bytes": 1,
            "streams_dropped": []}


@app.activity_trigger(input_name="payload", activity="publish")
def publish(payload: dict) -> dict:
    return {"ok": True, "copy": "success"}


@app.activity_trigger(input_name="payload", activity="cleanup")
def cleanup(payload: dict) -> dict:
    from shared.jobs import JobRequest

    ctx = _ctx()
    req = JobRequest.from_json(payload["request"])
    return {"tasks": len(pipeline.task_report(ctx, req)),
            **pipeline.cleanup_job(ctx, req, bool(payload.get("failed")))}


@pytest.fixture(params=[pytest.param(("azure", 2000), marks=pytest.mark.slow), ("local", 400)],
                ids=["azure-2000", "local-400"])
def stack(request, azurite, tmp_path):
    from shared.batch.local import LocalBatchBackend
    from tests.batch.fake_batch_api import FakeBatchService, Outcome

    kind, chunks = request.param
    JOB.update(chunks=chunks, backend=kind, fail_once=_fail_once(chunks), dir=tmp_path)
    env = {"STORAGE": azurite.connection_string, "LOCAL_BATCH_SLOTS": "8",
           "POLL_INTERVAL_S": "5", "MONITOR_ROUNDS_PER_GENERATION": str(ROUNDS_PER_GENERATION),
           "MAX_CHUNKS": "10000", "MAX_CHUNK_ATTEMPTS": "2"}
    fake = None
    if kind == "azure":
        fake = FakeBatchService(nodes=16).start()
        for chunk in JOB["fail_once"]:
            fake.outcome(f"{chunk_task_id(chunk, 1)}", Outcome(exit_code=1, reason="first try"))
        env.update(BATCH_BACKEND="azure", BATCH_ACCOUNT_URL=fake.url,
                   BATCH_ACCOUNT_NAME=fake.account, BATCH_ACCOUNT_KEY=fake.key,
                   BATCH_POOL_ID=fake.pool_id)
    install_settings(settings_from_env(env))
    settings = get_settings()
    store = get_store(settings)
    store.ensure_containers()
    if kind == "local":
        backend = LocalBatchBackend.shared(settings, store)
        on_idle = lambda s: backend.wait_for_change(min(s, 1.0))  # noqa: E731
    else:
        on_idle = lambda s: time.sleep(min(s, 0.05))  # noqa: E731
    host = DurableHost(worker.load_app(__name__), clock=VirtualClock(), on_idle=on_idle)
    host.start_background()
    try:
        yield host, settings
    finally:
        host.stop()
        LocalBatchBackend.shutdown_all()
        if fake is not None:
            fake.stop()
        install_settings(None)


def test_thousands_of_chunks_keep_history_input_and_status_bounded(stack):
    host, settings = stack
    req = new_job_request("long-film.mp4", "0x8D", "swirl", "gatys", "2026-12-01T00:00:00Z")
    payload = {"request": req.to_json(),
               "options": orchestrator.orchestration_options(settings)}
    seen: list[dict[str, Any]] = []
    stop = threading.Event()

    def watch() -> None:  # what a user polling GET /api/jobs/{id} sees along the way
        while not stop.is_set():
            inst = host.instances.get(req.job_id)
            status = inst.custom_status if inst else None
            if status and (not seen or status != seen[-1]):
                seen.append(status)
            time.sleep(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    host.start_instance(orchestrator.ORCHESTRATOR, req.job_id, json.dumps(payload))
    inst = host.wait_for(req.job_id, timeout=600)
    stop.set()
    watcher.join(5)

    print(f"generations {inst.generation + 1}, episodes {inst.episodes}, peak history "
          f"{inst.peak_history} events / {inst.peak_history_bytes} B, input "
          f"{inst.peak_input_bytes} B, status {inst.peak_status_bytes} B")
    assert inst.status == "Completed", inst.output
    final = inst.custom_status
    chunks, fail_once = JOB["chunks"], JOB["fail_once"]
    frames = chunks * FRAMES_PER_CHUNK
    assert final["state"] == "completed" and final["percent"] == 100.0
    assert final["frames"] == {"total": frames, "done": frames}
    assert final["chunks"] == {"total": chunks, "done": chunks, "running": 0,
                               "failed": len(fail_once)}
    by = sorted((r["by"], r["chunk"]) for r in final["retries"])
    by_node = [("backend", NODE_RETRY)] if JOB["backend"] == "local" else []
    assert by == sorted([("orchestrator", c) for c in fail_once] + by_node)
    assert len(final["tasks"]) == orchestrator.MAX_TIMELINE_ROWS
    for chunk, attempt, *_times, code, _node in final["tasks"]:  # latest attempts, all ended
        assert code == ("F" if chunk in fail_once and attempt == 1 else "S")

    # Many generations, each with a bounded history: a monitor round is at most a progress
    # call, a resubmit and a timer (with their episodes), whatever the chunk count.
    assert inst.generation >= 1  # continued as new at least once
    events_per_round = 12
    assert inst.peak_history <= events_per_round * ROUNDS_PER_GENERATION + 40, inst.peak_history
    # Bytes: a progress result holds counts, at most MAX_TIMELINE_ROWS (+ open) timeline rows
    # and FAILURES_PER_ROUND failures; never one entry per chunk (2000 chunks' task ids
    # alone would be ~40 KB per round, ~400 KB per generation).
    assert inst.peak_history_bytes < 200 * 1024, inst.peak_history_bytes
    assert inst.peak_input_bytes < 16 * 1024, inst.peak_input_bytes
    assert inst.peak_status_bytes < DURABLE_STATUS_LIMIT, inst.peak_status_bytes

    # Progress along the way: never backwards, counts consistent, an ETA while scoring.
    scoring = [s for s in seen if s["state"] == "scoring"]
    assert len(scoring) >= 5
    for a, b in zip(seen, seen[1:]):
        assert b["percent"] >= a["percent"] and b["chunks"]["done"] >= a["chunks"]["done"]
    for s in scoring:
        c = s["chunks"]
        assert c["total"] == chunks and c["done"] + c["running"] <= chunks
        assert len(json.dumps(s)) < DURABLE_STATUS_LIMIT
    assert any(s["eta_seconds"] is not None and s["eta_seconds"] >= 0 for s in scoring)
    assert any(0 < s["chunks"]["done"] < chunks for s in scoring)
