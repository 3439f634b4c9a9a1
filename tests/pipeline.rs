//! The whole pipeline against the strict fake tenant, into a local folder: completeness against
//! ground truth, exactly-once across runs and crashes, presets, throttling, deadlines, CSV fidelity.

use std::collections::BTreeSet;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use fake_tenant::RetryAfter;
use signin_export::run::{self, RunError, RunOutcome, RunRequest};

use crate::support::app::{
    covered_spans, created, ids_in_spans, ids_where, interactive, read_csv, TestApp,
};
use crate::support::fake::{recent_tenant, tenant_ending_at};
use crate::support::sink::FaultySink;

/// The destination holds exactly the tenant's interactive sign-ins created in `[start, end)`,
/// each once.
fn assert_exported_exactly(
    app: &TestApp,
    settings: &signin_export::config::Settings,
    start: OffsetDateTime,
    end: OffsetDateTime,
) {
    let truth = ids_where(&app.fake.all_signins(), start, end, interactive);
    assert_eq!(counts_once(&app.exported_id_counts(settings)), truth);
}

fn counts_once(counts: &std::collections::BTreeMap<String, usize>) -> BTreeSet<String> {
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "ids written more than once: {twice:?}");
    counts.keys().cloned().collect()
}

#[tokio::test]
async fn every_page_of_every_slice_is_exported_exactly_once() {
    let app = TestApp::spawn(recent_tenant(60, 7, 11)).await;
    // Small server pages: every slice spans several pages and nextLinks.
    app.fake.faults().page_size_cap(7);
    let settings = app.settings(&[("SIGNINS_PRESET", "all")]);
    let summary = app.export(&settings).await;

    let (start, end) = (summary.window_start.unwrap(), summary.window_end.unwrap());
    let truth = ids_where(&app.fake.all_signins(), start, end, interactive);
    assert!(
        truth.len() > 300,
        "tenant too small to mean anything: {}",
        truth.len()
    );
    let exported = counts_once(&app.exported_id_counts(&settings));
    assert_eq!(exported, truth);
    assert_eq!(summary.rows as usize, truth.len());
    assert!(
        summary.pages > summary.slices_total as u64 * 2,
        "pages {} for {} slices",
        summary.pages,
        summary.slices_total
    );

    // Every row sits in its own UTC day's file, newest first within a run's slice.
    for (file, rows) in app.daily_rows(&settings) {
        for row in &rows {
            assert!(
                file.starts_with(&row["createdDateTime"][..10]),
                "{} in {file}",
                row["createdDateTime"]
            );
        }
    }
    // latest.csv = the union of the daily files, newest first, one header.
    let latest = read_csv(&std::fs::read(app.base(&settings).join("latest.csv")).unwrap());
    assert_eq!(latest.len(), truth.len());
    let times: Vec<&str> = latest
        .iter()
        .map(|r| r["createdDateTime"].as_str())
        .collect();
    let mut sorted = times.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted, "latest.csv is newest first");
}

#[tokio::test]
async fn repeated_runs_add_nothing() {
    let app = TestApp::spawn(recent_tenant(30, 3, 12)).await;
    let settings = app.settings(&[("SIGNINS_PRESET", "all"), ("SIGNINS_LOOKBACK", "3d")]);
    let first = app.export(&settings).await;
    assert!(first.rows > 0);
    let before = app.daily_rows(&settings);
    for _ in 0..3 {
        let again = app.export(&settings).await;
        assert_eq!(again.rows, 0, "{again:?}");
    }
    assert_eq!(app.daily_rows(&settings), before);
}

#[tokio::test]
async fn new_and_late_signins_inside_the_overlap_are_captured_once() {
    let records = recent_tenant(30, 2, 13);
    let now = crate::support::clock::now();
    // Sign-ins of the last 40 minutes that Graph has not published yet.
    let late: Vec<String> = records
        .iter()
        .filter(|r| created(r) > now - Duration::from_secs(40 * 60) && interactive(r))
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert!(!late.is_empty(), "the tenant has no recent sign-ins");
    let app = TestApp::spawn(records).await;
    let late_refs: Vec<&str> = late.iter().map(String::as_str).collect();
    app.fake.hide(&late_refs);
    let settings = app.settings(&[("SIGNINS_PRESET", "all"), ("SIGNINS_LOOKBACK", "2d")]);
    let first = app.export(&settings).await;
    let exported = counts_once(&app.exported_id_counts(&settings));
    assert!(late.iter().all(|id| !exported.contains(id)));

    app.fake.publish(&late_refs);
    let second = app.export(&settings).await;
    assert_eq!(second.rows as usize, late.len(), "{second:?}");
    let exported = counts_once(&app.exported_id_counts(&settings));
    let truth = ids_where(
        &app.fake.all_signins(),
        first.window_start.unwrap(),
        second.window_end.unwrap(),
        interactive,
    );
    assert_eq!(exported, truth);
}

/// Each preset's definition, written out independently of `transform::filter` (exact string
/// comparisons, as Graph compares): the ground truth of the preset tests.
fn preset_truth(preset: &str, r: &Value) -> bool {
    let text = |name: &str| r[name].as_str();
    let client = text("clientAppUsed");
    let app = text("appDisplayName").unwrap_or_default();
    match preset {
        "exchange-activesync" => client == Some("Exchange ActiveSync"),
        "exchange" => {
            text("resourceId") == Some("00000002-0000-0ff1-ce00-000000000000")
                || app == "Office 365 Exchange Online"
                || app.starts_with("Exchange")
                || client.is_some_and(|c| {
                    [
                        "Exchange ActiveSync",
                        "Exchange Web Services",
                        "MAPI Over HTTP",
                        "Outlook Anywhere (RPC over HTTP)",
                        "AutoDiscover",
                        "Offline Address Book",
                        "IMAP4",
                        "POP3",
                        "Authenticated SMTP",
                    ]
                    .contains(&c)
                })
        }
        "legacy-auth" => client.is_some_and(|c| {
            !c.is_empty() && c != "Browser" && c != "Mobile Apps and Desktop clients"
        }),
        _ => true,
    }
}

