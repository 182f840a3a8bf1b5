#!/bin/sh
# azd postdeploy hook for stylebatch: subscribes the `on_upload` blob trigger to BlobCreated events
# of the `incoming` container.
#
# Why here and not in main.bicep: the subscription's webhook is
#   https://<app>.azurewebsites.net/runtime/webhooks/blobs?functionName=Host.Functions.on_upload&code=<blobs_extension key>
# and that system key only exists once the code is deployed and the host has loaded the Event Grid
# blob trigger; Event Grid also validates the endpoint when the subscription is created.
#
# How the key is handled: this script only checks that the key exists (the query returns true/false,
# never the key) and then deploys infra/hooks/eventgrid-subscription.bicep, which reads the key with
# listKeys() inside Azure Resource Manager. The key never appears in this shell, the azd environment,
# a parameter file or a deployment output.
set -eu

. ./infra/hooks/common.sh

require_env AZURE_RESOURCE_GROUP AZURE_FUNCTION_APP_NAME AZURE_EVENTGRID_SYSTEM_TOPIC_NAME AZURE_STORAGE_ACCOUNT_NAME
require_az

rg=$AZURE_RESOURCE_GROUP
app=$AZURE_FUNCTION_APP_NAME
trigger=${AZURE_FUNCTION_TRIGGER_NAME:-on_upload}

key_exists() {
  # Wake the host (scale from zero) so it loads the functions and creates its system keys.
  if command -v curl >/dev/null 2>&1; then
    curl -s -o /dev/null --max-time 30 "https://$app.azurewebsites.net/" || true
  fi
  [ "$(az functionapp keys list --only-show-errors -g "$rg" -n "$app" \
        --query 'systemKeys.blobs_extension != null' -o tsv 2>/dev/null)" = "true" ]
}

log "waiting for the blobs_extension key of $app (the host must load the $trigger trigger)"
retry 600 key_exists || die "the host never created the blobs_extension key: is '$trigger' deployed with source=EventGrid? Check the app's logs in Application Insights."

log "creating the Event Grid subscription incoming -> $trigger"
retry 300 az deployment group create --only-show-errors -g "$rg" \
  --name "stylebatch-eventgrid-subscription" \
  --template-file ./infra/hooks/eventgrid-subscription.bicep \
  --parameters functionAppName="$app" \
               systemTopicName="$AZURE_EVENTGRID_SYSTEM_TOPIC_NAME" \
               storageAccountName="$AZURE_STORAGE_ACCOUNT_NAME" \
               triggerFunctionName="$trigger" \
  -o none || die "could not create the Event Grid subscription (see the deployment in the portal)"
log "uploads to the incoming container now start jobs"
