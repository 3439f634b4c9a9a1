//! The Functions custom handler driven exactly as the Functions host drives it: the packaged zip
//! (`scripts/package.sh` → `dist/signin-export.zip`) unpacked, started and invoked by the host
//! emulator in `support::host`. Protocol shape first (package layout, readiness, envelopes,
//! replies, parameters, signals), then end-to-end runs against the fake Graph and Azurite.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use signin_export::config::SETTINGS;

use crate::support::app::read_csv;
use crate::support::azurite::Azurite;
use crate::support::fake::{self, RunningFake};
use crate::support::host::{
    package_zip, resolve_setting_references, App, CallerResponse, FunctionsHost, HttpCall, Level,
};

const TIMER: &str = "ExportSignIns";
const REFRESH: &str = "RefreshSignIns";
/// A function key as a caller passes it (`?code=`); it must never be echoed.
const FUNCTION_KEY: &str = "fk-Zx81secretFunctionKey==";

fn settings(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = vec![
        ("SIGNINS_SCHEDULE".into(), "0 */30 * * * *".into()),
        // The fake publishes every sign-in final: the tests reason up to "now".
        ("SIGNINS_SETTLE".into(), "0s".into()),
    ];
    all.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    all
}

/// App settings for a handler reading `fake` with its managed identity and writing into `dest`.
fn fake_settings(fake: &RunningFake, dest: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut all = settings(&[
        ("SIGNINS_DESTINATION", dest),
        ("SIGNINS_PRESET", "all"),
        ("SIGNINS_LOOKBACK", "2d"),
    ]);
    all.extend(fake.managed_identity_env("v1.0"));
    all.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    all
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap()
}

fn timer_data(status: Value, past_due: bool) -> Value {
    json!({"Schedule": {"AdjustForDST": true}, "ScheduleStatus": status, "IsPastDue": past_due})
}

/// Asserts the caller got `status` with a JSON body passed through unchanged, and returns it.
fn assert_json_reply(response: &CallerResponse, status: u16) -> Value {
    assert_eq!(
        response.invocation.status, 200,
        "the host must get 200 for an HTTP-trigger reply: {:?}",
        response.invocation
    );
    assert_eq!(
        response.invocation.content_type.as_deref(),
        Some("application/json")
    );
    assert_eq!(
        response.status,
        status,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(response.content_type(), Some("application/json"));
    assert!(
        !response.reformatted_by_host,
        "the body must be a JSON string the host passes through"
    );
    let body = response.json();
    // Byte for byte what a compact serializer produces: nothing reformatted on the way.
    assert_eq!(
        String::from_utf8(response.body.clone()).unwrap(),
        body.to_string()
    );
    assert!(
        body["status"].is_string(),
        "every body has a status: {body}"
    );
    let raw = String::from_utf8_lossy(&response.invocation.body);
    assert!(
        !raw.contains(FUNCTION_KEY),
        "the function key leaked: {raw}"
    );
    body
}

// ---------------------------------------------------------------------------------------------
// The package

#[test]
fn package_has_each_function_folder_at_the_root_and_an_executable_binary() {
    let app = App::unpack(&package_zip());
    let names: Vec<&str> = app
        .entries
        .keys()
        .map(String::as_str)
        .filter(|n| !n.ends_with('/'))
        .collect();
    assert_eq!(
        names,
        [
            "ExportSignIns/function.json",
            "RefreshSignIns/function.json",
            "host.json",
            "signin-export"
        ],
        "zip layout"
    );
    assert_eq!(
        app.entries["signin-export"] & 0o111,
        0o111,
        "the binary's execute bits must be in the zip"
    );
    assert_eq!(
        app.entries["host.json"] & 0o111,
        0,
        "manifests are not executable"
    );

    // host.json: the custom handler, envelope mode, no extension bundle to download.
    assert_eq!(app.host_json["version"], "2.0");
    assert_eq!(app.description()["defaultExecutablePath"], "signin-export");
    assert_eq!(app.arguments(), ["serve"]);
    assert!(app.host_json.get("extensionBundle").is_none());
    assert_ne!(
        app.host_json["customHandler"]["enableForwardingHttpRequest"],
        true
    );
    assert_eq!(app.function_timeout(), Some(Duration::from_secs(30 * 60)));
    assert!(
        app.executable().starts_with(app.root.path()),
        "the binary resolves inside the app root"
    );

    // The manifests in the zip are the repository's.
    for (zip_path, repo_path) in [
        ("host.json", "host.json"),
        (
            "ExportSignIns/function.json",
            "function/ExportSignIns/function.json",
        ),
        (
            "RefreshSignIns/function.json",
            "function/RefreshSignIns/function.json",
        ),
    ] {
        let packaged = std::fs::read(app.root.path().join(zip_path)).unwrap();
        let repo = std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(repo_path))
            .unwrap();
        assert_eq!(
            packaged, repo,
            "{zip_path} in the zip is stale: run scripts/package.sh"
        );
    }

    let timer = app.binding(TIMER, "in", "timerTrigger");
    assert_eq!(timer["name"], "timer");
    assert_eq!(timer["schedule"], "%SIGNINS_SCHEDULE%");
    assert_eq!(timer["useMonitor"], true);
    assert_eq!(timer["runOnStartup"], false);
    // The documented default schedule is what the setting resolves to.
    let default = SETTINGS
        .iter()
        .find(|s| s.name == "SIGNINS_SCHEDULE")
        .unwrap()
        .default;
    let resolved = resolve_setting_references(
        "%SIGNINS_SCHEDULE%",
        &[("SIGNINS_SCHEDULE".to_string(), default.to_string())].into(),
    );
    assert_eq!(resolved, "0 */30 * * * *");
    assert_eq!(
        resolved.split_whitespace().count(),
        6,
        "NCRONTAB with seconds"
    );

    let http = app.binding(REFRESH, "in", "httpTrigger");
    assert_eq!(http["name"], "req");
    assert_eq!(http["authLevel"], "function");
    assert_eq!(http["methods"], json!(["get", "post"]));
    assert_eq!(http["route"], "refresh");
    assert_eq!(app.binding(REFRESH, "out", "http")["name"], "res");
}

