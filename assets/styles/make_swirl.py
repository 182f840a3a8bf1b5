"""Generate the bundled default style image ``swirl.jpg``: bold, swirling brush strokes.

No painting could be shipped (nothing may be downloaded), so the default style is painted
procedurally: thousands of thick, tapered strokes follow a flow field made of a few vortices,
coloured from a bold palette by a smooth region map, with dark edges like impasto. The result
is deterministic (fixed seed). Needs numpy and Pillow only.

    python assets/styles/make_swirl.py            # writes assets/styles/swirl.jpg
    python assets/styles/make_swirl.py --size 768 --output /tmp/swirl.jpg
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# Deep night blues, ultramarine, cobalt, teal, cadmium yellow, orange, cream (RGB).
PALETTE = np.array([
    (16, 28, 74), (32, 64, 148), (58, 110, 196), (40, 140, 150),
    (236, 196, 48), (232, 128, 36), (246, 232, 180), (110, 160, 220),
], dtype=np.float64)


@dataclass
class SwirlConfig:
    size: int = 512
    strokes: int = 9000
    seed: int = 7
    vortices: int = 7
    stroke_len: int = 14  # points per stroke
    step: float = 2.2  # pixels between points


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Bicubic-upsampled random grid in [0, 1], shape [size, size]."""
    grid = (rng.random((cells, cells)) * 255).astype(np.uint8)
    img = Image.fromarray(grid).resize((size, size), Image.BICUBIC)
    return np.asarray(img, dtype=np.float64) / 255.0


def _flow(cfg: SwirlConfig, rng: np.random.Generator):
    """A function (x, y) -> unit direction from a sum of vortices plus a gentle drift."""
    centres = rng.random((cfg.vortices, 2)) * cfg.size
    spins = rng.choice([-1.0, 1.0], cfg.vortices) * rng.uniform(0.6, 1.4, cfg.vortices)
    radii = rng.uniform(0.12, 0.3, cfg.vortices) * cfg.size

    def direction(x: float, y: float) -> tuple[float, float]:
        dx, dy = 1.0, 0.25  # drift
        for (cx, cy), s, r in zip(centres, spins, radii):
            rx, ry = x - cx, y - cy
            d2 = rx * rx + ry * ry
            w = s * np.exp(-d2 / (2 * r * r)) * 4.0
            dx += -ry / (np.sqrt(d2) + 1e-6) * w
            dy += rx / (np.sqrt(d2) + 1e-6) * w
        n = np.hypot(dx, dy) + 1e-9
        return dx / n, dy / n

    return direction


def make_swirl(cfg: SwirlConfig) -> Image.Image:
    rng = np.random.default_rng(cfg.seed)
    size = cfg.size
    region = _smooth_noise(rng, size, 5)  # which palette colour dominates where
    shade = _smooth_noise(rng, size, 11)
    direction = _flow(cfg, rng)

    base = PALETTE[(region * (len(PALETTE) - 1)).astype(int)]
    img = Image.fromarray(base.astype(np.uint8)).filter(ImageFilter.GaussianBlur(8))
    draw = ImageDraw.Draw(img)

    for _ in range(cfg.strokes):
        x, y = rng.random(2) * size
        xi, yi = int(min(x, size - 1)), int(min(y, size - 1))
        k = int(region[yi, xi] * (len(PALETTE) - 1) + rng.normal(0, 0.7))
        colour = PALETTE[int(np.clip(k, 0, len(PALETTE) - 1))]
        colour = np.clip(colour * (0.75 + 0.5 * shade[yi, xi]) + rng.normal(0, 14, 3), 0, 255)
        width = int(rng.integers(3, 9))
        points = [(x, y)]
        for _ in range(cfg.stroke_len):
            dx, dy = direction(x, y)
            x, y = x + dx * cfg.step * width / 3, y + dy * cfg.step * width / 3
            points.append((x, y))
        dark = tuple(int(c * 0.35) for c in colour)
        draw.line(points, fill=dark, width=width + 2, joint="curve")
        draw.line(points, fill=tuple(int(c) for c in colour), width=width, joint="curve")
    return img.filter(ImageFilter.UnsharpMask(radius=2, percent=80))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--size", type=int, default=SwirlConfig.size)
    parser.add_argument("--seed", type=int, default=SwirlConfig.seed)
    parser.add_argument("--output", default=str(Path(__file__).with_name("swirl.jpg")))
    args = parser.parse_args()
    cfg = SwirlConfig(size=args.size, seed=args.seed, strokes=int(9000 * (args.size / 512) ** 2))
    make_swirl(cfg).save(args.output, quality=88)
    print(args.output)


if __name__ == "__main__":
    main()
