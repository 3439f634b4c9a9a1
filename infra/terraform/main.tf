# signin-export on Azure, Terraform flavour of infra/bicep/main.bicep: Flex Consumption Function
# App (custom handler), identity-based host storage, hardened exports storage, Application
# Insights (Entra ingestion), Microsoft Graph permissions, optional Key Vault client-secret mode.

data "azurerm_client_config" "current" {}

data "azurerm_resource_group" "rg" {
  name = var.resource_group_name
}

resource "random_string" "suffix" {
  length  = 8
  lower   = true
  upper   = false
  numeric = true
  special = false
}

locals {
  location         = coalesce(var.location, data.azurerm_resource_group.rg.location)
  suffix           = random_string.suffix.result
  function_name    = "func-${var.base_name}-${local.suffix}"
  plan_name        = "plan-${var.base_name}-${local.suffix}"
  host_storage     = substr("sthost${local.suffix}", 0, 24)
  export_storage   = substr("stexp${local.suffix}", 0, 24)
  key_vault_name   = substr("kv-${var.base_name}-${local.suffix}", 0, 24)
  secret_name      = "graph-client-secret"
  deploy_container = "app-package"
  user_assigned    = var.identity_type == "UserAssigned"
  tenant_id        = coalesce(var.tenant_id, data.azurerm_client_config.current.tenant_id)
}

# ---------------------------------------------------------------------------------------------
# Identity and monitoring
# ---------------------------------------------------------------------------------------------

resource "azurerm_user_assigned_identity" "app" {
  count               = local.user_assigned ? 1 : 0
  name                = "id-${var.base_name}-${local.suffix}"
  resource_group_name = data.azurerm_resource_group.rg.name
  location            = local.location
  tags                = var.tags
}

resource "azurerm_log_analytics_workspace" "logs" {
  name                = "log-${var.base_name}-${local.suffix}"
  resource_group_name = data.azurerm_resource_group.rg.name
  location            = local.location
  sku                 = "PerGB2018"
  retention_in_days   = var.log_retention_days
  tags                = var.tags
}

# Entra-only ingestion: the app authenticates with its identity (Monitoring Metrics Publisher).
resource "azurerm_application_insights" "app" {
  name                         = "appi-${var.base_name}-${local.suffix}"
  resource_group_name          = data.azurerm_resource_group.rg.name
  location                     = local.location
  application_type             = "web"
  workspace_id                 = azurerm_log_analytics_workspace.logs.id
  local_authentication_enabled = false # replaces local_authentication_disabled, deprecated in azurerm 4.78
  tags                         = var.tags
}

# ---------------------------------------------------------------------------------------------
# Storage: host + deployment package account, exports account (same hardening for both)
# ---------------------------------------------------------------------------------------------

resource "azurerm_storage_account" "host" {
  # checkov:skip=CKV_AZURE_59:Flex Consumption without VNet integration reaches host storage over the public endpoint; access is Entra ID RBAC only (shared key disabled).
  # checkov:skip=CKV2_AZURE_33:Private endpoints need a VNet this deployment does not create.
  # checkov:skip=CKV_AZURE_206:Holds only host leases and the package, re-creatable; LRS is enough.
  # checkov:skip=CKV2_AZURE_1:Microsoft-managed keys with infrastructure encryption; no customer key vault to manage for re-creatable data.
  # checkov:skip=CKV_AZURE_33:Queue service logging: this app has timer and HTTP triggers only; its host queues carry no data.
  name                              = local.host_storage
  resource_group_name               = data.azurerm_resource_group.rg.name
  location                          = local.location
  account_kind                      = "StorageV2"
  account_tier                      = "Standard"
  account_replication_type          = "LRS"
  https_traffic_only_enabled        = true
  min_tls_version                   = "TLS1_2"
  shared_access_key_enabled         = false
  default_to_oauth_authentication   = true
  allow_nested_items_to_be_public   = false
  cross_tenant_replication_enabled  = false
  infrastructure_encryption_enabled = true
  local_user_enabled                = false
  public_network_access_enabled     = true
  tags                              = var.tags

  blob_properties {
    delete_retention_policy {
      days = var.soft_delete_days
    }
    container_delete_retention_policy {
      days = var.soft_delete_days
    }
  }
}

