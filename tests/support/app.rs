//! `spawn_app`-style helper for pipeline tests: a fake tenant on loopback, a temp destination, and
//! typed helpers to run exports and read back what landed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use fake_tenant::FakeGraph;
use signin_export::config::{Overrides, Secret, Settings};
use signin_export::credential::TokenProvider;
use signin_export::graph::GraphClient;
use signin_export::run::{self, Clock, Deps, RunError, RunOutcome, RunRequest, RunSummary};
use signin_export::sink::local::LocalSink;
use signin_export::sink::Sink;

use super::clock;
use super::fake::spawn_http;

/// A running fake tenant, a temp destination folder, and the clock the runs see.
pub struct TestApp {
    pub fake: FakeGraph,
    pub graph_url: String,
    pub dir: tempfile::TempDir,
    now: Mutex<OffsetDateTime>,
}

impl TestApp {
    /// Runs start at the tests' instant ([`clock::now`]), like [`recent_tenant`]'s data.
    ///
    /// [`recent_tenant`]: super::fake::recent_tenant
    pub async fn spawn(signins: Vec<Value>) -> TestApp {
        let running = spawn_http(signins).await;
        TestApp {
            fake: running.fake,
            graph_url: running.base_url,
            dir: tempfile::tempdir().expect("temp dir"),
            now: Mutex::new(clock::now()),
        }
    }

    /// What time it is for the next run.
    pub fn now(&self) -> OffsetDateTime {
        *self.now.lock().expect("clock")
    }

    /// Moves the runs' clock on (sign-ins of the tenant newer than it stay unread).
    pub fn advance(&self, by: time::Duration) {
        *self.now.lock().expect("clock") += by;
    }

    /// Settings pointing at the fake and the temp folder; `extra` overrides (name, value) pairs.
    /// Nothing is read from the process environment.
    pub fn settings(&self, extra: &[(&'static str, &str)]) -> Settings {
        let mut overrides = Overrides::default();
        overrides
            .set("SIGNINS_GRAPH_ENDPOINT", Some(self.graph_url.clone()))
            .set(
                "SIGNINS_DESTINATION",
                Some(self.dir.path().display().to_string()),
            )
            .set("SIGNINS_AUTH", Some("managed-identity".into()))
            .set("SIGNINS_RETRY_BUDGET", Some("30s".into()))
            .set("SIGNINS_GRAPH_RATE", Some(super::fake::UNPACED.into()))
            // The fake publishes every sign-in final: tests reason up to "now".
            .set("SIGNINS_SETTLE", Some("0s".into()))
            // Most tests count interactive sign-ins (v1.0's answer); tests of the beta default
            // set it explicitly.
            .set("SIGNINS_GRAPH_VERSION", Some("v1.0".into()));
        for (name, value) in extra {
            overrides.set(name, Some(value.to_string()));
        }
        Settings::load(&overrides, |_| None).expect("valid test settings")
    }

    /// Folder the preset's files land in.
    pub fn base(&self, settings: &Settings) -> PathBuf {
        self.dir.path().join(settings.preset.as_str())
    }

    /// Production stages, except the token: minted by the fake (the token paths have their own tests).
    pub fn deps(&self, settings: &Settings) -> Deps {
        self.deps_with_sink(settings, Arc::new(LocalSink::new(self.base(settings))))
    }

    pub fn deps_with_sink(&self, settings: &Settings, sink: Arc<dyn Sink>) -> Deps {
        let token = Secret::new(self.fake.mint_token("https://graph.microsoft.com"));
        let graph =
            GraphClient::new(&settings.graph, TokenProvider::fixed(token)).expect("graph client");
        Deps {
            graph,
            sink,
            observer: None,
            clock: Clock::Fixed(self.now()),
            archive: None,
        }
    }

    pub async fn run(&self, settings: &Settings) -> Result<RunOutcome, RunError> {
        self.run_request(
            settings,
            RunRequest {
                holder: "test".into(),
                ..RunRequest::default()
            },
        )
        .await
    }

    pub async fn run_request(
        &self,
        settings: &Settings,
        request: RunRequest,
    ) -> Result<RunOutcome, RunError> {
        let deps = self.deps(settings);
        run::run_with(settings, &deps, request, CancellationToken::new()).await
    }

    /// Runs and expects a completed export.
    pub async fn export(&self, settings: &Settings) -> RunSummary {
        match self.run(settings).await {
            Ok(RunOutcome::Completed(summary)) => summary,
            other => panic!("expected a completed run, got {other:?}"),
        }
    }

    /// Every daily file's rows, parsed with the `csv` crate: file name → rows (header-keyed maps).
    pub fn daily_rows(
        &self,
        settings: &Settings,
    ) -> BTreeMap<String, Vec<BTreeMap<String, String>>> {
        let dir = self.base(settings).join("daily");
        let mut files = BTreeMap::new();
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return files;
        };
        for entry in entries {
            let path = entry.expect("dir entry").path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            if name.ends_with(".csv") && !name.starts_with('.') {
                files.insert(
                    name,
                    read_csv(&std::fs::read(&path).expect("read daily file")),
                );
            }
        }
        files
    }

    /// The state document of the preset's folder.
    pub fn state(&self, settings: &Settings) -> Value {
        let path = self.base(settings).join("_state/state.json");
        serde_json::from_slice(&std::fs::read(&path).expect("read the state")).expect("state JSON")
    }

    /// Replaces the state document (a test editing what an earlier run left).
    pub fn write_state(&self, settings: &Settings, state: &Value) {
        let path = self.base(settings).join("_state/state.json");
        std::fs::write(&path, serde_json::to_vec(state).expect("state JSON"))
            .expect("write the state");
    }

    /// The ids in the daily files, with how often each occurs.
    pub fn exported_id_counts(&self, settings: &Settings) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for rows in self.daily_rows(settings).values() {
            for row in rows {
                *counts.entry(row["id"].clone()).or_insert(0) += 1;
            }
        }
        counts
    }
}

