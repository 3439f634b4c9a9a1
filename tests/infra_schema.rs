//! infra/ against the published schemas, offline: every Bicep resource type + API version and
//! every property path set exists (and is writable) in Azure/bicep-types-az, and every Terraform
//! argument and block exists in the documented schema of the pinned provider versions (the floors
//! of `infra/terraform/versions.tf`). The extracts are test data in tests/data/schemas/ (source,
//! commit and date in its README; `scripts/extract-schemas.py` regenerates them). The negative
//! tests feed the checkers a typo, a read-only property and an unknown API version.

use std::collections::BTreeMap;

use hcl::{Body, Expression, ObjectKey};
use serde_json::Value;

use crate::infra::{bicep, read, terraform};

// ---------------------------------------------------------------------------------------------
// Bicep: pycep trees (scripts/parse-bicep.py) against bicep-types-az
// ---------------------------------------------------------------------------------------------

struct BicepTypes {
    resources: BTreeMap<String, usize>,
    types: Vec<Value>,
}

fn bicep_types() -> BicepTypes {
    let data: Value = serde_json::from_str(&read("tests/data/schemas/bicep-types.json"))
        .expect("bicep-types.json is JSON");
    let resources = data["resources"]
        .as_object()
        .expect("resources")
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_u64().expect("index") as usize))
        .collect();
    let types = data["types"].as_array().expect("types").clone();
    BicepTypes { resources, types }
}

/// Resource-level keys that are Bicep syntax, not part of the resource body.
const BICEP_SYNTAX: &[&str] = &["parent", "scope", "dependsOn"];

/// A pycep expression node (`{"operator": {"type": …}}`, `{"function": {"type": …}}`), as
/// opposed to an object literal, whose keys are property names.
fn bicep_expression(
    value: &serde_json::Map<String, Value>,
) -> Option<&serde_json::Map<String, Value>> {
    if value.len() != 1 {
        return None;
    }
    let (key, inner) = value.iter().next()?;
    let inner = inner.as_object()?;
    let is_expr = matches!(key.as_str(), "operator" | "function" | "interpolation")
        && inner.contains_key("type")
        && (inner.contains_key("operands")
            || inner.contains_key("parameters")
            || inner.contains_key("property_name"));
    is_expr.then_some(inner)
}

struct BicepCheck<'a> {
    types: &'a BicepTypes,
    variables: &'a serde_json::Map<String, Value>,
    errors: Vec<String>,
}

impl BicepCheck<'_> {
    fn value(&mut self, node: usize, value: &Value, path: &str, depth: usize) {
        if depth > 40 {
            return;
        }
        let ty = &self.types.types[node];
        match value {
            // A bare identifier: follow object/array variables of the same file.
            Value::String(name) => {
                if let Some(var) = self.variables.get(name).map(|v| &v["value"]) {
                    if var.is_object() || var.is_array() {
                        self.value(node, var, path, depth + 1);
                    }
                }
            }
            Value::Array(items) => {
                if let Some(item) = ty.get("i").and_then(Value::as_u64) {
                    for (i, v) in items.iter().enumerate() {
                        self.value(item as usize, v, &format!("{path}[{i}]"), depth + 1);
                    }
                }
            }
            Value::Object(map) => {
                if let Some(expr) = bicep_expression(map) {
                    if expr["type"] == "conditional" {
                        let operands = &expr["operands"];
                        self.value(node, &operands["true_value"], path, depth + 1);
                        self.value(node, &operands["false_value"], path, depth + 1);
                    }
                    return;
                }
                if map.contains_key("loop_type") {
                    let item = ty
                        .get("i")
                        .and_then(Value::as_u64)
                        .map_or(node, |i| i as usize);
                    self.value(item, &map["config"], &format!("{path}[for]"), depth + 1);
                    return;
                }
                self.object(node, map, path, depth);
            }
            _ => {}
        }
    }

    fn object(
        &mut self,
        node: usize,
        map: &serde_json::Map<String, Value>,
        path: &str,
        depth: usize,
    ) {
        let ty = &self.types.types[node];
        let Some(props) = ty.get("p").and_then(Value::as_object) else {
            return; // any / scalar: nothing more to check
        };
        let additional = ty.get("a").and_then(Value::as_u64);
        for (key, value) in map {
            let here = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            match (props.get(key), additional) {
                (Some(prop), _) => {
                    if prop[1].as_bool() == Some(true) {
                        self.errors
                            .push(format!("{here}: read-only in this API version"));
                    }
                    if let Some(child) = prop[0].as_i64().filter(|i| *i >= 0) {
                        self.value(child as usize, value, &here, depth + 1);
                    }
                }
                (None, Some(child)) => self.value(child as usize, value, &here, depth + 1),
                (None, None) => self
                    .errors
                    .push(format!("{here}: no such property in this API version")),
            }
        }
    }
}

