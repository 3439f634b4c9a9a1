//! The Power Query files in powerbi/ parse with Microsoft's M parser and call only documented
//! M library functions (or the parameters the Power BI project in powerbi/ defines; see
//! tests/powerbi.rs). `scripts/check-powerquery.js` runs `@microsoft/powerquery-parser` (pinned
//! in package-lock.json; `npm ci` in scripts/test.sh installs it, offline afterwards) and lists
//! each file's library references; tests/data/powerquery/m-library.txt is the documented list
//! (MicrosoftDocs/query-docs, the source of learn.microsoft.com/powerquery-m; commit in its
//! header).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

use crate::infra::{read, root};

pub(crate) fn documented() -> BTreeSet<String> {
    read("tests/data/powerquery/m-library.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("# "))
        .map(str::to_string)
        .collect()
}

/// {file: {"parsed", "error", "libraryReferences"}} from scripts/check-powerquery.js.
pub(crate) fn parse(files: &[&str]) -> BTreeMap<String, Value> {
    assert!(
        root()
            .join("node_modules/@microsoft/powerquery-parser")
            .is_dir(),
        "node_modules/@microsoft/powerquery-parser missing: run `npm ci` (scripts/test.sh does)"
    );
    let out = Command::new("node")
        .current_dir(root())
        .arg("scripts/check-powerquery.js")
        .args(files)
        .output()
        .expect("run node scripts/check-powerquery.js");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check-powerquery.js printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn query_files() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(root().join("powerbi"))
        .expect("powerbi/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pq"))
        .map(|p| format!("powerbi/{}", p.file_name().expect("name").to_string_lossy()))
        .collect();
    files.sort();
    files
}

#[test]
fn power_query_files_parse_and_call_only_documented_m_functions() {
    let files = query_files();
    assert!(files.len() >= 2, "expected powerbi/*.pq: {files:?}");
    let refs: Vec<&str> = files.iter().map(String::as_str).collect();
    let documented = documented();
    assert!(documented.len() > 500, "m-library.txt looks truncated");
    // The queries name the project's parameters (ContainerUrl, Folder, …), defined in its TMDL.
    let parameters = crate::powerbi::model_expression_names();
    for (file, result) in parse(&refs) {
        assert_eq!(
            result["parsed"], true,
            "{file} does not parse: {}",
            result["error"]
        );
        let used: Vec<&str> = result["libraryReferences"]
            .as_array()
            .expect("libraryReferences")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(used.contains(&"AzureStorage.Blobs"), "{file}: {used:?}");
        let unknown: Vec<&&str> = used
            .iter()
            .filter(|n| !documented.contains(**n) && !parameters.contains(**n))
            .collect();
        assert!(
            unknown.is_empty(),
            "{file} calls undocumented M names: {unknown:?}"
        );
    }
}

#[test]
fn power_query_check_rejects_syntax_errors_and_undocumented_functions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broken = dir.path().join("broken.pq");
    std::fs::write(&broken, "let\n    A = Table.AddColumn(\nin\n    A\n").expect("write");
    let invented = dir.path().join("invented.pq");
    std::fs::write(
        &invented,
        "let\n    Source = AzureStorage.Blobs(\"https://a.blob.core.windows.net/c\"),\n    \
         Local = DateTimeZone.ToLocalTime(DateTimeZone.UtcNow())\nin\n    Local\n",
    )
    .expect("write");
    let results = parse(&[
        broken.to_str().expect("utf-8"),
        invented.to_str().expect("utf-8"),
    ]);
    let broken = &results[broken.to_str().expect("utf-8")];
    assert_eq!(broken["parsed"], false, "{broken}");
    let invented = &results[invented.to_str().expect("utf-8")];
    assert_eq!(invented["parsed"], true, "{invented}");
    let documented = documented();
    let unknown: Vec<&str> = invented["libraryReferences"]
        .as_array()
        .expect("refs")
        .iter()
        .filter_map(Value::as_str)
        .filter(|n| !documented.contains(*n))
        .collect();
    assert_eq!(unknown, ["DateTimeZone.ToLocalTime"]);
}

#[test]
fn power_query_files_open_the_container_url_and_keep_utc() {
    for file in query_files() {
        let text = read(&file);
        assert!(
            text.contains("AzureStorage.Blobs(ContainerUrl)"),
            "{file}: open the container URL (container-scoped readers cannot list containers)"
        );
        assert!(
            !text.contains("DateTimeZone.ToLocal(") && !text.contains("DateTime.LocalNow"),
            "{file}: local time must come from UtcOffsetMinutes, not the refreshing machine"
        );
        assert!(text.contains("UtcOffsetMinutes"), "{file}");
    }
}
