//! The command-line shell: what each command does — `run` here, [`demo`], [`check`] (and `serve`,
//! delegated to the handler). Every command returns a [`CommandError`] that `main` maps to an
//! exit code; run outcomes are presented by [`crate::run::report`], like the handler's.

mod check;
mod demo;
mod progress;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, Command, CommonArgs, RunArgs};
use crate::config::{ConfigError, Overrides, Settings};
use crate::run::{
    self, Deps, Observer, Report, RunError, RunOutcome, RunRequest, RunSummary, Trigger,
};
use check::check;
use demo::demo;
use progress::Progress;

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
    let window = run::parse_window(
        args.since.as_deref(),
        args.until.as_deref(),
        run::Clock::from_env().now(),
    )
    .map_err(|e| CommandError::Config(format!("--{}: {}", e.parameter, e.message)))?;
    let deadline = args
        .deadline
        .as_deref()
        .map(crate::config::parse_duration)
        .transpose()
        .map_err(|e| CommandError::Config(format!("--deadline: {e}")))?
        .filter(|d| !d.is_zero());
    let mut deps =
        Deps::from_settings(&settings).map_err(|e| CommandError::Config(e.to_string()))?;
    let progress = Progress::new();
    deps.observer = progress.clone().map(|p| p as Arc<dyn Observer>);
    let request = RunRequest {
        since: window.since,
        until: window.until,
        deadline,
        dry_run: args.dry_run,
        holder: holder("signin-export run"),
    };
    let started = std::time::Instant::now();
    let outcome = run::run_with(&settings, &deps, request, cancel_on_ctrl_c()).await;
    if let Some(progress) = progress {
        progress.finish();
    }
    report(outcome, deadline, started)
}

/// Presents the outcome: the JSON summary on stdout, the line on stderr, the exit code.
fn report(
    outcome: Result<RunOutcome, RunError>,
    deadline: Option<std::time::Duration>,
    started: std::time::Instant,
) -> Result<(), CommandError> {
    let report = Report::new(Trigger::Cli, &outcome, deadline, started.elapsed());
    report.log_event();
    if let Some(summary) = &report.summary {
        print_summary(summary);
    }
    match report.exit_code() {
        0 => Ok(()),
        2 => Err(CommandError::Config(report.line)),
        _ => Err(CommandError::Failed(report.line)),
    }
}

fn print_summary(summary: &RunSummary) {
    match serde_json::to_string(summary) {
        Ok(line) => println!("{line}"),
        Err(e) => tracing::error!(error = %e, "could not print the summary"),
    }
}
