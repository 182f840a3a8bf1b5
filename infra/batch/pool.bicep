// stylebatch GPU pool: the Azure Batch pool that runs the chunk (and training) tasks.
// Documented in infra/batch/README.md; the app side is docs/azure-batch.md.
//
// Include it from main.bicep as a module scoped to the Batch account's resource group:
//
//   module pool 'batch/pool.bicep' = {
//     name: 'batch-pool'
//     scope: rg
//     params: {
//       batchAccountName: batch.outputs.name
//       poolId: batchPoolId
//       vmSize: gpuVmSize
//       nodeIdentityId: identities.outputs.poolIdentityId
//       applicationPackageName: batch.outputs.applicationName
//       maxNodes: maxGpuNodes
//       maxSpotNodes: useSpotNodes ? maxGpuNodes : 0
//       maxDedicatedNodes: useSpotNodes ? 0 : maxGpuNodes
//       subnetId: batchSubnetId
//     }
//   }
//
// Parameters (all but batchAccountName have defaults):
//   batchAccountName        existing Batch account (BatchService allocation mode)
//   poolId                  pool id the app submits to (app setting BATCH_POOL_ID)
//   vmSize                  GPU VM size, one GPU per node (app setting BATCH_VM_SIZE for estimates)
//   nodeIdentityId          user-assigned identity for the nodes: application packages from the
//                           account's auto-storage only (no data role: every task carries a SAS
//                           for each of its own blobs); '' = no identity
//   applicationPackageName  Batch application holding scoring/ + shared/ (BATCH_APP_PACKAGE)
//   applicationPackageVersion  '' = its default version (BATCH_APP_VERSION)
//   installPackageOnPool    also install the package on every node at boot; keep false for the
//                           first deployment (the package is published after provisioning and a
//                           pool referencing a missing package cannot be created); tasks
//                           reference the package themselves either way
//   maxNodes                autoscale cap on nodes (app setting BATCH_MAX_NODES for estimates)
//   maxSpotNodes            cap on Spot (low-priority) nodes; 0 = no Spot
//   maxDedicatedNodes       cap on dedicated nodes: the fallback for preempted Spot nodes, or the
//                           whole pool when maxSpotNodes is 0
//   idleMinutes             no task for this long -> the pool scales to zero
//   subnetId                '' = Batch-managed networking; else the nodes' subnet (it needs
//                           outbound access to PyPI for the node's Python dependencies)
//   publicIpProvision       BatchManaged | NoPublicIPAddresses (only with subnetId)
//   preinstallDependencies  the start task builds the node's Python venv before any task runs
//                           (from scoring/requirements.lock: every package pinned with its hashes)
//   trustedLaunch           Trusted Launch VMs (vTPM; secure boot per secureBoot) where the size allows
//   secureBoot              UEFI secure boot (off: the image's NVIDIA kernel modules may be unsigned)
//   encryptionAtHost        encrypt temp disks and caches on the host (the subscription needs the
//                           Microsoft.Compute/EncryptionAtHost feature registered)
//   requireGpu              the start task fails a node where nvidia-smi finds no GPU
//   image*                  the node image: Ubuntu 22.04 HPC (NVIDIA driver + CUDA included)
//   nodeAgentSkuId          the Batch node agent for that image
//
// Outputs: poolId, vmSize, maxNodes, nodeIdentityId, autoscaleFormula (as deployed),
//          applicationPackageEnvVar (the variable tasks find the package in).

@description('Name of the existing Batch account.')
param batchAccountName string

@description('Pool id the app submits to (BATCH_POOL_ID).')
@minLength(1)
@maxLength(64)
param poolId string = 'stylebatch-gpu'

@description('GPU VM size; one GPU per node, one task per node.')
param vmSize string = 'Standard_NC4as_T4_v3'

@description('Resource id of the user-assigned identity for the nodes; empty for none.')
param nodeIdentityId string = ''

@description('Batch application that holds the scoring code (scoring/ + shared/).')
param applicationPackageName string = 'stylebatch'

@description('Application package version; empty = the application\'s default version.')
param applicationPackageVersion string = ''

@description('Install the application package on every node at boot (needs a published package).')
param installPackageOnPool bool = false

@description('Most nodes the pool autoscales to.')
@minValue(1)
@maxValue(1000)
param maxNodes int = 4

@description('Most Spot (low-priority) nodes; 0 disables Spot.')
@minValue(0)
param maxSpotNodes int = 4

@description('Most dedicated nodes (fallback for preempted Spot nodes, or the whole pool without Spot).')
@minValue(0)
param maxDedicatedNodes int = 0

@description('Minutes without any task before the pool scales to zero.')
@minValue(1)
@maxValue(60)
param idleMinutes int = 5

@description('Subnet resource id for the nodes; empty = Batch-managed networking.')
param subnetId string = ''

@description('Public IPs of the nodes when in a subnet.')
@allowed([
  'BatchManaged'
  'NoPublicIPAddresses'
])
param publicIpProvision string = 'BatchManaged'

@description('Build the node\'s Python environment in the start task (else the first task does).')
param preinstallDependencies bool = true

@description('Trusted Launch VMs (vTPM, measured boot); false for a VM size or image that does not support it.')
param trustedLaunch bool = true

@description('UEFI secure boot on Trusted Launch VMs (needs signed GPU driver modules in the image).')
param secureBoot bool = false

