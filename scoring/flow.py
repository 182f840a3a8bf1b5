"""Optical flow (OpenCV DIS) and warping: gatys warm starts, the temporal stage, training, flicker.

Conventions: frames are uint8 or float arrays [H, W, 3] (RGB); a flow is float32 [H, W, 2]
in pixels, ``flow[y, x] = (dx, dy)``. ``backward_flow(cur, prev)`` tells, for each pixel of
``cur``, where it came from in ``prev``, so ``warp(prev, flow)`` lines ``prev`` up with ``cur``.

    python -m scoring.flow A.png B.png     # prints flow statistics
"""

from __future__ import annotations

import sys
import threading

import cv2
import numpy as np
import torch
import torch.nn.functional as F

_local = threading.local()


def _dis() -> cv2.DISOpticalFlow:
    # One DIS object per thread (OpenCV objects are not thread-safe). MEDIUM: good quality, fast.
    if not hasattr(_local, "dis"):
        _local.dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return _local.dis


def _gray(img: np.ndarray) -> np.ndarray:
    if img.dtype != np.uint8:
        img = np.clip(img * 255.0 if img.max() <= 1.0 else img, 0, 255).astype(np.uint8)
    return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)


def flow(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Dense flow from ``src`` to ``dst``: pixel (x, y) of ``src`` moves to (x, y) + flow[y, x]."""
    assert src.shape[:2] == dst.shape[:2], (src.shape, dst.shape)
    f = _dis().calc(_gray(src), _gray(dst), None)  # [H, W, 2] float32
    return f


def backward_flow(cur: np.ndarray, prev: np.ndarray) -> np.ndarray:
    """For each pixel of ``cur``, the offset to where it was in ``prev`` (flow cur -> prev)."""
    return flow(cur, prev)


def warp(img: np.ndarray, flow_to_src: np.ndarray, interp: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Sample ``img`` at (x, y) + flow[y, x] (bilinear, edge-replicated): [H, W, C] -> [H, W, C]."""
    h, w = flow_to_src.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    map_x = gx + flow_to_src[..., 0]
    map_y = gy + flow_to_src[..., 1]
    return cv2.remap(img, map_x, map_y, interpolation=interp,
                     borderMode=cv2.BORDER_REPLICATE)

def warp_torch(img: torch.Tensor, flow: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Sample img [B, C, H, W] at (x, y) + flow [B, 2, H, W] (``mode``, border-clamped): the
    torch twin of ``warp``, on the tensor's device."""
    b, _, h, w = img.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=img.device, dtype=img.dtype),
                            torch.arange(w, device=img.device, dtype=img.dtype), indexing="ij")
    gx = (xs + flow[:, 0]) / max(w - 1, 1) * 2 - 1
    gy = (ys + flow[:, 1]) / max(h - 1, 1) * 2 - 1
    grid = torch.stack([gx, gy], dim=-1)  # [B, H, W, 2]
    return F.grid_sample(img, grid, mode=mode, padding_mode="border", align_corners=True)


def consistency_mask(fwd: np.ndarray, bwd: np.ndarray, alpha: float = 0.01,
                     beta: float = 0.5) -> np.ndarray:
    """Forward-backward consistency (Sundaram et al. / Ruder et al.): 1 where flow is reliable.

    ``bwd`` is the flow cur -> prev ([H, W, 2], at cur's pixels), ``fwd`` is prev -> cur. A pixel
    of cur is kept when following ``bwd`` and then ``fwd`` comes back (near) where it started,
    and when it does not sit on a motion boundary. Returns float32 [H, W] in {0, 1}.
    """
    fwd_at_cur = warp(fwd, bwd)  # forward flow sampled where each cur pixel came from
    round_trip = bwd + fwd_at_cur
    mag = (bwd ** 2).sum(-1) + (fwd_at_cur ** 2).sum(-1)
    occluded = (round_trip ** 2).sum(-1) > alpha * mag + beta
    gy_u, gx_u = np.gradient(bwd[..., 0])
    gy_v, gx_v = np.gradient(bwd[..., 1])
    grad2 = gx_u ** 2 + gy_u ** 2 + gx_v ** 2 + gy_v ** 2
    motion_edge = grad2 > 0.01 * (bwd ** 2).sum(-1) + 0.002
    return (~(occluded | motion_edge)).astype(np.float32)


def warp_with_mask(prev: np.ndarray, cur: np.ndarray, prev_img: np.ndarray | None = None,
                   interp: int = cv2.INTER_LINEAR) -> tuple[np.ndarray, np.ndarray]:
    """Warp ``prev_img`` (default ``prev``) onto ``cur``'s pixels; also return the reliable mask.

    Flow is measured between the *content* frames ``prev`` and ``cur``; ``prev_img`` is what is
    carried over (e.g. the previous stylized frame; use ``cv2.INTER_CUBIC`` when warps chain,
    bilinear blurs a little more every time). Returns (warped [H, W, C], mask [H, W]).
    """
    bwd = flow(cur, prev)
    fwd = flow(prev, cur)
    src = prev if prev_img is None else prev_img
    return warp(src, bwd, interp), consistency_mask(fwd, bwd)


if __name__ == "__main__":
    a = cv2.cvtColor(cv2.imread(sys.argv[1]), cv2.COLOR_BGR2RGB)
    b = cv2.cvtColor(cv2.imread(sys.argv[2]), cv2.COLOR_BGR2RGB)
    f = backward_flow(b, a)
    _, m = warp_with_mask(a, b)
    print(f"mean |flow| {np.abs(f).mean():.3f} px, reliable {m.mean() * 100:.1f}% of pixels")