#[test]
fn packaged_binary_links_no_openssl() {
    let app = App::unpack(&package_zip());
    let output = std::process::Command::new("objdump")
        .arg("-p")
        .arg(app.executable())
        .output()
        .expect("objdump");
    assert!(output.status.success());
    let headers = String::from_utf8_lossy(&output.stdout);
    assert!(
        headers.contains("NEEDED"),
        "expected a dynamically linked glibc binary:\n{headers}"
    );
    for line in headers.lines().filter(|l| l.contains("NEEDED")) {
        assert!(
            !line.contains("libssl") && !line.contains("libcrypto"),
            "{line}"
        );
    }
}

#[test]
fn packaged_binary_has_no_demo_and_says_so() {
    // The package is built without the `demo` feature: no simulated tenant ships to Azure.
    let app = App::unpack(&package_zip());
    let output = std::process::Command::new(app.executable())
        .arg("demo")
        .env_clear()
        .output()
        .expect("run the packaged binary");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("this build of signin-export has no demo"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Start-up, readiness, console logging, signals

#[tokio::test]
async fn handler_answers_the_readiness_probe_and_logs_to_stdout() {
    let dest = tempfile::tempdir().unwrap();
    let host = FunctionsHost::start(settings(&[(
        "SIGNINS_DESTINATION",
        dest.path().to_str().unwrap(),
    )]))
    .await;
    assert!(
        host.started_in < Duration::from_secs(10),
        "slow start: {:?}",
        host.started_in
    );
    let ping = reqwest::get(format!("http://127.0.0.1:{}/", host.port))
        .await
        .unwrap();
    assert_eq!(ping.status(), 200);
    assert_eq!(ping.text().await.unwrap(), r#"{"status":"ok"}"#);
    let line = host
        .wait_for_log(Duration::from_secs(5), |l| l.text.contains("listening"))
        .await;
    assert_eq!(line.level, Level::Information, "start-up goes to stdout");
    host.wait_for_log(Duration::from_secs(5), |l| {
        l.text.contains("SIGNINS_PRESET = exchange-activesync")
    })
    .await;
    let errors: Vec<_> = host
        .logs()
        .into_iter()
        .filter(|l| l.level == Level::Error)
        .collect();
    assert!(
        errors.is_empty(),
        "a healthy start logs no errors: {errors:?}"
    );
}

#[tokio::test]
async fn invalid_settings_keep_the_handler_up_and_fail_each_invocation() {
    let mut host = FunctionsHost::start(settings(&[
        ("SIGNINS_PRESET", "imap"),
        ("AZURE_TENANT_ID", "contoso"),
        ("AZURE_CLIENT_ID", "app"),
        ("AZURE_CLIENT_SECRET", "hunter2-never-shown"),
    ]))
    .await;
    let line = host
        .wait_for_log(Duration::from_secs(5), |l| {
            l.text.contains("SIGNINS_PRESET")
        })
        .await;
    assert_eq!(line.level, Level::Error, "{line:?}");

    let timer = host
        .invoke_timer(TIMER, timer_data(Value::Null, false))
        .await;
    assert_eq!(timer.status, 500, "the host marks the invocation failed");
    assert_eq!(timer.content_type.as_deref(), Some("application/json"));
    assert!(
        timer.logs().iter().any(|l| l.contains("SIGNINS_PRESET")),
        "{:?}",
        timer.logs()
    );

    let refresh = host
        .call_http(REFRESH, HttpCall::new("POST").query("code", FUNCTION_KEY))
        .await;
    let body = assert_json_reply(&refresh, 500);
    assert_eq!(body["status"], "misconfigured");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("SIGNINS_PRESET"));

    // Still alive and answering.
    let ping = reqwest::get(format!("http://127.0.0.1:{}/", host.port))
        .await
        .unwrap();
    assert_eq!(ping.status(), 200);
    host.sigterm();
    assert!(host.wait_exit(Duration::from_secs(5)).await.success());
    assert!(!host.log_text().contains("hunter2"), "{}", host.log_text());
}

#[tokio::test]
async fn sigterm_when_idle_exits_cleanly() {
    let dest = tempfile::tempdir().unwrap();
    let mut host = FunctionsHost::start(settings(&[(
        "SIGNINS_DESTINATION",
        dest.path().to_str().unwrap(),
    )]))
    .await;
    host.sigterm();
    // An idle handler exits at once; the bound is only what a loaded machine may need.
    let status = host.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "{status}\n{}", host.log_text());
    host.wait_for_log(Duration::from_secs(1), |l| {
        l.text.contains("custom handler stopped")
    })
    .await;
}

#[tokio::test]
async fn serve_without_the_port_variable_explains_itself() {
    let app = App::unpack(&package_zip());
    let output = tokio::process::Command::new(app.executable())
        .args(app.arguments())
        .current_dir(app.root.path())
        .env_clear()
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("FUNCTIONS_CUSTOMHANDLER_PORT is not set"),
        "{stderr}"
    );

    let output = tokio::process::Command::new(app.executable())
        .args(app.arguments())
        .env_clear()
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", "http")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("FUNCTIONS_CUSTOMHANDLER_PORT='http'"));
}

