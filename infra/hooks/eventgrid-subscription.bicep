// Event Grid subscription that feeds the `on_upload` blob trigger (Flex Consumption supports only
// the Event Grid source for blob triggers). Deployed by infra/hooks/postdeploy.sh after `azd deploy`,
// into the resource group azd provisioned, once the function exists and its host has created the
// `blobs_extension` system key.
//
// The key is read here with listKeys() on the app's host at deployment time: it never passes
// through a shell variable, the azd environment, a parameter file or a deployment output.

@description('Function app name (AZURE_FUNCTION_APP_NAME).')
param functionAppName string

@description('Event Grid system topic on the data storage account (AZURE_EVENTGRID_SYSTEM_TOPIC_NAME).')
param systemTopicName string

@description('Name of the blob-triggered function.')
param triggerFunctionName string = 'on_upload'

@description('Container whose new blobs start jobs.')
param container string = 'incoming'

@description('Data storage account (AZURE_STORAGE_ACCOUNT_NAME) holding the dead-letter container.')
param storageAccountName string

@description('Container undeliverable events are written to (the topic\'s identity may write only there).')
param deadLetterContainer string = 'deadletter'

@description('Event subscription name.')
param subscriptionName string = 'incoming-to-${triggerFunctionName}'

resource app 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource functionHost 'Microsoft.Web/sites/host@2024-04-01' existing = {
  parent: app
  name: 'default'
}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' existing = {
  name: systemTopicName
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

var webhookBase = 'https://${app.properties.defaultHostName}/runtime/webhooks/blobs'

resource subscription 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15' = {
  parent: systemTopic
  name: subscriptionName
  properties: {
    destination: {
      endpointType: 'WebHook'
      properties: {
        endpointUrl: '${webhookBase}?functionName=Host.Functions.${triggerFunctionName}&code=${functionHost.listKeys().systemKeys.blobs_extension}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: [
        'Microsoft.Storage.BlobCreated'
      ]
      subjectBeginsWith: '/blobServices/default/containers/${container}/'
      // Every way a whole blob lands (portal, azcopy, SDK, copy) raises BlobCreated; a duplicate
      // delivery is harmless (the trigger derives the job id from name + ETag).
    }
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
    // An upload whose event could not be delivered (app down for a day, webhook refused) is kept
    // here instead of silently dropped; re-POST it through the API to start its job.
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: storage.id
          blobContainerName: deadLetterContainer
        }
      }
    }
  }
}

// Only the subscription's id: the endpoint URL contains the key and is never output.
output subscriptionId string = subscription.id
