"""The temporal stage: after any model, make each frame agree with the previous one along the
source's motion.

Per frame, optical flow (OpenCV DIS) is measured on the *source* frames, previous -> current and
back, at a reduced size (``flow_side``: cheap next to any model, and the same whatever the output
size). Where the source moved coherently — forward-backward consistent, off motion boundaries
(``scoring.flow.consistency_mask``) — the model's output is blended towards the previous *output*
frame warped by that motion; elsewhere (occlusions, new content, a scene cut, a change the
motion does not explain) the model's output is left alone. The blend is a running average along
motion paths, so a texture that a model paints a little differently on every frame settles, and
a chain that starts from a different state (the start of a chunk) forgets it geometrically:
``weight ** k`` after ``k`` frames.

It only needs source frames and output frames, so it works the same for ``gatys``, ``fast`` and
any future model. Warping and blending run on the output's device (``torch.grid_sample``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from scoring import flow as flowlib
from scoring.images import resize, to_frames
from shared.contract import working_size


@dataclass
class TemporalConfig:
    enabled: bool = True
    weight: float = 0.6  # share of the warped previous output kept on coherent pixels
    flow_side: int = 320  # flow is measured with the source's long side at most this
    cut_threshold: float = 0.3  # fewer coherent pixels than this: a scene cut, start afresh
    # mean abs difference (0-1) between a source frame and its warped predecessor: blended
    # fully up to the first value (noise, compression), not at all from the second
    match_tolerance: tuple[float, float] = (0.03, 0.08)


class TemporalStage:
    """Stateful across calls (one chunk, in order). ``seconds`` adds up the time spent here."""

    def __init__(self, cfg: TemporalConfig):
        assert 0.0 <= cfg.weight < 1.0, cfg.weight
        self.cfg = cfg
        self.seconds = 0.0
        self.cuts = 0
        self.reset()

    def reset(self) -> None:
        self._prev_src: np.ndarray | None = None  # uint8 [fh, fw, 3], flow size
        self._prev_out: torch.Tensor | None = None  # [1, 3, h, w] in [0, 1]

    def __call__(self, src: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """src: the model's input [B, 3, h, w] in [0, 1]; out: its output, same shape.
        Returns the steadied output (same shape, device and dtype)."""
        if not self.cfg.enabled:
            return out
        t0 = time.perf_counter()
        assert src.shape == out.shape, (src.shape, out.shape)
        h, w = out.shape[-2:]
        fw, fh = working_size(w, h, self.cfg.flow_side)
        small = to_frames(resize(src.float(), (fh, fw)))  # uint8 frames for DIS
        result = []
        for i, cur_src in enumerate(small):
            cur = out[i:i + 1].float()
            if self._prev_src is not None and self._prev_out is not None \
                    and self._prev_out.shape == cur.shape:
                cur = self._blend(cur, cur_src)
            self._prev_src, self._prev_out = cur_src, cur
            result.append(cur)
        self.seconds += time.perf_counter() - t0
        return torch.cat(result).to(out.dtype)

    def _blend(self, cur: torch.Tensor, cur_src: np.ndarray) -> torch.Tensor:
        assert self._prev_src is not None and self._prev_out is not None
        bwd = flowlib.flow(cur_src, self._prev_src)  # [fh, fw, 2]: current pixel -> previous
        fwd = flowlib.flow(self._prev_src, cur_src)
        mask = flowlib.consistency_mask(fwd, bwd)  # [fh, fw] 1 = coherent motion
        # ... and the motion must explain the change: where the warped previous source frame
        # does not match the current one (a flash, a cut, something appearing), leave it alone
        warped_src = flowlib.warp(self._prev_src.astype(np.float32) / 255.0, bwd)
        err = np.abs(cur_src.astype(np.float32) / 255.0 - warped_src).mean(-1)  # [fh, fw]
        lo, hi = self.cfg.match_tolerance
        mask *= np.clip((hi - err) / (hi - lo), 0.0, 1.0)
        if mask.mean() < self.cfg.cut_threshold:
            self.cuts += 1
            return cur
        h, w = cur.shape[-2:]
        fh, fw = mask.shape
        dev = cur.device
        flo = torch.from_numpy(bwd).permute(2, 0, 1)[None].to(dev)  # [1, 2, fh, fw]
        m = torch.from_numpy(mask)[None, None].to(dev)
        if (fh, fw) != (h, w):
            flo = F.interpolate(flo, size=(h, w), mode="bilinear", align_corners=False)
            flo = flo * torch.tensor([w / fw, h / fh], device=dev).view(1, 2, 1, 1)
            m = F.interpolate(m, size=(h, w), mode="bilinear", align_corners=False)
        # bicubic: the warp chains from frame to frame, bilinear would blur a little more each time
        warped = flowlib.warp_torch(self._prev_out, flo, mode="bicubic").clamp_(0, 1)
        return cur + self.cfg.weight * m * (warped - cur)
