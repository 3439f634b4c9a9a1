//! Command-line interface: argument definitions only (clap derive); no I/O here.
//! What each command does lives in [`crate::shell`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Export Entra ID sign-in logs from Microsoft Graph to Power BI-ready CSV.
///
/// Settings come from the environment (the same names as the Function App settings, see README);
/// flags override them.
#[derive(Debug, Parser)]
#[command(name = "signin-export", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one export: from the stored watermark (or the lookback) up to now.
    Run(RunArgs),
    /// Try it with no Azure at all: a simulated tenant on loopback, exported into a local folder.
    Demo(DemoArgs),
    /// Diagnose the configuration: settings, token, Graph access, destination write access.
    Check(CommonArgs),
    /// Azure Functions custom handler: serve the host's invocations on FUNCTIONS_CUSTOMHANDLER_PORT.
    Serve,
}

/// Flags shared by `run` and `check`.
#[derive(Debug, Args, Clone, Default)]
pub struct CommonArgs {
    /// Preset (SIGNINS_PRESET): exchange-activesync, exchange, legacy-auth, all.
    #[arg(long)]
    pub preset: Option<String>,
    /// Destination (SIGNINS_DESTINATION): a folder, or a Blob container URL (optionally with a SAS).
    #[arg(long)]
    pub destination: Option<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Start of the window (RFC 3339). Earlier than what is exported already: backfills down to it.
    #[arg(long, conflicts_with = "lookback")]
    pub since: Option<String>,
    /// First-run window (SIGNINS_LOOKBACK), e.g. 24h, 7d; at most 30d.
    #[arg(long)]
    pub lookback: Option<String>,
    /// End of the window (RFC 3339); default now.
    #[arg(long)]
    pub until: Option<String>,
    /// Stop reading after this long (e.g. 10m) and commit what was read; the next run goes on.
    #[arg(long)]
    pub deadline: Option<String>,
    /// Read and count what would be exported; write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Folder to export into.
    #[arg(long, default_value = "./signins-demo")]
    pub out: PathBuf,
    /// Users in the simulated tenant.
    #[arg(long, default_value_t = 40)]
    pub users: usize,
    /// Days of sign-ins to simulate (at most 30).
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=30))]
    pub days: u32,
    /// Seed of the simulated tenant: the same seed gives the same sign-ins.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Preset to export with.
    #[arg(long, default_value = "exchange-activesync")]
    pub preset: String,
}
