//! `signin-export`: parse the command line, set up logging, dispatch, map the result to an exit
//! code (0 success, 1 run failure, 2 configuration error). All logic lives in the library.

use std::process::ExitCode;

use clap::Parser;
use signin_export::cli::{Cli, Command};
use signin_export::shell::dispatch;
use signin_export::telemetry::{self, LogMode};

fn main() -> ExitCode {
    release_large_buffers();
    let cli = Cli::parse();
    telemetry::init(match cli.command {
        Command::Serve => LogMode::Serve,
        _ => LogMode::Cli,
    });
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Keeps peak memory flat over long runs (issue 10; heaptrack showed the heap itself flat while
/// the resident size grew with the rows exported):
/// * CSV blocks (4 MiB and a little more) get mappings of their own, returned to the system when
///   freed — glibc's default raises that threshold after the first such free, and the blocks then
///   fragment the heap. Graph pages (~2 MB) stay below it and their buffers are reused
///   (`graph::client`): a 1 MiB threshold cost 16 % more CPU in page faults;
/// * two arenas, not glibc's eight per core: every tokio worker and blocking-pool thread would
///   otherwise get an arena of its own, each keeping its freed memory.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_large_buffers() {
    // SAFETY: mallopt only changes allocator parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_large_buffers() {}