resource "azurerm_storage_container" "deployment" {
  # checkov:skip=CKV2_AZURE_21:Blob read logging would need a diagnostic-settings destination per account; every export run is logged in Application Insights.
  name                  = local.deploy_container
  storage_account_id    = azurerm_storage_account.host.id
  container_access_type = "private"
}

resource "azurerm_storage_account" "exports" {
  # checkov:skip=CKV_AZURE_59:Power BI (no gateway) and Flex Consumption (no VNet) read and write over the public endpoint; access is Entra ID RBAC only (shared key disabled).
  # checkov:skip=CKV2_AZURE_33:Private endpoints would force a Power BI gateway, which this design avoids.
  # checkov:skip=CKV_AZURE_206:Exports are re-creatable from Graph (30-day retention); LRS is enough.
  # checkov:skip=CKV2_AZURE_1:Microsoft-managed keys with infrastructure encryption; customer-managed keys add a vault to run for re-creatable data.
  # checkov:skip=CKV_AZURE_33:Queue service logging: no queues are used.
  name                              = local.export_storage
  resource_group_name               = data.azurerm_resource_group.rg.name
  location                          = local.location
  account_kind                      = "StorageV2"
  account_tier                      = "Standard"
  account_replication_type          = "LRS"
  https_traffic_only_enabled        = true
  min_tls_version                   = "TLS1_2"
  shared_access_key_enabled         = false
  default_to_oauth_authentication   = true
  allow_nested_items_to_be_public   = false
  cross_tenant_replication_enabled  = false
  infrastructure_encryption_enabled = true
  local_user_enabled                = false
  public_network_access_enabled     = true
  tags                              = var.tags

  blob_properties {
    delete_retention_policy {
      days = var.soft_delete_days
    }
    container_delete_retention_policy {
      days = var.soft_delete_days
    }
  }
}

resource "azurerm_storage_container" "exports" {
  # checkov:skip=CKV2_AZURE_21:Blob read logging would need a diagnostic-settings destination per account; every export run is logged in Application Insights.
  name                  = var.exports_container_name
  storage_account_id    = azurerm_storage_account.exports.id
  container_access_type = "private"
}

# ---------------------------------------------------------------------------------------------
# Optional: the storage account an Entra diagnostic setting archives sign-in logs to
# (SIGNINS_SOURCE=diagnostic-settings), the lifecycle rule that expires them, and the setting itself
# ---------------------------------------------------------------------------------------------

locals {
  diagnostic_storage = substr("stdiag${local.suffix}", 0, 24)
  # Diagnostic-settings category and container of each SIGNINS_EVENT_TYPES value (entra-docs
  # concept-diagnostic-settings-logs-options.md; containers: azure-monitor-docs resource-logs.md).
  diagnostic_categories = {
    interactiveUser    = "SignInLogs"
    nonInteractiveUser = "NonInteractiveUserSignInLogs"
    servicePrincipal   = "ServicePrincipalSignInLogs"
    managedIdentity    = "ManagedIdentitySignInLogs"
  }
  diagnostic_containers = {
    interactiveUser    = "insights-logs-signinlogs"
    nonInteractiveUser = "insights-logs-noninteractiveusersigninlogs"
    servicePrincipal   = "insights-logs-serviceprincipalsigninlogs"
    managedIdentity    = "insights-logs-managedidentitysigninlogs"
  }
  diagnostic_event_types = [for t in split(",", var.signins_event_types) : trimspace(t) if trimspace(t) != ""]
}

