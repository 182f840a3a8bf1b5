"""Names and versions: outputs that cannot collide, names refused at the door with a job
record, Unicode names end to end, a replaced input that never mixes two clips, and request
bodies that cannot crash the API. Real Azurite, real ffmpeg, the real pipeline functions."""

from __future__ import annotations

import json
import re
import time
import urllib.parse

import pytest

from functions.starter import build_request
from shared import pipeline
from shared.jobs import (
    JOB_HASH_HEX,
    MAX_BLOB_NAME,
    InvalidName,
    make_job_id,
    metadata_value,
    new_job_request,
    validate_input_name,
    validate_job_id,
)
from tests.conftest import Harness, ffmpeg, framemd5, probe_and_scan

CREATED = "2026-01-01T00:00:00Z"

# --------------------------------------------------------------------------------------------
# colliding names


def test_colliding_names_get_distinct_outputs_and_jobs():
    names = ["clip.mp4", "swirl/clip.mp4", "other/clip.mp4", "clip.MP4", "clip.avi"]
    reqs = [new_job_request(n, "0x1", "swirl", "gatys", CREATED) for n in names]
    reqs.append(new_job_request("clip.mp4", "0x2", "swirl", "gatys", CREATED))  # a re-upload
    outputs = [r.output for r in reqs] + [r.preview for r in reqs]
    assert len(set(outputs)) == len(outputs), outputs
    assert len({r.job_id for r in reqs}) == len(reqs)
    # Readable: the folder, the stem and the style are there; the job's hash tells them apart.
    swirl = reqs[1]
    digest = swirl.job_id.rsplit("-", 1)[1]
    assert swirl.output == f"swirl/clip.swirl.{digest}.mp4"
    assert swirl.preview == f"swirl/clip.swirl.{digest}.preview.jpg"


def test_job_ids_carry_a_64_bit_hash_and_stay_valid_batch_and_durable_ids():
    job_id = make_job_id("a" * 900 + ".mp4", "0x1", "swirl", "gatys")
    assert re.fullmatch(rf"[a-z0-9-]{{1,{47 - JOB_HASH_HEX}}}-[0-9a-f]{{{JOB_HASH_HEX}}}", job_id)
    assert JOB_HASH_HEX * 4 >= 64
    # Batch job ids: letters, digits, hyphens, underscores, at most 64 characters.
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", job_id) and validate_job_id(job_id)
    # One stem, many names: a 32-bit hash collided after 94,335 of these; 64 bits must not.
    ids = {make_job_id("clip.mp4", f"0x{i:x}", "swirl", "gatys") for i in range(120_000)}
    assert len(ids) == 120_000


def test_unicode_names_keep_a_readable_distinct_stem():
    chinese = make_job_id("视频.mp4", "e", "swirl", "gatys")
    japanese = make_job_id("日本語のビデオ.mp4", "e", "swirl", "gatys")
    russian = make_job_id("Привет мир.mp4", "e", "swirl", "gatys")
    assert chinese.startswith("shipin-") and russian.startswith("privet-mir-")
    assert japanese.rsplit("-", 1)[0] not in ("video", chinese.rsplit("-", 1)[0])
    # The output keeps the name as written; metadata values stay ASCII and decode back.
    req = new_job_request("假期/视频.mp4", "e", "swirl", "gatys", CREATED)
    assert req.output.startswith("假期/视频.swirl.")
    encoded = metadata_value("incoming/假期/视频 1.mp4")
    assert encoded.isascii() and urllib.parse.unquote(encoded) == "incoming/假期/视频 1.mp4"


@pytest.mark.parametrize("name,reason", [
    ("x" * (MAX_BLOB_NAME + 1) + ".mp4", "characters long; blob names hold at most 1024"),
    ("x" * 1000 + ".mp4", "too long for its result's name"),
    ("bell\x07.mp4", "control character"),
    ("line\nbreak.mp4", "control character"),
    ("notes.txt", "unsupported file extension .txt"),
    ("noextension", "unsupported file extension (none)"),
    ("a/../b.mp4", "'..' path segment"),
])
def test_unicode_and_long_names_are_checked_at_the_door(name: str, reason: str):
    with pytest.raises(InvalidName, match=re.escape(reason)):
        validate_input_name(name)


def test_names_up_to_the_storage_limit_are_accepted():
    validate_input_name("d/" * 200 + "x" * 500 + ".mp4", "swirl")  # 904 characters
    validate_input_name("视频 片段 (最终).mov")


# --------------------------------------------------------------------------------------------
# at the door, through the blob trigger and the API


def _job(harness: Harness, job_id: str) -> dict:
    code, body = harness.status(job_id)
    assert code == 200, body
    return body