/// Errors for one pycep resource (`{"type", "api_version", "existing", "config"}`).
fn check_bicep_resource(
    types: &BicepTypes,
    variables: &serde_json::Map<String, Value>,
    name: &str,
    resource: &Value,
) -> Vec<String> {
    let rtype = resource["type"].as_str().unwrap_or_default();
    let version = resource["api_version"].as_str().unwrap_or_default();
    let key = format!("{rtype}@{version}");
    let Some(&root) = types.resources.get(&key.to_ascii_lowercase()) else {
        return vec![format!(
            "{name}: {key} is not in the bicep-types-az extract (unknown type or API version)"
        )];
    };
    if resource["existing"] == true {
        return Vec::new();
    }
    // Unwrap `[for …: {…}]` and `if (…) {…}` around the body.
    let mut config = &resource["config"];
    while config.get("config").is_some()
        && (config.get("loop_type").is_some() || config.get("condition").is_some())
    {
        config = &config["config"];
    }
    let mut check = BicepCheck {
        types,
        variables,
        errors: Vec::new(),
    };
    let body: serde_json::Map<String, Value> = config
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| !BICEP_SYNTAX.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    check.object(root, &body, "", 0);
    check
        .errors
        .into_iter()
        .map(|e| format!("{name} ({key}): {e}"))
        .collect()
}

/// Types outside bicep-types-az: the Microsoft Graph Bicep extension (msgraph-bicep-types).
fn bicep_type_in_extract(rtype: &str) -> bool {
    !rtype.starts_with("Microsoft.Graph/")
}

#[test]
fn bicep_resources_use_published_types_api_versions_and_properties() {
    let types = bicep_types();
    let empty = serde_json::Map::new();
    let mut errors = Vec::new();
    let mut checked = 0;
    for (file, tree) in bicep() {
        let variables = tree["variables"].as_object().unwrap_or(&empty);
        for (name, resource) in tree["resources"].as_object().expect("resources") {
            if !bicep_type_in_extract(resource["type"].as_str().unwrap_or_default()) {
                continue;
            }
            checked += 1;
            for e in check_bicep_resource(&types, variables, name, resource) {
                errors.push(format!("{file}: {e}"));
            }
        }
    }
    assert!(checked >= 20, "only {checked} Bicep resources checked");
    assert!(
        errors.is_empty(),
        "Bicep vs bicep-types-az:\n{}",
        errors.join("\n")
    );
}

#[test]
fn bicep_checker_rejects_typos_read_only_properties_and_unknown_api_versions() {
    let types = bicep_types();
    let vars = serde_json::json!({
        "acls": {"decorators": [], "value": {"bypass": "AzureServices", "defaultActon": "Allow"}}
    });
    let vars = vars.as_object().expect("object");
    let vault = serde_json::json!({
        "type": "Microsoft.KeyVault/vaults", "api_version": "2023-07-01", "existing": false,
        "config": {"name": "kv", "location": "location", "properties": {
            "tenantId": "t", "sku": {"family": "A", "name": "standard"},
            "enableRbacAuthorisation": true,
            "networkAcls": "acls"
        }}
    });
    let errors = check_bicep_resource(&types, vars, "vault", &vault);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("properties.enableRbacAuthorisation: no such property")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("properties.networkAcls.defaultActon: no such property")),
        "a typo inside a variable is found too: {errors:?}"
    );

    let site = serde_json::json!({
        "type": "Microsoft.Web/sites", "api_version": "2024-04-01", "existing": false,
        "config": {"condition": "x", "config": {"name": "app", "properties": {
            "defaultHostName": "x.azurewebsites.net",
            "functionAppConfig": {"runtime": {"name": "custom", "versoin": "1.0"}}
        }}}
    });
    let errors = check_bicep_resource(&types, vars, "site", &site);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("properties.defaultHostName: read-only")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("properties.functionAppConfig.runtime.versoin")),
        "{errors:?}"
    );

    // Microsoft.Web/sites@2022-03-01 predates functionAppConfig: not in the extract at all.
    let old = serde_json::json!({"type": "Microsoft.Web/sites", "api_version": "2022-03-01", "existing": false, "config": {}});
    let errors = check_bicep_resource(&types, vars, "old", &old);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("unknown type or API version")),
        "{errors:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Terraform: hcl-rs bodies against the documented provider schemas
