"""Jobs in flight across a deploy: the orchestration input (and its ledger) that an earlier or
a later version of the app wrote, continued by this one through the whole app (the real
orchestrator replayed by the Durable host, the local Batch backend, Azurite).

An input this version can follow is continued to an exact result; one it cannot ends the job
at once, `failed`, with a status that says why and how to start it again, its Batch tasks
stopped and its input kept — never a silent restart, a loop, or a job that hangs."""

from __future__ import annotations

import json
import threading
import time

import pytest

from functions import orchestrator
from shared.batch import TaskSpec, chunk_task_id
from tests.conftest import Harness


def _request(h: Harness, clips) -> tuple[str, object]:
    from functions.starter import build_request

    name = h.upload(clips["bbb_small"], style="swirl")
    info = h.store.info("incoming", name)
    return name, build_request(name, info.etag, info.metadata, h.settings)


def _old_task_running(h: Harness, job_id: str) -> None:
    """A chunk task the earlier version submitted, still running on the pool."""
    h.backend.submit(job_id, [TaskSpec(id=chunk_task_id(0, 1), command=["sh", "-c", "sleep 60"],
                                       kind="chunk", chunk=0, frames=16, max_wall_s=120)])
    deadline = time.monotonic() + 30
    while [t.state for t in h.backend.task_states(job_id)] != ["running"]:
        assert time.monotonic() < deadline, "the old task never started"
        time.sleep(0.05)


def _activities(h: Harness, job_id: str) -> list[str]:
    inst = h.durable.instances[job_id]
    return [e["Name"] for e in inst.history if e["EventType"] == 4]


def _chunk_by_chunk(h: Harness, req) -> str:
    """What the version that kept every chunk in the orchestration carried across
    continue_as_new while it scored (its input key was "state")."""
    return json.dumps({
        "request": req.to_json(), "options": orchestrator.orchestration_options(h.settings),
        "state": {"stage": "monitor", "style_blob": "swirl.jpg",
                  "chunks": [{"index": i, "start": 16 * i, "frames": 16} for i in range(3)],
                  "codes": "RPP", "attempts": {}, "frames_done": 5,
                  "scoring_started": "2026-12-01T00:00:00Z"}})


def test_a_job_an_earlier_version_listed_chunk_by_chunk_fails_clearly_and_restarts(
        harness: Harness, clips):
    name, req = _request(harness, clips)
    _old_task_running(harness, req.job_id)
    harness.durable.start_instance(orchestrator.ORCHESTRATOR, req.job_id,
                                   _chunk_by_chunk(harness, req))
    final, seen = harness.watch(req.job_id, timeout=120)

    assert final["state"] == "failed", final
    assert "earlier version of stylebatch" in final["error"], final["error"]
    assert "POST /api/jobs" in final["error"] and "input is kept" in final["error"]
    assert not {"probing", "splitting", "scoring"} & set(seen), "no silent restart"
    assert harness.durable.wait_for(req.job_id, timeout=150).status == "Failed"  # it ended
    assert _activities(harness, req.job_id) == ["cleanup"]
    assert harness.backend.task_states(req.job_id) == []  # its Batch job stopped and deleted
    assert harness.store.exists("incoming", name)

    # What the error says to do works: the job runs again from the start and completes.
    resp = harness.functions.http("POST", "/api/jobs", {"blob": name, "style": "swirl"})
    assert resp.status_code == 202 and json.loads(resp.get_body())["started"] is True
    final, _ = harness.watch(req.job_id)
    assert final["state"] == "completed" and final["frames"]["done"] == 40, final


@pytest.mark.parametrize("change,reason", [
    (lambda d: d.update(format=orchestrator.INPUT_FORMAT + 1), "newer version of stylebatch"),
    (lambda d: d["ledger"].update(stage="mux_wait"), "(stage 'mux_wait')"),
    (lambda d: d["ledger"].pop("counts"), "(no counts at stage 'monitor')"),
    (lambda d: d["options"].pop("rounds_per_generation"), "no rounds_per_generation"),
    (lambda d: d.update(ledger={"stage": "scan_wait", "probe": {"frames": 40},
                                "style_blob": "swirl.jpg", "stages": {}}),
     "(no scan_attempt at stage 'scan_wait')"),
], ids=["newer-format", "unknown-stage", "ledger-key-missing", "option-missing",
        "scan-attempt-missing"])