@pytest.mark.parametrize("name,reason", [
    ("x" * 1000 + ".mp4", "too long for its result's name"),
    ("bell\x07clip.mp4", "control character or an unpaired surrogate (U+0007) at position 5"),
    ("notes.txt", "unsupported file extension .txt"),
])
def test_a_bad_name_fails_at_once_with_a_job_record(harness: Harness, clips, name: str,
                                                    reason: str):
    # Straight through the SDK: the app's own store refuses to write such names.
    raw = harness.store.service.get_blob_client("incoming", name)
    raw.upload_blob(clips["bbb_small"].read_bytes())
    harness.functions.trigger_blob(name)
    etag = raw.get_blob_properties().etag.strip('"')
    job_id = build_request(name, etag, {}, harness.settings).job_id
    final, seen = harness.watch(job_id, timeout=60)
    assert final["state"] == "failed" and reason in final["error"], final
    assert "probing" not in seen  # refused before a byte of the video was read
    assert final["output"] is None
    assert len(json.dumps(final)) < 4000  # a long name is shown cut short
    listed = json.loads(harness.functions.http("GET", "/api/jobs").get_body())["jobs"]
    assert any(j["id"] == job_id and j["state"] == "failed" for j in listed)
    assert raw.exists()  # the input is kept


def test_deep_json_gets_400_and_the_api_keeps_answering(harness: Harness):
    for body in (b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
                 b"\xff\xfe not utf-8"):
        resp = harness.functions.http("POST", "/api/jobs", body=body)
        assert resp.status_code == 400, resp.get_body()[:200]
        assert "JSON" in json.loads(resp.get_body())["error"]
    assert harness.functions.http("GET", "/api/jobs").status_code == 200


@pytest.mark.slow
def test_a_long_unicode_name_completes_end_to_end(harness: Harness, clips, tmp_path):
    """Chinese in a folder and a stem of 600+ characters (the old limit was 512; the stitch
    failed on the metadata): scored, stitched, named and labelled."""
    stem = "视频 片段 (最终) " + "长" * 600
    name = f"假期/{stem}.mp4"
    harness.upload(clips["bbb_small"], name=name, style="swirl", model="fast")  # the name is tested
    harness.functions.trigger_blob(name)
    job_id = harness.job_id_for(name)
    assert job_id.startswith("shipin-pianduan-zuizhong-")
    final, _ = harness.watch(job_id)
    assert final["state"] == "completed", final
    assert final["input"] == f"incoming/{name}"
    output = final["output"].removeprefix("outgoing/")
    assert output.startswith(f"假期/{stem}.swirl.") and output.endswith(".mp4")
    info = harness.store.info("outgoing", output)
    assert info is not None and urllib.parse.unquote(info.metadata["source"]) == \
        f"incoming/{name}"
    out = tmp_path / "out.mp4"
    harness.store.download_file("outgoing", output, out)
    assert len(framemd5(out, "-map", "0:v")) == final["frames"]["total"] == 40


# --------------------------------------------------------------------------------------------
# a replaced input


