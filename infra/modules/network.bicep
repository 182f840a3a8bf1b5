// Private networking for stylebatch (deployed only with vnetEnabled=true):
//   - a VNet with three subnets, each behind its own network security group:
//       app        the Function app's VNet integration (delegated to Microsoft.App/environments,
//                  as Flex Consumption requires)
//       pool       the Batch nodes: no public IPs; outbound through a NAT gateway only (PyPI for the
//                  node's pinned Python packages), nothing can connect in
//       endpoints  the private endpoints
//   - private endpoints, each with its private DNS zone linked to the VNet:
//       data account: blob, queue (the blob trigger's poison queue)
//       host account: blob, queue, table (Functions host + Durable task hub)
//       Batch account: batchAccount (the app's API calls), nodeManagement (the nodes' simplified
//       communication with the Batch service, whose public endpoint is then off)
// The storage accounts and the Batch account deny public access when vnetEnabled is on.

@description('Azure region (the app\'s; the Batch account must be in the same region for its endpoints).')
param location string

@description('Tags applied to every resource.')
param tags object = {}

@description('Name prefix of the network resources.')
param namePrefix string

@description('Address space of the VNet.')
param addressPrefix string = '10.40.0.0/16'

@description('Subnets inside addressPrefix: the app\'s integration, the Batch nodes, the private endpoints.')
param subnetPrefixes object = {
  app: '10.40.0.0/24'
  endpoints: '10.40.1.0/24'
  pool: '10.40.4.0/22'
}

@description('Resource id of the data storage account.')
param dataStorageId string

@description('Resource id of the host storage account.')
param hostStorageId string

@description('Resource id of the Batch account.')
param batchAccountId string

var storageSuffix = environment().suffixes.storage
var zoneNames = {
  blob: 'privatelink.blob.${storageSuffix}'
  queue: 'privatelink.queue.${storageSuffix}'
  table: 'privatelink.table.${storageSuffix}'
  batch: 'privatelink.batch.azure.com'
}
var zoneList = [
  zoneNames.blob
  zoneNames.queue
  zoneNames.table
  zoneNames.batch
]
// One private endpoint per (resource, sub-resource); `zone` names its DNS zone.
var endpoints = [
  {
    name: 'data-blob'
    target: dataStorageId
    group: 'blob'
    zone: 'blob'
  }
  {
    name: 'data-queue'
    target: dataStorageId
    group: 'queue'
    zone: 'queue'
  }
  {
    name: 'host-blob'
    target: hostStorageId
    group: 'blob'
    zone: 'blob'
  }
  {
    name: 'host-queue'
    target: hostStorageId
    group: 'queue'
    zone: 'queue'
  }
  {
    name: 'host-table'
    target: hostStorageId
    group: 'table'
    zone: 'table'
  }
  {
    name: 'batch-account'
    target: batchAccountId
    group: 'batchAccount'
    zone: 'batch'
  }
  {
    name: 'batch-nodes'
    target: batchAccountId
    group: 'nodeManagement'
    zone: 'batch'
  }
]

resource appNsg 'Microsoft.Network/networkSecurityGroups@2024-05-01' = {
  name: '${namePrefix}-app-nsg'
  location: location
  tags: tags
}

resource poolNsg 'Microsoft.Network/networkSecurityGroups@2024-05-01' = {
  name: '${namePrefix}-pool-nsg'
  location: location
  tags: tags
  properties: {
    // Simplified node communication: the nodes dial out to Batch; nothing dials in.
    securityRules: [
      {
        name: 'deny-all-inbound'
        properties: {
          priority: 4096
          direction: 'Inbound'
          access: 'Deny'
          protocol: '*'
          sourceAddressPrefix: '*'
          sourcePortRange: '*'
          destinationAddressPrefix: '*'
          destinationPortRange: '*'
        }
      }
    ]
  }
}

resource endpointsNsg 'Microsoft.Network/networkSecurityGroups@2024-05-01' = {
  name: '${namePrefix}-endpoints-nsg'
  location: location
  tags: tags
}

resource natIp 'Microsoft.Network/publicIPAddresses@2024-05-01' = {
  name: '${namePrefix}-nat-ip'
  location: location
  tags: tags
  sku: {
    name: 'Standard'
  }
  properties: {
    publicIPAllocationMethod: 'Static'
  }
}

// Outbound only (the nodes' package installs); a NAT gateway accepts no inbound connection.
resource nat 'Microsoft.Network/natGateways@2024-05-01' = {
  name: '${namePrefix}-nat'
  location: location
  tags: tags
  sku: {
    name: 'Standard'
  }
  properties: {
    publicIpAddresses: [
      {
        id: natIp.id
      }
    ]
  }
}

resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' = {
  name: '${namePrefix}-vnet'
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        addressPrefix
      ]
    }
    subnets: [
      {
        name: 'app'
        properties: {
          addressPrefix: subnetPrefixes.app
          networkSecurityGroup: {
            id: appNsg.id
          }
          delegations: [
            {
              name: 'flex-consumption'
              properties: {
                serviceName: 'Microsoft.App/environments'
              }
            }
          ]
        }
      }
      {
        name: 'pool'
        properties: {
          addressPrefix: subnetPrefixes.pool
          networkSecurityGroup: {
            id: poolNsg.id
          }
          natGateway: {
            id: nat.id
          }
          defaultOutboundAccess: false
        }
      }
      {
        name: 'endpoints'
        properties: {
          addressPrefix: subnetPrefixes.endpoints
          networkSecurityGroup: {
            id: endpointsNsg.id
          }
          privateEndpointNetworkPolicies: 'Enabled'
        }
      }
    ]
  }
}

resource zones 'Microsoft.Network/privateDnsZones@2024-06-01' = [for zone in zoneList: {
  name: zone
  location: 'global'
  tags: tags
}]

resource zoneLinks 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2024-06-01' = [for (zone, i) in zoneList: {
  parent: zones[i]
  name: '${namePrefix}-link'
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnet.id
    }
  }
}]

resource privateEndpoints 'Microsoft.Network/privateEndpoints@2024-05-01' = [for ep in endpoints: {
  name: '${namePrefix}-pe-${ep.name}'
  location: location
  tags: tags
  properties: {
    subnet: {
      id: '${vnet.id}/subnets/endpoints'
    }
    privateLinkServiceConnections: [
      {
        name: ep.name
        properties: {
          privateLinkServiceId: ep.target
          groupIds: [
            ep.group
          ]
        }
      }
    ]
  }
}]

resource endpointDns 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2024-05-01' = [for (ep, i) in endpoints: {
  parent: privateEndpoints[i]
  name: 'default'
  properties: {
    privateDnsZoneConfigs: [
      {
        name: ep.zone
        properties: {
          privateDnsZoneId: resourceId('Microsoft.Network/privateDnsZones', zoneNames[ep.zone])
        }
      }
    ]
  }
  dependsOn: [
    zones
  ]
}]

output vnetId string = vnet.id
output appSubnetId string = '${vnet.id}/subnets/app'
output poolSubnetId string = '${vnet.id}/subnets/pool'
