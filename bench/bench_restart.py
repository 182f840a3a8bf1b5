"""Measure what a user sees when `stylebatch serve` is killed, restarted, cancelled, stopped.

    python bench/bench_restart.py          # a few minutes on 2 cores; prints one line per figure

With a small clip (bigbuckbunny cut to 1.6 s at 128x72, 5 chunks of 8 frames) and the bundled
fast model at 32 px, through real `stylebatch serve` / `stylebatch run` subprocesses:
- `kill -9` of serve mid-scoring: how long until Azurite, the chunk tasks and ffmpeg are gone;
- the restart: time until it serves again, whether the job resumed, how long until it completes;
- `DELETE /api/jobs/{id}` mid-scoring: how long it takes, what is left in work/<job>/ right after
  and a little later, the status it leaves, and a restart through `POST /api/jobs`;
- SIGTERM of serve: time to exit, time until its children are gone, temporary folders left;
- Ctrl-C of `stylebatch run` mid-job: time to exit and what it prints.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from azure.storage.blob import BlobServiceClient  # noqa: E402

from shared.settings import STORAGE_SETTING_NAMES  # noqa: E402
from tests.conftest import BBB, ffmpeg  # noqa: E402
from tests.test_serve_restart import Serve, _done, _marked, _scoring, _upload, _wait  # noqa: E402


def _work_blobs(storage: str, job_id: str) -> int:
    container = BlobServiceClient.from_connection_string(storage).get_container_client("work")
    return len(list(container.list_blobs(name_starts_with=f"{job_id}/")))


def _http(serve: Serve, method: str, path: str, body: dict | None = None) -> tuple[int, str]:
    req = urllib.request.Request(f"http://127.0.0.1:{serve.port}/api/{path}", method=method,
                                 data=json.dumps(body).encode() if body else None,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as r:
        return r.status, r.read().decode()


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-restart-"))
    clip = root / "clip.mp4"
    ffmpeg("-i", str(BBB), "-t", "1.6", "-vf", "scale=128:72", "-c:v", "libx264", "-preset",
           "veryfast", "-g", "1000", "-c:a", "copy", str(clip))
    data, tmp = root / "data", root / "tmp"
    tmp.mkdir()
    mark = uuid.uuid4().hex
    os.chdir(REPO)

    serve = Serve(data, tmp, mark)
    _upload(serve.storage, clip, "one.mp4")
    one = _wait(lambda: _scoring(serve), 600, "job one scoring")
    before = len(_marked(mark))
    t = time.monotonic()
    serve.proc.kill()
    serve.proc.wait()
    _wait(lambda: not _marked(mark), 60, "children to exit")
    print(f"kill -9 mid-scoring: {before} processes (serve, Azurite, tasks) -> none "
          f"{time.monotonic() - t:.2f} s later")

    t = time.monotonic()
    serve = Serve(data, tmp, mark)
    print(f"restart: serving after {time.monotonic() - t:.1f} s; "
          f"{[ln for ln in serve.banner if 'resuming' in ln] or 'nothing resumed'}; "
          f"GET /api/jobs/{one}: {serve.get(f'jobs/{one}')['state']}")
    t = time.monotonic()
    final = _wait(lambda: _done(serve, one), 900, "job one to complete")
    print(f"resumed job completed {time.monotonic() - t:.0f} s after the restart, frames "
          f"{final['frames']['done']}/{final['frames']['total']}; listed: "
          f"{one in {j['id'] for j in serve.get('jobs')['jobs']}}")

    _upload(serve.storage, clip, "two.mp4")
    two = _wait(lambda: _scoring(serve, besides=one), 600, "job two scoring")
    t = time.monotonic()
    code, _ = _http(serve, "DELETE", f"jobs/{two}")
    took = time.monotonic() - t
    right_after = _work_blobs(serve.storage, two)
    time.sleep(3)
    status = serve.get(f"jobs/{two}")
    print(f"DELETE mid-scoring: {code} in {took:.2f} s; work/{two}/ blobs right after: "
          f"{right_after}, 3 s later: {_work_blobs(serve.storage, two)}; state "
          f"{status['state']}, chunks {status['chunks']}")
    code, body = _http(serve, "POST", "jobs", {"blob": "two.mp4"})
    restarted = _wait(lambda: _done(serve, two), 900, "job two to complete")
    print(f"POST after cancel: {code} {body}; then {restarted['state']} with "
          f"{restarted['frames']['done']}/{restarted['frames']['total']} frames")

    t = time.monotonic()
    serve.proc.send_signal(signal.SIGTERM)
    rc = serve.proc.wait(120)
    exited = time.monotonic() - t
    _wait(lambda: not _marked(mark), 60, "children to exit")
    print(f"SIGTERM: exit {rc} after {exited:.2f} s, children gone after "
          f"{time.monotonic() - t:.2f} s; temporary folders left: "
          f"{[p.name for p in tmp.iterdir()]}")

    env = {k: v for k, v in os.environ.items() if k not in STORAGE_SETTING_NAMES}
    env.update(STYLEBATCH_TEST_MARK=mark, TMPDIR=str(tmp), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "stylebatch.cli", "run", str(clip), "--model", "fast",
         "--max-side", "32", "--chunk-frames", "8", "-o", str(root / "out.mp4")],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:  # type: ignore[union-attr]
        if "scoring" in line:
            break
    t = time.monotonic()
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=120)[1]
    print(f"Ctrl-C of `stylebatch run` mid-scoring: exit {proc.returncode} after "
          f"{time.monotonic() - t:.2f} s, printed {[ln for ln in rest.splitlines() if ln]}")


if __name__ == "__main__":
    main()
