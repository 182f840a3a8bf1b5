"""Flicker metric: warping error between consecutive frames (Lai et al. 2018), along the
*source's* motion.

For each pair of consecutive frames t-1 -> t, OpenCV DIS optical flow (preset medium) is
measured on the **source** frames, backward and forward; pixels that fail the forward-backward
consistency check or sit on a motion boundary are masked out. The pair's error is the masked
mean, over pixels, of the squared difference (summed over RGB in [0, 1]) between output frame t
and output frame t-1 warped by that flow. Taking the motion from the source means a style's own
texture cannot hide in the flow: what moves is what a viewer sees moving. A video's figure is
the mean over pairs, best read as the ratio output ÷ source (the source's own error is its
compression noise, lighting and flow error). A static clip scores ~0.

    python -m scoring flicker OUTPUT [--source SOURCE] [--max-side 640]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from scoring import flow as flowlib
from shared.contract import working_size

Motion = list[tuple[np.ndarray, np.ndarray]]  # per pair t: (flow t -> t-1 [H, W, 2], mask [H, W])


def source_motion(source: Sequence[np.ndarray]) -> Motion:
    """Backward flow and reliable-pixel mask for each consecutive pair of ``source`` frames."""
    motion = []
    for t in range(1, len(source)):
        prev, cur = np.asarray(source[t - 1]), np.asarray(source[t])
        bwd = flowlib.flow(cur, prev)
        fwd = flowlib.flow(prev, cur)
        motion.append((bwd, flowlib.consistency_mask(fwd, bwd)))
    return motion


def pair_errors(frames: Sequence[np.ndarray], motion: Motion) -> np.ndarray:
    """Warping error of each pair (t-1, t) of ``frames`` (uint8 [H, W, 3]) along ``motion``
    (from ``source_motion`` of frames of the same size): float64 [len(frames) - 1]."""
    assert len(frames) == len(motion) + 1, (len(frames), len(motion))
    errors = np.zeros(len(motion))
    for t, (bwd, mask) in enumerate(motion, start=1):
        prev, cur = np.asarray(frames[t - 1]), np.asarray(frames[t])
        assert prev.shape == cur.shape and prev.shape[:2] == mask.shape, (prev.shape, mask.shape)
        warped = flowlib.warp(prev.astype(np.float32) / 255.0, bwd)
        diff = ((cur.astype(np.float32) / 255.0 - warped) ** 2).sum(-1)  # [H, W]
        denom = mask.sum()
        errors[t - 1] = float((diff * mask).sum() / denom) if denom > 0 else 0.0
    return errors


def warping_error(frames: Sequence[np.ndarray] | np.ndarray,
                  flow_frames: Sequence[np.ndarray] | np.ndarray | None = None) -> float:
    """Mean warping error of consecutive ``frames``, x1000. ``flow_frames`` (same count and size):
    the source the motion is measured on; default the frames themselves. Pure function."""
    assert len(frames) >= 2, "need at least two frames"
    ref = frames if flow_frames is None else flow_frames
    assert len(ref) == len(frames), (len(ref), len(frames))
    return float(pair_errors(frames, source_motion(ref)).mean() * 1000.0)


def flicker_report(output: np.ndarray, source: np.ndarray,
                   boundaries: Sequence[int] = ()) -> dict:
    """Compare per-pair errors of an output with its source's (both from ``pair_errors``).

    ``boundaries``: indices t of the first frame of each chunk after the first; pair t-1 -> t
    is where two chunks meet. Errors are reported x1000."""
    med = float(np.median(output))

    def pair(i: int) -> dict:  # output[i] is the pair of frames i -> i + 1
        return {"pair": f"{i}->{i + 1}", "error": round(float(output[i]) * 1e3, 4),
                "x_median": round(float(output[i]) / max(med, 1e-12), 2)}

    return {
        "pairs": len(output),
        "source_mean": round(float(source.mean()) * 1e3, 4),
        "output_mean": round(float(output.mean()) * 1e3, 4),
        "ratio": round(float(output.mean() / max(source.mean(), 1e-12)), 3),
        "median_pair": round(med * 1e3, 4),
        "median_ratio": round(med / max(float(np.median(source)), 1e-12), 3),
        "worst_pair": pair(int(np.argmax(output))),
        "boundary_pairs": [pair(t - 1) for t in boundaries if 0 < t <= len(output)],
    }


def read_frames(path: str | Path, max_side: int = 320, max_frames: int = 0) -> list[np.ndarray]:
    """Decode a video's frames (uint8 RGB), scaled so the long side is at most ``max_side``."""
    from scoring.images import resize, to_frames, to_tensor
    from scoring.video_io import FrameReader, video_info

    info = video_info(path)
    w, h = working_size(info.width, info.height, max_side)
    size = (h, w)
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


def video_flicker(path: str | Path, max_side: int = 320, max_frames: int = 0,
                  source: str | Path | None = None) -> dict:
    """Flicker of a video file (the CLI's ``flicker`` command), along ``source``'s motion when
    given (it must have the same frames), else along the video's own."""
    frames = read_frames(path, max_side, max_frames)
    if source is None:
        return {"flicker": round(warping_error(frames), 4), "frames": len(frames)}
    src = read_frames(source, max_side, max_frames)
    if len(src) != len(frames) or src[0].shape != frames[0].shape:
        raise ValueError(f"{source} does not have {path}'s frames")
    motion = source_motion(src)
    report = flicker_report(pair_errors(frames, motion), pair_errors(src, motion))
    return {"flicker": report["output_mean"], "frames": len(frames), **report}