// ---------------------------------------------------------------------------------------------
// HTTP trigger envelopes that never reach Graph

#[tokio::test]
async fn refresh_refuses_bad_parameters_with_a_json_400_naming_them() {
    let dest = tempfile::tempdir().unwrap();
    let host = FunctionsHost::start(settings(&[(
        "SIGNINS_DESTINATION",
        dest.path().to_str().unwrap(),
    )]))
    .await;
    let now = OffsetDateTime::now_utc();
    let cases: Vec<(HttpCall, &str, &str)> = vec![
        (
            HttpCall::new("POST").query("since", "last tuesday"),
            "since",
            "RFC 3339",
        ),
        (
            HttpCall::new("POST").query("until", &rfc3339(now + time::Duration::hours(2))),
            "until",
            "future",
        ),
        (
            HttpCall::new("POST").query("since", &rfc3339(now - time::Duration::days(31))),
            "since",
            "30 days",
        ),
        (
            HttpCall::new("POST")
                .query("since", &rfc3339(now - time::Duration::hours(1)))
                .query("until", &rfc3339(now - time::Duration::hours(2))),
            "since",
            "earlier than until",
        ),
        (
            HttpCall::new("POST").query("lookback", "7d"),
            "lookback",
            "unknown parameter",
        ),
        (
            HttpCall::new("POST")
                .query("since", "a")
                .query("since", "b"),
            "since",
            "RFC 3339",
        ),
        // With a body, too: the body is not where parameters go.
        (
            HttpCall::new("POST")
                .query("since", "nope")
                .body(r#"{"since":"2026-11-27T00:00:00Z"}"#),
            "since",
            "RFC 3339",
        ),
    ];
    for (call, parameter, fragment) in cases {
        let call = call.query("code", FUNCTION_KEY);
        let response = host.call_http(REFRESH, call.clone()).await;
        let body = assert_json_reply(&response, 400);
        assert_eq!(body["status"], "bad-request", "{call:?}");
        assert_eq!(body["error"]["parameter"], parameter, "{call:?}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains(fragment),
            "{call:?}: {body}"
        );
    }
}

#[tokio::test]
async fn refresh_get_reads_the_last_run_without_calling_graph() {
    let dest = tempfile::tempdir().unwrap();
    let host = FunctionsHost::start(settings(&[(
        "SIGNINS_DESTINATION",
        dest.path().to_str().unwrap(),
    )]))
    .await;
    for call in [
        HttpCall::new("GET"),
        HttpCall::new("GET").query("code", FUNCTION_KEY),
    ] {
        let response = host.call_http(REFRESH, call).await;
        let body = assert_json_reply(&response, 200);
        assert_eq!(body, json!({"status": "ok", "lastRun": null}));
    }
}

#[tokio::test]
async fn unknown_functions_and_malformed_envelopes_are_refused() {
    let dest = tempfile::tempdir().unwrap();
    let host = FunctionsHost::start(settings(&[(
        "SIGNINS_DESTINATION",
        dest.path().to_str().unwrap(),
    )]))
    .await;
    let reply = host
        .post_envelope("NoSuchFunction", &json!({"Data": {}, "Metadata": {}}))
        .await;
    assert_eq!(reply.status, 404);
    assert!(reply.logs()[0].contains("NoSuchFunction"));
    let reply = host
        .post_envelope(REFRESH, &json!({"Data": {}, "Metadata": {}}))
        .await;
    assert_eq!(reply.status, 400);
    assert!(reply.json()["Logs"].is_array());
}

// ---------------------------------------------------------------------------------------------
// Timer envelopes (the fake Graph, a local folder)

#[tokio::test]
async fn timer_runs_whatever_the_schedule_status_says() {
    let running = fake::spawn_http(fake::wall_clock_tenant(6, 1, 7)).await;
    let dest = tempfile::tempdir().unwrap();
    let host =
        FunctionsHost::start(fake_settings(&running, dest.path().to_str().unwrap(), &[])).await;
    let statuses = [
        (Value::Null, false, "no schedule status"),
        (
            json!({"Last": "0001-01-01T00:00:00", "Next": "2026-11-28T16:30:00+00:00", "LastUpdated": "0001-01-01T00:00:00"}),
            false,
            "last run never",
        ),
        (
            json!({"Last": "2026-11-28T16:00:00.0030589+01:00", "Next": "2026-11-28T16:30:00.0000000+01:00", "LastUpdated": "2026-11-28T16:00:00.1234567+01:00"}),
            true,
            "past due",
        ),
        (
            json!({"Last": "not a date", "Next": 42, "LastUpdated": null}),
            false,
            "unparseable",
        ),
    ];
    let mut exported = 0;
    for (status, past_due, fragment) in statuses {
        let reply = host
            .invoke_timer(TIMER, timer_data(status.clone(), past_due))
            .await;
        assert_eq!(
            reply.status,
            200,
            "{status}: {}\n{}",
            String::from_utf8_lossy(&reply.body),
            host.log_text()
        );
        assert_eq!(reply.content_type.as_deref(), Some("application/json"));
        let body = reply.json();
        assert_eq!(body["Outputs"], json!({}));
        let logs = reply.logs();
        assert!(logs[0].contains(fragment), "{status}: {logs:?}");
        assert!(
            logs.iter().any(|l| l.starts_with("export completed")),
            "{logs:?}"
        );
        let summary = &body["ReturnValue"];
        assert_eq!(summary["outcome"], "completed", "{summary}");
        exported += summary["rows"].as_u64().unwrap();
    }
    assert!(exported > 0, "the first run exports the tenant's sign-ins");
    // One structured run event per invocation on the console (what the Azure Monitor alerts
    // query), never in the invocation's Logs (the host would log it twice).
    let run_events = || -> Vec<Value> {
        host.logs()
            .iter()
            .filter(|l| l.function.is_none())
            .filter_map(|l| {
                l.text
                    .split_once("SIGNIN_EXPORT_RUN ")
                    .map(|(_, json)| json.to_string())
            })
            .map(|json| serde_json::from_str(&json).expect("the run event is one JSON object"))
            .collect()
    };
    // Console lines arrive on the child's stdout, independently of the replies: wait for them.
    let waited = std::time::Instant::now();
    while run_events().len() < 4 && waited.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let events = run_events();
    assert_eq!(events.len(), 4, "{}", host.log_text());
    for event in &events {
        assert_eq!(event["trigger"], "timer");
        assert_eq!(event["outcome"], "completed");
        assert!(
            event["durationMs"].is_u64() && event["windowEnd"].is_string(),
            "{event}"
        );
    }
    assert_eq!(
        events
            .iter()
            .map(|e| e["rows"].as_u64().unwrap())
            .sum::<u64>(),
        exported
    );
    // The invocation's Logs are logged by the host for the function.
    assert!(host
        .logs()
        .iter()
        .any(|l| l.function.as_deref() == Some(TIMER) && l.text.starts_with("export completed")));
    assert!(
        !host.logs().iter().any(|l| l.level == Level::Error),
        "{}",
        host.log_text()
    );
}

// ---------------------------------------------------------------------------------------------
// End to end: the fake Graph → the packaged handler → Azurite

/// Azurite plus a handler exporting into its `signins` container with an account SAS.
struct BlobRig {
    running: RunningFake,
    azurite: Azurite,
    sas: String,
    destination: String,
}

impl BlobRig {
    async fn start(signins: Vec<Value>) -> BlobRig {
        let running = fake::spawn_http(signins).await;
        let azurite = Azurite::start_http().await;
        let sas = azurite.account_sas("rwdlacup");
        let destination = format!("{}?{}", azurite.container_url("signins"), sas);
        BlobRig {
            running,
            azurite,
            sas,
            destination,
        }
    }

    fn settings(&self) -> Vec<(String, String)> {
        fake_settings(&self.running, &self.destination, &[])
    }

    async fn handler(&self) -> FunctionsHost {
        FunctionsHost::start(self.settings()).await
    }

    fn blob_url(&self, name: &str) -> String {
        format!(
            "{}/{}?{}",
            self.azurite.container_url("signins"),
            name,
            self.sas
        )
    }

    /// Names of every blob in the container.
    async fn blob_names(&self) -> Vec<String> {
        let url = format!(
            "{}?restype=container&comp=list&{}",
            self.azurite.container_url("signins"),
            self.sas
        );
        let listing = reqwest::get(url).await.unwrap();
        assert_eq!(listing.status(), 200);
        let xml = listing.text().await.unwrap();
        xml.split("<Name>")
            .skip(1)
            .filter_map(|part| part.split("</Name>").next())
            .map(str::to_string)
            .collect()
    }

    async fn blob_named(&self, suffix: &str) -> String {
        let names = self.blob_names().await;
        names
            .into_iter()
            .find(|n| n.ends_with(suffix))
            .unwrap_or_else(|| panic!("no blob ending with {suffix}"))
    }

    async fn download(&self, name: &str) -> Vec<u8> {
        let response = reqwest::get(self.blob_url(name)).await.unwrap();
        assert_eq!(response.status(), 200, "{name}");
        response.bytes().await.unwrap().to_vec()
    }

    /// `x-ms-lease-state` of the state blob (the single-writer lock).
    async fn lock_state(&self) -> String {
        let state = self.blob_named("_state/state.json").await;
        let response = reqwest::Client::new()
            .head(self.blob_url(&state))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.headers()["x-ms-lease-state"]
            .to_str()
            .unwrap()
            .to_string()
    }

    /// Ids in `latest.csv`, asserting none is there twice.
    async fn exported_ids(&self) -> Vec<String> {
        let latest = self.blob_named("latest.csv").await;
        let rows = read_csv(&self.download(&latest).await);
        let ids: Vec<String> = rows.iter().map(|r| r["id"].clone()).collect();
        let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "an id was exported twice");
        ids
    }
}