// ---------------------------------------------------------------------------------------------

/// {"resource.TYPE" | "data.TYPE" | "provider.NAME": (arguments, {block: arguments})}
type TfSchemas = BTreeMap<String, (Vec<String>, BTreeMap<String, Vec<String>>)>;

fn terraform_schemas() -> TfSchemas {
    let mut out = TfSchemas::new();
    for provider in ["azurerm", "azuread", "azapi", "random"] {
        let data: Value = serde_json::from_str(&read(&format!(
            "tests/data/schemas/terraform-{provider}.json"
        )))
        .expect("schema JSON");
        for (key, schema) in data["schemas"].as_object().expect("schemas") {
            let list = |v: &Value| -> Vec<String> {
                v.as_array()
                    .expect("array")
                    .iter()
                    .map(|s| s.as_str().expect("string").to_string())
                    .collect()
            };
            let blocks = schema["blocks"]
                .as_object()
                .expect("blocks")
                .iter()
                .map(|(k, v)| (k.clone(), list(v)))
                .collect();
            out.insert(key.clone(), (list(&schema["arguments"]), blocks));
        }
    }
    out
}

/// Terraform's own arguments and blocks, valid in every resource and data block.
const TF_META: &[&str] = &["count", "for_each", "depends_on", "provider", "lifecycle"];

fn check_tf_body(
    body: &Body,
    arguments: &[String],
    blocks: &BTreeMap<String, Vec<String>>,
    path: &str,
    top: bool,
    errors: &mut Vec<String>,
) {
    let known = |name: &str| arguments.iter().any(|a| a == name);
    for attribute in body.attributes() {
        let key = attribute.key.as_str();
        let meta = top && TF_META.contains(&key);
        if !meta && !known(key) {
            errors.push(format!("{path}.{key}: no such argument"));
        }
    }
    for block in body.blocks() {
        let (name, inner) = if block.identifier.as_str() == "dynamic" {
            let name = block
                .labels
                .first()
                .map(|l| l.as_str().to_string())
                .unwrap_or_default();
            let content = block
                .body
                .blocks()
                .find(|b| b.identifier.as_str() == "content");
            (name, content.map(|b| &b.body))
        } else {
            (block.identifier.as_str().to_string(), Some(&block.body))
        };
        if top && TF_META.contains(&name.as_str()) {
            continue;
        }
        if !known(&name) && !blocks.contains_key(&name) {
            errors.push(format!("{path}.{name}: no such block"));
            continue;
        }
        if let (Some(inner), Some(args)) = (inner, blocks.get(&name)) {
            check_tf_body(
                inner,
                args,
                blocks,
                &format!("{path}.{name}"),
                false,
                errors,
            );
        }
    }
}

fn check_terraform(body: &Body, schemas: &TfSchemas) -> (usize, Vec<String>) {
    let mut errors = Vec::new();
    let mut checked = 0;
    for block in body.blocks() {
        let kind = block.identifier.as_str();
        if !matches!(kind, "resource" | "data" | "provider") {
            continue;
        }
        let Some(rtype) = block.labels.first().map(|l| l.as_str()) else {
            continue;
        };
        let key = format!("{kind}.{rtype}");
        let Some((arguments, blocks)) = schemas.get(&key) else {
            if kind == "provider" {
                continue; // providers configured without arguments (azuread, azapi)
            }
            errors.push(format!(
                "{key}: not in the pinned provider schemas (tests/data/schemas/)"
            ));
            continue;
        };
        checked += 1;
        let label = block
            .labels
            .iter()
            .map(|l| l.as_str())
            .collect::<Vec<_>>()
            .join(".");
        if kind == "provider" {
            // Only the provider's own arguments; `features` has its own documentation page.
            for attribute in block.body.attributes() {
                if !arguments.iter().any(|a| a == attribute.key.as_str()) {
                    errors.push(format!(
                        "{label}.{}: no such provider argument",
                        attribute.key
                    ));
                }
            }
            continue;
        }
        check_tf_body(
            &block.body,
            arguments,
            blocks,
            &format!("{kind}.{label}"),
            true,
            &mut errors,
        );
    }
    (checked, errors)
}