fn user_signin(r: &Value) -> bool {
    r["signInEventTypes"].as_array().is_some_and(|a| {
        a.iter()
            .any(|t| t == "interactiveUser" || t == "nonInteractiveUser")
    })
}

#[tokio::test]
async fn each_preset_exports_its_ground_truth_with_one_query_per_page() {
    let records = recent_tenant(60, 3, 14);
    let app = TestApp::spawn(records.clone()).await;
    for preset in ["exchange-activesync", "exchange", "legacy-auth", "all"] {
        app.fake.clear_requests();
        let settings = app.settings(&[
            ("SIGNINS_PRESET", preset),
            ("SIGNINS_LOOKBACK", "3d"),
            ("SIGNINS_GRAPH_VERSION", "beta"),
            ("SIGNINS_EVENT_TYPES", "interactiveUser,nonInteractiveUser"),
        ]);
        let summary = app.export(&settings).await;
        let truth = ids_where(
            &records,
            summary.window_start.unwrap(),
            summary.window_end.unwrap(),
            |r| user_signin(r) && preset_truth(preset, r),
        );
        assert!(!truth.is_empty(), "{preset}: empty ground truth");
        assert_eq!(
            counts_once(&app.exported_id_counts(&settings)),
            truth,
            "{preset}"
        );
        let requests = app.fake.signin_requests();
        // One query per slice, followed page by page: every request is a first page or a
        // nextLink, never a second stream per event type.
        let first_pages = requests
            .iter()
            .filter(|r| r.query("$skiptoken").is_none())
            .count();
        // (plus the completeness re-check of each slice that took several pages)
        assert_eq!(
            first_pages as u64,
            u64::from(summary.slices_total) + summary.completeness_checks,
            "{preset}"
        );
        for r in &requests {
            let filter = r.query("$filter").unwrap_or_default();
            assert!(
                filter.contains("createdDateTime ge ") && filter.contains("createdDateTime le "),
                "{filter}"
            );
            assert!(
                filter.ends_with(
                    "signInEventTypes/any(t: t eq 'interactiveUser' or t eq 'nonInteractiveUser')"
                ),
                "{filter}"
            );
            let expected = match preset {
                "exchange-activesync" => "(clientAppUsed eq 'Exchange ActiveSync')",
                "exchange" => "resourceId eq '00000002-0000-0ff1-ce00-000000000000'",
                "legacy-auth" => {
                    "(clientAppUsed ne 'Browser' and clientAppUsed ne 'Mobile Apps and Desktop clients')"
                }
                _ => "createdDateTime",
            };
            assert!(filter.contains(expected), "{preset}: {filter}");
        }
        eprintln!(
            "preset {preset}: {} rows, {} requests, {} pages",
            summary.rows, summary.requests, summary.pages
        );
    }
}

#[tokio::test]
async fn exchange_preset_keeps_outlook_sign_ins_to_the_exchange_resource() {
    let records = recent_tenant(40, 2, 21);
    let outlook = |r: &Value| {
        r["appDisplayName"] == "Microsoft Office"
            && r["resourceId"] == "00000002-0000-0ff1-ce00-000000000000"
    };
    assert!(
        records.iter().any(outlook),
        "the tenant has Outlook desktop sign-ins"
    );
    let app = TestApp::spawn(records.clone()).await;
    let settings = app.settings(&[
        ("SIGNINS_PRESET", "exchange"),
        ("SIGNINS_LOOKBACK", "2d"),
        ("SIGNINS_GRAPH_VERSION", "beta"),
        ("SIGNINS_EVENT_TYPES", "interactiveUser,nonInteractiveUser"),
    ]);
    let summary = app.export(&settings).await;
    let outlook_ids = ids_where(
        &records,
        summary.window_start.unwrap(),
        summary.window_end.unwrap(),
        |r| user_signin(r) && outlook(r),
    );
    assert!(!outlook_ids.is_empty());
    let exported = counts_once(&app.exported_id_counts(&settings));
    assert!(outlook_ids.is_subset(&exported));
}

#[tokio::test]
async fn non_interactive_streams_merge_into_the_same_files() {
    let records = recent_tenant(40, 2, 15);
    let app = TestApp::spawn(records.clone()).await;
    let settings = app.settings(&[
        ("SIGNINS_PRESET", "all"),
        ("SIGNINS_LOOKBACK", "2d"),
        ("SIGNINS_GRAPH_VERSION", "beta"),
        ("SIGNINS_EVENT_TYPES", "interactiveUser,nonInteractiveUser"),
    ]);
    let summary = app.export(&settings).await;
    let has = |r: &Value, t: &str| {
        r["signInEventTypes"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == t))
    };
    let truth = ids_where(
        &records,
        summary.window_start.unwrap(),
        summary.window_end.unwrap(),
        |r| has(r, "interactiveUser") || has(r, "nonInteractiveUser"),
    );
    assert!(records.iter().any(|r| has(r, "nonInteractiveUser")));
    assert_eq!(counts_once(&app.exported_id_counts(&settings)), truth);
    for (file, rows) in app.daily_rows(&settings) {
        let times: Vec<&str> = rows.iter().map(|r| r["createdDateTime"].as_str()).collect();
        // Within one slice's block the merged streams are newest first; slices are prepended.
        assert!(!times.is_empty(), "{file} is empty");
    }
}

#[tokio::test]
async fn throttling_is_honoured_and_the_run_completes() {
    let app = TestApp::spawn(recent_tenant(20, 1, 16)).await;
    app.fake.faults().throttle_next(2, RetryAfter::Seconds(1));
    app.fake.faults().fail_next(1, 503);
    let settings = app.settings(&[("SIGNINS_PRESET", "all"), ("SIGNINS_LOOKBACK", "1d")]);
    let summary = app.export(&settings).await;
    assert!(summary.retries >= 3, "{summary:?}");
    assert_exported_exactly(
        &app,
        &settings,
        summary.window_start.unwrap(),
        summary.window_end.unwrap(),
    );
}

