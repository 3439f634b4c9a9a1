//! The map-ready summaries (`summary/locations.csv`, `summary/devices.csv`) against the strict
//! fake tenant, into a local folder: exact against `latest.csv` after every kind of run, kept up
//! to date from the committed rows (no daily file read back), repaired after a crash.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use signin_export::config::Settings;
use signin_export::run::{self, RunOutcome, RunRequest};
use signin_export::sink::local::LocalSink;
use signin_export::sink::{
    BlockId, CommitTicket, Committed, DailyFile, FileVersion, LockOutcome, Sink, SinkError,
};
use signin_export::summary::{DEVICES_FILE, LOCATIONS_FILE};

use crate::support::app::{created, interactive, TestApp};
use crate::support::fake::recent_tenant;
use crate::support::summaries::{assert_headers, assert_summaries_match};

/// The local sink, watched: which daily files are read back, which files are replaced; and
/// made to fail on demand (a crash right after a commit landed, an outage when the summaries
/// are written).
struct WatchedSink {
    inner: LocalSink,
    /// Bytes of daily files read back (to recompute a tally).
    daily_bytes_read: Mutex<BTreeMap<String, u64>>,
    /// Files replaced whole (summaries, tallies), with how often.
    put: Mutex<BTreeMap<String, u32>>,
    commits: AtomicU32,
    /// Fail right after this commit landed (0: never).
    crash_after_commit: AtomicU32,
    /// Writing a summary fails.
    fail_summaries: AtomicBool,
}

impl WatchedSink {
    fn new(base: std::path::PathBuf) -> Arc<WatchedSink> {
        Arc::new(WatchedSink {
            inner: LocalSink::new(base),
            daily_bytes_read: Default::default(),
            put: Default::default(),
            commits: AtomicU32::new(0),
            crash_after_commit: AtomicU32::new(0),
            fail_summaries: AtomicBool::new(false),
        })
    }

    /// Forgets what was watched so far.
    fn reset(&self) -> (BTreeMap<String, u64>, BTreeMap<String, u32>) {
        (
            std::mem::take(&mut *self.daily_bytes_read.lock().unwrap()),
            std::mem::take(&mut *self.put.lock().unwrap()),
        )
    }
}

