// stylebatch infrastructure, deployed by `azd up` (azure.yaml at the repository root).
//
// Subscription-scoped entry point: creates the resource group and, in it,
//   identities    user-assigned identities for the Function app, the Batch pool and the Batch account
//   monitoring    Log Analytics + Application Insights (Entra ID ingestion only)
//   storage       the data account: incoming, styles, models, work, outgoing (+ deadletter)
//   hostStorage   the Functions host's account: AzureWebJobsStorage, Durable task hub, the
//                 deployment package; no user data, no user role
//   batch         Batch account (Entra ID only) + key-less auto-storage + diagnostic settings
//   pool          the GPU pool, infra/batch/pool.bicep
//   network       only with vnetEnabled: VNet, private endpoints for storage and Batch, the
//                 pool's subnet without public IPs (infra/modules/network.bicep)
//   rbac          least-privilege role assignments, per container (docs/security.md)
//   functionApp   Flex Consumption app, identity-based connections only, Entra ID sign-in
//   eventGrid     system topic on the data account (its subscription, with dead-lettering, is
//                 created by the postdeploy hook, see infra/hooks/postdeploy.sh)
// Security properties are checked by tests/infra/ and by checkov (make scan).

targetScope = 'subscription'

// --- azd ---------------------------------------------------------------------------------------

@minLength(1)
@maxLength(64)
@description('azd environment name; names the resource group and seeds resource names.')
param environmentName string

@minLength(1)
@description('Region for the Function app, storage and monitoring (must offer Flex Consumption).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Region for the Batch account and GPU pool; empty = same as location. Pick one with GPU quota.')
param batchLocation string = ''

@description('Object id of the user or service principal running azd (AZURE_PRINCIPAL_ID); may upload videos and seed styles/models.')
param principalId string = ''

@description('Kind of principalId.')
@allowed([
  'User'
  'ServicePrincipal'
])
param principalType string = 'User'

@description('Object id of who may upload videos (Contributor on incoming, Reader on outgoing), typically an Entra group; empty = only the deployer.')
param uploadersPrincipalId string = ''

@description('Kind of uploadersPrincipalId.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param uploadersPrincipalType string = 'Group'

@description('Client id of the Entra ID app registration API callers sign in to (docs/security.md); empty = the API answers 401 until it is set.')
param authClientId string = ''

// --- network -----------------------------------------------------------------------------------

@description('Private networking: VNet integration for the app, private endpoints for storage and Batch, deny by default, GPU nodes without public IPs.')
param vnetEnabled bool = false

@description('With vnetEnabled: public IP ranges (CIDR) still allowed into the data account and Batch auto-storage (uploaders, the machine running azd).')
param allowedIpRanges array = []

// --- GPU pool ----------------------------------------------------------------------------------

@description('VM size of the GPU nodes (needs Batch core quota for its family in batchLocation).')
param gpuVmSize string = 'Standard_NC4as_T4_v3'

@description('Most GPU nodes the pool autoscales to.')
@minValue(1)
@maxValue(100)
param maxGpuNodes int = 4

@description('Use Spot (low-priority) nodes instead of dedicated ones: much cheaper, may be evicted (Batch requeues the task).')
param useSpotNodes bool = true

@description('With Spot nodes: dedicated nodes the pool may add when Spot capacity is preempted or unavailable (0 = Spot only).')
@minValue(0)
@maxValue(100)
param dedicatedFallbackNodes int = 1

@description('Batch pool id the app submits to.')
param batchPoolId string = 'stylebatch-gpu'

@description('Subnet resource id for the pool nodes without vnetEnabled; empty = Batch-managed networking.')
param batchSubnetId string = ''

// --- Function app ------------------------------------------------------------------------------

@description('Memory per Function app instance, MB.')
@allowed([
  2048
  4096
])
param functionInstanceMemoryMB int = 2048

@description('Most Function app instances.')
@minValue(1)
@maxValue(1000)
param functionMaximumInstances int = 40

@description('Days intermediates in the work container are kept before the lifecycle rule deletes them.')
@minValue(1)
param workRetentionDays int = 3

// --- names -------------------------------------------------------------------------------------

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
  app: 'stylebatch'
}
var batchRegion = empty(batchLocation) ? location : batchLocation
var functionAppName = 'func-${resourceToken}'
var batchApplicationName = 'stylebatch'
var triggerFunctionName = 'on_upload'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module identities 'modules/identities.bicep' = {
  name: 'identities'
  scope: rg
  params: {
    location: location
    tags: tags
    functionIdentityName: 'id-func-${resourceToken}'
    poolIdentityName: 'id-pool-${resourceToken}'
    batchAccountIdentityName: 'id-batch-${resourceToken}'
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    location: location
    tags: tags
    logAnalyticsName: 'log-${resourceToken}'
    applicationInsightsName: 'appi-${resourceToken}'
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    location: location
    tags: tags
    name: 'st${resourceToken}'
    vnetEnabled: vnetEnabled
    allowedIpRanges: allowedIpRanges
    workRetentionDays: workRetentionDays
    logAnalyticsId: monitoring.outputs.logAnalyticsId
    webOrigins: ['https://${functionAppName}.azurewebsites.net']
  }
}

