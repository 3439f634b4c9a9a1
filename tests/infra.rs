//! infra/ parses and stays in step with the code: Terraform read with `hcl-rs`, Bicep with pycep
//! (checkov's Bicep parser) through scripts/parse-bicep.py, and the drift test between
//! `config::SETTINGS`, both IaC flavours and the README's configuration table.
//!
//! Contract: .ci/run (scripts/test.sh) runs `bash scripts/check-infra.sh` before `cargo test`; that
//! script installs the pinned Python tools into `$INFRA_VENV` (default target/infra-tools/venv),
//! whose python these tests call. No network access is needed here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use hcl::{Block, Body, Expression, ObjectKey};
use serde_json::Value;
use signin_export::config::SETTINGS;

/// Settings whose IaC default is "" on purpose: the template derives the value from what it
/// deploys (the exports container URL; managed-identity or client-secret mode).
const DERIVED: &[&str] = &["SIGNINS_DESTINATION", "SIGNINS_AUTH"];

pub(crate) fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

fn code_settings() -> BTreeMap<&'static str, &'static str> {
    SETTINGS.iter().map(|s| (s.name, s.default)).collect()
}

fn code_names() -> BTreeSet<String> {
    SETTINGS.iter().map(|s| s.name.to_string()).collect()
}

/// `SIGNINS_REPORT_DAYS` -> `signins_report_days` (Terraform variable).
fn snake(setting: &str) -> String {
    setting.to_ascii_lowercase()
}

/// `SIGNINS_REPORT_DAYS` -> `signinsReportDays` (Bicep parameter).
fn camel(setting: &str) -> String {
    let mut out = String::new();
    for (i, word) in setting.split('_').enumerate() {
        let word = word.to_ascii_lowercase();
        if i == 0 {
            out.push_str(&word);
        } else {
            let mut chars = word.chars();
            if let Some(first) = chars.next() {
                out.push(first.to_ascii_uppercase());
                out.extend(chars);
            }
        }
    }
    out
}

/// `instanceMemoryMB` -> `instance_memory_mb`: Bicep parameter name to Terraform variable name.
fn camel_to_snake(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev_lower = i > 0 && chars[i - 1].is_ascii_lowercase();
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            let prev_upper = i > 0 && chars[i - 1].is_ascii_uppercase();
            if prev_lower || (prev_upper && next_lower) {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Terraform (hcl-rs)
// ---------------------------------------------------------------------------------------------

fn terraform_files() -> Vec<PathBuf> {
    let dir = root().join("infra/terraform");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "tf"))
        .collect();
    files.sort();
    files
}

/// Every .tf file parsed and merged into one body (Terraform reads a folder as one module).
pub(crate) fn terraform() -> &'static Body {
    static BODY: OnceLock<Body> = OnceLock::new();
    BODY.get_or_init(|| {
        let mut merged = Body::builder();
        for path in terraform_files() {
            let text = std::fs::read_to_string(&path).expect("read .tf");
            let body = hcl::parse(&text)
                .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
            merged = merged.add_structures(body);
        }
        merged.build()
    })
}

fn blocks(kind: &str) -> impl Iterator<Item = &Block> {
    terraform()
        .blocks()
        .filter(move |b| b.identifier.as_str() == kind)
}

fn labelled(kind: &str, labels: &[&str]) -> &'static Block {
    terraform()
        .blocks()
        .find(|b| {
            b.identifier.as_str() == kind
                && b.labels
                    .iter()
                    .map(|l| l.as_str())
                    .eq(labels.iter().copied())
        })
        .unwrap_or_else(|| panic!("no {kind} {labels:?} block in infra/terraform"))
}

fn attr<'a>(body: &'a Body, key: &str) -> Option<&'a Expression> {
    body.attributes()
        .find(|a| a.key.as_str() == key)
        .map(|a| &a.expr)
}

fn local(name: &str) -> &'static Expression {
    blocks("locals")
        .find_map(|b| attr(&b.body, name))
        .unwrap_or_else(|| panic!("no local.{name} in infra/terraform"))
}

fn key_name(key: &ObjectKey) -> String {
    key.to_string().trim_matches('"').to_string()
}

