//! The README's reference tables match the code they document.

use signin_export::transform::filter::Preset;
use signin_export::transform::flatten::reference;

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md")
}

/// First-column names of the table whose header row starts with `| {first} |`.
fn table_names(readme: &str, first: &str) -> Vec<String> {
    let mut lines = readme
        .lines()
        .skip_while(|l| !l.starts_with(&format!("| {first} |")));
    lines.next().expect("table header");
    lines
        .skip(1)
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| l.split('`').nth(1).map(str::to_string))
        .collect()
}

#[test]
fn readme_column_table_lists_every_column_in_order() {
    let documented = table_names(&readme(), "column");
    let code: Vec<String> = reference()
        .into_iter()
        .map(|(name, _, _, _)| name.to_string())
        .collect();
    assert_eq!(documented, code);
}

/// Each row of the column table names the Graph source and the Graph version the code uses.
#[test]
fn readme_column_table_states_source_and_version() {
    let readme = readme();
    for (name, source, version, _) in reference() {
        let row = readme
            .lines()
            .find(|l| l.starts_with(&format!("| `{name}` |")))
            .unwrap_or_else(|| panic!("no README row for {name}"));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        assert_eq!(
            cells.get(3).copied(),
            Some(format!("`{source}`").as_str()),
            "{row}"
        );
        assert_eq!(cells.get(4).copied(), Some(version), "{row}");
    }
}

#[test]
fn readme_preset_table_lists_every_preset() {
    let documented = table_names(&readme(), "preset");
    let code: Vec<String> = Preset::ALL.iter().map(|p| p.as_str().to_string()).collect();
    assert_eq!(documented, code);
}
