// The stylebatch Function app on the Flex Consumption plan (Linux, Python 3.11).
//   - one user-assigned identity for everything: host storage, deployment storage, app data,
//     Batch, Application Insights. No keys or connection strings with secrets in app settings.
//   - two storage accounts: the host's (AzureWebJobsStorage, Durable task hub, the deployment
//     package) and the data account (STORAGE: the blob trigger and the app's containers).
//   - the platform pulls the deployment package from a blob container with that identity.
//   - basic-auth publishing (FTP/SCM) is off; azd deploys with Entra ID.
//   - App Service authentication (Entra ID): every API call carries a signed-in caller; the app
//     reads it from the X-MS-CLIENT-PRINCIPAL headers the platform injects (shared/callers.py).
//     The Event Grid webhook keeps its system-key check and is excluded from sign-in.
//   - with vnetEnabled: VNet integration (all outbound traffic through the VNet, to the private
//     endpoints of storage and Batch).
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

@description('Host storage account name (AzureWebJobsStorage, Durable task hub).')
param hostStorageAccountName string

@description('Blob endpoint of the host storage account (holds the deployment container).')
param hostStorageBlobEndpoint string

@description('Blob endpoint of the data storage account (https://<account>.blob.core.windows.net/).')
param storageBlobEndpoint string

@description('Queue endpoint of the data storage account (the blob trigger\'s poison queue).')
param storageQueueEndpoint string

@description('Container of the host storage account holding the deployment package.')
param deploymentContainerName string

@description('Client id of the Entra ID app registration callers sign in to; empty = sign-in not configured yet (every API call gets 401).')
param authClientId string = ''

@description('Log Analytics workspace for the app\'s logs; empty to skip.')
param logAnalyticsId string = ''

@description('Subnet for VNet integration (delegated to Microsoft.App/environments); empty = none.')
param subnetId string = ''

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

// Identity-based connections only. `AzureWebJobsStorage` is the host's (and Durable's task hub),
// on the host account; `STORAGE` is the data account, under the name the app's blob trigger and
// settings use (shared/settings.py reads STORAGE__blobServiceUri as the account URL).
var baseSettings = {
  AzureWebJobsStorage__accountName: hostStorageAccountName
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
  //checkov:skip=CKV_AZURE_225:zone redundancy on Flex Consumption needs always-ready instances (billed while idle) and is region-limited; the app is stateless (state lives in storage)
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
  //checkov:skip=CKV_AZURE_222:the API (Entra ID sign-in) and the Event Grid webhook must be reachable; storage and Batch are the private side
  //checkov:skip=CKV_AZURE_17:callers authenticate with Entra ID (App Service authentication); Event Grid cannot present a client certificate
  //checkov:skip=CKV_AZURE_212:Flex Consumption scales from zero by design; always-ready instances would bill while idle
  //checkov:skip=CKV_AZURE_213:health-check pings would keep a scale-to-zero Flex app awake; the platform replaces failed instances itself
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
    virtualNetworkSubnetId: empty(subnetId) ? null : subnetId
    siteConfig: {
      minTlsVersion: '1.2'
      http20Enabled: true
      ftpsState: 'Disabled'
      appSettings: [for setting in items(allSettings): {
        name: setting.key
        value: string(setting.value)
      }]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${hostStorageBlobEndpoint}${deploymentContainerName}'
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

// Entra ID sign-in in front of the API. Unauthenticated calls get 401 (an API, no login page);
// the blob trigger's Event Grid webhook authenticates with its system key instead.
resource auth 'Microsoft.Web/sites/config@2024-04-01' = {
  //checkov:skip=CKV_AZURE_13:authsettingsV2 keeps the switch in platform.enabled (true below); the check reads the V1 field
  //checkov:skip=CKV_AZURE_63:this is the authsettingsV2 config, not the site's web config the check reads
  //checkov:skip=CKV_AZURE_65:this is the authsettingsV2 config, not the site's web config the check reads
  //checkov:skip=CKV_AZURE_66:this is the authsettingsV2 config, not the site's web config the check reads
  //checkov:skip=CKV_AZURE_80:this is the authsettingsV2 config, not the site's web config the check reads
  //checkov:skip=CKV_AZURE_88:this is the authsettingsV2 config, not the site's web config the check reads
  //checkov:skip=CKV_AZURE_222:this is the authsettingsV2 config, not the site's web config the check reads
  parent: app
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'Return401'
      excludedPaths: [
        '/runtime/webhooks/blobs'
      ]
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: !empty(authClientId)
        registration: {
          clientId: authClientId
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
        }
        validation: {
          allowedAudiences: empty(authClientId) ? [] : [
            'api://${authClientId}'
            authClientId
          ]
        }
      }
    }
    login: {
      tokenStore: {
        enabled: false
      }
    }
  }
}

// Function executions and host logs (who called, what failed) to Log Analytics.
resource appDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = if (!empty(logAnalyticsId)) {
  name: 'app-to-log-analytics'
  scope: app
  properties: {
    workspaceId: logAnalyticsId
    logs: [
      {
        category: 'FunctionAppLogs'
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

output id string = app.id
output name string = app.name
output defaultHostName string = app.properties.defaultHostName
output url string = 'https://${app.properties.defaultHostName}'
