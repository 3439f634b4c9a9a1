# Inputs. Names mirror infra/bicep/main.bicep parameters (camelCase <-> snake_case); every
# SIGNINS_* setting of src/config.rs SETTINGS is a signins_* variable with the code's default
# ("" = unset, the code applies its own default). tests/infra.rs keeps the three in step.

# ---------------------------------------------------------------------------------------------
# Deployment
# ---------------------------------------------------------------------------------------------

variable "resource_group_name" {
  description = "Existing resource group to deploy into."
  type        = string
}

variable "base_name" {
  description = "Short name used in every resource name (lowercase letters and digits)."
  type        = string
  default     = "signins"
  validation {
    condition     = can(regex("^[a-z0-9]{3,12}$", var.base_name))
    error_message = "base_name must be 3-12 lowercase letters or digits."
  }
}

variable "location" {
  description = "Azure region (must offer Flex Consumption); null = the resource group's region."
  type        = string
  default     = null
}

variable "identity_type" {
  description = "Identity of the Function App: SystemAssigned (default) or UserAssigned (created here)."
  type        = string
  default     = "SystemAssigned"
  validation {
    condition     = contains(["SystemAssigned", "UserAssigned"], var.identity_type)
    error_message = "identity_type must be SystemAssigned or UserAssigned."
  }
}

variable "instance_memory_mb" {
  description = "Memory of each Flex Consumption instance in MB."
  type        = number
  default     = 2048
  validation {
    condition     = contains([512, 2048, 4096], var.instance_memory_mb)
    error_message = "instance_memory_mb must be 512, 2048 or 4096."
  }
}

variable "maximum_instance_count" {
  description = "Maximum number of Flex Consumption instances."
  type        = number
  default     = 40
  validation {
    condition     = var.maximum_instance_count >= 40 && var.maximum_instance_count <= 1000
    error_message = "maximum_instance_count must be between 40 and 1000."
  }
}

variable "exports_container_name" {
  description = "Blob container that receives the CSV files (Power BI reads it)."
  type        = string
  default     = "signins"
  validation {
    condition     = can(regex("^[a-z0-9](?:[a-z0-9]|-[a-z0-9]){2,62}$", var.exports_container_name))
    error_message = "exports_container_name must be a valid blob container name (3-63 lowercase letters, digits, single hyphens)."
  }
}

variable "exports_prefix" {
  description = "Optional folder inside the exports container (\"\" = container root)."
  type        = string
  default     = ""
  validation {
    condition     = !startswith(var.exports_prefix, "/") && !endswith(var.exports_prefix, "/")
    error_message = "exports_prefix must not start or end with '/'."
  }
}

variable "power_bi_principal_id" {
  description = "Optional object id of the Power BI reader that gets Storage Blob Data Reader on the exports container (\"\" = none): a service principal (production: scheduled refresh does not depend on a person), a group or a user."
  type        = string
  default     = ""
  validation {
    condition     = var.power_bi_principal_id == "" || can(regex("^[0-9a-fA-F-]{36}$", var.power_bi_principal_id))
    error_message = "power_bi_principal_id must be an object id (GUID) or empty."
  }
}

variable "power_bi_principal_type" {
  description = "Type of power_bi_principal_id: ServicePrincipal (the enterprise application's object id, not the app id), Group or User."
  type        = string
  default     = "Group"
  validation {
    condition     = contains(["ServicePrincipal", "User", "Group"], var.power_bi_principal_type)
    error_message = "power_bi_principal_type must be ServicePrincipal, User or Group."
  }
}

variable "grant_graph_permissions" {
  description = "Grant the app identity AuditLog.Read.All and Directory.Read.All on Microsoft Graph (needs a Graph-privileged deployer, see docs/deploy.md)."
  type        = bool
  default     = true
}

variable "client_secret_mode" {
  description = "Client-secret mode: use an app registration instead of the managed identity for Graph; the secret goes to Key Vault."
  type        = bool
  default     = false
}

variable "tenant_id" {
  description = "Tenant id of the app registration (client-secret mode); null = the current tenant."
  type        = string
  default     = null
}