/// A malformed page fails the run: nothing of it is used, what the other reads had read
/// completely is committed (and only that), and the next run exports the rest exactly.
#[tokio::test]
async fn a_malformed_page_fails_the_run_and_keeps_only_what_was_read_completely() {
    let app = TestApp::spawn(recent_tenant(20, 2, 17)).await;
    app.fake.faults().page_size_cap(10);
    app.fake.faults().malformed_next(1);
    let settings = app.settings(&[("SIGNINS_PRESET", "all"), ("SIGNINS_LOOKBACK", "2d")]);
    let err = app
        .run(&settings)
        .await
        .expect_err("a malformed page must fail the run");
    assert!(matches!(err, RunError::Graph(_)), "{err:?}");
    assert!(!app.base(&settings).join("latest.csv").exists());
    // What was committed is exactly the ground truth of what the state says is covered.
    let state = app.state(&settings);
    assert_eq!(state["lastRun"]["outcome"], "failed", "{state}");
    let covered = covered_spans(&state);
    assert_eq!(
        counts_once(&app.exported_id_counts(&settings)),
        ids_in_spans(&app.fake.all_signins(), &covered, interactive)
    );
    let summary = app.export(&settings).await;
    assert_exported_exactly(
        &app,
        &settings,
        summary.window_start.unwrap(),
        summary.window_end.unwrap(),
    );
}

#[tokio::test]
async fn csv_round_trips_every_value_through_a_standard_reader() {
    let records = recent_tenant(80, 3, 18);
    let app = TestApp::spawn(records.clone()).await;
    let settings = app.settings(&[("SIGNINS_PRESET", "all"), ("SIGNINS_LOOKBACK", "3d")]);
    app.export(&settings).await;
    let by_id: std::collections::HashMap<&str, &Value> = records
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r))
        .collect();
    let expect_text = |value: &str| -> String {
        let flat: String = value
            .replace("\r\n", " ")
            .chars()
            .map(|c| {
                if matches!(
                    c,
                    '\r' | '\n' | '\u{0B}' | '\u{0C}' | '\u{85}' | '\u{2028}' | '\u{2029}'
                ) {
                    ' '
                } else {
                    c
                }
            })
            .collect();
        if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            format!("'{flat}")
        } else {
            flat
        }
    };
    let mut nasty = 0;
    for rows in app.daily_rows(&settings).values() {
        for row in rows {
            let record = by_id[row["id"].as_str()];
            for (column, path) in [
                ("userDisplayName", &["userDisplayName"][..]),
                ("userPrincipalName", &["userPrincipalName"][..]),
                ("locationCity", &["location", "city"][..]),
                ("deviceDisplayName", &["deviceDetail", "displayName"][..]),
                ("statusFailureReason", &["status", "failureReason"][..]),
            ] {
                let value = path
                    .iter()
                    .try_fold(record, |v, k| v.get(*k))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if value.contains(['\n', '\r', ',', '"', '=']) {
                    nasty += 1;
                }
                assert_eq!(row[column], expect_text(value), "{column} of {}", row["id"]);
                assert!(!row[column].contains(['\r', '\n']));
            }
            let coordinate = |name: &str| {
                record
                    .pointer(&format!("/location/geoCoordinates/{name}"))
                    .and_then(Value::as_f64)
            };
            match (coordinate("latitude"), coordinate("longitude")) {
                // Graph's unknown locations at exactly 0 and 0 export no point (issue 18).
                (Some(lat), Some(lon)) if (lat, lon) != (0.0, 0.0) => {
                    assert_eq!(row["latitude"].parse::<f64>().unwrap(), lat)
                }
                _ => assert_eq!(row["latitude"], ""),
            }
        }
    }
    assert!(
        nasty > 0,
        "the tenant produced no hostile strings to test with"
    );
}

#[tokio::test]
async fn a_second_run_while_one_is_exporting_reports_busy() {
    let app = Arc::new(TestApp::spawn(recent_tenant(20, 1, 19)).await);
    app.fake.faults().slow_pages(Duration::from_millis(150));
    let settings = app.settings(&[("SIGNINS_PRESET", "all"), ("SIGNINS_LOOKBACK", "1d")]);
    let first = {
        let (app, settings) = (app.clone(), settings.clone());
        tokio::spawn(async move { app.run(&settings).await })
    };
    // The first run holds the lock once it asks Graph for a page.
    app.fake.wait_for_page_requests(1).await;
    match app.run(&settings).await.unwrap() {
        RunOutcome::Busy(holder) => {
            assert_eq!(holder.holder, "test");
            assert!(holder.since.is_some());
        }
        other => panic!("expected busy, got {other:?}"),
    }
    assert!(matches!(
        first.await.unwrap().unwrap(),
        RunOutcome::Completed(_)
    ));
    // And the lock is free again afterwards.
    assert!(matches!(
        app.run(&settings).await.unwrap(),
        RunOutcome::Completed(_)
    ));
}

#[tokio::test]
async fn a_deadline_keeps_finished_slices_and_the_next_run_resumes() {
    let app = TestApp::spawn(recent_tenant(20, 3, 20)).await;
    app.fake.faults().page_size_cap(10);
    app.fake.faults().slow_pages(Duration::from_millis(200));
    let settings = app.settings(&[
        ("SIGNINS_PRESET", "all"),
        ("SIGNINS_LOOKBACK", "3d"),
        ("SIGNINS_SLICE", "6h"),
    ]);
    let request = RunRequest {
        deadline: Some(Duration::from_millis(900)),
        holder: "test".into(),
        ..RunRequest::default()
    };
    let partial = match app.run_request(&settings, request).await.unwrap() {
        RunOutcome::DeadlineReached(summary) => summary,
        other => panic!("expected the deadline to hit: {other:?}"),
    };
    assert!(
        partial.slices_done >= 1 && partial.slices_done < partial.slices_total,
        "{partial:?}"
    );
    app.fake.faults().slow_pages(Duration::ZERO);
    let rest = app.export(&settings).await;
    assert_exported_exactly(
        &app,
        &settings,
        partial.window_start.unwrap(),
        rest.window_end.unwrap(),
    );
}

