//! Records as Graph beta sends them, through the whole export: the `demo` command reads the
//! simulated tenant (every shape Graph sends, unknown locations at 0,0 included) with the real
//! pipeline, and what lands in the CSV is checked against the tenant's own records.

use std::collections::HashMap;
use std::process::Command;

use serde_json::Value;

use fake_tenant::tenant::{generate, TenantSpec};

use crate::support::app::read_csv;
use crate::support::fake::END;

/// No exported row puts a sign-in at 0,0 (issue 18): Graph's unknown locations (no coordinates,
/// an empty object, nulls, or exactly 0 and 0) export empty coordinates, and every real point
/// exports as Graph gave it.
#[test]
fn no_exported_row_puts_a_point_at_zero_zero() {
    let (users, days, seed) = (40, 3, 21);
    let out = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_signin-export"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .args(["demo", "--preset", "all", "--seed", &seed.to_string()])
        .args(["--users", &users.to_string(), "--days", &days.to_string()])
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rows = read_csv(&std::fs::read(out.path().join("all/latest.csv")).unwrap());

    // The demo's tenant: the same seed generates the same sign-ins whatever the end instant
    // (only createdDateTime moves with it).
    let tenant = generate(&TenantSpec {
        users,
        days,
        seed,
        end: END,
    });
    let by_id: HashMap<&str, &Value> = tenant
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r))
        .collect();
    let mut at_zero = 0;
    let mut located = 0;
    for row in &rows {
        let (latitude, longitude) = (row["latitude"].as_str(), row["longitude"].as_str());
        assert_eq!(latitude.is_empty(), longitude.is_empty(), "{row:?}");
        if !latitude.is_empty() {
            let point: (f64, f64) = (latitude.parse().unwrap(), longitude.parse().unwrap());
            assert_ne!(point, (0.0, 0.0), "{row:?}");
        }
        let record = by_id[row["id"].as_str()];
        let geo = &record["location"]["geoCoordinates"];
        let graph_point = (geo["latitude"].as_f64(), geo["longitude"].as_f64());
        match graph_point {
            (Some(0.0), Some(0.0)) => {
                at_zero += 1;
                assert_eq!((latitude, longitude), ("", ""), "{row:?}");
                // Nothing else names a place either.
                assert_eq!(row["location"], "", "{row:?}");
            }
            (Some(lat), Some(lon)) => {
                located += 1;
                assert_eq!(latitude.parse::<f64>().unwrap(), lat, "{row:?}");
                assert_eq!(longitude.parse::<f64>().unwrap(), lon, "{row:?}");
            }
            _ => assert_eq!((latitude, longitude), ("", ""), "{row:?}"),
        }
    }
    assert!(
        at_zero > 0 && located > at_zero,
        "the tenant exported {at_zero} sign-ins Graph put at 0,0 and {located} real points"
    );
}

/// A page is parsed only for the properties its columns (and the filter) read, the rest of each
/// record skipped (issue 17): for every column alone, the default set and every column, the CSV
/// is byte for byte what parsing each whole record gives.
#[test]
fn parsing_only_the_columns_properties_writes_the_same_csv() {
    use signin_export::csv::CsvEncoder;
    use signin_export::graph::client::parse_page;
    use signin_export::graph::model::PropertySet;
    use signin_export::transform::filter::SignInFilter;
    use signin_export::transform::flatten::Columns;

    let records = generate(&TenantSpec::demo(7));
    assert!(records.len() > 500, "{}", records.len());
    let body = serde_json::to_vec(&serde_json::json!({
        "@odata.context": "https://graph.microsoft.com/beta/$metadata#auditLogs/signIns",
        "value": records,
    }))
    .unwrap();
    let encode = |columns: &Columns, properties: PropertySet| {
        let page = parse_page(body.as_slice(), 1, properties).unwrap();
        let mut encoder = CsvEncoder::new(columns, true);
        let mut out = encoder.header().to_vec();
        for signin in page.rows() {
            encoder.encode_signin(columns, signin, &mut out);
        }
        out
    };
    let mut sets = vec![Columns::default_set(), Columns::every()];
    sets.extend(
        Columns::every()
            .names()
            .into_iter()
            .map(|n| Columns::parse(n).unwrap()),
    );
    for columns in sets {
        let properties = columns.properties().union(SignInFilter::properties());
        assert!(
            encode(&columns, properties) == encode(&columns, PropertySet::all()),
            "columns {:?}",
            columns.names()
        );
    }
}