/// `var.NAME` expressions anywhere inside `expr` (traversals of the `var` root).
fn var_refs(expr: &Expression, out: &mut BTreeSet<String>) {
    match expr {
        Expression::Traversal(t) => {
            if let (Expression::Variable(root), Some(hcl::TraversalOperator::GetAttr(name))) =
                (&t.expr, t.operators.first())
            {
                if root.as_str() == "var" {
                    out.insert(name.as_str().to_string());
                }
            }
            var_refs(&t.expr, out);
        }
        Expression::Conditional(c) => {
            var_refs(&c.cond_expr, out);
            var_refs(&c.true_expr, out);
            var_refs(&c.false_expr, out);
        }
        Expression::Parenthesis(e) => var_refs(e, out),
        Expression::Operation(_) | Expression::FuncCall(_) | Expression::TemplateExpr(_) => {
            // Not used for SIGNINS_* values; a value built this way fails the mapping test.
        }
        _ => {}
    }
}

/// Keys of every object literal inside `expr` (through merge(...) calls and conditionals).
fn object_keys(expr: &Expression, out: &mut BTreeSet<String>) {
    match expr {
        Expression::Object(object) => {
            for (key, value) in object {
                out.insert(key_name(key));
                object_keys(value, out);
            }
        }
        Expression::FuncCall(call) => call.args.iter().for_each(|a| object_keys(a, out)),
        Expression::Conditional(c) => {
            object_keys(&c.true_expr, out);
            object_keys(&c.false_expr, out);
        }
        Expression::Parenthesis(e) => object_keys(e, out),
        _ => {}
    }
}

/// Names that must never be app settings here: a plain (connection-string) AzureWebJobsStorage,
/// and the settings Flex Consumption rejects (runtime is functionAppConfig; the package comes
/// from functionAppConfig.deployment.storage, not WEBSITE_RUN_FROM_PACKAGE; Microsoft Learn,
/// "Flex Consumption plan deprecations").
const FORBIDDEN_SETTINGS: &[&str] = &[
    "AzureWebJobsStorage",
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_EXTENSION_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE",
];