#[tokio::test]
async fn timer_export_lands_in_azurite() {
    let rig = BlobRig::start(fake::wall_clock_tenant(10, 2, 21)).await;
    let host = rig.handler().await;
    let reply = host
        .invoke_timer(TIMER, timer_data(json!({"Last": "0001-01-01T00:00:00", "Next": "2026-11-28T17:00:00+00:00", "LastUpdated": "0001-01-01T00:00:00"}), false))
        .await;
    assert_eq!(
        reply.status,
        200,
        "{}\n{}",
        String::from_utf8_lossy(&reply.body),
        host.log_text()
    );
    let summary = reply.json()["ReturnValue"].clone();
    assert_eq!(summary["outcome"], "completed");
    let rows = summary["rows"].as_u64().unwrap();
    assert!(rows > 0, "{summary}");
    assert!(
        !summary.to_string().contains("sig="),
        "the summary shows no SAS: {summary}"
    );
    assert!(
        !host
            .log_text()
            .contains(rig.sas.split("sig=").nth(1).unwrap()),
        "the SAS leaked into the logs"
    );

    // Every exported row is in latest.csv and in a daily file, once; the lock is free again.
    assert_eq!(rig.exported_ids().await.len() as u64, rows);
    let names = rig.blob_names().await;
    assert!(
        names
            .iter()
            .any(|n| n.contains("daily/") && n.ends_with(".csv")),
        "{names:?}"
    );
    assert_eq!(rig.lock_state().await, "available");

    // The next timer run adds nothing and GET /api/refresh reports it.
    let again = host
        .invoke_timer(TIMER, timer_data(Value::Null, false))
        .await;
    assert_eq!(again.json()["ReturnValue"]["rows"], 0);
    let last = assert_json_reply(
        &host
            .call_http(REFRESH, HttpCall::new("GET").query("code", FUNCTION_KEY))
            .await,
        200,
    );
    assert_eq!(last["lastRun"]["outcome"], "completed");
    assert_eq!(last["lastRun"]["rows"], 0);
}

