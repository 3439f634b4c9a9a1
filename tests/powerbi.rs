//! The Power BI project in powerbi/ (PBIP: a PBIR report and a TMDL semantic model), checked
//! offline. What holds when these tests pass:
//! - every JSON file of the project (.pbip, definition.pbir, definition.pbism, .platform and the
//!   PBIR `definition/` files) validates against Microsoft's published schema it declares
//!   (tests/data/powerbi/schemas, microsoft/json-schemas at a pinned commit), through
//!   scripts/check-pbir-schemas.js (Ajv, pinned in package-lock.json);
//! - the TMDL parses (tests/support/tmdl.rs), its references resolve (ref table, relationships),
//!   every column has a data type and every imported column gets that type from its query (none
//!   is left `any`), and the incremental refresh policy filters on RangeStart/RangeEnd;
//! - every M partition, refresh-policy source and shared expression parses with Microsoft's M
//!   parser and calls only documented M functions or the model's own parameters (the pattern of
//!   tests/powerquery.rs);
//! - each visual's visualType is a known, non-deprecated built-in visual, its data roles are
//!   that visual's (tests/data/powerbi/visual-types.json), and every column and measure a visual,
//!   page or the report refers to exists in the model, as a column or a measure respectively;
//! - powerbi/*.pq is exactly the M of the table of the same name (scripts/sync-powerbi-queries.py
//!   writes it there).
//!
//! What does not: nothing here opens the project in Power BI Desktop or the service, evaluates
//! M or DAX, or renders a visual. DAX is not parsed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::infra::root;
use crate::powerquery;
use crate::support::tmdl::{self, Model};

/// The project checked in the repository.
fn project_dir() -> PathBuf {
    root().join("powerbi")
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(text.trim_start_matches('\u{feff}'))
        .map_err(|e| format!("{}: not JSON: {e}", path.display()))
}

/// The report and semantic model folders a project's `.pbip` leads to.
struct Layout {
    pbip: PathBuf,
    report: PathBuf,
    model: PathBuf,
}

fn layout(dir: &Path) -> Result<Layout, String> {
    let pbips: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pbip"))
        .collect();
    let [pbip] = pbips.as_slice() else {
        return Err(format!(
            "expected one .pbip in {}: {pbips:?}",
            dir.display()
        ));
    };
    let report = read_json(pbip)?["artifacts"][0]["report"]["path"]
        .as_str()
        .map(|p| dir.join(p))
        .ok_or(format!("{}: no artifacts[0].report.path", pbip.display()))?;
    let pbir = report.join("definition.pbir");
    let model = read_json(&pbir)?["datasetReference"]["byPath"]["path"]
        .as_str()
        .map(|p| report.join(p))
        .ok_or(format!(
            "{}: no datasetReference.byPath.path",
            pbir.display()
        ))?;
    Ok(Layout {
        pbip: pbip.clone(),
        report,
        model,
    })
}

fn files_under(dir: &Path, extension: &str, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, extension, out);
        } else if path.extension().is_some_and(|x| x == extension) {
            out.push(path);
        }
    }
}

fn node_modules(package: &str) {
    assert!(
        root().join("node_modules").join(package).is_dir(),
        "node_modules/{package} missing: run `npm ci` (scripts/test.sh does)"
    );
}

/// Every problem with the project in `dir`, one line each; empty when it is valid.
pub(crate) fn check_project(dir: &Path) -> Vec<String> {
    let layout = match layout(dir) {
        Ok(layout) => layout,
        Err(e) => return vec![e],
    };
    let mut problems = schema_problems(&layout);
    if layout.report.join("report.json").exists() {
        problems.push(format!(
            "{}: report.json is the PBIR-Legacy format; save the report as PBIR (definition/)",
            layout.report.display()
        ));
    }
    let model = match tmdl::load_model(&layout.model.join("definition")) {
        Ok(model) => model,
        Err(errors) => {
            problems.extend(errors.iter().map(|e| format!("TMDL {e}")));
            return problems;
        }
    };
    problems.extend(model_problems(&model));
    problems.extend(m_problems(&model));
    problems.extend(report_problems(&layout.report.join("definition"), &model));
    problems
}

