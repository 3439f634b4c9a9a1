//! Logging setup: one subscriber, two shapes.
//!
//! * CLI: human-readable lines on stderr (stdout carries only the JSON summary), `RUST_LOG` or
//!   `info` by default — `warn` on a terminal, where the progress bar shows the progress and log
//!   lines would tear it.
//! * `serve` (the Functions host reads our output): one event per line, no colours, no timestamps
//!   (the host adds its own). The host logs every stderr line as Error, or Warning when it
//!   contains "warn", and stdout lines as Information — so errors and warnings go to stderr and
//!   everything else to stdout.

use std::io::IsTerminal;

use tracing::Level;
use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::EnvFilter;

/// Where the process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogMode {
    Cli,
    Serve,
}

/// The Azure SDK logs every request at info; keep it at warn unless asked.
const INFO: &str = "info,azure_core=warn,azure_identity=warn,azure_storage_blob=warn";

fn filter(default: &str) -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default))
}

/// Installs the global subscriber for `mode`. Safe to call more than once (later calls are no-ops).
pub fn init(mode: LogMode) {
    let builder = tracing_subscriber::fmt().with_target(false);
    let _ = match mode {
        LogMode::Cli => {
            let default = if std::io::stderr().is_terminal() {
                "warn"
            } else {
                INFO
            };
            builder
                .with_env_filter(filter(default))
                .with_writer(std::io::stderr)
                .try_init()
        }
        LogMode::Serve => builder
            .with_env_filter(filter(INFO))
            .with_ansi(false)
            .without_time()
            .with_writer(
                std::io::stderr
                    .with_max_level(Level::WARN)
                    .or_else(std::io::stdout),
            )
            .try_init(),
    };
}
