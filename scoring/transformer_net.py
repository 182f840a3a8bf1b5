"""The ``fast`` model: a feed-forward image transformation network (Johnson et al. 2016 family).

Three convolutions down (stride 1, 2, 2), residual blocks, two nearest-upsample + conv stages
up (no transposed convolutions: no checkerboard artefacts), instance norm throughout, reflection
padding. Any frame size comes back exactly: the input is reflection-padded to a multiple of the
network's stride (4) and the output cropped back.

Model files hold only tensors and plain values (``{"format", "config": dict, "state_dict"}``)
and load with ``torch.load(..., weights_only=True)``.

    python -m scoring.transformer_net MODEL.pt     # prints the config and parameter count
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

FORMAT = "stylebatch-fast-v1"


@dataclass(frozen=True)
class NetConfig:
    channels: int = 32  # width of the first stage; later stages use 2x and 4x
    res_blocks: int = 5
    # Metadata (not architecture): what the model was trained on.
    style: str = ""
    image_size: int = 0
    steps: int = 0

    @property
    def stride(self) -> int:
        return 4

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NetConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


class ConvLayer(nn.Sequential):
    """Reflection pad + conv (+ instance norm + ReLU)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, norm_act: bool = True):
        layers: list[nn.Module] = [nn.ReflectionPad2d(k // 2), nn.Conv2d(cin, cout, k, stride)]
        if norm_act:
            layers += [nn.InstanceNorm2d(cout, affine=True), nn.ReLU(inplace=True)]
        super().__init__(*layers)


class ResidualBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), nn.InstanceNorm2d(c, affine=True),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), nn.InstanceNorm2d(c, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class UpConv(nn.Module):
    """Nearest-neighbour x2 upsample, then a conv (instead of a transposed conv)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = ConvLayer(cin, cout, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class TransformerNet(nn.Module):
    """RGB [B, 3, H, W] in [0, 1] -> stylized RGB [B, 3, H, W] in [0, 1], any H, W >= 1."""

    def __init__(self, cfg: NetConfig = NetConfig()):
        super().__init__()
        self.cfg = cfg
        c = cfg.channels
        self.down = nn.Sequential(ConvLayer(3, c, 9), ConvLayer(c, 2 * c, 3, 2),
                                  ConvLayer(2 * c, 4 * c, 3, 2))
        self.res = nn.Sequential(*[ResidualBlock(4 * c) for _ in range(cfg.res_blocks)])
        self.up = nn.Sequential(UpConv(4 * c, 2 * c), UpConv(2 * c, c))
        self.out = ConvLayer(c, 3, 9, norm_act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.dim() == 4 and x.shape[1] == 3, x.shape
        h, w = x.shape[-2:]
        s = self.cfg.stride
        # Pad to a multiple of the stride, and to at least 2 * stride + 1 so every reflection
        # pad (at most 4 px, at the full resolution) has enough pixels to reflect.
        ph = max((-h) % s, 0)
        pw = max((-w) % s, 0)
        while h + ph < 3 * s:
            ph += s
        while w + pw < 3 * s:
            pw += s
        if ph or pw:
            x = _pad_reflect(x, (0, pw, 0, ph))
        y = self.out(self.up(self.res(self.down(x * 2.0 - 1.0))))
        y = torch.sigmoid(y)  # [B, 3, H', W'] in (0, 1)
        return y[..., :h, :w]


def _pad_reflect(x: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    """Reflection pad that also works when the pad is larger than the input (repeat reflecting)."""
    left, right, top, bottom = pad
    while left or right or top or bottom:
        h, w = x.shape[-2:]
        step = (min(left, w - 1), min(right, w - 1), min(top, h - 1), min(bottom, h - 1))
        if max(step) == 0:  # a 1-pixel dimension cannot reflect: replicate
            return F.pad(x, (left, right, top, bottom), mode="replicate")
        x = F.pad(x, step, mode="reflect")
        left, right, top, bottom = (left - step[0], right - step[1], top - step[2],
                                    bottom - step[3])
    return x


def save_model(net: TransformerNet, path: str | Path, cfg: NetConfig | None = None,
               half: bool = False) -> None:
    """Write the weights with their config, atomically. Tensors and plain values only.

    ``half`` stores fp16 (half the size, for shipping; loading converts back to fp32)."""
    cfg = cfg or net.cfg
    path = Path(path)
    dtype = torch.float16 if half else torch.float32
    state = {k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).clone()
             for k, v in net.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"format": FORMAT, "config": asdict(cfg), "state_dict": state}, tmp)
    tmp.replace(path)


def load_model(path: str | Path, device: torch.device | str = "cpu") -> TransformerNet:
    """Load a model file written by ``save_model`` (``weights_only=True``)."""
    blob = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ValueError(f"{path} is not a stylebatch fast model file")
    net = TransformerNet(NetConfig.from_dict(blob["config"]))
    net.load_state_dict(blob["state_dict"])
    return net.to(device).eval()


if __name__ == "__main__":
    # python -m scoring.transformer_net [MODEL [--half OUT]]: describe a model (or store it fp16)
    m = load_model(sys.argv[1]) if len(sys.argv) > 1 else TransformerNet()
    print(m.cfg, f"{sum(p.numel() for p in m.parameters()) / 1e6:.2f} M parameters")
    if len(sys.argv) == 4 and sys.argv[2] == "--half":
        save_model(m, sys.argv[3], half=True)
