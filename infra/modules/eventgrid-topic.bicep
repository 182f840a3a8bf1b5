// The Event Grid system topic for the data storage account. The Flex Consumption app's blob
// trigger (`on_upload`, source EventGrid) is fed by an event subscription on this topic. The
// subscription itself is created after the code is deployed, by infra/hooks/postdeploy.sh with
// infra/hooks/eventgrid-subscription.bicep: its webhook URL needs the blobs_extension system key,
// which only exists once the host has loaded the function, and Event Grid validates the endpoint
// when the subscription is created.

@description('Azure region (must be the storage account\'s).')
param location string

@description('Tags applied to the topic.')
param tags object = {}

@description('System topic name.')
param name string

@description('Resource id of the storage account whose events the topic publishes.')
param storageAccountId string

resource systemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' = {
  name: name
  location: location
  tags: tags
  properties: {
    source: storageAccountId
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

output id string = systemTopic.id
output name string = systemTopic.name
