// The stylebatch data storage account: user data only, nothing the app runs from.
//   - the app's data containers (incoming, styles, models, work, outgoing), each with its own
//     role assignments (rbac.bicep): an uploader can write `incoming` and read `outgoing`, nothing else
//   - `deadletter`: Event Grid's undeliverable BlobCreated events
//   - the blob trigger's poison queue (the only queue here)
// The Functions host storage and the deployment package live in another account
// (host-storage.bicep), so whoever may upload a video cannot replace the app's code.
// Security by default: no shared keys (Entra ID only), TLS 1.2, no anonymous blob access, HTTPS
// only, infrastructure (double) encryption. With vnetEnabled the account denies every network
// but its private endpoints (network.bicep) and allowedIpRanges.
// A lifecycle rule deletes what the pipeline leaves in `work` after a few days.

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object = {}

@description('Storage account name (3-24 lowercase letters and digits, globally unique).')
@minLength(3)
@maxLength(24)
param name string

@description('Replication: zone-redundant by default (user uploads and results live here).')
@allowed([
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
  'Standard_LRS'
])
param skuName string = 'Standard_ZRS'

@description('Private networking: deny every network except private endpoints and allowedIpRanges.')
param vnetEnabled bool = false

@description('With vnetEnabled: public IP ranges (CIDR) still allowed in, e.g. where uploads come from.')
param allowedIpRanges array = []

@description('Days after their last change that blobs in the `work` container are deleted.')
@minValue(1)
param workRetentionDays int = 3

@description('Days deleted blobs and containers can be restored (soft delete).')
@minValue(1)
@maxValue(365)
param softDeleteRetentionDays int = 7

@description('Origins whose pages may upload to and read blobs with a SAS (the web page, served by the Function app).')
param webOrigins array = []

@description('Log Analytics workspace for blob write/delete audit logs; empty to skip.')
param logAnalyticsId string = ''

// The containers the app uses (the contract in docs/architecture.md), plus Event Grid's dead letters.
var dataContainers = [
  'incoming'
  'styles'
  'models'
  'work'
  'outgoing'
]
var deadLetterContainerName = 'deadletter'
// The blob trigger writes blobs it gave up on to this queue of the trigger's own account.
var poisonQueueName = 'webjobs-blobtrigger-poison'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  //checkov:skip=CKV_AZURE_59:public endpoint only while vnetEnabled=false (uploads from anywhere, Entra ID only); vnetEnabled=true disables it
  //checkov:skip=CKV_AZURE_206:zone-redundant (ZRS) by default; geo-replication is a cost choice, skuName accepts GRS and GZRS
  //checkov:skip=CKV_AZURE_35:vnetEnabled=false only: without a VNet the app and uploaders reach it over the internet (Entra ID only); Deny with vnetEnabled=true
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    // Entra ID only: account keys cannot be used, so no key can leak into settings or logs.
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: vnetEnabled && empty(allowedIpRanges) ? 'Disabled' : 'Enabled'
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
      // Takes effect only when the account is created; an existing account keeps its setting.
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
        }
        file: {
          enabled: true
        }
        queue: {
          enabled: true
          keyType: 'Account'
        }
        table: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    cors: {
      corsRules: empty(webOrigins) ? [] : [
        {
          allowedOrigins: webOrigins
          allowedMethods: ['GET', 'HEAD', 'PUT', 'OPTIONS']
          allowedHeaders: ['*']
          exposedHeaders: ['etag', 'x-ms-request-id', 'content-length', 'content-range']
          maxAgeInSeconds: 3600
        }
      ]
    }
    deleteRetentionPolicy: {
      enabled: true
      days: softDeleteRetentionDays
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: softDeleteRetentionDays
    }
  }
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [for container in dataContainers: {
  parent: blobService
  name: container
  properties: {
    publicAccess: 'None'
  }
}]

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deadLetterContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource poisonQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: poisonQueueName
}

resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'delete-work-intermediates'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
                'appendBlob'
              ]
              // "<container>/<prefix>": every blob in the `work` container.
              prefixMatch: [
                'work/'
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: workRetentionDays
                }
              }
              snapshot: {
                delete: {
                  daysAfterCreationGreaterThan: workRetentionDays
                }
              }
            }
          }
        }
      ]
    }
  }
  dependsOn: [
    containers
  ]
}

// Who wrote or deleted which blob (uploads into `incoming`, results into `outgoing`).
resource blobAudit 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = if (!empty(logAnalyticsId)) {
  name: 'blob-write-delete-to-log-analytics'
  scope: blobService
  properties: {
    workspaceId: logAnalyticsId
    logs: [
      {
        category: 'StorageWrite'
        enabled: true
      }
      {
        category: 'StorageDelete'
        enabled: true
      }
    ]
  }
}

output id string = storage.id
output name string = storage.name
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output queueEndpoint string = storage.properties.primaryEndpoints.queue
output containerNames array = dataContainers
output deadLetterContainerName string = deadLetterContainer.name
output poisonQueueName string = poisonQueue.name
