"""Image helpers for scoring: load a style image, convert frames to/from tensors, resize.

Frames travel as uint8 numpy arrays [H, W, 3] (RGB, what the decoder gives); models work
on float tensors [B, 3, H, W] in [0, 1].

    python -m scoring.images STYLE.jpg      # prints the style image's size
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from scoring.events import BadInputError


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as uint8 RGB [H, W, 3]. Raises BadInputError with a readable reason."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"style image not found: {path}")
    try:
        with Image.open(path) as img:
            img.load()
            rgb = img.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise BadInputError(f"style image {path.name} cannot be read as an image: {exc}") from exc
    arr = np.asarray(rgb, dtype=np.uint8)
    if arr.shape[0] < 8 or arr.shape[1] < 8:
        raise BadInputError(f"style image {path.name} is too small ({arr.shape[1]}x{arr.shape[0]})")
    return arr


def to_tensor(frames: list[np.ndarray] | np.ndarray, device: torch.device | str = "cpu"
              ) -> torch.Tensor:
    """uint8 [H, W, 3] frames (list or [B, H, W, 3]) -> float [B, 3, H, W] in [0, 1]."""
    arr = np.stack(frames) if isinstance(frames, list) else frames
    if arr.ndim == 3:
        arr = arr[None]
    assert arr.ndim == 4 and arr.shape[-1] == 3 and arr.dtype == np.uint8, (arr.shape, arr.dtype)
    if not arr.flags.writeable or not arr.flags.c_contiguous:
        arr = np.array(arr)  # torch wants writable, contiguous memory
    t = torch.from_numpy(arr).to(device)
    return t.permute(0, 3, 1, 2).float().div_(255.0)


def to_frames(t: torch.Tensor) -> list[np.ndarray]:
    """float [B, 3, H, W] in [0, 1] -> list of uint8 [H, W, 3]."""
    assert t.dim() == 4 and t.shape[1] == 3, t.shape
    u8 = t.detach().float().clamp(0, 1).mul(255).round_().to(torch.uint8)
    arr = u8.permute(0, 2, 3, 1).contiguous().cpu().numpy()
    return list(arr)


def resize(t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize [B, C, H, W] to ``size`` = (h, w): antialiased bilinear down, bicubic up."""
    if tuple(t.shape[-2:]) == tuple(size):
        return t
    down = size[0] * size[1] < t.shape[-2] * t.shape[-1]
    if down:
        return F.interpolate(t, size=size, mode="bilinear", antialias=True, align_corners=False)
    return F.interpolate(t, size=size, mode="bicubic", align_corners=False).clamp_(0, 1)


def resize_long_side(img: np.ndarray, long_side: int) -> torch.Tensor:
    """uint8 [H, W, 3] -> float [1, 3, h, w] with max(h, w) == long_side."""
    h, w = img.shape[:2]
    s = long_side / max(h, w)
    return resize(to_tensor(img), (max(1, round(h * s)), max(1, round(w * s))))


if __name__ == "__main__":
    im = load_image(sys.argv[1])
    print(f"{sys.argv[1]}: {im.shape[1]}x{im.shape[0]}")
