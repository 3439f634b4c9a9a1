// signin-export on Azure: Flex Consumption Function App (custom handler), identity-based host
// storage, hardened exports storage, Application Insights (Entra ingestion), Microsoft Graph
// permissions for the app identity, optional Key Vault client-secret mode. No secret anywhere by
// default. Deploy: az deployment group create -g <rg> -f main.bicep -p main.bicepparam
// (docs/deploy.md). Every SIGNINS_* parameter mirrors src/config.rs SETTINGS (tests/infra.rs).

targetScope = 'resourceGroup'

// ---------------------------------------------------------------------------------------------
// Deployment parameters (same names as the Terraform variables, camelCase <-> snake_case)
// ---------------------------------------------------------------------------------------------

@description('Short name used in every resource name (lowercase letters and digits).')
@minLength(3)
@maxLength(12)
param baseName string = 'signins'

@description('Azure region (must offer Flex Consumption).')
param location string = resourceGroup().location

@description('Identity of the Function App: SystemAssigned (default) or UserAssigned (created here).')
@allowed([
  'SystemAssigned'
  'UserAssigned'
])
param identityType string = 'SystemAssigned'

@description('Memory of each Flex Consumption instance in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Maximum number of Flex Consumption instances.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Blob container that receives the CSV files (Power BI reads it).')
@minLength(3)
@maxLength(63)
param exportsContainerName string = 'signins'

@description('Optional folder inside the exports container ("" = container root).')
param exportsPrefix string = ''

@description('Optional object id of the Power BI reader that gets Storage Blob Data Reader on the exports container ("" = none): a service principal (production: scheduled refresh does not depend on a person), a group or a user.')
param powerBiPrincipalId string = ''

@description('Type of powerBiPrincipalId: ServicePrincipal (the enterprise application\'s object id, not the app id), Group or User.')
@allowed([
  'ServicePrincipal'
  'User'
  'Group'
])
param powerBiPrincipalType string = 'Group'

@description('Grant the app identity AuditLog.Read.All and Directory.Read.All on Microsoft Graph (needs a Graph-privileged deployer, see docs/deploy.md).')
param grantGraphPermissions bool = true

@description('Client-secret mode: use an app registration instead of the managed identity for Graph; the secret goes to Key Vault.')
param clientSecretMode bool = false

@description('Tenant id of the app registration (client-secret mode).')
param tenantId string = tenant().tenantId

@description('Application (client) id of the app registration (client-secret mode).')
param clientId string = ''

@description('Client secret of the app registration (client-secret mode only; stored in Key Vault, never in app settings).')
@secure()
param clientSecret string = ''

@description('Expiry of that client secret, Unix seconds (client-secret mode; 0 = none).')
param clientSecretExpiresUnix int = 0

@description('Optional alerting: an e-mail address (an action group that mails it is created) or the resource id of an existing action group; "" = no alerts. Alerts fire when no run has made export progress for alertStaleMinutes and when a run fails.')
param alertTarget string = ''

@description('Minutes without a completed export before the staleness alert fires (default 120 = four runs of the default 30-minute schedule; keep it at 3-4 schedule periods).')
@minValue(30)
@maxValue(2880)
param alertStaleMinutes int = 120

@description('Days Log Analytics keeps the logs.')
@minValue(30)
@maxValue(730)
param logRetentionDays int = 30

@description('Days deleted blobs stay recoverable (soft delete).')
@minValue(1)
@maxValue(365)
param softDeleteDays int = 14

@description('Create a storage account for an Entra diagnostic setting to archive sign-in logs to (SIGNINS_SOURCE=diagnostic-settings), with a lifecycle rule deleting its insights-logs-* blobs after diagnosticRetentionDays, and grant the app identity Storage Blob Data Reader on it. The setting itself is tenant-scoped: diagnostic-setting.bicep (docs/deploy.md).')
param diagnosticStorage bool = false