resource "azurerm_storage_account" "diagnostic" {
  # checkov:skip=CKV_AZURE_59:Azure Monitor writes the archive and Flex Consumption (no VNet) reads it over the public endpoint; access is Entra ID RBAC only (shared key disabled).
  # checkov:skip=CKV2_AZURE_33:Private endpoints need a VNet this deployment does not create.
  # checkov:skip=CKV_AZURE_206:The archive is a transient copy the lifecycle rule deletes after diagnostic_retention_days; LRS is enough.
  # checkov:skip=CKV2_AZURE_1:Microsoft-managed keys with infrastructure encryption; no customer key vault to manage for a transient archive.
  # checkov:skip=CKV_AZURE_33:Queue service logging: no queues are used.
  count                             = var.diagnostic_storage ? 1 : 0
  name                              = local.diagnostic_storage
  resource_group_name               = data.azurerm_resource_group.rg.name
  location                          = local.location
  account_kind                      = "StorageV2"
  account_tier                      = "Standard"
  account_replication_type          = "LRS"
  https_traffic_only_enabled        = true
  min_tls_version                   = "TLS1_2"
  shared_access_key_enabled         = false
  default_to_oauth_authentication   = true
  allow_nested_items_to_be_public   = false
  cross_tenant_replication_enabled  = false
  infrastructure_encryption_enabled = true
  local_user_enabled                = false
  public_network_access_enabled     = true
  tags                              = var.tags

  blob_properties {
    delete_retention_policy {
      days = var.soft_delete_days
    }
    container_delete_retention_policy {
      days = var.soft_delete_days
    }
  }
}

# Azure Monitor appends to one blob per hour and never deletes them: expire the sign-in
# containers' append blobs (delete is the one lifecycle action append blobs support).
resource "azurerm_storage_management_policy" "diagnostic" {
  count              = var.diagnostic_storage ? 1 : 0
  storage_account_id = azurerm_storage_account.diagnostic[0].id

  rule {
    name    = "expire-sign-in-logs"
    enabled = true
    filters {
      prefix_match = values(local.diagnostic_containers)
      blob_types   = ["appendBlob"]
    }
    actions {
      base_blob {
        delete_after_days_since_modification_greater_than = var.diagnostic_retention_days
      }
    }
  }
}

# The tenant-wide setting: archives exactly the categories the export reads. Needs a deployer who
# may write microsoft.aadiam/diagnosticSettings (docs/deploy.md).
resource "azurerm_monitor_aad_diagnostic_setting" "signins" {
  count              = var.create_diagnostic_setting ? 1 : 0
  name               = "signin-export-${local.suffix}"
  storage_account_id = azurerm_storage_account.diagnostic[0].id

  dynamic "enabled_log" {
    for_each = toset(local.diagnostic_event_types)
    content {
      category = local.diagnostic_categories[enabled_log.value]
    }
  }
}

# ---------------------------------------------------------------------------------------------
# Function App (Flex Consumption, custom handler)
# ---------------------------------------------------------------------------------------------

resource "azurerm_service_plan" "plan" {
  # checkov:skip=CKV_AZURE_212:Flex Consumption scales on demand (maximum_instance_count); a fixed minimum of instances does not apply to FC1.
  # checkov:skip=CKV_AZURE_225:Zone-redundant Flex Consumption is offered in few regions only; enable it per region where available.
  name                = local.plan_name
  resource_group_name = data.azurerm_resource_group.rg.name
  location            = local.location
  os_type             = "Linux"
  sku_name            = "FC1"
  tags                = var.tags
}

resource "azurerm_function_app_flex_consumption" "app" {
  name                = local.function_name
  resource_group_name = data.azurerm_resource_group.rg.name
  location            = local.location
  service_plan_id     = azurerm_service_plan.plan.id

  runtime_name           = "custom"
  runtime_version        = "1.0"
  instance_memory_in_mb  = var.instance_memory_mb
  maximum_instance_count = var.maximum_instance_count

  storage_container_type            = "blobContainer"
  storage_container_endpoint        = "${azurerm_storage_account.host.primary_blob_endpoint}${azurerm_storage_container.deployment.name}"
  storage_authentication_type       = local.user_assigned ? "UserAssignedIdentity" : "SystemAssignedIdentity"
  storage_user_assigned_identity_id = local.user_assigned ? azurerm_user_assigned_identity.app[0].id : null

  https_only                                     = true
  public_network_access_enabled                  = true
  client_certificate_enabled                     = false
  webdeploy_publish_basic_authentication_enabled = false
  tags                                           = var.tags

  identity {
    type         = local.user_assigned ? "UserAssigned" : "SystemAssigned"
    identity_ids = local.user_assigned ? [azurerm_user_assigned_identity.app[0].id] : null
  }

  site_config {
    minimum_tls_version     = "1.2"
    scm_minimum_tls_version = "1.2"
    http2_enabled           = true
  }

  # The provider adds an AzureWebJobsStorage connection string with an empty key whenever the
  # deployment storage uses an identity (hashicorp/terraform-provider-azurerm#29693, #30732); a
  # present-but-keyless AzureWebJobsStorage wins over the __accountName/__credential settings and
  # the host cannot start. So the app settings are owned by azapi_update_resource.app_settings
  # below, which writes exactly local.app_settings (no AzureWebJobsStorage), and are ignored here.
  app_settings = local.app_settings

  lifecycle {
    ignore_changes = [app_settings]
  }
}

