// The Functions host's own storage account: AzureWebJobsStorage (host leases and keys, the Durable
// task hub's queues, tables and blobs) and the Flex Consumption deployment container the platform
// reads the app package from. No user data and no user role: only the app identity (and the
// platform deploying with it) can write here, so no uploader can replace the app's code.
// Same defaults as the data account: Entra ID only, TLS 1.2, HTTPS only, infrastructure encryption;
// with vnetEnabled it takes traffic only through its private endpoints.

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object = {}

@description('Storage account name (3-24 lowercase letters and digits, globally unique).')
@minLength(3)
@maxLength(24)
param name string

@description('Blob container the Flex Consumption app package is deployed to.')
param deploymentContainerName string

@description('Private networking: no public endpoint, private endpoints only (network.bicep).')
param vnetEnabled bool = false

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  //checkov:skip=CKV_AZURE_206:host state and the app package are rebuilt by azd deploy; LRS is enough and cheapest
  //checkov:skip=CKV_AZURE_59:vnetEnabled=false only: without a VNet the Flex app reaches it over the internet (Entra ID only); Disabled with vnetEnabled=true
  //checkov:skip=CKV_AZURE_35:vnetEnabled=false only: without a VNet the Flex app reaches it over the internet (Entra ID only); Deny with vnetEnabled=true
  //checkov:skip=CKV_AZURE_43:name is a parameter; main.bicep builds it from lower-case letters and digits (3-24)
  name: name
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
    publicNetworkAccess: vnetEnabled ? 'Disabled' : 'Enabled'
    networkAcls: {
      defaultAction: vnetEnabled ? 'Deny' : 'Allow'
      bypass: 'AzureServices'
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
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

output id string = storage.id
output name string = storage.name
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output deploymentContainerName string = deploymentContainer.name