/// Schema validation of every JSON file of the project (scripts/check-pbir-schemas.js).
fn schema_problems(layout: &Layout) -> Vec<String> {
    node_modules("ajv");
    let mut files = vec![
        layout.pbip.clone(),
        layout.report.join("definition.pbir"),
        layout.model.join("definition.pbism"),
    ];
    for folder in [&layout.report, &layout.model] {
        let platform = folder.join(".platform");
        if platform.exists() {
            files.push(platform);
        }
    }
    files_under(&layout.report.join("definition"), "json", &mut files);
    let out = Command::new("node")
        .current_dir(root())
        .arg("scripts/check-pbir-schemas.js")
        .arg(root().join("tests/data/powerbi/schemas"))
        .args(&files)
        .output()
        .expect("run node scripts/check-pbir-schemas.js");
    let results: BTreeMap<String, Value> =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "check-pbir-schemas.js printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let mut problems = Vec::new();
    for (file, result) in results {
        let errors = result["errors"].as_array().cloned().unwrap_or_default();
        // Ajv lists every branch of a failed anyOf; the first few say what is wrong.
        for error in errors.iter().take(5) {
            problems.push(format!(
                "schema {}: {file}: {}",
                result["schema"].as_str().unwrap_or("-"),
                error.as_str().unwrap_or_default()
            ));
        }
    }
    problems
}

const DATA_TYPES: &[&str] = &[
    "string", "int64", "double", "decimal", "dateTime", "boolean", "binary",
];

fn model_problems(model: &Model) -> Vec<String> {
    let mut problems = Vec::new();
    for name in &model.table_refs {
        if !model.tables.contains_key(name) {
            problems.push(format!(
                "model.tmdl: ref table {name} has no tables/{name}.tmdl"
            ));
        }
    }
    for (from_table, from_column, to_table, to_column) in &model.relationships {
        for (table, column) in [(from_table, from_column), (to_table, to_column)] {
            if !model
                .tables
                .get(table)
                .is_some_and(|t| t.columns.contains_key(column))
            {
                problems.push(format!(
                    "relationship {from_table}.{from_column} -> {to_table}.{to_column}: no column {table}[{column}]"
                ));
            }
        }
    }
    for (table_name, table) in &model.tables {
        if table.partitions.is_empty() {
            problems.push(format!("table {table_name}: no partition"));
        }
        for (column, spec) in &table.columns {
            match spec.data_type.as_deref() {
                Some(t) if DATA_TYPES.contains(&t) => {}
                other => problems.push(format!(
                    "table {table_name}: column {column} has dataType {other:?}; give it one of {DATA_TYPES:?}"
                )),
            }
        }
        for partition in table.partitions.iter().filter(|p| p.kind == "m") {
            match &partition.source {
                Some(source) => problems.extend(column_type_problems(table_name, table, source)),
                None => problems.push(format!(
                    "table {table_name}: m partition {} without source",
                    partition.name
                )),
            }
        }
        if let Some(policy) = &table.refresh_policy {
            problems.extend(refresh_policy_problems(table_name, table, policy, model));
        }
    }
    problems
}

/// The M type a query gives `column` last: `{"column", type text}`, `{"column", f, type
/// datetime}` or `Table.AddColumn(t, "column", each …, type date)`, written on one line.
fn declared_m_type<'a>(m: &'a str, column: &str) -> Option<&'a str> {
    let quoted = format!("\"{column}\"");
    let mut found = None;
    for (at, _) in m.match_indices(&quoted) {
        let after = m[at + quoted.len()..].trim_start();
        if !after.starts_with(',') {
            continue;
        }
        let line = after.lines().next().unwrap_or_default();
        let typed = [line.find("type "), line.find("Int64.Type")]
            .into_iter()
            .flatten()
            .min();
        if let Some(start) = typed {
            let rest = &line[start..];
            found = Some(if rest.starts_with("Int64.Type") {
                "Int64.Type"
            } else {
                let name = &rest["type ".len()..];
                let end = name
                    .find(|c: char| !c.is_ascii_alphanumeric())
                    .unwrap_or(name.len());
                &name[..end]
            });
        }
    }
    found
}

/// TMDL data type of an M type.
fn tmdl_type(m_type: &str) -> Option<&'static str> {
    Some(match m_type {
        "text" => "string",
        "number" => "double",
        "Int64.Type" => "int64",
        "logical" => "boolean",
        "datetime" | "date" | "datetimezone" => "dateTime",
        _ => return None,
    })
}

