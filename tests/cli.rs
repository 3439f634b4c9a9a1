//! The binary as an admin runs it: exit codes, messages, the JSON summary, and the production
//! token path (App Service managed identity) end to end.

use std::process::{Command, Output};

use crate::support::app::read_csv;
use crate::support::fake::{recent_tenant, spawn_http};

fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_signin-export"));
    // Only what each test sets: no SIGNINS_*/AZURE_* from the developer's shell.
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    command
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn configuration_errors_exit_2_and_name_the_setting() {
    let cases = [
        ("SIGNINS_PRESET", "imap-only"),
        ("SIGNINS_LOOKBACK", "45d"),
        ("SIGNINS_DESTINATION", "https://acct.blob.core.windows.net"),
        ("SIGNINS_EVENT_TYPES", "nonInteractiveUser"),
    ];
    for (name, value) in cases {
        let output = binary()
            .args(["run"])
            // Beta-only event types are an error only with v1.0 (the default is beta).
            .env("SIGNINS_GRAPH_VERSION", "v1.0")
            .env(name, value)
            .output()
            .unwrap();
        let (_, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(2), "{name}={value}: {stderr}");
        assert!(stderr.contains(name), "{name}: {stderr}");
    }
    // A secret without a tenant: named, and the secret itself never echoed.
    let output = binary()
        .args(["run"])
        .env("AZURE_CLIENT_SECRET", "very-secret-value")
        .env("AZURE_CLIENT_ID", "app")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr.contains("AZURE_TENANT_ID"), "{stderr}");
    assert!(!stderr.contains("very-secret-value") && !stdout.contains("very-secret-value"));
    // Bad flags are configuration errors too.
    let output = binary()
        .args(["run", "--since", "last tuesday"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output).1.contains("since"));
}

#[test]
fn every_command_has_help() {
    for args in [
        &["--help"][..],
        &["run", "--help"],
        &["demo", "--help"],
        &["check", "--help"],
        &["serve", "--help"],
    ] {
        let output = binary().args(args).output().unwrap();
        assert!(output.status.success(), "{args:?}");
        assert!(text(&output).0.contains("Usage"), "{args:?}");
    }
}

#[tokio::test]
async fn run_with_a_managed_identity_exports_and_prints_a_json_summary() {
    let fake = spawn_http(recent_tenant(25, 2, 31)).await;
    let out = tempfile::tempdir().unwrap();
    let mut command = binary();
    command
        .args(["run", "--preset", "all", "--lookback", "2d"])
        .arg("--destination")
        .arg(out.path())
        .envs(fake.managed_identity_env("v1.0"));
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    let summary: serde_json::Value =
        serde_json::from_str(stdout.trim()).expect("one JSON line on stdout");
    assert_eq!(summary["outcome"], "completed");
    let rows = summary["rows"].as_u64().unwrap();
    assert!(rows > 0);
    let latest = read_csv(&std::fs::read(out.path().join("all/latest.csv")).unwrap());
    assert_eq!(latest.len() as u64, rows);
    // The token came from the managed-identity endpoint, and never shows in the output.
    let token_requests = fake
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.path_and_query.starts_with("/msi/token"))
        .count();
    assert!(token_requests >= 1);
    for token in fake.fake.tokens_seen_by_graph() {
        assert!(!stderr.contains(&token) && !stdout.contains(&token));
    }
}

/// Issue 17: `check` says which form of the event-type filter the tenant's Graph accepts.
#[tokio::test]
async fn check_reports_which_event_type_filter_graph_accepts() {
    for refuse in [false, true] {
        let fake = spawn_http(recent_tenant(5, 1, 34)).await;
        fake.fake.faults().refuse_combined_event_types(refuse);
        let out = tempfile::tempdir().unwrap();
        let mut command = binary();
        command
            .args(["check"])
            .arg("--destination")
            .arg(out.path())
            .envs(fake.managed_identity_env("beta"))
            .env("SIGNINS_EVENT_TYPES", "interactiveUser,nonInteractiveUser");
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .unwrap()
            .unwrap();
        let (stdout, _) = text(&output);
        assert_eq!(output.status.code(), Some(0), "{stdout}");
        let said = if refuse {
            "Graph refused the combined event-type filter (400 Invalid filter clause): runs read one query per event type"
        } else {
            "the combined event-type filter is accepted"
        };
        assert!(stdout.contains(said), "refuse={refuse}: {stdout}");
    }
}

#[tokio::test]
async fn check_explains_a_missing_graph_permission() {
    let fake = spawn_http(recent_tenant(5, 1, 32)).await;
    fake.fake
        .faults()
        .deny(fake_tenant::GraphDenial::MissingPermission);
    let out = tempfile::tempdir().unwrap();
    let mut command = binary();
    command
        .args(["check"])
        .arg("--destination")
        .arg(out.path())
        .envs(fake.managed_identity_env("v1.0"));
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    let (stdout, _) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("AuditLog.Read.All"), "{stdout}");
    assert!(stdout.contains("[ ok ] destination"), "{stdout}");
    assert!(stdout.contains("[ ok ] Graph token"), "{stdout}");
}

