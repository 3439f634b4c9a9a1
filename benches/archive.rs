//! The diagnostic-settings source, end to end: the simulated tenant's sign-ins written into
//! Azurite as an Entra diagnostic setting archives them (a container per category, an append blob
//! per received hour, JSON lines), then the release `signin-export run` with
//! `SIGNINS_SOURCE=diagnostic-settings` reading them into a folder (or Azurite). Prints ONE JSON
//! line: MB/s and rows/s of diagnostic JSON, CPU, peak RSS, and what those rates make of a
//! 10M-sign-ins-a-day tenant.
//!
//! `cargo bench --bench archive -- --rows 200000` (after `cargo build --release --bin
//! signin-export`; Azurite from `npm ci`). `--help` lists the knobs. Everything listens on
//! 127.0.0.1; the exporter is killed at `--timeout`.

#[path = "support/child.rs"]
mod child;

mod support {
    #[path = "../../tests/support/azurite.rs"]
    #[allow(dead_code)]
    pub mod azurite;
    #[path = "../../tests/support/diagnostic.rs"]
    #[allow(dead_code)]
    pub mod diagnostic;
}

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use child::run_child;
use clap::Parser;
use fake_tenant::diagnostic::{category_of, received_at, to_line, Archive};
use fake_tenant::tenant::TENANT_ID;
use fake_tenant::{signins, TenantSpec};
use serde_json::{json, Value};
use time::OffsetDateTime;

use support::azurite::Azurite;

/// Sign-ins a day of the tenant the issue sizes a timer run for.
const TEN_MILLION_A_DAY: f64 = 10_000_000.0;
/// The default timer deadline (`SIGNINS_RUN_DEADLINE`), seconds.
const TIMER_RUN_S: f64 = 25.0 * 60.0;
/// Bytes appended to a blob at once (the service takes up to 4 MiB): the generator makes a
/// user's days one after the other, not in time order, so every hour's blob grows at once.
const APPEND_BYTES: usize = 1024 * 1024;

#[derive(Parser, Debug)]
#[command(about = "The diagnostic-settings source end to end, from Azurite (one JSON line out)")]
struct Args {
    /// Sign-ins archived (every category; all are read).
    #[arg(long, default_value_t = 200_000)]
    rows: usize,
    /// Days of history the rows are spread over.
    #[arg(long, default_value_t = 2)]
    days: u32,
    /// `folder` or `azurite`: where the export writes.
    #[arg(long, default_value = "folder")]
    dest: String,
    /// `--deadline` of the run, seconds (default none).
    #[arg(long)]
    deadline: Option<u64>,
    /// Runs one after the other on the same destination (with a deadline: until caught up).
    #[arg(long, default_value_t = 1)]
    runs: u32,
    /// Hard limit per run, seconds.
    #[arg(long, default_value_t = 1200)]
    timeout: u64,
    /// Then measure one more run whose state holds this many ids in its repeated-delivery
    /// window (split over the two newest hours, as a tenant with that many sign-ins in two
    /// hours has: 834000 for 10M a day), reading new lines appended to the newest blobs.
    /// Folder destination only.
    #[arg(long)]
    window_ids: Option<usize>,
    /// The `signin-export` binary (default: this checkout's release build).
    #[arg(long)]
    exe: Option<PathBuf>,
    /// Added by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = bench(args) {
        eprintln!("archive bench failed: {e}");
        std::process::exit(1);
    }
}

/// What was archived.
#[derive(Default)]
struct Written {
    lines: u64,
    bytes: u64,
    blobs: usize,
}

