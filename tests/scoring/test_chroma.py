"""The chroma step: fine colour texture moving across a 4:2:0 encode shimmers far less once its
colour is softened, brightness stays as it was, and the chunk task applies the step by default
to a 4:2:0 output only."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from scoring.chroma import soften_chroma
from scoring.flicker import read_frames, warping_error
from scoring.images import load_image, resize, to_frames, to_tensor
from scoring.video_io import EncodeOptions, FrameReader, FrameWriter, video_info
from shared.contract import SCORING
from tests.scoring.conftest import REPO, STYLE, run_scoring

MODEL = REPO / "assets" / "models" / "swirl.pt"
_Y = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)


def _luma(x: torch.Tensor) -> torch.Tensor:
    return (x * _Y).sum(1)


def test_the_step_softens_fine_colour_and_keeps_brightness_and_broad_colour():
    h, w = 48, 64
    xs = torch.arange(w).float()
    # left half: yellow/blue stripes 4 px apart (what a style model paints); right half: a flat
    # orange patch; a brightness ramp across both
    stripes = (torch.sin(xs * np.pi / 2) > 0).float().view(1, 1, 1, w).expand(1, 1, h, w)
    yellow, blue = torch.tensor([0.9, 0.8, 0.2]), torch.tensor([0.2, 0.3, 0.8])
    img = yellow.view(1, 3, 1, 1) * stripes + blue.view(1, 3, 1, 1) * (1 - stripes)
    img[..., w // 2:] = torch.tensor([0.85, 0.5, 0.2]).view(1, 3, 1, 1)
    img = (img * torch.linspace(0.7, 1.0, h).view(1, 1, h, 1)).clamp(0, 1)
    out = soften_chroma(img, SCORING.chroma_sigma)
    assert out.shape == img.shape
    # brightness (what carries edges and detail) is unchanged
    assert (_luma(out) - _luma(img)).abs().max() < 0.01
    # the stripes' colour swing (blue minus red, mid rows, away from the patch) mostly goes ...
    def swing(x: torch.Tensor) -> float:
        cb = x[0, 2, 16:32, 8:24] - x[0, 0, 16:32, 8:24]
        return float(cb.max() - cb.min())
    assert swing(out) < 0.3 * swing(img), (swing(out), swing(img))
    # ... while a broad patch keeps its colour
    assert (out[..., 20:28, 48:60] - img[..., 20:28, 48:60]).abs().max() < 0.02


def _pan(texture: torch.Tensor, dx: float, h: int, w: int) -> torch.Tensor:
    """An h x w window of ``texture`` [1, 3, H, W] shifted right by ``dx`` pixels (bicubic)."""
    th, tw = texture.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float() + dx, indexing="ij")
    grid = torch.stack([(xs + 0.5) / tw * 2 - 1, (ys + 0.5) / th * 2 - 1], -1)[None]
    return F.grid_sample(texture, grid, mode="bicubic", align_corners=False).clamp(0, 1)


def _encode_decode(frames: list[np.ndarray], path: Path) -> list[np.ndarray]:
    """Through the chunk task's encoder (4:2:0 by default) and decoder."""
    h, w = frames[0].shape[:2]
    writer = FrameWriter(path, w, h, Fraction(24), EncodeOptions())
    assert writer.pix_fmt.startswith("yuv420")
    for f in frames:
        writer.write(f)
    writer.close()
    reader = FrameReader(path, video_info(path))
    try:
        return list(reader)
    finally:
        reader.close()


def test_softened_colour_texture_stays_steady_through_a_4_2_0_encode(tmp_path: Path):
    # the swirl style's fine yellow/blue texture panning slowly at a model's working size
    # (64x36), scaled up 2x to the video's size as the chunk task does: a 4:2:0 encode keeps one
    # colour sample per 2x2 pixels, i.e. one per working pixel, as the texture slides under it
    texture = resize(to_tensor(load_image(STYLE)), (96, 96))
    w, h, n = 128, 72, 12
    work = [_pan(texture, 0.35 * t, h // 2, w // 2) for t in range(n)]

    def video(step: bool) -> list[np.ndarray]:
        frames = []
        for y in work:
            if step:
                y = soften_chroma(y, SCORING.chroma_sigma * (w // 2) / w)
            frames.append(to_frames(resize(y, (h, w)))[0])
        return _encode_decode(frames, tmp_path / f"pan_{step}.mkv")

    source = [to_frames(resize(y, (h, w)))[0] for y in work]  # the motion is the pan's
    steady = warping_error(video(True), flow_frames=source)
    shimmer = warping_error(video(False), flow_frames=source)
    assert steady < 0.5 * shimmer, (steady, shimmer)


def _stylize(src: Path, out: Path, *extra: str) -> dict:
    proc = run_scoring("stylize", "--input", str(src), "--output", str(out), "--style",
                       str(STYLE), "--model", "fast", "--model-file", str(MODEL),
                       "--max-side", "80", "--quiet", *extra)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_chunk_task_steadies_a_4_2_0_output_by_default_and_leaves_4_4_4_alone(
        small_clip: Path, tmp_path: Path):
    # the model works at half the video's size, as at 640x360 with the default working size
    on, off = tmp_path / "on.mkv", tmp_path / "off.mkv"
    summary = _stylize(small_clip, on)
    assert summary["pix_fmt"] == "yuv420p" and "chroma_seconds" in summary
    assert "chroma_seconds" not in _stylize(small_clip, off, "--chroma-sigma", "0")
    src = read_frames(small_clip, 160)
    steady = warping_error(read_frames(on, 160), flow_frames=src)
    shimmer = warping_error(read_frames(off, 160), flow_frames=src)
    assert steady < 0.95 * shimmer, (steady, shimmer)
    # 4:4:4 keeps every colour sample: nothing to soften
    full = _stylize(small_clip, tmp_path / "full.mkv", "--pix-fmt", "yuv444p")
    assert full["pix_fmt"] == "yuv444p" and "chroma_seconds" not in full
