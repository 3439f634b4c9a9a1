//! `signin-export`: parse the command line, set up logging, dispatch, map the result to an exit
//! code (0 success, 1 run failure, 2 configuration error). All logic lives in the library.

use std::process::ExitCode;

use clap::Parser;
use signin_export::cli::{Cli, Command};
use signin_export::shell::dispatch;
use signin_export::telemetry::{self, LogMode};

fn main() -> ExitCode {
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