#[async_trait]
impl Sink for WatchedSink {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn acquire(&self, holder: &str) -> Result<LockOutcome, SinkError> {
        self.inner.acquire(holder).await
    }
    async fn ensure_locked(&self) -> Result<(), SinkError> {
        self.inner.ensure_locked().await
    }
    async fn release(&self) -> Result<(), SinkError> {
        self.inner.release().await
    }
    async fn read_state(&self) -> Result<Option<Bytes>, SinkError> {
        self.inner.read_state().await
    }
    async fn write_state(&self, bytes: Bytes) -> Result<(), SinkError> {
        self.inner.write_state(bytes).await
    }
    async fn stage(&self, file: &str, block: &BlockId, data: Bytes) -> Result<(), SinkError> {
        self.inner.stage(file, block, data).await
    }
    async fn prepare(
        &self,
        file: &str,
        header: Bytes,
        blocks: &[BlockId],
    ) -> Result<CommitTicket, SinkError> {
        self.inner.prepare(file, header, blocks).await
    }
    async fn commit(&self, ticket: &CommitTicket) -> Result<Committed, SinkError> {
        let committed = self.inner.commit(ticket).await?;
        let n = self.commits.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.crash_after_commit.load(Ordering::SeqCst) {
            return Err(SinkError::Unavailable {
                what: "test".into(),
                detail: "simulated crash right after the commit landed".into(),
            });
        }
        Ok(committed)
    }
    async fn is_committed(&self, ticket: &CommitTicket) -> Result<bool, SinkError> {
        self.inner.is_committed(ticket).await
    }
    async fn list_daily(&self) -> Result<Vec<DailyFile>, SinkError> {
        self.inner.list_daily().await
    }
    async fn read_range(
        &self,
        file: &str,
        version: &FileVersion,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, SinkError> {
        *self
            .daily_bytes_read
            .lock()
            .unwrap()
            .entry(file.to_string())
            .or_default() += len;
        self.inner.read_range(file, version, offset, len).await
    }
    async fn put_file(&self, file: &str, bytes: Bytes) -> Result<(), SinkError> {
        if file.starts_with("summary/") && self.fail_summaries.load(Ordering::SeqCst) {
            return Err(SinkError::Unavailable {
                what: file.into(),
                detail: "simulated outage while writing the summaries".into(),
            });
        }
        *self
            .put
            .lock()
            .unwrap()
            .entry(file.to_string())
            .or_default() += 1;
        self.inner.put_file(file, bytes).await
    }
    async fn publish_latest(&self, header: Bytes, files: &[String]) -> Result<(), SinkError> {
        self.inner.publish_latest(header, files).await
    }
    async fn read(&self, file: &str) -> Result<Option<Bytes>, SinkError> {
        self.inner.read(file).await
    }
    async fn probe(&self) -> Result<(), SinkError> {
        self.inner.probe().await
    }
}

/// Runs once through `sink`; `deadline` as a refresh would.
async fn run_through(
    app: &TestApp,
    settings: &Settings,
    sink: &Arc<WatchedSink>,
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
    let sink = WatchedSink::new(app.base(&settings));
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
    let (read_back, put) = sink.reset();
    assert!(
        read_back.is_empty(),
        "the first run tallies what it writes: {read_back:?}"
    );
    assert_eq!(tallies_written(&put), summary.files.len(), "{put:?}");

    // Nothing new: nothing is rebuilt, nothing read.
    run_through(&app, &settings, &sink, None).await.unwrap();
    let (read_back, put) = sink.reset();
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
    let sink = WatchedSink::new(app.base(&settings));
    run_through(&app, &settings, &sink, None).await.unwrap();
    assert_exact(&app, &settings);
    sink.reset();

    // Late sign-ins appear (Graph publishes some late): the next run adds them.
    app.fake.publish(&late);
    let summary = match run_through(&app, &settings, &sink, None).await.unwrap() {
        RunOutcome::Completed(summary) => summary,
        other => panic!("{other:?}"),
    };
    assert!(summary.rows > 0, "{summary:?}");
    let (read_back, put) = sink.reset();
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
    let sink = WatchedSink::new(app.base(&settings));
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
    let (read_back, _) = sink.reset();
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
    let sink = WatchedSink::new(app.base(&settings));
    // The second commit lands, then the run "crashes".
    sink.crash_after_commit.store(2, Ordering::SeqCst);
    assert!(run_through(&app, &settings, &sink, None).await.is_err());
    sink.crash_after_commit.store(0, Ordering::SeqCst);
    sink.reset();
    run_through(&app, &settings, &sink, None).await.unwrap();
    assert_exact(&app, &settings);
    let (read_back, _) = sink.reset();
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
    let sink = WatchedSink::new(app.base(&settings));
    sink.fail_summaries.store(true, Ordering::SeqCst);
    assert!(run_through(&app, &settings, &sink, None).await.is_err());
    assert!(!app.base(&settings).join(LOCATIONS_FILE).exists());
    sink.fail_summaries.store(false, Ordering::SeqCst);
    sink.reset();
    match run_through(&app, &settings, &sink, None).await.unwrap() {
        RunOutcome::Completed(summary) => assert_eq!(summary.rows, 0, "{summary:?}"),
        other => panic!("{other:?}"),
    }
    assert_exact(&app, &settings);
    let (read_back, _) = sink.reset();
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
    std::fs::write(
        base.join("_state/state.json"),
        serde_json::to_vec(&state).unwrap(),
    )
    .unwrap();

    let sink = WatchedSink::new(base.clone());
    run_through(&app, &settings, &sink, None).await.unwrap();
    assert_exact(&app, &settings);
    let (read_back, _) = sink.reset();
    assert!(!read_back.is_empty(), "tallied from the daily files");
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
