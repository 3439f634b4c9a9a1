// Microsoft Graph application permissions for the function identity, looked up by name on the
// Microsoft Graph service principal (no hard-coded role GUIDs).
// Kept in a file of its own on purpose: it uses the Microsoft Graph Bicep extension
// (`extension microsoftGraphV1`, configured in ../bicepconfig.json), which checkov's Bicep parser
// (pycep) does not understand; scripts/check-infra.sh excludes this one file from the checkov scan
// and tests/infra.rs checks it as text instead.
// The deploying user needs AppRoleAssignment.ReadWrite.All + Application.Read.All
// (e.g. Privileged Role Administrator) — see docs/deploy.md.

extension microsoftGraphV1

@description('Object id of the function identity (managed identity service principal).')
param principalId string

@description('Graph application roles to grant; List signIns needs both.')
param appRoles array = [
  'AuditLog.Read.All'
  'Directory.Read.All'
]

// Microsoft Graph's well-known application id (the same in every tenant).
var graphAppId = '00000003-0000-0000-c000-000000000000'

resource graph 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: graphAppId
}

resource grants 'Microsoft.Graph/appRoleAssignedTo@v1.0' = [
  for role in appRoles: {
    resourceId: graph.id
    appRoleId: first(filter(graph.appRoles, r => r.value == role && contains(r.allowedMemberTypes, 'Application'))).id
    principalId: principalId
  }
]

@description('The granted role names.')
output grantedRoles array = appRoles