fn string_default(block: &Block) -> Option<String> {
    match attr(&block.body, "default")? {
        Expression::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

#[test]
fn terraform_files_parse_with_an_hcl_parser() {
    let files = terraform_files();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    for expected in ["versions.tf", "variables.tf", "main.tf", "outputs.tf"] {
        assert!(
            names.iter().any(|n| n == expected),
            "infra/terraform/{expected} missing: {names:?}"
        );
    }
    assert!(
        blocks("resource").count() >= 15,
        "expected the whole deployment in infra/terraform"
    );
    assert!(root()
        .join("infra/terraform/terraform.tfvars.example")
        .is_file());
}

#[test]
fn terraform_deploys_flex_consumption_with_the_custom_runtime() {
    let app = labelled(
        "resource",
        &["azurerm_function_app_flex_consumption", "app"],
    );
    let get = |k: &str| {
        attr(&app.body, k)
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert_eq!(get("runtime_name"), "\"custom\"");
    assert_eq!(get("runtime_version"), "\"1.0\"");
    assert_eq!(get("storage_container_type"), "\"blobContainer\"");
    assert_eq!(get("instance_memory_in_mb"), "var.instance_memory_mb");
    assert_eq!(get("maximum_instance_count"), "var.maximum_instance_count");
    assert_eq!(get("app_settings"), "local.app_settings");
    let plan = labelled("resource", &["azurerm_service_plan", "plan"]);
    assert_eq!(
        attr(&plan.body, "sku_name")
            .map(|e| e.to_string())
            .as_deref(),
        Some("\"FC1\"")
    );

    // The AzureWebJobsStorage quirk: azapi writes exactly local.app_settings, which holds no
    // plain AzureWebJobsStorage (only the identity-based __ settings).
    let fix = labelled("resource", &["azapi_update_resource", "app_settings"]);
    let body = attr(&fix.body, "body").expect("azapi body").to_string();
    assert!(
        body.contains("local.app_settings"),
        "azapi body must write local.app_settings: {body}"
    );
    let mut keys = BTreeSet::new();
    for name in [
        "host_storage_settings",
        "telemetry_settings",
        "auth_settings",
        "signins_settings",
    ] {
        object_keys(local(name), &mut keys);
    }
    for key in [
        "AzureWebJobsStorage__accountName",
        "AzureWebJobsStorage__credential",
        "AzureWebJobsStorage__clientId",
    ] {
        assert!(
            keys.contains(key),
            "Terraform app settings lack {key}: {keys:?}"
        );
    }
    for key in FORBIDDEN_SETTINGS {
        assert!(
            !keys.contains(*key),
            "Terraform app settings must not set {key}"
        );
    }
    let merged = local("app_settings").to_string();
    assert!(
        merged.contains("local.signins_settings"),
        "app_settings must include signins_settings: {merged}"
    );
}

#[test]
fn terraform_grants_graph_roles_by_name_and_blob_roles_on_the_container() {
    let sp = labelled("data", &["azuread_service_principal", "graph"]);
    assert_eq!(
        attr(&sp.body, "client_id")
            .map(|e| e.to_string())
            .as_deref(),
        Some("\"00000003-0000-0000-c000-000000000000\"")
    );
    let grant = labelled("resource", &["azuread_app_role_assignment", "graph"]);
    let text = hcl::format::to_string(&grant.body).expect("format");
    for needle in [
        "AuditLog.Read.All",
        "Directory.Read.All",
        "app_role_ids[each.value]",
    ] {
        assert!(
            text.contains(needle),
            "azuread_app_role_assignment.graph lacks {needle}: {text}"
        );
    }
    let writer = labelled("resource", &["azurerm_role_assignment", "exports_writer"]);
    assert_eq!(
        attr(&writer.body, "scope")
            .map(|e| e.to_string())
            .as_deref(),
        Some("azurerm_storage_container.exports.id")
    );
    assert_eq!(
        attr(&writer.body, "role_definition_name")
            .map(|e| e.to_string())
            .as_deref(),
        Some("\"Storage Blob Data Contributor\"")
    );
}

#[test]
fn terraform_variables_all_have_descriptions() {
    for var in blocks("variable") {
        let name = var.labels.first().map(|l| l.as_str()).unwrap_or_default();
        assert!(
            attr(&var.body, "description").is_some(),
            "variable {name} has no description"
        );
        assert!(
            attr(&var.body, "type").is_some(),
            "variable {name} has no type"
        );
    }
}

#[test]
fn terraform_app_settings_match_the_code_settings() {
    let Expression::Object(settings) = local("signins_settings") else {
        panic!("local.signins_settings must be an object literal");
    };
    let set: BTreeSet<String> = settings.keys().map(key_name).collect();
    assert_eq!(
        set,
        code_names(),
        "SIGNINS_* app settings in Terraform vs config::SETTINGS"
    );
    for (key, value) in settings {
        let key = key_name(key);
        let mut refs = BTreeSet::new();
        var_refs(value, &mut refs);
        assert!(
            refs.contains(&snake(&key)),
            "{key} must be set from var.{}: {value}",
            snake(&key)
        );
    }

    // Every signins_* variable is one setting, defaulting to the code's default.
    let code = code_settings();
    let vars: BTreeMap<String, &Block> = blocks("variable")
        .filter_map(|b| b.labels.first().map(|l| (l.as_str().to_string(), b)))
        .filter(|(name, _)| name.starts_with("signins_"))
        .collect();
    let var_names: BTreeSet<String> = vars.keys().cloned().collect();
    let expected: BTreeSet<String> = code.keys().map(|n| snake(n)).collect();
    assert_eq!(
        var_names, expected,
        "signins_* variables vs config::SETTINGS"
    );
    for (name, default) in &code {
        let want = if DERIVED.contains(name) { "" } else { default };
        let got = string_default(vars[&snake(name)]);
        assert_eq!(got.as_deref(), Some(want), "default of var.{}", snake(name));
    }
}

// ---------------------------------------------------------------------------------------------
// Bicep (pycep through scripts/parse-bicep.py)
// ---------------------------------------------------------------------------------------------

fn venv_python() -> PathBuf {
    let venv = std::env::var_os("INFRA_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/infra-tools/venv"));
    venv.join("bin/python")
}

/// {path: pycep tree} for every .bicep file under infra/bicep.
pub(crate) fn bicep() -> &'static BTreeMap<String, Value> {
    static TREES: OnceLock<BTreeMap<String, Value>> = OnceLock::new();
    TREES.get_or_init(|| {
        let python = venv_python();
        assert!(
            python.exists(),
            "{} missing: run `bash scripts/check-infra.sh` first (it installs the pinned pycep-parser; \
             .ci/run does so before cargo test)",
            python.display()
        );
        let out = Command::new(&python)
            .current_dir(root())
            .args(["scripts/parse-bicep.py", "infra/bicep"])
            .output()
            .expect("run scripts/parse-bicep.py");
        assert!(
            out.status.success(),
            "Bicep does not parse:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("parse-bicep.py prints JSON")
    })
}

fn bicep_file(rel: &str) -> &'static Value {
    bicep()
        .get(rel)
        .unwrap_or_else(|| panic!("{rel} not parsed; parsed: {:?}", bicep().keys()))
}

#[test]
fn bicep_files_parse_with_the_bicep_parser() {
    let parsed: BTreeSet<&str> = bicep().keys().map(String::as_str).collect();
    for file in [
        "infra/bicep/main.bicep",
        "infra/bicep/modules/storage.bicep",
        "infra/bicep/modules/function-app.bicep",
        "infra/bicep/modules/keyvault.bicep",
        "infra/bicep/modules/graph-permissions.bicep",
    ] {
        assert!(parsed.contains(file), "{file} not parsed: {parsed:?}");
    }
    let config: Value = serde_json::from_str(&read("infra/bicep/bicepconfig.json"))
        .expect("bicepconfig.json is JSON");
    assert!(config["extensions"]["microsoftGraphV1"]
        .as_str()
        .is_some_and(|s| s.contains("microsoftgraph/v1.0")));
    assert!(root().join("infra/bicep/main.bicepparam").is_file());
}

#[test]
fn bicep_deploys_flex_consumption_with_the_custom_runtime() {
    let module = bicep_file("infra/bicep/modules/function-app.bicep");
    let plan = &module["resources"]["plan"]["config"];
    assert_eq!(plan["sku"]["name"], "FC1");
    let site = &module["resources"]["site"]["config"]["properties"];
    assert_eq!(site["httpsOnly"], true);
    let fac = &site["functionAppConfig"];
    assert_eq!(fac["runtime"]["name"], "custom");
    assert_eq!(fac["runtime"]["version"], "1.0");
    assert_eq!(fac["deployment"]["storage"]["type"], "blobContainer");
    assert_eq!(
        fac["scaleAndConcurrency"]["instanceMemoryMB"],
        "instanceMemoryMB"
    );
    assert_eq!(
        fac["scaleAndConcurrency"]["maximumInstanceCount"],
        "maximumInstanceCount"
    );
    let loop_over = &site["siteConfig"]["appSettings"]["loop_type"]["detail"]["object_name"];
    assert_eq!(
        loop_over, "appSettings",
        "site must carry the appSettings parameter"
    );

    let main = bicep_file("infra/bicep/main.bicep");
    let mut keys = BTreeSet::new();
    for var in [
        "hostStorageBase",
        "hostStorageClient",
        "telemetrySettings",
        "secretAuthSettings",
        "userIdentityAuthSettings",
        "signinsSettings",
    ] {
        keys.extend(bicep_object_var(main, var).keys().cloned());
    }
    for key in [
        "AzureWebJobsStorage__accountName",
        "AzureWebJobsStorage__credential",
        "AzureWebJobsStorage__clientId",
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
        "AZURE_CLIENT_SECRET",
    ] {
        assert!(
            keys.contains(key),
            "Bicep app settings lack {key}: {keys:?}"
        );
    }
    for key in FORBIDDEN_SETTINGS {
        assert!(
            !keys.contains(*key),
            "Bicep app settings must not set {key}"
        );
    }
}

#[test]
fn bicep_graph_permissions_use_the_graph_extension_by_name() {
    // pycep cannot read `extension`, so the file is parsed with that line blanked (see
    // scripts/parse-bicep.py) and the extension declaration is checked as text.
    let text = read("infra/bicep/modules/graph-permissions.bicep");
    assert!(text
        .lines()
        .any(|l| l.trim() == "extension microsoftGraphV1"));
    let graph = bicep_file("infra/bicep/modules/graph-permissions.bicep");
    let sp = &graph["resources"]["graph"];
    assert_eq!(sp["type"], "Microsoft.Graph/servicePrincipals");
    assert_eq!(sp["api_version"], "v1.0");
    assert_eq!(sp["existing"], true);
    assert_eq!(sp["config"]["appId"], "graphAppId");
    assert_eq!(
        graph["variables"]["graphAppId"]["value"],
        "00000003-0000-0000-c000-000000000000"
    );
    assert_eq!(
        graph["resources"]["grants"]["type"],
        "Microsoft.Graph/appRoleAssignedTo"
    );
    let roles: Vec<&str> = graph["parameters"]["appRoles"]["default"]
        .as_array()
        .expect("appRoles default")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(roles, ["AuditLog.Read.All", "Directory.Read.All"]);
}

/// Keys of a Bicep object variable of main.bicep.
fn bicep_object_var<'a>(main: &'a Value, name: &str) -> &'a serde_json::Map<String, Value> {
    main["variables"][name]["value"]
        .as_object()
        .unwrap_or_else(|| panic!("var {name} is not an object"))
}

