//! The map-ready summaries (`summary/locations.csv`, `summary/devices.csv`) against the strict
//! fake tenant, into a local folder: exact against `latest.csv` after every kind of run, kept up
//! to date from the committed rows (no daily file read back), repaired after a crash.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use signin_export::config::Settings;
use signin_export::run::{self, RunOutcome, RunRequest};
use signin_export::summary::{DEVICES_FILE, LOCATIONS_FILE};

use crate::support::app::{created, interactive, TestApp};
use crate::support::fake::recent_tenant;
use crate::support::sink::FaultySink;
use crate::support::summaries::{assert_headers, assert_summaries_match};

/// Runs once through `sink`; `deadline` as a refresh would.
async fn run_through(
    app: &TestApp,
    settings: &Settings,
    sink: &Arc<FaultySink>,
    deadline: Option<Duration>,
) -> Result<RunOutcome, run::RunError> {
    let deps = app.deps_with_sink(settings, sink.clone());
    let request = RunRequest {
        deadline,
        holder: "test".into(),
        ..RunRequest::default()
    };
    run::run_with(settings, &deps, request, CancellationToken::new()).await
}

fn read(app: &TestApp, settings: &Settings, file: &str) -> Vec<u8> {
    std::fs::read(app.base(settings).join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// Both summaries are there, with their headers, and exactly what `latest.csv` adds up to.
fn assert_exact(app: &TestApp, settings: &Settings) -> (usize, usize) {
    let (locations, devices) = (
        read(app, settings, LOCATIONS_FILE),
        read(app, settings, DEVICES_FILE),
    );
    assert_headers(&locations, &devices);
    assert_summaries_match(&read(app, settings, "latest.csv"), &locations, &devices)
}

fn tallies_written(put: &BTreeMap<String, u32>) -> usize {
    put.keys()
        .filter(|f| f.starts_with("_state/tally/"))
        .count()
}

#[tokio::test]
async fn a_run_writes_both_summaries_exact_against_latest_csv() {
    let app = TestApp::spawn(recent_tenant(40, 3, 61)).await;
    let settings = app.settings(&[
        ("SIGNINS_PRESET", "all"),
        ("SIGNINS_LOOKBACK", "3d"),
        ("SIGNINS_GRAPH_VERSION", "beta"),
        ("SIGNINS_EVENT_TYPES", "interactiveUser,nonInteractiveUser"),
    ]);
    let sink = FaultySink::new(app.base(&settings));
    let summary = match run_through(&app, &settings, &sink, None).await.unwrap() {
        RunOutcome::Completed(summary) => summary,
        other => panic!("{other:?}"),
    };
    let (places, devices) = assert_exact(&app, &settings);
    assert!(
        places > 5 && devices > 20,
        "{places} places, {devices} devices"
    );
    // The tenant has sign-ins without coordinates, with nulls and at 0,0: none is a place.
    let unlocated = app
        .fake
        .all_signins()
        .iter()
        .filter(|r| {
            r["location"]["geoCoordinates"]["latitude"]
                .as_f64()
                .is_none_or(|l| l == 0.0)
        })
        .count();
    assert!(
        unlocated > 0,
        "the tenant should have sign-ins without a point"
    );
    let (read_back, put) = sink.take_watched();
    assert!(
        read_back.is_empty(),
        "the first run tallies what it writes: {read_back:?}"
    );
    assert_eq!(tallies_written(&put), summary.files.len(), "{put:?}");

    // Nothing new: nothing is rebuilt, nothing read.
    run_through(&app, &settings, &sink, None).await.unwrap();
    let (read_back, put) = sink.take_watched();
    assert!(
        read_back.is_empty() && put.is_empty(),
        "{read_back:?} {put:?}"
    );
    assert_exact(&app, &settings);
}

/// A run that commits a few new rows updates the tallies of the days it changed from those rows
/// — it reads no daily file back — and the summaries stay exact.
#[tokio::test]
async fn incremental_runs_update_the_summaries_from_the_committed_rows() {
    let records = recent_tenant(30, 2, 62);
    let now = crate::support::clock::now();
    let late: Vec<String> = records
        .iter()
        .filter(|r| created(r) > now - Duration::from_secs(3 * 3600) && interactive(r))
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert!(late.len() > 3, "the tenant has too few recent sign-ins");
    let app = TestApp::spawn(records).await;
    let late: Vec<&str> = late.iter().map(String::as_str).collect();
    app.fake.hide(&late);
    let settings = app.settings(&[("SIGNINS_PRESET", "all"), ("SIGNINS_LOOKBACK", "2d")]);
    let sink = FaultySink::new(app.base(&settings));
    run_through(&app, &settings, &sink, None).await.unwrap();
    assert_exact(&app, &settings);
    sink.take_watched();

    // Late sign-ins appear (Graph publishes some late): the next run adds them.
    app.fake.publish(&late);
    let summary = match run_through(&app, &settings, &sink, None).await.unwrap() {
        RunOutcome::Completed(summary) => summary,
        other => panic!("{other:?}"),
    };
    assert!(summary.rows > 0, "{summary:?}");
    let (read_back, put) = sink.take_watched();
    assert!(
        read_back.is_empty(),
        "no daily file read back: {read_back:?}"
    );
    assert_eq!(tallies_written(&put), summary.files.len(), "{put:?}");
    assert_eq!(put.get(LOCATIONS_FILE), Some(&1));
    assert_exact(&app, &settings);
}

/// Runs the deadline stops commit part of a slice: the tallies follow exactly what each commit
/// added, and the summaries are exact after every run.
#[tokio::test]
async fn partial_commits_keep_the_summaries_exact() {
    let app = TestApp::spawn(recent_tenant(60, 1, 63)).await;
    app.fake.faults().page_size_cap(5);
    app.fake.faults().slow_pages(Duration::from_millis(150));
    let settings = app.settings(&[
        ("SIGNINS_PRESET", "all"),
        ("SIGNINS_LOOKBACK", "12h"),
        ("SIGNINS_SLICE", "12h"),
    ]);
    let sink = FaultySink::new(app.base(&settings));
    let mut stopped = 0;
    for runs in 1.. {
        assert!(runs <= 60, "no convergence after {runs} runs");
        let outcome = run_through(&app, &settings, &sink, Some(Duration::from_millis(1500)))
            .await
            .unwrap();
        if app.base(&settings).join("latest.csv").exists() {
            assert_exact(&app, &settings);
        }
        match outcome {
            RunOutcome::Completed(_) => break,
            RunOutcome::DeadlineReached(_) => stopped += 1,
            other => panic!("{other:?}"),
        }
    }
    assert!(
        stopped > 0,
        "the deadline must stop some run for this test to mean anything"
    );
    let (read_back, _) = sink.take_watched();
    assert!(
        read_back.is_empty(),
        "no daily file read back: {read_back:?}"
    );
}

/// A crash right after a commit landed, before the summaries: the next run finds the day's
/// tally older than the file, tallies the file again, and the summaries are exact.
#[tokio::test]
async fn a_crash_between_a_commit_and_the_summaries_is_repaired_by_the_next_run() {
    let app = TestApp::spawn(recent_tenant(30, 2, 64)).await;
    let settings = app.settings(&[("SIGNINS_PRESET", "all"), ("SIGNINS_LOOKBACK", "2d")]);
    let sink = FaultySink::new(app.base(&settings));
    // The second commit lands, then the run "crashes".
    sink.crash_at.store(2, Ordering::SeqCst);
    sink.after_commit.store(true, Ordering::SeqCst);
    assert!(run_through(&app, &settings, &sink, None).await.is_err());
    sink.crash_at.store(0, Ordering::SeqCst);
    sink.take_watched();
    run_through(&app, &settings, &sink, None).await.unwrap();
    assert_exact(&app, &settings);
    let (read_back, _) = sink.take_watched();
    assert!(
        !read_back.is_empty(),
        "the crashed commit's day is tallied from its file"
    );
    for (file, bytes) in &read_back {
        let len = std::fs::metadata(app.base(&settings).join(file))
            .unwrap()
            .len();
        assert!(
            *bytes < len + 1,
            "{file} read once, not more: {bytes} of {len}"
        );
    }
}

/// Writing the summaries fails (storage unavailable at the end of a run): the run fails, and the
/// next run, though it has nothing new to export, rebuilds them.
#[tokio::test]
async fn summaries_a_failed_run_did_not_write_are_rebuilt_by_the_next_run() {
    let app = TestApp::spawn(recent_tenant(20, 2, 65)).await;
    let settings = app.settings(&[("SIGNINS_PRESET", "all"), ("SIGNINS_LOOKBACK", "2d")]);
    let sink = FaultySink::new(app.base(&settings));
    sink.fail_summaries.store(true, Ordering::SeqCst);
    assert!(run_through(&app, &settings, &sink, None).await.is_err());
    assert!(!app.base(&settings).join(LOCATIONS_FILE).exists());
    sink.fail_summaries.store(false, Ordering::SeqCst);
    sink.take_watched();
    match run_through(&app, &settings, &sink, None).await.unwrap() {
        RunOutcome::Completed(summary) => assert_eq!(summary.rows, 0, "{summary:?}"),
        other => panic!("{other:?}"),
    }
    assert_exact(&app, &settings);
    let (read_back, _) = sink.take_watched();
    assert!(
        read_back.is_empty(),
        "the tallies were written before the failure: {read_back:?}"
    );
}

/// An export that predates the summaries (no tallies, no summaries, nothing recorded in the
/// state) gets them from its first run, built from the daily files, though nothing is new.
#[tokio::test]
async fn an_export_without_summaries_gets_them_from_its_daily_files() {
    let app = TestApp::spawn(recent_tenant(20, 2, 66)).await;
    let settings = app.settings(&[("SIGNINS_PRESET", "all"), ("SIGNINS_LOOKBACK", "2d")]);
    app.export(&settings).await;
    let base = app.base(&settings);
    std::fs::remove_dir_all(base.join("summary")).unwrap();
    std::fs::remove_dir_all(base.join("_state/tally")).unwrap();
    let mut state = app.state(&settings);
    let state_map = state.as_object_mut().unwrap();
    assert!(state_map.remove("summaryFiles").is_some());
    app.write_state(&settings, &state);

    let sink = FaultySink::new(base.clone());
    run_through(&app, &settings, &sink, None).await.unwrap();
    assert_exact(&app, &settings);
    let (read_back, _) = sink.take_watched();
    assert!(!read_back.is_empty(), "tallied from the daily files");
}

/// A stored tally damaged after its header (edited by hand, or cut short): the run fails naming
/// it and saying what to do, never writes summaries from it, and once `_state/tally/` is deleted
/// the next run tallies the daily files again and is exact.
#[tokio::test]
async fn a_damaged_tally_fails_the_run_naming_it_and_deleting_the_tallies_repairs_it() {
    let app = TestApp::spawn(recent_tenant(20, 2, 69)).await;
    let settings = app.settings(&[("SIGNINS_PRESET", "all"), ("SIGNINS_LOOKBACK", "2d")]);
    app.export(&settings).await;
    let base = app.base(&settings);
    let tallies: Vec<_> = std::fs::read_dir(base.join("_state/tally"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let damaged = &tallies[0];
    let bytes = std::fs::read(damaged).unwrap();
    let header = bytes.iter().position(|&b| b == b'\n').unwrap() + 1;
    assert!(bytes.len() > header + 64, "{}", damaged.display());
    // The header stays; the last entry loses its last byte.
    std::fs::write(damaged, &bytes[..bytes.len() - 1]).unwrap();
    let mut state = app.state(&settings);
    state["summariesDirty"] = serde_json::Value::Bool(true);
    app.write_state(&settings, &state);
    let before = std::fs::read(base.join(DEVICES_FILE)).unwrap();

    let sink = FaultySink::new(base.clone());
    let error = run_through(&app, &settings, &sink, None)
        .await
        .expect_err("a damaged tally fails the run")
        .to_string();
    let name = damaged.file_name().unwrap().to_str().unwrap();
    assert!(
        error.contains(name) && error.contains("delete _state/tally/"),
        "{error}"
    );
    assert_eq!(
        std::fs::read(base.join(DEVICES_FILE)).unwrap(),
        before,
        "the summaries are untouched"
    );

    std::fs::remove_dir_all(base.join("_state/tally")).unwrap();
    run_through(&app, &settings, &sink, None).await.unwrap();
    assert_exact(&app, &settings);
}

/// Without `createdDateTime` the summaries cannot tell first, last or newest: they are not
/// written, and the run succeeds.
#[tokio::test]
async fn columns_without_the_creation_time_write_no_summaries() {
    let app = TestApp::spawn(recent_tenant(10, 1, 67)).await;
    let settings = app.settings(&[
        ("SIGNINS_PRESET", "all"),
        ("SIGNINS_LOOKBACK", "1d"),
        ("SIGNINS_COLUMNS", "id,userPrincipalName,latitude,longitude"),
    ]);
    let summary = app.export(&settings).await;
    assert!(summary.rows > 0);
    let base = app.base(&settings);
    assert!(base.join("latest.csv").exists());
    assert!(!base.join(LOCATIONS_FILE).exists() && !base.join(DEVICES_FILE).exists());
    assert!(!base.join("_state/tally").exists(), "no tally either");
}

/// Columns left out leave their summary cells empty; without coordinates the map is empty but
/// the inventory is exact.
#[tokio::test]
async fn columns_left_out_give_summaries_of_what_exists() {
    let app = TestApp::spawn(recent_tenant(10, 1, 68)).await;
    let settings = app.settings(&[
        ("SIGNINS_PRESET", "all"),
        ("SIGNINS_LOOKBACK", "1d"),
        (
            "SIGNINS_COLUMNS",
            "id,createdDateTime,userPrincipalName,clientAppUsed,appDisplayName,statusErrorCode",
        ),
    ]);
    app.export(&settings).await;
    let (places, devices) = assert_exact(&app, &settings);
    assert_eq!(places, 0, "no coordinates, no place");
    assert!(devices > 0);
    let inventory = crate::support::app::read_csv(&read(&app, &settings, DEVICES_FILE));
    assert!(inventory
        .iter()
        .all(|r| r["deviceOperatingSystem"].is_empty() && r["lastLocation"].is_empty()));
}