locals {
  principal_id = local.user_assigned ? azurerm_user_assigned_identity.app[0].principal_id : azurerm_function_app_flex_consumption.app.identity[0].principal_id
  exports_url  = "${azurerm_storage_account.exports.primary_blob_endpoint}${azurerm_storage_container.exports.name}${var.exports_prefix == "" ? "" : "/${var.exports_prefix}"}"

  # Identity-based AzureWebJobsStorage: no connection string; __clientId only for user-assigned.
  host_storage_settings = merge(
    {
      AzureWebJobsStorage__accountName = azurerm_storage_account.host.name
      AzureWebJobsStorage__credential  = "managedidentity"
    },
    local.user_assigned ? { AzureWebJobsStorage__clientId = azurerm_user_assigned_identity.app[0].client_id } : {},
  )

  telemetry_settings = {
    APPLICATIONINSIGHTS_CONNECTION_STRING     = azurerm_application_insights.app.connection_string
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING = local.user_assigned ? "ClientId=${azurerm_user_assigned_identity.app[0].client_id};Authorization=AAD" : "Authorization=AAD"
  }

  # The code's token source: the user-assigned identity's client id, or the app registration.
  # Versionless secret URI: the app follows secret rotation.
  auth_settings = var.client_secret_mode ? {
    AZURE_TENANT_ID     = local.tenant_id
    AZURE_CLIENT_ID     = var.client_id
    AZURE_CLIENT_SECRET = "@Microsoft.KeyVault(SecretUri=${azurerm_key_vault.vault[0].vault_uri}secrets/${local.secret_name})"
  } : (local.user_assigned ? { AZURE_CLIENT_ID = azurerm_user_assigned_identity.app[0].client_id } : {})

  signins_settings = {
    SIGNINS_SOURCE             = var.signins_source
    SIGNINS_DIAGNOSTIC_STORAGE = var.signins_diagnostic_storage != "" ? var.signins_diagnostic_storage : (var.diagnostic_storage ? azurerm_storage_account.diagnostic[0].primary_blob_endpoint : "")
    SIGNINS_GRAPH_ENDPOINT     = var.signins_graph_endpoint
    SIGNINS_GRAPH_VERSION      = var.signins_graph_version
    SIGNINS_AUTH               = var.signins_auth != "" ? var.signins_auth : (var.client_secret_mode ? "client-secret" : "managed-identity")
    SIGNINS_DESTINATION        = var.signins_destination != "" ? var.signins_destination : local.exports_url
    SIGNINS_PRESET             = var.signins_preset
    SIGNINS_CLIENT_APPS        = var.signins_client_apps
    SIGNINS_APPS               = var.signins_apps
    SIGNINS_FILTER             = var.signins_filter
    SIGNINS_EVENT_TYPES        = var.signins_event_types
    SIGNINS_LOOKBACK           = var.signins_lookback
    SIGNINS_OVERLAP            = var.signins_overlap
    SIGNINS_SETTLE             = var.signins_settle
    SIGNINS_SLICE              = var.signins_slice
    SIGNINS_COLUMNS            = var.signins_columns
    SIGNINS_CSV_SAFE           = var.signins_csv_safe
    SIGNINS_REPORT_DAYS        = var.signins_report_days
    SIGNINS_GRAPH_RATE         = var.signins_graph_rate
    SIGNINS_RETRY_BUDGET       = var.signins_retry_budget
    SIGNINS_RUN_DEADLINE       = var.signins_run_deadline
    SIGNINS_REFRESH_DEADLINE   = var.signins_refresh_deadline
    SIGNINS_SCHEDULE           = var.signins_schedule
  }

  # Flex Consumption: no FUNCTIONS_WORKER_RUNTIME / FUNCTIONS_EXTENSION_VERSION (runtime_name is it).
  app_settings = merge(local.host_storage_settings, local.telemetry_settings, local.auth_settings, local.signins_settings)
}