fn column_type_problems(table_name: &str, table: &tmdl::Table, m: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for (column, spec) in &table.columns {
        let Some(source) = &spec.source_column else {
            continue;
        };
        match declared_m_type(m, source) {
            None => problems.push(format!(
                "table {table_name}: the query never types column {source} (it would load as any); \
                 give it a type: {{\"{source}\", type …}}"
            )),
            Some(m_type) if tmdl_type(m_type) != spec.data_type.as_deref() => problems.push(format!(
                "table {table_name}: column {column} is {:?} in TMDL but its query gives it type {m_type}",
                spec.data_type
            )),
            Some(_) => {}
        }
    }
    problems
}

/// Incremental refresh: RangeStart/RangeEnd declared as DateTime parameters and used by the
/// policy's source, which is also the partition's query.
fn refresh_policy_problems(
    table_name: &str,
    table: &tmdl::Table,
    policy: &BTreeMap<String, String>,
    model: &Model,
) -> Vec<String> {
    let mut problems = Vec::new();
    for parameter in ["RangeStart", "RangeEnd"] {
        let declared = model.expressions.get(parameter);
        if !declared.is_some_and(|m| {
            m.contains("IsParameterQuery = true") && m.contains("Type = \"DateTime\"")
        }) {
            problems.push(format!(
                "table {table_name}: incremental refresh needs a DateTime parameter {parameter} in expressions.tmdl"
            ));
        }
    }
    for key in [
        "policyType",
        "rollingWindowGranularity",
        "rollingWindowPeriods",
        "incrementalGranularity",
        "incrementalPeriods",
    ] {
        if !policy.contains_key(key) {
            problems.push(format!("table {table_name}: refreshPolicy without {key}"));
        }
    }
    match policy.get("sourceExpression") {
        Some(source) => {
            if !(source.contains(">= RangeStart") && source.contains("< RangeEnd")) {
                problems.push(format!(
                    "table {table_name}: the refresh policy's source must filter `>= RangeStart` and `< RangeEnd` (one bound open, so no row is in two partitions)"
                ));
            }
            if !table
                .partitions
                .iter()
                .any(|p| p.source.as_ref() == Some(source))
            {
                problems.push(format!(
                    "table {table_name}: the refresh policy's sourceExpression differs from the partition's source"
                ));
            }
        }
        None => problems.push(format!(
            "table {table_name}: refreshPolicy without sourceExpression"
        )),
    }
    problems
}

/// Every M text of the model: (label, M).
fn m_texts(model: &Model) -> Vec<(String, String)> {
    let mut texts: Vec<(String, String)> = model
        .expressions
        .iter()
        .map(|(name, m)| (format!("expression {name}"), m.clone()))
        .collect();
    for (table_name, table) in &model.tables {
        for partition in table.partitions.iter().filter(|p| p.kind == "m") {
            if let Some(source) = &partition.source {
                texts.push((
                    format!("table {table_name} partition {}", partition.name),
                    source.clone(),
                ));
            }
        }
        if let Some(source) = table
            .refresh_policy
            .as_ref()
            .and_then(|p| p.get("sourceExpression"))
        {
            texts.push((format!("table {table_name} refreshPolicy"), source.clone()));
        }
    }
    texts
}

/// Microsoft's M parser's verdict on each M text, in order (tests/powerquery.rs::parse).
fn parse_m(texts: &[(String, String)]) -> Vec<Value> {
    let dir = tempfile::tempdir().expect("tempdir");
    let files: Vec<String> = texts
        .iter()
        .enumerate()
        .map(|(i, (_, m))| {
            let path = dir.path().join(format!("{i}.pq"));
            std::fs::write(&path, m).expect("write M");
            path.to_str().expect("utf-8 temp path").to_string()
        })
        .collect();
    let mut results = powerquery::parse(&files.iter().map(String::as_str).collect::<Vec<_>>());
    files
        .iter()
        .map(|f| results.remove(f).expect("a result per file"))
        .collect()
}

