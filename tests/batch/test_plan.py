"""Chunk sizing and cost estimates (shared/plan.py) and ``stylebatch plan``.

    .venv/bin/pytest tests/batch/test_plan.py -q
"""

from __future__ import annotations

import argparse
import json
from fractions import Fraction

import av
import numpy as np
import pytest

from shared import plan
from shared.contract import working_size
from shared.plan import (
    DEVICES,
    MAX_TASK_SECONDS,
    MIN_TASK_SECONDS,
    PRICE_TABLE_DATE,
    choose_chunk_frames,
    estimate,
    estimate_for_job,
    frame_cost,
)
from shared.settings import Settings
from stylebatch import plan_cmd

AZURE_AUTO = Settings(batch_backend="azure", chunk_target_seconds=120.0)


def test_precedence_explicit_then_auto_then_fixed():
    fixed = Settings(frames_per_chunk=48)
    assert choose_chunk_frames(1440, 1920, 1080, "gatys", fixed) == 48
    auto = choose_chunk_frames(1440, 1920, 1080, "gatys", AZURE_AUTO)
    assert auto != 48
    assert choose_chunk_frames(1440, 1920, 1080, "gatys", AZURE_AUTO, explicit=100) == 100


def test_max_chunks_bounds_the_task_count_whatever_the_rule():
    s = Settings(frames_per_chunk=10, max_chunks=50)
    assert choose_chunk_frames(100_000, 640, 360, "gatys", s) == 2000
    assert choose_chunk_frames(100_000, 640, 360, "gatys", s, explicit=5) == 2000
    auto = Settings(batch_backend="azure", chunk_target_seconds=120.0, max_chunks=50)
    n = choose_chunk_frames(100_000, 640, 360, "gatys", auto)
    assert -(-100_000 // n) <= 50
    assert choose_chunk_frames(10, 640, 360, "gatys", Settings(frames_per_chunk=48)) == 10


@pytest.mark.parametrize("vm", ["Standard_NC4as_T4_v3", "Standard_NC24ads_A100_v4"])
@pytest.mark.parametrize("model", ["gatys", "fast"])
@pytest.mark.parametrize("size", [(1920, 1080), (1280, 720), (640, 360)])
def test_auto_sizing_keeps_tasks_within_one_to_three_gpu_minutes(vm, model, size):
    frames = 60 * 60 * 24  # an hour at 24 fps: long enough for the target to decide
    s = Settings(batch_backend="azure", chunk_target_seconds=120.0, batch_vm_size=vm)
    n = choose_chunk_frames(frames, *size, model, s)
    seconds = frame_cost(model, *size, vm, s).task_seconds(n)
    assert MIN_TASK_SECONDS <= seconds <= MAX_TASK_SECONDS


def test_short_video_is_spread_over_the_pool_but_not_below_a_minute():
    s = Settings(batch_backend="azure", chunk_target_seconds=120.0, batch_max_nodes=4)
    n = choose_chunk_frames(2400, 1920, 1080, "gatys", s)
    assert -(-2400 // n) == 4  # one chunk per node
    tiny = choose_chunk_frames(200, 1920, 1080, "gatys", s)
    assert tiny == 200  # 200 frames is under a minute of work: one task, not four tiny ones


def test_chunks_fill_whole_waves_of_the_pool():
    s = Settings(batch_backend="azure", chunk_target_seconds=120.0, batch_max_nodes=4,
                 batch_vm_size="Standard_NC24ads_A100_v4")
    n = choose_chunk_frames(14400, 1280, 720, "fast", s)
    assert -(-14400 // n) % 4 == 0


def test_measured_seconds_per_frame_wins_over_the_table():
    s = Settings(batch_backend="azure", chunk_target_seconds=120.0, seconds_per_frame=1.0)
    cost = frame_cost("gatys", 1920, 1080, s.batch_vm_size, s)
    assert cost.frame_s == 1.0 and cost.source == "setting"
    assert 60 <= choose_chunk_frames(20_000, 1920, 1080, "gatys", s) <= 120


def test_working_size_and_unknown_vm():
    assert working_size(1920, 1080, 320) == (320, 180)
    assert working_size(200, 100, 320) == (200, 100)
    assert working_size(1080, 1920, 0) == (1080, 1920)
    with pytest.raises(ValueError, match="unknown VM size"):
        estimate(100, 640, 360, "gatys", 1, "Standard_Imaginary", False)


def test_estimate_accounts_for_startup_cost_and_spot():
    args = (14400, 1920, 1080, "gatys")
    dedicated = estimate(*args, 4, "Standard_NC4as_T4_v3", False, settings=AZURE_AUTO)
    spot = estimate(*args, 4, "Standard_NC4as_T4_v3", True, settings=AZURE_AUTO)
    more = estimate(*args, 8, "Standard_NC4as_T4_v3", False, settings=AZURE_AUTO)
    assert spot.cost_usd < dedicated.cost_usd
    assert more.wall_minutes < dedicated.wall_minutes
    startup = plan.AUTOSCALE_REACTION_MIN + DEVICES["Standard_NC4as_T4_v3"].node_startup_min
    assert dedicated.wall_minutes >= startup
    assert dedicated.gpu_minutes < dedicated.node_minutes  # boot and idle tail are billed too
    assert dedicated.chunks * dedicated.frames_per_chunk >= 14400
    assert dedicated.price_table_date == PRICE_TABLE_DATE
    assert dedicated.spf_source == "estimate" and any("estimate" in n for n in dedicated.notes)
    status = dedicated.to_status()
    assert set(status) >= {"chunks", "gpu_minutes", "wall_minutes", "cost_usd",
                           "price_table_date"}
    assert len(json.dumps(status)) < 400  # it rides in the job status (well under 16 KB)
    fast = estimate(*args[:3], "fast", 4, "Standard_NC4as_T4_v3", False, settings=AZURE_AUTO)
    assert fast.train_minutes > 0


def test_estimate_for_job_uses_the_configured_pool_or_this_machine():
    azure = estimate_for_job(1440, 1280, 720, "gatys", Settings(
        batch_backend="azure", batch_vm_size="Standard_NC6s_v3", batch_max_nodes=2,
        batch_spot=True))
    assert (azure.vm_size, azure.nodes <= 2, azure.spot) == ("Standard_NC6s_v3", True, True)
    local = estimate_for_job(1440, 1280, 720, "gatys", Settings())
    assert local.vm_size == "local" and local.cost_usd == 0 and local.spf_source == "measured"


# --------------------------------------------------------------------------------------------
# stylebatch plan


def _tiny_video(path, frames=24, size=(64, 48)) -> None:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=Fraction(24))
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            img = np.full((size[1], size[0], 3), i * 10 % 255, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def test_plan_command_probes_a_video(tmp_path, capsys):
    video = tmp_path / "clip.mp4"
    _tiny_video(video)
    assert plan_cmd.main([str(video), "--nodes", "2", "--vm-size", "Standard_NC4as_T4_v3",
                          "--spot"]) == 0
    out = capsys.readouterr().out
    assert f"{video}: 24 frames, 64x48" in out
    for word in ("chunks:", "GPU time:", "wall time:", "cost:", "Spot", PRICE_TABLE_DATE):
        assert word in out


def test_plan_command_json_for_a_hypothetical_video(capsys):
    assert plan_cmd.main(["--frames", "14400", "--size", "1920x1080", "--model", "fast",
                          "--target-seconds", "120", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["frames"] == 14400 and data["model"] == "fast"
    assert data["chunks"] * data["frames_per_chunk"] >= 14400
    assert data["train_minutes"] > 0 and data["cost_usd"] > 0


def test_plan_command_errors_and_registration(tmp_path, capsys):
    assert plan_cmd.main(["--frames", "10"]) == 2
    assert "--frames and --size" in capsys.readouterr().err
    bad = tmp_path / "not-a-video.mp4"
    bad.write_bytes(b"hello")
    assert plan_cmd.main([str(bad)]) == 2
    assert "not-a-video.mp4" in capsys.readouterr().err
    root = argparse.ArgumentParser(prog="stylebatch")
    sub = root.add_subparsers(dest="command")
    plan_cmd.add_parser(sub)
    args = root.parse_args(["plan", "--frames", "100", "--size", "640x360", "--dedicated"])
    assert args.handler is plan_cmd.run and args.spot is False
    assert "default" in sub.choices["plan"].format_help()


def test_chunk_sets_travel_as_ranges_whatever_their_size():
    from shared.plan import chunk_ranges, expand_ranges

    assert chunk_ranges([7, 0, 1, 2, 9, 8]) == [[0, 2], [7, 9]]
    assert chunk_ranges([]) == [] and expand_ranges([]) == []
    everything = list(range(10_000))
    assert chunk_ranges(everything) == [[0, 9_999]]
    assert expand_ranges(chunk_ranges(everything)) == everything
    scattered = [3, 5, 6, 7, 100, 9_999]
    assert expand_ranges(chunk_ranges(scattered)) == scattered


def test_the_eta_work_left_is_the_busiest_slot_not_the_average():
    from shared.plan import remaining_makespan

    # 4 slots, two tasks running with 10 and 30 frames left, six pending of 40: the pending
    # ones start as slots free up (0, 0, 10, 30, then 40, 40 ...), so the last ends at 80.
    assert remaining_makespan([10, 30], [40] * 6, 4) == 80
    # The average would say (10 + 30 + 240) / 4 = 70: a ragged last wave is slower.
    assert remaining_makespan([], [40] * 5, 4) == 80
    assert remaining_makespan([], [40] * 4, 4) == 40
    # More running tasks than the slots seen so far: each keeps its own slot.
    assert remaining_makespan([5, 5, 5], [], 1) == 5
    assert remaining_makespan([], [], 3) == 0
