//! End-to-end benchmark: the released `signin-export run` (production wiring: managed-identity
//! token, Graph pager, filter, flatten, CSV, sink, state) against the simulated tenant's fake
//! Graph on loopback, into a folder or Azurite; optionally the straightforward Python exporter
//! (`scripts/bench/python_exporter.py`) on the same data, side by side. Prints ONE JSON line.
//!
//! Run it through `scripts/bench.sh` (builds, installs the Python venv and Azurite, then calls
//! `cargo bench --bench e2e -- <args>`); `--help` lists the knobs. Both exporters run as child
//! processes so their CPU time and peak RSS (`wait4` rusage) are theirs alone, not the fake's,
//! which holds the whole tenant in memory. Everything listens on 127.0.0.1 and every child is
//! killed at `--timeout`.

#[path = "../tests/support/azurite.rs"]
#[allow(dead_code)]
mod azurite;
#[path = "support/child.rs"]
mod child;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use child::{run_child, Usage};
use clap::Parser;
use fake_tenant::{signins, FakeGraph, TenantSpec};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

#[derive(Parser, Debug)]
#[command(about = "End-to-end export benchmark against the fake Graph (one JSON line out)")]
struct Args {
    /// Sign-ins in the simulated tenant (workload sign-ins included; the export keeps the
    /// interactive and non-interactive ones).
    #[arg(long, default_value_t = 100_000)]
    rows: usize,
    /// Days of history the rows are spread over (one daily file each).
    #[arg(long, default_value_t = 7)]
    days: u32,
    /// `folder` or `azurite`.
    #[arg(long, default_value = "folder")]
    dest: String,
    /// Page latency in milliseconds, `N` or `LOW-HIGH` (uniform), added before each page.
    #[arg(long, default_value = "0")]
    page_ms: String,
    /// Graph's throttle as `REQUESTS/SECONDS` (e.g. `5/10`): a sliding window over sign-in
    /// requests; requests over it get 429 with `Retry-After`. Empty: no throttle.
    #[arg(long, default_value = "")]
    throttle: String,
    /// Graph version the exporter reads (`beta` reads both event types in one query).
    #[arg(long, default_value = "beta")]
    version: String,
    /// `SIGNINS_COLUMNS` for the Rust exporters (default: the default set, as the Python one).
    #[arg(long)]
    columns: Option<String>,
    /// Python interpreter with `scripts/bench/requirements.txt` installed: runs the Python
    /// exporter on the same data after the Rust one.
    #[arg(long)]
    python: Option<PathBuf>,
    /// Hard limit per exporter run, seconds (the child is killed and the bench fails).
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Record the Rust exporter under `perf record -g` into this file.
    #[arg(long)]
    perf: Option<PathBuf>,
    /// The event `perf record` samples (`cpu-clock`; `page-faults` shows where memory grows).
    #[arg(long, default_value = "cpu-clock")]
    perf_event: String,
    /// How `perf record` unwinds stacks: `fp` (as `-g`; cheap, but release builds keep no frame
    /// pointers, so callers are often missing) or `dwarf` (full stacks, larger files).
    #[arg(long, default_value = "fp")]
    perf_call_graph: String,
    /// The `signin-export` binary to measure (default: this checkout's release build).
    #[arg(long)]
    exe: Option<PathBuf>,
    /// Another `signin-export` binary (e.g. a build of the previous commit) to run first on the
    /// same data: its figures go under `baseline`, with ratios to this build's.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// `--deadline` of the Rust exporter's run, seconds (default none: it reads everything).
    #[arg(long)]
    deadline: Option<u64>,
    /// Runs of the Rust exporter one after the other on the same destination (with a deadline:
    /// rows committed per run, until the export has caught up); figures of each under `per_run`.
    #[arg(long, default_value_t = 1)]
    runs: u32,
    /// With `--baseline`: after the runs above, N more pairs (the baseline, then this build),
    /// each on a fresh destination, for a before/after CPU figure that one noisy run cannot give;
    /// their CPU and wall times and the medians' ratios go under `ab`.
    #[arg(long, default_value_t = 0)]
    ab: u32,
    /// A steady-state timer run: the first run exports the tenant up to this many minutes before
    /// its end, then one more run on the same destination reads those minutes (and re-reads
    /// `SIGNINS_OVERLAP` below them, as every timer run does); that run's figures go under
    /// `steady`. What a deployment's timer run costs, for the cost table in BENCHMARKS.md.
    #[arg(long)]
    steady_minutes: Option<u32>,
    /// With `--steady-minutes`: `--page-ms` and `--throttle` shape the steady run only; the first
    /// run, which only prepares the destination, reads an unthrottled Graph.
    #[arg(long)]
    steady_shaped_only: bool,
    /// Keep the output folder (printed in the JSON line) instead of deleting it.
    #[arg(long)]
    keep: bool,
    /// Added by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// What the loopback "Graph edge" in front of the fake counts.
#[derive(Default)]
struct Edge {
    requests: AtomicU64,
    throttled: AtomicU64,
    /// Times of the requests admitted inside the current window.
    window: Mutex<VecDeque<Instant>>,
    limit: Option<(usize, Duration)>,
    latency: (u64, u64),
    rng: Mutex<u64>,
    /// Off: neither throttle nor latency applies (`--steady-shaped-only`'s first run).
    shaped: std::sync::atomic::AtomicBool,
}

impl Edge {
    fn reset(&self) {
        self.requests.store(0, Ordering::SeqCst);
        self.throttled.store(0, Ordering::SeqCst);
        lock(&self.window).clear();
    }

