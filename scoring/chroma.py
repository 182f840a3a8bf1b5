"""The chroma step: before a chroma-subsampled encode (4:2:0, 4:2:2), soften the colour of the
model's output, leaving its brightness alone.

A style model paints fine, saturated colour texture (the swirl's yellow/blue stripes a couple of
pixels wide). A 4:2:0 encode keeps one colour sample per 2x2 pixels, and players turn that back
into pixels by repeating or interpolating those samples on a grid fixed to the frame, not to
the picture: as the texture moves, what survives of it changes from frame to frame, and the
video shimmers in colour where the unencoded frames were steady. So the output is taken to
YCbCr (BT.601, the matrix the encoder's RGB conversion uses), Cb and Cr are blurred with a
Gaussian of ``sigma`` *output* pixels, and it comes back to RGB; Y, and so every edge and detail
the eye reads, is unchanged. The eye resolves colour far more coarsely than brightness, which is
what 4:2:0 itself relies on.

It runs at the model's working size, before the frame is scaled back to the video's size, with
the blur scaled to match (``sigma * working / output``): at 1080p a 320-pixel working frame is
upscaled six times and its colour is already smooth at the 4:2:0 grid, so the step shrinks to
nothing there and costs nearly nothing anywhere. A 4:4:4 encode keeps every colour sample, so
the step is skipped.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from shared.contract import SCORING

# BT.601 RGB -> YCbCr (analogue form: the offsets cancel out on the way back)
_RGB2YCC = torch.tensor([[0.299, 0.587, 0.114],
                         [-0.168736, -0.331264, 0.5],
                         [0.5, -0.418688, -0.081312]])
_YCC2RGB = torch.linalg.inv(_RGB2YCC)
_MIN_SIGMA = 0.3  # working-size pixels: below this a Gaussian barely changes a pixel


@dataclass(frozen=True)
class ChromaConfig:
    sigma: float = SCORING.chroma_sigma  # Gaussian sigma in output pixels; 0 = off


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """A normalised 1-D Gaussian, radius ceil(3 sigma)."""
    r = max(1, math.ceil(3 * sigma))
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-x * x / (2 * sigma * sigma))
    return k / k.sum()


def soften_chroma(rgb: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur the chroma (BT.601 Cb, Cr) of ``rgb`` [B, 3, H, W] in [0, 1] with a Gaussian of
    ``sigma`` pixels; luma stays as it was. Returns a new tensor of the same shape, clamped."""
    if sigma <= 0:
        return rgb
    x = rgb.float()
    dev = x.device
    chroma = F.conv2d(x, _RGB2YCC[1:].view(2, 3, 1, 1).to(dev))  # [B, 2, H, W]: Cb, Cr
    b, _, h, w = chroma.shape
    k = gaussian_kernel(sigma).to(dev)
    r = (k.numel() - 1) // 2
    c = chroma.reshape(b * 2, 1, h, w)
    # reflect padding needs the pad below the size; replicate works for any frame
    mode = "reflect" if r < min(h, w) else "replicate"
    c = F.conv2d(F.pad(c, (r, r, 0, 0), mode=mode), k.view(1, 1, 1, -1))
    c = F.conv2d(F.pad(c, (0, 0, r, r), mode=mode), k.view(1, 1, -1, 1)).reshape(b, 2, h, w)
    # add back only the change of Cb/Cr: its luma is zero by construction, so Y is untouched
    delta = F.conv2d(c - chroma, _YCC2RGB[:, 1:].contiguous().view(3, 2, 1, 1).to(dev))
    return (x + delta).clamp_(0, 1).to(rgb.dtype)


class ChromaStep:
    """Applied by the chunk task between the model (and the temporal stage) and the scaling
    back to the video's size. ``seconds`` adds up the time spent here."""

    def __init__(self, cfg: ChromaConfig):
        assert cfg.sigma >= 0, cfg.sigma
        self.cfg = cfg
        self.seconds = 0.0

    def __call__(self, y: torch.Tensor, out_size: tuple[int, int]) -> torch.Tensor:
        """y: [B, 3, h, w] at the working size; out_size: (H, W) the frame is scaled to next."""
        sigma = self.cfg.sigma * y.shape[-1] / out_size[1]  # output pixels -> working pixels
        if sigma < _MIN_SIGMA:
            return y
        t0 = time.perf_counter()
        y = soften_chroma(y, sigma)
        self.seconds += time.perf_counter() - t0
        return y
