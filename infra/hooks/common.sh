# Shared helpers for the azd hooks in infra/hooks/ (sourced, POSIX sh). azd runs the hooks from
# the repository root with the environment's values (the Bicep outputs) in the environment.

log() { printf '[stylebatch] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

require_env() {
  for name in "$@"; do
    eval "value=\${$name:-}"
    [ -n "$value" ] || die "$name is not set: run this through azd (azd provision / azd deploy)."
  done
}

require_az() {
  command -v az >/dev/null 2>&1 || die "the Azure CLI (az) is needed by this hook: https://aka.ms/azcli"
  az account show --only-show-errors >/dev/null 2>&1 || die "the Azure CLI is not signed in: run 'az login' (azd and az keep separate sign-ins)."
  if [ -n "${AZURE_SUBSCRIPTION_ID:-}" ]; then
    az account set --subscription "$AZURE_SUBSCRIPTION_ID" --only-show-errors \
      || die "cannot select subscription $AZURE_SUBSCRIPTION_ID in the Azure CLI"
  fi
}

# retry SECONDS_TOTAL COMMAND...: run COMMAND until it succeeds, every 15 s, for at most
# SECONDS_TOTAL (new role assignments take a few minutes to reach the data plane).
retry() {
  budget=$1; shift
  waited=0
  until "$@"; do
    [ "$waited" -lt "$budget" ] || return 1
    log "not yet (waiting for role assignments / the host to start); retrying in 15 s"
    sleep 15
    waited=$((waited + 15))
  done
}