#[test]
fn bicep_app_settings_match_the_code_settings() {
    let main = bicep_file("infra/bicep/main.bicep");

    // The module's appSettings is the union of the setting groups, signinsSettings among them.
    let union = &main["modules"]["functionApp"]["config"]["params"]["appSettings"]["function"];
    assert_eq!(union["type"], "union");
    let groups: BTreeSet<&str> = union["parameters"]
        .as_object()
        .expect("union args")
        .values()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        groups.contains("signinsSettings"),
        "appSettings = union(...) lacks signinsSettings: {groups:?}"
    );

    let settings = bicep_object_var(main, "signinsSettings");
    let set: BTreeSet<String> = settings.keys().cloned().collect();
    assert_eq!(
        set,
        code_names(),
        "SIGNINS_* app settings in Bicep vs config::SETTINGS"
    );
    for (key, value) in settings {
        let param = camel(key);
        let direct = value.as_str() == Some(param.as_str());
        let derived = value["operator"]["operands"]["false_value"].as_str() == Some(param.as_str());
        assert!(
            direct || derived,
            "{key} must be set from param {param}: {value}"
        );
    }

    let code = code_settings();
    let params = main["parameters"].as_object().expect("parameters");
    let signins_params: BTreeSet<String> = params
        .keys()
        .filter(|k| k.starts_with("signins"))
        .cloned()
        .collect();
    let expected: BTreeSet<String> = code.keys().map(|n| camel(n)).collect();
    assert_eq!(
        signins_params, expected,
        "signins* parameters vs config::SETTINGS"
    );
    for (name, default) in &code {
        let want = if DERIVED.contains(name) { "" } else { default };
        let param = &params[&camel(name)];
        assert_eq!(
            param["default"].as_str(),
            Some(want),
            "default of param {}",
            camel(name)
        );
        let described = param["decorators"].as_array().is_some_and(|d| {
            d.iter().any(|d| {
                d["type"] == "description"
                    && d["argument"].as_str().is_some_and(|a| a.starts_with(name))
            })
        });
        assert!(
            described,
            "param {} needs a @description starting with {name}",
            camel(name)
        );
    }
}

