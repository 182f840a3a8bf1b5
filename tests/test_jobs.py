"""Names that reach blob paths and queries are validated; job ids are deterministic."""

from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path

import pytest

from shared.jobs import (
    InvalidName,
    make_job_id,
    new_job_request,
    output_names,
    validate_blob_name,
    validate_job_id,
    validate_style,
)
from shared.settings import Settings, settings_from_env

REPO = Path(__file__).resolve().parent.parent


def test_job_id_is_deterministic_per_blob_version_style_and_model():
    a = make_job_id("clip.mp4", '"0x8D1"', "swirl", "gatys")
    assert a == make_job_id("clip.mp4", "0x8D1", "swirl", "gatys")  # quotes do not matter
    assert a != make_job_id("clip.mp4", "0x8D2", "swirl", "gatys")  # a new upload
    assert a != make_job_id("clip.mp4", "0x8D1", "mosaic", "gatys")
    assert a.startswith("clip-") and validate_job_id(a) == a


def test_job_ids_from_hostile_names_are_still_safe():
    for name in ("../../etc/passwd", "ÜBER clip (final).MP4", "a" * 400 + ".mp4", "😀.mp4"):
        job_id = make_job_id(name, "e", "swirl", "gatys")
        assert re.fullmatch(r"[a-z0-9-]{1,48}", job_id), job_id


@pytest.mark.parametrize("bad", ["../x.mp4", "/abs.mp4", "a//b.mp4", "a\\b.mp4", "x\n.mp4",
                                 "", ".", "a/../b.mp4"])
def test_blob_names_with_traversal_or_control_characters_are_rejected(bad: str):
    with pytest.raises(InvalidName):
        validate_blob_name(bad)


@pytest.mark.parametrize("bad", ["Swirl", "my style", "x" * 41, "-x", "../x", ""])
def test_style_names_are_restricted(bad: str):
    with pytest.raises(InvalidName):
        validate_style(bad)


def test_output_follows_the_input_container():
    h = "0123456789abcdef"
    assert output_names("clips/holiday.MOV", "swirl", h) == (
        f"clips/holiday.swirl.{h}.mov", f"clips/holiday.swirl.{h}.preview.jpg")
    assert output_names("a.webm", "s", h)[0] == f"a.s.{h}.webm"
    assert output_names("a.avi", "s", h)[0] == f"a.s.{h}.mp4"  # containers we cannot mirror: mp4
    req = new_job_request("swirl/a.mkv", "e", "swirl", "fast", "2026-01-01T00:00:00Z")
    assert req.output == f"swirl/a.swirl.{req.job_id.rsplit('-', 1)[1]}.mkv"


def test_every_setting_is_documented_in_the_settings_example():
    example = json.loads((REPO / "local.settings.json.example").read_text())["Values"]
    names = {f.name.upper() for f in fields(Settings)} - {"STORAGE_CONNECTION_STRING",
                                                          "STORAGE_ACCOUNT_URL"}
    missing = sorted(n for n in names if n not in example and n != "BATCH_ACCOUNT_KEY")
    assert not missing, f"add to local.settings.json.example: {missing}"
    assert "STORAGE" in example


def test_settings_parse_and_reject_bad_values():
    s = settings_from_env({"FRAMES_PER_CHUNK": "24", "KEEP_WORK_ON_FAILURE": "no",
                           "STORAGE": "UseDevelopmentStorage=true"})
    assert s.frames_per_chunk == 24 and s.keep_work_on_failure is False
    with pytest.raises(ValueError, match="FRAMES_PER_CHUNK"):
        settings_from_env({"FRAMES_PER_CHUNK": "many"})
    with pytest.raises(ValueError, match="BATCH_BACKEND"):
        settings_from_env({"BATCH_BACKEND": "cloud"})
    with pytest.raises(ValueError, match="TEMPORAL_WEIGHT_FAST"):
        settings_from_env({"TEMPORAL_WEIGHT_FAST": "1"})  # a weight of 1 would freeze the picture
    with pytest.raises(ValueError, match="CHROMA_SIGMA"):
        settings_from_env({"CHROMA_SIGMA": "-1"})
    assert settings_from_env({"CHROMA_SIGMA": "0"}).chroma_sigma == 0  # 0 turns the step off
