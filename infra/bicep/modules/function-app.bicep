// The Function App on Flex Consumption (FC1): custom handler runtime (`custom` 1.0, the
// signin-export binary started with `serve`, see host.json), package deployed to a blob container
// read with the app's identity, app settings built by main.bicep.

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

@description('App settings (name -> value); Flex Consumption takes no FUNCTIONS_WORKER_RUNTIME / FUNCTIONS_EXTENSION_VERSION.')
param appSettings object

@description('Tags for every resource.')
param tags object = {}

var userAssigned = identityType == 'UserAssigned'

var systemIdentity = {
  type: 'SystemAssigned'
}

var userIdentity = {
  type: 'UserAssigned'
  userAssignedIdentities: {
    '${userAssignedIdentityId}': {}
  }
}

var systemDeploymentAuth = {
  type: 'SystemAssignedIdentity'
}

var userDeploymentAuth = {
  type: 'UserAssignedIdentity'
  userAssignedIdentityResourceId: userAssignedIdentityId
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225:Zone-redundant Flex Consumption is offered in few regions only; enable it per region where available.
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

resource site 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_16:A managed identity is always set (SystemAssigned or UserAssigned, chosen by identityType); checkov cannot evaluate the conditional.
  // checkov:skip=CKV_AZURE_71:Same as CKV_AZURE_16: the identity object is chosen by a parameter.
  // checkov:skip=CKV_AZURE_222:Power BI and admins call /api/refresh over the internet with a function key; private endpoints need a VNet this deployment does not create.
  // checkov:skip=CKV_AZURE_17:Callers authenticate with a function key over HTTPS; client certificates would be one more secret to distribute.
  // checkov:skip=CKV_AZURE_212:Flex Consumption scales on demand; a fixed minimum of instances does not apply to FC1.
  // checkov:skip=CKV_AZURE_213:Flex Consumption has no App Service health-check feature; the platform restarts failed hosts and failed runs show in Application Insights.
  name: name
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: userAssigned ? userIdentity : systemIdentity
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
      appSettings: [
        for setting in items(appSettings): {
          name: setting.key
          value: setting.value
        }
      ]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: userAssigned ? userDeploymentAuth : systemDeploymentAuth
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