@description('Days the diagnostic storage account keeps the archived sign-in logs (lifecycle rule on the insights-logs-* append blobs, days since the last write). Keep it above the longest the export may fall behind.')
@minValue(1)
@maxValue(365)
param diagnosticRetentionDays int = 7

@description('Tags for every resource.')
param tags object = {
  workload: 'signin-export'
}

// ---------------------------------------------------------------------------------------------
// SIGNINS_* app settings: one parameter each, default = the code's default (src/config.rs).
// "" means unset (the code then applies its own default).
// ---------------------------------------------------------------------------------------------

@description('SIGNINS_SOURCE: graph (Microsoft Graph\'s sign-in report API) or diagnostic-settings (the sign-in logs an Entra diagnostic setting archives to Storage: no request limit; docs/deploy.md).')
@allowed([
  'graph'
  'diagnostic-settings'
])
param signinsSource string = 'graph'

@description('SIGNINS_DIAGNOSTIC_STORAGE: "" = the diagnostic storage account created here when diagnosticStorage is true (else unset); or the URL of the storage account (or one insights-logs-* container) an existing diagnostic setting writes to.')
param signinsDiagnosticStorage string = ''

@description('SIGNINS_GRAPH_ENDPOINT: Graph base URL (national clouds).')
param signinsGraphEndpoint string = 'https://graph.microsoft.com'

@description('SIGNINS_GRAPH_VERSION: v1.0 or beta.')
@allowed([
  'v1.0'
  'beta'
])
param signinsGraphVersion string = 'beta'

@description('SIGNINS_AUTH: "" = derived here (managed-identity, or client-secret in client-secret mode); or auto, managed-identity, client-secret, certificate.')
@allowed([
  ''
  'auto'
  'managed-identity'
  'client-secret'
  'certificate'
])
param signinsAuth string = ''

@description('SIGNINS_DESTINATION: "" = the exports container created here (https://<account>.blob.core.windows.net/<container>[/<prefix>]); or any other destination URL.')
param signinsDestination string = ''

@description('SIGNINS_PRESET: exchange-activesync, exchange, legacy-auth or all.')
@allowed([
  'exchange-activesync'
  'exchange'
  'legacy-auth'
  'all'
])
param signinsPreset string = 'exchange-activesync'

@description('SIGNINS_CLIENT_APPS: comma list replacing the preset\'s client apps ("" = preset).')
param signinsClientApps string = ''

@description('SIGNINS_APPS: comma list replacing the preset\'s app names ("" = preset).')
param signinsApps string = ''

@description('SIGNINS_FILTER: extra raw OData $filter clause, AND-ed on the server.')
param signinsFilter string = ''

@description('SIGNINS_EVENT_TYPES: comma list of interactiveUser, nonInteractiveUser, servicePrincipal, managedIdentity (all but the first need beta); with diagnostic-settings, the categories read.')
param signinsEventTypes string = 'interactiveUser,nonInteractiveUser'

@description('SIGNINS_LOOKBACK: window of the first run, e.g. 7d (at most 30d).')
param signinsLookback string = '7d'

@description('SIGNINS_OVERLAP: how far before the watermark each run re-reads, e.g. 1h.')
param signinsOverlap string = '1h'

@description('SIGNINS_SETTLE: sign-ins younger than this wait for a later run (Graph still updates them), e.g. 15m; 0s to 24h.')
param signinsSettle string = '15m'

@description('SIGNINS_SLICE: longest window read as one slice, e.g. 1d (one UTC day: a quiet week is a handful of Graph requests).')
param signinsSlice string = '1d'

@description('SIGNINS_COLUMNS: comma list choosing and ordering columns ("" = default columns).')
param signinsColumns string = ''

@description('SIGNINS_CSV_SAFE: formula-injection guard, true or false.')
@allowed([
  'true'
  'false'
])
param signinsCsvSafe string = 'true'

@description('SIGNINS_REPORT_DAYS: days kept in latest.csv.')
param signinsReportDays string = '30'

