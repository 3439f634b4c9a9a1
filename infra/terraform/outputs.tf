output "function_app_name" {
  description = "Function App name (az functionapp deploy --name)."
  value       = azurerm_function_app_flex_consumption.app.name
}

output "export_container_url" {
  description = "Export container URL (Power BI: Azure Blob Storage connector)."
  value       = "${azurerm_storage_account.exports.primary_blob_endpoint}${azurerm_storage_container.exports.name}"
}

output "refresh_url" {
  description = "Refresh endpoint (append ?code=<function key>)."
  value       = "https://${azurerm_function_app_flex_consumption.app.default_hostname}/api/refresh"
}

output "principal_id" {
  description = "Object id of the function identity."
  value       = local.principal_id
}

output "diagnostic_storage_id" {
  description = "Resource id of the diagnostic storage account (\"\" without diagnostic_storage): where the Entra diagnostic setting archives sign-in logs."
  value       = var.diagnostic_storage ? azurerm_storage_account.diagnostic[0].id : ""
}
