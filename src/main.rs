//! `signin-export`: parse the command line, set up logging, dispatch, map the result to an exit
//! code (0 success, 1 run failure, 2 configuration error). All logic lives in the library.

use std::process::ExitCode;

use clap::Parser;
use signin_export::cli::{Cli, Command};
use signin_export::shell::dispatch;
use signin_export::telemetry::{self, LogMode};

fn main() -> ExitCode {
    back_the_heap_with_huge_pages();
    release_large_buffers();
    let cli = Cli::parse();
    telemetry::init(match cli.command {
        Command::Serve => LogMode::Serve,
        _ => LogMode::Cli,
    });
    // One thread: a run's chains are futures of this one task, so its CPU work was never
    // parallel; on a multi-thread runtime only hyper's connection tasks ran elsewhere, and
    // handing each socket read to another core and its data back cost more than it overlapped
    // (9 % less CPU per exported row on this one, same wall time; BENCHMARKS.md, session 11).
    // Files are still read and written on the blocking pool.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
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

/// glibc (2.35 and later) backs malloc's heaps and large chunks with transparent huge pages when
/// its `glibc.malloc.hugetlb=1` tunable is set: 2 MiB pages instead of 4 KiB for the records,
/// tallies and buffers the export walks, 7–9 % less CPU per exported row for ~4 MiB more peak
/// memory (BENCHMARKS.md, session 11). A tunable is read from the environment at start-up only
/// (`mallopt` has no such parameter), so the process runs itself again, once, with the tunable
/// added to `GLIBC_TUNABLES`. Left alone: a `GLIBC_TUNABLES` that names `glibc.malloc.hugetlb`
/// already (`=0` turns this off) or is not UTF-8, and a system whose transparent huge pages
/// are off or unknown. An older glibc ignores the tunable; a failed exec leaves the process
/// as it is.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn back_the_heap_with_huge_pages() {
    use std::os::unix::process::CommandExt;

    const TUNABLE: &str = "glibc.malloc.hugetlb";
    let tunables = match std::env::var("GLIBC_TUNABLES") {
        Ok(tunables) if tunables.contains(TUNABLE) => return,
        Ok(tunables) => tunables,
        Err(std::env::VarError::NotPresent) => String::new(),
        Err(std::env::VarError::NotUnicode(_)) => return,
    };
    // `always [madvise] never`: the mode in brackets.
    let mode = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled");
    if !mode.is_ok_and(|mode| mode.contains("[madvise]") || mode.contains("[always]")) {
        return;
    }
    let with = if tunables.is_empty() {
        format!("{TUNABLE}=1")
    } else {
        format!("{tunables}:{TUNABLE}=1")
    };
    // The executable's own path, not `/proc/self/exe`: the process keeps its name (`ps`, `top`).
    let Ok(executable) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_default();
    // Returns only if the exec failed: go on without.
    let _ = std::process::Command::new(executable)
        .arg0(arg0)
        .args(args)
        .env("GLIBC_TUNABLES", with)
        .exec();
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn back_the_heap_with_huge_pages() {}

/// Keeps peak memory flat over long runs (issue 10; heaptrack showed the heap itself flat while
/// the resident size grew with the rows exported):
/// * CSV blocks (4 MiB and a little more) get mappings of their own, returned to the system when
///   freed — glibc's default raises that threshold after the first such free, and the blocks then
///   fragment the heap. Graph pages (~6.5 MB) are above it too, but their buffers are reused
///   (`graph::client`): mapping each page afresh cost a page fault per 4 KiB of it;
/// * two arenas, not glibc's eight per core: every blocking-pool thread (files are read and
///   written there) would otherwise get an arena of its own, each keeping its freed memory.
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