/// Regression (issue 9, measured 89 of 7,542 rows twice): a first run over a window shorter
/// than the overlap, then a back-fill. The forward re-read starts below `coveredFrom`, and the
/// back-fill used to read the same rows again after their ids were pruned.
#[tokio::test]
async fn a_backfill_after_a_short_first_run_writes_no_row_twice() {
    let app = TestApp::spawn(recent_tenant(40, 3, 31)).await;
    let settings = app.settings(&[("SIGNINS_PRESET", "all"), ("SIGNINS_SLICE", "6h")]);
    let now = app.now();
    let first = RunRequest {
        since: Some(now - time::Duration::minutes(130)),
        until: Some(now - time::Duration::minutes(120)),
        holder: "test".into(),
        ..RunRequest::default()
    };
    assert!(matches!(
        app.run_request(&settings, first).await.unwrap(),
        RunOutcome::Completed(_)
    ));
    let backfill = RunRequest {
        since: Some(now - time::Duration::days(2)),
        holder: "test".into(),
        ..RunRequest::default()
    };
    let summary = match app.run_request(&settings, backfill).await.unwrap() {
        RunOutcome::Completed(summary) => summary,
        other => panic!("{other:?}"),
    };
    let truth = ids_where(
        &app.fake.all_signins(),
        now - time::Duration::days(2),
        summary.window_end.unwrap(),
        interactive,
    );
    assert!(truth.len() > 200, "{}", truth.len());
    assert_eq!(counts_once(&app.exported_id_counts(&settings)), truth);
}

/// A back-fill with `until` below what is exported exports its window; the hole between it and
/// what was exported before is the export's to fill, and the next run fills it.
#[tokio::test]
async fn a_backfill_that_ends_below_what_is_exported_leaves_a_hole_the_next_run_fills() {
    let app = TestApp::spawn(recent_tenant(10, 3, 32)).await;
    let settings = app.settings(&[("SIGNINS_PRESET", "all"), ("SIGNINS_LOOKBACK", "1d")]);
    let first = app.export(&settings).await;
    let now = app.now();
    let request = RunRequest {
        since: Some(now - time::Duration::days(3)),
        until: Some(now - time::Duration::days(2)),
        holder: "test".into(),
        ..RunRequest::default()
    };
    let backfill = match app.run_request(&settings, request).await.unwrap() {
        RunOutcome::Completed(summary) => summary,
        other => panic!("{other:?}"),
    };
    assert!(backfill.rows > 0, "{backfill:?}");
    let remaining = backfill
        .remaining
        .expect("the hole up to what was exported remains");
    assert_eq!(remaining.from, now - time::Duration::days(2));
    assert_eq!(remaining.to, first.window_start.unwrap());
    let next = app.export(&settings).await;
    assert!(next.remaining.is_none(), "{next:?}");
    assert_exported_exactly(
        &app,
        &settings,
        now - time::Duration::days(3),
        next.window_end.unwrap(),
    );
}

/// Regression (issue 9, measured 137 refreshes and 0 rows): pages slower than the deadline
/// allows for one slice. Each run used to abandon the same whole slice; now each run commits
/// what it read of it, so repeated short runs converge to exactly the ground truth.
#[tokio::test]
async fn repeated_short_runs_converge_when_one_slice_outlasts_the_deadline() {
    let app = TestApp::spawn(recent_tenant(80, 1, 33)).await;
    app.fake.faults().page_size_cap(5);
    app.fake.faults().slow_pages(Duration::from_millis(150));
    let settings = app.settings(&[
        ("SIGNINS_PRESET", "all"),
        ("SIGNINS_LOOKBACK", "12h"),
        ("SIGNINS_SLICE", "12h"),
    ]);
    let mut runs = 0;
    // The earliest window start of all runs (a run's re-read of the overlap may reach below the
    // first run's start).
    let mut first_start: Option<OffsetDateTime> = None;
    let last = loop {
        runs += 1;
        assert!(runs <= 60, "no convergence after {runs} runs");
        let request = RunRequest {
            deadline: Some(Duration::from_millis(1500)),
            holder: "test".into(),
            ..RunRequest::default()
        };
        match app.run_request(&settings, request).await.unwrap() {
            RunOutcome::Completed(summary) => {
                first_start = first_start
                    .min(summary.window_start)
                    .or(summary.window_start);
                break summary;
            }
            RunOutcome::DeadlineReached(summary) => {
                first_start = first_start
                    .min(summary.window_start)
                    .or(summary.window_start);
            }
            other => panic!("{other:?}"),
        }
    };
    assert!(
        runs > 1,
        "the tenant must not fit in one run for this test to mean anything"
    );
    let truth = ids_where(
        &app.fake.all_signins(),
        first_start.unwrap(),
        last.window_end.unwrap(),
        interactive,
    );
    assert!(truth.len() > 100, "{}", truth.len());
    assert_eq!(counts_once(&app.exported_id_counts(&settings)), truth);
}

/// Regression (issue 9, measured 418 of 16,000 rows lost for good): Graph ends paging early — a
/// short page without `@odata.nextLink` in the middle of a slice. The completeness re-check asks
/// for what lies below the oldest row read before the slice is committed.
#[tokio::test]
async fn paging_that_ends_early_loses_no_row() {
    let app = TestApp::spawn(recent_tenant(60, 2, 34)).await;
    app.fake.faults().page_size_cap(20);
    let settings = app.settings(&[
        ("SIGNINS_PRESET", "all"),
        ("SIGNINS_LOOKBACK", "2d"),
        ("SIGNINS_SLICE", "1d"),
    ]);
    // Paging ends early three times: in the first slice, and twice in a row later (a re-check
    // that itself ends early is followed by another).
    app.fake.faults().end_paging_early_next(3);
    let summary = app.export(&settings).await;
    let truth = ids_where(
        &app.fake.all_signins(),
        summary.window_start.unwrap(),
        summary.window_end.unwrap(),
        interactive,
    );
    assert!(truth.len() > 300, "{}", truth.len());
    assert_eq!(counts_once(&app.exported_id_counts(&settings)), truth);
    // What completeness costs: one re-check per slice that took several pages, plus one per
    // early end (a re-check that itself took several pages is checked in turn).
    assert!(
        summary.completeness_checks >= u64::from(summary.slices_done),
        "{summary:?}"
    );
    assert!(
        summary.completeness_checks <= 2 * u64::from(summary.slices_done) + 3,
        "{summary:?}"
    );
}

