#!/bin/bash
# stylebatch task launcher on an Azure Batch node.
#
# The pool's start task (start_task.sh) installs this file at
#   $AZ_BATCH_NODE_SHARED_DIR/stylebatch/run.sh
# and every task command line built by shared/batch/azure.py runs through it:
#   /bin/bash -c 'exec "$AZ_BATCH_NODE_SHARED_DIR/stylebatch/run.sh" --app AZ_BATCH_APP_PACKAGE_stylebatch python -m scoring stylize ...'
#
# What it does:
#   --app VAR   finds the task's application package (scoring/ + shared/) through the variable
#               Batch sets for it, matching the name case-insensitively (Batch flattens '.', '-'
#               and '#' in ids and versions to '_') and puts it on PYTHONPATH;
#   python      means the node's venv for that package's scoring/requirements.lock (every
#               package pinned with its hash), which the start task built, or $STYLEBATCH_PYTHON
#               when set (an image with everything installed);
#   exec        the command replaces this script, so its exit code is the task's exit code.
#   --prepare LOCK   build the venv for LOCK (the start task, as admin: the venv is read-only to
#               the task-scoped users tasks run as; a task never installs anything).
#
# Run by hand on a node: AZ_BATCH_NODE_SHARED_DIR=/tmp/s ./run.sh --prepare scoring/requirements.lock
set -euo pipefail

fail() { # a launcher failure reads like a task failure (the JSON error line the backend reports)
  printf '{"event":"error","reason":"node launcher: %s","bad_input":false}\n' "$*" >&2
  exit 3
}

root="${AZ_BATCH_NODE_SHARED_DIR:?not on a Batch node}/stylebatch"

pick_python() { # an interpreter for new venvs: Python >= 3.11 from the image, else uv's
  for py in python3.13 python3.12 python3.11 python3; do
    if command -v "$py" >/dev/null 2>&1 &&
       "$py" -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      command -v "$py"; return 0
    fi
  done
  return 1
}

venv_for() { # venv_for LOCK: the venv directory that belongs to a lock file's content
  printf '%s\n' "$root/venv-$(sha256sum "$1" | cut -c1-16)"
}

build_venv() { # build_venv LOCK: install exactly the hashed lock, then make it read-only
  local lock=$1 venv logf py
  [ -f "$lock" ] || fail "requirements lock $lock not found"
  venv=$(venv_for "$lock")
  [ -f "$venv/.complete" ] && return 0
  rm -rf "$venv"
  logf="$root/install-$(basename "$venv").log"
  export UV_CACHE_DIR="$root/uv-cache" UV_PYTHON_INSTALL_DIR="$root/python"
  if py=$(pick_python); then
    { "$py" -m venv "$venv" && "$venv/bin/python" -m pip install --no-cache-dir \
        --disable-pip-version-check --require-hashes --no-deps -r "$lock"; } >"$logf" 2>&1 ||
      { tail -n 20 "$logf" >&2; fail "could not install the Python dependencies ($logf)"; }
  elif [ -x "$root/bin/uv" ]; then
    { "$root/bin/uv" venv --python 3.11 "$venv" &&
      "$root/bin/uv" pip install --python "$venv/bin/python" --require-hashes --no-deps \
        -r "$lock"; } >"$logf" 2>&1 ||
      { tail -n 20 "$logf" >&2; fail "could not install the Python dependencies ($logf)"; }
  else
    fail "no Python >= 3.11 and no uv on this node (did the start task run?)"
  fi
  touch "$venv/.complete"
  chmod -R go-w,a+rX "$venv" "$root/python" 2>/dev/null || true
}

if [ "${1:-}" = "--prepare" ]; then
  build_venv "${2:?usage: run.sh --prepare LOCK}"
  exit 0
fi

app_dir=""
if [ "${1:-}" = "--app" ]; then
  want=${2:?usage: run.sh --app VARIABLE COMMAND...}
  shift 2
  while IFS= read -r name; do
    if [ "${name,,}" = "${want,,}" ]; then app_dir=${!name}; break; fi
  done < <(compgen -e)
  [ -n "$app_dir" ] && [ -d "$app_dir" ] ||
    fail "application package $want is not on this node (BATCH_APP_PACKAGE/BATCH_APP_VERSION?)"
  export PYTHONPATH="$app_dir${PYTHONPATH:+:$PYTHONPATH}"
fi
[ $# -gt 0 ] || fail "no command to run"

if [ "$1" = "python" ]; then
  shift
  if [ -n "${STYLEBATCH_PYTHON:-}" ]; then
    python=$STYLEBATCH_PYTHON
  elif [ -n "$app_dir" ]; then
    lock="$app_dir/scoring/requirements.lock"
    [ -f "$lock" ] || fail "the application package has no scoring/requirements.lock"
    venv=$(venv_for "$lock")
    [ -f "$venv/.complete" ] || fail "this node has no Python environment for the code's \
scoring/requirements.lock: the start task builds it from the lock in the pool definition; run \
azd provision (pool and package from the same commit) and let the nodes restart"
    python="$venv/bin/python"
  else
    python=$(pick_python) || fail "no Python >= 3.11 on this node"
  fi
  exec "$python" "$@"
fi
exec "$@"
