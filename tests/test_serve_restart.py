"""`stylebatch serve` as a user runs it, killed and restarted: jobs survive `kill -9` and SIGTERM,
the job list survives, finished jobs are never run again, no child process outlives serve, one
Azurite per data folder, and no temporary folder is left behind; `stylebatch run` stops at once
on Ctrl-C with one line.

Real processes throughout: serve (and its Azurite and chunk tasks) as subprocesses, driven over
HTTP and through blob storage, with the bundled fast model at a tiny size.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.settings import STORAGE_SETTING_NAMES
from stylebatch.azurite import free_port

REPO = Path(__file__).resolve().parent.parent


def _marked(mark: str) -> list[int]:
    """Processes whose environment carries ``mark`` (children inherit it)."""
    found = []
    needle = f"STYLEBATCH_TEST_MARK={mark}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                if needle in fh.read().split(b"\0"):
                    found.append(int(entry))
        except OSError:
            continue
    return found


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(f"timed out waiting for {what}")


class Serve:
    """One `stylebatch serve` subprocess on a data folder."""

    def __init__(self, data: Path, tmp: Path, mark: str):
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if k not in STORAGE_SETTING_NAMES}
        env.update(STYLEBATCH_TEST_MARK=mark, TMPDIR=str(tmp), PYTHONUNBUFFERED="1",
                   OUTPUT_PRESET="veryfast", LOCAL_BATCH_SLOTS="2")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stylebatch.cli", "serve", "--data", str(data),
             "--port", str(self.port), "--poll-blobs", "0.5", "--poll", "1",
             "--chunk-frames", "8", "--max-side", "32"],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.banner: list[str] = []
        for line in self.proc.stdout:  # type: ignore[union-attr]
            self.banner.append(line.rstrip("\n"))
            if line.startswith("upload a video"):
                break
        else:
            raise RuntimeError("serve did not start: " + self.proc.stderr.read())  # type: ignore[union-attr]
        self.storage = next(ln.split(": ", 1)[1] for ln in self.banner
                            if ln.startswith("storage: "))

    def get(self, path: str) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/{path}",
                                    timeout=30) as r:
            return json.loads(r.read())

    def jobs(self) -> dict[str, dict[str, Any]]:
        return {j["id"]: j for j in self.get("jobs")["jobs"]}


@pytest.fixture
def serve_env(tmp_path: Path) -> Iterator[tuple[Path, Path, str, list[Serve]]]:
    data, tmp = tmp_path / "data", tmp_path / "tmp"
    tmp.mkdir()
    mark = uuid.uuid4().hex
    started: list[Serve] = []
    yield data, tmp, mark, started
    for s in started:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()
    for pid in _marked(mark):  # never leave anything behind, whatever failed
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _upload(storage: str, path: Path, name: str) -> None:
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(storage)
    with open(path, "rb") as fh:
        service.get_blob_client("incoming", name).upload_blob(
            fh, overwrite=True, metadata={"style": "swirl", "model": "fast"})


def _etag(storage: str, output: str) -> str:
    from azure.storage.blob import BlobServiceClient

    container, name = output.split("/", 1)
    service = BlobServiceClient.from_connection_string(storage)
    return service.get_blob_client(container, name).get_blob_properties().etag


def _scoring(serve: Serve, *, besides: str = "") -> str | None:
    """The id of a job that is scoring with a chunk done (the moment to pull the plug)."""
    for j in serve.jobs().values():
        if j["id"] != besides and j["state"] == "scoring" and j["chunks"]["done"] >= 1:
            return j["id"]
    return None


def _done(serve: Serve, job_id: str) -> dict[str, Any] | None:
    job = serve.get(f"jobs/{job_id}")
    assert job["state"] not in ("failed", "cancelled"), job
    return job if job["state"] == "completed" else None


def test_serve_resumes_jobs_after_kill_9_and_sigterm_and_keeps_the_list(serve_env, clips):
    data, tmp, mark, started = serve_env
    clip = clips["bbb_small"]  # 40 frames: 5 chunks of 8

    # 1. kill -9 in the middle of scoring.
    first = Serve(data, tmp, mark)
    started.append(first)
    _upload(first.storage, clip, "one.mp4")
    one = _wait(lambda: _scoring(first), 240, "job one scoring")
    first_tmp = [p.name for p in tmp.iterdir()
                 if p.name.startswith(f"stylebatch-{first.proc.pid}-")]
    assert first_tmp  # its private temporary folder
    first.proc.kill()
    first.proc.wait()
    # Azurite, the chunk tasks and their ffmpeg all die with serve.
    _wait(lambda: not _marked(mark), 30, "serve's children to exit")

    # 2. Restart: the job resumes from where it was and completes; a second serve on the same
    #    data folder is refused while this one runs.
    second = Serve(data, tmp, mark)
    started.append(second)
    assert any(one in line and "resuming" in line for line in second.banner), second.banner
    assert not any(p.name in first_tmp for p in tmp.iterdir())  # the dead one's folder: gone
    rival = subprocess.run([sys.executable, "-m", "stylebatch.cli", "serve", "--data", str(data),
                            "--port", str(free_port())], cwd=REPO, capture_output=True,
                           text=True, timeout=120,
                           env={k: v for k, v in os.environ.items()
                                if k not in STORAGE_SETTING_NAMES})
    assert rival.returncode != 0 and "in use" in rival.stderr
    assert "Traceback" not in rival.stderr
    final_one = _wait(lambda: _done(second, one), 300, "job one to complete")
    assert final_one["frames"]["done"] == final_one["frames"]["total"] == 40
    output_etag = _etag(second.storage, final_one["output"])

    # 3. A second job, stopped by SIGTERM while scoring; restart; it completes too.
    _upload(second.storage, clip, "two.mp4")
    two = _wait(lambda: _scoring(second, besides=one), 240, "job two scoring")
    second.proc.send_signal(signal.SIGTERM)
    assert second.proc.wait(60) == 128 + signal.SIGTERM
    _wait(lambda: not _marked(mark), 30, "serve's children to exit")
    assert not [p for p in tmp.iterdir() if p.name.startswith(f"stylebatch-{second.proc.pid}-")]

    third = Serve(data, tmp, mark)
    started.append(third)
    final_two = _wait(lambda: _done(third, two), 300, "job two to complete")
    assert final_two["frames"]["done"] == 40

    # 4. The list kept both; the finished job was not run again (its output is untouched),
    #    although its blob was still in `incoming` at every start.
    listed = third.jobs()
    assert listed[one]["state"] == listed[two]["state"] == "completed"
    assert listed[one]["updated"] == final_one["updated"]
    assert _etag(third.storage, final_one["output"]) == output_etag

    third.proc.send_signal(signal.SIGTERM)
    third.proc.wait(60)
    _wait(lambda: not _marked(mark), 30, "serve's children to exit")
    assert not [p for p in tmp.iterdir() if p.name.startswith("stylebatch-")]


def test_ctrl_c_stops_run_at_once_with_one_line(tmp_path, clips):
    mark = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if k not in STORAGE_SETTING_NAMES}
    env.update(STYLEBATCH_TEST_MARK=mark, TMPDIR=str(tmp_path), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "stylebatch.cli", "run", str(clips["bbb_small"]), "--model",
         "fast", "--max-side", "32", "--chunk-frames", "8", "-o", str(tmp_path / "out.mp4")],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in proc.stderr:  # type: ignore[union-attr]
            lines.append(line)
            if "scoring" in line or "splitting" in line:  # activities and tasks are running
                break
        asked = time.monotonic()
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=30)[1]
        took = time.monotonic() - asked
    finally:
        if proc.poll() is None:
            proc.kill()
    print(f"Ctrl-C to exit: {took:.2f} s")
    assert proc.returncode == 130
    assert "Traceback" not in rest
    said = [ln for ln in rest.splitlines() if ln.strip() and "%" not in ln]
    assert said == ["stylebatch run: interrupted"], rest
    _wait(lambda: not _marked(mark), 30, "run's children to exit")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("stylebatch-")]
