"""Style-transfer quality figures: content loss and style loss of stylized frames.

Both are measured on one fixed VGG19 (``scoring.vgg``, max pooling), the same way for every
model, so ``fast`` and ``gatys`` outputs of the same frames can be compared:
- content loss: ``relu4_2`` features of the output vs the source frame, mean squared error
  divided by the source features' energy (0 = the source's structure, unchanged);
- style loss: Gram matrices at ``relu1_1``..``relu4_1`` vs the style image's (scaled so its
  long side is the frame's long side), each MSE divided by the style Gram's energy, summed.
Lower is better for both; they pull against each other.

    python -m scoring.quality STYLE.jpg SOURCE.png OUTPUT.png
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch

from scoring.images import load_image, resize_long_side, to_tensor
from scoring.vgg import VGGFeatures, gram, preprocess

CONTENT_LAYER = "relu4_2"
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")


@lru_cache(maxsize=1)
def _vgg() -> VGGFeatures:
    return VGGFeatures((CONTENT_LAYER,) + STYLE_LAYERS)


def quality(outputs: Sequence[np.ndarray], sources: Sequence[np.ndarray],
            style: np.ndarray) -> dict[str, float]:
    """Mean content and style loss over frame pairs (uint8 [H, W, 3], same size per pair)."""
    assert len(outputs) == len(sources) and len(outputs) > 0
    vgg = _vgg()
    grams: dict[tuple[int, int], dict[str, torch.Tensor]] = {}
    content, styl = [], []
    with torch.inference_mode():
        for out, src in zip(outputs, sources):
            assert out.shape == src.shape, (out.shape, src.shape)
            h, w = src.shape[:2]
            if (h, w) not in grams:
                s = vgg(preprocess(resize_long_side(style, max(h, w))))
                grams[(h, w)] = {n: gram(s[n]) for n in STYLE_LAYERS}
            fo = vgg(preprocess(to_tensor(out)))
            fs = vgg(preprocess(to_tensor(src)))
            t = fs[CONTENT_LAYER]
            content.append(float((fo[CONTENT_LAYER] - t).pow(2).mean() / t.pow(2).mean()))
            styl.append(float(sum((gram(fo[n]) - g).pow(2).mean() / g.pow(2).mean()
                                  for n, g in grams[(h, w)].items())))
    return {"content": float(np.mean(content)), "style": float(np.mean(styl))}


if __name__ == "__main__":
    st, src, out = (load_image(p) for p in sys.argv[1:4])
    print(quality([out], [src], st))