/// Regression (issue 9): a run that committed a slice and then failed to rebuild `latest.csv`
/// left the report stale for good — the next run found no new rows and the same set of days,
/// and skipped the rebuild. The commit now marks the report dirty in the state.
#[tokio::test]
async fn latest_csv_is_rebuilt_after_a_run_that_failed_to_rebuild_it() {
    let records = recent_tenant(30, 1, 22);
    let now = crate::support::clock::now();
    let late: Vec<String> = records
        .iter()
        .filter(|r| created(r) > now - Duration::from_secs(30 * 60) && interactive(r))
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert!(!late.is_empty(), "the tenant has no recent sign-ins");
    let app = TestApp::spawn(records).await;
    let late_refs: Vec<&str> = late.iter().map(String::as_str).collect();
    app.fake.hide(&late_refs);
    let settings = app.settings(&[("SIGNINS_PRESET", "all"), ("SIGNINS_LOOKBACK", "12h")]);
    let sink = FaultySink::new(app.base(&settings));
    let run = |sink: Arc<FaultySink>| {
        let deps = app.deps_with_sink(&settings, sink);
        let settings = settings.clone();
        async move {
            let request = RunRequest {
                holder: "test".into(),
                ..RunRequest::default()
            };
            run::run_with(&settings, &deps, request, CancellationToken::new()).await
        }
    };
    assert!(matches!(
        run(sink.clone()).await,
        Ok(RunOutcome::Completed(_))
    ));
    // The late sign-ins appear; this run commits them and fails while rebuilding latest.csv.
    app.fake.publish(&late_refs);
    sink.fail_latest.store(true, Ordering::SeqCst);
    assert!(run(sink.clone()).await.is_err());
    // The next run finds nothing new, yet rebuilds the report.
    sink.fail_latest.store(false, Ordering::SeqCst);
    match run(sink.clone()).await {
        Ok(RunOutcome::Completed(summary)) => assert_eq!(summary.rows, 0, "{summary:?}"),
        other => panic!("{other:?}"),
    }
    let latest = read_csv(&std::fs::read(app.base(&settings).join("latest.csv")).unwrap());
    let daily: usize = app.daily_rows(&settings).values().map(Vec::len).sum();
    assert_eq!(latest.len(), daily, "latest.csv holds every committed row");
    let latest_ids: BTreeSet<&str> = latest.iter().map(|r| r["id"].as_str()).collect();
    assert!(late.iter().all(|id| latest_ids.contains(id.as_str())));
}

/// After an outage longer than Graph's 30-day retention, what can no longer be read is recorded
/// in the state and reported, not hidden; the export resumes at the retention floor.
#[tokio::test]
async fn an_outage_longer_than_the_retention_is_recorded_and_reported() {
    let app = TestApp::spawn(recent_tenant(10, 2, 24)).await;
    let settings = app.settings(&[("SIGNINS_PRESET", "all"), ("SIGNINS_LOOKBACK", "1d")]);
    app.export(&settings).await;
    // The last export "ended" 40 days ago.
    let mut state = app.state(&settings);
    let rfc3339 = |t: OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let long_ago = app.now() - time::Duration::days(40);
    let (from, to) = (
        rfc3339(long_ago - time::Duration::days(1)),
        rfc3339(long_ago),
    );
    state["exportFrom"] = Value::String(from.clone());
    state["covered"] = serde_json::json!([{"from": from, "to": to}]);
    state["recentIds"] = serde_json::json!({});
    app.write_state(&settings, &state);

    let summary = app.export(&settings).await;
    let floor = app.now() - time::Duration::days(30);
    assert_eq!(summary.lost.len(), 1, "the loss is reported: {summary:?}");
    assert_eq!(rfc3339(summary.lost[0].from), to);
    assert_eq!(summary.lost[0].to, floor);
    let state = app.state(&settings);
    assert_eq!(state["lost"].as_array().map(Vec::len), Some(1), "{state}");
    assert_eq!(state["lost"][0]["from"], Value::String(to));
    assert_eq!(state["exportFrom"], Value::String(rfc3339(floor)));
}