#[tokio::test]
async fn concurrent_refreshes_one_runs_one_gets_409_and_the_timer_is_told_already_running() {
    let rig = BlobRig::start(fake::wall_clock_tenant(10, 2, 22)).await;
    rig.running
        .fake
        .faults()
        .slow_pages(Duration::from_millis(400));
    let host = Arc::new(rig.handler().await);

    let first = tokio::spawn({
        let host = host.clone();
        async move {
            host.call_http(REFRESH, HttpCall::new("POST").query("code", FUNCTION_KEY))
                .await
        }
    });
    // The first refresh holds the lock once it is reading Graph.
    tokio::time::timeout(
        Duration::from_secs(30),
        rig.running.fake.wait_for_page_requests(1),
    )
    .await
    .expect("the first refresh reaches Graph");

    let second = host
        .call_http(REFRESH, HttpCall::new("POST").query("code", FUNCTION_KEY))
        .await;
    let busy = assert_json_reply(&second, 409);
    assert_eq!(busy["status"], "already-running");
    let holder = busy["holder"].as_str().unwrap();
    assert!(
        holder.starts_with("refresh RefreshSignIns invocation "),
        "{holder}"
    );
    assert!(
        busy["since"]
            .as_str()
            .is_some_and(|s| OffsetDateTime::parse(s, &Rfc3339).is_ok()),
        "{busy}"
    );

    let timer = host
        .invoke_timer(TIMER, timer_data(Value::Null, false))
        .await;
    assert_eq!(timer.status, 200, "already running is not a failure");
    assert!(
        timer
            .logs()
            .iter()
            .any(|l| l.starts_with("already running (held by refresh RefreshSignIns invocation ")),
        "{:?}",
        timer.logs()
    );

    let first = first.await.unwrap();
    let done = assert_json_reply(&first, 200);
    assert_eq!(done["status"], "completed");
    assert!(first
        .invocation
        .logs()
        .iter()
        .any(|l| l.starts_with("refresh completed")));
    assert_eq!(
        rig.exported_ids().await.len() as u64,
        done["summary"]["rows"].as_u64().unwrap()
    );
}

