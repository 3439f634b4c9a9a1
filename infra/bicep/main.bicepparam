// Example parameters for main.bicep: copy, edit, then
//   az deployment group create -g <rg> -f main.bicep -p main.bicepparam
using 'main.bicep'

param baseName = 'signins'
param identityType = 'SystemAssigned'
param instanceMemoryMB = 2048
param maximumInstanceCount = 40
param exportsContainerName = 'signins'
param powerBiPrincipalId = '' // object id of the Power BI service principal (or report owners group)
param powerBiPrincipalType = 'Group'
param grantGraphPermissions = true
param signinsPreset = 'exchange-activesync'
param signinsSchedule = '0 */30 * * * *'
param signinsReportDays = '30'