/// Sign-ins younger than SIGNINS_SETTLE wait for a later run (Graph still updates them after
/// publishing); that run exports them once.
#[tokio::test]
async fn signins_younger_than_the_settle_delay_wait_for_a_later_run() {
    let app = TestApp::spawn(recent_tenant(40, 1, 25)).await;
    let settling = app.settings(&[
        ("SIGNINS_PRESET", "all"),
        ("SIGNINS_LOOKBACK", "6h"),
        ("SIGNINS_SETTLE", "45m"),
    ]);
    let first = app.export(&settling).await;
    let cut = first.window_end.unwrap();
    assert_eq!(cut, app.now() - Duration::from_secs(45 * 60));
    let exported = app.daily_rows(&settling);
    let youngest = exported
        .values()
        .flatten()
        .map(|r| {
            OffsetDateTime::parse(
                &r["createdDateTime"],
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap()
        })
        .max()
        .unwrap();
    assert!(
        youngest < cut,
        "{youngest} is younger than the settle delay allows"
    );
    let settled = app.settings(&[("SIGNINS_PRESET", "all"), ("SIGNINS_LOOKBACK", "6h")]);
    let second = app.export(&settled).await;
    assert!(
        second.rows > 0,
        "the settled sign-ins come with the next run"
    );
    assert_exported_exactly(
        &app,
        &settled,
        first.window_start.unwrap(),
        second.window_end.unwrap(),
    );
}

/// Slow pages (reported: minutes for a page on selective filters; Microsoft's remedy is a shorter
/// time range). A page given up twice as slow is not asked again: the slice is read in narrower
/// windows, and the narrower width is kept for the rest of the run.
#[tokio::test]
async fn slow_wide_windows_are_read_in_narrower_windows() {
    let app = TestApp::spawn(recent_tenant(100, 1, 26)).await;
    app.fake.faults().page_size_cap(50);
    app.fake
        .faults()
        .slow_windows_wider_than(Duration::from_secs(2 * 3600), Duration::from_secs(10));
    let settings = app.settings(&[
        ("SIGNINS_PRESET", "all"),
        ("SIGNINS_LOOKBACK", "12h"),
        ("SIGNINS_SLICE", "12h"),
    ]);
    let mut deps = app.deps(&settings);
    // Narrow windows answer in milliseconds; 1 s leaves room for a loaded machine.
    deps.graph = deps.graph.with_request_timeout(Duration::from_secs(1));
    let request = RunRequest {
        holder: "test".into(),
        ..RunRequest::default()
    };
    let summary = match run::run_with(&settings, &deps, request, CancellationToken::new()).await {
        Ok(RunOutcome::Completed(summary)) => summary,
        other => panic!("{other:?}"),
    };
    let truth = ids_where(
        &app.fake.all_signins(),
        summary.window_start.unwrap(),
        summary.window_end.unwrap(),
        interactive,
    );
    assert!(truth.len() > 100, "{}", truth.len());
    assert_eq!(counts_once(&app.exported_id_counts(&settings)), truth);
    // Each slow window costs a timed-out request and its retry before it is split (12 h → 6 h →
    // 3 h → 1.5 h), in each chain that started wide; once narrow enough the width is kept: a
    // handful of retries, not two per window.
    assert!(
        summary.retries <= 6 * u64::from(summary.chains),
        "{summary:?}"
    );
}

/// Graph returns the applied Conditional Access policies only to an identity that may read them
/// (Policy.Read.All or Policy.Read.ConditionalAccess); the fake does the same, and the columns
/// are empty without it (`check` warns about that).
#[tokio::test]
async fn conditional_access_columns_need_the_policy_permission() {
    let counts = |grant: bool| async move {
        let app = TestApp::spawn(recent_tenant(20, 1, 27)).await;
        if grant {
            app.fake.grant_role("Policy.Read.All");
        }
        let settings = app.settings(&[
            ("SIGNINS_PRESET", "all"),
            ("SIGNINS_LOOKBACK", "1d"),
            ("SIGNINS_COLUMNS", "id,appliedConditionalAccessPolicyCount"),
        ]);
        app.export(&settings).await;
        app.daily_rows(&settings)
            .values()
            .flatten()
            .map(|r| {
                r["appliedConditionalAccessPolicyCount"]
                    .parse::<u64>()
                    .unwrap()
            })
            .collect::<Vec<_>>()
    };
    let without = counts(false).await;
    assert!(
        !without.is_empty() && without.iter().all(|n| *n == 0),
        "{without:?}"
    );
    let with = counts(true).await;
    assert!(with.iter().any(|n| *n > 0), "{with:?}");
}

/// A query other than the destination's is refused with what differs and the remedy; nothing
/// is read or written.
#[tokio::test]
async fn another_query_on_the_same_destination_is_refused() {
    let app = TestApp::spawn(recent_tenant(10, 1, 23)).await;
    let settings = app.settings(&[("SIGNINS_PRESET", "all"), ("SIGNINS_LOOKBACK", "6h")]);
    app.export(&settings).await;
    let before = app.exported_id_counts(&settings);
    let other = app.settings(&[
        ("SIGNINS_PRESET", "all"),
        ("SIGNINS_LOOKBACK", "6h"),
        ("SIGNINS_FILTER", "userType eq 'member'"),
    ]);
    let requests = app.fake.requests().len();
    let err = app.run(&other).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, RunError::Refused(_)), "{text}");
    assert!(
        text.contains("SIGNINS_FILTER") && text.contains("new destination prefix"),
        "{text}"
    );
    assert_eq!(app.fake.requests().len(), requests, "no Graph request");
    assert_eq!(app.exported_id_counts(&other), before);
}

#[tokio::test]
async fn a_crash_around_a_commit_is_settled_by_the_next_run() {
    for after_commit in [false, true] {
        let app = TestApp::spawn(recent_tenant(30, 2, 21)).await;
        let settings = app.settings(&[("SIGNINS_PRESET", "all"), ("SIGNINS_LOOKBACK", "2d")]);
        let crashing = FaultySink::new(app.base(&settings));
        // The second commit: a 2-day window always has two slices with rows, whatever the time
        // of day (just after midnight UTC, today's slice may have none).
        crashing.crash_at.store(2, Ordering::SeqCst);
        crashing.after_commit.store(after_commit, Ordering::SeqCst);
        let deps = app.deps_with_sink(&settings, crashing);
        let request = RunRequest {
            holder: "test".into(),
            ..RunRequest::default()
        };
        let crashed = run::run_with(&settings, &deps, request, CancellationToken::new()).await;
        assert!(crashed.is_err(), "after_commit={after_commit}");
        let state = std::fs::read_to_string(app.base(&settings).join("_state/state.json")).unwrap();
        assert!(
            state.contains("\"pending\""),
            "the crash leaves a pending commit: {state}"
        );

        app.export(&settings).await;
        // Ground truth: everything in the spans the state says are exported.
        let state = app.state(&settings);
        let truth = ids_in_spans(&app.fake.all_signins(), &covered_spans(&state), interactive);
        let exported = counts_once(&app.exported_id_counts(&settings));
        assert_eq!(exported, truth, "after_commit={after_commit}");
        assert!(state.get("pending").is_none());
    }
}

/// Cancels the run as soon as its first slice is committed.
struct CancelAfterFirstSlice(CancellationToken);

impl signin_export::graph::stream::PageObserver for CancelAfterFirstSlice {}
impl signin_export::run::Observer for CancelAfterFirstSlice {
    fn slice_done(&self, done: u32, _total: u32, _rows: u64) {
        if done == 1 {
            self.0.cancel();
        }
    }
}

