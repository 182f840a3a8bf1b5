"""Cancel and restart as the README promises, through the whole app on the local backend
(Azure Batch: tests/batch/test_cancel_restart_azure.py): a cancelled or failed job restarts
through POST /api/jobs, a cancel leaves nothing in work/<job>/, and the status tells the truth
about running, failed and retried chunks."""

from __future__ import annotations

import json
import time
from dataclasses import replace

from shared.settings import install_settings
from tests.conftest import Harness, probe_and_scan


def _wait_running(h: Harness, job_id: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code, body = h.status(job_id)
        if code == 200 and body.get("chunks", {}).get("running"):
            return body
        time.sleep(0.1)
    raise TimeoutError(f"job {job_id} never had a running chunk")


def _post(h: Harness, body: dict) -> tuple[int, dict]:
    resp = h.functions.http("POST", "/api/jobs", body)
    return resp.status_code, json.loads(resp.get_body())


def test_cancelled_job_leaves_nothing_and_restarts_through_post(make_harness, clips):
    h = make_harness(GATYS_STEPS="60", GATYS_WARM_STEPS="30")  # slow enough to catch running
    name = h.upload(clips["bbb_small"], style="swirl")
    h.functions.trigger_blob(name)
    job_id = h.job_id_for(name)
    _wait_running(h, job_id)

    assert h.functions.http("DELETE", f"/api/jobs/{job_id}").status_code == 202
    # The cancel returned after the tasks stopped: nothing of the job is left, and nothing
    # lands later (a killed task's log upload came after the delete before).
    assert not h.backend.busy()
    assert not list(h.store.list("work", f"{job_id}/"))
    final, _ = h.watch(job_id, timeout=30)
    assert final["state"] == "cancelled" and final["chunks"]["running"] == 0
    assert h.functions.http("DELETE", f"/api/jobs/{job_id}").status_code == 409  # not running
    time.sleep(1)
    assert not list(h.store.list("work", f"{job_id}/"))

    # Restart: same job id, a fresh run that completes. Its chunks need not be slow: the
    # suite's few steps again (a job's tasks take the steps from the settings when submitted).
    install_settings(replace(h.settings, gatys_steps=3, gatys_warm_steps=1))
    code, body = _post(h, {"blob": name, "style": "swirl"})
    assert code == 202 and body == {"id": job_id, "started": True, "status": f"/api/jobs/{job_id}"}
    final, seen = h.watch(job_id)
    assert final["state"] == "completed", final
    assert "scoring" in seen and final["frames"]["done"] == final["frames"]["total"]
    assert h.store.exists("outgoing", final["output"].removeprefix("outgoing/"))
    # A completed job is not started again.
    assert _post(h, {"blob": name, "style": "swirl"})[1]["started"] is False


def test_failed_job_restarts_through_post(harness: Harness, clips, tmp_path):
    name = harness.upload(clips["bbb_small"], style="later")
    harness.functions.trigger_blob(name)
    job_id = harness.job_id_for(name)
    final, _ = harness.watch(job_id, timeout=60)
    assert final["state"] == "failed" and "later" in final["error"]
    # The orchestration itself ended Failed (not Completed), like any failed Durable run.
    assert harness.durable.instances[job_id].status == "Failed"
    # A second delivery of the same upload does not restart it; a POST does.
    harness.functions.trigger_blob(name)
    assert harness.durable.instances[job_id].status == "Failed"

    from PIL import Image

    style = tmp_path / "later.png"
    Image.new("RGB", (64, 64), (200, 30, 90)).save(style)
    harness.store.upload_file("styles", "later.png", style)
    code, body = _post(harness, {"blob": name})
    assert code == 202 and body["id"] == job_id and body["started"] is True
    final, _ = harness.watch(job_id)
    assert final["state"] == "completed" and final["error"] is None, final


def test_failed_chunks_and_retries_of_both_layers_show_in_the_status(make_harness, clips):
    # An encoder preset ffmpeg does not know: every run of the chunk task fails (retryably).
    h = make_harness(OUTPUT_PRESET="no-such-preset", TASK_MAX_RETRIES="1",
                     MAX_CHUNK_ATTEMPTS="2", FRAMES_PER_CHUNK="40")
    name = h.upload(clips["bbb_small"], style="swirl", model="fast")  # cheapest failing runs
    h.functions.trigger_blob(name)
    final, _ = h.watch(h.job_id_for(name))
    assert final["state"] == "failed" and "chunk 0 failed 2 times" in final["error"], final
    assert final["chunks"] == {"total": 1, "done": 0, "running": 0, "failed": 1}
    by = [r["by"] for r in final["retries"]]
    # Each attempt was retried once by the node, and the first attempt by the orchestrator.
    assert by.count("backend") == 2 and by.count("orchestrator") == 1, final["retries"]
    assert all(r["chunk"] == 0 and r["error"] for r in final["retries"])
    # The job page's timeline: both of chunk 0's attempts, each failed, each with its times.
    assert sorted((r[0], r[1], r[5]) for r in final["tasks"]) == [(0, 1, "F"), (0, 2, "F")]
    assert all(r[3] is not None and r[4] is not None and r[4] >= r[3] for r in final["tasks"])


def test_a_split_running_when_its_job_is_cancelled_leaves_nothing(harness: Harness, clips):
    from functions.starter import build_request
    from shared import pipeline

    name = harness.upload(clips["bbb_small"])
    info = harness.store.info("incoming", name)
    req = build_request(name, info.etag, info.metadata, harness.settings,
                        options={"frames_per_chunk": 8})  # 5 chunks
    ctx = pipeline.Context.from_settings(harness.settings)
    probe_and_scan(ctx, req)
    assert pipeline.split_job(ctx, req)["ok"]  # the split task is on the pool now
    assert pipeline.cancel_job(ctx, req.job_id, wait_s=60)  # its task stopped in time
    # Nothing the split task cut (or logged) landed after the cancel's delete.
    assert not list(harness.store.list("work", f"{req.job_id}/"))
    assert pipeline.split_state(ctx, req, 1)["state"] == "missing"  # the Batch job is gone