module hostStorage 'modules/host-storage.bicep' = {
  name: 'host-storage'
  scope: rg
  params: {
    location: location
    tags: tags
    name: 'sth${resourceToken}'
    deploymentContainerName: 'app-package-${resourceToken}'
    vnetEnabled: vnetEnabled
  }
}

module batch 'modules/batch-account.bicep' = {
  name: 'batch-account'
  scope: rg
  params: {
    location: batchRegion
    tags: tags
    name: 'ba${resourceToken}'
    autoStorageName: 'stba${resourceToken}'
    batchAccountIdentityId: identities.outputs.batchAccountIdentityId
    batchAccountIdentityPrincipalId: identities.outputs.batchAccountIdentityPrincipalId
    poolIdentityId: identities.outputs.poolIdentityId
    poolIdentityPrincipalId: identities.outputs.poolIdentityPrincipalId
    applicationName: batchApplicationName
    logAnalyticsId: monitoring.outputs.logAnalyticsId
    vnetEnabled: vnetEnabled
    allowedIpRanges: allowedIpRanges
  }
}

module network 'modules/network.bicep' = if (vnetEnabled) {
  name: 'network'
  scope: rg
  params: {
    location: location
    tags: tags
    namePrefix: 'stylebatch-${resourceToken}'
    dataStorageId: storage.outputs.id
    hostStorageId: hostStorage.outputs.id
    batchAccountId: batch.outputs.id
  }
}

// The GPU pool: infra/batch/pool.bicep, beside the node-side files it loads and installs
// (autoscale formula, start task, task launcher). Spot: up to maxGpuNodes Spot nodes, plus up to dedicatedFallbackNodes
// dedicated ones while Spot is preempted; dedicated only: maxGpuNodes dedicated nodes.
module pool 'batch/pool.bicep' = {
  name: 'batch-pool'
  scope: rg
  params: {
    batchAccountName: batch.outputs.name
    poolId: batchPoolId
    vmSize: gpuVmSize
    nodeIdentityId: identities.outputs.poolIdentityId
    applicationPackageName: batch.outputs.applicationName
    maxNodes: maxGpuNodes
    maxSpotNodes: useSpotNodes ? maxGpuNodes : 0
    maxDedicatedNodes: useSpotNodes ? min(dedicatedFallbackNodes, maxGpuNodes) : maxGpuNodes
    subnetId: vnetEnabled ? network.outputs.poolSubnetId : batchSubnetId
    publicIpProvision: vnetEnabled ? 'NoPublicIPAddresses' : 'BatchManaged'
  }
}

