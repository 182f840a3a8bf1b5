#!/bin/bash
# stylebatch pool start task: prepares each GPU node once, before it takes any task.
#
# pool.bicep runs it elevated (admin, pool scope) with waitForSuccess, so a node that fails
# here never receives a task (it shows as "starttaskfailed" in the portal). Inputs, as
# environment settings of the start task (pool.bicep fills them from files in this folder):
#   STYLEBATCH_RUN_SH_B64        infra/batch/run.sh, base64: installed as the task launcher
#   STYLEBATCH_REQUIREMENTS_B64  scoring/requirements.lock, base64 (optional): the node's venv,
#                                every package pinned with its hash, is built now
#   STYLEBATCH_REQUIRE_GPU       1 (default): fail the node when no NVIDIA GPU/driver answers
#
# What it leaves is read-only to tasks: they run as task-scoped non-admin users
# (shared/batch/azure.py), so no task can change the launcher or the venv the next task runs.
#
# Try it outside Batch: AZ_BATCH_NODE_SHARED_DIR=/tmp/s STYLEBATCH_REQUIRE_GPU=0 \
#   STYLEBATCH_RUN_SH_B64=$(base64 -w0 infra/batch/run.sh) bash infra/batch/start_task.sh
set -euo pipefail
umask 022

# uv provides Python 3.11 when the image has none: pinned like every dependency and checked
# against this hash (the manylinux x86_64 wheel); uv's version also fixes the Python build it
# fetches, whose hash uv checks in turn. Upgrades are deliberate.
UV_REQUIREMENT='uv==0.13.8 --hash=sha256:e18a57b8b352eb7c8feb317b9f6f533c8f0ad9673fd6cf34bbe3cf1a9f6a8984'

root="${AZ_BATCH_NODE_SHARED_DIR:?not on a Batch node}/stylebatch"
mkdir -p "$root/bin"
chmod 755 "$root" "$root/bin"

printf '%s' "${STYLEBATCH_RUN_SH_B64:?}" | base64 -d > "$root/run.sh"
chmod 755 "$root/run.sh"

if [ "${STYLEBATCH_REQUIRE_GPU:-1}" = "1" ]; then
  if ! nvidia-smi -L; then
    echo "no NVIDIA GPU or driver on this node: use a GPU VM size and an image with drivers" >&2
    exit 1
  fi
fi

# Python >= 3.11 for the venv: the image's if it has one, else uv's.
have_python=0
for py in python3.13 python3.12 python3.11; do
  command -v "$py" >/dev/null 2>&1 && have_python=1 && break
done
if [ "$have_python" = "0" ] && [ ! -x "$root/bin/uv" ]; then
  if ! python3 -m pip --version >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q && apt-get install -y -q python3-pip
  fi
  printf '%s\n' "$UV_REQUIREMENT" > "$root/uv-requirements.txt"
  python3 -m pip install --quiet --no-cache-dir --require-hashes --no-deps \
    --target "$root/uv-pkg" -r "$root/uv-requirements.txt"
  ln -sf "$root/uv-pkg/bin/uv" "$root/bin/uv"
  chmod -R go-w,a+rX "$root/uv-pkg"
fi

if [ -n "${STYLEBATCH_REQUIREMENTS_B64:-}" ]; then
  printf '%s' "$STYLEBATCH_REQUIREMENTS_B64" | base64 -d > "$root/requirements.lock"
  "$root/run.sh" --prepare "$root/requirements.lock"
fi
echo "stylebatch node ready"
