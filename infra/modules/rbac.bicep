// Role assignments for stylebatch: least privilege at the narrowest scope that works. The table of
// identities x roles x scopes is in docs/security.md; tests/infra/test_role_table.py reads this
// file and checks it against that table.
//
// Function app identity
//   host account (no user data): Blob Data Contributor, Queue Data Contributor, Table Data
//     Contributor - AzureWebJobsStorage, the Durable task hub, the deployment package. (Blob Data
//     Owner would add only ACL and ownership rights, which need a hierarchical namespace.)
//   data account: Storage Blob Delegator (account) - user delegation keys for the per-blob SAS
//     URLs it gives Batch tasks; a user delegation SAS grants at most what its signer holds, so
//     the container roles below bound every SAS too. Per container:
//       incoming Reader (probe, split, stitch read the upload; the input is never changed)
//       styles Reader, models Contributor (training tasks write models/<style>.pt),
//       work Contributor (chunks, intermediates, cleanup), outgoing Contributor (results).
//     The blob trigger's poison queue: Queue Data Contributor on that queue only.
//   Batch account: Azure Batch Job Submitter. Application Insights: Monitoring Metrics Publisher.
// Pool (node) identity: no role on the data account at all. Tasks carry a SAS for each of their
//   own blobs (shared/batch/azure.py); nodes read application packages from the Batch account's
//   auto-storage with it (batch-account.bicep).
// Event Grid system topic: Blob Data Contributor on the `deadletter` container only.
// Uploaders (uploadersPrincipalId, e.g. an Entra group) and the deployer: Blob Data Contributor on
//   `incoming`, Reader on `outgoing`. The deployer also seeds `styles` and `models`
//   (infra/hooks/postprovision.sh): Contributor on those two.

@description('Data storage account name.')
param storageAccountName string

@description('Host storage account name (AzureWebJobsStorage + deployment package).')
param hostStorageAccountName string

@description('Batch account name.')
param batchAccountName string

@description('Application Insights component name.')
param applicationInsightsName string

@description('Principal id of the Function app identity.')
param functionPrincipalId string

@description('Principal id of the Event Grid system topic (dead-letter writer).')
param eventGridPrincipalId string

@description('Name of the blob trigger\'s poison queue on the data account.')
param poisonQueueName string

@description('Object id of the person or service principal running azd; empty to skip.')
param deployerPrincipalId string = ''

@description('Kind of the deployer principal.')
@allowed([
  'User'
  'ServicePrincipal'
  'Group'
])
param deployerPrincipalType string = 'User'

@description('Object id of who may upload videos (an Entra group, typically); empty to skip.')
param uploadersPrincipalId string = ''

@description('Kind of the uploaders principal.')
@allowed([
  'User'
  'ServicePrincipal'
  'Group'
])
param uploadersPrincipalType string = 'Group'

// Built-in role definition ids (the same in every tenant).
var roles = {
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageBlobDataReader: '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
  storageBlobDelegator: 'db58b8e5-c6ad-4a2a-8342-4190687cbf4a'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  azureBatchJobSubmitter: '48e5e92e-a480-4e71-aa9c-2778f4c13781'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

// Every role on a data container: who, which role, which container, why.
var serviceGrants = [
  {
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
    role: roles.storageBlobDataReader
    container: 'incoming'
    why: 'app reads uploads'
  }
  {
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
    role: roles.storageBlobDataReader
    container: 'styles'
    why: 'app reads style images and signs read SAS for them'
  }
  {
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
    role: roles.storageBlobDataContributor
    container: 'models'
    why: 'app signs the SAS training tasks write models with'
  }
  {
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
    role: roles.storageBlobDataContributor
    container: 'work'
    why: 'app writes chunks, signs task SAS, deletes intermediates'
  }
  {
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
    role: roles.storageBlobDataContributor
    container: 'outgoing'
    why: 'app writes results'
  }
  {
    principalId: eventGridPrincipalId
    principalType: 'ServicePrincipal'
    role: roles.storageBlobDataContributor
    container: 'deadletter'
    why: 'Event Grid keeps undeliverable events'
  }
]

var uploaderGrants = [
  {
    principalId: uploadersPrincipalId
    principalType: uploadersPrincipalType
    role: roles.storageBlobDataContributor
    container: 'incoming'
    why: 'uploaders upload videos'
  }
  {
    principalId: uploadersPrincipalId
    principalType: uploadersPrincipalType
    role: roles.storageBlobDataReader
    container: 'outgoing'
    why: 'uploaders download results'
  }
]

var deployerGrants = [
  {
    principalId: deployerPrincipalId
    principalType: deployerPrincipalType
    role: roles.storageBlobDataContributor
    container: 'incoming'
    why: 'deployer uploads videos'
  }
  {
    principalId: deployerPrincipalId
    principalType: deployerPrincipalType
    role: roles.storageBlobDataReader
    container: 'outgoing'
    why: 'deployer downloads results'
  }
  {
    principalId: deployerPrincipalId
    principalType: deployerPrincipalType
    role: roles.storageBlobDataContributor
    container: 'styles'
    why: 'deployer seeds style images'
  }
  {
    principalId: deployerPrincipalId
    principalType: deployerPrincipalType
    role: roles.storageBlobDataContributor
    container: 'models'
    why: 'deployer seeds fast models'
  }
]

var containerGrants = concat(serviceGrants, empty(uploadersPrincipalId) ? [] : uploaderGrants, empty(deployerPrincipalId) ? [] : deployerGrants)

var hostRoles = [
  roles.storageBlobDataContributor
  roles.storageQueueDataContributor
  roles.storageTableDataContributor
]

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource poisonQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' existing = {
  parent: queueService
  name: poisonQueueName
}

resource hostStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: hostStorageAccountName
}

resource batchAccount 'Microsoft.Batch/batchAccounts@2024-07-01' existing = {
  name: batchAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// --- data containers ------------------------------------------------------------------------

resource grantedContainers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = [for grant in containerGrants: {
  parent: blobService
  name: grant.container
}]

resource containerRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (grant, i) in containerGrants: {
  name: guid(grantedContainers[i].id, grant.principalId, grant.role)
  scope: grantedContainers[i]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', grant.role)
    principalId: grant.principalId
    principalType: grant.principalType
    description: 'stylebatch: ${grant.why}'
  }
}]

// --- Function app identity: the rest --------------------------------------------------------

resource functionDelegator 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, functionPrincipalId, roles.storageBlobDelegator)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDelegator)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
    description: 'stylebatch app gets user delegation keys for per-blob task SAS'
  }
}

resource functionPoisonQueue 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(poisonQueue.id, functionPrincipalId, roles.storageQueueDataContributor)
  scope: poisonQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
    description: 'stylebatch blob trigger parks blobs it gave up on'
  }
}

resource functionHost 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in hostRoles: {
  name: guid(hostStorage.id, functionPrincipalId, role)
  scope: hostStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
    description: 'stylebatch Functions host storage, Durable task hub, deployment package'
  }
}]

resource functionBatch 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(batchAccount.id, functionPrincipalId, roles.azureBatchJobSubmitter)
  scope: batchAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.azureBatchJobSubmitter)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
    description: 'stylebatch app submits and manages Batch jobs and tasks'
  }
}

resource functionTelemetry 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, functionPrincipalId, roles.monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
    description: 'stylebatch app sends telemetry with Entra ID'
  }
}
