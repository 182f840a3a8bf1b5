"""Gatys et al. style transfer by optimisation, made for video: warm starts and a temporal term.

Each frame is an image optimised with L-BFGS so that its VGG19 features match the content
frame (``relu4_1``) and its Gram matrices match the style image's (``relu1_1``..``relu4_1``).
The first frame of a chunk starts from the content frame and gets ``steps`` evaluations; every
following frame starts from the previous *stylized* frame warped by DIS optical flow (Ruder et
al. 2016) and gets only ``warm_steps``, with a temporal loss that keeps flow-consistent pixels
where the warp put them. A scene cut (few flow-consistent pixels) falls back to a cold start.
Style Gram matrices are computed once per chunk.

    python -m scoring.gatys CONTENT.png STYLE.jpg OUT.png [--steps 40]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from scoring import flow as flowlib
from scoring.images import load_image, resize_long_side, to_frames
from scoring.vgg import VGGFeatures, deprocess, gram, preprocess
from shared.contract import SCORING


@dataclass
class GatysConfig:
    steps: int = SCORING.gatys_steps  # L-BFGS evaluations for a cold start (first frame, cut)
    warm_steps: int = SCORING.gatys_warm_steps  # ... for a frame warm-started from the previous
    warm_start: bool = True  # False: every frame from its content frame (per-frame Gatys)
    content_layers: tuple[str, ...] = ("relu4_1",)
    style_layers: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
    style_layer_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)
    content_weight: float = 2.0
    style_weight: float = 30.0
    tv_weight: float = 0.0
    temporal_weight: float = 20.0
    style_scale: float = 1.0  # style image long side = style_scale * working long side
    cut_threshold: float = 0.35  # below this fraction of flow-consistent pixels: a scene cut
    pool: str = "avg"
    history: int = 20  # L-BFGS history


class GatysStylizer:
    """Stylize the frames of one chunk in order. Call with [B, 3, h, w] floats in [0, 1]."""

    batch_size = 1
    stateful = True  # each frame depends on the previous output (see scoring.stylize's lead-out)

    def __init__(self, style: np.ndarray, cfg: GatysConfig, device: torch.device | str = "cpu"):
        assert len(cfg.style_layers) == len(cfg.style_layer_weights)
        self.cfg = cfg
        self.device = torch.device(device)
        layers = tuple(dict.fromkeys(cfg.content_layers + cfg.style_layers))
        self.vgg = VGGFeatures(layers, pool=cfg.pool).to(self.device)
        self.style_img = style  # uint8 [H, W, 3]
        self._style_grams: dict[tuple[int, int], dict[str, torch.Tensor]] = {}
        self._prev_content: np.ndarray | None = None  # uint8 [h, w, 3], working size
        self._prev_out: np.ndarray | None = None  # float32 [h, w, 3] in [0, 1]
        self.cold_starts = 0

    def style_grams(self, h: int, w: int) -> dict[str, torch.Tensor]:
        """Gram matrices of the style image scaled to the working size (cached per size)."""
        key = (h, w)
        if key not in self._style_grams:
            long_side = max(8, round(max(h, w) * self.cfg.style_scale))
            s = resize_long_side(self.style_img, long_side).to(self.device)  # [1, 3, hs, ws]
            with torch.no_grad():
                feats = self.vgg(preprocess(s))
            self._style_grams[key] = {n: gram(feats[n]) for n in self.cfg.style_layers}
        return self._style_grams[key]

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        # frames: [B, 3, h, w] in [0, 1]
        return torch.cat([self._one(f[None]) for f in frames])

    def _one(self, content: torch.Tensor) -> torch.Tensor:
        # content: [1, 3, h, w] in [0, 1]
        cfg = self.cfg
        h, w = content.shape[-2:]
        content = content.to(self.device)
        content_u8 = to_frames(content)[0]
        init, steps, temporal = content, cfg.steps, None
        if cfg.warm_start and self._prev_content is not None \
                and self._prev_content.shape == content_u8.shape:
            assert self._prev_out is not None
            warped, mask = flowlib.warp_with_mask(self._prev_content, content_u8, self._prev_out,
                                                  interp=cv2.INTER_CUBIC)  # sharp chains
            if mask.mean() >= cfg.cut_threshold:
                warped = np.clip(warped, 0.0, 1.0)  # bicubic overshoots
                init = torch.from_numpy(warped).permute(2, 0, 1)[None].to(self.device).float()
                m = torch.from_numpy(mask)[None, None].to(self.device)  # [1, 1, h, w]
                temporal = (preprocess(init), m)
                steps = cfg.warm_steps
        if steps == cfg.steps:
            self.cold_starts += 1
        out = self.optimise(content, init, steps, temporal)
        self._prev_content = content_u8
        self._prev_out = out[0].permute(1, 2, 0).cpu().numpy().astype(np.float32)
        return out

    def losses(self, x: torch.Tensor, content_feats: dict[str, torch.Tensor],
               grams: dict[str, torch.Tensor],
               temporal: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        """Total loss of the Caffe-space image ``x`` [1, 3, h, w]; each term is scale-free
        (normalised by its target's energy) so the weights mean the same at any size."""
        cfg = self.cfg
        feats = self.vgg(x)
        loss = x.new_zeros(())
        for n in cfg.content_layers:
            t = content_feats[n]
            err = (feats[n] - t).pow(2).mean() / (t.pow(2).mean() + 1e-8)
            loss = loss + cfg.content_weight * err
        for n, lw in zip(cfg.style_layers, cfg.style_layer_weights):
            g, t = gram(feats[n]), grams[n]
            loss = loss + cfg.style_weight * lw * (g - t).pow(2).mean() / (t.pow(2).mean() + 1e-8)
        if cfg.tv_weight:
            tv = (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + \
                 (x[..., :, 1:] - x[..., :, :-1]).abs().mean()
            loss = loss + cfg.tv_weight * tv / 255.0
        if temporal is not None:
            target, mask = temporal
            loss = loss + cfg.temporal_weight * (mask * (x - target).pow(2)).mean() / 255.0 ** 2
        return loss

    def optimise(self, content: torch.Tensor, init: torch.Tensor, steps: int,
                 temporal: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """L-BFGS for ``steps`` loss evaluations from ``init``; returns [1, 3, h, w] in [0, 1]."""
        h, w = content.shape[-2:]
        grams = self.style_grams(h, w)
        with torch.no_grad():
            content_feats = self.vgg(preprocess(content))
        x = preprocess(init).detach().contiguous().requires_grad_(True)  # [1, 3, h, w]
        opt = torch.optim.LBFGS([x], lr=1.0, max_iter=steps, max_eval=steps,
                                history_size=self.cfg.history, tolerance_grad=0.0,
                                tolerance_change=0.0)
        self.last_loss = float("nan")

        def closure() -> torch.Tensor:
            opt.zero_grad(set_to_none=True)
            loss = self.losses(x, content_feats, grams, temporal)
            loss.backward()
            self.last_loss = float(loss.detach())
            return loss

        if steps > 0:
            opt.step(closure)
        with torch.no_grad():
            return deprocess(x.detach()).clamp_(0, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description="Stylize one image with Gatys optimisation.",
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("content")
    ap.add_argument("style")
    ap.add_argument("output")
    ap.add_argument("--steps", type=int, default=GatysConfig.steps)
    ap.add_argument("--max-side", type=int, default=320)
    ap.add_argument("--style-weight", type=float, default=GatysConfig.style_weight)
    args = ap.parse_args()
    from PIL import Image

    content = resize_long_side(load_image(args.content), args.max_side)
    st = GatysStylizer(load_image(args.style),
                       GatysConfig(steps=args.steps, style_weight=args.style_weight))
    out = st(content)
    Image.fromarray(to_frames(out)[0]).save(args.output)
    print(f"loss {st.last_loss:.4f} -> {args.output}")


if __name__ == "__main__":
    main()