#[tokio::test]
async fn check_warns_when_policy_columns_lack_the_policy_permission() {
    let fake = spawn_http(recent_tenant(5, 1, 33)).await;
    let out = tempfile::tempdir().unwrap();
    let check = |fake_env: Vec<(String, String)>, dest: std::path::PathBuf| {
        let mut command = binary();
        command
            .args(["check"])
            .arg("--destination")
            .arg(dest)
            .env("SIGNINS_COLUMNS", "id,appliedConditionalAccessPolicyCount")
            .envs(fake_env);
        async move {
            let output = tokio::task::spawn_blocking(move || command.output())
                .await
                .unwrap()
                .unwrap();
            let (stdout, _) = text(&output);
            assert_eq!(output.status.code(), Some(0), "{stdout}");
            stdout
        }
    };
    let stdout = check(fake.managed_identity_env("beta"), out.path().into()).await;
    assert!(
        stdout.contains("[warn] Conditional Access columns")
            && stdout.contains("appliedConditionalAccessPolicyCount")
            && stdout.contains("Policy.Read.All"),
        "{stdout}"
    );
    // With the permission granted, no warning.
    fake.fake.grant_role("Policy.Read.All");
    let stdout = check(fake.managed_identity_env("beta"), out.path().into()).await;
    assert!(!stdout.contains("[warn]"), "{stdout}");
}

#[test]
fn beta_only_column_with_v1_exits_2_naming_the_settings() {
    let output = binary()
        .args(["run"])
        .env("SIGNINS_GRAPH_VERSION", "v1.0")
        .env("SIGNINS_COLUMNS", "id,incomingTokenType")
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("SIGNINS_COLUMNS")
            && stderr.contains("incomingTokenType")
            && stderr.contains("SIGNINS_GRAPH_VERSION=beta"),
        "{stderr}"
    );
}

#[test]
fn demo_runs_with_no_azure_and_a_second_run_adds_nothing() {
    let out = tempfile::tempdir().unwrap();
    let run = || {
        let output = binary()
            .args(["demo", "--users", "15", "--days", "2", "--out"])
            .arg(out.path())
            .output()
            .unwrap();
        let (stdout, stderr) = text(&output);
        assert!(output.status.success(), "{stderr}");
        serde_json::from_str::<serde_json::Value>(stdout.trim()).unwrap()
    };
    let first = run();
    assert!(first["rows"].as_u64().unwrap() > 0, "{first}");
    let second = run();
    assert_eq!(second["rows"], 0, "{second}");
    // The demo tenant's report and its map-ready summaries, exact against each other.
    let base = out.path().join("exchange-activesync");
    let read = |file: &str| std::fs::read(base.join(file)).unwrap();
    let (locations, devices) = (read("summary/locations.csv"), read("summary/devices.csv"));
    crate::support::summaries::assert_headers(&locations, &devices);
    let (places, inventory) = crate::support::summaries::assert_summaries_match(
        &read("latest.csv"),
        &locations,
        &devices,
    );
    assert!(
        places > 0 && inventory > 0,
        "{places} places, {inventory} devices"
    );
}

/// `main` runs itself again, once, with glibc's huge-page tunable (README, *The process*): the
/// serving process has it in its environment where transparent huge pages are on, keeps its
/// name, keeps a choice already made (`=0` opts out) and adds it after other tunables.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn the_process_runs_with_glibc_huge_pages_unless_told_otherwise() {
    use std::net::{Ipv4Addr, TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    let on = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .is_ok_and(|mode| mode.contains("[madvise]") || mode.contains("[always]"));
    // (GLIBC_TUNABLES given, whether `hugetlb=1` is added, text that must stay)
    let cases = [
        ("", on, ""),
        ("glibc.malloc.hugetlb=0", false, "glibc.malloc.hugetlb=0"),
        ("glibc.malloc.check=0", on, "glibc.malloc.check=0"),
    ];
    for (given, added, kept) in cases {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut command = binary();
        command
            .arg("serve")
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if !given.is_empty() {
            command.env("GLIBC_TUNABLES", given);
        }
        let mut child = command.spawn().expect("serve starts");
        // Listening means the image that serves is running (the exec, if any, came first).
        let started = Instant::now();
        while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("serve exited before it listened on {port}: {status}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "serve never listened"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let proc = format!("/proc/{}", child.id());
        let environ = std::fs::read(format!("{proc}/environ")).expect("environ");
        let name = std::fs::read_to_string(format!("{proc}/comm")).expect("comm");
        let _ = child.kill();
        let _ = child.wait();
        // glibc splits the variable's text in place as it parses it (a NUL after each tunable),
        // so the raw block is searched, not one `KEY=value` entry.
        let environ = String::from_utf8_lossy(&environ).replace('\0', "\n");
        assert_eq!(
            environ.contains("glibc.malloc.hugetlb=1"),
            added,
            "GLIBC_TUNABLES given as {given:?}: {environ:?}"
        );
        assert!(environ.contains(kept), "{kept:?} kept: {environ:?}");
        assert_eq!(name.trim(), "signin-export", "the process keeps its name");
    }
}
