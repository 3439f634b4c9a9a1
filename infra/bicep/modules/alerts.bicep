// Optional alerts (main.bicep alertTarget): no export progress for alertStaleMinutes, and failed
// runs. Both query the one line per run the handler writes to the Functions host console:
//   [LEVEL ]SIGNIN_EXPORT_RUN {"trigger":…,"outcome":…,"rows":…,"windowStart":…,…}
// The host logs worker stdout/stderr under the category Host.Function.Console (stderr as Error;
// azure-functions-host src/WebJobs.Script/Workers/ProcessManagement/WorkerProcess.cs and
// WorkerConsoleLogService.cs), which Application Insights stores in `traces` (message = the line).
// The KQL is the same in the Terraform flavour and docs/deploy.md (tests/infra.rs checks).

@description('Name prefix of the alert rules and the action group.')
param namePrefix string

@description('Azure region of the alert rules (the Application Insights region).')
param location string

@description('Resource id of the Application Insights component the rules query.')
param appInsightsId string

@description('An e-mail address (an action group that mails it is created here) or the resource id of an existing action group.')
param alertTarget string

@description('Minutes without a run that made progress before the staleness alert fires.')
@minValue(30)
@maxValue(2880)
param staleMinutes int

@description('Short name of the created action group (at most 12 characters, shown in e-mails and SMS).')
@maxLength(12)
param actionGroupShortName string

@description('Tags for every resource.')
param tags object = {}

var createGroup = !startsWith(toLower(alertTarget), '/subscriptions/')

// contains_cs, not has: `has` matches whole terms, and the token's underscores make its term
// boundaries an implementation detail; a case-sensitive substring match is exact.
var runEventsKql = '''
traces
| where message contains_cs "SIGNIN_EXPORT_RUN "
| extend run = parse_json(extract(@"SIGNIN_EXPORT_RUN (\{.*\})", 1, message))
'''

// Progress, not mere completion: a run made progress when it completed or reached its deadline
// having committed something (`stalledRuns` 0; events without the field count as progress). The
// clock starts at the last such run, or at the first run event in the window: before the first
// run of a new deployment there is no row, so the rule cannot fire.
var staleKql = '${runEventsKql}| summarize lastProgress = maxif(timestamp, tostring(run.outcome) in ("completed", "deadline-reached") and coalesce(toint(run.stalledRuns), 0) == 0), firstRun = min(timestamp)\n| where isnotnull(firstRun)\n| extend minutesSinceProgress = (now() - coalesce(lastProgress, firstRun)) / 1m\n'

var failedKql = '${runEventsKql}| where tostring(run.outcome) == "failed"\n| project timestamp, trigger = tostring(run.trigger), error = tostring(run.error)\n'

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (createGroup) {
  name: 'ag-${namePrefix}'
  location: 'Global'
  tags: tags
  properties: {
    groupShortName: actionGroupShortName
    enabled: true
    emailReceivers: [
      {
        name: 'signin-export-admin'
        emailAddress: alertTarget
        useCommonAlertSchema: true
      }
    ]
  }
}

var actionGroupId = createGroup ? actionGroup.id : alertTarget

resource staleRule 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-${namePrefix}-no-export'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'signin-export: no export progress for ${staleMinutes} minutes'
    description: 'No SIGNIN_EXPORT_RUN event with outcome completed or deadline-reached and stalledRuns 0 in the last ${staleMinutes} minutes (runs failed, or ran without committing anything): Power BI is showing stale sign-ins. See docs/deploy.md, Alerts.'
    severity: 1
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'P2D'
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: staleKql
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'minutesSinceProgress'
          operator: 'GreaterThan'
          threshold: staleMinutes
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        actionGroupId
      ]
    }
  }
}

resource failedRule 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-${namePrefix}-run-failed'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'signin-export: an export run failed'
    description: 'A SIGNIN_EXPORT_RUN event with outcome failed (its error field says why). See docs/deploy.md, Alerts.'
    severity: 2
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: failedKql
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        actionGroupId
      ]
    }
  }
}

@description('Resource id of the action group the alerts notify.')
output actionGroupId string = actionGroupId