# Writes the whole app-settings collection, replacing the keyless AzureWebJobsStorage the flex
# resource injects; re-applied whenever the function app itself is updated.
resource "azapi_update_resource" "app_settings" {
  type      = "Microsoft.Web/sites/config@2024-04-01"
  name      = "appsettings"
  parent_id = azurerm_function_app_flex_consumption.app.id

  body = {
    properties = local.app_settings
  }

  # The host resolves the Key Vault reference when it starts with these settings: the identity
  # must already hold Key Vault Secrets User on the secret.
  depends_on = [
    azurerm_role_assignment.host,
    azurerm_role_assignment.exports_writer,
    azurerm_role_assignment.telemetry,
    azurerm_role_assignment.secrets_user,
    azurerm_role_assignment.diagnostic_reader,
  ]

  lifecycle {
    replace_triggered_by = [azurerm_function_app_flex_consumption.app]
  }
}

# ---------------------------------------------------------------------------------------------
# Role assignments
# ---------------------------------------------------------------------------------------------

resource "azurerm_role_assignment" "host" {
  for_each             = toset(["Storage Blob Data Owner", "Storage Queue Data Contributor", "Storage Table Data Contributor"])
  scope                = azurerm_storage_account.host.id
  role_definition_name = each.value
  principal_id         = local.principal_id
  principal_type       = "ServicePrincipal"
}

# The function identity may write the exports container only, not the account.
resource "azurerm_role_assignment" "exports_writer" {
  scope                = azurerm_storage_container.exports.id
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = local.principal_id
  principal_type       = "ServicePrincipal"
}

# The function identity reads the diagnostic archive (Azure Monitor creates the containers, so the
# role is on the account).
resource "azurerm_role_assignment" "diagnostic_reader" {
  count                = var.diagnostic_storage ? 1 : 0
  scope                = azurerm_storage_account.diagnostic[0].id
  role_definition_name = "Storage Blob Data Reader"
  principal_id         = local.principal_id
  principal_type       = "ServicePrincipal"
}

resource "azurerm_role_assignment" "exports_reader" {
  count                = var.power_bi_principal_id == "" ? 0 : 1
  scope                = azurerm_storage_container.exports.id
  role_definition_name = "Storage Blob Data Reader"
  principal_id         = var.power_bi_principal_id
  principal_type       = var.power_bi_principal_type
}

resource "azurerm_role_assignment" "telemetry" {
  scope                = azurerm_application_insights.app.id
  role_definition_name = "Monitoring Metrics Publisher"
  principal_id         = local.principal_id
  principal_type       = "ServicePrincipal"
}

# ---------------------------------------------------------------------------------------------
# Microsoft Graph application permissions, looked up by name (no role GUIDs)
# ---------------------------------------------------------------------------------------------

data "azuread_service_principal" "graph" {
  count     = var.grant_graph_permissions && !var.client_secret_mode ? 1 : 0
  client_id = "00000003-0000-0000-c000-000000000000" # Microsoft Graph, the same in every tenant
}

resource "azuread_app_role_assignment" "graph" {
  for_each            = var.grant_graph_permissions && !var.client_secret_mode ? toset(["AuditLog.Read.All", "Directory.Read.All"]) : toset([])
  app_role_id         = data.azuread_service_principal.graph[0].app_role_ids[each.value]
  principal_object_id = local.principal_id
  resource_object_id  = data.azuread_service_principal.graph[0].object_id
}