#[test]
fn bicep_parameters_and_terraform_variables_share_names() {
    let main = bicep_file("infra/bicep/main.bicep");
    let params: BTreeSet<String> = main["parameters"]
        .as_object()
        .expect("parameters")
        .keys()
        .map(|k| camel_to_snake(k))
        .collect();
    let vars: BTreeSet<String> = blocks("variable")
        .filter_map(|b| b.labels.first().map(|l| l.as_str().to_string()))
        .collect();
    // Language-specific inputs: Terraform needs the resource group and the version that makes
    // it send the write-only secret again; it creates the tenant-scoped Entra diagnostic setting
    // in the same configuration, where Bicep has a deployment file of its own for it
    // (diagnostic-setting.bicep).
    let only_bicep: BTreeSet<String> = BTreeSet::new();
    let only_tf: BTreeSet<String> = [
        "resource_group_name",
        "client_secret_version",
        "create_diagnostic_setting",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(
        params.difference(&vars).cloned().collect::<BTreeSet<_>>(),
        only_bicep
    );
    assert_eq!(
        vars.difference(&params).cloned().collect::<BTreeSet<_>>(),
        only_tf
    );

    for (bicep_name, tf_name) in [
        ("signinsReportDays", "signins_report_days"),
        ("instanceMemoryMB", "instance_memory_mb"),
        ("powerBiPrincipalId", "power_bi_principal_id"),
    ] {
        assert_eq!(camel_to_snake(bicep_name), tf_name);
    }
}

#[test]
fn both_flavours_output_app_name_container_url_and_refresh_url() {
    let outputs = bicep_file("infra/bicep/main.bicep")["outputs"]
        .as_object()
        .expect("outputs");
    for name in ["functionAppName", "exportContainerUrl", "refreshUrl"] {
        assert!(
            outputs.contains_key(name),
            "main.bicep output {name} missing"
        );
        assert!(
            blocks("output").any(|b| b
                .labels
                .first()
                .is_some_and(|l| l.as_str() == camel_to_snake(name))),
            "output {} missing",
            camel_to_snake(name)
        );
    }
    assert!(read("infra/bicep/main.bicep").contains("/api/refresh"));
    let refresh = labelled("output", &["refresh_url"]);
    assert!(attr(&refresh.body, "value")
        .expect("value")
        .to_string()
        .contains("/api/refresh"));
}

// ---------------------------------------------------------------------------------------------
// The optional diagnostic-settings source: storage account, lifecycle rule, reader role, setting
// ---------------------------------------------------------------------------------------------

/// The four sign-in containers a diagnostic setting writes (src/graph/model.rs).
fn diagnostic_containers() -> Vec<&'static str> {
    signin_export::graph::model::EventType::ALL
        .iter()
        .map(|t| t.diagnostic_container())
        .collect()
}

