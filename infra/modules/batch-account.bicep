// The Azure Batch account for stylebatch's GPU work, with its own small auto-storage account for
// application packages. Security by default:
//   - pool allocation mode BatchService (Batch owns the VMs; no subscription-level VM rights needed)
//   - Entra ID only: allowedAuthenticationModes has no SharedKey, so the account keys are useless
//   - auto-storage without keys: Batch reaches it with its own user-assigned identity, and compute
//     nodes download application packages with the pool identity (nodeIdentityReference)
//   - with vnetEnabled: no public endpoint; the app and the nodes reach the account through its
//     private endpoints (network.bicep), and auto-storage denies by default
// Diagnostic logs and metrics go to Log Analytics. The GPU pool itself lives in infra/batch/pool.bicep.

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object = {}

@description('Batch account name (3-24 lowercase letters and digits, unique in the region).')
@minLength(3)
@maxLength(24)
param name string

@description('Auto-storage account name (3-24 lowercase letters and digits, globally unique).')
@minLength(3)
@maxLength(24)
param autoStorageName string

@description('Resource id of the Batch account\'s user-assigned identity.')
param batchAccountIdentityId string

@description('Principal id of the Batch account\'s user-assigned identity.')
param batchAccountIdentityPrincipalId string

@description('Resource id of the pool (node) identity; nodes use it to download application packages.')
param poolIdentityId string

@description('Principal id of the pool (node) identity.')
param poolIdentityPrincipalId string

@description('Name of the Batch application that holds the scoring code package.')
param applicationName string = 'stylebatch'

@description('Log Analytics workspace for the account\'s diagnostic logs; empty to skip.')
param logAnalyticsId string = ''

@description('Private networking: no public endpoint on the account; auto-storage denies by default.')
param vnetEnabled bool = false

@description('With vnetEnabled: public IP ranges allowed into auto-storage (where `azd provision` publishes the application package from).')
param allowedIpRanges array = []

var roles = {
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageBlobDataReader: '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
}

resource autoStorage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  //checkov:skip=CKV_AZURE_206:holds only application packages, republished by azd provision; LRS is enough
  //checkov:skip=CKV_AZURE_59:the deployer publishes application packages from outside Azure; Entra ID only, deny-by-default ACL with vnetEnabled
  //checkov:skip=CKV_AZURE_35:vnetEnabled=false only: without a VNet nodes reach it over the internet (Entra ID only); Deny with vnetEnabled=true
  //checkov:skip=CKV_AZURE_43:name is a parameter; main.bicep builds it from lower-case letters and digits (3-24)
  name: autoStorageName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: vnetEnabled ? 'Deny' : 'Allow'
      bypass: 'AzureServices'
      ipRules: [for range in (vnetEnabled ? allowedIpRanges : []): {
        value: range
        action: 'Allow'
      }]
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      // Takes effect only when the account is created.
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
        }
      }
    }
  }
}

// Batch creates the application package containers and writes packages: Contributor on this
// dedicated account only (never on the data account).
resource batchManagesAutoStorage 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(autoStorage.id, batchAccountIdentityId, roles.storageBlobDataContributor)
  scope: autoStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: batchAccountIdentityPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Batch account manages its auto-storage (application packages) without keys'
  }
}

// Compute nodes only read application packages.
resource nodesReadAutoStorage 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(autoStorage.id, poolIdentityId, roles.storageBlobDataReader)
  scope: autoStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataReader)
    principalId: poolIdentityPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Batch compute nodes download application packages'
  }
}

resource batchAccount 'Microsoft.Batch/batchAccounts@2024-07-01' = {
  //checkov:skip=CKV_AZURE_76:Microsoft-managed keys; customer-managed keys need a Key Vault and key rotation this template does not run
  name: name
  location: location
  tags: tags
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${batchAccountIdentityId}': {}
    }
  }
  properties: {
    poolAllocationMode: 'BatchService'
    // No 'SharedKey': the app and the operators authenticate with Entra ID; tasks get a
    // task authentication token when they need to call Batch themselves.
    allowedAuthenticationModes: [
      'AAD'
      'TaskAuthenticationToken'
    ]
    publicNetworkAccess: vnetEnabled ? 'Disabled' : 'Enabled'
    autoStorage: {
      storageAccountId: autoStorage.id
      authenticationMode: 'BatchAccountManagedIdentity'
      nodeIdentityReference: {
        resourceId: poolIdentityId
      }
    }
  }
  dependsOn: [
    batchManagesAutoStorage
  ]
}

// The application the scoring code is published to (packages are uploaded by the postprovision
// hook; tasks reference it by name and use its default version).
resource application 'Microsoft.Batch/batchAccounts/applications@2024-07-01' = {
  parent: batchAccount
  name: applicationName
  properties: {
    displayName: 'stylebatch scoring code (scoring/ + shared/)'
    allowUpdates: true
  }
}

resource batchDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = if (!empty(logAnalyticsId)) {
  name: 'batch-to-log-analytics'
  scope: batchAccount
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

output id string = batchAccount.id
output name string = batchAccount.name
// accountEndpoint has no scheme (e.g. "mybatch.westeurope.batch.azure.com").
output endpoint string = batchAccount.properties.accountEndpoint
output url string = 'https://${batchAccount.properties.accountEndpoint}'
output applicationName string = application.name
output autoStorageName string = autoStorage.name
