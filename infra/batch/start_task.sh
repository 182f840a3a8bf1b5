#!/bin/bash
# stylebatch pool start task: prepares each GPU node once, before it takes any task.
#
# pool.bicep runs it elevated (admin, pool scope) with waitForSuccess, so a node that fails
# here never receives a task (it shows as "starttaskfailed" in the portal). Inputs, as
# environment settings of the start task (pool.bicep fills them from files in this folder):
#   STYLEBATCH_RUN_SH_B64        infra/batch/run.sh, base64: installed as the task launcher
#   STYLEBATCH_REQUIREMENTS_B64  scoring/requirements.txt, base64 (optional): the venv is built
#                                now, so the first task on the node does not pay for it
#   STYLEBATCH_REQUIRE_GPU       1 (default): fail the node when no NVIDIA GPU/driver answers
#
# Try it outside Batch: AZ_BATCH_NODE_SHARED_DIR=/tmp/s STYLEBATCH_REQUIRE_GPU=0 \
#   STYLEBATCH_RUN_SH_B64=$(base64 -w0 infra/batch/run.sh) bash infra/batch/start_task.sh
set -euo pipefail

root="${AZ_BATCH_NODE_SHARED_DIR:?not on a Batch node}/stylebatch"
mkdir -p "$root/bin"
# Tasks run as the non-admin pool user: they may create venvs and take the install lock here.
chmod 1777 "$root"
: > "$root/install.lock"
chmod 666 "$root/install.lock"

printf '%s' "${STYLEBATCH_RUN_SH_B64:?}" | base64 -d > "$root/run.sh"
chmod 755 "$root/run.sh"

if [ "${STYLEBATCH_REQUIRE_GPU:-1}" = "1" ]; then
  if ! nvidia-smi -L; then
    echo "no NVIDIA GPU or driver on this node: use a GPU VM size and an image with drivers" >&2
    exit 1
  fi
fi

# Python >= 3.11 for the venv: the image's if it has one, else uv (from PyPI) provides one.
have_python=0
for py in python3.13 python3.12 python3.11; do
  command -v "$py" >/dev/null 2>&1 && have_python=1 && break
done
if [ "$have_python" = "0" ] && [ ! -x "$root/bin/uv" ]; then
  if ! python3 -m pip --version >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q && apt-get install -y -q python3-pip
  fi
  # Pinned like every dependency (scoring/requirements.txt pins the venv's packages exactly);
  # uv's version also fixes the Python build it fetches. Upgrades are deliberate.
  python3 -m pip install --quiet --no-cache-dir --target "$root/uv-pkg" uv==0.13.8
  ln -sf "$root/uv-pkg/bin/uv" "$root/bin/uv"
  chmod -R a+rX "$root/uv-pkg"
fi

if [ -n "${STYLEBATCH_REQUIREMENTS_B64:-}" ]; then
  printf '%s' "$STYLEBATCH_REQUIREMENTS_B64" | base64 -d > "$root/requirements.txt"
  "$root/run.sh" --prepare "$root/requirements.txt"
fi
echo "stylebatch node ready"
