"""The chunk task a job submits: each chunk after the first reads the previous chunk as its
lead-in, each chunk before the last cross-fades into its successor, and the settings turn the
lead-in, the temporal stage and the chroma step off."""

from __future__ import annotations

from shared.batch import BlobRef
from shared.jobs import WORK, chunk_blob, new_job_request
from shared.pipeline import chunk_task
from shared.settings import Settings
from shared.video import Chunk


def _task(settings: Settings, index: int, total: int = 3, model: str = "gatys"):
    req = new_job_request("clip.mp4", '"0x1"', "swirl", model, "2026-12-01T00:00:00Z")
    chunk = Chunk(index, index * 48, 48)
    return req, chunk_task(req, settings, chunk, 1, "swirl.jpg", total)


def _arg(command: list[str], flag: str) -> str | None:
    return command[command.index(flag) + 1] if flag in command else None


def test_middle_chunk_reads_the_previous_chunk_and_fades_into_the_next():
    req, task = _task(Settings(), 1)
    assert _arg(task.command, "--lead-in") == "lead_in.mkv"
    assert _arg(task.command, "--lead-in-frames") == str(Settings.lead_in_frames)
    assert _arg(task.command, "--lead-out-frames") == str(Settings.lead_in_frames)
    lead = [r for r in task.resource_files if r.path == "lead_in.mkv"]
    assert [r.blob for r in lead] == [BlobRef(WORK, chunk_blob(req.job_id, 0))]
    assert "--no-temporal" not in task.command
    assert task.frames == 48  # the lead-in is not counted as the chunk's frames


def test_first_and_last_chunks_have_no_neighbour_on_the_open_side():
    _, first = _task(Settings(), 0)
    assert "--lead-in" not in first.command and "--lead-out-frames" in first.command
    assert all(r.path != "lead_in.mkv" for r in first.resource_files)
    _, last = _task(Settings(), 2)
    assert "--lead-in" in last.command and "--lead-out-frames" not in last.command


def test_settings_turn_lead_in_and_temporal_stage_off():
    _, task = _task(Settings(lead_in_frames=0, temporal_stage=False), 1)
    assert "--lead-in" not in task.command and "--lead-out-frames" not in task.command
    assert "--no-temporal" in task.command and "--temporal-weight" not in task.command


def test_each_model_gets_its_own_temporal_weight_from_the_settings():
    # the fast model paints every frame afresh: a stronger blend than gatys' warm-started frames
    assert Settings().temporal_weight_fast > Settings().temporal_weight
    _, gatys = _task(Settings(), 1)
    assert float(_arg(gatys.command, "--temporal-weight")) == Settings.temporal_weight
    _, fast = _task(Settings(), 1, model="fast")
    assert float(_arg(fast.command, "--temporal-weight")) == Settings.temporal_weight_fast
    _, tuned = _task(Settings(temporal_weight_fast=0.5), 1, model="fast")
    assert _arg(tuned.command, "--temporal-weight") == "0.5"


def test_the_chroma_step_is_sent_to_every_model_and_can_be_turned_off():
    for model in ("gatys", "fast"):
        _, task = _task(Settings(), 1, model=model)
        assert float(_arg(task.command, "--chroma-sigma")) == Settings.chroma_sigma > 0
    _, off = _task(Settings(chroma_sigma=0), 1, model="fast")
    assert float(_arg(off.command, "--chroma-sigma")) == 0