#[tokio::test]
async fn refresh_past_its_deadline_answers_202_and_the_next_run_continues() {
    let rig = BlobRig::start(fake::wall_clock_tenant(10, 2, 23)).await;
    // No page comes before the deadline: the answer can only come from the deadline ending the
    // waits (each page would take a minute).
    rig.running
        .fake
        .faults()
        .slow_pages(Duration::from_secs(60));
    let mut settings = rig.settings();
    settings.push(("SIGNINS_REFRESH_DEADLINE".into(), "1s".into()));
    let host = FunctionsHost::start(settings).await;
    let response = tokio::time::timeout(
        Duration::from_secs(40),
        host.call_http(REFRESH, HttpCall::new("POST").query("code", FUNCTION_KEY)),
    )
    .await
    .expect("the refresh answered at its deadline, not after the pages");
    let body = assert_json_reply(&response, 202);
    assert_eq!(body["status"], "deadline-reached");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("next timer run or refresh continues"));
    // Nothing came in time: what remains is the whole window, and the run says it made no
    // progress.
    assert!(body["summary"]["remaining"]["from"].is_string(), "{body}");
    assert_eq!(body["summary"]["stalledRuns"], 1, "{body}");

    rig.running.fake.faults().slow_pages(Duration::ZERO);
    let timer = host
        .invoke_timer(TIMER, timer_data(Value::Null, false))
        .await;
    assert_eq!(
        timer.json()["ReturnValue"]["outcome"],
        "completed",
        "{:?}",
        timer.logs()
    );
    let total = body["summary"]["rows"].as_u64().unwrap()
        + timer.json()["ReturnValue"]["rows"].as_u64().unwrap();
    assert_eq!(rig.exported_ids().await.len() as u64, total);
}

