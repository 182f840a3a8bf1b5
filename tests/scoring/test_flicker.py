"""The flicker metric ranks videos the way a viewer would, and warm-started gatys is steadier."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scoring.flicker import read_frames, warping_error
from tests.scoring.conftest import STYLE, run_scoring


def test_noise_flickers_more_than_the_clip(small_clip: Path):
    frames = read_frames(small_clip, 0)
    rng = np.random.default_rng(0)
    noisy = [np.clip(f.astype(np.int16) + rng.normal(0, 12, f.shape), 0, 255).astype(np.uint8)
             for f in frames]
    clean = warping_error(frames)
    assert warping_error(noisy, flow_frames=frames) > 2 * clean
    # identical frames do not flicker at all
    assert warping_error([frames[0]] * 4) < 1e-6


def test_warm_started_gatys_flickers_less_than_per_frame(small_clip: Path, tmp_path: Path):
    common = ["--input", str(small_clip), "--style", str(STYLE), "--model", "gatys",
              "--max-side", "96", "--steps", "10", "--quiet"]
    warm, cold = tmp_path / "warm.mkv", tmp_path / "cold.mkv"
    assert run_scoring("stylize", *common, "--output", str(warm),
                       "--warm-steps", "3").returncode == 0
    assert run_scoring("stylize", *common, "--output", str(cold),
                       "--no-warm-start").returncode == 0
    src = read_frames(small_clip, 96)
    warm_err = warping_error(read_frames(warm, 96), flow_frames=src)
    cold_err = warping_error(read_frames(cold, 96), flow_frames=src)
    assert warm_err < cold_err, (warm_err, cold_err)