# ---------------------------------------------------------------------------------------------
# Optional client-secret mode: Key Vault (RBAC) + secret + Key Vault Secrets User on that secret
# ---------------------------------------------------------------------------------------------

resource "azurerm_key_vault" "vault" {
  # checkov:skip=CKV2_AZURE_32:Private endpoints need a VNet this deployment does not create.
  count                         = var.client_secret_mode ? 1 : 0
  name                          = local.key_vault_name
  resource_group_name           = data.azurerm_resource_group.rg.name
  location                      = local.location
  tenant_id                     = data.azurerm_client_config.current.tenant_id # the vault's tenant is the subscription's, not the app registration's
  sku_name                      = "standard"
  rbac_authorization_enabled    = true
  purge_protection_enabled      = true
  soft_delete_retention_days    = 90
  public_network_access_enabled = true
  tags                          = var.tags

  network_acls {
    bypass         = "AzureServices"
    default_action = "Allow"
  }
}

# The secret is written through Azure Resource Manager (Microsoft.KeyVault/vaults/secrets, as
# the Bicep flavour does), not the Key Vault data plane: the deployer needs no data-plane role and
# there is no role-propagation window in which the first apply fails with 403 (which writing it
# with azurerm_key_vault_secret after granting the deployer Key Vault Secrets Officer had).
# sensitive_body is write-only (azapi >= 2.4): the secret never reaches the plan or the state; it is
# sent when client_secret_version changes.
resource "azapi_resource" "client_secret" {
  count     = var.client_secret_mode ? 1 : 0
  type      = "Microsoft.KeyVault/vaults/secrets@2023-07-01"
  name      = local.secret_name
  parent_id = azurerm_key_vault.vault[0].id

  body = {
    properties = {
      contentType = "text/plain"
      attributes = {
        enabled = true
        exp     = var.client_secret_expires_unix > 0 ? var.client_secret_expires_unix : null
      }
    }
  }
  sensitive_body = {
    properties = {
      value = var.client_secret
    }
  }
  sensitive_body_version = {
    "properties.value" = tostring(var.client_secret_version)
  }
}

# Key Vault references resolve with the system-assigned identity unless told otherwise; the flex
# resource has no key_vault_reference_identity_id argument yet, so set it on the site directly.
resource "azapi_update_resource" "key_vault_reference_identity" {
  count       = var.client_secret_mode && local.user_assigned ? 1 : 0
  type        = "Microsoft.Web/sites@2024-04-01"
  resource_id = azurerm_function_app_flex_consumption.app.id

  body = {
    properties = {
      keyVaultReferenceIdentity = azurerm_user_assigned_identity.app[0].id
    }
  }
}

resource "azurerm_role_assignment" "secrets_user" {
  count                = var.client_secret_mode ? 1 : 0
  scope                = azapi_resource.client_secret[0].id
  role_definition_name = "Key Vault Secrets User"
  principal_id         = local.principal_id
  principal_type       = "ServicePrincipal"
}

# ---------------------------------------------------------------------------------------------
# Optional alerts (alert_target): no export progress for alert_stale_minutes, and failed runs.
# Both query the one line per run the handler writes to the Functions host console:
#   [LEVEL ]SIGNIN_EXPORT_RUN {"trigger":…,"outcome":…,"rows":…,"windowStart":…,…}
# The host logs worker stdout/stderr under the category Host.Function.Console (stderr as Error),
# which Application Insights stores in `traces` (message = the line). The KQL is shared with the
# Bicep flavour and docs/deploy.md; tests/infra.rs keeps the three in step.
# ---------------------------------------------------------------------------------------------