@description('SIGNINS_GRAPH_RATE: at most this many Graph requests per period, e.g. 5/10s (Graph\'s limit for sign-in reports per app and tenant); lower it when other tools share the app registration.')
param signinsGraphRate string = '5/10s'

@description('SIGNINS_RETRY_BUDGET: total time a run may wait on Graph throttling, e.g. 5m.')
param signinsRetryBudget string = '5m'

@description('SIGNINS_RUN_DEADLINE: a timer run stops reading after this long and commits what it read (1s to 28m), e.g. 25m.')
param signinsRunDeadline string = '25m'

@description('SIGNINS_REFRESH_DEADLINE: an HTTP refresh commits what it read and answers 202 after this long, e.g. 200s.')
param signinsRefreshDeadline string = '200s'

@description('SIGNINS_SCHEDULE: NCRONTAB schedule of the ExportSignIns timer (6 fields).')
@minLength(11)
param signinsSchedule string = '0 */30 * * * *'

// ---------------------------------------------------------------------------------------------
// Names and role ids
// ---------------------------------------------------------------------------------------------

var suffix = uniqueString(resourceGroup().id, baseName)
var functionAppName = 'func-${baseName}-${suffix}'
var planName = 'plan-${baseName}-${suffix}'
var hostStorageName = take('sthost${suffix}', 24)
var exportsStorageName = take('stexp${suffix}', 24)
var diagnosticStorageName = take('stdiag${suffix}', 24)
// Known before the account exists, so the app setting needs no reference to a conditional module.
var diagnosticStorageUrl = 'https://${diagnosticStorageName}.blob.${environment().suffixes.storage}/'
// The containers Azure Monitor archives sign-in categories to (azure-monitor-docs resource-logs.md).
var diagnosticContainers = [
  'insights-logs-signinlogs'
  'insights-logs-noninteractiveusersigninlogs'
  'insights-logs-serviceprincipalsigninlogs'
  'insights-logs-managedidentitysigninlogs'
]
var deploymentContainerName = 'app-package'
var keyVaultName = take('kv-${baseName}-${suffix}', 24)
var secretName = 'graph-client-secret'
// Versionless: the app follows secret rotation. Known before the vault exists, so the site can
// carry the Key Vault reference from its first deployment.
var secretUri = 'https://${keyVaultName}${environment().suffixes.keyvaultDns}/secrets/${secretName}'
var userAssigned = identityType == 'UserAssigned'

var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageBlobDataReader: '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

// ---------------------------------------------------------------------------------------------
// Identity, monitoring, storage
// ---------------------------------------------------------------------------------------------

resource userIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = if (userAssigned) {
  name: 'id-${baseName}-${suffix}'
  location: location
  tags: tags
}

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-${baseName}-${suffix}'
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: logRetentionDays
  }
}

// Entra-only ingestion (DisableLocalAuth): the app authenticates with its identity
// (APPLICATIONINSIGHTS_AUTHENTICATION_STRING) and needs Monitoring Metrics Publisher.
resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${baseName}-${suffix}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
  }
}

module hostStorage 'modules/storage.bicep' = {
  name: 'host-storage'
  params: {
    name: hostStorageName
    location: location
    containers: [
      deploymentContainerName
    ]
    softDeleteDays: softDeleteDays
    tags: tags
  }
}

module exportsStorage 'modules/storage.bicep' = {
  name: 'exports-storage'
  params: {
    name: exportsStorageName
    location: location
    containers: [
      exportsContainerName
    ]
    softDeleteDays: softDeleteDays
    tags: tags
  }
}

// Optional: where the Entra diagnostic setting (diagnostic-setting.bicep) archives sign-in logs.
module diagnosticStorageAccount 'modules/storage.bicep' = if (diagnosticStorage) {
  name: 'diagnostic-storage'
  params: {
    name: diagnosticStorageName
    location: location
    containers: []
    expireAppendBlobPrefixes: diagnosticContainers
    expireAfterDays: diagnosticRetentionDays
    softDeleteDays: softDeleteDays
    tags: tags
  }
}

