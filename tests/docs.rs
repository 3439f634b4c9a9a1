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

/// The summaries' tables list their columns in the files' order.
#[test]
fn readme_summary_tables_list_every_summary_column_in_order() {
    use signin_export::summary::{DEVICE_COLUMNS, LOCATION_COLUMNS};
    let readme = readme();
    assert_eq!(
        table_names(&readme, "locations.csv column"),
        LOCATION_COLUMNS
    );
    assert_eq!(table_names(&readme, "devices.csv column"), DEVICE_COLUMNS);
}

#[test]
fn readme_preset_table_lists_every_preset() {
    let documented = table_names(&readme(), "preset");
    let code: Vec<String> = Preset::ALL.iter().map(|p| p.as_str().to_string()).collect();
    assert_eq!(documented, code);
}

fn powerbi_guide() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/powerbi.md"))
        .expect("docs/powerbi.md")
}

/// Whether `paragraph` names one of the Bing-based visuals: *Filled map*, Bing, or the plain *Map*
/// visual (`Map visual`, `**Map** visual`, `map visuals`; any case, across line breaks), but not
/// the *Azure Maps* visual nor a "map visual" right after "Azure ".
fn names_a_bing_map_visual(paragraph: &str) -> bool {
    // Fold emphasis, code marks and line breaks away, so `**Map**\n  visual` reads "map visual".
    let plain = paragraph
        .replace(['*', '_', '`'], "")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    let plain_map_visual = plain.match_indices("map visual").any(|(at, _)| {
        let before = &plain[..at];
        let word_starts = !before.ends_with(|c: char| c.is_alphanumeric());
        word_starts && !before.ends_with("azure ")
    });
    plain_map_visual
        || plain.contains("filled map")
        || plain.contains("bing")
        || paragraph.contains("*Map*")
}

/// The Bing-based Map and Filled map visuals are deprecated: the guide may say so, but every
/// paragraph that names them says they are deprecated or retired, and the map it builds is
/// Azure Maps.
#[test]
fn powerbi_guide_names_no_deprecated_map_visual_as_a_choice() {
    let says_deprecated = |paragraph: &str| {
        let lower = paragraph.to_lowercase();
        lower.contains("deprecat") || lower.contains("retire")
    };
    let guide = powerbi_guide();
    for paragraph in guide.split("\n\n") {
        if names_a_bing_map_visual(paragraph) {
            assert!(
                says_deprecated(paragraph),
                "names a deprecated visual as a choice:\n{paragraph}"
            );
        }
    }
    assert!(
        !guide.contains("**Place**"),
        "Place is not an Azure Maps data category"
    );
    assert!(guide.contains("**Azure Maps** visual"));

    // The check itself: what it must flag, and what it must let through.
    for choice in [
        "Pick the Map visual, or Azure Maps.",
        "Add a **Map** visual.",
        "Use a map\n  visual with `location`.",
        "Turn on *Map and filled map visuals*.",
        "Use a *Filled map* by country.",
        "Bing Maps draws it.",
        "Choose *Map*.",
    ] {
        assert!(names_a_bing_map_visual(choice), "not flagged: {choice}");
        assert!(!says_deprecated(choice), "{choice}");
    }
    for fine in [
        "The **Azure Maps** visual shows the places.",
        "the Azure Maps visual is missing",
        "An Azure map visual, drawn by Azure Maps.",
        "A bitmap visualization.",
        "The sitemap visual layout.",
    ] {
        assert!(!names_a_bing_map_visual(fine), "flagged: {fine}");
    }
}

/// The facts the guide must state (issue 18): tenant settings, the 30,000-point limit, the
/// sovereign-cloud gap, the scheduled refresh behaviour, and what CI did and did not validate.
#[test]
fn powerbi_guide_states_the_limits_and_what_ci_validated() {
    // Compare with line breaks and indentation folded, so rewrapping the guide changes nothing.
    let guide = powerbi_guide()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for fact in [
        "Users can use the Azure Maps visual",
        "processed outside your tenant's geographic region",
        "at most 30,000 data points",
        "never more than 30,000 rows",
        "Sovereign clouds",
        "country → state → city",
        "disables the schedule after four consecutive failures",
        "pauses the schedule after two months without visits",
        "may start up to five minutes early",
        "Validated offline in CI",
        "CI never opened the project in Power BI Desktop",
    ] {
        assert!(guide.contains(fact), "docs/powerbi.md does not say: {fact}");
    }
}

/// Every parameter and measure of the Power BI project is named in the guide.
#[test]
fn powerbi_guide_names_every_parameter_and_measure_of_the_project() {
    let guide = powerbi_guide();
    for name in crate::powerbi::model_expression_names()
        .into_iter()
        .chain(crate::powerbi::model_measure_names())
    {
        assert!(
            guide.contains(&format!("`{name}`")),
            "docs/powerbi.md does not name `{name}`"
        );
    }
}