variable "client_id" {
  description = "Application (client) id of the app registration (client-secret mode)."
  type        = string
  default     = ""
}

variable "client_secret" {
  description = "Client secret of the app registration (client-secret mode only). Written to Key Vault as a write-only value: never in state or app settings."
  type        = string
  default     = null
  sensitive   = true
  ephemeral   = true
}

variable "client_secret_version" {
  description = "Bump to write client_secret again (write-only values are not diffed): after rotating the secret or changing its expiry."
  type        = number
  default     = 1
}

variable "client_secret_expires_unix" {
  description = "Expiry of that client secret, Unix seconds (client-secret mode; 0 = none), e.g. $(date -d 2027-06-30 +%s). Bump client_secret_version to change it."
  type        = number
  default     = 0
  validation {
    condition     = var.client_secret_expires_unix >= 0
    error_message = "client_secret_expires_unix must be 0 or a Unix time in seconds."
  }
}

variable "alert_target" {
  description = "Optional alerting: an e-mail address (an action group that mails it is created) or the resource id of an existing action group; \"\" = no alerts. Alerts fire when no run has made export progress for alert_stale_minutes and when a run fails."
  type        = string
  default     = ""
  validation {
    condition     = var.alert_target == "" || can(regex("^[^@ ]+@[^@ ]+$", var.alert_target)) || can(regex("^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/microsoft.insights/actionGroups/[^/]+$", lower(var.alert_target)))
    error_message = "alert_target must be empty, an e-mail address or an action group resource id."
  }
}

variable "alert_stale_minutes" {
  description = "Minutes without a completed export before the staleness alert fires (default 120 = four runs of the default 30-minute schedule; keep it at 3-4 schedule periods)."
  type        = number
  default     = 120
  validation {
    condition     = var.alert_stale_minutes >= 30 && var.alert_stale_minutes <= 2880
    error_message = "alert_stale_minutes must be between 30 and 2880 (the alert looks back 2 days at most)."
  }
}

variable "log_retention_days" {
  description = "Days Log Analytics keeps the logs."
  type        = number
  default     = 30
  validation {
    condition     = var.log_retention_days >= 30 && var.log_retention_days <= 730
    error_message = "log_retention_days must be between 30 and 730."
  }
}

variable "soft_delete_days" {
  description = "Days deleted blobs stay recoverable (soft delete)."
  type        = number
  default     = 14
  validation {
    condition     = var.soft_delete_days >= 1 && var.soft_delete_days <= 365
    error_message = "soft_delete_days must be between 1 and 365."
  }
}

variable "diagnostic_storage" {
  description = "Create a storage account for an Entra diagnostic setting to archive sign-in logs to (SIGNINS_SOURCE=diagnostic-settings), with a lifecycle rule deleting its insights-logs-* blobs after diagnostic_retention_days, and grant the app identity Storage Blob Data Reader on it."
  type        = bool
  default     = false
}

variable "diagnostic_retention_days" {
  description = "Days the diagnostic storage account keeps the archived sign-in logs (lifecycle rule on the insights-logs-* append blobs, days since the last write). Keep it above the longest the export may fall behind."
  type        = number
  default     = 7
  validation {
    condition     = var.diagnostic_retention_days >= 1 && var.diagnostic_retention_days <= 365
    error_message = "diagnostic_retention_days must be between 1 and 365."
  }
}

variable "create_diagnostic_setting" {
  description = "Also create the tenant's Entra diagnostic setting that archives the SIGNINS_EVENT_TYPES categories to the diagnostic storage account (needs diagnostic_storage and a deployer who may write microsoft.aadiam/diagnosticSettings: Security Administrator or Global Administrator, see docs/deploy.md)."
  type        = bool
  default     = false
  validation {
    condition     = !var.create_diagnostic_setting || var.diagnostic_storage
    error_message = "create_diagnostic_setting needs diagnostic_storage = true (the setting archives to that account)."
  }
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default = {
    workload = "signin-export"
  }
}

# ---------------------------------------------------------------------------------------------
# SIGNINS_* app settings (src/config.rs SETTINGS)
# ---------------------------------------------------------------------------------------------

