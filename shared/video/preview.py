"""Preview: a before/after JPEG of the same frame of the input and of the result, shown as
a viewer would (pixel aspect and rotation applied)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from shared.video.common import Source, opened
from shared.video.probing import Probe

if TYPE_CHECKING:
    from PIL.Image import Image


def first_frame_image(src: Source, p: Probe | None = None) -> Image:
    """First frame of a video as a PIL image, shown as a viewer would (aspect, rotation)."""
    with opened(src) as container:
        frame = next(container.decode(container.streams.video[0]))
        image = frame.to_image()
    if p is not None:
        num, den = (int(x) for x in p.sar.split(":"))
        if num and den and num != den:
            image = image.resize((max(1, round(image.width * num / den)), image.height))
        if p.rotation:
            image = image.rotate(p.rotation, expand=True)  # both counter-clockwise
    return image


def make_preview(before: Source, after: Source, p: Probe, output: str | os.PathLike[str],
                 max_width: int = 1600) -> None:
    """A before/after JPEG: the same frame of the input and of the result, side by side."""
    from PIL import Image, ImageDraw

    left, right = first_frame_image(before, p), first_frame_image(after, p)
    scale = min(1.0, max_width / (left.width * 2 + 8))
    size = (max(1, round(left.width * scale)), max(1, round(left.height * scale)))
    left, right = left.resize(size), right.resize(size)
    canvas = Image.new("RGB", (size[0] * 2 + 8, size[1]), "white")
    canvas.paste(left, (0, 0))
    canvas.paste(right, (size[0] + 8, 0))
    draw = ImageDraw.Draw(canvas)
    for x, label in ((6, "before"), (size[0] + 14, "after")):
        draw.rectangle((x - 2, 4, x + 7 * len(label) + 4, 18), fill="black")
        draw.text((x + 1, 5), label, fill="white")
    tmp = Path(f"{output}.part")
    canvas.save(tmp, format="JPEG", quality=88)
    os.replace(tmp, output)
