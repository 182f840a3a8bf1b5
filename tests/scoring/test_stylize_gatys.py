"""The chunk task contract with the gatys model: frames, timestamps, size, exit codes, atomicity."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest

from scoring.flicker import read_frames
from shared.video import frame_timestamps
from tests.scoring.conftest import (
    STYLE,
    make_clip,
    mean_change,
    palette_overlap,
    reencoded,
    run_scoring,
)

FAST_GATYS = ["--model", "gatys", "--steps", "8", "--warm-steps", "2", "--max-side", "96"]


def _times(path: Path) -> list[Fraction]:
    tb, pts = frame_timestamps(path)
    return [p * tb for p in pts]


def _events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def test_gatys_chunk_keeps_frames_timestamps_and_size(small_clip: Path, tmp_path: Path):
    out = tmp_path / "out.mkv"
    proc = run_scoring("stylize", "--input", str(small_clip), "--output", str(out),
                       "--style", str(STYLE), *FAST_GATYS)
    assert proc.returncode == 0, proc.stderr
    events = _events(proc.stdout)
    frames = [e for e in events if e["event"] == "frame"]
    assert [e["index"] for e in frames] == list(range(12))
    assert events[-1]["event"] == "done" and events[-1]["frames"] == 12
    assert _times(out) == _times(small_clip)
    src, dst = read_frames(small_clip, 0), read_frames(out, 0)
    assert len(dst) == 12 and dst[0].shape == src[0].shape == (90, 160, 3)
    # Clearly restyled, not a copy, with margins that hold on any CPU (8 L-BFGS steps land a
    # little differently on each: a mean change of 22.8 here, 18.6 on an AMD EPYC):
    # - it changed at least 3x what a plain re-encode changes (3.4 here: threshold ~10);
    # - it took on the style's colours: its palette shares clearly more with the style image
    #   than the source's does (0.25 -> 0.52 here, x2.1; asked: x1.4).
    copy = read_frames(reencoded(small_clip, tmp_path / "copy.mkv"), 0)
    change, copy_change = mean_change(src, dst), mean_change(src, copy)
    assert change > 3 * copy_change, (change, copy_change)
    before, after = palette_overlap(src, STYLE), palette_overlap(dst, STYLE)
    assert after > 1.4 * before, (before, after)
    (tmp_path / "copy.mkv").unlink()
    assert not list(tmp_path.glob(".*")), "temp files left behind"


@pytest.mark.parametrize("size", [(161, 91), (50, 30), (18, 14)])
def test_odd_and_tiny_sizes_come_back_the_same_size(size, tmp_path: Path):
    w, h = size
    clip = make_clip(tmp_path / "in.mkv", w, h, 3, pix_fmt="yuv444p")
    out = tmp_path / "out.mp4"
    proc = run_scoring("stylize", "--input", str(clip), "--output", str(out),
                       "--style", str(STYLE), *FAST_GATYS)
    assert proc.returncode == 0, proc.stderr
    frames = read_frames(out, 0)
    assert len(frames) == 3 and frames[0].shape == (h, w, 3)
    assert _times(out) == _times(clip)


def _error(proc) -> dict:
    line = proc.stderr.strip().splitlines()[-1]
    err = json.loads(line)
    assert err["event"] == "error"
    return err


def test_non_video_input_is_bad_input(tmp_path: Path):
    bogus = tmp_path / "notes.mkv"
    bogus.write_text("this is not a video\n" * 50)
    out = tmp_path / "out.mkv"
    proc = run_scoring("stylize", "--input", str(bogus), "--output", str(out),
                       "--style", str(STYLE), *FAST_GATYS)
    assert proc.returncode == 2
    err = _error(proc)
    assert err["bad_input"] is True and "video" in err["reason"]
    assert not out.exists()


def test_missing_style_image_is_bad_input(small_clip: Path, tmp_path: Path):
    out = tmp_path / "out.mkv"
    proc = run_scoring("stylize", "--input", str(small_clip), "--output", str(out),
                       "--style", str(tmp_path / "nope.jpg"), *FAST_GATYS)
    assert proc.returncode == 2
    err = _error(proc)
    assert err["bad_input"] is True and "style image" in err["reason"]
    assert not out.exists()


def test_failure_leaves_no_output(small_clip: Path, tmp_path: Path):
    """A retryable failure (an encoder that cannot be opened) leaves neither OUT nor temp files."""
    out = tmp_path / "out.mkv"
    proc = run_scoring("stylize", "--input", str(small_clip), "--output", str(out),
                       "--style", str(STYLE), *FAST_GATYS, "--codec", "no_such_encoder")
    assert proc.returncode not in (0, 2), proc.stderr
    assert _error(proc)["bad_input"] is False
    assert list(tmp_path.iterdir()) == []