variable "signins_source" {
  description = "SIGNINS_SOURCE: graph (Microsoft Graph's sign-in report API) or diagnostic-settings (the sign-in logs an Entra diagnostic setting archives to Storage: no request limit; docs/deploy.md)."
  type        = string
  default     = "graph"
  validation {
    condition     = contains(["graph", "diagnostic-settings"], var.signins_source)
    error_message = "signins_source must be graph or diagnostic-settings."
  }
}

variable "signins_diagnostic_storage" {
  description = "SIGNINS_DIAGNOSTIC_STORAGE: \"\" = the diagnostic storage account created here when diagnostic_storage is true (else unset); or the URL of the storage account (or one insights-logs-* container) an existing diagnostic setting writes to."
  type        = string
  default     = ""
  validation {
    condition     = var.signins_diagnostic_storage == "" || startswith(var.signins_diagnostic_storage, "https://")
    error_message = "signins_diagnostic_storage must be empty or an https:// storage URL."
  }
}

variable "signins_graph_endpoint" {
  description = "SIGNINS_GRAPH_ENDPOINT: Graph base URL (national clouds)."
  type        = string
  default     = "https://graph.microsoft.com"
  validation {
    condition     = can(regex("^https://[^/]+$", var.signins_graph_endpoint))
    error_message = "signins_graph_endpoint must be https://host with no path."
  }
}

variable "signins_graph_version" {
  description = "SIGNINS_GRAPH_VERSION: v1.0 or beta."
  type        = string
  default     = "beta"
  validation {
    condition     = contains(["v1.0", "beta"], var.signins_graph_version)
    error_message = "signins_graph_version must be v1.0 or beta."
  }
}

variable "signins_auth" {
  description = "SIGNINS_AUTH: \"\" = derived here (managed-identity, or client-secret in client-secret mode); or auto, managed-identity, client-secret, certificate."
  type        = string
  default     = ""
  validation {
    condition     = contains(["", "auto", "managed-identity", "client-secret", "certificate"], var.signins_auth)
    error_message = "signins_auth must be empty, auto, managed-identity, client-secret or certificate."
  }
}

variable "signins_destination" {
  description = "SIGNINS_DESTINATION: \"\" = the exports container created here (https://<account>.blob.core.windows.net/<container>[/<prefix>]); or any other destination URL."
  type        = string
  default     = ""
}

variable "signins_preset" {
  description = "SIGNINS_PRESET: exchange-activesync, exchange, legacy-auth or all."
  type        = string
  default     = "exchange-activesync"
  validation {
    condition     = contains(["exchange-activesync", "exchange", "legacy-auth", "all"], var.signins_preset)
    error_message = "signins_preset must be exchange-activesync, exchange, legacy-auth or all."
  }
}

variable "signins_client_apps" {
  description = "SIGNINS_CLIENT_APPS: comma list replacing the preset's client apps (\"\" = preset)."
  type        = string
  default     = ""
}

variable "signins_apps" {
  description = "SIGNINS_APPS: comma list replacing the preset's app names (\"\" = preset)."
  type        = string
  default     = ""
}

variable "signins_filter" {
  description = "SIGNINS_FILTER: extra raw OData $filter clause, AND-ed on the server."
  type        = string
  default     = ""
}

variable "signins_event_types" {
  description = "SIGNINS_EVENT_TYPES: comma list of interactiveUser, nonInteractiveUser, servicePrincipal, managedIdentity (all but the first need beta); with diagnostic-settings, the categories read (and archived by the diagnostic setting created here)."
  type        = string
  default     = "interactiveUser,nonInteractiveUser"
  validation {
    condition     = alltrue([for t in split(",", var.signins_event_types) : contains(["interactiveUser", "nonInteractiveUser", "servicePrincipal", "managedIdentity"], trimspace(t))])
    error_message = "signins_event_types must list interactiveUser, nonInteractiveUser, servicePrincipal or managedIdentity."
  }
}

variable "signins_lookback" {
  description = "SIGNINS_LOOKBACK: window of the first run, e.g. 7d (at most 30d)."
  type        = string
  default     = "7d"
  validation {
    condition     = can(regex("^[0-9]+[smhd]$", var.signins_lookback))
    error_message = "signins_lookback must be a number with a unit s, m, h or d."
  }
}