def test_an_input_this_version_cannot_follow_fails_the_job_at_once(harness: Harness, clips,
                                                                  change, reason):
    name, req = _request(harness, clips)
    data = orchestrator.start_input(req, harness.settings)
    data.pop("format")
    data["ledger"] = {"stage": "monitor", "probe": {"frames": 40}, "chunks": 3, "retried": {},
                      "failed": 0, "counts": {"running": 3},
                      "scoring_started": "2026-12-01T00:00:00Z", "stages": {}}
    change(data)
    harness.durable.start_instance(orchestrator.ORCHESTRATOR, req.job_id, json.dumps(data))
    final, seen = harness.watch(req.job_id, timeout=60)
    assert final["state"] == "failed" and reason in final["error"], final
    assert not {"probing", "scoring"} & set(seen)
    assert harness.durable.wait_for(req.job_id, timeout=60).status == "Failed"
    assert _activities(harness, req.job_id) == ["cleanup"]
    assert harness.store.exists("incoming", name)


def test_a_job_an_earlier_version_continued_without_a_format_is_continued_to_the_end(
        make_harness, clips, monkeypatch):
    """The versions before the input had a format carried the same ledger at every stage
    they continued as new in: every generation here starts from such an input."""
    carried: list[str] = []

    def as_before(job) -> None:
        carried.append(job.ledger["stage"])
        job.context.continue_as_new({"request": job.req.to_json(), "ledger": job.ledger,
                                     "options": job.options})

    monkeypatch.setattr(orchestrator, "_continue", as_before)
    h = make_harness(MONITOR_ROUNDS_PER_GENERATION="1")
    name = h.upload(clips["bbb_small"], style="swirl")
    h.functions.trigger_blob(name)
    final, seen = h.watch(h.job_id_for(name))
    assert final["state"] == "completed" and final["error"] is None, final
    assert final["frames"]["done"] == final["frames"]["total"] == 40
    assert {"scan_wait", "split_wait", "monitor", "stitch_wait"} <= set(carried), carried
    assert (seen.index("scanning") < seen.index("splitting") < seen.index("scoring")
            < seen.index("completed"))
    assert h.store.exists("outgoing", final["output"].removeprefix("outgoing/"))


def test_a_generation_the_earlier_version_had_under_way_ends_cleanly_too(
        harness: Harness, clips, monkeypatch):
    """The deploy lands while a generation runs: its history holds an activity the earlier
    code scheduled (here a probe, still running) that this code would not schedule."""
    from shared import pipeline

    name, req = _request(harness, clips)
    _old_task_running(harness, req.job_id)
    release = threading.Event()
    real_probe, real_check = pipeline.probe_job, orchestrator._unreadable
    monkeypatch.setattr(pipeline, "probe_job",
                        lambda ctx, r: (release.wait(60), real_probe(ctx, r))[1])
    monkeypatch.setattr(orchestrator, "_unreadable", lambda data: None)  # the earlier code
    harness.durable.start_instance(orchestrator.ORCHESTRATOR, req.job_id,
                                   _chunk_by_chunk(harness, req))
    deadline = time.monotonic() + 30
    while "probe" not in _activities(harness, req.job_id):
        assert time.monotonic() < deadline, "the earlier code never scheduled its probe"
        time.sleep(0.05)
    monkeypatch.setattr(orchestrator, "_unreadable", real_check)  # the deploy
    release.set()  # the probe ends: the next episode replays that history with this code

    final, _ = harness.watch(req.job_id, timeout=120)
    assert final["state"] == "failed" and "earlier version" in final["error"], final
    inst = harness.durable.wait_for(req.job_id, timeout=150)
    assert inst.status == "Failed" and "non-deterministic" not in str(inst.output), inst.output
    assert _activities(harness, req.job_id) == ["cleanup"]  # in a generation of its own
    assert harness.backend.task_states(req.job_id) == []  # its Batch work stopped
    assert harness.store.exists("incoming", name)


