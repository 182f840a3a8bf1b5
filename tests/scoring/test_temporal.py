"""Steady video: the temporal stage makes a clip steadier, chunks meet without a seam, and the
lead-in never changes which frames a chunk writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from scoring.flicker import pair_errors, read_frames, source_motion, warping_error
from shared.contract import SCORING
from shared.video import frame_timestamps, plan_chunks, probe, split, stitch
from tests.scoring.conftest import REPO, STYLE, make_clip, run_scoring

MODEL = REPO / "assets" / "models" / "swirl.pt"
FAST = ["--style", str(STYLE), "--model", "fast", "--model-file", str(MODEL), "--max-side", "160",
        "--quiet"]


def _stylize(src: Path, out: Path, *extra: str) -> dict:
    proc = run_scoring("stylize", "--input", str(src), "--output", str(out), *FAST, *extra)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_turning_the_temporal_stage_off_makes_a_clip_less_steady(small_clip: Path,
                                                                  tmp_path: Path):
    on, off = tmp_path / "on.mkv", tmp_path / "off.mkv"
    summary = _stylize(small_clip, on)
    assert summary["temporal_seconds"] > 0
    assert "temporal_seconds" not in _stylize(small_clip, off, "--no-temporal")
    src = read_frames(small_clip, 160)
    steady = warping_error(read_frames(on, 160), flow_frames=src)
    shaky = warping_error(read_frames(off, 160), flow_frames=src)
    assert steady < 0.7 * shaky, (steady, shaky)


def test_a_lead_in_is_scored_but_never_written(clip_dir: Path, tmp_path: Path):
    prev = make_clip(clip_dir / "lead_prev.mkv", 160, 90, 10, start=10)
    cur = make_clip(clip_dir / "lead_cur.mkv", 160, 90, 7, start=20)
    out = tmp_path / "out.mkv"
    summary = _stylize(cur, out, "--lead-in", str(prev), "--lead-in-frames", "4")
    assert summary["frames"] == 7 and summary["lead_in_frames"] == 4
    assert frame_timestamps(out) == frame_timestamps(cur)
    # a lead-in of another size is not used, and the chunk is still scored exactly
    odd = make_clip(clip_dir / "lead_odd.mkv", 96, 54, 4)
    summary = _stylize(cur, tmp_path / "out2.mkv", "--lead-in", str(odd), "--lead-in-frames", "4")
    assert summary["frames"] == 7 and summary["lead_in_frames"] == 0


@pytest.fixture(scope="module")
def three_chunks(clip_dir: Path, tmp_path_factory) -> tuple[Path, Path]:
    """A 24-frame clip (one keyframe; steady motion, so no pair stands out in the source) and
    its real split into 3 chunks of 8."""
    clip = make_clip(clip_dir / "seams.mkv", 160, 90, 24, start=8)
    p = probe(str(clip))
    mode, chunks = plan_chunks(p, 8)
    assert [c.frames for c in chunks] == [8, 8, 8]
    parts = tmp_path_factory.mktemp("seams")
    split(str(clip), p, chunks, mode, parts)
    return clip, parts


def _stitched_pair_errors(three_chunks: tuple[Path, Path], tmp_path: Path, model: list[str],
                         *, lead_out: bool, crf: str) -> tuple[list[float], float]:
    """Score the 3 chunks as the pipeline does (each with the previous chunk as its lead-in,
    and a lead-out where a successor follows when ``lead_out``), stitch them, and return the
    boundary pairs' errors and the median pair's, along the source's motion."""
    clip, parts = three_chunks
    p = probe(str(clip))
    _, chunks = plan_chunks(p, 8)
    chunk_files = sorted(parts.glob("*.mkv"))
    assert len(chunk_files) == 3
    outs = []
    for i, f in enumerate(chunk_files):
        out = tmp_path / f"out{i}.mkv"
        lead = ["--lead-in", str(chunk_files[i - 1]), "--lead-in-frames", "8"] if i else []
        if lead_out and i < 2:
            lead += ["--lead-out-frames", "8"]
        proc = run_scoring("stylize", "--input", str(f), "--output", str(out), "--style",
                           str(STYLE), *model, "--quiet", "--crf", crf, *lead)
        assert proc.returncode == 0, proc.stderr
        summary = json.loads(proc.stdout.strip().splitlines()[-1])
        assert summary["frames"] == 8 and summary["lead_in_frames"] == (8 if i else 0)
        outs.append(str(out))
    result = stitch(str(clip), p, chunks, outs, tmp_path / "stitched.mp4", "mp4")
    assert result.frames == 24
    frames = read_frames(tmp_path / "stitched.mp4", 160)
    assert len(frames) == 24
    errors = pair_errors(frames, source_motion(read_frames(clip, 160)))
    return [float(errors[c.start - 1]) for c in chunks[1:]], float(np.median(errors))


def test_three_chunks_meet_without_a_seam(three_chunks: tuple[Path, Path], tmp_path: Path):
    # crf 12: at 160x90 the encoder's own keyframe at each chunk start is not what is tested
    boundary, median = _stitched_pair_errors(
        three_chunks, tmp_path, ["--model", "fast", "--model-file", str(MODEL), "--max-side",
                                 "160"], lead_out=False, crf="12")
    assert max(boundary) <= 3 * median, (boundary, median)


@pytest.mark.slow
def test_three_gatys_chunks_meet_without_a_seam_in_the_encoded_output(
        three_chunks: tuple[Path, Path], tmp_path: Path):
    """gatys carries a history, so its chunks need the lead-out's cross-fade too; and at the
    default crf each chunk's first frame is a keyframe of its own encode, which the finer
    encode of the previous chunk's last frames has to absorb."""
    boundary, median = _stitched_pair_errors(
        three_chunks, tmp_path, ["--model", "gatys", "--max-side", "96", "--steps", "12",
                                 "--warm-steps", "3"], lead_out=True, crf=str(SCORING.crf))
    assert max(boundary) <= 3 * median, (boundary, median)
