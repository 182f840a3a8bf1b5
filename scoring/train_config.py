"""The ``train`` command's settings: ``TrainConfig`` and its command-line options.

Apart from ``scoring/train.py`` so that building the ``python -m scoring`` parser, which every
task on a node does, needs no torch.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields


@dataclass
class TrainConfig:
    style: str = ""
    content: list[str] = field(default_factory=list)
    output: str = "model.pt"
    steps: int = 2000
    batch_size: int = 4
    image_size: int = 128  # square training crops
    frame_side: int = 320  # long side content frames are stored at (crops come from these)
    style_scale: float = 1.0  # style image long side = style_scale * frame_side
    max_frames: int = 300  # frames (pairs) sampled per video
    channels: int = 32
    res_blocks: int = 5
    lr: float = 1e-3
    # Content at relu4_2 lets the style's texture replace the surface while shapes stay; on
    # CPU runs weight 8 at relu3_1 washed the style out (style loss 3x gatys') and weight 3 at
    # relu4_2 lost the subject after a few hundred steps: 5 sits between.
    content_weight: float = 5.0
    style_weight: float = 30.0
    temporal_weight: float = 20.0
    tv_weight: float = 1.0
    noise: float = 0.03  # std of the input perturbation (0-1 scale)
    shift_pairs: float = 0.3  # share of pairs made by a synthetic shift instead of real motion
    content_layers: tuple[str, ...] = ("relu4_2",)
    style_layers: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
    checkpoint_every: int = 200
    log_every: int = 10
    seed: int = 0
    device: str = "auto"
    threads: int = 0
    resume: bool = False
    init: str | None = None  # start from these model weights (fine-tuning)



def add_train_arguments(ap: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    ap.add_argument("--style", required=True, help="style image")
    ap.add_argument("--content", required=True, action="append",
                    help="folder of images or a video (repeatable)")
    ap.add_argument("--output", required=True, help="model file to write (.pt)")
    for f in fields(TrainConfig):
        if f.name in ("style", "content", "output", "content_layers", "style_layers", "resume",
                      "init", "device"):
            continue
        ap.add_argument("--" + f.name.replace("_", "-"), type=type(getattr(d, f.name)),
                        default=getattr(d, f.name))
    for name in ("content_layers", "style_layers"):
        ap.add_argument("--" + name.replace("_", "-"), default=",".join(getattr(d, name)),
                        type=lambda v: tuple(x.strip() for x in v.split(",") if x.strip()),
                        help="VGG layers, comma-separated")
    ap.add_argument("--device", default=d.device, help="auto | cpu | cuda")
    ap.add_argument("--init", default=None, help="start from this model file")
    ap.add_argument("--resume", action="store_true",
                    help="continue from OUTPUT.ckpt when it exists")
