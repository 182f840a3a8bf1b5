"""The azd hooks (infra/hooks/*.sh) run against a stub `az`/`azd`/`curl` that records its calls.

Checks that the hooks are valid POSIX sh (and shellcheck-clean when shellcheck is installed), upload
with Entra ID only (`--auth-mode login`, never a key, SAS or connection string), publish a
content-addressed Batch application package holding scoring/ + shared/, skip an unchanged package,
and create the Event Grid subscription through the Bicep deployment without the key ever passing
through the command line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import zipfile

import pytest

from tests.infra.bicep_text import INFRA

HOOKS = INFRA / "hooks"
SCRIPTS = sorted(HOOKS.glob("*.sh"))

STUB = r"""#!/bin/sh
printf '%s\n' "$(basename "$0") $*" >> "$STUB_LOG"
[ "$(basename "$0")" = az ] || exit 0
case "$*" in
  "batch application package show"*)
    [ -n "${STUB_PACKAGE_STATE:-}" ] || exit 3
    echo "$STUB_PACKAGE_STATE" ;;
  "batch application package create"*)
    while [ $# -gt 0 ]; do
      [ "$1" = "--package-file" ] && cp "$2" "$STUB_DIR/package.zip"
      shift
    done ;;
  "functionapp keys list"*) echo true ;;
esac
exit 0
"""

ENV = {
    "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000",
    "AZURE_RESOURCE_GROUP": "rg-test",
    "AZURE_STORAGE_ACCOUNT_NAME": "sttest",
    "AZURE_BATCH_ACCOUNT_NAME": "batest",
    "AZURE_BATCH_APPLICATION_NAME": "stylebatch",
    "AZURE_FUNCTION_APP_NAME": "func-test",
    "AZURE_FUNCTION_TRIGGER_NAME": "on_upload",
    "AZURE_EVENTGRID_SYSTEM_TOPIC_NAME": "evgt-test",
}


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_posix_sh_syntax(script):
    subprocess.run(["sh", "-n", str(script)], check=True)


def test_shellcheck_clean():
    if not shutil.which("shellcheck"):
        pytest.skip("shellcheck not installed (apt-get install shellcheck)")
    subprocess.run(["shellcheck", "-s", "sh", "-x", *map(str, SCRIPTS)], check=True,
                   cwd=INFRA.parent)


@pytest.fixture
def project(tmp_path):
    """A miniature checkout: the hooks, assets, scoring/ and shared/; stubs first on PATH."""
    root = tmp_path / "repo"
    shutil.copytree(HOOKS, root / "infra" / "hooks")
    (root / "assets" / "styles").mkdir(parents=True)
    (root / "assets" / "styles" / "swirl.jpg").write_bytes(b"\xff\xd8jpeg")
    (root / "assets" / "styles" / "make_swirl.py").write_text("# not a style image\n")
    (root / "assets" / "models").mkdir()
    (root / "assets" / "models" / "swirl.pt").write_bytes(b"model")
    for pkg, files in {"scoring": ["__init__.py", "cli.py", "requirements.txt"],
                       "shared": ["__init__.py", "settings.py"]}.items():
        (root / pkg / "__pycache__").mkdir(parents=True)
        (root / pkg / "__pycache__" / "cli.cpython-311.pyc").write_bytes(b"pyc")
        for f in files:
            (root / pkg / f).write_text(f"# {pkg}/{f}\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("az", "azd", "curl"):
        stub = bin_dir / tool
        stub.write_text(STUB)
        stub.chmod(0o755)
    log = tmp_path / "calls.log"
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "HOME": str(tmp_path),
           "STUB_LOG": str(log), "STUB_DIR": str(tmp_path), **ENV}
    return root, env, log


def _run(root, env, hook, **extra):
    proc = subprocess.run(["sh", f"./infra/hooks/{hook}"], cwd=root, env={**env, **extra},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc


def _assert_no_secrets(calls):
    for call in calls:
        for flag in ("--account-key", "--connection-string", "--sas-token", "code="):
            assert flag not in call, call


def test_postprovision_uploads_with_entra_id_and_publishes_the_package(project, tmp_path):
    root, env, log = project
    _run(root, env, "postprovision.sh")
    calls = log.read_text().splitlines()
    _assert_no_secrets(calls)
    uploads = [c for c in calls if c.startswith("az storage blob upload")]
    assert len(uploads) == 2, uploads
    assert all("--auth-mode login" in c and "--account-name sttest" in c for c in uploads)
    assert any("--container-name styles --name swirl.jpg" in c for c in uploads)
    assert any("--container-name models --name swirl.pt" in c for c in uploads)

    (create,) = [c for c in calls if c.startswith("az batch application package create")]
    version = create.split("--version-name ")[1].split()[0]
    assert version.startswith("v") and len(version) == 13
    assert any(c.startswith("az batch application set") and f"--default-version {version}" in c
               for c in calls)
    with zipfile.ZipFile(tmp_path / "package.zip") as z:
        names = set(z.namelist())
    assert {"scoring/__init__.py", "scoring/cli.py", "scoring/requirements.txt",
            "shared/__init__.py", "shared/settings.py"} == names


def test_postprovision_skips_an_unchanged_package(project):
    root, env, log = project
    _run(root, env, "postprovision.sh", STUB_PACKAGE_STATE="Active")
    calls = log.read_text().splitlines()
    assert not [c for c in calls if c.startswith("az batch application package create")]
    assert [c for c in calls if c.startswith("az batch application set")]


def test_package_version_is_content_addressed(project, tmp_path):
    root, env, log = project
    versions = []
    for change in (None, None, "scoring/cli.py"):
        if change:
            (root / change).write_text("# changed\n")
        log.unlink(missing_ok=True)
        _run(root, env, "postprovision.sh")
        (create,) = [c for c in log.read_text().splitlines()
                     if c.startswith("az batch application package create")]
        versions.append(create.split("--version-name ")[1].split()[0])
    assert versions[0] == versions[1] != versions[2]


def test_postprovision_needs_azd_values(project):
    root, env, _ = project
    env = {k: v for k, v in env.items() if k != "AZURE_STORAGE_ACCOUNT_NAME"}
    proc = subprocess.run(["sh", "./infra/hooks/postprovision.sh"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "AZURE_STORAGE_ACCOUNT_NAME is not set" in proc.stderr


def test_postdeploy_creates_the_subscription_through_arm(project):
    root, env, log = project
    _run(root, env, "postdeploy.sh")
    calls = log.read_text().splitlines()
    _assert_no_secrets(calls)
    keys = [c for c in calls if c.startswith("az functionapp keys list")]
    assert keys and all("systemKeys.blobs_extension != null" in c for c in keys)
    (deploy,) = [c for c in calls if c.startswith("az deployment group create")]
    assert "--template-file ./infra/hooks/eventgrid-subscription.bicep" in deploy
    assert "functionAppName=func-test" in deploy
    assert "systemTopicName=evgt-test" in deploy
    assert "triggerFunctionName=on_upload" in deploy
    assert "-g rg-test" in deploy
