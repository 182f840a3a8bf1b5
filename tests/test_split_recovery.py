"""The split task's failures through the whole app (blob trigger, the real orchestrator replayed
by the Durable host, the local Batch backend running ``python -m scoring split``): a split that
fails transiently is run again as a new attempt and the job completes exactly; a split that
finds the video damaged (exit code 2) fails the job at once with its reason and is never run
again; a split the Batch service lost is submitted again and the job completes.

How each failure is made: the first attempt's command is a node failure (the contract's
error line and a retryable exit code) and the second is the real split; the damaged video is
the real scan's record with one frame fewer than the stream holds, so the real split task
finds the damage and exits 2; the lost task is the job's Batch job deleted right after the
split task was submitted."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from shared import pipeline
from shared.jobs import WORK
from tests.conftest import Harness
from tests.test_corpus import assert_output_rules

NODE_FAILURE = ("echo '{\"event\": \"error\", \"reason\": \"the node lost its temporary disk\", "
                "\"bad_input\": false}' >&2; exit 1")


def _run(h: Harness, clip: Path) -> tuple[str, dict, list[str]]:
    name = h.upload(clip, style="swirl")
    h.functions.trigger_blob(name)
    final, seen = h.watch(h.job_id_for(name))
    return name, final, seen


def _exact(h: Harness, final: dict, src: Path, tmp_path: Path) -> None:
    assert final["state"] == "completed", final
    assert final["frames"]["done"] == final["frames"]["total"] == 40
    out = tmp_path / f"out{src.suffix}"
    h.store.download_file("outgoing", final["output"].removeprefix("outgoing/"), out)
    assert_output_rules(src, out)  # every frame, every timestamp, the audio bit for bit


def test_a_split_that_fails_transiently_runs_again_and_the_job_completes_exactly(
        make_harness, clips, tmp_path, monkeypatch):
    real = pipeline.split_task
    built: list[int] = []

    def flaky(req, settings, chunks, attempt):
        spec = real(req, settings, chunks, attempt)
        built.append(attempt)
        if attempt == 1:  # the node fails it, however often the node itself retries
            spec = dataclasses.replace(spec, command=["sh", "-c", NODE_FAILURE])
        return spec

    monkeypatch.setattr(pipeline, "split_task", flaky)
    h = make_harness(TASK_MAX_RETRIES="1")
    _, final, seen = _run(h, clips["bbb_small"])
    assert built == [1, 2], "the failed split ran again as a second attempt, once"
    assert "splitting" in seen and final["error"] is None
    _exact(h, final, clips["bbb_small"], tmp_path)


def test_a_split_that_finds_the_video_damaged_fails_the_job_at_once_and_keeps_the_input(
        harness: Harness, clips, monkeypatch):
    real_split = pipeline.split_job
    built: list[int] = []

    def lying_index(ctx, req, attempt=1):
        """The scanned probe as a file whose index lists one frame fewer than its stream
        holds (the scan task wrote the real one)."""
        blob = f"{req.job_id}/probe.json"
        p = ctx.store.read_json(WORK, blob)
        p["frames"] -= 1
        p["pts"] = p["pts"][:-1]
        ctx.store.write_json(WORK, blob, p)
        return real_split(ctx, req, attempt)

    real_task = pipeline.split_task
    monkeypatch.setattr(pipeline, "split_job", lying_index)
    monkeypatch.setattr(pipeline, "split_task",
                        lambda *a: (built.append(a[-1]), real_task(*a))[1])
    name, final, seen = _run(harness, clips["bbb_small"])
    assert final["state"] == "failed", final
    assert "decodes to more frames than the 39 its index lists" in final["error"], final
    assert built == [1], "bad input is never split again"
    assert "scoring" not in seen and final["chunks"]["done"] == 0
    assert harness.store.exists("incoming", name)  # the input is kept
    assert not harness.store.exists("outgoing", final["output"].removeprefix("outgoing/"))
    inst = harness.durable.instances[harness.job_id_for(name)]
    assert inst.status == "Failed"
    assert sum(1 for e in inst.history if e.get("Name") == "split") == 1


def test_a_split_the_batch_service_lost_is_submitted_again_and_the_job_completes(
        harness: Harness, clips, tmp_path, monkeypatch):
    real = pipeline.split_job
    calls: list[int] = []

    def lost(ctx, req, attempt=1):
        result = real(ctx, req, attempt)
        calls.append(attempt)
        if len(calls) == 1:  # the Batch job (and the split task with it) is gone
            ctx.backend.delete(req.job_id)
            assert pipeline.split_state(ctx, req, attempt)["state"] == "missing"
        return result

    monkeypatch.setattr(pipeline, "split_job", lost)
    _, final, _ = _run(harness, clips["bbb_small"])
    assert calls == [1, 1], "submitted again under the same attempt, once"
    assert final["error"] is None
    _exact(harness, final, clips["bbb_small"], tmp_path)
