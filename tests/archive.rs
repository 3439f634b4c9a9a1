//! Runs on the diagnostic-settings source (issue 19) against real Azurite append blobs: appends
//! between runs, an older hour growing, a repeated delivery (within a run and in a later run), a
//! truncated last line and a malformed line; the same daily files as the Graph path for the same
//! tenant; a Graph export switched to the archive with no gap and no duplicate; a deadline in the
//! middle of a large blob; and the real binary killed at every phase of a commit.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use fake_tenant::diagnostic::{archive, received_at, to_line, Archive, ArchiveFaults, Phase};
use fake_tenant::tenant::TENANT_ID;
use serde_json::Value;
use signin_export::config::{Destination, Settings, Source};
use signin_export::diagnostic::{DiagnosticReader, ReaderOptions};
use signin_export::run::archive::{ArchiveOptions, ArchiveSource};
use signin_export::run::{self, Deps, Observer, RunError, RunOutcome, RunRequest, RunSummary};
use signin_export::sink::blob::BlobAuth;
use signin_export::sink::local::LocalSink;
use signin_export::sink::Sink;
use signin_export::summary::{DEVICES_FILE, LOCATIONS_FILE};
use signin_export::transform::flatten::Columns;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::support::app::{created, read_csv, TestApp};
use crate::support::azurite::{break_lease, Azurite};
use crate::support::clock;
use crate::support::diagnostic;
use crate::support::fake::tenant_ending_at;
use crate::support::summaries::{assert_headers, assert_summaries_match};

/// The event types the archive tests read (the defaults): their containers.
const EVENT_TYPES: &str = "interactiveUser,nonInteractiveUser";

fn is_chosen(record: &Value) -> bool {
    matches!(
        record["signInEventTypes"][0].as_str(),
        Some("interactiveUser" | "nonInteractiveUser")
    )
}

/// A tenant of the default event types' sign-ins (plus workloads the export leaves out), ending
/// a second before the tests' instant (a sign-in at the run's own instant would be Graph's next
/// run's, and the equivalence compares one run of each).
fn tenant(users: usize, days: u32, seed: u64) -> Vec<Value> {
    tenant_ending_at(clock::now() - time::Duration::SECOND, users, days, seed)
}

