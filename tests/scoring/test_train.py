"""Training: a tiny CPU run lowers the loss, writes a loadable model, and resumes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from scoring.flicker import read_frames
from scoring.transformer_net import load_model
from tests.scoring.conftest import STYLE, run_scoring

TINY = ["--image-size", "32", "--frame-side", "64", "--batch-size", "2", "--channels", "8",
        "--res-blocks", "1", "--max-frames", "8", "--log-every", "5", "--lr", "0.003"]


def _steps(stdout: str) -> list[dict]:
    return [e for e in map(json.loads, stdout.splitlines()) if e["event"] == "step"]


def test_tiny_training_lowers_the_loss(small_clip: Path, tmp_path: Path):
    images = tmp_path / "images"
    images.mkdir()
    for i, f in enumerate(read_frames(small_clip, 0)[:3]):
        Image.fromarray(f).save(images / f"{i}.png")
    out = tmp_path / "m.pt"
    proc = run_scoring("train", "--style", str(STYLE), "--content", str(small_clip),
                       "--content", str(images), "--output", str(out), "--steps", "60", *TINY)
    assert proc.returncode == 0, proc.stderr
    steps = _steps(proc.stdout)
    assert steps[-1]["step"] == 60 and steps[-1]["steps"] == 60
    first, last = steps[0]["loss"], np.mean([s["loss"] for s in steps[-3:]])
    assert last < 0.7 * first, (first, last)
    net = load_model(out)
    assert net.cfg.channels == 8 and net.cfg.style == "swirl"


def test_training_resumes_from_its_checkpoint(small_clip: Path, tmp_path: Path):
    out = tmp_path / "m.pt"
    args = ["train", "--style", str(STYLE), "--content", str(small_clip), "--output", str(out),
            *TINY, "--checkpoint-every", "5"]
    assert run_scoring(*args, "--steps", "10").returncode == 0
    proc = run_scoring(*args, "--steps", "15", "--resume")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(x) for x in proc.stdout.splitlines()]
    assert events[0] == {"event": "resume", "step": 10, "steps": 15}
    assert [e["step"] for e in events if e["event"] == "step"][-1] == 15
