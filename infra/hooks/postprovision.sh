#!/bin/sh
# azd postprovision hook for stylebatch: puts what the pipeline needs next to the infrastructure.
#   1. assets/styles/*.jpg|*.png  -> container `styles` (the bundled default style)
#   2. assets/models/*.pt         -> container `models` (pre-trained fast models, if any)
#   3. scoring/ + shared/         -> Batch application package AZURE_BATCH_APPLICATION_NAME, set as
#                                    its default version (content-addressed: unchanged code is
#                                    not uploaded again)
# Entra ID only (no account keys): uploads use `--auth-mode login` with the signed-in user, who
# was granted Storage Blob Data Contributor by infra/modules/rbac.bicep.
set -eu

. ./infra/hooks/common.sh

require_env AZURE_RESOURCE_GROUP AZURE_STORAGE_ACCOUNT_NAME AZURE_BATCH_ACCOUNT_NAME AZURE_BATCH_APPLICATION_NAME
require_az

account=$AZURE_STORAGE_ACCOUNT_NAME

upload() { # upload CONTAINER FILE
  az storage blob upload --only-show-errors --auth-mode login --account-name "$account" \
    --container-name "$1" --name "$(basename "$2")" --file "$2" --overwrite -o none
}

upload_dir() { # upload_dir CONTAINER DIR PATTERN...
  container=$1; dir=$2; shift 2
  [ -d "$dir" ] || return 0
  for pattern in "$@"; do
    for file in "$dir"/$pattern; do
      [ -f "$file" ] || continue
      log "uploading $file to $container/"
      retry 300 upload "$container" "$file" || die "could not upload $file (is your user granted blob access? see docs/deploy-azure.md)"
    done
  done
}

upload_dir styles assets/styles '*.jpg' '*.jpeg' '*.png'
upload_dir models assets/models '*.pt'

# --- Batch application package --------------------------------------------------------------------
workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT INT TERM
package="$workdir/stylebatch.zip"

python_bin=$(command -v python3 || command -v python || true)
[ -n "$python_bin" ] || die "python3 is needed to build the Batch application package"

# Deterministic zip (sorted entries, fixed timestamps) so its hash names the version.
version=$("$python_bin" - "$package" <<'PY'
import hashlib, os, sys, zipfile
out = sys.argv[1]
roots = ["scoring", "shared"]
files = []
for root in roots:
    for d, dirs, names in os.walk(root):
        dirs[:] = sorted(x for x in dirs if x != "__pycache__" and not x.startswith("."))
        files += [os.path.join(d, n) for n in names if not n.endswith((".pyc", ".pyo"))]
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
    for path in sorted(files):
        info = zipfile.ZipInfo(path.replace(os.sep, "/"), date_time=(2020, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        with open(path, "rb") as f:
            z.writestr(info, f.read())
with open(out, "rb") as f:
    print("v" + hashlib.sha256(f.read()).hexdigest()[:12])
PY
)

app=$AZURE_BATCH_APPLICATION_NAME
batch=$AZURE_BATCH_ACCOUNT_NAME
rg=$AZURE_RESOURCE_GROUP

state=$(az batch application package show --only-show-errors -g "$rg" -n "$batch" \
  --application-name "$app" --version-name "$version" --query state -o tsv 2>/dev/null || true)
if [ "$state" = "Active" ]; then
  log "Batch application package $app $version is already active"
else
  log "publishing Batch application package $app $version"
  retry 300 az batch application package create --only-show-errors -g "$rg" -n "$batch" \
    --application-name "$app" --version-name "$version" --package-file "$package" -o none \
    || die "could not publish the Batch application package"
fi
az batch application set --only-show-errors -g "$rg" -n "$batch" --application-name "$app" \
  --default-version "$version" --allow-updates true -o none
azd env set AZURE_BATCH_APPLICATION_VERSION "$version" >/dev/null 2>&1 || true
log "Batch application $app default version: $version"
