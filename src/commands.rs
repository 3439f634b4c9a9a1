//! What each CLI command does: `run`, `demo`, `check` (and `serve`, delegated to the handler).
//! Every command returns a [`CommandError`] that `main` maps to an exit code.

use std::io::IsTerminal;
use std::sync::Arc;

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, Command, CommonArgs, DemoArgs, RunArgs};
use crate::config::{ConfigError, Overrides, Settings};
use crate::graph::auth::TokenProvider;
use crate::graph::client::{GraphClient, GraphStats};
use crate::pipeline::{self, Deps, Observer, RunOutcome, RunRequest, RunSummary};
use crate::sink::local::LocalSink;

/// Why a command failed; decides the exit code.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// Exit code 2: fix the settings or flags.
    #[error("configuration error: {0}")]
    Config(String),
    /// Exit code 1: the run failed (nothing partial was committed).
    #[error("{0}")]
    Failed(String),
}

impl CommandError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CommandError::Config(_) => 2,
            CommandError::Failed(_) => 1,
        }
    }
}

impl From<ConfigError> for CommandError {
    fn from(e: ConfigError) -> Self {
        CommandError::Config(e.to_string())
    }
}

/// Runs the parsed command line.
pub async fn dispatch(cli: Cli) -> Result<(), CommandError> {
    match cli.command {
        Command::Run(args) => run(args).await,
        Command::Demo(args) => demo(args).await,
        Command::Check(args) => check(args).await,
        Command::Serve => crate::handler::serve()
            .await
            .map_err(|e| CommandError::Failed(e.to_string())),
    }
}

fn load_settings(common: &CommonArgs, lookback: Option<String>) -> Result<Settings, CommandError> {
    let mut overrides = Overrides::default();
    overrides
        .set("SIGNINS_PRESET", common.preset.clone())
        .set("SIGNINS_DESTINATION", common.destination.clone())
        .set("SIGNINS_LOOKBACK", lookback);
    Ok(Settings::from_env_with(&overrides)?)
}

fn cancel_on_ctrl_c() -> CancellationToken {
    let cancel = CancellationToken::new();
    let token = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::warn!("interrupted: stopping at the next safe point");
            token.cancel();
        }
    });
    cancel
}

fn holder(what: &str) -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
    format!("{what} on {host} pid {}", std::process::id())
}

async fn run(args: RunArgs) -> Result<(), CommandError> {
    let settings = load_settings(&args.common, args.lookback.clone())?;
    let window = pipeline::parse_window(
        args.since.as_deref(),
        args.until.as_deref(),
        OffsetDateTime::now_utc(),
    )
    .map_err(|e| CommandError::Config(format!("--{}: {}", e.parameter, e.message)))?;
    let mut deps =
        Deps::from_settings(&settings).map_err(|e| CommandError::Config(e.to_string()))?;
    let progress = Progress::new();
    deps.observer = progress.clone().map(|p| p as Arc<dyn Observer>);
    let request = RunRequest {
        since: window.since,
        until: window.until,
        deadline: None,
        dry_run: args.dry_run,
        holder: holder("signin-export run"),
    };
    let outcome = pipeline::run_with(&settings, &deps, request, cancel_on_ctrl_c()).await;
    if let Some(progress) = progress {
        progress.finish();
    }
    report(outcome)
}

/// Prints the one-line JSON summary on stdout.
fn report(outcome: Result<RunOutcome, pipeline::PipelineError>) -> Result<(), CommandError> {
    match outcome {
        Ok(RunOutcome::Completed(summary)) | Ok(RunOutcome::DeadlineReached(summary)) => {
            print_summary(&summary);
            Ok(())
        }
        Ok(RunOutcome::Busy(holder)) => Err(CommandError::Failed(format!(
            "another export is already running ({}{}); try again when it has finished",
            holder.holder,
            holder
                .since
                .map(|s| format!(", since {s}"))
                .unwrap_or_default()
        ))),
        Err(e) => Err(CommandError::Failed(format!(
            "export failed, nothing partial was committed: {e}"
        ))),
    }
}

fn print_summary(summary: &RunSummary) {
    match serde_json::to_string(summary) {
        Ok(line) => println!("{line}"),
        Err(e) => tracing::error!(error = %e, "could not print the summary"),
    }
}

/// The progress bar shown on a terminal; `None` when stderr is not one (plain log lines then).
struct Progress {
    bar: indicatif::ProgressBar,
    /// Sign-ins read from Graph so far (before filtering and dedup).
    read: std::sync::atomic::AtomicU64,
}

