# Providers: azurerm (current major, 4.x), azuread 3.x (Graph app role assignments), azapi 2.x
# (one app-settings write that works around the flex resource's AzureWebJobsStorage quirk).
terraform {
  required_version = ">= 1.11.0" # write-only attributes (client secret never stored in state)

  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = "~> 4.40"
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
}

provider "azuread" {}

provider "azapi" {}
