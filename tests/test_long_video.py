"""A long clip with a single keyframe through the whole app: no Function activity grows with
the video, and the output is exact.

The clip (3,000 frames, one keyframe, so the split must re-encode it from the first frame to
the last) is made at test time with ffmpeg's lavfi sources. Every activity the orchestrator
calls (cleanup aside) is measured in this process, where the Function app runs: the probe
reads the header (the packet scan runs as a Batch task, which counts every frame), the split
and stitch activities only plan and submit (the cut and the join run as Batch tasks, whose
frame counts the test checks), publishing copies the result into outgoing/ on the storage
side (no byte of it passes through the Function), and none decodes a frame. The output keeps
every frame, every timestamp and the audio bit for bit.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from shared.video import plan_chunks, probe
from tests.conftest import FAST_SCORING, Harness, ffmpeg
from tests.test_corpus import assert_output_rules
from tests.test_stitch_task import FunctionTraffic

FRAMES = 3000
FRAMES_PER_CHUNK = 500  # 6 chunks: more chunks would only add task start-ups
# Generous: on any CPU a bounded activity takes seconds, while decoding or re-encoding these
# 3,000 frames inside one would take about as long as the whole scoring does.
ACTIVITY_BOUND_S = 60.0


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("long") / "long_single_keyframe.mp4"
    seconds = FRAMES / 25
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size=160x90:rate=25:duration={seconds}",
           "-f", "lavfi", "-i", f"sine=frequency=330:sample_rate=48000:duration={seconds}",
           "-c:v", "libx264", "-preset", "veryfast", "-bf", "2",
           "-x264-params", "keyint=infinite:scenecut=0", "-c:a", "aac", "-b:a", "64k",
           str(out))
    return out


def _record(monkeypatch, runs: list[dict[str, Any]]) -> None:
    """Measure every activity run (each goes through ``functions.activities._traced``)."""
    from functions import activities

    real = activities._traced

    def timed(activity: str, payload: Any, run: Any) -> Any:
        t0 = time.monotonic()
        result = real(activity, payload, run)
        runs.append({"step": activity, "seconds": time.monotonic() - t0, "result": result})
        return result

    monkeypatch.setattr(activities, "_traced", timed)


def test_a_long_single_keyframe_clip_keeps_every_activity_bounded_and_comes_back_exact(
        azurite, long_clip: Path, tmp_path: Path, monkeypatch):
    p = probe(str(long_clip))
    assert p.frames == FRAMES and p.cuts == [0], "one keyframe: only a re-encode can cut it"
    assert plan_chunks(p, FRAMES_PER_CHUNK)[0] == "reencode"

    traffic = FunctionTraffic(monkeypatch)
    runs: list[dict[str, Any]] = []
    _record(monkeypatch, runs)
    h = Harness(azurite, {"STORAGE": azurite.connection_string, **FAST_SCORING,
                          "FRAMES_PER_CHUNK": str(FRAMES_PER_CHUNK), "SCORING_MAX_SIDE": "32"})
    try:
        name = h.upload(long_clip, style="swirl", model="fast")
        h.functions.trigger_blob(name)
        final, _ = h.watch(h.job_id_for(name), timeout=900)
        assert final["state"] == "completed", final
        out = tmp_path / Path(final["output"]).name
        h.store.download_file("outgoing", final["output"].removeprefix("outgoing/"), out)
    finally:
        h.close()

    # Exact: every frame, its timestamp, the audio packet for packet.
    assert_output_rules(long_clip, out)
    assert probe(str(out)).frames == FRAMES

    # Every activity bounded; the heavy media work was Batch work.
    slowest = max(runs, key=lambda r: r["seconds"])
    assert slowest["seconds"] < ACTIVITY_BOUND_S, slowest["step"]
    steps = {r["step"] for r in runs}
    assert {"probe", "scan", "scan_state", "split", "split_state", "submit", "progress",
            "stitch", "stitch_state", "publish"} <= steps
    (door,) = [r["result"] for r in runs if r["step"] == "probe"]
    assert door["scan"] and door["probe"]["frames_estimated"]  # the header's count
    scanned = [r["result"] for r in runs if r["step"] == "scan_state"][-1]
    assert scanned["state"] == "succeeded" and scanned["frames_done"] == FRAMES
    split = next(r["result"] for r in runs if r["step"] == "split")
    assert split["mode"] == "reencode" and split["chunks"] == FRAMES // FRAMES_PER_CHUNK
    cut = [r["result"] for r in runs if r["step"] == "split_state"][-1]
    assert cut["state"] == "succeeded" and cut["frames_done"] == FRAMES  # the task cut them

    # The join ran on the pool too: the stitch task reported every frame and made the file.
    joined = [r["result"] for r in runs if r["step"] == "stitch_state"][-1]
    assert joined["state"] == "succeeded" and joined["frames_done"] == FRAMES, joined
    assert joined["frames"] == FRAMES and joined["size_bytes"] == out.stat().st_size
    # Publishing moved none of the output's bytes through the Function: a few requests
    # without content, whatever the output's size (here over a megabyte).
    assert out.stat().st_size > 1_000_000
    assert traffic.bytes < 1024, (traffic.bytes, traffic.requests)