impl Progress {
    fn new() -> Option<Arc<Progress>> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {elapsed} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        Some(Arc::new(Progress {
            bar,
            read: std::sync::atomic::AtomicU64::new(0),
        }))
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Observer for Progress {
    fn page(&self, rows_in_page: usize, stats: &GraphStats) {
        use std::sync::atomic::Ordering;
        let read =
            self.read.fetch_add(rows_in_page as u64, Ordering::Relaxed) + rows_in_page as u64;
        let secs = self.bar.elapsed().as_secs_f64().max(0.001);
        self.bar.set_message(format!(
            "{read} sign-ins read ({:.0}/s), {} pages, {} requests, {} retries",
            read as f64 / secs,
            stats.pages,
            stats.requests,
            stats.retries
        ));
    }

    fn slice_done(&self, done: u32, total: u32, rows: u64) {
        self.bar.println(format!(
            "slice {done}/{total} committed, {rows} rows so far"
        ));
    }
}

async fn demo(args: DemoArgs) -> Result<(), CommandError> {
    use crate::demo::fake_graph::FakeGraph;
    use crate::demo::tenant::{generate, TenantSpec};

    let now = OffsetDateTime::now_utc();
    // Whole hours: repeating the demo within the hour serves the same tenant, so the second run
    // shows the exactly-once behaviour (nothing new to write).
    let end = now
        .replace_minute(0)
        .and_then(|t| t.replace_second(0))
        .and_then(|t| t.replace_nanosecond(0))
        .unwrap_or(now);
    let signins = generate(&TenantSpec {
        users: args.users,
        days: args.days,
        seed: args.seed,
        end,
    });
    let total = signins.len();
    let fake = FakeGraph::new(signins);
    let addr = fake
        .spawn()
        .await
        .map_err(|e| CommandError::Failed(format!("could not start the simulated tenant: {e}")))?;

    // The demo reads nothing from the environment: it must behave the same on every machine.
    let mut overrides = Overrides::default();
    overrides
        .set("SIGNINS_GRAPH_ENDPOINT", Some(format!("http://{addr}")))
        .set("SIGNINS_GRAPH_VERSION", Some("beta".into()))
        .set(
            "SIGNINS_EVENT_TYPES",
            Some("interactiveUser,nonInteractiveUser".into()),
        )
        .set("SIGNINS_PRESET", Some(args.preset.clone()))
        .set("SIGNINS_DESTINATION", Some(args.out.display().to_string()))
        .set("SIGNINS_LOOKBACK", Some(format!("{}d", args.days)))
        .set("SIGNINS_AUTH", Some("managed-identity".into()));
    let settings = Settings::load(&overrides, |_| None)?;
    let tokens = TokenProvider::fixed(crate::config::Secret::new(
        fake.mint_token("https://graph.microsoft.com"),
    ));
    let graph = GraphClient::new(&settings.graph, tokens)
        .map_err(|e| CommandError::Failed(e.to_string()))?;
    let base = args.out.join(settings.preset.as_str());
    let progress = Progress::new();
    let deps = Deps {
        graph,
        sink: Arc::new(LocalSink::new(&base)),
        observer: progress.clone().map(|p| p as Arc<dyn Observer>),
    };
    eprintln!(
        "Simulated tenant: {} users, {total} sign-ins over {} days, Graph on http://{addr}",
        args.users, args.days
    );
    let request = RunRequest {
        holder: holder("signin-export demo"),
        ..RunRequest::default()
    };
    let outcome = pipeline::run_with(&settings, &deps, request, cancel_on_ctrl_c()).await;
    if let Some(progress) = progress {
        progress.finish();
    }
    report(outcome)?;
    eprintln!(
        "Report: {}\nDaily files: {}\nOpen latest.csv in Power BI Desktop (Get data → Text/CSV) or Excel.",
        base.join(crate::sink::LATEST_FILE).display(),
        base.join("daily").display()
    );
    Ok(())
}

async fn check(args: CommonArgs) -> Result<(), CommandError> {
    let settings = load_settings(&args, None)?;
    println!("Settings:");
    for (name, value) in settings.describe() {
        println!("  {name} = {value}");
    }
    let mut failures = 0;
    let mut step = |name: &str, result: Result<String, String>| match result {
        Ok(detail) => println!("[ ok ] {name}: {detail}"),
        Err(explanation) => {
            failures += 1;
            println!("[FAIL] {name}: {explanation}");
        }
    };

    let tokens = match TokenProvider::new(&settings.graph.auth) {
        Ok(tokens) => tokens,
        Err(e) => {
            step("credential", Err(e.to_string()));
            return Err(CommandError::Failed("check failed".into()));
        }
    };
    let token = tokens.token().await;
    step(
        "Graph token",
        token
            .as_ref()
            .map(|_| "acquired".to_string())
            .map_err(|e| e.to_string()),
    );
    if let Ok(token) = &token {
        if let Some(warning) = policy_columns_warning(&settings.columns, token.expose()) {
            println!("[warn] Conditional Access columns: {warning}");
        }
    }
    match GraphClient::new(&settings.graph, tokens.clone()) {
        Ok(graph) => step(
            "Graph sign-in logs",
            graph
                .probe()
                .await
                .map(|rows| format!("readable ({rows} row returned for $top=1)"))
                .map_err(|e| e.to_string()),
        ),
        Err(e) => step("Graph sign-in logs", Err(e.to_string())),
    }
    match crate::sink::open(&settings.destination, settings.preset, &tokens) {
        Ok(sink) => step(
            "destination",
            sink.probe()
                .await
                .map(|()| format!("{} is writable", sink.describe()))
                .map_err(|e| e.to_string()),
        ),
        Err(e) => step("destination", Err(e.to_string())),
    }
    if failures > 0 {
        return Err(CommandError::Failed(format!(
            "{failures} check(s) failed; see above"
        )));
    }
    Ok(())
}

/// Graph returns `appliedConditionalAccessPolicies` only to callers that may read Conditional
/// Access data (<https://learn.microsoft.com/graph/api/resources/appliedconditionalaccesspolicy>):
/// a warning when such a column is chosen and the token's `roles` grant neither
/// `Policy.Read.All` nor `Policy.Read.ConditionalAccess`. `None` when no such column is chosen
/// or the permission is there. A token whose claims cannot be read (not a JWT) gets the warning
/// too, worded as a possibility.
fn policy_columns_warning(
    columns: &crate::transform::flatten::Columns,
    token: &str,
) -> Option<String> {
    let chosen = columns.needing_policy_permission();
    if chosen.is_empty() {
        return None;
    }
    const GRANTING: [&str; 2] = ["Policy.Read.All", "Policy.Read.ConditionalAccess"];
    let roles = token_roles(token);
    if roles
        .as_ref()
        .is_some_and(|roles| roles.iter().any(|r| GRANTING.contains(&r.as_str())))
    {
        return None;
    }
    let why = if roles.is_some() {
        "the token's roles include neither Policy.Read.All nor Policy.Read.ConditionalAccess"
    } else {
        "the token's roles could not be read, so Policy.Read.All / Policy.Read.ConditionalAccess may be missing"
    };
    Some(format!(
        "{why}; Graph then omits the applied policies and {} will be empty. Grant the identity \
         Policy.Read.All (or Policy.Read.ConditionalAccess) with admin consent, or drop the column(s)",
        chosen.join(", ")
    ))
}

/// The `roles` claim of a JWT access token, read without verifying it (only to explain what the
/// token grants; Graph does the verifying). `None` if the token is not a readable JWT.
fn token_roles(token: &str) -> Option<Vec<String>> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    Some(match claims.get("roles") {
        Some(serde_json::Value::Array(roles)) => roles
            .iter()
            .filter_map(|r| r.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::flatten::Columns;
    use base64::Engine as _;

    fn jwt(claims: serde_json::Value) -> String {
        let enc = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        format!(
            "{}.{}.sig",
            enc(br#"{"alg":"RS256"}"#),
            enc(claims.to_string().as_bytes())
        )
    }

    #[test]
    fn policy_columns_warn_without_a_policy_permission() {
        let ca = Columns::parse("id,conditionalAccessPoliciesApplied").unwrap();
        let plain = Columns::default_set();
        let without =
            jwt(serde_json::json!({"roles": ["AuditLog.Read.All", "Directory.Read.All"]}));
        let with_all = jwt(serde_json::json!({"roles": ["AuditLog.Read.All", "Policy.Read.All"]}));
        let with_ca = jwt(serde_json::json!({"roles": ["Policy.Read.ConditionalAccess"]}));

        let warning = policy_columns_warning(&ca, &without).unwrap();
        assert!(
            warning.contains("conditionalAccessPoliciesApplied"),
            "{warning}"
        );
        assert!(warning.contains("Policy.Read.All"), "{warning}");
        assert_eq!(policy_columns_warning(&ca, &with_all), None);
        assert_eq!(policy_columns_warning(&ca, &with_ca), None);
        assert_eq!(policy_columns_warning(&plain, &without), None);
        // Opaque tokens: warned, never a panic.
        assert!(policy_columns_warning(&ca, "opaque")
            .unwrap()
            .contains("could not be read"));
        assert!(policy_columns_warning(&ca, "a.%%%.c").is_some());
        assert_eq!(token_roles(&jwt(serde_json::json!({}))), Some(vec![]));
    }
}
