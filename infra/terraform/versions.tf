# Providers: azurerm 4.x, azuread 3.x (Graph app role assignments), azapi 2.x (the app-settings
# write that works around the flex resource's AzureWebJobsStorage quirk, and the Key Vault secret
# written through ARM with a write-only value).
# azurerm floor: 4.42 added azurerm_key_vault.rbac_authorization_enabled, 4.78 added
# azurerm_application_insights.local_authentication_enabled (replacing the deprecated
# local_authentication_disabled); checked in the provider's sources at those tags, and by
# tests/infra_schema.rs against the extract in tests/data/schemas/.
terraform {
  required_version = ">= 1.11.0" # write-only attributes (client secret never stored in state)

  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = "~> 4.78"
    }
    azuread = {
      source  = "hashicorp/azuread"
      version = "~> 3.4"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
    azapi = {
      source  = "Azure/azapi"
      version = "~> 2.5"
    }
  }
}

provider "azurerm" {
  features {
    key_vault {
      purge_soft_delete_on_destroy = false
    }
  }
  # Shared-key access is disabled on every storage account: the provider must use Entra ID too.
  storage_use_azuread = true
  # Register no resource providers: a deployer scoped to the resource group cannot register them
  # (a subscription-level action), so the provider's automatic registration would fail the plan.
  # docs/deploy.md lists the providers to register once by hand.
  resource_provider_registrations = "none"
}

provider "azuread" {}

provider "azapi" {}