@description('Encryption at host (temp disk, caches); needs the subscription feature Microsoft.Compute/EncryptionAtHost.')
param encryptionAtHost bool = false

@description('Fail nodes without a working NVIDIA GPU.')
param requireGpu bool = true

@description('Node image: Ubuntu 22.04 HPC from the Data Science VM publisher (NVIDIA driver, CUDA).')
param imagePublisher string = 'microsoft-dsvm'
param imageOffer string = 'ubuntu-hpc'
param imageSku string = '2204'
param imageVersion string = 'latest'
param nodeAgentSkuId string = 'batch.node.ubuntu 22.04'

resource batchAccount 'Microsoft.Batch/batchAccounts@2024-07-01' existing = {
  name: batchAccountName
}

// The same file the tests evaluate (tests/batch/test_autoscale.py), parameters filled in here.
var formulaTemplate = loadTextContent('autoscale.formula')
var formulaWithNodes = replace(formulaTemplate, '{{MAX_NODES}}', string(maxNodes))
var formulaWithSpot = replace(formulaWithNodes, '{{MAX_SPOT_NODES}}', string(min(maxSpotNodes, maxNodes)))
var formulaWithDedicated = replace(formulaWithSpot, '{{MAX_DEDICATED_NODES}}', string(min(maxDedicatedNodes, maxNodes)))
var autoscaleFormula = replace(formulaWithDedicated, '{{IDLE_MINUTES}}', string(idleMinutes))

// The start task and the task launcher travel inside the pool definition (base64 environment
// settings), so a node needs nothing but this pool to get ready.
var startTaskSettings = concat([
  {
    name: 'STYLEBATCH_START_TASK_B64'
    value: loadFileAsBase64('start_task.sh')
  }
  {
    name: 'STYLEBATCH_RUN_SH_B64'
    value: loadFileAsBase64('run.sh')
  }
  {
    name: 'STYLEBATCH_REQUIRE_GPU'
    value: requireGpu ? '1' : '0'
  }
], preinstallDependencies ? [
  {
    name: 'STYLEBATCH_REQUIREMENTS_B64'
    value: loadFileAsBase64('../../scoring/requirements.lock')
  }
] : [])

var flatName = toLower(replace(replace(replace(applicationPackageName, '.', '_'), '-', '_'), '#', '_'))
var flatVersion = toLower(replace(replace(replace(applicationPackageVersion, '.', '_'), '-', '_'), '#', '_'))

resource pool 'Microsoft.Batch/batchAccounts/pools@2024-07-01' = {
  parent: batchAccount
  name: poolId
  identity: empty(nodeIdentityId) ? {
    type: 'None'
  } : {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${nodeIdentityId}': {}
    }
  }
  properties: {
    displayName: 'stylebatch GPU pool (${vmSize})'
    vmSize: vmSize
    deploymentConfiguration: {
      virtualMachineConfiguration: {
        imageReference: {
          publisher: imagePublisher
          offer: imageOffer
          sku: imageSku
          version: imageVersion
        }
        nodeAgentSkuId: nodeAgentSkuId
        securityProfile: trustedLaunch || encryptionAtHost ? {
          securityType: trustedLaunch ? 'trustedLaunch' : null
          encryptionAtHost: encryptionAtHost
          uefiSettings: trustedLaunch ? {
            secureBootEnabled: secureBoot
            vTpmEnabled: true
          } : null
        } : null
      }
    }
    scaleSettings: {
      autoScale: {
        formula: autoscaleFormula
        evaluationInterval: 'PT5M' // the shortest Batch allows
      }
    }
    // One task per node: a task owns the node's GPU (no sharing of GPU memory between chunks).
    taskSlotsPerNode: 1
    taskSchedulingPolicy: {
      nodeFillType: 'Spread'
    }
    interNodeCommunication: 'Disabled'
    targetNodeCommunicationMode: 'Simplified'
    networkConfiguration: empty(subnetId) ? null : {
      subnetId: subnetId
      publicIPAddressConfiguration: {
        provision: publicIpProvision
      }
    }
    startTask: {
      commandLine: '/bin/bash -c \'printf %s "$STYLEBATCH_START_TASK_B64" | base64 -d > start_task.sh && exec bash start_task.sh\''
      environmentSettings: startTaskSettings
      // Admin for the node-wide install; tasks run as task-scoped non-admin users
      // (shared/batch/azure.py) and can only read what this installs.
      userIdentity: {
        autoUser: {
          scope: 'Pool'
          elevationLevel: 'Admin'
        }
      }
      maxTaskRetryCount: 2 // transient apt/PyPI failures
      waitForSuccess: true // no task lands on a node that is not ready
    }
    applicationPackages: installPackageOnPool ? [
      {
        id: '${batchAccount.id}/applications/${applicationPackageName}'
        version: empty(applicationPackageVersion) ? null : applicationPackageVersion
      }
    ] : []
    metadata: [
      {
        name: 'app'
        value: 'stylebatch'
      }
    ]
  }
}

output poolId string = pool.name
output vmSize string = vmSize
output maxNodes int = maxNodes
output nodeIdentityId string = nodeIdentityId
output autoscaleFormula string = autoscaleFormula
output applicationPackageEnvVar string = empty(applicationPackageVersion) ? 'AZ_BATCH_APP_PACKAGE_${flatName}' : 'AZ_BATCH_APP_PACKAGE_${flatName}_${flatVersion}'
