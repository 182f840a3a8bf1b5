// User-assigned managed identities for stylebatch. Three identities, one per actor, so each can be
// given only what it needs (see rbac.bicep and batch-account.bicep):
//   - func:  the Function app (host storage, data containers, Batch jobs, App Insights ingestion)
//   - pool:  the GPU pool's compute nodes (read styles/models/work, write work/models, app packages)
//   - batch: the Batch account itself (manages its auto-storage account without keys)

@description('Azure region for the identities.')
param location string

@description('Tags applied to every identity.')
param tags object = {}

@description('Name of the Function app identity.')
param functionIdentityName string

@description('Name of the Batch pool (node) identity.')
param poolIdentityName string

@description('Name of the Batch account identity.')
param batchAccountIdentityName string

resource functionIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: functionIdentityName
  location: location
  tags: tags
}

resource poolIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: poolIdentityName
  location: location
  tags: tags
}

resource batchAccountIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: batchAccountIdentityName
  location: location
  tags: tags
}

output functionIdentityId string = functionIdentity.id
output functionIdentityName string = functionIdentity.name
output functionIdentityClientId string = functionIdentity.properties.clientId
output functionIdentityPrincipalId string = functionIdentity.properties.principalId

output poolIdentityId string = poolIdentity.id
output poolIdentityName string = poolIdentity.name
output poolIdentityClientId string = poolIdentity.properties.clientId
output poolIdentityPrincipalId string = poolIdentity.properties.principalId

output batchAccountIdentityId string = batchAccountIdentity.id
output batchAccountIdentityPrincipalId string = batchAccountIdentity.properties.principalId