module rbac 'modules/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    hostStorageAccountName: hostStorage.outputs.name
    batchAccountName: batch.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    functionPrincipalId: identities.outputs.functionIdentityPrincipalId
    eventGridPrincipalId: eventGrid.outputs.principalId
    poisonQueueName: storage.outputs.poisonQueueName
    deployerPrincipalId: principalId
    deployerPrincipalType: principalType
    uploadersPrincipalId: uploadersPrincipalId
    uploadersPrincipalType: uploadersPrincipalType
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'function-app'
  scope: rg
  params: {
    location: location
    tags: tags
    serviceName: 'api'
    name: functionAppName
    planName: 'plan-${resourceToken}'
    identityId: identities.outputs.functionIdentityId
    identityClientId: identities.outputs.functionIdentityClientId
    hostStorageAccountName: hostStorage.outputs.name
    hostStorageBlobEndpoint: hostStorage.outputs.blobEndpoint
    storageBlobEndpoint: storage.outputs.blobEndpoint
    storageQueueEndpoint: storage.outputs.queueEndpoint
    deploymentContainerName: hostStorage.outputs.deploymentContainerName
    authClientId: authClientId
    logAnalyticsId: monitoring.outputs.logAnalyticsId
    subnetId: vnetEnabled ? network.outputs.appSubnetId : ''
    applicationInsightsConnectionString: monitoring.outputs.applicationInsightsConnectionString
    instanceMemoryMB: functionInstanceMemoryMB
    maximumInstanceCount: functionMaximumInstances
    appSettings: {
      BATCH_BACKEND: 'azure'
      BATCH_ACCOUNT_URL: batch.outputs.url
      BATCH_ACCOUNT_NAME: batch.outputs.name
      BATCH_POOL_ID: pool.outputs.poolId
      BATCH_APP_PACKAGE: batch.outputs.applicationName
      // For the app's sizing, wall-time and cost estimates.
      BATCH_VM_SIZE: pool.outputs.vmSize
      BATCH_MAX_NODES: string(maxGpuNodes)
      BATCH_SPOT: useSpotNodes ? 'true' : 'false'
      // Chunks sized to ~2 GPU-minutes each (start-up overhead vs rework after a failure).
      CHUNK_TARGET_SECONDS: '120'
    }
  }
  // The host needs its storage roles before it first starts.
  dependsOn: [
    rbac
  ]
}

module eventGrid 'modules/eventgrid-topic.bicep' = {
  name: 'eventgrid-topic'
  scope: rg
  params: {
    location: location
    tags: tags
    name: 'evgt-${resourceToken}'
    storageAccountId: storage.outputs.id
    logAnalyticsId: monitoring.outputs.logAnalyticsId
  }
}

// --- outputs: azd stores these in .azure/<env>/.env for the hooks and for you ----------------------

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_FUNCTION_APP_URL string = functionApp.outputs.url
output AZURE_FUNCTION_TRIGGER_NAME string = triggerFunctionName
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_STORAGE_BLOB_ENDPOINT string = storage.outputs.blobEndpoint
output AZURE_HOST_STORAGE_ACCOUNT_NAME string = hostStorage.outputs.name
output AZURE_BATCH_ACCOUNT_NAME string = batch.outputs.name
output AZURE_BATCH_ACCOUNT_URL string = batch.outputs.url
output AZURE_BATCH_LOCATION string = batchRegion
output AZURE_BATCH_POOL_ID string = pool.outputs.poolId
output AZURE_BATCH_APPLICATION_NAME string = batch.outputs.applicationName
output AZURE_BATCH_NODE_IDENTITY_ID string = identities.outputs.poolIdentityId
output AZURE_EVENTGRID_SYSTEM_TOPIC_NAME string = eventGrid.outputs.name
output AZURE_FUNCTION_IDENTITY_CLIENT_ID string = identities.outputs.functionIdentityClientId
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