/// Regression: a run cancelled between slices recorded its summary over a stale copy of the
/// state, moving the watermark back, so the next run wrote the first slice again.
#[tokio::test]
async fn cancelling_between_slices_keeps_the_committed_slices() {
    let app = TestApp::spawn(recent_tenant(30, 2, 22)).await;
    let settings = app.settings(&[("SIGNINS_PRESET", "all"), ("SIGNINS_LOOKBACK", "2d")]);
    let cancel = CancellationToken::new();
    let mut deps = app.deps(&settings);
    deps.observer = Some(Arc::new(CancelAfterFirstSlice(cancel.clone())));
    let request = RunRequest {
        holder: "test".into(),
        ..RunRequest::default()
    };
    let outcome = run::run_with(&settings, &deps, request, cancel).await;
    assert!(matches!(outcome, Err(RunError::Cancelled)), "{outcome:?}");
    let state = app.state(&settings);
    assert!(
        !covered_spans(&state).is_empty(),
        "the committed slice must stay exported: {state}"
    );
    assert_eq!(state["lastRun"]["outcome"], "cancelled");

    app.export(&settings).await;
    assert!(!app.exported_id_counts(&settings).is_empty());
    counts_once(&app.exported_id_counts(&settings));
}

/// Issue 10: chains of slices are read concurrently, up to `MAX_CHAINS_IN_FLIGHT`, and still land exactly once
/// whatever order their reads finish in.
#[tokio::test]
async fn slices_are_read_concurrently_and_commit_exactly_once() {
    let app = TestApp::spawn(recent_tenant(30, 5, 41)).await;
    app.fake.faults().page_size_cap(40);
    // Slow pages: reads overlap in time, and later slices can finish first.
    app.fake.faults().slow_pages(Duration::from_millis(150));
    let settings = app.settings(&[("SIGNINS_PRESET", "all")]);
    let summary = app.export(&settings).await;
    let (start, end) = (summary.window_start.unwrap(), summary.window_end.unwrap());
    assert!(summary.slices_done >= 5, "{summary:?}");
    assert_exported_exactly(&app, &settings, start, end);
    let most = app.fake.faults().most_in_flight();
    assert_eq!(
        most,
        run::MAX_CHAINS_IN_FLIGHT,
        "the fake answered at most {most} page requests at once"
    );
}

/// Issue 17: a chain reads adjacent days as one sequence of queries, so a run asks Graph for
/// about a page per 1,000 rows (here per 20: the fake's page cap) plus one per chain — not a
/// partial page and a completeness re-check per day.
#[tokio::test]
async fn requests_stay_within_a_page_per_page_of_rows_plus_one_per_chain() {
    for rate in ["1000/1s", "5/1s"] {
        let app = TestApp::spawn(recent_tenant(40, 6, 44)).await;
        app.fake.faults().page_size_cap(20);
        let settings = app.settings(&[
            ("SIGNINS_PRESET", "all"),
            ("SIGNINS_LOOKBACK", "5d"),
            ("SIGNINS_GRAPH_RATE", rate),
        ]);
        let summary = app.export(&settings).await;
        let rows = summary.rows;
        let bound = rows.div_ceil(20) + u64::from(summary.chains) + 1;
        assert!(rows > 300, "{summary:?}");
        assert!(
            summary.requests <= bound,
            "{rate}: {} requests for {rows} rows in {} chains (bound {bound})",
            summary.requests,
            summary.chains
        );
        assert!(summary.chains >= 2, "{summary:?}");
        assert_exported_exactly(
            &app,
            &settings,
            summary.window_start.unwrap(),
            summary.window_end.unwrap(),
        );
    }
}

/// Issue 10: `SIGNINS_GRAPH_RATE` keeps a run inside Graph's request limit: a fake limited to 4
/// requests per second, a client paced to the same, not one 429.
#[tokio::test]
async fn a_paced_run_stays_inside_the_rate_limit() {
    let app = TestApp::spawn(recent_tenant(20, 3, 42)).await;
    app.fake.faults().page_size_cap(15);
    app.fake.faults().limit_rate(4, Duration::from_secs(1));
    let settings = app.settings(&[("SIGNINS_PRESET", "all"), ("SIGNINS_GRAPH_RATE", "4/1s")]);
    let summary = app.export(&settings).await;
    assert!(
        summary.requests >= 10,
        "too few requests to mean anything: {summary:?}"
    );
    assert_eq!(app.fake.faults().rate_limited(), 0, "{summary:?}");
    assert_eq!(summary.retries, 0, "{summary:?}");
    let (start, end) = (summary.window_start.unwrap(), summary.window_end.unwrap());
    assert_exported_exactly(&app, &settings, start, end);
}

/// Issue 10: an app whose budget other tools share gets 429s even when paced to the documented
/// rate; the client learns from them (pauses every request for `Retry-After`, lowers its rate)
/// and the export stays exact.
#[tokio::test]
async fn a_client_paced_above_the_limit_learns_from_429s() {
    let app = TestApp::spawn(recent_tenant(20, 3, 43)).await;
    app.fake.faults().page_size_cap(15);
    app.fake.faults().limit_rate(3, Duration::from_secs(1));
    let settings = app.settings(&[("SIGNINS_PRESET", "all"), ("SIGNINS_GRAPH_RATE", "6/1s")]);
    let summary = app.export(&settings).await;
    let refused = app.fake.faults().rate_limited();
    assert!(refused >= 1, "the limit was never reached: {summary:?}");
    // Each 429 lowers the rate by one: the run converges after a few, not one per window.
    assert!(refused <= 6, "{refused} requests refused: {summary:?}");
    let (start, end) = (summary.window_start.unwrap(), summary.window_end.unwrap());
    assert_exported_exactly(&app, &settings, start, end);
}