locals {
  alerts_enabled     = var.alert_target != ""
  alert_create_group = local.alerts_enabled && !startswith(lower(var.alert_target), "/subscriptions/")
  alert_group_id     = local.alert_create_group ? azurerm_monitor_action_group.alerts[0].id : var.alert_target

  # contains_cs, not has: `has` matches whole terms, and the token's underscores make its term
  # boundaries an implementation detail; a case-sensitive substring match is exact.
  run_events_kql = <<-KQL
    traces
    | where message contains_cs "SIGNIN_EXPORT_RUN "
    | extend run = parse_json(extract(@"SIGNIN_EXPORT_RUN (\{.*\})", 1, message))
  KQL

  # Progress, not mere completion: a run made progress when it completed or reached its deadline
  # having committed something (`stalledRuns` 0; events without the field count as progress). The
  # clock starts at the last such run, or at the first run event in the window: before the first
  # run of a new deployment there is no row, so the rule cannot fire.
  stale_kql = <<-KQL
    ${local.run_events_kql}
    | summarize lastProgress = maxif(timestamp, tostring(run.outcome) in ("completed", "deadline-reached") and coalesce(toint(run.stalledRuns), 0) == 0), firstRun = min(timestamp)
    | where isnotnull(firstRun)
    | extend minutesSinceProgress = (now() - coalesce(lastProgress, firstRun)) / 1m
  KQL

  failed_kql = <<-KQL
    ${local.run_events_kql}
    | where tostring(run.outcome) == "failed"
    | project timestamp, trigger = tostring(run.trigger), error = tostring(run.error)
  KQL
}

resource "azurerm_monitor_action_group" "alerts" {
  count               = local.alert_create_group ? 1 : 0
  name                = "ag-${var.base_name}-${local.suffix}"
  resource_group_name = data.azurerm_resource_group.rg.name
  short_name          = substr("signins${local.suffix}", 0, 12)
  tags                = var.tags

  email_receiver {
    name                    = "signin-export-admin"
    email_address           = var.alert_target
    use_common_alert_schema = true
  }
}

resource "azurerm_monitor_scheduled_query_rules_alert_v2" "stale" {
  count                   = local.alerts_enabled ? 1 : 0
  name                    = "alert-${var.base_name}-${local.suffix}-no-export"
  display_name            = "signin-export: no export progress for ${var.alert_stale_minutes} minutes"
  description             = "No SIGNIN_EXPORT_RUN event with outcome completed or deadline-reached and stalledRuns 0 in the last ${var.alert_stale_minutes} minutes (runs failed, or ran without committing anything): Power BI is showing stale sign-ins. See docs/deploy.md, Alerts."
  resource_group_name     = data.azurerm_resource_group.rg.name
  location                = local.location
  scopes                  = [azurerm_application_insights.app.id]
  severity                = 1
  enabled                 = true
  evaluation_frequency    = "PT15M"
  window_duration         = "P2D"
  auto_mitigation_enabled = true
  tags                    = var.tags

  criteria {
    query                   = local.stale_kql
    time_aggregation_method = "Maximum"
    metric_measure_column   = "minutesSinceProgress"
    operator                = "GreaterThan"
    threshold               = var.alert_stale_minutes

    failing_periods {
      minimum_failing_periods_to_trigger_alert = 1
      number_of_evaluation_periods             = 1
    }
  }

  action {
    action_groups = [local.alert_group_id]
  }
}

resource "azurerm_monitor_scheduled_query_rules_alert_v2" "failed" {
  count                   = local.alerts_enabled ? 1 : 0
  name                    = "alert-${var.base_name}-${local.suffix}-run-failed"
  display_name            = "signin-export: an export run failed"
  description             = "A SIGNIN_EXPORT_RUN event with outcome failed (its error field says why). See docs/deploy.md, Alerts."
  resource_group_name     = data.azurerm_resource_group.rg.name
  location                = local.location
  scopes                  = [azurerm_application_insights.app.id]
  severity                = 2
  enabled                 = true
  evaluation_frequency    = "PT15M"
  window_duration         = "PT15M"
  auto_mitigation_enabled = true
  tags                    = var.tags

  criteria {
    query                   = local.failed_kql
    time_aggregation_method = "Count"
    operator                = "GreaterThan"
    threshold               = 0

    failing_periods {
      minimum_failing_periods_to_trigger_alert = 1
      number_of_evaluation_periods             = 1
    }
  }

  action {
    action_groups = [local.alert_group_id]
  }
}
