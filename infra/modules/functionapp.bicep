// The stylebatch Function app on the Flex Consumption plan (Linux, Python 3.11).
//   - one user-assigned identity for everything: host storage, deployment storage, app data,
//     Batch, Application Insights. No keys or connection strings with secrets in app settings.
//   - the platform pulls the deployment package from a blob container with that identity.
//   - basic-auth publishing (FTP/SCM) is off; azd deploys with Entra ID.
// Flex Consumption rejects some classic settings (FUNCTIONS_WORKER_RUNTIME,
// FUNCTIONS_EXTENSION_VERSION, WEBSITE_RUN_FROM_PACKAGE, ...): runtime and version live in
// functionAppConfig instead.

@description('Azure region.')
param location string

@description('Tags applied to the plan.')
param tags object = {}

@description('azd service name; azd finds the app to deploy to by the azd-service-name tag.')
param serviceName string = 'api'

@description('Function app name (globally unique, becomes <name>.azurewebsites.net).')
param name string

@description('Flex Consumption plan name.')
param planName string

@description('Resource id of the app\'s user-assigned identity.')
param identityId string

@description('Client id of the app\'s user-assigned identity.')
param identityClientId string

@description('Data/host storage account name.')
param storageAccountName string

@description('Blob endpoint of the storage account (https://<account>.blob.core.windows.net/).')
param storageBlobEndpoint string

@description('Queue endpoint of the storage account.')
param storageQueueEndpoint string

@description('Container holding the deployment package.')
param deploymentContainerName string

@description('Application Insights connection string (no secret: local auth is disabled).')
param applicationInsightsConnectionString string

@description('Memory per instance, MB (Flex Consumption: 2048 or 4096).')
@allowed([
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Most instances the app scales out to.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Python version.')
@allowed([
  '3.11'
])
param pythonVersion string = '3.11'

@description('App settings specific to stylebatch (Batch account, pool, ...), merged over the base settings.')
param appSettings object = {}

// Identity-based connections only. `AzureWebJobsStorage` is the host's (and Durable's task hub);
// `STORAGE` is the same account under the name the app's blob trigger and settings use
// (shared/settings.py reads STORAGE__blobServiceUri as the account URL).
var baseSettings = {
  AzureWebJobsStorage__accountName: storageAccountName
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  STORAGE__blobServiceUri: storageBlobEndpoint
  STORAGE__queueServiceUri: storageQueueEndpoint
  STORAGE__credential: 'managedidentity'
  STORAGE__clientId: identityClientId
  STORAGE_ACCOUNT_URL: storageBlobEndpoint
  // DefaultAzureCredential picks the user-assigned identity by this client id.
  AZURE_CLIENT_ID: identityClientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
}

var allSettings = union(baseSettings, appSettings)

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': serviceName
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    siteConfig: {
      minTlsVersion: '1.2'
      appSettings: [for setting in items(allSettings): {
        name: setting.key
        value: string(setting.value)
      }]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }
}

// No basic-auth publishing credentials (FTP and the SCM site): deployment uses Entra ID.
resource ftpPolicy 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPolicy 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'scm'
  properties: {
    allow: false
  }
}

output id string = app.id
output name string = app.name
output defaultHostName string = app.properties.defaultHostName
output url string = 'https://${app.properties.defaultHostName}'