def test_a_generation_whose_probe_scanned_every_packet_goes_on_to_the_split(
        harness: Harness, clips, monkeypatch, tmp_path):
    """A job the earlier version started: its generation's history holds the probe of that
    version, which scanned every packet in the Function and wrote the full probe itself (its
    result has no ``scan``). Replayed by this version, the job goes on from there to the
    split, as it did, without a scan task, and completes exactly."""
    from shared import pipeline
    from shared.jobs import WORK
    from shared.video import probe
    from tests.test_corpus import assert_output_rules

    door = pipeline.probe_job

    def earlier_probe(ctx, req):
        result = door(ctx, req)  # the checks as they are now, then the scan inline
        source = ctx.store.source("incoming", req.blob, etag=req.etag.strip('"'))
        full = probe(source, size_bytes=ctx.store.info("incoming", req.blob).size)
        ctx.store.write_json(WORK, f"{req.job_id}/probe.json", full.to_json())
        return {"ok": True, "probe": full.summary(), "style_blob": result["style_blob"],
                "estimate": result["estimate"]}

    monkeypatch.setattr(pipeline, "probe_job", earlier_probe)
    name = harness.upload(clips["bbb_small"], style="swirl")
    harness.functions.trigger_blob(name)
    job_id = harness.job_id_for(name)
    final, seen = harness.watch(job_id)
    assert final["state"] == "completed" and final["error"] is None, final
    assert "scanning" not in seen and "splitting" in seen
    assert "scan" not in _activities(harness, job_id)  # no scan task was submitted
    out = tmp_path / "out.mp4"
    harness.store.download_file("outgoing", final["output"].removeprefix("outgoing/"), out)
    assert_output_rules(clips["bbb_small"], out)


def test_a_generation_the_previous_version_ran_to_its_stitch_replays_to_the_end(
        harness: Harness, clips, monkeypatch):
    """The version before the stitch ran on the pool called one ``stitch`` activity that
    joined and published the result in the Function, then ``cleanup``. A generation it ran
    up to that stitch is replayed by this code after a deploy: its history holds that
    activity's result, which names the output, and this code goes on to the cleanup as that
    version did (nothing else scheduled: no non-determinism), the job completed."""
    from shared import pipeline

    real = pipeline.stitch_job

    def previous_version(ctx, req, attempt=1):
        """What that version's stitch left: the result published, and its summary."""
        assert real(ctx, req, attempt)["ok"]
        deadline = time.monotonic() + 120
        while (state := pipeline.stitch_state(ctx, req, attempt))["state"] != "succeeded":
            assert state["state"] != "failed" and time.monotonic() < deadline, state
            time.sleep(0.2)
        for item in ("preview", "video"):
            assert pipeline.publish_job(ctx, req, item)["copy"] == "success"
        return {"ok": True, "output": f"outgoing/{req.output}",
                "preview": f"outgoing/{req.preview}", "frames": state["frames"],
                "size_bytes": state["size_bytes"], "streams_dropped": [], "blocks": 1,
                "peak_disk_bytes": state["size_bytes"], "seconds": 1.0}

    monkeypatch.setattr(pipeline, "stitch_job", previous_version)
    name = harness.upload(clips["bbb_small"], style="swirl")
    harness.functions.trigger_blob(name)
    job_id = harness.job_id_for(name)
    final, _ = harness.watch(job_id)
    assert final["state"] == "completed" and final["error"] is None, final
    steps = _activities(harness, job_id)
    assert steps[steps.index("stitch"):] == ["stitch", "cleanup"], steps
    assert harness.durable.wait_for(job_id, timeout=60).status == "Completed"
    assert harness.store.exists("outgoing", final["output"].removeprefix("outgoing/"))
