"""The probe at the door and the scan task on the pool (the whole app where it matters: blob
trigger, the real orchestrator replayed by the Durable host, the local Batch backend running
``python -m scoring scan``, Azurite, ffmpeg).

- The Function's probe reads the container's header and first packets only: on a long input
  (index at the front, index at the end, Matroska) it moves a few MiB of a file many times
  that size, counted where the storage SDK downloads the blob.
- The scan task writes the probe the pipeline plans from: exactly what the full probe of the
  same file gives.
- A scan that fails transiently runs again as a new attempt, a scan the Batch service lost is
  submitted again, and the job completes exactly either way.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobClient

from shared import pipeline
from shared.jobs import WORK, new_job_request
from shared.video import probe
from tests.conftest import Harness, ffmpeg, probe_and_scan
from tests.test_corpus import assert_output_rules

NODE_FAILURE = ("echo '{\"event\": \"error\", \"reason\": \"the node lost its temporary disk\", "
                "\"bad_input\": false}' >&2; exit 1")
# The door's read, in the BlobReader's 4 MiB blocks: the header and libav's stream-info window
# at the front (at most its probesize, 5 MB: two blocks) and the index (MP4: the moov box,
# here within one block wherever it is; about 5 MB for a two-hour film).
DOOR_BYTES = 3 * 4 * 1024**2


@pytest.fixture(scope="module")
def long_inputs(tmp_path_factory) -> dict[str, Path]:
    """A 40-second 360p clip of noise (about 100 MB: the bytes are the point, not the length),
    its index at the end (as recorders write it), at the front, and as Matroska."""
    d = tmp_path_factory.mktemp("long_inputs")
    base = d / "base.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25:duration=4",
           "-f", "lavfi", "-i", "sine=frequency=330:sample_rate=48000:duration=4",
           "-vf", "noise=alls=40:allf=t", "-c:v", "libx264", "-preset", "ultrafast", "-g", "50",
           "-c:a", "aac", "-b:a", "64k", str(base))
    out = {"index_at_end.mp4": d / "index_at_end.mp4"}
    ffmpeg("-stream_loop", "9", "-i", str(base), "-c", "copy", str(out["index_at_end.mp4"]))
    out["index_at_front.mp4"] = d / "index_at_front.mp4"
    ffmpeg("-i", str(out["index_at_end.mp4"]), "-c", "copy", "-movflags", "+faststart",
           str(out["index_at_front.mp4"]))
    out["long.mkv"] = d / "long.mkv"
    ffmpeg("-i", str(out["index_at_end.mp4"]), "-c", "copy", str(out["long.mkv"]))
    return out


@pytest.fixture
def downloads(monkeypatch) -> list[dict[str, Any]]:
    """Every download from the incoming container: the blob and the bytes it moved."""
    seen: list[dict[str, Any]] = []
    real = BlobClient.download_blob

    def counted(self, *args, **kwargs):
        downloader = real(self, *args, **kwargs)
        if self.container_name == "incoming":
            seen.append({"blob": self.blob_name, "bytes": downloader.size})
        return downloader

    monkeypatch.setattr(BlobClient, "download_blob", counted)
    return seen


@pytest.mark.parametrize("name", ["index_at_end.mp4", "index_at_front.mp4", "long.mkv"])
def test_the_door_reads_the_header_not_the_video_and_the_scan_writes_the_full_probe(
        harness: Harness, long_inputs, downloads, name):
    path = long_inputs[name]
    size = path.stat().st_size
    assert size > 8 * DOOR_BYTES, "the input is many times what the door may read"
    blob = harness.upload(path, name=f"long-{name}")
    info = harness.store.info("incoming", blob)
    req = new_job_request(blob, info.etag, "swirl", "gatys", "2026-12-01T00:00:00Z")
    ctx = pipeline.Context.from_settings(harness.settings)

    door = pipeline.probe_job(ctx, req)
    read = sum(d["bytes"] for d in downloads if d["blob"] == blob)
    print(f"{name}: the door read {read} of {size} bytes")
    assert door["ok"] and door["scan"], door
    assert 0 < read <= DOOR_BYTES, (read, size)
    assert door["probe"]["frames_estimated"]
    assert door["probe"]["width"] == 640 and door["probe"]["pix_fmt"] == "yuv420p"
    full = probe(str(path), size_bytes=size)
    # The estimate: the index's count (MP4), duration x rate (Matroska): within a frame.
    assert abs(door["probe"]["frames"] - full.frames) <= 1, (door["probe"], full.frames)

    probe_and_scan(ctx, req)  # the door again, then the scan task on the pool
    assert ctx.store.read_json(WORK, f"{req.job_id}/probe.json") == full.to_json()
    state = pipeline.scan_state(ctx, req, 1)
    assert state["frames_done"] == full.frames  # the scan's progress ends at every frame


def test_the_door_demuxes_a_bounded_number_of_packets():
    """The bound the door states, on a demuxer that never ends: at most HEADER_VIDEO_PACKETS
    video packets when the decoder gives no frame (a damaged stream: refused), at most
    HEADER_PACKETS packets when no video packet comes (left to the scan)."""
    from shared.video import probing

    class Stream:
        def __init__(self, index: int):
            self.index, self.thread_type = index, None

        def decode(self, packet):
            return iter(())  # a decoder that never outputs

    video = Stream(0)

    class Container:
        def __init__(self, stream: Stream):
            self.stream, self.demuxed = stream, 0

        def demux(self):
            while True:
                self.demuxed += 1
                yield type("Packet", (), {"size": 1, "pts": 0, "stream": self.stream})()

    undecodable = Container(video)
    first, packets, ended = probing._first_frame_bounded(undecodable, video)
    assert first is None and not ended
    assert packets == undecodable.demuxed == probing.HEADER_VIDEO_PACKETS

    other_streams_first = Container(Stream(1))
    first, packets, ended = probing._first_frame_bounded(other_streams_first, video)
    assert (first, packets, ended) == (None, 0, False)
    assert other_streams_first.demuxed == probing.HEADER_PACKETS


def _run(h: Harness, clip: Path) -> tuple[dict, list[str]]:
    name = h.upload(clip, style="swirl")
    h.functions.trigger_blob(name)
    return h.watch(h.job_id_for(name))


def _exact(h: Harness, final: dict, src: Path, tmp_path: Path) -> None:
    assert final["state"] == "completed", final
    assert final["frames"]["done"] == final["frames"]["total"] == 40
    out = tmp_path / f"out{src.suffix}"
    h.store.download_file("outgoing", final["output"].removeprefix("outgoing/"), out)
    assert_output_rules(src, out)  # every frame, every timestamp, the audio bit for bit


def test_a_scan_that_fails_transiently_runs_again_and_the_job_completes_exactly(
        make_harness, clips, tmp_path, monkeypatch):
    real = pipeline.scan_task
    built: list[int] = []

    def flaky(req, settings, attempt):
        spec = real(req, settings, attempt)
        built.append(attempt)
        if attempt == 1:  # the node fails it, however often the node itself retries
            spec = dataclasses.replace(spec, command=["sh", "-c", NODE_FAILURE])
        return spec

    monkeypatch.setattr(pipeline, "scan_task", flaky)
    h = make_harness(TASK_MAX_RETRIES="1")
    final, seen = _run(h, clips["bbb_small"])
    assert built == [1, 2], "the failed scan ran again as a second attempt, once"
    assert seen.index("probing") < seen.index("scanning") < seen.index("splitting")
    assert final["error"] is None and final["scan"]["attempt"] == 2, final
    _exact(h, final, clips["bbb_small"], tmp_path)


def test_a_scan_the_batch_service_lost_is_submitted_again_and_the_job_completes(
        harness: Harness, clips, tmp_path, monkeypatch):
    real = pipeline.scan_job
    calls: list[int] = []

    def lost(ctx, req, attempt=1):
        result = real(ctx, req, attempt)
        calls.append(attempt)
        if len(calls) == 1:  # the Batch job (and the scan task with it) is gone
            ctx.backend.delete(req.job_id)
            assert pipeline.scan_state(ctx, req, attempt)["state"] == "missing"
        return result

    monkeypatch.setattr(pipeline, "scan_job", lost)
    final, _ = _run(harness, clips["bbb_small"])
    assert calls == [1, 1], "submitted again under the same attempt, once"
    assert final["error"] is None
    _exact(harness, final, clips["bbb_small"], tmp_path)