#[tokio::test]
async fn sigterm_mid_run_releases_the_lock_and_the_next_run_completes() {
    let rig = BlobRig::start(fake::wall_clock_tenant(10, 2, 24)).await;
    rig.running
        .fake
        .faults()
        .slow_pages(Duration::from_millis(500));
    let host = Arc::new(rig.handler().await);

    let refresh = tokio::spawn({
        let host = host.clone();
        async move {
            host.call_http(REFRESH, HttpCall::new("POST").query("code", FUNCTION_KEY))
                .await
        }
    });
    tokio::time::timeout(
        Duration::from_secs(30),
        rig.running.fake.wait_for_page_requests(1),
    )
    .await
    .expect("the refresh reaches Graph");
    assert_eq!(rig.lock_state().await, "leased");

    let sent = std::time::Instant::now();
    host.sigterm();
    // The running refresh is told the handler is going away.
    let interrupted = refresh.await.unwrap();
    let body = assert_json_reply(&interrupted, 503);
    assert_eq!(body["status"], "shutting-down");
    let mut host = Arc::try_unwrap(host).ok().expect("the only handle");
    let status = host.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "{status}\n{}", host.log_text());
    assert!(
        sent.elapsed() < Duration::from_secs(10),
        "took {:?} to stop",
        sent.elapsed()
    );
    assert_eq!(
        rig.lock_state().await,
        "available",
        "the lease is released, not left to expire"
    );
    let shutdown = host
        .wait_for_log(Duration::from_secs(1), |l| {
            // The console line (the invocation's Logs carry the same text as Information).
            l.function.is_none() && l.text.contains("refresh stopped: cancelled")
        })
        .await;
    assert_eq!(
        shutdown.level,
        Level::Warning,
        "stderr lines with 'warn' are host Warnings"
    );
    assert!(
        !host.logs().iter().any(|l| l.level == Level::Error),
        "a clean shutdown logs no errors:\n{}",
        host.log_text()
    );

    // A new instance runs to completion at once, and nothing is exported twice.
    rig.running.fake.faults().slow_pages(Duration::ZERO);
    let next = rig.handler().await;
    let reply = next
        .invoke_timer(TIMER, timer_data(Value::Null, true))
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.logs());
    assert_eq!(
        reply.json()["ReturnValue"]["outcome"],
        "completed",
        "{:?}",
        reply.logs()
    );
    rig.exported_ids().await;
}