    /// `None` when the request may pass, else the seconds until a slot frees up.
    fn admit(&self) -> Option<u64> {
        let (max, per) = self.limit.filter(|_| self.shaped.load(Ordering::SeqCst))?;
        let now = Instant::now();
        let mut window = lock(&self.window);
        while window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= per)
        {
            window.pop_front();
        }
        if window.len() < max {
            window.push_back(now);
            return None;
        }
        let oldest = window.front().copied().unwrap_or(now);
        let wait = per.saturating_sub(now.duration_since(oldest));
        Some(wait.as_secs_f64().ceil().max(1.0) as u64)
    }

    fn latency(&self) -> Duration {
        let (low, high) = self.latency;
        if !self.shaped.load(Ordering::SeqCst) {
            return Duration::ZERO;
        }
        if high <= low {
            return Duration::from_millis(low);
        }
        let mut state = lock(&self.rng);
        // xorshift: deterministic and good enough to spread latencies.
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        Duration::from_millis(low + *state % (high - low + 1))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Throttle and latency in front of the fake's sign-in route, as Graph's edge would apply them.
async fn edge(edge: Arc<Edge>, request: Request, next: Next) -> Response {
    if !request.uri().path().ends_with("/auditLogs/signIns") {
        return next.run(request).await;
    }
    edge.requests.fetch_add(1, Ordering::SeqCst);
    if let Some(retry_after) = edge.admit() {
        edge.throttled.fetch_add(1, Ordering::SeqCst);
        let body = json!({"error": {"code": "TooManyRequests", "message": "Too many requests."}});
        let mut response = (StatusCode::TOO_MANY_REQUESTS, body.to_string()).into_response();
        if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
            response.headers_mut().insert("retry-after", v);
        }
        return response;
    }
    tokio::time::sleep(edge.latency()).await;
    next.run(request).await
}

/// One exporter run.
struct Run {
    rows: u64,
    /// Requests the exporter's own summary counts.
    exporter_requests: Value,
    /// From the run summary (the `Sink` counters): null for exporters that do not report them.
    storage_requests: Value,
    bytes_copied: Value,
    /// Sign-in requests the edge saw, and how many of them it answered with 429.
    requests: u64,
    throttled: u64,
    usage: Usage,
    /// The exporter's JSON summary.
    summary: Value,
}

fn parse_latency(text: &str) -> Result<(u64, u64), String> {
    let bad = || format!("--page-ms: expected N or LOW-HIGH, got {text:?}");
    match text.split_once('-') {
        Some((low, high)) => Ok((
            low.trim().parse().map_err(|_| bad())?,
            high.trim().parse().map_err(|_| bad())?,
        )),
        None => {
            let n = text.trim().parse().map_err(|_| bad())?;
            Ok((n, n))
        }
    }
}

fn parse_throttle(text: &str) -> Result<Option<(usize, Duration)>, String> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    let bad = || format!("--throttle: expected REQUESTS/SECONDS, got {text:?}");
    let (n, secs) = text.split_once('/').ok_or_else(bad)?;
    let n: usize = n.trim().parse().map_err(|_| bad())?;
    let secs: f64 = secs.trim().parse().map_err(|_| bad())?;
    if n == 0 || secs <= 0.0 {
        return Err(bad());
    }
    Ok(Some((n, Duration::from_secs_f64(secs))))
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// Lower bound on the wall time of `requests` sign-in requests under the throttle: the last one
/// cannot be admitted before `floor((requests - 1) / max)` whole windows have passed, and its page
/// still takes the mean latency.
fn throttle_bound(
    requests: u64,
    limit: Option<(usize, Duration)>,
    latency: (u64, u64),
) -> Option<f64> {
    let (max, per) = limit?;
    let windows = requests.saturating_sub(1) / max as u64;
    let mean_latency = (latency.0 + latency.1) as f64 / 2000.0;
    Some(windows as f64 * per.as_secs_f64() + mean_latency)
}

fn main() {
    let args = Args::parse();
    if let Err(e) = bench(args) {
        eprintln!("e2e bench failed: {e}");
        std::process::exit(1);
    }
}

fn bench(args: Args) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let latency = parse_latency(&args.page_ms)?;
    let limit = parse_throttle(&args.throttle)?;
    let rate = match limit {
        Some((requests, per)) => format!("{requests}/{}s", per.as_secs().max(1)),
        None => "10000/1s".to_string(),
    };
    let timeout = Duration::from_secs(args.timeout);