/// Ids of the chosen event types' sign-ins of `records` created at or after `from`.
fn truth(records: &[Value], from: OffsetDateTime) -> BTreeSet<String> {
    records
        .iter()
        .filter(|r| is_chosen(r) && created(r) >= from)
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

/// A fake tenant (for the Graph side), Azurite holding its archive, a temp destination.
struct Scene {
    app: TestApp,
    azurite: Azurite,
}

impl Scene {
    async fn new(records: Vec<Value>) -> Scene {
        Scene {
            app: TestApp::spawn(records).await,
            azurite: Azurite::start_http().await,
        }
    }

    /// The archive source's settings (preset `all`, beta's two default event types), `extra`
    /// overriding.
    fn settings(&self, extra: &[(&'static str, &str)]) -> Settings {
        let storage = format!(
            "{}?{}",
            diagnostic::account_url(&self.azurite),
            self.azurite.account_sas("rl")
        );
        let mut all: Vec<(&'static str, &str)> = vec![
            ("SIGNINS_SOURCE", "diagnostic-settings"),
            ("SIGNINS_DIAGNOSTIC_STORAGE", &storage),
            ("SIGNINS_GRAPH_VERSION", "beta"),
            ("SIGNINS_EVENT_TYPES", EVENT_TYPES),
            ("SIGNINS_PRESET", "all"),
            ("SIGNINS_LOOKBACK", "4d"),
        ];
        all.extend_from_slice(extra);
        self.app.settings(&all)
    }

    /// In-process wiring with the archive: pieces of `piece` bytes, batches of `batch` bytes.
    fn deps(&self, settings: &Settings, piece: usize, batch: u64) -> Deps {
        let Source::DiagnosticSettings(storage) = &settings.source else {
            panic!("not the archive source")
        };
        let reader = DiagnosticReader::with_options(
            &storage.account_url,
            BlobAuth::Sas(storage.sas.clone().expect("a SAS")),
            ReaderOptions {
                piece_bytes: piece,
                ..ReaderOptions::default()
            },
        )
        .unwrap();
        let mut deps = self.app.deps_with_sink(settings, sink(settings));
        deps.archive = Some(ArchiveSource {
            reader,
            tokens: None,
            options: ArchiveOptions {
                batch_bytes: batch,
                ..ArchiveOptions::default()
            },
        });
        deps
    }

    async fn run_with(
        &self,
        settings: &Settings,
        deps: &Deps,
        request: RunRequest,
    ) -> Result<RunOutcome, RunError> {
        run::run_with(settings, deps, request, CancellationToken::new()).await
    }

    /// One archive run with small pieces and batches, expected to complete.
    async fn export(&self, settings: &Settings) -> RunSummary {
        let deps = self.deps(settings, 3000, 40_000);
        match self.run_with(settings, &deps, request()).await {
            Ok(RunOutcome::Completed(summary)) => summary,
            other => panic!("expected a completed run, got {other:?}"),
        }
    }

    /// The ids in the daily files, each once, every file's rows in the day of its name.
    fn exported_once(&self, settings: &Settings) -> BTreeSet<String> {
        let mut ids = BTreeSet::new();
        for (name, rows) in self.app.daily_rows(settings) {
            for row in rows {
                assert!(
                    row["createdDateTime"].starts_with(name.trim_end_matches(".csv")),
                    "{} in {name}",
                    row["createdDateTime"]
                );
                assert!(ids.insert(row["id"].clone()), "{} written twice", row["id"]);
            }
        }
        ids
    }

    /// Asserts both summaries are there, with their headers, and exactly what `latest.csv` adds
    /// up to.
    fn summaries_match(&self, settings: &Settings) {
        let read = |file: &str| std::fs::read(self.app.base(settings).join(file)).unwrap();
        let (locations, devices) = (read(LOCATIONS_FILE), read(DEVICES_FILE));
        assert_headers(&locations, &devices);
        let (places, owners) = assert_summaries_match(&read("latest.csv"), &locations, &devices);
        assert!(
            places > 0 && owners > 0,
            "{places} places, {owners} devices"
        );
    }
}

/// The folder sink of `settings`' destination.
fn sink(settings: &Settings) -> Arc<dyn Sink> {
    let Destination::Local(folder) = &settings.destination else {
        panic!("a folder destination")
    };
    Arc::new(LocalSink::new(folder.join(settings.preset.as_str())))
}

fn request() -> RunRequest {
    RunRequest {
        holder: "test".into(),
        ..RunRequest::default()
    }
}

/// The containers of the event types the tests read.
const CHOSEN: [&str; 2] = [
    "insights-logs-signinlogs",
    "insights-logs-noninteractiveusersigninlogs",
];

/// Bytes of every append of `archive` to the chosen containers.
fn archive_bytes(archive: &Archive) -> u64 {
    archive
        .appends
        .iter()
        .filter(|a| CHOSEN.contains(&a.container))
        .map(|a| a.bytes.len() as u64)
        .sum()
}

#[tokio::test]
async fn appends_between_runs_and_every_fault_export_each_sign_in_once() {
    let records = tenant(30, 2, 191);
    let scene = Scene::new(records.clone()).await;
    let every = ArchiveFaults::every();
    let archive = archive(&records, TENANT_ID, every);
    let settings = scene.settings(&[]);
    let export_from = clock::now() - time::Duration::days(4);
    let truth = truth(&records, export_from);

    diagnostic::write(&scene.azurite, &archive, Phase::First).await;
    let first = scene.export(&settings).await;
    let after_first = scene.exported_once(&settings);
    scene.summaries_match(&settings);
    assert!(after_first.is_subset(&truth));
    assert!(
        after_first.len() < truth.len(),
        "the later appends are not there yet"
    );
    assert_eq!(first.rows as usize, after_first.len());
    assert_eq!(
        first.duplicates_skipped, 1,
        "the repeated delivery: {first:?}"
    );
    let read = first.archive.clone().expect("the archive's figures");
    let (malformed, expected) = diagnostic::malformed_places(&read.malformed, &archive);
    assert_eq!(malformed, expected, "reported with its blob and offset");
    assert_eq!(read.malformed_lines, 1);
    assert!(read.malformed[0].reason.starts_with("not a JSON object"));
    // The truncated line waits: its blob's cursor stops at the newline before it.
    let state = scene.app.state(&settings);
    let mut first_phase: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for append in archive
        .phase(Phase::First)
        .filter(|a| CHOSEN.contains(&a.container))
    {
        first_phase
            .entry(format!("{}/{}", append.container, append.blob))
            .or_default()
            .extend_from_slice(&append.bytes);
    }
    let (cut, bytes) = first_phase
        .iter()
        .find(|(_, bytes)| !bytes.ends_with(b"\n"))
        .expect("a blob ends in a cut line");
    let waits_at = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let cursor = &state["archive"]["cursors"][cut];
    assert_eq!(
        cursor["offset"].as_u64().unwrap_or(0),
        waits_at as u64,
        "{cursor}"
    );
    for (blob, bytes) in &first_phase {
        if blob != cut {
            assert_eq!(
                state["archive"]["cursors"][blob]["offset"],
                bytes.len() as u64,
                "{blob}"
            );
        }
    }
    assert!(state.get("pending").is_none() && state["archive"].get("pending").is_none());

    // The appends after the first run: the newest hours, an older hour, the rest of the line.
    diagnostic::write(&scene.azurite, &archive, Phase::Later).await;
    let second = scene.export(&settings).await;
    assert_eq!(scene.exported_once(&settings), truth, "every sign-in once");
    // Its rows fall in days the first run's summaries already cover: rebuilt all the same.
    scene.summaries_match(&settings);
    // A repeat of a line the first run read, delivered into the next hour's blob: only the id
    // window the first run saved in the state can tell it.
    assert_eq!(archive.repeated_later.len(), 1);
    assert_eq!(
        second.duplicates_skipped, 1,
        "the repeat of a sign-in the first run wrote: {second:?}"
    );
    let again = second.archive.clone().unwrap();
    assert_eq!(
        again.malformed_lines, 0,
        "the malformed line is reported once"
    );
    // Each byte consumed once across the runs: an older hour that grew is read from its offset.
    assert_eq!(read.bytes + again.bytes, archive_bytes(&archive));
    assert_eq!(first.rows + second.rows, truth.len() as u64);

    // Nothing new: nothing read, nothing written.
    let third = scene.export(&settings).await;
    assert_eq!((third.rows, third.archive.unwrap().bytes), (0, 0));
    assert_eq!(
        (first.stalled_runs, second.stalled_runs, third.stalled_runs),
        (0, 0, 0),
        "a last line still without its end is no stall"
    );
    assert!(first.remaining.is_none() && first.watermark.is_some());
    let latest = read_csv(&std::fs::read(scene.app.base(&settings).join("latest.csv")).unwrap());
    let latest_ids: BTreeSet<String> = latest.iter().map(|r| r["id"].clone()).collect();
    assert_eq!(latest_ids.len(), latest.len());
    assert!(latest_ids.is_subset(&truth) && !latest_ids.is_empty());
    scene.summaries_match(&settings);
}

#[tokio::test]
async fn the_graph_source_and_the_archive_write_identical_daily_files() {
    let records = tenant(40, 3, 192);
    let scene = Scene::new(records.clone()).await;
    diagnostic::write(
        &scene.azurite,
        &archive(&records, TENANT_ID, ArchiveFaults::default()),
        Phase::First,
    )
    .await;
    let every: String = Columns::every().names().join(",");
    let common: [(&'static str, &str); 4] = [
        ("SIGNINS_GRAPH_VERSION", "beta"),
        ("SIGNINS_EVENT_TYPES", EVENT_TYPES),
        ("SIGNINS_PRESET", "all"),
        ("SIGNINS_COLUMNS", &every),
    ];
    // The same destination layout under two prefixes.
    let mut graph_extra = common.to_vec();
    let graph_dir = scene.app.dir.path().join("graph");
    let graph_dest = graph_dir.display().to_string();
    graph_extra.extend([
        ("SIGNINS_LOOKBACK", "4d"),
        ("SIGNINS_DESTINATION", &*graph_dest),
    ]);
    let graph_settings = scene.app.settings(&graph_extra);
    // The archive carries the Conditional Access policies whoever reads it; Graph only to
    // callers that may read them.
    scene.app.fake.grant_role("Policy.Read.All");
    let graph_deps = scene
        .app
        .deps_with_sink(&graph_settings, sink(&graph_settings));
    let graph = match scene
        .run_with(&graph_settings, &graph_deps, request())
        .await
    {
        Ok(RunOutcome::Completed(summary)) => summary,
        other => panic!("{other:?}"),
    };

    let archive_dest = scene.app.dir.path().join("archive").display().to_string();
    let mut archive_extra = common.to_vec();
    archive_extra.push(("SIGNINS_DESTINATION", &archive_dest));
    let archive_settings = scene.settings(&archive_extra);
    let deps = scene.deps(&archive_settings, 64 * 1024, 1024 * 1024);
    let archived = match scene.run_with(&archive_settings, &deps, request()).await {
        Ok(RunOutcome::Completed(summary)) => summary,
        other => panic!("{other:?}"),
    };
    assert_eq!(archived.rows, graph.rows, "{archived:#?}");
    assert_eq!(archived.files, graph.files);

    let files = |dir: std::path::PathBuf| -> BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(dir.join("all/daily"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "csv"))
            .map(|p| {
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read(p).unwrap(),
                )
            })
            .collect()
    };
    let from_graph = files(graph_dir);
    let from_archive = files(scene.app.dir.path().join("archive"));
    assert_eq!(
        from_graph.keys().collect::<Vec<_>>(),
        from_archive.keys().collect::<Vec<_>>()
    );
    assert!(from_graph.len() >= 3);
    for (name, graph_bytes) in &from_graph {
        // Identical bytes but for the order of the rows: Graph sends a day newest first, the
        // archive holds it by received hour.
        let sorted = |bytes: &[u8]| {
            let text = std::str::from_utf8(bytes).unwrap();
            let (header, rows) = text.split_once("\r\n").unwrap();
            let mut rows: Vec<&str> = rows.split_terminator("\r\n").collect();
            rows.sort_unstable();
            (header.to_string(), rows.join("\r\n"))
        };
        let (graph_header, graph_rows) = sorted(graph_bytes);
        let (archive_header, archive_rows) = sorted(&from_archive[name]);
        assert_eq!(archive_header, graph_header, "{name}");
        if archive_rows != graph_rows {
            let a: BTreeSet<&str> = archive_rows.split("\r\n").collect();
            let g: BTreeSet<&str> = graph_rows.split("\r\n").collect();
            let only_a: Vec<_> = a.difference(&g).take(2).collect();
            let only_g: Vec<_> = g.difference(&a).take(2).collect();
            panic!("{name}: the rows differ\narchive only: {only_a:#?}\ngraph only: {only_g:#?}");
        }
        assert_eq!(from_archive[name].len(), graph_bytes.len(), "{name}");
    }
}

#[tokio::test]
async fn a_graph_export_switched_to_the_archive_continues_with_no_gap_and_no_duplicate() {
    let now = clock::now();
    // Sign-ins up to three hours after Graph's last run.
    let records = tenant_ending_at(now + time::Duration::hours(3), 40, 3, 193);
    let scene = Scene::new(records.clone()).await;
    let graph_settings = scene.app.settings(&[
        ("SIGNINS_GRAPH_VERSION", "beta"),
        ("SIGNINS_EVENT_TYPES", EVENT_TYPES),
        ("SIGNINS_PRESET", "all"),
    ]);
    // Graph exports the last 10 hours, then a back-fill of [now-40h, now-30h): a hole between.
    let graph = |since: OffsetDateTime, until: Option<OffsetDateTime>| RunRequest {
        since: Some(since),
        until,
        ..request()
    };
    scene
        .app
        .run_request(
            &graph_settings,
            graph(now - time::Duration::hours(10), None),
        )
        .await
        .unwrap();
    scene
        .app
        .run_request(
            &graph_settings,
            graph(
                now - time::Duration::hours(40),
                Some(now - time::Duration::hours(30)),
            ),
        )
        .await
        .unwrap();
    let before = scene.app.exported_id_counts(&graph_settings);
    assert!(!before.is_empty());

    // The diagnostic setting has archived everything; the export switches three hours later.
    diagnostic::write(
        &scene.azurite,
        &archive(&records, TENANT_ID, ArchiveFaults::default()),
        Phase::First,
    )
    .await;
    scene.app.advance(time::Duration::hours(3));
    let settings = scene.settings(&[]);
    let switched = scene.export(&settings).await;
    assert!(switched.rows > 0);
    let exported = scene.exported_once(&settings);
    let wanted = truth(&records, now - time::Duration::hours(40));
    if exported != wanted {
        let missing: Vec<_> = wanted.difference(&exported).collect();
        let extra: Vec<_> = exported.difference(&wanted).collect();
        let created_of = |id: &String| {
            records
                .iter()
                .find(|r| r["id"] == id.as_str())
                .map(|r| r["createdDateTime"].clone())
        };
        panic!(
            "gap or duplicate: missing {} {:?}, extra {} {:?}",
            missing.len(),
            missing
                .iter()
                .take(5)
                .map(|id| created_of(id))
                .collect::<Vec<_>>(),
            extra.len(),
            extra
                .iter()
                .take(5)
                .map(|id| created_of(id))
                .collect::<Vec<_>>(),
        );
    }
    let counts = switched.archive.unwrap();
    assert!(counts.exported_from_graph > 0, "{counts:?}");

    // Back to Graph: refused, naming the way out.
    let back = scene.app.run(&graph_settings).await;
    match back {
        Err(RunError::Refused(e)) => {
            assert!(e.to_string().contains("new destination prefix"), "{e}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Slows every piece down, as a slow storage account would.
struct SlowPieces(Duration);

impl signin_export::graph::stream::PageObserver for SlowPieces {}

impl Observer for SlowPieces {
    fn archive_piece(&self, _bytes: usize) {
        std::thread::sleep(self.0);
    }
}

#[tokio::test]
async fn a_deadline_in_the_middle_of_a_large_blob_commits_what_was_read() {
    let records = tenant(400, 1, 194);
    let scene = Scene::new(records.clone()).await;
    // Every non-interactive sign-in in one hour's blob.
    let mut lines = Vec::new();
    for record in records
        .iter()
        .filter(|r| r["signInEventTypes"][0] == "nonInteractiveUser")
    {
        let line = to_line(record, TENANT_ID, received_at(record).unwrap()).unwrap();
        serde_json::to_writer(&mut lines, &line).unwrap();
        lines.push(b'\n');
    }
    let blob = Archive::blob_name(TENANT_ID, clock::now());
    diagnostic::append(
        &scene.azurite,
        "insights-logs-noninteractiveusersigninlogs",
        &blob,
        &lines,
    )
    .await;
    assert!(lines.len() > 1_000_000, "{} bytes", lines.len());
    let settings = scene.settings(&[("SIGNINS_EVENT_TYPES", "nonInteractiveUser")]);
    let truth: BTreeSet<String> = records
        .iter()
        .filter(|r| r["signInEventTypes"][0] == "nonInteractiveUser")
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();

    let mut deps = scene.deps(&settings, 32 * 1024, 256 * 1024);
    deps.observer = Some(Arc::new(SlowPieces(Duration::from_millis(60))));
    let stopped = scene
        .run_with(
            &settings,
            &deps,
            RunRequest {
                deadline: Some(Duration::from_secs(2)),
                ..request()
            },
        )
        .await;
    let summary = match stopped {
        Ok(RunOutcome::DeadlineReached(summary)) => summary,
        other => panic!("expected the deadline, got {other:?}"),
    };
    assert!(summary.rows > 0, "what was read is committed: {summary:?}");
    let remaining = summary.remaining.expect("what remains");
    let left = remaining.bytes.unwrap();
    assert!(left > 0 && left < lines.len() as u64, "{remaining:?}");
    assert!(
        remaining.estimated_rows.is_some_and(|r| r > 0),
        "{remaining:?}"
    );
    let state = scene.app.state(&settings);
    let cursor =
        &state["archive"]["cursors"][format!("insights-logs-noninteractiveusersigninlogs/{blob}")];
    let offset = cursor["offset"].as_u64().unwrap();
    assert_eq!(
        offset,
        lines.len() as u64 - left,
        "the cursor is where reading stopped"
    );
    assert_eq!(lines[offset as usize - 1], b'\n', "right after a line");
    assert_eq!(scene.exported_once(&settings).len() as u64, summary.rows);

    // The next run reads the rest from there.
    let rest = scene.export(&settings).await;
    assert_eq!(rest.archive.unwrap().bytes, left);
    assert_eq!(scene.exported_once(&settings), truth);
}

// ---------------------------------------------------------------------------------------------
// The real binary, killed at every phase of a commit
// ---------------------------------------------------------------------------------------------

/// Where a run is killed: at the `nth` log line containing `event`, counting only lines after a
/// commit of several daily files was recorded when `after_multi_file_pending` is set.
#[derive(Debug, Clone, Copy)]
struct KillAt {
    event: &'static str,
    nth: usize,
    after_multi_file_pending: bool,
}

/// The binary against an archive and a destination in Azurite, tokens from the fake's managed
/// identity (its tenant names the archive's prefix).
struct Binary {
    fake: crate::support::fake::RunningFake,
    azurite: Azurite,
    destination: String,
    read_sas: String,
    http: reqwest::Client,
}

impl Binary {
    async fn new() -> Binary {
        let fake = crate::support::fake::spawn_http(Vec::new()).await;
        let azurite = Azurite::start_http().await;
        let read_sas = azurite.account_sas("racwdl");
        let destination = format!("{}/export?{read_sas}", azurite.container_url("exports"));
        Binary {
            fake,
            azurite,
            destination,
            read_sas,
            http: reqwest::Client::new(),
        }
    }

    fn command(&self) -> std::process::Command {
        let storage = format!(
            "{}?{}",
            diagnostic::account_url(&self.azurite),
            self.azurite.account_sas("rl")
        );
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_signin-export"));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.fake.managed_identity_env("beta"))
            .env("SIGNINS_SOURCE", "diagnostic-settings")
            .env("SIGNINS_DIAGNOSTIC_STORAGE", storage)
            .env("SIGNINS_DESTINATION", &self.destination)
            .env("SIGNINS_PRESET", "all")
            .env("SIGNINS_LOOKBACK", "4d")
            // Small pieces and batches: a small archive takes many of each.
            .env("SIGNINS_TEST_ARCHIVE_BATCH", "60000")
            .env("SIGNINS_TEST_ARCHIVE_PIECE", "8192")
            .env("RUST_LOG", "signin_export=debug,info")
            .arg("run");
        command
    }

    async fn run_ok(&self) -> Value {
        let mut command = self.command();
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("JSON summary")
    }

    /// Starts a run and SIGKILLs it at `at`; whether that point was reached.
    async fn run_and_kill(&self, at: KillAt) -> bool {
        let mut command = self.command();
        command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        tokio::task::spawn_blocking(move || {
            use std::io::BufRead;
            let mut child = command.spawn().expect("spawn the binary");
            let stderr = child.stderr.take().expect("stderr");
            let mut armed = !at.after_multi_file_pending;
            let mut seen = 0;
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let line = without_ansi(&line);
                if line.contains("pending commit recorded") {
                    let files = line
                        .rsplit("files=")
                        .next()
                        .and_then(|n| n.trim().parse::<u32>().ok());
                    armed |= files.is_some_and(|n| n >= 2);
                }
                if armed && line.contains(at.event) {
                    seen += 1;
                    if seen == at.nth {
                        child.kill().expect("SIGKILL");
                        let _ = child.wait();
                        return true;
                    }
                }
            }
            let _ = child.wait();
            false
        })
        .await
        .unwrap()
    }

    fn url(&self, file: &str) -> String {
        format!(
            "{}/export/all/{file}?{}",
            self.azurite.container_url("exports"),
            self.read_sas
        )
    }

    async fn download(&self, file: &str) -> Option<Vec<u8>> {
        let response = self.http.get(self.url(file)).send().await.unwrap();
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return None;
        }
        assert!(
            response.status().is_success(),
            "{file}: {}",
            response.status()
        );
        Some(response.bytes().await.unwrap().to_vec())
    }

    /// Ends a killed holder's lease now, as its expiry would a minute later.
    async fn expire_lease(&self) {
        break_lease(&self.http, &self.url("_state/state.json")).await;
    }

    /// Every id in the daily files (each once, asserted) and in latest.csv, the summaries
    /// checked against latest.csv.
    async fn exported(&self) -> (BTreeSet<String>, BTreeSet<String>) {
        let mut ids = BTreeSet::new();
        let mut day = (clock::now() - time::Duration::days(5)).date();
        while day <= (clock::now() + time::Duration::days(1)).date() {
            if let Some(bytes) = self.download(&format!("daily/{day}.csv")).await {
                for row in read_csv(&bytes) {
                    assert!(ids.insert(row["id"].clone()), "{} written twice", row["id"]);
                }
            }
            day = day.next_day().unwrap();
        }
        let latest_bytes = self.download("latest.csv").await.expect("latest.csv");
        let latest = read_csv(&latest_bytes);
        let latest_ids: BTreeSet<String> = latest.iter().map(|r| r["id"].clone()).collect();
        assert_eq!(latest_ids.len(), latest.len(), "latest.csv has a row twice");
        let locations = self.download(LOCATIONS_FILE).await.expect("locations.csv");
        let devices = self.download(DEVICES_FILE).await.expect("devices.csv");
        assert_headers(&locations, &devices);
        assert_summaries_match(&latest_bytes, &locations, &devices);
        (ids, latest_ids)
    }
}

/// `line` without its terminal colour codes (`ESC [ … m`).
fn without_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[tokio::test]
async fn sigkill_at_any_phase_then_a_normal_run_exports_every_sign_in_once() {
    let records = tenant(25, 2, 195);
    let truth = truth(&records, clock::now() - time::Duration::days(4));
    let faults = ArchiveFaults {
        duplicate_delivery: true,
        malformed_line: true,
        ..ArchiveFaults::default()
    };
    let kill_points = [
        KillAt {
            event: "piece read",
            nth: 5,
            after_multi_file_pending: false,
        },
        KillAt {
            event: "blocks staged",
            nth: 1,
            after_multi_file_pending: false,
        },
        KillAt {
            event: "pending commit recorded",
            nth: 1,
            after_multi_file_pending: false,
        },
        // Between the files of one commit: the next run replays the batch without the file
        // that landed.
        KillAt {
            event: "commit landed",
            nth: 1,
            after_multi_file_pending: true,
        },
        KillAt {
            event: "commit landed",
            nth: 3,
            after_multi_file_pending: false,
        },
        KillAt {
            event: "batch committed",
            nth: 2,
            after_multi_file_pending: false,
        },
        KillAt {
            event: "pending commit recorded",
            nth: 4,
            after_multi_file_pending: false,
        },
    ];
    for at in kill_points {
        // A kill between the files of one commit must land before the run lands the next file;
        // on a loaded machine the SIGKILL can come after it, and the run is killed again.
        let mut attempts = 0;
        let binary = loop {
            attempts += 1;
            let binary = Binary::new().await;
            let archive = archive(&records, binary.fake.fake.tenant_id(), faults);
            diagnostic::write(&binary.azurite, &archive, Phase::First).await;
            assert!(
                binary.run_and_kill(at).await,
                "the run never reached {at:?}"
            );
            if !at.after_multi_file_pending || attempts == 3 {
                break binary;
            }
            let state: Value =
                serde_json::from_slice(&binary.download("_state/state.json").await.unwrap())
                    .unwrap();
            if state["archive"].get("pending").is_some() {
                break binary;
            }
        };
        binary.expire_lease().await;
        let summary = binary.run_ok().await;
        assert_eq!(summary["outcome"], "completed", "{at:?}: {summary}");
        let state: Value =
            serde_json::from_slice(&binary.download("_state/state.json").await.unwrap()).unwrap();
        assert!(
            state["archive"].get("pending").is_none() && state["archive"].get("replay").is_none(),
            "{at:?}: {state}"
        );
        if at.after_multi_file_pending {
            assert!(
                summary["archive"]["replayed"].as_u64().unwrap_or(0) > 0,
                "{at:?}: the landed file's rows were not replayed: {summary}"
            );
        }
        let (daily, latest) = binary.exported().await;
        assert_eq!(daily, truth, "{at:?}: every sign-in once");
        assert!(latest.is_subset(&truth) && !latest.is_empty(), "{at:?}");
    }
}

#[tokio::test]
async fn only_this_tenants_blobs_are_read_when_another_tenant_shares_the_account() {
    let records = tenant(12, 1, 196);
    let scene = Scene::new(records.clone()).await;
    let ours = scene.app.fake.tenant_id().to_string();
    diagnostic::write(
        &scene.azurite,
        &archive(&records, &ours, ArchiveFaults::default()),
        Phase::First,
    )
    .await;
    let theirs = tenant(6, 1, 197);
    diagnostic::write(
        &scene.azurite,
        &archive(
            &theirs,
            "0badc0de-0000-4000-8000-000000000000",
            ArchiveFaults::default(),
        ),
        Phase::First,
    )
    .await;
    let settings = scene.settings(&[]);

    // Whose blobs are whose cannot be told without this app's tenant.
    let deps = scene.deps(&settings, 64 * 1024, 1 << 20);
    let err = scene
        .run_with(&settings, &deps, request())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("0badc0de-0000-4000-8000-000000000000") && text.contains(&ours),
        "{text}"
    );

    // With the app's token, its tenant's prefix is read and recorded.
    let mut deps = scene.deps(&settings, 64 * 1024, 1 << 20);
    if let Some(archive) = deps.archive.as_mut() {
        archive.tokens = Some(signin_export::credential::TokenProvider::fixed(
            signin_export::config::Secret::new(
                scene.app.fake.mint_token("https://graph.microsoft.com"),
            ),
        ));
    }
    match scene.run_with(&settings, &deps, request()).await {
        Ok(RunOutcome::Completed(_)) => {}
        other => panic!("{other:?}"),
    }
    let want = truth(&records, clock::now() - time::Duration::days(4));
    assert_eq!(scene.exported_once(&settings), want);
    assert_eq!(
        scene.app.state(&settings)["archive"]["prefix"],
        format!("tenantId={ours}/")
    );
}

#[tokio::test]
async fn a_dry_run_counts_what_a_run_writes_and_writes_nothing() {
    let records = tenant(20, 2, 198);
    let scene = Scene::new(records.clone()).await;
    let faults = ArchiveFaults {
        duplicate_delivery: true,
        malformed_line: true,
        ..ArchiveFaults::default()
    };
    diagnostic::write(
        &scene.azurite,
        &archive(&records, TENANT_ID, faults),
        Phase::First,
    )
    .await;
    let settings = scene.settings(&[]);
    let deps = scene.deps(&settings, 3000, 40_000);
    let dry = match scene
        .run_with(
            &settings,
            &deps,
            RunRequest {
                dry_run: true,
                ..request()
            },
        )
        .await
    {
        Ok(RunOutcome::Completed(summary)) => summary,
        other => panic!("{other:?}"),
    };
    assert!(
        scene.app.daily_rows(&settings).is_empty(),
        "a dry run writes nothing"
    );
    let real = scene.export(&settings).await;
    assert_eq!(
        (dry.rows, dry.duplicates_skipped, &dry.files),
        (real.rows, real.duplicates_skipped, &real.files)
    );
    assert_eq!(dry.archive.unwrap().malformed_lines, 1);
}