/// The spans `_state/state.json` says are exported (`covered`), oldest first.
pub fn covered_spans(state: &Value) -> Vec<(OffsetDateTime, OffsetDateTime)> {
    let at = |v: &Value| {
        OffsetDateTime::parse(v.as_str().expect("an instant"), &Rfc3339).expect("RFC 3339")
    };
    state["covered"]
        .as_array()
        .expect("the state lists what is covered")
        .iter()
        .map(|span| (at(&span["from"]), at(&span["to"])))
        .collect()
}

/// Ids of `records` created inside any of `spans` for which `keep` holds.
pub fn ids_in_spans(
    records: &[Value],
    spans: &[(OffsetDateTime, OffsetDateTime)],
    keep: impl Fn(&Value) -> bool,
) -> BTreeSet<String> {
    spans
        .iter()
        .flat_map(|(from, to)| ids_where(records, *from, *to, &keep))
        .collect()
}

/// Parses a CSV file (BOM, header) into header-keyed rows; panics on anything malformed.
pub fn read_csv(bytes: &[u8]) -> Vec<BTreeMap<String, String>> {
    let body = bytes
        .strip_prefix(b"\xEF\xBB\xBF")
        .expect("file starts with a UTF-8 BOM");
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(body);
    let headers = reader.headers().expect("header row").clone();
    assert!(
        !headers.iter().any(|h| h.starts_with('\u{feff}')),
        "BOM inside the header"
    );
    reader
        .records()
        .map(|record| {
            let record = record.expect("well-formed CSV record");
            headers
                .iter()
                .zip(record.iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// `createdDateTime` of a fake record.
pub fn created(record: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(
        record["createdDateTime"].as_str().expect("createdDateTime"),
        &Rfc3339,
    )
    .expect("RFC 3339 createdDateTime")
}

/// Ids of `records` created in `[start, end)` for which `keep` holds.
pub fn ids_where(
    records: &[Value],
    start: OffsetDateTime,
    end: OffsetDateTime,
    keep: impl Fn(&Value) -> bool,
) -> BTreeSet<String> {
    records
        .iter()
        .filter(|r| (start..end).contains(&created(r)) && keep(r))
        .map(|r| r["id"].as_str().expect("id").to_string())
        .collect()
}

/// Whether a record is an interactive sign-in (what v1.0 returns by default).
pub fn interactive(record: &Value) -> bool {
    match record.get("signInEventTypes").and_then(Value::as_array) {
        Some(types) => types.iter().any(|t| t == "interactiveUser"),
        None => record["isInteractive"].as_bool().unwrap_or(false),
    }
}