// ---------------------------------------------------------------------------------------------
// App settings
// ---------------------------------------------------------------------------------------------

var exportsUrl = '${exportsStorage.outputs.blobEndpoint}${exportsContainerName}${empty(exportsPrefix) ? '' : '/${exportsPrefix}'}'

// Identity-based AzureWebJobsStorage: no connection string; __clientId only for user-assigned.
var hostStorageBase = {
  AzureWebJobsStorage__accountName: hostStorageName
  AzureWebJobsStorage__credential: 'managedidentity'
}

var hostStorageClient = {
  AzureWebJobsStorage__clientId: userAssigned ? userIdentity.properties.clientId : ''
}

var hostStorageSettings = userAssigned ? union(hostStorageBase, hostStorageClient) : hostStorageBase

var telemetrySettings = {
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: userAssigned ? 'ClientId=${userIdentity.properties.clientId};Authorization=AAD' : 'Authorization=AAD'
}

// The code's token source: the user-assigned identity's client id, or the app registration.
var secretAuthSettings = {
  AZURE_TENANT_ID: tenantId
  AZURE_CLIENT_ID: clientId
  AZURE_CLIENT_SECRET: '@Microsoft.KeyVault(SecretUri=${secretUri})'
}

var userIdentityAuthSettings = {
  AZURE_CLIENT_ID: userAssigned ? userIdentity.properties.clientId : ''
}

var identityAuthSettings = userAssigned ? userIdentityAuthSettings : {}

var authSettings = clientSecretMode ? secretAuthSettings : identityAuthSettings

var signinsSettings = {
  SIGNINS_SOURCE: signinsSource
  SIGNINS_DIAGNOSTIC_STORAGE: empty(signinsDiagnosticStorage) ? (diagnosticStorage ? diagnosticStorageUrl : '') : signinsDiagnosticStorage
  SIGNINS_GRAPH_ENDPOINT: signinsGraphEndpoint
  SIGNINS_GRAPH_VERSION: signinsGraphVersion
  SIGNINS_AUTH: empty(signinsAuth) ? (clientSecretMode ? 'client-secret' : 'managed-identity') : signinsAuth
  SIGNINS_DESTINATION: empty(signinsDestination) ? exportsUrl : signinsDestination
  SIGNINS_PRESET: signinsPreset
  SIGNINS_CLIENT_APPS: signinsClientApps
  SIGNINS_APPS: signinsApps
  SIGNINS_FILTER: signinsFilter
  SIGNINS_EVENT_TYPES: signinsEventTypes
  SIGNINS_LOOKBACK: signinsLookback
  SIGNINS_OVERLAP: signinsOverlap
  SIGNINS_SETTLE: signinsSettle
  SIGNINS_SLICE: signinsSlice
  SIGNINS_COLUMNS: signinsColumns
  SIGNINS_CSV_SAFE: signinsCsvSafe
  SIGNINS_REPORT_DAYS: signinsReportDays
  SIGNINS_GRAPH_RATE: signinsGraphRate
  SIGNINS_RETRY_BUDGET: signinsRetryBudget
  SIGNINS_RUN_DEADLINE: signinsRunDeadline
  SIGNINS_REFRESH_DEADLINE: signinsRefreshDeadline
  SIGNINS_SCHEDULE: signinsSchedule
}

module functionApp 'modules/function-app.bicep' = {
  name: 'function-app'
  params: {
    name: functionAppName
    planName: planName
    location: location
    identityType: identityType
    userAssignedIdentityId: userAssigned ? userIdentity.id : ''
    deploymentContainerUrl: '${hostStorage.outputs.blobEndpoint}${deploymentContainerName}'
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    appSettings: union(hostStorageSettings, telemetrySettings, authSettings, signinsSettings)
    tags: tags
  }
}

var principalId = userAssigned ? userIdentity.properties.principalId : functionApp.outputs.systemPrincipalId

