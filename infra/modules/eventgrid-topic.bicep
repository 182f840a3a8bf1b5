// The Event Grid system topic for the data storage account. The Flex Consumption app's blob
// trigger (`on_upload`, source EventGrid) is fed by an event subscription on this topic. The
// subscription itself is created after the code is deployed, by infra/hooks/postdeploy.sh with
// infra/hooks/eventgrid-subscription.bicep: its webhook URL needs the blobs_extension system key,
// which only exists once the host has loaded the function, and Event Grid validates the endpoint
// when the subscription is created.
// The topic has a system-assigned identity: it writes undeliverable events to the data account's
// `deadletter` container with it (a role on that container only, rbac.bicep). Delivery and
// publish failures go to Log Analytics.

@description('Azure region (must be the storage account\'s).')
param location string

@description('Tags applied to the topic.')
param tags object = {}

@description('System topic name.')
param name string

@description('Resource id of the storage account whose events the topic publishes.')
param storageAccountId string

@description('Log Analytics workspace for delivery and publish failures; empty to skip.')
param logAnalyticsId string = ''

resource systemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' = {
  name: name
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: storageAccountId
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

resource topicDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = if (!empty(logAnalyticsId)) {
  name: 'eventgrid-to-log-analytics'
  scope: systemTopic
  properties: {
    workspaceId: logAnalyticsId
    logs: [
      {
        categoryGroup: 'allLogs'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}

output id string = systemTopic.id
output principalId string = systemTopic.identity.principalId
output name string = systemTopic.name