    // The tenant: ~5.5 sign-ins per user and day, the first `rows` generated; whole hours so a slice
    // plan does not depend on the second the bench starts.
    let now = OffsetDateTime::now_utc();
    let end = now
        .replace_minute(0)
        .and_then(|t| t.replace_second(0))
        .and_then(|t| t.replace_nanosecond(0))
        .map_err(|e| e.to_string())?;
    let users = (args.rows as f64 / (f64::from(args.days) * 5.5))
        .ceil()
        .max(1.0) as usize;
    // Streamed into the fake, which keeps each record as compact text: a million full beta
    // records as `Value`s would take ~34 GB.
    let fake = FakeGraph::new(
        signins(&TenantSpec {
            users,
            days: args.days,
            seed: 7,
            end,
        })
        .take(args.rows),
    );
    let generated = fake.signin_count();
    let since = end - time::Duration::days(i64::from(args.days)) - time::Duration::hours(1);
    let until = end + time::Duration::seconds(1);
    let edge_state = Arc::new(Edge {
        limit,
        latency,
        rng: Mutex::new(0x9E37_79B9_7F4A_7C15),
        shaped: (!(args.steady_shaped_only && args.steady_minutes.is_some())).into(),
        ..Edge::default()
    });
    let addr = runtime.block_on(async {
        let router = fake.router().layer(axum::middleware::from_fn({
            let edge_state = Arc::clone(&edge_state);
            move |request: Request, next: Next| edge(Arc::clone(&edge_state), request, next)
        }));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok::<_, String>(addr)
    })?;
    let graph = format!("http://{addr}");