@pytest.fixture
def other_audio(clips, tmp_path):
    """The same picture as bbb_small with other audio: a stitch that read the replacement
    would succeed and carry this audio."""
    path = tmp_path / "other_audio.mp4"
    ffmpeg("-i", str(clips["bbb_small"]), "-f", "lavfi", "-i", "sine=frequency=440:duration=2",
           "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "aac", "-shortest", str(path))
    return path


def _probe_and_split(harness: Harness, name: str):
    ctx = pipeline.Context.from_settings(harness.settings)
    info = harness.store.info("incoming", name)
    req = build_request(name, info.etag, info.metadata, harness.settings)
    probe_and_scan(ctx, req)
    result = pipeline.split_job(ctx, req)
    assert result["ok"], result
    _wait_split(ctx, req)
    return ctx, req


def _wait_split(ctx, req, timeout: float = 120) -> None:
    """The split runs as a Batch task: wait for it as the orchestrator does."""
    deadline = time.monotonic() + timeout
    while (state := pipeline.split_state(ctx, req, 1))["state"] != "succeeded":
        assert state["state"] != "failed", state
        assert time.monotonic() < deadline, "the split task did not finish"
        time.sleep(0.2)


def _pretend_scored(ctx, req) -> None:
    """Stylized chunks = the chunks themselves: the stitch needs the frames, not the style."""
    from shared.jobs import chunk_blob, stylized_blob

    for c in pipeline.load_chunks(ctx, req.job_id):
        data = ctx.store.read_bytes("work", chunk_blob(req.job_id, c.index))
        ctx.store.write_bytes("work", stylized_blob(req.job_id, c.index), data)


def _stitch_and_publish(ctx, req, timeout: float = 120) -> dict:
    """The stitch task and the publish, as the orchestrator runs them."""
    submitted = pipeline.stitch_job(ctx, req)
    if not submitted["ok"]:
        return submitted
    deadline = time.monotonic() + timeout
    while (state := pipeline.stitch_state(ctx, req, 1))["state"] != "succeeded":
        if state["state"] == "failed":
            return {"ok": False, "error": state["error"]}
        assert time.monotonic() < deadline, "the stitch task did not finish"
        time.sleep(0.2)
    for item in ("preview", "video"):
        published = pipeline.publish_job(ctx, req, item)
        if not published["ok"]:
            return published
        assert published["copy"] == "success", published  # Azurite copies at once
    return {"ok": True}


def test_replaced_input_between_split_and_stitch_never_mixes_two_clips(
        harness: Harness, clips, other_audio, tmp_path):
    name = harness.upload(clips["bbb_small"], name="replaced-clip.mp4")
    ctx, req = _probe_and_split(harness, name)
    _pretend_scored(ctx, req)
    harness.store.upload_file("incoming", name, other_audio)  # the user re-uploads

    result = _stitch_and_publish(ctx, req)
    assert result["ok"] is False
    assert "was replaced while the job ran; the new upload has a job of its own" in \
        result["error"]
    assert not harness.store.exists("outgoing", req.output)
    assert not harness.store.exists("outgoing", req.preview)

    # The new upload is a job of its own, with its own output name; it carries the new audio.
    ctx2, req2 = _probe_and_split(harness, name)
    assert req2.job_id != req.job_id and req2.output != req.output
    _pretend_scored(ctx2, req2)
    assert _stitch_and_publish(ctx2, req2)["ok"]
    out = tmp_path / "new.mp4"
    harness.store.download_file("outgoing", req2.output, out)
    audio = framemd5(out, "-map", "0:a", "-c", "copy")
    assert audio == framemd5(other_audio, "-map", "0:a", "-c", "copy")
    assert audio != framemd5(clips["bbb_small"], "-map", "0:a", "-c", "copy")


def test_input_replaced_while_the_stitch_task_runs_fails_with_that_reason(
        harness: Harness, clips, other_audio):
    name = harness.upload(clips["bbb_small"], name="replaced-late-clip.mp4")
    ctx, req = _probe_and_split(harness, name)
    _pretend_scored(ctx, req)
    assert pipeline.stitch_job(ctx, req)["ok"]
    harness.store.upload_file("incoming", name, other_audio)  # the task reads it by name
    deadline = time.monotonic() + 120
    while (state := pipeline.stitch_state(ctx, req, 1))["state"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, "the stitch task did not finish"
        time.sleep(0.2)
    assert state["state"] == "failed" and state["bad_input"], state
    assert "was replaced while the job ran" in state["error"]


def test_a_pinned_read_fails_midway_when_the_input_is_replaced(harness: Harness, tmp_path):
    from azure.core.exceptions import ResourceModifiedError

    first, second = tmp_path / "first.mp4", tmp_path / "second.mp4"
    first.write_bytes(b"1" * 9_000_000)  # more than one 4 MiB block
    second.write_bytes(b"2" * 9_000_000)
    name = harness.upload(first, name="midway.mp4")
    etag = harness.store.info("incoming", name).etag
    with harness.store.source("incoming", name, etag=etag).open() as reader:
        assert reader.read(10) == b"1" * 10
        harness.store.upload_file("incoming", name, second)
        reader.seek(8_900_000)  # a block not read yet: its range request asks for the old version
        with pytest.raises(ResourceModifiedError):
            reader.read(10)
    with pytest.raises(ResourceModifiedError):
        harness.store.source("incoming", name, etag=etag).open()


def test_replaced_input_between_probe_and_split_fails_the_old_job(harness: Harness, clips,
                                                                  other_audio):
    name = harness.upload(clips["bbb_small"], name="replaced-early-clip.mp4")
    ctx = pipeline.Context.from_settings(harness.settings)
    info = harness.store.info("incoming", name)
    req = build_request(name, info.etag, info.metadata, harness.settings)
    assert pipeline.probe_job(ctx, req)["ok"]
    harness.store.upload_file("incoming", name, other_audio)
    for step in (pipeline.scan_job, pipeline.split_job):
        result = step(ctx, req)
        assert result["ok"] is False and "was replaced while the job ran" in result["error"]
    harness.store.delete("incoming", name)
    assert "was deleted while the job" in pipeline.probe_job(ctx, req)["error"]


def test_colliding_output_names_never_overwrite_another_jobs_result(harness: Harness,
                                                                    tmp_path):
    ctx = pipeline.Context.from_settings(harness.settings)
    a = new_job_request("collide/a.mp4", "0x1", "swirl", "gatys", CREATED)
    b = new_job_request("collide/b.mp4", "0x1", "swirl", "gatys", CREATED)
    first, second = tmp_path / "first", tmp_path / "second"
    first.write_bytes(b"first result")
    second.write_bytes(b"second result")
    assert pipeline.write_result(ctx, a, a.output, first, {"job": a.job_id}, "video/mp4") is None
    # Another job that somehow computes the same name is refused; the first result stays.
    refused = pipeline.write_result(ctx, b, a.output, second, {"job": b.job_id}, "video/mp4")
    assert refused and f"belongs to job {a.job_id}" in refused
    assert harness.store.read_bytes("outgoing", a.output) == b"first result"
    # The same job's retried stitch may replace its own result.
    assert pipeline.write_result(ctx, a, a.output, second, {"job": a.job_id}, "video/mp4") is None
    assert harness.store.read_bytes("outgoing", a.output) == b"second result"
