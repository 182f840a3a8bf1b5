"""The fast model: any frame size comes back exactly, model files round-trip, the chunk task
runs end to end with it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from scoring.flicker import read_frames
from scoring.transformer_net import NetConfig, TransformerNet, load_model, save_model
from shared.video import frame_timestamps
from tests.scoring.conftest import REPO, STYLE, make_clip, run_scoring

TINY = NetConfig(channels=8, res_blocks=1)


@pytest.mark.parametrize("hw", [(1, 1), (2, 3), (5, 7), (17, 31), (90, 161), (30, 50), (64, 64)])
def test_any_frame_size_comes_back_the_same(hw):
    torch.manual_seed(0)
    net = TransformerNet(TINY).eval()
    x = torch.rand(2, 3, *hw)
    with torch.inference_mode():
        y = net(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all() and y.min() >= 0 and y.max() <= 1


def test_saved_and_reloaded_model_gives_identical_output(tmp_path: Path):
    torch.manual_seed(1)
    net = TransformerNet(NetConfig(channels=8, res_blocks=2, style="swirl")).eval()
    path = tmp_path / "m.pt"
    save_model(net, path)
    again = load_model(path)
    assert again.cfg == net.cfg
    x = torch.rand(1, 3, 37, 53)
    with torch.inference_mode():
        assert torch.equal(net(x), again(x))
    # only plain data inside: loads with weights_only=True
    blob = torch.load(path, weights_only=True)
    assert set(blob) == {"format", "config", "state_dict"}


def test_a_non_model_file_is_refused(tmp_path: Path):
    bad = tmp_path / "bad.pt"
    torch.save({"hello": torch.zeros(1)}, bad)
    with pytest.raises(ValueError):
        load_model(bad)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    torch.manual_seed(2)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_model(TransformerNet(TINY), path)
    return path


def test_stylize_fast_end_to_end(small_clip: Path, tiny_model: Path, tmp_path: Path):
    out = tmp_path / "out.mkv"
    proc = run_scoring("stylize", "--input", str(small_clip), "--output", str(out),
                       "--style", str(STYLE), "--model", "fast", "--model-file", str(tiny_model),
                       "--max-side", "0", "--batch-size", "4")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(x) for x in proc.stdout.splitlines()]
    assert [e["index"] for e in events if e["event"] == "frame"] == list(range(12))
    assert events[-1]["event"] == "done" and events[-1]["frames"] == 12
    assert frame_timestamps(out) == frame_timestamps(small_clip)
    src, dst = read_frames(small_clip, 0), read_frames(out, 0)
    assert dst[0].shape == src[0].shape
    assert np.abs(dst[0].astype(float) - src[0].astype(float)).mean() > 10


def test_stylize_fast_odd_size(tiny_model: Path, tmp_path: Path):
    clip = make_clip(tmp_path / "odd.mkv", 75, 43, 5, pix_fmt="yuv444p")
    out = tmp_path / "out.mkv"
    proc = run_scoring("stylize", "--input", str(clip), "--output", str(out), "--model", "fast",
                       "--model-file", str(tiny_model), "--max-side", "40", "--batch-size", "3")
    assert proc.returncode == 0, proc.stderr
    frames = read_frames(out, 0)
    assert len(frames) == 5 and frames[0].shape == (43, 75, 3)


def test_missing_model_file_is_bad_input(small_clip: Path, tmp_path: Path):
    proc = run_scoring("stylize", "--input", str(small_clip), "--output", str(tmp_path / "o.mkv"),
                       "--model", "fast", "--model-file", str(tmp_path / "none.pt"))
    assert proc.returncode == 2
    assert json.loads(proc.stderr.strip().splitlines()[-1])["bad_input"] is True


def test_bundled_default_model_loads():
    path = REPO / "assets" / "models" / "swirl.pt"
    if not path.exists():
        pytest.skip("no bundled model yet")
    assert path.stat().st_size <= 10 * 1024 * 1024
    net = load_model(path)
    with torch.inference_mode():
        y = net(torch.rand(1, 3, 45, 80))
    assert y.shape == (1, 3, 45, 80)