#[test]
fn terraform_arguments_and_blocks_exist_in_the_pinned_provider_versions() {
    let versions = read("infra/terraform/versions.tf");
    for floor in [r#""~> 4.78""#, r#""~> 3.4""#, r#""~> 2.5""#, r#""~> 3.6""#] {
        assert!(
            versions.contains(floor),
            "versions.tf no longer pins {floor}: regenerate tests/data/schemas/ for the new floor"
        );
    }
    let (checked, errors) = check_terraform(terraform(), &terraform_schemas());
    assert!(checked >= 20, "only {checked} Terraform blocks checked");
    assert!(
        errors.is_empty(),
        "Terraform vs provider schemas:\n{}",
        errors.join("\n")
    );
}

#[test]
fn terraform_checker_rejects_typos_unknown_blocks_and_unknown_resources() {
    let snippet: Body = hcl::from_str(
        r#"
        resource "azurerm_application_insights" "app" {
          name                          = "appi"
          local_authentication_disabld  = true
          count                         = 1
        }
        resource "azurerm_storage_account" "s" {
          name = "st"
          blob_properties {
            delete_retention_policy { dayz = 7 }
          }
          blob_propertys {}
        }
        resource "azurerm_function_app_flex_consumption_v9" "x" {}
        "#,
    )
    .expect("snippet parses");
    let (_, errors) = check_terraform(&snippet, &terraform_schemas());
    for expected in [
        "resource.azurerm_application_insights.app.local_authentication_disabld: no such argument",
        "resource.azurerm_storage_account.s.blob_properties.delete_retention_policy.dayz: no such argument",
        "resource.azurerm_storage_account.s.blob_propertys: no such block",
        "resource.azurerm_function_app_flex_consumption_v9: not in the pinned provider schemas",
    ] {
        assert!(errors.iter().any(|e| e.contains(expected)), "missing `{expected}` in {errors:?}");
    }
    assert!(
        !errors.iter().any(|e| e.contains(".count")),
        "count is a meta-argument: {errors:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// azapi bodies: ARM request bodies, checked against bicep-types-az like the Bicep files
// ---------------------------------------------------------------------------------------------

/// An HCL object expression as pycep-shaped JSON: object literals keep their keys, anything
/// else (references, calls, templates) becomes an opaque expression.
fn hcl_to_value(expr: &Expression) -> Value {
    match expr {
        Expression::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let key = match k {
                        ObjectKey::Identifier(id) => id.as_str().to_string(),
                        ObjectKey::Expression(Expression::String(s)) => s.clone(),
                        other => other.to_string(),
                    };
                    (key, hcl_to_value(v))
                })
                .collect(),
        ),
        Expression::Array(items) => Value::Array(items.iter().map(hcl_to_value).collect()),
        Expression::String(s) => {
            serde_json::json!({"function": {"type": "literal", "parameters": s}})
        }
        _ => serde_json::json!({"function": {"type": "opaque", "parameters": null}}),
    }
}

#[test]
fn azapi_bodies_match_the_published_types() {
    let types = bicep_types();
    let empty = serde_json::Map::new();
    let mut errors = Vec::new();
    let mut checked = 0;
    for block in terraform().blocks() {
        let is_azapi = block.identifier.as_str() == "resource"
            && block
                .labels
                .first()
                .is_some_and(|l| l.as_str().starts_with("azapi_"));
        if !is_azapi {
            continue;
        }
        let label = block
            .labels
            .iter()
            .map(|l| l.as_str())
            .collect::<Vec<_>>()
            .join(".");
        let attr = |k: &str| {
            block
                .body
                .attributes()
                .find(|a| a.key.as_str() == k)
                .map(|a| &a.expr)
        };
        let Some(Expression::String(rtype)) = attr("type") else {
            errors.push(format!("{label}: type is not a literal"));
            continue;
        };
        let (rtype, version) = rtype.split_once('@').expect("type@version");
        for body_attr in ["body", "sensitive_body"] {
            let Some(body) = attr(body_attr) else {
                continue;
            };
            checked += 1;
            let resource = serde_json::json!({
                "type": rtype, "api_version": version, "existing": false, "config": hcl_to_value(body)
            });
            errors.extend(check_bicep_resource(
                &types,
                &empty,
                &format!("{label}.{body_attr}"),
                &resource,
            ));
        }
    }
    assert!(checked >= 3, "only {checked} azapi bodies checked");
    assert!(
        errors.is_empty(),
        "azapi bodies vs bicep-types-az:\n{}",
        errors.join("\n")
    );
}