variable "signins_settle" {
  description = "SIGNINS_SETTLE: sign-ins younger than this wait for a later run (Graph still updates them), e.g. 15m; 0s to 24h."
  type        = string
  default     = "15m"
  validation {
    condition     = can(regex("^[0-9]+[smhd]$", var.signins_settle))
    error_message = "signins_settle must be a number with a unit s, m, h or d."
  }
}

variable "signins_overlap" {
  description = "SIGNINS_OVERLAP: how far before the watermark each run re-reads, e.g. 1h."
  type        = string
  default     = "1h"
  validation {
    condition     = can(regex("^[0-9]+[smhd]$", var.signins_overlap))
    error_message = "signins_overlap must be a number with a unit s, m, h or d."
  }
}

variable "signins_slice" {
  description = "SIGNINS_SLICE: longest window read as one slice, e.g. 1d (one UTC day: a quiet week is a handful of Graph requests)."
  type        = string
  default     = "1d"
  validation {
    condition     = can(regex("^[0-9]+[smhd]$", var.signins_slice))
    error_message = "signins_slice must be a number with a unit s, m, h or d."
  }
}

variable "signins_columns" {
  description = "SIGNINS_COLUMNS: comma list choosing and ordering columns (\"\" = default columns)."
  type        = string
  default     = ""
}

variable "signins_csv_safe" {
  description = "SIGNINS_CSV_SAFE: formula-injection guard, true or false."
  type        = string
  default     = "true"
  validation {
    condition     = contains(["true", "false"], var.signins_csv_safe)
    error_message = "signins_csv_safe must be true or false."
  }
}

variable "signins_report_days" {
  description = "SIGNINS_REPORT_DAYS: days kept in latest.csv."
  type        = string
  default     = "30"
  validation {
    condition     = can(regex("^[1-9][0-9]*$", var.signins_report_days))
    error_message = "signins_report_days must be a positive whole number."
  }
}

variable "signins_graph_rate" {
  description = "SIGNINS_GRAPH_RATE: at most this many Graph requests per period, e.g. 5/10s (Graph's limit for sign-in reports per app and tenant); lower it when other tools share the app registration."
  type        = string
  default     = "5/10s"
  validation {
    condition     = can(regex("^[0-9]+/[0-9]+[smhd]$", var.signins_graph_rate))
    error_message = "signins_graph_rate must be REQUESTS/PERIOD, e.g. 5/10s."
  }
}

variable "signins_retry_budget" {
  description = "SIGNINS_RETRY_BUDGET: total time a run may wait on Graph throttling, e.g. 5m."
  type        = string
  default     = "5m"
  validation {
    condition     = can(regex("^[0-9]+[smhd]$", var.signins_retry_budget))
    error_message = "signins_retry_budget must be a number with a unit s, m, h or d."
  }
}

variable "signins_run_deadline" {
  description = "SIGNINS_RUN_DEADLINE: a timer run stops reading after this long and commits what it read (1s to 28m), e.g. 25m."
  type        = string
  default     = "25m"
  validation {
    condition     = can(regex("^[0-9]+[smhd]$", var.signins_run_deadline))
    error_message = "signins_run_deadline must be a number with a unit s, m, h or d."
  }
}

variable "signins_refresh_deadline" {
  description = "SIGNINS_REFRESH_DEADLINE: an HTTP refresh commits what it read and answers 202 after this long, e.g. 200s."
  type        = string
  default     = "200s"
  validation {
    condition     = can(regex("^[0-9]+[smhd]$", var.signins_refresh_deadline))
    error_message = "signins_refresh_deadline must be a number with a unit s, m, h or d."
  }
}

variable "signins_schedule" {
  description = "SIGNINS_SCHEDULE: NCRONTAB schedule of the ExportSignIns timer (6 fields: second minute hour day month weekday)."
  type        = string
  default     = "0 */30 * * * *"
  validation {
    condition     = length(split(" ", trimspace(var.signins_schedule))) == 6
    error_message = "signins_schedule must be a 6-field NCRONTAB expression."
  }
}
