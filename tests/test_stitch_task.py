"""The stitch as a Batch task through the whole app (blob trigger, the real orchestrator replayed
by the Durable host, the local Batch backend running ``python -m scoring stitch``, Azurite):
the job comes back exact; the Function side only submits, watches and publishes by a
server-side copy (no byte of the result passes through it); a stitch that fails transiently
runs again; one that finds bad input fails the job at once; a name another job holds is
never written.

How the failures are made: a node failure is the first attempt's command replaced by the
contract's error line and a retryable exit code; bad input is one stylized chunk overwritten
with bytes that are no video, so the real stitch task finds it and exits 2; the taken name is
a blob another job writes under the output's name while the stitch task runs."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any

import pytest
import requests

from shared import pipeline
from shared.jobs import WORK, stylized_blob
from tests.conftest import Harness
from tests.test_corpus import assert_output_rules

NODE_FAILURE = ("echo '{\"event\": \"error\", \"reason\": \"the node lost its temporary disk\", "
                "\"bad_input\": false}' >&2; exit 1")


class FunctionTraffic:
    """Bytes of blob content that requests made by the publish activities carry, either way
    (request bodies, and response bodies as Content-Length says; a HEAD's is no body)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.bytes = 0
        self.requests: list[str] = []
        self._in_publish = threading.local()
        real_send = requests.adapters.HTTPAdapter.send

        def send(adapter: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            response = real_send(adapter, request, *args, **kwargs)
            if getattr(self._in_publish, "on", False):
                body = request.body
                if body is not None and not isinstance(body, bytes | str):
                    raise AssertionError(f"a streamed upload in publish: {request.url}")
                self.bytes += len(body or b"")
                if request.method != "HEAD":
                    self.bytes += int(response.headers.get("Content-Length") or 0)
                self.requests.append(request.method)
            return response

        monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", send)
        for name in ("publish_job", "publish_state"):
            monkeypatch.setattr(pipeline, name, self._inside(getattr(pipeline, name)))

    def _inside(self, real: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            self._in_publish.on = True
            try:
                return real(*args, **kwargs)
            finally:
                self._in_publish.on = False
        return run


def keep_work_result(monkeypatch: pytest.MonkeyPatch, kept: dict[str, bytes]) -> None:
    """Read what the stitch task left in work/ just before the cleanup deletes it."""
    real = pipeline.cleanup_job

    def cleanup(ctx, req, failed):
        for b in ctx.store.list(WORK, f"{req.job_id}/"):
            if b.name.rsplit("/", 1)[-1].startswith(("result.", "preview.")):
                kept[b.name.rsplit("/", 1)[-1]] = ctx.store.read_bytes(WORK, b.name)
        return real(ctx, req, failed)

    monkeypatch.setattr(pipeline, "cleanup_job", cleanup)


def _run(h: Harness, clip: Path, **meta: str) -> tuple[str, dict, list[str]]:
    name = h.upload(clip, style="swirl", **meta)
    h.functions.trigger_blob(name)
    final, seen = h.watch(h.job_id_for(name))
    return name, final, seen


def _activities(h: Harness, job_id: str) -> list[str]:
    return [e["Name"] for e in h.durable.instances[job_id].history if e["EventType"] == 4]


def test_the_stitch_runs_on_the_pool_and_publish_copies_the_result_without_moving_it(
        harness: Harness, clips, tmp_path, monkeypatch):
    traffic = FunctionTraffic(monkeypatch)
    kept: dict[str, bytes] = {}
    keep_work_result(monkeypatch, kept)
    name, final, seen = _run(harness, clips["bbb_small"])
    assert final["state"] == "completed", final
    assert final["frames"]["done"] == final["frames"]["total"] == 40
    assert seen.index("scoring") < seen.index("stitching") < seen.index("completed")

    output = final["output"].removeprefix("outgoing/")
    preview = final["preview"].removeprefix("outgoing/")
    out = tmp_path / "out.mp4"
    harness.store.download_file("outgoing", output, out)
    assert_output_rules(clips["bbb_small"], out)  # frames, timestamps, audio bit for bit

    # What the stitch task made is what outgoing/ holds, byte for byte, with its labels.
    assert out.read_bytes() == kept["result.mp4"]
    assert harness.store.read_bytes("outgoing", preview) == kept["preview.jpg"]
    job_id = harness.job_id_for(name)
    for blob, content_type in ((output, "video/mp4"), (preview, "image/jpeg")):
        props = harness.store.blob("outgoing", blob).get_blob_properties()
        assert props.content_settings.content_type == content_type
        assert props.metadata == {"job": job_id, "source": f"incoming/{name}",
                                  "style": "swirl", "model": "gatys"}

    # The Function side moved none of those bytes: publishing was a few requests without
    # content, against an output of tens of KB.
    assert len(kept["result.mp4"]) > 20_000
    assert traffic.requests and traffic.bytes < 1024, (traffic.bytes, traffic.requests)
    steps = _activities(harness, job_id)
    assert steps.count("stitch") == 1 and "stitch_state" in steps
    assert steps.count("publish") == 2  # the preview, then the video
    assert steps.index("publish") > steps.index("stitch_state")


def test_a_stitch_that_fails_transiently_runs_again_and_the_job_completes_exactly(
        make_harness, clips, tmp_path, monkeypatch):
    real = pipeline.stitch_task
    built: list[int] = []

    def flaky(req, settings, chunks, attempt):
        spec = real(req, settings, chunks, attempt)
        built.append(attempt)
        if attempt == 1:  # the node fails it, however often the node itself retries
            spec = dataclasses.replace(spec, command=["sh", "-c", NODE_FAILURE])
        return spec

    monkeypatch.setattr(pipeline, "stitch_task", flaky)
    h = make_harness(TASK_MAX_RETRIES="1")
    _, final, _ = _run(h, clips["bbb_small"])
    assert built == [1, 2], "the failed stitch ran again as a second attempt, once"
    assert final["state"] == "completed" and final["error"] is None, final
    out = tmp_path / "out.mp4"
    h.store.download_file("outgoing", final["output"].removeprefix("outgoing/"), out)
    assert_output_rules(clips["bbb_small"], out)


def test_a_stitch_that_finds_bad_input_fails_the_job_at_once_and_keeps_the_input(
        harness: Harness, clips, monkeypatch):
    real = pipeline.stitch_job
    calls: list[int] = []

    def damaged(ctx, req, attempt=1):
        calls.append(attempt)
        ctx.store.write_bytes(WORK, stylized_blob(req.job_id, 1), b"no video here\n" * 100)
        return real(ctx, req, attempt)

    monkeypatch.setattr(pipeline, "stitch_job", damaged)
    name, final, seen = _run(harness, clips["bbb_small"])
    assert final["state"] == "failed", final
    assert "not a video file, or a damaged one" in final["error"], final
    assert calls == [1], "bad input is never stitched again"
    assert "stitching" in seen
    assert harness.store.exists("incoming", name)  # the input is kept
    for blob in (final["output"], final["preview"]):
        assert not harness.store.exists("outgoing", blob.removeprefix("outgoing/"))
    assert harness.durable.wait_for(harness.job_id_for(name), timeout=60).status == "Failed"


def test_a_name_another_job_took_while_the_stitch_ran_is_left_as_it_is(
        harness: Harness, clips, monkeypatch):
    real = pipeline.stitch_state
    other = b"another job's result"

    def taken_meanwhile(ctx, req, attempt):
        state = real(ctx, req, attempt)
        if state["state"] == "succeeded" and not ctx.store.exists("outgoing", req.output):
            ctx.store.write_bytes("outgoing", req.output, other)
            ctx.store.blob("outgoing", req.output).set_blob_metadata({"job": "other-0123"})
        return state

    monkeypatch.setattr(pipeline, "stitch_state", taken_meanwhile)
    _, final, _ = _run(harness, clips["bbb_small"])
    assert final["state"] == "failed", final
    assert "already exists and belongs to job other-0123" in final["error"], final
    output = final["output"].removeprefix("outgoing/")
    assert harness.store.read_bytes("outgoing", output) == other  # never replaced


def test_a_copy_the_service_has_not_finished_is_followed_on_a_timer_not_started_again(
        harness: Harness, clips, tmp_path, monkeypatch):
    """Azure may answer a Copy Blob with ``pending`` and finish it later (Azurite copies at
    once): here every copy reads as pending twice before its real status shows. The job waits
    for it on durable timers (``publish_state``), starts each copy once, and completes."""
    from shared.storage import BlobCopy, BlobStore

    commits: list[str] = []
    pending_reads: dict[str, int] = {}
    real_commit, real_state = BlobCopy.commit, BlobStore.copy_state

    def commit(self, *args, **kwargs):
        real_commit(self, *args, **kwargs)
        commits.append(self._dest[1])
        pending_reads[self._dest[1]] = 2
        self.status = "pending"

    def copy_state(self, container, name):
        state = real_state(self, container, name)
        if state is not None and pending_reads.get(name, 0) > 0:
            pending_reads[name] -= 1
            return dataclasses.replace(state, status="pending")
        return state

    monkeypatch.setattr(BlobCopy, "commit", commit)
    monkeypatch.setattr(BlobStore, "copy_state", copy_state)
    name, final, _ = _run(harness, clips["bbb_small"])
    assert final["state"] == "completed", final
    output = final["output"].removeprefix("outgoing/")
    assert commits == [final["preview"].removeprefix("outgoing/"), output]  # once each
    steps = _activities(harness, harness.job_id_for(name))
    assert steps.count("publish_state") == 6  # per copy: read pending twice, then success
    out = tmp_path / "out.mp4"
    harness.store.download_file("outgoing", output, out)
    assert_output_rules(clips["bbb_small"], out)


def test_against_azurite_a_big_copy_goes_block_by_block_under_the_same_rules(
        harness: Harness, monkeypatch):
    """Azurite's Copy Blob fails (500) on a blob of 1.45 GB; against it, a copy over
    EMULATOR_COPY_LIMIT is staged block by block instead. Here the limit is 0, so a 20 MB
    result (3 blocks) takes that path: the same bytes, metadata and content type, never onto a
    blob it may not replace."""
    import os

    from azure.core.exceptions import ResourceExistsError

    from shared import storage

    monkeypatch.setattr(storage, "EMULATOR_COPY_LIMIT", 0)
    store = harness.store
    assert store.emulator
    data = os.urandom(20 * 1024**2 + 123)
    store.write_bytes("work", "copy-test/result.mp4", data)
    meta = {"job": "copy-test-0123"}

    def copy():
        return store.blob_copy(("work", "copy-test/result.mp4"), ("outgoing", "copy-test.mp4"))

    first = copy()
    first.commit(meta, "video/mp4", overwrite=False)
    assert first.status == "success"
    assert store.read_bytes("outgoing", "copy-test.mp4") == data
    props = store.blob("outgoing", "copy-test.mp4").get_blob_properties()
    assert props.metadata == meta and props.content_settings.content_type == "video/mp4"
    assert props.copy.status is None  # written by blocks, not by a Copy Blob
    blocks = store.blob("outgoing", "copy-test.mp4").get_block_list("committed")[0]
    assert len(blocks) == 3
    with pytest.raises(ResourceExistsError):
        copy().commit(meta, "video/mp4", overwrite=False)  # the name is taken: refused
    etag = store.info("outgoing", "copy-test.mp4").etag
    store.write_bytes("work", "copy-test/result.mp4", data[::-1])
    copy().commit(meta, "video/mp4", overwrite=True, if_etag=etag)  # only that version
    assert store.read_bytes("outgoing", "copy-test.mp4") == data[::-1]
