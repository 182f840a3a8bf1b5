"""The node side of the pool, run here as a node would: the start task leaves a launcher and a
venv that tasks can use but not change, and everything a node installs is pinned with hashes
(scoring/requirements.lock, the uv pin in the start task)."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
BATCH = REPO / "infra" / "batch"
LOCK = REPO / "scoring" / "requirements.lock"


def _lock_pins() -> dict[str, tuple[str, list[str]]]:
    text = re.sub(r"\\\n\s*", " ", LOCK.read_text())
    pins = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        spec, *hashes = line.split(" --hash=")
        name, _, version = spec.strip().partition("==")
        pins[name.lower().replace("_", "-")] = (version, hashes)
    return pins


def test_every_locked_package_is_pinned_with_a_sha256():
    pins = _lock_pins()
    assert len(pins) > 10  # torch brings its CUDA libraries
    for name, (version, hashes) in pins.items():
        assert re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", version), name
        assert hashes and all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in hashes), name


def test_the_lock_is_exactly_scoring_requirements():
    pins = _lock_pins()
    names = set()
    for line in (REPO / "scoring" / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        name = req.name.lower().replace("_", "-")
        names.add(name)
        assert name in pins, f"{name} is not in scoring/requirements.lock"
        assert req.specifier.contains(pins[name][0], prereleases=True), \
            f"{name}=={pins[name][0]} does not satisfy {req.specifier}"
    assert set(pins) == names, f"locked but not required: {sorted(set(pins) - names)}"


def test_uv_is_pinned_with_its_hash():
    src = (BATCH / "start_task.sh").read_text()
    assert re.search(r"UV_REQUIREMENT='uv==[0-9.]+ --hash=sha256:[0-9a-f]{64}'", src)
    assert "--require-hashes" in src and "1777" not in src and "666" not in src
    assert "--require-hashes --no-deps" in (BATCH / "run.sh").read_text()


def _app_package(tmp_path: Path) -> Path:
    app = tmp_path / "app"
    (app / "scoring").mkdir(parents=True)
    (app / "scoring" / "requirements.lock").write_text(LOCK.read_text())
    return app


def test_start_task_leaves_a_launcher_tasks_cannot_change(tmp_path):
    shared = tmp_path / "shared"
    env = {**os.environ, "AZ_BATCH_NODE_SHARED_DIR": str(shared), "STYLEBATCH_REQUIRE_GPU": "0",
           "STYLEBATCH_RUN_SH_B64": base64.b64encode((BATCH / "run.sh").read_bytes()).decode()}
    out = subprocess.run(["bash", str(BATCH / "start_task.sh")], env=env, capture_output=True,
                         text=True, check=True)
    assert "stylebatch node ready" in out.stdout
    root = shared / "stylebatch"
    for path in (root, root / "bin", root / "run.sh"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert not mode & (stat.S_IWGRP | stat.S_IWOTH), f"{path} is writable by others"
        assert mode & stat.S_IROTH


def test_a_task_never_builds_a_venv_and_says_why(tmp_path):
    shared = tmp_path / "shared"
    (shared / "stylebatch").mkdir(parents=True)
    app = _app_package(tmp_path)
    env = {**os.environ, "AZ_BATCH_NODE_SHARED_DIR": str(shared),
           "AZ_BATCH_APP_PACKAGE_x": str(app)}
    env.pop("STYLEBATCH_PYTHON", None)
    run = subprocess.run(["bash", str(BATCH / "run.sh"), "--app", "AZ_BATCH_APP_PACKAGE_x",
                          "python", "-c", "print('ran')"], env=env, capture_output=True, text=True)
    assert run.returncode == 3
    assert "no Python environment for the code's scoring/requirements.lock" in run.stderr
    assert list((shared / "stylebatch").iterdir()) == []  # nothing installed by the task

    # The venv the start task built for this very lock (stood in for by this interpreter).
    digest = hashlib.sha256(LOCK.read_bytes()).hexdigest()[:16]
    venv = shared / "stylebatch" / f"venv-{digest}"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    (venv / ".complete").touch()
    run = subprocess.run(["bash", str(BATCH / "run.sh"), "--app", "AZ_BATCH_APP_PACKAGE_x",
                          "python", "-c", "import sys; print(sys.path[1])"], env=env,
                         capture_output=True, text=True, check=True)
    assert run.stdout.strip() == str(app)  # the package is on PYTHONPATH
