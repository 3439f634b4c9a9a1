//! Issue 3's scenarios end to end: the real binary, the fake tenant, real Azurite. Every scenario
//! is checked against the tenant's ground truth: the ids in the spans the state says are
//! exported (`covered`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use signin_export::summary::{DEVICES_FILE, DEVICE_COLUMNS, LOCATIONS_FILE, LOCATION_COLUMNS};

use crate::support::app::{covered_spans, ids_in_spans, interactive, read_csv};
use crate::support::azurite::{break_lease, Azurite, Mode};
use crate::support::fake::{recent_tenant, spawn_http, RunningFake};
use crate::support::summaries::{assert_headers, assert_summaries_match};
use crate::support::tls;

const CONTAINER: &str = "exports";
const PREFIX: &str = "powerbi";
const PRESET: &str = "all";

/// A tenant, Azurite, and how to run the binary against both.
struct Scenario {
    fake: RunningFake,
    azurite: Azurite,
    destination: String,
    extra_env: Vec<(String, String)>,
    http: reqwest::Client,
    read_sas: Option<String>,
}

impl Scenario {
    /// HTTP Azurite, SAS in the destination URL.
    async fn sas(days: u32, seed: u64) -> Scenario {
        let fake = spawn_http(recent_tenant(25, days, seed)).await;
        let azurite = Azurite::start_http().await;
        let sas = azurite.account_sas("racwdl");
        let destination = format!("{}/{PREFIX}?{sas}", azurite.container_url(CONTAINER));
        Scenario {
            fake,
            azurite,
            destination,
            extra_env: Vec::new(),
            http: reqwest::Client::new(),
            read_sas: Some(sas),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_signin-export"));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.fake.managed_identity_env("v1.0"))
            .envs(self.extra_env.iter().cloned())
            .env("SIGNINS_DESTINATION", &self.destination)
            .env("SIGNINS_PRESET", PRESET)
            .env("SIGNINS_LOOKBACK", "2d")
            .env("SIGNINS_SLICE", "3h")
            .env("SIGNINS_RETRY_BUDGET", "20s")
            .env("SIGNINS_SETTLE", "0s")
            .env("RUST_LOG", "signin_export=debug,info")
            .args(args);
        command
    }

    /// Runs `signin-export run` to the end; returns (exit code, stdout, stderr).
    async fn run(&self) -> (Option<i32>, String, String) {
        let mut command = self.command(&["run"]);
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .unwrap()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    async fn run_ok(&self) -> Value {
        let (code, stdout, stderr) = self.run().await;
        assert_eq!(
            code,
            Some(0),
            "run failed:\n{stderr}\nAzurite:\n{}",
            self.azurite.output()
        );
        serde_json::from_str(stdout.trim()).expect("JSON summary")
    }

    /// Starts a run and SIGKILLs it as soon as its stderr shows `event` for the `nth` time.
    /// Returns whether the event was seen before the process ended.
    async fn run_and_kill_at(&self, event: &'static str, nth: usize) -> bool {
        let mut command = self.command(&["run"]);
        command.stdout(Stdio::null()).stderr(Stdio::piped());
        tokio::task::spawn_blocking(move || {
            let mut child: Child = command.spawn().expect("spawn the binary");
            let stderr = child.stderr.take().expect("stderr");
            let mut seen = 0;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains(event) {
                    seen += 1;
                    if seen == nth {
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

    fn blob_url(&self, file: &str) -> String {
        let base = format!(
            "{}/{PREFIX}/{PRESET}/{file}",
            self.azurite.container_url(CONTAINER)
        );
        match &self.read_sas {
            Some(sas) => format!("{base}?{sas}"),
            None => base,
        }
    }

    async fn download(&self, file: &str) -> Option<Vec<u8>> {
        let response = self
            .http
            .get(self.blob_url(file))
            .send()
            .await
            .expect("GET blob");
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return None;
        }
        assert!(
            response.status().is_success(),
            "GET {file}: {}",
            response.status()
        );
        Some(response.bytes().await.unwrap().to_vec())
    }

    /// Ends a killed holder's lease on the state blob now (Lease Blob, action break, period 0):
    /// what its expiry would do a minute later.
    async fn expire_lease(&self) {
        break_lease(&self.http, &self.blob_url("_state/state.json")).await;
    }

    async fn state(&self) -> Value {
        serde_json::from_slice(
            &self
                .download("_state/state.json")
                .await
                .expect("state blob"),
        )
        .expect("state JSON")
    }

    /// Daily file name → ids, from Azurite, each file parsed with a standard CSV reader.
    async fn daily_ids(&self) -> BTreeMap<String, Vec<String>> {
        let state = self.state().await;
        let covered = covered_spans(&state);
        let (Some(first), Some(last)) = (covered.first(), covered.last()) else {
            return BTreeMap::new();
        };
        let last = last.1.date();
        let mut files = BTreeMap::new();
        let mut day = first.0.date();
        while day <= last {
            let name = format!("daily/{day}.csv");
            if let Some(bytes) = self.download(&name).await {
                let rows = read_csv(&bytes);
                files.insert(name, rows.iter().map(|r| r["id"].clone()).collect());
            }
            day = day.next_day().unwrap();
        }
        files
    }

    /// Asserts the export equals the ground truth exactly once, and latest.csv agrees.
    async fn assert_exactly_ground_truth(&self) {
        let state = self.state().await;
        assert!(
            state.get("pending").is_none(),
            "pending commit left behind: {state}"
        );
        let truth = ids_in_spans(
            &self.fake.fake.all_signins(),
            &covered_spans(&state),
            interactive,
        );
        let mut seen = BTreeMap::<String, usize>::new();
        for ids in self.daily_ids().await.values() {
            for id in ids {
                *seen.entry(id.clone()).or_default() += 1;
            }
        }
        let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "written twice: {twice:?}");
        assert_eq!(seen.keys().cloned().collect::<BTreeSet<_>>(), truth);
        let latest_bytes = self.download("latest.csv").await.expect("latest.csv");
        let latest = read_csv(&latest_bytes);
        let latest_ids: BTreeSet<String> = latest.iter().map(|r| r["id"].clone()).collect();
        assert_eq!(latest_ids.len(), latest.len(), "latest.csv has duplicates");
        assert_eq!(latest_ids, truth);
        // The summaries are exactly what latest.csv adds up to.
        let locations = self.download(LOCATIONS_FILE).await.expect("locations.csv");
        let devices = self.download(DEVICES_FILE).await.expect("devices.csv");
        assert_headers(&locations, &devices);
        assert_summaries_match(&latest_bytes, &locations, &devices);
    }
}

#[tokio::test]
async fn repeated_runs_over_sas_export_the_ground_truth_once() {
    let scenario = Scenario::sas(2, 41).await;
    let first = scenario.run_ok().await;
    assert!(first["rows"].as_u64().unwrap() > 0);
    // The summary counts what the run cost in Blob Storage too.
    assert!(first["storageRequests"].as_u64().unwrap() > 0, "{first}");
    assert!(first["bytesCopied"].as_u64().unwrap() > 0, "{first}");
    scenario.assert_exactly_ground_truth().await;
    let again = scenario.run_ok().await;
    assert_eq!(again["rows"], 0, "{again}");
    assert_eq!(
        again["bytesCopied"], 0,
        "nothing changed, nothing copied: {again}"
    );
    scenario.assert_exactly_ground_truth().await;
}

#[tokio::test]
async fn sigkill_at_any_phase_then_a_normal_run_gives_exactly_the_ground_truth() {
    // Each phase of a slice's commit (see src/run/slice.rs), at the first and a later slice, and
    // mid-page with slow pages; then each phase of the summaries (src/run/summaries.rs): between
    // latest.csv and the tallies, between two tallies, between the tallies and the summaries,
    // after the summaries and before the state records them.
    let kill_points: [(&str, usize); 10] = [
        ("blocks staged", 1),
        ("pending commit recorded", 1),
        ("commit landed", 1),
        ("slice committed", 1),
        ("pending commit recorded", 4),
        ("commit landed", 6),
        ("page fetched", 3),
        ("latest.csv replaced", 1),
        ("tally written", 1),
        ("summaries replaced", 1),
    ];
    for (event, nth) in kill_points {
        let scenario = Scenario::sas(2, 42).await;
        scenario
            .fake
            .fake
            .faults()
            .slow_pages(Duration::from_millis(30));
        // Several pages per chain: a kill can land between two pages of one query.
        scenario.fake.fake.faults().page_size_cap(25);
        let killed = scenario.run_and_kill_at(event, nth).await;
        assert!(killed, "the run never reached '{event}' #{nth}");
        scenario.expire_lease().await;
        scenario.fake.fake.faults().slow_pages(Duration::ZERO);
        let summary = scenario.run_ok().await;
        assert_eq!(summary["outcome"], "completed");
        scenario.assert_exactly_ground_truth().await;
    }
}

#[tokio::test]
async fn two_runs_started_together_one_exports_the_other_reports_busy() {
    let scenario = Scenario::sas(2, 43).await;
    scenario
        .fake
        .fake
        .faults()
        .slow_pages(Duration::from_millis(100));
    let (a, b) = tokio::join!(scenario.run(), scenario.run());
    let codes = [a.0, b.0];
    assert!(
        codes.contains(&Some(0)) && codes.contains(&Some(1)),
        "{codes:?}\n{}\n{}",
        a.2,
        b.2
    );
    let loser = if a.0 == Some(1) { &a.2 } else { &b.2 };
    assert!(loser.contains("already running"), "{loser}");
    scenario.fake.fake.faults().slow_pages(Duration::ZERO);
    scenario.assert_exactly_ground_truth().await;
}

#[tokio::test]
async fn azurite_stopped_mid_run_fails_cleanly_and_the_next_run_recovers() {
    let mut scenario = Scenario::sas(2, 44).await;
    scenario
        .fake
        .fake
        .faults()
        .slow_pages(Duration::from_millis(40));
    let mut command = scenario.command(&["run"]);
    command.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut all = String::new();
        let mut signalled = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !signalled && line.contains("slice committed") {
                signalled = true;
                let _ = tx.send(None);
            }
            all.push_str(&line);
            all.push('\n');
        }
        let _ = tx.send(Some(all));
    });
    let first = tokio::task::spawn_blocking(move || rx.recv().map(|m| (m, rx)))
        .await
        .unwrap()
        .unwrap();
    assert!(
        first.0.is_none(),
        "the run ended before committing a slice: {:?}",
        first.0
    );
    scenario.azurite.stop().await;
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    let log = tokio::task::spawn_blocking(move || first.1.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap_or_default();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("unavailable") || log.contains("Unavailable"),
        "{log}"
    );
    let signature = scenario
        .read_sas
        .as_deref()
        .and_then(|sas| sas.split('&').find_map(|p| p.strip_prefix("sig=")))
        .unwrap();
    assert!(
        !log.contains(signature),
        "the SAS signature leaked into the log:\n{log}"
    );

    scenario.azurite.restart().await;
    scenario.expire_lease().await;
    scenario.fake.fake.faults().slow_pages(Duration::ZERO);
    scenario.run_ok().await;
    scenario.assert_exactly_ground_truth().await;
}

#[tokio::test]
async fn readers_see_the_old_or_the_new_file_never_a_mix() {
    let scenario = Scenario::sas(2, 45).await;
    scenario.run_ok().await;
    let today = crate::support::clock::now().date();
    let file = format!("daily/{today}.csv");
    // New sign-ins keep arriving while a reader downloads the files in a loop.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        let http = scenario.http.clone();
        let (daily_url, latest_url) = (scenario.blob_url(&file), scenario.blob_url("latest.csv"));
        let summary_urls = [
            (
                scenario.blob_url(LOCATIONS_FILE),
                LOCATION_COLUMNS.join(","),
            ),
            (scenario.blob_url(DEVICES_FILE), DEVICE_COLUMNS.join(",")),
        ];
        tokio::spawn(async move {
            let mut versions = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                // A summary read while it is replaced is the old or the new one: whole rows,
                // one header.
                for (url, header) in &summary_urls {
                    let bytes = http
                        .get(url.as_str())
                        .send()
                        .await
                        .unwrap()
                        .bytes()
                        .await
                        .unwrap();
                    let text = String::from_utf8(bytes.to_vec()).expect("UTF-8");
                    assert!(text.starts_with(&format!("\u{feff}{header}\r\n")), "{text}");
                    assert_eq!(text.matches(header.as_str()).count(), 1, "{text}");
                    read_csv(&bytes);
                }
                for url in [&daily_url, &latest_url] {
                    let response = http.get(url.as_str()).send().await.unwrap();
                    // Just after midnight UTC, today's file appears only once a run writes
                    // today's first sign-in.
                    if response.status() == reqwest::StatusCode::NOT_FOUND && url == &daily_url {
                        continue;
                    }
                    let bytes = response.bytes().await.unwrap();
                    let rows = read_csv(&bytes);
                    let ids: BTreeSet<String> = rows.iter().map(|r| r["id"].clone()).collect();
                    assert_eq!(
                        ids.len(),
                        rows.len(),
                        "duplicate rows in a downloaded version"
                    );
                    assert!(
                        rows.iter()
                            .all(|r| r["createdDateTime"] != "createdDateTime"),
                        "second header"
                    );
                    versions.push(ids.len());
                }
            }
            versions
        })
    };
    for round in 0..4u64 {
        let now = crate::support::clock::now();
        let mut more = recent_tenant(10, 1, 100 + round);
        more.retain(|r| {
            let t =
                OffsetDateTime::parse(r["createdDateTime"].as_str().unwrap(), &Rfc3339).unwrap();
            t > now - Duration::from_secs(600) && t.date() == today
        });
        scenario.fake.fake.add_signins(more);
        scenario.run_ok().await;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let versions = reader.await.expect("reader saw only whole versions");
    assert!(
        versions.len() >= 4,
        "the reader downloaded too few versions: {}",
        versions.len()
    );
    scenario.assert_exactly_ground_truth().await;
}

/// SIGNINS_COLUMNS without `createdDateTime`: the export runs, the summaries are not written,
/// and the log says why.
#[tokio::test]
async fn columns_without_the_creation_time_say_why_there_are_no_summaries() {
    let mut scenario = Scenario::sas(1, 47).await;
    scenario.extra_env.push((
        "SIGNINS_COLUMNS".into(),
        "id,userPrincipalName,latitude,longitude".into(),
    ));
    let (code, stdout, stderr) = scenario.run().await;
    assert_eq!(code, Some(0), "{stderr}");
    let summary: Value = serde_json::from_str(stdout.trim()).expect("JSON summary");
    assert!(summary["rows"].as_u64().unwrap() > 0, "{summary}");
    assert!(
        stderr.contains("SIGNINS_COLUMNS leaves out createdDateTime, which the summaries need"),
        "{stderr}"
    );
    assert!(scenario.download("latest.csv").await.is_some());
    assert_eq!(scenario.download(LOCATIONS_FILE).await, None);
    assert_eq!(scenario.download(DEVICES_FILE).await, None);
}

#[tokio::test]
async fn https_with_managed_identity_tokens_exports_end_to_end() {
    let ca = tls::test_ca();
    let fake = spawn_http(recent_tenant(20, 1, 46)).await;
    fake.fake.allow_resource("https://storage.azure.com");
    let azurite = Azurite::start(Mode::HttpsOAuth {
        cert: ca.cert_path.clone(),
        key: ca.key_path.clone(),
    })
    .await;
    let destination = format!("{}/{PREFIX}", azurite.container_url(CONTAINER));
    let scenario = Scenario {
        fake,
        azurite,
        destination,
        extra_env: vec![("SSL_CERT_FILE".into(), ca.ca_pem_path.display().to_string())],
        http: reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(&std::fs::read(&ca.ca_pem_path).unwrap()).unwrap(),
            )
            .build()
            .unwrap(),
        read_sas: None,
    };
    let (code, stdout, stderr) = scenario.run().await;
    assert_eq!(
        code,
        Some(0),
        "{stderr}\nAzurite:\n{}",
        scenario.azurite.output()
    );
    let summary: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(summary["rows"].as_u64().unwrap() > 0);
    // Storage tokens came from the managed-identity endpoint for the storage resource.
    let storage_tokens = scenario
        .fake
        .fake
        .requests()
        .into_iter()
        .filter(|r| {
            r.path_and_query.starts_with("/msi/token")
                && r.path_and_query.contains("storage.azure.com")
        })
        .count();
    assert!(storage_tokens >= 1, "no storage token was requested");
    // The report is there, readable with an OAuth token as Power BI would read it.
    let latest = scenario
        .http
        .get(scenario.blob_url("latest.csv"))
        .bearer_auth(scenario.fake.fake.mint_token("https://storage.azure.com"))
        .header("x-ms-version", "2021-08-06")
        .send()
        .await
        .unwrap();
    assert!(latest.status().is_success(), "{}", latest.status());
    let rows = read_csv(&latest.bytes().await.unwrap());
    assert_eq!(rows.len() as u64, summary["rows"].as_u64().unwrap());
}