    // Destination.
    let work = tempfile::Builder::new()
        .prefix("signin-bench-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let mut azurite_guard = None;
    let (rust_dest, python_dest) = match args.dest.as_str() {
        "folder" => (
            work.path().join("rust").display().to_string(),
            work.path().join("python").display().to_string(),
        ),
        "azurite" => {
            let az = runtime.block_on(azurite::Azurite::start_http());
            let sas = az.account_sas("racwdl");
            let rust = format!("{}?{sas}", az.container_url("rust"));
            let python = format!("{}?{sas}", az.container_url("python"));
            azurite_guard = Some(az);
            (rust, python)
        }
        other => return Err(format!("--dest: folder or azurite, got {other:?}")),
    };

    // The Rust exporter: the release binary, configured only through its environment.
    let exe = args
        .exe
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_signin-export")));
    // The end of the window a run reads (`--steady-minutes` moves it for the first run).
    let run_until = std::cell::Cell::new(match args.steady_minutes {
        Some(minutes) => until - time::Duration::minutes(i64::from(minutes)),
        None => until,
    });
    let exporter = |exe: &Path, dest: &str, perf: Option<&Path>| -> Result<Run, String> {
        let mut command = match perf {
            Some(out) => {
                let mut c = Command::new("perf");
                c.args(["record", "--call-graph", &args.perf_call_graph])
                    .args(["-e", &args.perf_event, "-o"])
                    .arg(out)
                    .arg("--")
                    .arg(exe);
                c
            }
            None => Command::new(exe),
        };
        command.args([
            "run",
            "--since",
            &rfc3339(since),
            "--until",
            &rfc3339(run_until.get()),
        ]);
        if let Some(deadline) = args.deadline {
            command.args(["--deadline", &format!("{deadline}s")]);
        }
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("SIGNINS_GRAPH_ENDPOINT", &graph)
            .env("SIGNINS_GRAPH_VERSION", &args.version)
            .env("SIGNINS_AUTH", "managed-identity")
            .env("IDENTITY_ENDPOINT", format!("{graph}/msi/token"))
            .env("IDENTITY_HEADER", fake.managed_identity_header())
            .env("SIGNINS_PRESET", "all")
            // The tenant ends at the top of the hour: with the default 15-minute settle window a
            // run in the first quarter of an hour would hold back the last sign-ins, which the
            // Python exporter (and the baseline, run minutes earlier) may not.
            .env("SIGNINS_SETTLE", "0s")
            .env("SIGNINS_DESTINATION", dest)
            // The settings' bounds: a run deadline of at most 28m, a retry budget within it.
            .env(
                "SIGNINS_RETRY_BUDGET",
                format!("{}s", args.timeout.clamp(1, 1680)),
            )
            // Paced to the edge's throttle, as a deployment is to Graph's; unthrottled, unpaced.
            .env(
                "SIGNINS_GRAPH_RATE",
                if edge_state.shaped.load(Ordering::SeqCst) {
                    rate.as_str()
                } else {
                    "10000/1s"
                },
            )
            .env(
                "SIGNINS_RUN_DEADLINE",
                format!("{}s", args.timeout.clamp(1, 1680)),
            )
            .env("RUST_LOG", "warn");
        if args.version == "beta" {
            command.env("SIGNINS_EVENT_TYPES", "interactiveUser,nonInteractiveUser");
        }
        if let Some(columns) = &args.columns {
            command.env("SIGNINS_COLUMNS", columns);
        }
        edge_state.reset();
        let usage = run_child(command, timeout)?;
        let summary: Value = usage
            .summary()
            .ok_or_else(|| format!("no JSON summary from the exporter: {}", usage.stdout))?;
        Ok(Run {
            rows: summary["rows"].as_u64().unwrap_or(0),
            exporter_requests: summary["requests"].clone(),
            summary: summary.clone(),
            storage_requests: summary["storageRequests"].clone(),
            bytes_copied: summary["bytesCopied"].clone(),
            requests: edge_state.requests.load(Ordering::SeqCst),
            throttled: edge_state.throttled.load(Ordering::SeqCst),
            usage,
        })
    };
    // A destination of its own for each extra run.
    let fresh_dest = |name: &str| match &azurite_guard {
        Some(az) => format!("{}?{}", az.container_url(name), az.account_sas("racwdl")),
        None => work.path().join(name).display().to_string(),
    };
    let baseline = match &args.baseline {
        None => Value::Null,
        Some(exe) => {
            let run = exporter(exe, &fresh_dest("baseline"), None)?;
            json!({
                "rows": run.rows,
                "wall_s": round(run.usage.wall.as_secs_f64()),
                "cpu_s": round(run.usage.cpu.as_secs_f64()),
                "peak_rss_mib": round(run.usage.max_rss_kib as f64 / 1024.0),
                "graph_requests": run.requests,
                "http_429": run.throttled,
            })
        }
    };
    let run = exporter(&exe, &rust_dest, args.perf.as_deref())?;
    // Later runs on the same destination: what each commits, until nothing remains.
    let mut per_run = vec![per_run_figures(&run)];
    while per_run.len() < args.runs as usize && !run_caught_up(&per_run) {
        let next = exporter(&exe, &rust_dest, None)?;
        per_run.push(per_run_figures(&next));
    }
    let steady = match args.steady_minutes {
        None => Value::Null,
        Some(minutes) => {
            run_until.set(until);
            edge_state.shaped.store(true, Ordering::SeqCst);
            let next = exporter(&exe, &rust_dest, None)?;
            // Rows Graph sent: the new ones and the re-read ones the run found already written.
            let graph_rows = next.rows + next.summary["duplicatesSkipped"].as_u64().unwrap_or(0);
            let pages_bound = throttle_bound(graph_rows.div_ceil(1000), limit, latency);
            json!({
                "minutes": minutes,
                "graph_rows": graph_rows,
                "pages_bound_s": pages_bound.map(round),
                "rows": next.rows,
                "duplicates_skipped": next.summary["duplicatesSkipped"],
                "graph_requests": next.requests,
                "completeness_checks": next.summary["completenessChecks"],
                "slices": next.summary["slicesDone"],
                "files": next.summary["files"],
                "storage_requests": next.storage_requests,
                "bytes_copied": next.bytes_copied,
                "wall_s": round(next.usage.wall.as_secs_f64()),
                "cpu_s": round(next.usage.cpu.as_secs_f64()),
                "peak_rss_mib": round(next.usage.max_rss_kib as f64 / 1024.0),
            })
        }
    };
    let usage = &run.usage;
    let (rows, requests, throttled) = (run.rows, run.requests, run.throttled);
    let wall = usage.wall.as_secs_f64();
    let bound = throttle_bound(requests - throttled, limit, latency);
    // Issue 17's bound: the time for ceil(rows / 1000) full pages at the throttle — every request
    // that is not a full page (a partial page, a completeness check, a retry) counts against it.
    let pages_bound = throttle_bound(rows.div_ceil(1000), limit, latency);
    let baseline = match baseline {
        Value::Null => Value::Null,
        mut b => {
            let ratio = |b: &Value, key: &str, ours: f64| {
                b[key].as_f64().map(|v| round(v / ours.max(1e-9)))
            };
            let cpu = ratio(&b, "cpu_s", usage.cpu.as_secs_f64());
            let wall_ratio = ratio(&b, "wall_s", wall);
            let rss = ratio(&b, "peak_rss_mib", usage.max_rss_kib as f64 / 1024.0);
            b["cpu_ratio"] = json!(cpu);
            b["wall_ratio"] = json!(wall_ratio);
            b["rss_ratio"] = json!(rss);
            b
        }
    };

    // The Python exporter on the same tenant, same window, same columns.
    let python = match &args.python {
        None => Value::Null,
        Some(interpreter) => {
            let script =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bench/python_exporter.py");
            let mut filter = format!(
                "createdDateTime ge {} and createdDateTime le {}",
                rfc3339(since),
                rfc3339(until)
            );
            if args.version == "beta" {
                filter.push_str(
                    " and signInEventTypes/any(t: t eq 'interactiveUser' or t eq 'nonInteractiveUser')",
                );
            }
            let mut py = Command::new(interpreter);
            py.arg(&script)
                .args([
                    "--graph",
                    &graph,
                    "--version",
                    &args.version,
                    "--filter",
                    &filter,
                ])
                .args(["--destination", &python_dest])
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("IDENTITY_ENDPOINT", format!("{graph}/msi/token"))
                .env("IDENTITY_HEADER", fake.managed_identity_header());
            edge_state.reset();
            let py_usage = run_child(py, timeout)?;
            let py_summary: Value = py_usage.summary().unwrap_or(Value::Null);
            // The same daily files, or the comparison would not be of the same work.
            let (ours, theirs) = match &azurite_guard {
                Some(az) => (
                    Written::Blob(az.container_url("rust"), "all/", az.account_sas("racwdl")),
                    Written::Blob(az.container_url("python"), "", az.account_sas("racwdl")),
                ),
                None => (
                    Written::Folder(work.path().join("rust").join("all")),
                    Written::Folder(work.path().join("python")),
                ),
            };
            let days = days_between(since.date(), until.date());
            let daily_files = runtime.block_on(compare_daily(&ours, &theirs, &days));
            json!({
                "rows": py_summary["rows"],
                "daily_files": daily_files,
                "wall_s": round(py_usage.wall.as_secs_f64()),
                "cpu_s": round(py_usage.cpu.as_secs_f64()),
                "peak_rss_mib": round(py_usage.max_rss_kib as f64 / 1024.0),
                "graph_requests": edge_state.requests.load(Ordering::SeqCst),
                "http_429": edge_state.throttled.load(Ordering::SeqCst),
                "cpu_ratio": round(py_usage.cpu.as_secs_f64() / usage.cpu.as_secs_f64().max(1e-9)),
                "wall_ratio": round(py_usage.wall.as_secs_f64() / wall.max(1e-9)),
            })
        }
    };

    // Before/after pairs, alternating so that the machine's load falls on both alike.
    let ab = match (&args.baseline, args.ab) {
        (Some(before), n) if n > 0 => {
            let (mut theirs, mut ours) = (Vec::new(), Vec::new());
            for i in 0..n {
                let b = exporter(before, &fresh_dest(&format!("ab-baseline-{i}")), None)?;
                let a = exporter(&exe, &fresh_dest(&format!("ab-{i}")), None)?;
                if a.rows != b.rows {
                    return Err(format!(
                        "--ab: {} rows against the baseline's {}",
                        a.rows, b.rows
                    ));
                }
                theirs.push(b.usage);
                ours.push(a.usage);
            }
            let cpu = |runs: &[Usage]| median(runs.iter().map(|u| u.cpu.as_secs_f64()).collect());
            let wall = |runs: &[Usage]| median(runs.iter().map(|u| u.wall.as_secs_f64()).collect());
            let list = |runs: &[Usage], f: fn(&Usage) -> Duration| {
                runs.iter()
                    .map(|u| round(f(u).as_secs_f64()))
                    .collect::<Vec<_>>()
            };
            json!({
                "pairs": n,
                "baseline_cpu_s": list(&theirs, |u| u.cpu),
                "cpu_s": list(&ours, |u| u.cpu),
                "baseline_wall_s": list(&theirs, |u| u.wall),
                "wall_s": list(&ours, |u| u.wall),
                "median_cpu_ratio": round(cpu(&theirs) / cpu(&ours).max(1e-9)),
                "median_wall_ratio": round(wall(&theirs) / wall(&ours).max(1e-9)),
            })
        }
        _ => Value::Null,
    };

    let line = json!({
        "bench": "e2e",
        "dest": args.dest,
        "version": args.version,
        "generated": generated,
        "rows": rows,
        "wall_s": round(wall),
        "cpu_s": round(usage.cpu.as_secs_f64()),
        "rows_per_s": round(rows as f64 / wall.max(1e-9)),
        "cpu_us_per_row": if rows > 0 { Value::from(round(usage.cpu.as_secs_f64() * 1e6 / rows as f64)) } else { Value::Null },
        "graph_requests": requests,
        "graph_requests_by_exporter": run.exporter_requests,
        "rows_per_request": round(rows as f64 / (requests.max(1)) as f64),
        "http_429": throttled,
        "page_ms": [latency.0, latency.1],
        "throttle": args.throttle,
        "throttle_bound_s": bound.map(round),
        "fraction_of_bound": bound.map(|b| round(b / wall.max(1e-9))),
        "pages_bound_s": pages_bound.map(round),
        "fraction_of_pages_bound": pages_bound.map(|b| round(b / wall.max(1e-9))),
        "chains": run.summary["chains"],
        "peak_rss_mib": round(usage.max_rss_kib as f64 / 1024.0),
        "storage_requests": run.storage_requests,
        "bytes_copied": run.bytes_copied,
        "per_run": if args.runs > 1 { Value::from(per_run) } else { Value::Null },
        "baseline": baseline,
        "ab": ab,
        "steady": steady,
        "python": python,
        "output": if args.keep { Value::from(work.path().display().to_string()) } else { Value::Null },
    });
    println!("{line}");
    if args.keep {
        let _ = work.keep();
    }
    drop(azurite_guard);
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

/// Where an exporter wrote its daily files: a folder, or a container (URL, blob name prefix, SAS).
enum Written {
    Folder(PathBuf),
    Blob(url::Url, &'static str, String),
}

impl Written {
    /// The daily file of `day`, `None` when there is none.
    async fn daily(&self, day: time::Date) -> Result<Option<Vec<u8>>, String> {
        let name = format!("daily/{day}.csv");
        match self {
            Written::Folder(base) => match std::fs::read(base.join(&name)) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(format!("{name}: {e}")),
            },
            Written::Blob(container, prefix, sas) => {
                let url = format!("{container}/{prefix}{name}?{sas}");
                let response = reqwest::get(&url)
                    .await
                    .map_err(|e| format!("{name}: {e}"))?;
                if response.status() == reqwest::StatusCode::NOT_FOUND {
                    return Ok(None);
                }
                let response = response
                    .error_for_status()
                    .map_err(|e| format!("{name}: {e}"))?;
                let bytes = response.bytes().await.map_err(|e| format!("{name}: {e}"))?;
                Ok(Some(bytes.to_vec()))
            }
        }
    }
}

/// Every UTC day from `first` to `last`, both included.
fn days_between(first: time::Date, last: time::Date) -> Vec<time::Date> {
    std::iter::successors(Some(first), |d| d.next_day())
        .take_while(|d| *d <= last)
        .collect()
}

/// `"identical"` when both exporters wrote the same daily files byte for byte (and at least one),
/// else what differs first.
async fn compare_daily(ours: &Written, theirs: &Written, days: &[time::Date]) -> String {
    let mut files = 0;
    for &day in days {
        match (ours.daily(day).await, theirs.daily(day).await) {
            (Ok(a), Ok(b)) if a == b => files += usize::from(a.is_some()),
            (Ok(a), Ok(b)) => {
                return format!(
                    "daily/{day}.csv differs ({} vs {} bytes)",
                    a.map_or(0, |a| a.len()),
                    b.map_or(0, |b| b.len())
                )
            }
            (Err(e), _) | (_, Err(e)) => return format!("not compared: {e}"),
        }
    }
    if files == 0 {
        "no daily files".to_string()
    } else {
        "identical".to_string()
    }
}

/// One run's figures for `per_run`: what it committed and what it says remains.
fn per_run_figures(run: &Run) -> Value {
    json!({
        "outcome": run.summary["outcome"],
        "rows": run.rows,
        "wall_s": round(run.usage.wall.as_secs_f64()),
        "graph_requests": run.requests,
        "http_429": run.throttled,
        "remaining_estimated_rows": run.summary["remaining"]["estimatedRows"],
        "stalled_runs": run.summary["stalledRuns"],
    })
}

/// Whether the last run left nothing to read.
fn run_caught_up(per_run: &[Value]) -> bool {
    per_run.last().is_some_and(|last| {
        last["remaining_estimated_rows"].is_null() && last["outcome"] == "completed"
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
