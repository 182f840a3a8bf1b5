"""Flicker metric: warping error between consecutive frames (Lai et al. 2018).

For each pair of consecutive frames, the previous frame is warped onto the current one with
OpenCV DIS optical flow (measured on the *frames themselves*), and the mean squared difference
is taken over non-occluded pixels (forward-backward consistency mask). The video's score is the
mean over pairs, in (0-1 intensity)^2 x 1000 units. Lower is steadier. A static clip scores ~0.

Flow is measured on the frames given. To score a stylized video against its *source* motion,
pass ``flow_frames`` (the source frames): motion is then taken from the source, which is what
a viewer sees moving, and style noise cannot hide in the flow.

    python -m scoring flicker VIDEO [--max-side 320]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from scoring import flow as flowlib


def warping_error(frames: Sequence[np.ndarray] | np.ndarray,
                  flow_frames: Sequence[np.ndarray] | np.ndarray | None = None) -> float:
    """Mean masked warping error of consecutive ``frames`` (uint8 [H, W, 3] each), x1000.

    ``flow_frames`` (same count and size) is what the optical flow is computed on; default the
    frames themselves. Pure function: no I/O, no state.
    """
    n = len(frames)
    assert n >= 2, "need at least two frames"
    ref = frames if flow_frames is None else flow_frames
    assert len(ref) == n, (len(ref), n)
    errors = []
    for t in range(1, n):
        prev, cur = np.asarray(frames[t - 1]), np.asarray(frames[t])
        assert prev.shape == cur.shape, (prev.shape, cur.shape)
        fprev, fcur = np.asarray(ref[t - 1]), np.asarray(ref[t])
        bwd = flowlib.flow(fcur, fprev)
        fwd = flowlib.flow(fprev, fcur)
        mask = flowlib.consistency_mask(fwd, bwd)  # [H, W]
        warped = flowlib.warp(prev.astype(np.float32) / 255.0, bwd)
        diff = ((cur.astype(np.float32) / 255.0 - warped) ** 2).sum(-1)  # [H, W]
        denom = mask.sum()
        errors.append(float((diff * mask).sum() / denom) if denom > 0 else 0.0)
    return float(np.mean(errors) * 1000.0)


def read_frames(path: str | Path, max_side: int = 320, max_frames: int = 0) -> list[np.ndarray]:
    """Decode a video's frames (uint8 RGB), scaled so the long side is at most ``max_side``."""
    from scoring.images import resize, to_frames, to_tensor, working_size
    from scoring.video_io import FrameReader, probe

    info = probe(path)
    size = working_size(info.height, info.width, max_side)
    frames = []
    reader = FrameReader(path, info)
    try:
        for f in reader:
            frames.append(to_frames(resize(to_tensor(f), size))[0])
            if max_frames and len(frames) >= max_frames:
                break
    finally:
        reader.close()
    return frames


def video_flicker(path: str | Path, max_side: int = 320, max_frames: int = 0) -> dict:
    """Flicker of a video file (the CLI's ``flicker`` command)."""
    frames = read_frames(path, max_side, max_frames)
    return {"flicker": round(warping_error(frames), 4), "frames": len(frames)}
