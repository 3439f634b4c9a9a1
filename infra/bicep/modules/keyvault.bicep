// Optional client-secret mode: a Key Vault (RBAC authorization, purge protection) holding the app
// registration's client secret; the function identity may read only that secret
// (Key Vault Secrets User scoped to the secret). The app reads it through a Key Vault reference.

@description('Key Vault name (3-24 characters).')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region.')
param location string

@description('Client secret of the app registration used when SIGNINS_AUTH=client-secret.')
@secure()
param clientSecret string

@description('Name of the secret (main.bicep builds the Key Vault reference from it).')
param secretName string

@description('Expiry of the secret (Unix seconds, 0 = none); set it to the app registration secret\'s own expiry.')
param secretExpiresUnix int

@description('Object id of the function identity.')
param principalId string

@description('Tags for every resource.')
param tags object = {}

// Key Vault Secrets User
var secretsUserRoleId = '4633458b-17de-408a-b874-0445c86b69e6'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109:Key Vault references from a Flex Consumption app without VNet integration resolve over the public endpoint; access is RBAC-only.
  // checkov:skip=CKV_AZURE_189:Same reason as CKV_AZURE_109: no private network in this deployment.
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource secret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: secretName
  properties: {
    value: clientSecret
    contentType: 'text/plain'
    attributes: {
      enabled: true
      exp: secretExpiresUnix > 0 ? secretExpiresUnix : null
    }
  }
}

resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: secret
  name: guid(secret.id, secretsUserRoleId, 'function')
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', secretsUserRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

@description('Versionless secret URI for the Key Vault reference app setting.')
output secretUri string = '${vault.properties.vaultUri}secrets/${secret.name}'
