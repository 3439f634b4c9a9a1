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
        .map(|(name, _, _)| name.to_string())
        .collect();
    assert_eq!(documented, code);
}

#[test]
fn readme_preset_table_lists_every_preset() {
    let documented = table_names(&readme(), "preset");
    let code: Vec<String> = Preset::ALL.iter().map(|p| p.as_str().to_string()).collect();
    assert_eq!(documented, code);
}
