// Role assignments for stylebatch's identities: least privilege, narrowest scope that works.
//
// Function app identity:
//   - Storage Blob Data Owner on the data account: AzureWebJobsStorage (host leases, Durable
//     blobs), the app's containers, and user-delegation keys for the short-lived SAS URLs the app
//     gives Batch tasks (shared/storage.py).
//   - Storage Queue Data Contributor + Storage Table Data Contributor: Durable Functions task hub.
//   - Azure Batch Job Submitter on the Batch account: create/terminate/delete jobs and tasks, read
//     pools and application packages. It cannot change pools or the account.
//   - Monitoring Metrics Publisher on Application Insights: Entra ID telemetry ingestion.
//   No Managed Identity Operator: the app never assigns the pool identity (the pool is infra);
//   tasks only name it in identity references, which needs no ARM permission.
// Pool (node) identity, container scopes only:
//   - Storage Blob Data Reader on each of readerContainers (styles, models, work)
//   - Storage Blob Data Contributor on each of writerContainers (work, models: chunk outputs and
//     trained fast models). Nothing on incoming/outgoing.
// Deployer (azd's AZURE_PRINCIPAL_ID), optional: Storage Blob Data Contributor on the data account,
//   so the postprovision hook and `az storage blob upload --auth-mode login` work without keys.

@description('Data storage account name.')
param storageAccountName string

@description('Batch account name.')
param batchAccountName string

@description('Application Insights component name.')
param applicationInsightsName string

@description('Principal id of the Function app identity.')
param functionPrincipalId string

@description('Principal id of the pool (node) identity.')
param poolPrincipalId string

@description('Containers the compute nodes may read.')
param readerContainers array = [
  'styles'
  'models'
  'work'
]

@description('Containers the compute nodes may write.')
param writerContainers array = [
  'work'
  'models'
]

@description('Object id of the person or service principal running azd; empty to skip.')
param deployerPrincipalId string = ''

@description('Kind of the deployer principal.')
@allowed([
  'User'
  'ServicePrincipal'
  'Group'
])
param deployerPrincipalType string = 'User'

// Built-in role definition ids (the same in every tenant).
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageBlobDataReader: '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  azureBatchJobSubmitter: '48e5e92e-a480-4e71-aa9c-2778f4c13781'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

var functionStorageRoles = [
  roles.storageBlobDataOwner
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

resource batchAccount 'Microsoft.Batch/batchAccounts@2024-07-01' existing = {
  name: batchAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// --- Function app identity ------------------------------------------------------------------

resource functionStorage 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in functionStorageRoles: {
  name: guid(storage.id, functionPrincipalId, role)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
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

// --- Pool (node) identity: container scopes ---------------------------------------------------

resource readableContainers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = [for container in readerContainers: {
  parent: blobService
  name: container
}]

resource poolReads 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (container, i) in readerContainers: {
  name: guid(readableContainers[i].id, poolPrincipalId, roles.storageBlobDataReader)
  scope: readableContainers[i]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataReader)
    principalId: poolPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Batch nodes read ${container}'
  }
}]

resource writableContainers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = [for container in writerContainers: {
  parent: blobService
  name: container
}]

resource poolWrites 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (container, i) in writerContainers: {
  name: guid(writableContainers[i].id, poolPrincipalId, roles.storageBlobDataContributor)
  scope: writableContainers[i]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: poolPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Batch nodes write ${container}'
  }
}]

// --- Deployer ---------------------------------------------------------------------------------

resource deployerStorage 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(deployerPrincipalId)) {
  name: guid(storage.id, deployerPrincipalId, roles.storageBlobDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: deployerPrincipalId
    principalType: deployerPrincipalType
    description: 'azd user uploads styles, models and videos with --auth-mode login'
  }
}