/// Issue 17: Microsoft documents only one-type lambdas on `signInEventTypes`. A tenant whose Graph
/// refuses the combined `any(t: t eq 'a' or t eq 'b')` is read with one query per event type,
/// merged newest first, with the same guarantees: the pipeline runs both ways on the same tenant
/// (paging that ends early, a deadline in the middle) and exports the same ground truth, and the
/// state remembers the form so later runs do not ask again.
#[tokio::test]
async fn the_pipeline_is_exact_with_either_form_of_the_event_type_filter() {
    let mut exported = Vec::new();
    for refuse in [false, true] {
        let app = TestApp::spawn(recent_tenant(40, 3, 45)).await;
        app.fake.faults().refuse_combined_event_types(refuse);
        app.fake.faults().page_size_cap(15);
        app.fake.faults().end_paging_early_next(2);
        let settings = app.settings(&[
            ("SIGNINS_PRESET", "all"),
            ("SIGNINS_LOOKBACK", "3d"),
            ("SIGNINS_GRAPH_VERSION", "beta"),
            ("SIGNINS_EVENT_TYPES", "interactiveUser,nonInteractiveUser"),
        ]);
        // A first run stopped by its deadline, then runs to the end.
        app.fake.faults().slow_pages(Duration::from_millis(100));
        let request = RunRequest {
            deadline: Some(Duration::from_millis(1200)),
            holder: "test".into(),
            ..RunRequest::default()
        };
        let first = app.run_request(&settings, request).await.unwrap();
        let start = match &first {
            RunOutcome::DeadlineReached(s) | RunOutcome::Completed(s) => s.window_start.unwrap(),
            other => panic!("{other:?}"),
        };
        app.fake.faults().slow_pages(Duration::ZERO);
        app.fake.clear_requests();
        let last = app.export(&settings).await;
        let truth = ids_where(
            &app.fake.all_signins(),
            start,
            last.window_end.unwrap(),
            user_signin,
        );
        assert!(truth.len() > 300, "{}", truth.len());
        let ids = counts_once(&app.exported_id_counts(&settings));
        assert_eq!(ids, truth, "refuse={refuse}");
        let form = app.state(&settings)["queryForm"].clone();
        let filters: Vec<String> = app
            .fake
            .signin_requests()
            .iter()
            .filter_map(|r| r.query("$filter"))
            .collect();
        if refuse {
            assert_eq!(form, "perEventType");
            // Remembered: the later run never asked for the combined form again.
            assert!(
                filters.iter().all(|f| !f.contains(" or t eq ")),
                "{filters:?}"
            );
            assert!(filters
                .iter()
                .any(|f| f.contains("any(t: t eq 'nonInteractiveUser')")));
        } else {
            assert!(form.is_null(), "{form}");
            assert!(
                filters.iter().all(|f| f.contains(" or t eq ")),
                "{filters:?}"
            );
        }
        exported.push(ids);
    }
    assert_eq!(
        exported[0], exported[1],
        "both forms export the same sign-ins"
    );
}

/// Issue 17: a timer run's new time and its re-read of the overlap below the watermark are two
/// chains in the same daily file. The later one may not stage in that file while the other can
/// still commit (a commit discards the file's uncommitted blocks it does not list), but it reads
/// from the start, holding its blocks meanwhile: its first query goes out with the other's, not
/// after the other's last page. The export stays exact.
#[tokio::test]
async fn a_re_read_in_the_same_daily_file_reads_alongside_the_new_time() {
    let start = crate::support::clock::now();
    let later = start + time::Duration::hours(2);
    let app = TestApp::spawn(tenant_ending_at(later, 300, 2, 46)).await;
    app.fake.faults().page_size_cap(5);
    let settings = app.settings(&[
        ("SIGNINS_PRESET", "all"),
        ("SIGNINS_LOOKBACK", "1d"),
        ("SIGNINS_OVERLAP", "1h"),
    ]);
    let first = app.export(&settings).await;
    app.advance(time::Duration::hours(2));
    app.fake.faults().slow_pages(Duration::from_millis(20));
    let before = app.fake.signin_requests().len();
    let second = app.export(&settings).await;
    let requests = app.fake.signin_requests().split_off(before);
    assert!(
        requests.len() >= 10,
        "too few requests to mean anything: {second:?}"
    );
    // The first query of each chain: below the watermark (`start`) is the re-read's.
    let upper_bound = |r: &fake_tenant::RecordedRequest| -> Option<OffsetDateTime> {
        let filter = r.query("$filter")?;
        let (_, rest) = filter.split_once("createdDateTime le ")?;
        let instant = rest.split_whitespace().next()?;
        OffsetDateTime::parse(instant, &time::format_description::well_known::Rfc3339).ok()
    };
    let re_read = requests
        .iter()
        .position(|r| upper_bound(r).is_some_and(|le| le <= start))
        .expect("the run re-reads the overlap");
    let same_file =
        start.date() == (start - time::Duration::hours(1)).date() && start.date() == later.date();
    if same_file {
        assert!(
            re_read < 3,
            "the re-read's first query was request {re_read} of {}: it waited for the new time",
            requests.len()
        );
    }
    assert!(second.rows > 0, "{second:?}");
    assert_exported_exactly(
        &app,
        &settings,
        first.window_start.unwrap(),
        second.window_end.unwrap(),
    );
}

/// Issue 17: a run whose sign-ins justify more chains than it has days (the rate the state
/// measured over the run's length, `run::plan::ROWS_PER_CHAIN` each) is cut within its day; the
/// chains share the daily file, take turns staging into it, and the export stays exact.
#[tokio::test]
async fn a_busy_day_is_read_as_several_chains_and_stays_exact() {
    let start = crate::support::clock::now();
    let later = start + time::Duration::hours(10);
    let app = TestApp::spawn(tenant_ending_at(later, 16_000, 2, 47)).await;
    let settings = app.settings(&[("SIGNINS_PRESET", "all"), ("SIGNINS_LOOKBACK", "1d")]);
    let first = app.export(&settings).await;
    app.advance(time::Duration::hours(10));
    let second = app.export(&settings).await;
    assert!(
        second.rows as f64 >= 2.0 * signin_export::run::plan::ROWS_PER_CHAIN,
        "too few sign-ins to justify chains: {second:?}"
    );
    // Ten hours of new time and the hour re-read below them, all in one daily file: two chains
    // without the cut, one each.
    assert_eq!(second.files.len(), 1, "{second:?}");
    assert!(second.chains >= 3, "{second:?}");
    assert_eq!(second.slices_done, second.slices_total, "{second:?}");
    assert_exported_exactly(
        &app,
        &settings,
        first.window_start.unwrap(),
        second.window_end.unwrap(),
    );
}