// ---------------------------------------------------------------------------------------------
// Role assignments: host storage (AzureWebJobsStorage + deployment package), exports container
// only, Application Insights ingestion
// ---------------------------------------------------------------------------------------------

resource hostAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: hostStorageName
}

resource exportsAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: exportsStorageName

  resource blobService 'blobServices' existing = {
    name: 'default'

    resource container 'containers' existing = {
      name: exportsContainerName
    }
  }
}

resource hostRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for role in [
    roles.storageBlobDataOwner
    roles.storageQueueDataContributor
    roles.storageTableDataContributor
  ]: {
    scope: hostAccount
    name: guid(resourceGroup().id, hostStorageName, functionAppName, role)
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
      principalId: principalId
      principalType: 'ServicePrincipal'
    }
    dependsOn: [
      hostStorage
    ]
  }
]

resource exportsWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: exportsAccount::blobService::container
  name: guid(resourceGroup().id, exportsStorageName, exportsContainerName, functionAppName, roles.storageBlobDataContributor)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
  dependsOn: [
    exportsStorage
  ]
}

resource exportsReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(powerBiPrincipalId)) {
  scope: exportsAccount::blobService::container
  name: guid(resourceGroup().id, exportsStorageName, exportsContainerName, powerBiPrincipalId, roles.storageBlobDataReader)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataReader)
    principalId: powerBiPrincipalId
    principalType: powerBiPrincipalType
  }
  dependsOn: [
    exportsStorage
  ]
}

resource diagnosticAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: diagnosticStorageName
}

// Azure Monitor creates the insights-logs-* containers, so the role is on the account.
resource diagnosticReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (diagnosticStorage) {
  scope: diagnosticAccount
  name: guid(resourceGroup().id, diagnosticStorageName, functionAppName, roles.storageBlobDataReader)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataReader)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
  dependsOn: [
    diagnosticStorageAccount
  ]
}

resource telemetryPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: appInsights
  name: guid(appInsights.id, functionAppName, roles.monitoringMetricsPublisher)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// ---------------------------------------------------------------------------------------------
// Microsoft Graph permissions (own file: uses the Graph Bicep extension) and Key Vault
// ---------------------------------------------------------------------------------------------

module graphPermissions 'modules/graph-permissions.bicep' = if (grantGraphPermissions && !clientSecretMode) {
  name: 'graph-permissions'
  params: {
    principalId: principalId
  }
}

module keyVault 'modules/keyvault.bicep' = if (clientSecretMode) {
  name: 'key-vault'
  params: {
    name: keyVaultName
    location: location
    clientSecret: clientSecret
    secretName: secretName
    secretExpiresUnix: clientSecretExpiresUnix
    principalId: principalId
    tags: tags
  }
}

module alerts 'modules/alerts.bicep' = if (!empty(alertTarget)) {
  name: 'alerts'
  params: {
    namePrefix: '${baseName}-${suffix}'
    location: location
    appInsightsId: appInsights.id
    alertTarget: alertTarget
    staleMinutes: alertStaleMinutes
    actionGroupShortName: take('signins${suffix}', 12)
    tags: tags
  }
}

// ---------------------------------------------------------------------------------------------
// Outputs
// ---------------------------------------------------------------------------------------------

@description('Function App name (az functionapp deploy --name).')
output functionAppName string = functionAppName

@description('Export container URL (Power BI: Azure Blob Storage connector).')
output exportContainerUrl string = '${exportsStorage.outputs.blobEndpoint}${exportsContainerName}'

@description('Refresh endpoint (append ?code=<function key>).')
output refreshUrl string = 'https://${functionApp.outputs.defaultHostName}/api/refresh'

@description('Object id of the function identity.')
output principalId string = principalId

@description('Resource id of the diagnostic storage account ("" without diagnosticStorage): the storageAccountId of diagnostic-setting.bicep.')
output diagnosticStorageId string = diagnosticStorage ? diagnosticAccount.id : ''
