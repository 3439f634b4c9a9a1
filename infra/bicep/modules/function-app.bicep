// The Function App on Flex Consumption (FC1): custom handler runtime (`custom` 1.0, the
// signin-export binary started with `serve`, see host.json), package deployed to a blob container
// read with the app's identity. App settings are set by main.bicep (they need the Key Vault and
// role assignments first).

@description('Function App name (globally unique host name <name>.azurewebsites.net).')
@minLength(2)
@maxLength(60)
param name string

@description('Flex Consumption plan name.')
param planName string

@description('Azure region.')
param location string

@description('SystemAssigned (default) or UserAssigned.')
@allowed([
  'SystemAssigned'
  'UserAssigned'
])
param identityType string

@description('Resource id of the user-assigned identity (only when identityType is UserAssigned).')
param userAssignedIdentityId string = ''

@description('Blob container URL the deployment package is uploaded to, e.g. https://<account>.blob.core.windows.net/app-package.')
param deploymentContainerUrl string

@description('Memory of each instance in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int

@description('Maximum number of instances the app scales out to.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int

@description('Tags for every resource.')
param tags object = {}

var userAssigned = identityType == 'UserAssigned'

// checkov:skip=CKV_AZURE_225:Flex Consumption (FC1) plans have no zone-redundancy switch on the plan resource.
// checkov:skip=CKV_AZURE_212:Flex Consumption scales on demand (maximumInstanceCount); a fixed minimum of instances does not apply to FC1.
// checkov:skip=CKV_AZURE_211:FC1 is a consumption SKU by design; the export runs a few minutes every half hour.
resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

// checkov:skip=CKV_AZURE_56:Callers of /api/refresh authenticate with a function key (authLevel function); App Service Authentication would also block the platform's timer and key-based calls.
// checkov:skip=CKV_AZURE_221:Power BI and admins call /api/refresh over the internet with a function key; private endpoints would need a VNet this deployment does not create.
resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: userAssigned
    ? {
        type: 'UserAssigned'
        userAssignedIdentities: {
          '${userAssignedIdentityId}': {}
        }
      }
    : {
        type: 'SystemAssigned'
      }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    publicNetworkAccess: 'Enabled'
    keyVaultReferenceIdentity: userAssigned ? userAssignedIdentityId : 'SystemAssigned'
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      remoteDebuggingEnabled: false
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: userAssigned
            ? {
                type: 'UserAssignedIdentity'
                userAssignedIdentityResourceId: userAssignedIdentityId
              }
            : {
                type: 'SystemAssignedIdentity'
              }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'custom'
        version: '1.0'
      }
    }
  }
}

// No basic-auth publishing credentials: deploy with Entra ID (az functionapp deploy / func publish).
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

@description('Object id of the system-assigned identity ("" for user-assigned).')
output systemPrincipalId string = userAssigned ? '' : site.identity.principalId

@description('Default host name, <name>.azurewebsites.net.')
output defaultHostName string = site.properties.defaultHostName
