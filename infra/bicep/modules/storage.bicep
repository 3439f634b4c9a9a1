// One hardened StorageV2 account with private blob containers: HTTPS only, TLS 1.2+, no shared key
// (identity auth only), no anonymous access, blob and container soft delete.
// Used by main.bicep for the Functions host/deployment account, the exports account and, optionally,
// the account an Entra diagnostic setting archives sign-in logs to (with a lifecycle rule).

@description('Storage account name (3-24 lowercase letters and digits).')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region.')
param location string

@description('Private blob containers to create.')
param containers array

@description('Days deleted blobs and containers stay recoverable.')
@minValue(1)
@maxValue(365)
param softDeleteDays int = 14

@description('Container names (or name/path prefixes) whose append blobs a lifecycle rule deletes after expireAfterDays ([] = no rule): Azure Monitor appends to one blob per hour and never deletes them.')
param expireAppendBlobPrefixes array = []

@description('Days since the last write after which those append blobs are deleted.')
@minValue(1)
@maxValue(365)
param expireAfterDays int = 7

@description('Tags for every resource.')
param tags object = {}

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35:Flex Consumption without VNet integration and Power BI without a gateway both reach the account over its public endpoint; access is Entra ID RBAC only (shared key disabled).
  // checkov:skip=CKV_AZURE_206:Exports are re-creatable from Graph (30-day retention) and the host account holds only leases and the package; LRS is enough (change sku.name for geo-redundancy).
  // checkov:skip=CKV_AZURE_59:Same as CKV_AZURE_35: public endpoint, Entra ID RBAC only, no anonymous or shared-key access.
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    supportsHttpsTrafficOnly: true
    minimumTlsVersion: 'TLS1_2'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowCrossTenantReplication: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: { enabled: true, keyType: 'Account' }
        file: { enabled: true, keyType: 'Account' }
        queue: { enabled: true, keyType: 'Account' }
        table: { enabled: true, keyType: 'Account' }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: softDeleteDays
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: softDeleteDays
    }
  }
}

resource blobContainers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [
  for container in containers: {
    parent: blobService
    name: container
    properties: {
      publicAccess: 'None'
    }
  }
]

// Delete is the one lifecycle action append blobs support.
resource expiry 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = if (!empty(expireAppendBlobPrefixes)) {
  parent: account
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'expire-append-blobs'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'appendBlob'
              ]
              prefixMatch: expireAppendBlobPrefixes
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: expireAfterDays
                }
              }
            }
          }
        }
      ]
    }
  }
}

@description('Resource id of the account.')
output id string = account.id

@description('Blob endpoint, e.g. https://<account>.blob.core.windows.net/.')
output blobEndpoint string = account.properties.primaryEndpoints.blob