/// Writes `rows` sign-ins of the simulated tenant into Azurite's diagnostic containers,
/// streaming: each blob's lines are appended in blocks of about [`APPEND_BYTES`].
async fn write_archive(
    azurite: &Azurite,
    rows: usize,
    days: u32,
    seed: u64,
    end: OffsetDateTime,
) -> Written {
    let users = (rows as f64 / (f64::from(days) * 5.5)).ceil().max(1.0) as usize;
    let spec = TenantSpec {
        users,
        days,
        seed,
        end,
    };
    let mut buffers: BTreeMap<(&'static str, String), Vec<u8>> = BTreeMap::new();
    let mut blobs = std::collections::BTreeSet::new();
    let mut written = Written::default();
    for record in signins(&spec).take(rows) {
        let (Some((_, container)), Some(received)) = (category_of(&record), received_at(&record))
        else {
            continue;
        };
        let Some(line) = to_line(&record, TENANT_ID, received) else {
            continue;
        };
        let key = (container, Archive::blob_name(TENANT_ID, received));
        blobs.insert(key.clone());
        let buffer = buffers.entry(key.clone()).or_default();
        serde_json::to_writer(&mut *buffer, &line).expect("JSON");
        buffer.push(b'\n');
        written.lines += 1;
        if buffer.len() >= APPEND_BYTES {
            let full = std::mem::take(buffer);
            written.bytes += full.len() as u64;
            support::diagnostic::append(azurite, key.0, &key.1, &full).await;
        }
    }
    for ((container, name), bytes) in buffers {
        if !bytes.is_empty() {
            written.bytes += bytes.len() as u64;
            support::diagnostic::append(azurite, container, &name, &bytes).await;
        }
    }
    written.blobs = blobs.len();
    written
}

fn bench(args: Args) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    // The tenant ends at the last whole hour; the runs see the wall clock (a release build).
    let now = OffsetDateTime::now_utc();
    let end = now
        .replace_minute(0)
        .and_then(|t| t.replace_second(0))
        .and_then(|t| t.replace_nanosecond(0))
        .map_err(|e| e.to_string())?;
    let azurite = runtime.block_on(Azurite::start_http());
    let started = std::time::Instant::now();
    let written = runtime.block_on(write_archive(&azurite, args.rows, args.days, 19, end));
    let write_s = started.elapsed().as_secs_f64();
    let storage = format!("{}?{}", azurite.endpoint(), azurite.account_sas("rl"));
    let work = tempfile::Builder::new()
        .prefix("signin-archive-bench-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let destination = match args.dest.as_str() {
        "folder" => work.path().join("out").display().to_string(),
        "azurite" => format!(
            "{}?{}",
            azurite.container_url("export"),
            azurite.account_sas("racwdl")
        ),
        other => return Err(format!("--dest: folder or azurite, got {other:?}")),
    };
    let exe = args
        .exe
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_signin-export")));
    let lookback = format!("{}d", (args.days + 1).min(30));
    let run = || -> Result<(child::Usage, Value), String> {
        let mut command = Command::new(&exe);
        command.arg("run");
        if let Some(deadline) = args.deadline {
            command.args(["--deadline", &format!("{deadline}s")]);
        }
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("SIGNINS_SOURCE", "diagnostic-settings")
            .env("SIGNINS_DIAGNOSTIC_STORAGE", &storage)
            .env(
                "SIGNINS_EVENT_TYPES",
                "interactiveUser,nonInteractiveUser,servicePrincipal,managedIdentity",
            )
            .env("SIGNINS_DESTINATION", &destination)
            .env("SIGNINS_PRESET", "all")
            .env("SIGNINS_LOOKBACK", &lookback)
            .env("RUST_LOG", "warn");
        let usage = run_child(command, Duration::from_secs(args.timeout))?;
        let summary: Value = usage
            .summary()
            .ok_or_else(|| format!("no JSON summary: {}", usage.stdout))?;
        Ok((usage, summary))
    };
    let mut per_run = Vec::new();
    let (usage, summary) = run()?;
    per_run.push(figures(&usage, &summary));
    while per_run.len() < args.runs as usize && !summary_caught_up(per_run.last()) {
        let (usage, summary) = run()?;
        per_run.push(figures(&usage, &summary));
    }
    let with_window = match args.window_ids {
        None => Value::Null,
        Some(ids) => {
            if args.dest != "folder" {
                return Err("--window-ids needs --dest folder".to_string());
            }
            let state = work.path().join("out/all/_state/state.json");
            fill_window(&state, ids, end)?;
            // New sign-ins of the last hours, appended to the newest blobs.
            let more = runtime.block_on(write_archive(&azurite, 20_000, 1, 20, end));
            let (usage, summary) = run()?;
            let state_bytes = std::fs::metadata(&state).map_or(0, |m| m.len());
            json!({
                "window_ids": ids,
                "lines": more.lines,
                "outcome": summary["outcome"],
                "rows": summary["rows"],
                "wall_s": round(usage.wall.as_secs_f64()),
                "peak_rss_mib": round(usage.max_rss_kib as f64 / 1024.0),
                "state_mib": round(state_bytes as f64 / 1_048_576.0),
            })
        }
    };
    let wall = usage.wall.as_secs_f64();
    let bytes = summary["archive"]["bytes"].as_u64().unwrap_or(0);
    let lines = summary["archive"]["lines"].as_u64().unwrap_or(0);
    let rows = summary["rows"].as_u64().unwrap_or(0);
    let lines_per_s = lines as f64 / wall.max(1e-9);
    let bytes_per_line = written.bytes as f64 / (written.lines.max(1)) as f64;
    // A 10M-a-day tenant archives this many lines (and bytes, at this tenant's line size) an
    // hour; a timer run reads this many such hours at the measured rate.
    let lines_an_hour = TEN_MILLION_A_DAY / 24.0;
    let hours_per_timer_run = lines_per_s * TIMER_RUN_S / lines_an_hour;
    let line = json!({
        "bench": "archive",
        "dest": args.dest,
        "archived_lines": written.lines,
        "archived_bytes": written.bytes,
        "archived_blobs": written.blobs,
        "bytes_per_line": round(bytes_per_line),
        "write_s": round(write_s),
        "outcome": summary["outcome"],
        "rows": rows,
        "lines": lines,
        "bytes": bytes,
        "wall_s": round(wall),
        "cpu_s": round(usage.cpu.as_secs_f64()),
        "mb_per_s": round(bytes as f64 / 1e6 / wall.max(1e-9)),
        "rows_per_s": round(rows as f64 / wall.max(1e-9)),
        "lines_per_s": round(lines_per_s),
        "cpu_us_per_line": round(usage.cpu.as_secs_f64() * 1e6 / (lines.max(1)) as f64),
        "peak_rss_mib": round(usage.max_rss_kib as f64 / 1024.0),
        "storage_requests": summary["storageRequests"],
        "hours_of_10m_a_day_per_25m_run": round(hours_per_timer_run),
        "per_run": if args.runs > 1 { Value::from(per_run) } else { Value::Null },
        "with_window": with_window,
    });
    println!("{line}");
    drop(azurite);
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

/// Puts `ids` made-up ids into the id window of the state at `path`, in the hours of `end` and
/// the one before (the hours a run reading the newest blobs keeps).
fn fill_window(path: &std::path::Path, ids: usize, end: OffsetDateTime) -> Result<(), String> {
    use base64::Engine as _;
    let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut state: Value = serde_json::from_slice(&text).map_err(|e| e.to_string())?;
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut next = || {
        // xorshift64*: made-up GUID bits.
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        seed.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let window = state["archive"]
        .as_object_mut()
        .ok_or("the state has no archive part")?
        .entry("ids")
        .or_insert_with(|| json!({}));
    for (i, hour) in [end - time::Duration::HOUR, end].iter().enumerate() {
        let count = ids / 2 + if i == 0 { ids % 2 } else { 0 };
        let mut bytes = Vec::with_capacity(count * 16);
        for _ in 0..count {
            bytes.extend_from_slice(&next().to_be_bytes());
            bytes.extend_from_slice(&next().to_be_bytes());
        }
        let key = hour
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|e| e.to_string())?;
        window[key] = Value::String(base64::engine::general_purpose::STANDARD.encode(bytes));
    }
    std::fs::write(
        path,
        serde_json::to_vec_pretty(&state).map_err(|e| e.to_string())?,
    )
    .map_err(|e| format!("{}: {e}", path.display()))
}

/// One run's figures for `per_run`.
fn figures(usage: &child::Usage, summary: &Value) -> Value {
    json!({
        "outcome": summary["outcome"],
        "rows": summary["rows"],
        "bytes": summary["archive"]["bytes"],
        "wall_s": round(usage.wall.as_secs_f64()),
        "peak_rss_mib": round(usage.max_rss_kib as f64 / 1024.0),
        "remaining_bytes": summary["remaining"]["bytes"],
    })
}

/// Whether the last run left nothing to read.
fn summary_caught_up(last: Option<&Value>) -> bool {
    last.is_some_and(|l| l["remaining_bytes"].is_null() && l["outcome"] == "completed")
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