/// M parses (Microsoft's parser) and names only documented functions or the model's expressions.
fn m_problems(model: &Model) -> Vec<String> {
    let texts = m_texts(model);
    let known: BTreeSet<String> = powerquery::documented()
        .into_iter()
        .chain(model.expressions.keys().cloned())
        .collect();
    let mut problems = Vec::new();
    for ((label, _), result) in texts.iter().zip(parse_m(&texts)) {
        if result["parsed"] != true {
            problems.push(format!("M of {label} does not parse: {}", result["error"]));
            continue;
        }
        for name in result["libraryReferences"].as_array().into_iter().flatten() {
            let name = name.as_str().unwrap_or_default();
            if !known.contains(name) {
                problems.push(format!(
                    "M of {label} uses {name}: neither a documented M function (m-library.txt) nor an expression of the model"
                ));
            }
        }
    }
    problems
}

/// tests/data/powerbi/visual-types.json
fn visual_types() -> Value {
    read_json(&root().join("tests/data/powerbi/visual-types.json")).expect("visual-types.json")
}

/// A reference to the model found in report JSON.
struct FieldRef {
    /// "Column" or "Measure"
    kind: String,
    table: String,
    property: String,
}

/// Every Column/Measure reference in `value`. Filters name tables through aliases
/// (`"From": [{"Name": "b", "Entity": "T"}]`, then `"SourceRef": {"Source": "b"}`).
fn field_refs(value: &Value, aliases: &BTreeMap<String, String>, out: &mut Vec<FieldRef>) {
    match value {
        Value::Object(map) => {
            let mut aliases = aliases.clone();
            for from in map
                .get("From")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let (Some(name), Some(entity)) = (from["Name"].as_str(), from["Entity"].as_str())
                {
                    aliases.insert(name.to_string(), entity.to_string());
                }
            }
            for (key, child) in map {
                if key == "Column" || key == "Measure" {
                    let source = &child["Expression"]["SourceRef"];
                    let table = source["Entity"].as_str().map(str::to_string).or_else(|| {
                        source["Source"]
                            .as_str()
                            .and_then(|a| aliases.get(a).cloned())
                    });
                    if let (Some(table), Some(property)) = (table, child["Property"].as_str()) {
                        out.push(FieldRef {
                            kind: key.clone(),
                            table,
                            property: property.to_string(),
                        });
                    }
                }
                field_refs(child, &aliases, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| field_refs(v, aliases, out)),
        _ => {}
    }
}

fn field_ref_problems(what: &str, value: &Value, model: &Model) -> Vec<String> {
    let mut refs = Vec::new();
    field_refs(value, &BTreeMap::new(), &mut refs);
    refs.iter()
        .filter_map(|r| {
            let table = model.tables.get(&r.table);
            let exists = match r.kind.as_str() {
                "Column" => table.is_some_and(|t| t.columns.contains_key(&r.property)),
                _ => table.is_some_and(|t| t.measures.contains_key(&r.property)),
            };
            (!exists).then(|| {
                format!(
                    "{what}: {}[{}] is not a {} of the model",
                    r.table,
                    r.property,
                    r.kind.to_lowercase()
                )
            })
        })
        .collect()
}

fn visual_problems(what: &str, visual: &Value, types: &Value) -> Vec<String> {
    let Some(config) = visual.get("visual") else {
        return Vec::new(); // a visual group
    };
    let visual_type = config["visualType"].as_str().unwrap_or_default();
    if let Some(reason) = types["deprecated"][visual_type].as_str() {
        return vec![format!(
            "{what}: visualType {visual_type} is deprecated: {reason}"
        )];
    }
    let Some(roles) = types["types"][visual_type]["roles"].as_object() else {
        return vec![format!(
            "{what}: visualType `{visual_type}` is not a known built-in visual (tests/data/powerbi/visual-types.json)"
        )];
    };
    let mut problems = Vec::new();
    for (role, state) in config["query"]["queryState"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let Some(accepts) = roles.get(role).and_then(Value::as_str) else {
            problems.push(format!("{what}: {visual_type} has no data role {role}"));
            continue;
        };
        for projection in state["projections"].as_array().into_iter().flatten() {
            let field = &projection["field"];
            let is_measure = field.get("Measure").is_some() || field.get("Aggregation").is_some();
            let wrong = match accepts {
                "measure" => !is_measure,
                "grouping" => is_measure,
                _ => false,
            };
            if wrong {
                problems.push(format!(
                    "{what}: role {role} of {visual_type} takes a {accepts}, not {}",
                    if is_measure { "a measure" } else { "a column" }
                ));
            }
        }
    }
    problems
}

fn report_problems(definition: &Path, model: &Model) -> Vec<String> {
    let types = visual_types();
    let mut problems = Vec::new();
    let mut check = |what: String, path: &Path, visual: bool| match read_json(path) {
        Ok(json) => {
            problems.extend(field_ref_problems(&what, &json, model));
            if visual {
                problems.extend(visual_problems(&what, &json, &types));
            }
        }
        Err(e) => problems.push(e),
    };
    check(
        "report.json".to_string(),
        &definition.join("report.json"),
        false,
    );
    let pages = definition.join("pages");
    let order = read_json(&pages.join("pages.json"))
        .ok()
        .and_then(|p| p["pageOrder"].as_array().cloned())
        .unwrap_or_default();
    for page in order.iter().filter_map(Value::as_str) {
        let page_dir = pages.join(page);
        check(format!("page {page}"), &page_dir.join("page.json"), false);
        let mut visuals = Vec::new();
        files_under(&page_dir.join("visuals"), "json", &mut visuals);
        visuals.sort();
        for path in visuals.iter().filter(|p| p.ends_with("visual.json")) {
            let name = path
                .parent()
                .and_then(Path::file_name)
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            check(format!("page {page} visual {name}"), path, true);
        }
    }
    if order.is_empty() {
        problems.push("pages/pages.json: no pageOrder".to_string());
    }
    problems
}

/// The model checked in the repository (the tests call this once each, it is quick).
fn repository_model() -> Model {
    let layout = layout(&project_dir()).expect("powerbi/ layout");
    tmdl::load_model(&layout.model.join("definition")).unwrap_or_else(|errors| {
        panic!(
            "powerbi/ TMDL does not parse:\n{}",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

/// Names the model defines for M (parameters and shared queries): tests/powerquery.rs accepts
/// them in powerbi/*.pq.
pub(crate) fn model_expression_names() -> BTreeSet<String> {
    repository_model().expressions.into_keys().collect()
}

/// Every measure of the model (tests/docs.rs checks the guide names them).
pub(crate) fn model_measure_names() -> BTreeSet<String> {
    repository_model()
        .tables
        .into_values()
        .flat_map(|t| t.measures.into_keys())
        .collect()
}

#[test]
fn power_bi_project_validates_offline() {
    node_modules("@microsoft/powerquery-parser");
    let problems = check_project(&project_dir());
    assert!(
        problems.is_empty(),
        "powerbi/ has problems:\n{}",
        problems.join("\n")
    );
}

/// The parts the issue asks for are there: parameters, the Sign-ins measure on the map's size,
/// latest-value tooltips, user counts that never add a place's distinct users up, the device
/// table, a date slicer, incremental refresh on the history.
#[test]
fn power_bi_project_has_the_map_page_and_its_model() {
    let model = repository_model();
    for parameter in [
        "ContainerUrl",
        "Folder",
        "UtcOffsetMinutes",
        "RangeStart",
        "RangeEnd",
    ] {
        let m = &model.expressions[parameter];
        assert!(m.contains("IsParameterQuery = true"), "{parameter}: {m}");
    }
    assert!(model.tables["Locations"].measures.contains_key("Sign-ins"));
    let policy = model.tables["SignInsHistory"]
        .refresh_policy
        .as_ref()
        .expect("SignInsHistory has an incremental refresh policy");
    assert_eq!(policy["incrementalGranularity"], "day");
    assert!(policy["sourceExpression"].contains("[day] >= RangeStart and [day] < RangeEnd"));

    let page = project_dir().join("SignIns.Report/definition/pages/signInMap/visuals");
    let map = read_json(&page.join("signInMap/visual.json")).expect("map");
    assert_eq!(map["visual"]["visualType"], "azureMap");
    let state = &map["visual"]["query"]["queryState"];
    assert_eq!(
        state["Size"]["projections"][0]["field"]["Measure"]["Property"],
        "Sign-ins"
    );
    assert_eq!(
        state["Y"]["projections"][0]["field"]["Column"]["Property"],
        "latitude"
    );
    assert_eq!(
        state["X"]["projections"][0]["field"]["Column"]["Property"],
        "longitude"
    );
    // Tooltips are measures (latest values), never an implicit First/Last of a text column.
    let tooltips = state["Tooltips"]["projections"]
        .as_array()
        .expect("tooltips");
    assert!(
        tooltips.iter().all(|p| p["field"].get("Measure").is_some()),
        "{tooltips:?}"
    );
    for measure in ["Last user", "Last client app", "Last app", "Place"] {
        let dax = &model.tables["Locations"].measures[measure];
        assert!(
            dax.contains("TOPN(1, Locations, Locations[lastSeen], DESC)"),
            "{measure}: {dax}"
        );
    }
    // locations.csv's `users` is distinct users per place: a measure over it answers for one
    // place only (blank over several), never a sum that counts a user seen at two places twice;
    // the total across places is a distinct count of the sign-ins themselves.
    for (table_name, table) in &model.tables {
        for (measure, dax) in &table.measures {
            if dax.contains("Locations[users]") {
                assert_eq!(
                    dax, "IF(COUNTROWS(Locations) = 1, SUM(Locations[users]))",
                    "{table_name}[{measure}] adds per-place distinct users across places"
                );
            }
        }
    }
    assert_eq!(
        model.tables["SignIns"].measures["Users on the map"],
        "CALCULATE(DISTINCTCOUNTNOBLANK(SignIns[userPrincipalName]), NOT ISBLANK(SignIns[latitude]))"
    );
    let devices = read_json(&page.join("deviceInventory/visual.json")).expect("devices");
    assert_eq!(devices["visual"]["visualType"], "tableEx");
    assert_eq!(
        devices["visual"]["query"]["queryState"]["Values"]["projections"][0]["field"]["Column"]
            ["Expression"]["SourceRef"]["Entity"],
        "Devices"
    );
    let slicer = read_json(&page.join("lastSeenSlicer/visual.json")).expect("slicer");
    assert_eq!(slicer["visual"]["visualType"], "slicer");
    assert_eq!(
        slicer["visual"]["query"]["queryState"]["Values"]["projections"][0]["field"]["Column"]
            ["Property"],
        "Date"
    );
}

/// powerbi/<Table>.pq is the M of that table's partition (and refresh policy): one source.
#[test]
fn power_query_files_are_the_models_queries() {
    let model = repository_model();
    let mut files = Vec::new();
    files_under(&project_dir(), "pq", &mut files);
    files.retain(|f| f.parent() == Some(project_dir().as_path()));
    assert!(files.len() >= 4, "{files:?}");
    for file in files {
        let table_name = file
            .file_stem()
            .expect("stem")
            .to_string_lossy()
            .to_string();
        let text = std::fs::read_to_string(&file).expect("read .pq");
        let body = &text[text.find("\nlet\n").expect("a `let` line") + 1..];
        let table = model
            .tables
            .get(&table_name)
            .unwrap_or_else(|| panic!("{} has no table {table_name} in the model", file.display()));
        let mut sources: Vec<&String> = table
            .partitions
            .iter()
            .filter_map(|p| p.source.as_ref())
            .collect();
        sources.extend(
            table
                .refresh_policy
                .as_ref()
                .and_then(|p| p.get("sourceExpression")),
        );
        assert!(!sources.is_empty());
        for source in sources {
            assert_eq!(
                source.trim_end(),
                body.trim_end(),
                "{} and the TMDL of table {table_name} differ: run python3 scripts/sync-powerbi-queries.py",
                file.display()
            );
        }
    }
}

/// The column names a query's `Columns = { {"name", type …}, … }` list gives, in order.
fn query_columns(pq: &str) -> Vec<String> {
    let text = std::fs::read_to_string(project_dir().join(pq)).expect("read .pq");
    let start = text.find("Columns = {").expect("a Columns = { … } list");
    text[start..]
        .lines()
        .skip(1)
        .take_while(|l| l.trim_start().starts_with("{\""))
        .filter_map(|l| l.split('"').nth(1).map(str::to_string))
        .collect()
}

/// The queries load exactly the columns the export writes, in its order: latest.csv and the
/// daily files have the default SIGNINS_COLUMNS; the summaries have the export's summary columns
/// (`signin_export::summary`'s header constants, the README's summary tables).
#[test]
fn power_bi_queries_load_the_columns_the_export_writes() {
    let defaults: Vec<String> = signin_export::transform::flatten::reference()
        .into_iter()
        .map(|(name, ..)| name)
        .filter(|name| signin_export::transform::flatten::is_default(name))
        .map(str::to_string)
        .collect();
    assert_eq!(query_columns("SignIns.pq"), defaults);
    assert_eq!(query_columns("SignInsHistory.pq"), defaults);
    let locations = signin_export::summary::LOCATION_COLUMNS.join(",");
    assert_eq!(query_columns("Locations.pq").join(","), locations);
    let devices = signin_export::summary::DEVICE_COLUMNS.join(",");
    assert_eq!(query_columns("Devices.pq").join(","), devices);
}

/// Copies the project to a temp dir, changes one file there, and returns the check's problems.
fn check_mutated(relative: &str, change: impl FnOnce(String) -> String) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&project_dir(), dir.path());
    let path = dir.path().join(relative);
    let text = std::fs::read_to_string(&path).expect("read file to mutate");
    let changed = change(text.clone());
    assert_ne!(changed, text, "the mutation of {relative} changed nothing");
    std::fs::write(&path, changed).expect("write mutated file");
    check_project(dir.path())
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir").flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

const MAP: &str = "SignIns.Report/definition/pages/signInMap/visuals/signInMap/visual.json";
const DEVICES: &str =
    "SignIns.Report/definition/pages/signInMap/visuals/deviceInventory/visual.json";

fn assert_reported(problems: &[String], expected: &str) {
    assert!(
        problems.iter().any(|p| p.contains(expected)),
        "expected a problem containing {expected:?}, got:\n{}",
        problems.join("\n")
    );
}

#[test]
fn power_bi_check_rejects_an_unknown_or_deprecated_visual_type() {
    let problems = check_mutated(MAP, |t| t.replace("\"azureMap\"", "\"azureMaps\""));
    assert_reported(
        &problems,
        "visualType `azureMaps` is not a known built-in visual",
    );
    let problems = check_mutated(MAP, |t| t.replace("\"azureMap\"", "\"map\""));
    assert_reported(&problems, "visualType map is deprecated");
}

#[test]
fn power_bi_check_rejects_a_field_bound_to_a_missing_column_or_measure() {
    let problems = check_mutated(DEVICES, |t| {
        t.replace(
            "\"Property\": \"deviceOperatingSystem\"",
            "\"Property\": \"deviceOS\"",
        )
    });
    assert_reported(&problems, "Devices[deviceOS] is not a column of the model");
    let problems = check_mutated(MAP, |t| {
        t.replace("\"Property\": \"Sign-ins\"", "\"Property\": \"Signins\"")
    });
    assert_reported(
        &problems,
        "Locations[Signins] is not a measure of the model",
    );
    // A measure bound where the visual takes a column is a wrong role, not a missing field.
    let problems = check_mutated(MAP, |t| t.replace("\"Size\"", "\"Category\""));
    assert_reported(&problems, "role Category of azureMap takes a grouping");
}

#[test]
fn power_bi_check_rejects_an_m_syntax_error_and_an_untyped_column() {
    let locations = "SignIns.SemanticModel/definition/tables/Locations.tmdl";
    let problems = check_mutated(locations, |t| {
        t.replacen(
            "Table.SelectColumns(Nulls,",
            "Table.SelectColumns(Nulls,,",
            1,
        )
    });
    assert_reported(
        &problems,
        "M of table Locations partition Locations does not parse",
    );
    let problems = check_mutated(locations, |t| t.replacen("{\"users\", Int64.Type},", "", 1));
    assert_reported(&problems, "the query never types column users");
}

#[test]
fn power_bi_check_rejects_a_schema_violation_and_broken_tmdl() {
    let problems = check_mutated(MAP, |t| t.replacen("\"position\": {", "\"positon\": {", 1));
    assert_reported(&problems, "must NOT have additional properties 'positon'");
    let problems = check_mutated("SignIns.SemanticModel/definition/relationships.tmdl", |t| {
        t.replacen("Calendar.Date", "Calendar.Day", 1)
    });
    assert_reported(&problems, "no column Calendar[Day]");
    let problems = check_mutated(
        "SignIns.SemanticModel/definition/tables/Devices.tmdl",
        |t| t.replacen("\tcolumn userDisplayName", "  column userDisplayName", 1),
    );
    assert_reported(&problems, "indentation must be tabs");
}

#[test]
fn tmdl_parser_reads_microsofts_sample_model() {
    let model = tmdl::load_model(&root().join("tests/data/powerbi/tmdl-sample/definition"))
        .unwrap_or_else(|errors| panic!("{errors:?}"));
    assert_eq!(model.tables.len(), 11, "{:?}", model.tables.keys());
    assert_eq!(model.table_refs.len(), 11);
    let sales = &model.tables["Sales"];
    // Single-line, multi-line and ``` measures
    assert_eq!(sales.measures["Sales Qty"], "sum('Sales'[Quantity])");
    assert!(
        sales.measures["Sales Amount  (% Δ LY)"].starts_with("var ly =[Sales Amount (LY)]\nreturn")
    );
    assert!(
        sales.measures["Margin"].starts_with("SUMX (\n    Sales,"),
        "{:?}",
        sales.measures["Margin"]
    );
    assert_eq!(
        sales.columns["Order Date"].data_type.as_deref(),
        Some("dateTime")
    );
    let partition = &sales.partitions[0];
    assert_eq!(
        (partition.kind.as_str(), partition.name.as_str()),
        ("m", "Sales-ddb4c40b-46fd-49ea-9a19-16e7e640a21a")
    );
    let source = partition.source.as_deref().expect("source");
    assert!(
        source.starts_with("let\n    Source = #\"RAW-SalesDateAdjustedAndSalesRandomized\","),
        "{source}"
    );
    assert!(source.ends_with("in\n    #\"Added Custom\""), "{source}");
    assert_eq!(
        model.tables["Parameter - Measure"].partitions[0].kind,
        "calculated"
    );
    assert!(model.expressions["RangeStart"].contains("Type=\"DateTime\""));
    assert!(model.expressions["RAW-Sales"].starts_with("let\n"));
    assert_eq!(model.relationships.len(), 5);
    assert!(model.relationships.contains(&(
        "Sales".to_string(),
        "Order Date".to_string(),
        "Calendar".to_string(),
        "Date".to_string()
    )));
    // Every M text of Microsoft's sample parses with Microsoft's M parser too.
    let texts = m_texts(&model);
    for ((label, _), result) in texts.iter().zip(parse_m(&texts)) {
        assert_eq!(result["parsed"], true, "{label}: {}", result["error"]);
    }
}

#[test]
fn tmdl_parser_rejects_what_tmdl_does_not_allow() {
    let parse = |text: &str| tmdl::parse(Path::new("t.tmdl"), text).map_err(|e| e.to_string());
    let err = parse("table T\n    column C\n").expect_err("spaces");
    assert!(err.contains("tabs"), "{err}");
    let err = parse("table T\n\t\t\tcolumn C\n").expect_err("too deep");
    assert!(
        err.contains("t.tmdl:2: indented 3 tabs where 1 were expected"),
        "{err}"
    );
    let err = parse("table T\n\tmeasure M = ```\n\t\t\tSUM(T[C])\n").expect_err("open ```");
    assert!(err.contains("never closed"), "{err}");
    let err = parse("table 'T\n").expect_err("quote");
    assert!(err.contains("unterminated quoted name"), "{err}");
    let nodes =
        parse("table 'It''s'\n\tcolumn C\n\t\tdataType: string\n\t\tisHidden\n").expect("valid");
    assert_eq!(nodes[0].name.as_deref(), Some("It's"));
    let column = &nodes[0].children[0];
    assert_eq!(column.properties["dataType"], "string");
    assert_eq!(column.properties["isHidden"], "true");
}

#[test]
fn declared_m_type_reads_the_last_type_a_query_gives_a_column() {
    let m = "Columns = {\n    {\"a\", type datetimezone},\n    {\"n\", Int64.Type}\n},\n\
             Utc = Table.TransformColumns(T, {{\"a\", ToUtc, type datetime}}),\n\
             D = Table.AddColumn(Utc, \"d\", each DateTime.Date([a]), type date)";
    assert_eq!(declared_m_type(m, "a"), Some("datetime"));
    assert_eq!(declared_m_type(m, "n"), Some("Int64.Type"));
    assert_eq!(declared_m_type(m, "d"), Some("date"));
    assert_eq!(declared_m_type(m, "missing"), None);
}
