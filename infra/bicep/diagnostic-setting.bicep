// The tenant's Entra diagnostic setting that archives sign-in logs to the diagnostic storage account
// of main.bicep (diagnosticStorage = true), for SIGNINS_SOURCE=diagnostic-settings. Tenant-scoped,
// so a deployment of its own, by someone who may write microsoft.aadiam/diagnosticSettings (Security
// Administrator or Global Administrator) and deploy at tenant scope (docs/deploy.md):
//   az deployment tenant create -l <region> -f diagnostic-setting.bicep \
//     -p storageAccountId=<output diagnosticStorageId of main.bicep>

targetScope = 'tenant'

@description('Resource id of the storage account the sign-in logs are archived to (output diagnosticStorageId of main.bicep).')
param storageAccountId string

@description('Name of the diagnostic setting.')
@minLength(1)
param settingName string = 'signin-export'

@description('Sign-in categories to archive; keep them to what SIGNINS_EVENT_TYPES reads (SignInLogs = interactiveUser, NonInteractiveUserSignInLogs = nonInteractiveUser, ServicePrincipalSignInLogs = servicePrincipal, ManagedIdentitySignInLogs = managedIdentity).')
@allowed([
  'SignInLogs'
  'NonInteractiveUserSignInLogs'
  'ServicePrincipalSignInLogs'
  'ManagedIdentitySignInLogs'
])
param categories array = [
  'SignInLogs'
  'NonInteractiveUserSignInLogs'
]

resource setting 'Microsoft.AADIAM/diagnosticSettings@2017-04-01' = {
  name: settingName
  properties: {
    storageAccountId: storageAccountId
    logs: [
      for category in categories: {
        category: category
        enabled: true
      }
    ]
  }
}

@description('Resource id of the diagnostic setting.')
output settingId string = setting.id