#[test]
fn terraform_can_create_the_diagnostic_setting_its_storage_and_the_reader_role() {
    let account = labelled("resource", &["azurerm_storage_account", "diagnostic"]);
    let get = |block: &Block, key: &str| {
        attr(&block.body, key)
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert_eq!(get(account, "count"), "var.diagnostic_storage ? 1 : 0");
    assert_eq!(get(account, "shared_access_key_enabled"), "false");

    let policy = labelled(
        "resource",
        &["azurerm_storage_management_policy", "diagnostic"],
    );
    let text = hcl::format::to_string(&policy.body)
        .expect("format")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for needle in [
        "blob_types = [ \"appendBlob\" ]",
        "delete_after_days_since_modification_greater_than = var.diagnostic_retention_days",
        "prefix_match = values(local.diagnostic_containers)",
    ] {
        assert!(
            text.contains(needle),
            "management policy lacks {needle}: {text}"
        );
    }
    let containers = local("diagnostic_containers").to_string();
    for container in diagnostic_containers() {
        assert!(
            containers.contains(container),
            "{container} not in {containers}"
        );
    }

    let reader = labelled(
        "resource",
        &["azurerm_role_assignment", "diagnostic_reader"],
    );
    assert_eq!(
        get(reader, "scope"),
        "azurerm_storage_account.diagnostic[0].id"
    );
    assert_eq!(
        get(reader, "role_definition_name"),
        "\"Storage Blob Data Reader\""
    );

    let setting = labelled(
        "resource",
        &["azurerm_monitor_aad_diagnostic_setting", "signins"],
    );
    assert_eq!(
        get(setting, "count"),
        "var.create_diagnostic_setting ? 1 : 0"
    );
    assert_eq!(
        get(setting, "storage_account_id"),
        "azurerm_storage_account.diagnostic[0].id"
    );
    let text = hcl::format::to_string(&setting.body).expect("format");
    assert!(
        text.contains("local.diagnostic_categories[enabled_log.value]"),
        "the setting archives the categories of SIGNINS_EVENT_TYPES: {text}"
    );
    let categories = local("diagnostic_categories").to_string();
    for t in signin_export::graph::model::EventType::ALL {
        let pair = format!("{} = \"{}\"", t.as_str(), t.diagnostic_category());
        assert!(categories.contains(&pair), "{pair} not in {categories}");
    }
}

#[test]
fn bicep_can_create_the_diagnostic_storage_and_has_a_tenant_deployment_for_the_setting() {
    let main = bicep_file("infra/bicep/main.bicep");
    let module = &main["modules"]["diagnosticStorageAccount"];
    assert_eq!(module["config"]["condition"], "diagnosticStorage");
    let params = &module["config"]["config"]["params"];
    assert_eq!(params["expireAppendBlobPrefixes"], "diagnosticContainers");
    assert_eq!(params["expireAfterDays"], "diagnosticRetentionDays");
    let listed: Vec<&str> = main["variables"]["diagnosticContainers"]["value"]
        .as_array()
        .expect("diagnosticContainers")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(listed, diagnostic_containers());

    let storage = bicep_file("infra/bicep/modules/storage.bicep");
    let rule = &storage["resources"]["expiry"]["config"]["config"]["properties"]["policy"]["rules"]
        [0]["definition"];
    assert_eq!(rule["filters"]["blobTypes"][0], "appendBlob");
    assert_eq!(rule["filters"]["prefixMatch"], "expireAppendBlobPrefixes");
    assert_eq!(
        rule["actions"]["baseBlob"]["delete"]["daysAfterModificationGreaterThan"],
        "expireAfterDays"
    );

    let reader = &main["resources"]["diagnosticReader"]["config"];
    assert_eq!(reader["condition"], "diagnosticStorage");
    assert_eq!(reader["config"]["scope"], "diagnosticAccount");
    assert_eq!(
        reader["config"]["properties"]["roleDefinitionId"]["function"]["parameters"]
            ["resource_name_1"]["operator"]["operands"]["operand_2"],
        "storageBlobDataReader"
    );

    let tenant = bicep_file("infra/bicep/diagnostic-setting.bicep");
    assert_eq!(tenant["globals"]["scope"]["value"], "tenant");
    let setting = &tenant["resources"]["setting"];
    assert_eq!(setting["type"], "Microsoft.AADIAM/diagnosticSettings");
    assert_eq!(
        setting["config"]["properties"]["storageAccountId"],
        "storageAccountId"
    );
    let allowed = tenant["parameters"]["categories"]["decorators"]
        .as_array()
        .expect("decorators")
        .iter()
        .find(|d| d["type"] == "allowed")
        .expect("@allowed categories");
    let allowed: Vec<&str> = allowed["argument"]
        .as_array()
        .expect("allowed")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let categories: Vec<&str> = signin_export::graph::model::EventType::ALL
        .iter()
        .map(|t| t.diagnostic_category())
        .collect();
    assert_eq!(allowed, categories);
    assert!(main["outputs"].get("diagnosticStorageId").is_some());
    assert!(blocks("output").any(|b| b
        .labels
        .first()
        .is_some_and(|l| l.as_str() == "diagnostic_storage_id")));
}

// ---------------------------------------------------------------------------------------------
// README
// ---------------------------------------------------------------------------------------------

#[test]
fn readme_configuration_table_lists_the_code_settings() {
    let readme = read("README.md");
    let names: BTreeSet<String> = readme
        .lines()
        .filter(|l| l.starts_with("| `SIGNINS_"))
        .filter_map(|l| l.split('`').nth(1).map(str::to_string))
        .collect();
    assert_eq!(
        names,
        code_names(),
        "README configuration table vs config::SETTINGS"
    );
}

// ---------------------------------------------------------------------------------------------
// Alerts: the run-event query is the same in both flavours and the docs
// ---------------------------------------------------------------------------------------------

#[test]
fn alerts_query_the_run_event_line_the_same_way_everywhere() {
    // The contract with the handler: one `SIGNIN_EXPORT_RUN {json}` line per run on the
    // Functions host console, which Application Insights stores in `traces`.
    let lines = [
        r#"| where message contains_cs "SIGNIN_EXPORT_RUN ""#,
        r#"| extend run = parse_json(extract(@"SIGNIN_EXPORT_RUN (\{.*\})", 1, message))"#,
    ];
    for file in [
        "infra/terraform/main.tf",
        "infra/bicep/modules/alerts.bicep",
        "docs/deploy.md",
    ] {
        let text = read(file);
        for line in lines {
            assert!(
                text.contains(line),
                "{file} lacks the run-event query line {line}"
            );
        }
        for outcome in ["\"completed\"", "\"deadline-reached\"", "\"failed\""] {
            assert!(
                file == "docs/deploy.md" || text.contains(outcome),
                "{file}: {outcome}"
            );
        }
        if file != "docs/deploy.md" {
            // The staleness rule keys on progress (issue 16): runs that commit nothing count as
            // stalled, and no run event at all (a new deployment) is no row, not an alert.
            for part in [
                "coalesce(toint(run.stalledRuns), 0) == 0",
                "| where isnotnull(firstRun)",
                "minutesSinceProgress",
            ] {
                assert!(
                    text.contains(part),
                    "{file}: the staleness rule lacks {part}"
                );
            }
        }
    }
    // Both flavours: one parameter for the target, one for the staleness, same names.
    let main = bicep_file("infra/bicep/main.bicep");
    for name in ["alertTarget", "alertStaleMinutes"] {
        assert!(main["parameters"].get(name).is_some(), "main.bicep {name}");
        labelled("variable", &[camel_to_snake(name).as_str()]);
    }
}
