//! The progress bar shown on a terminal while a run reads Graph and commits slices.

use std::io::IsTerminal;
use std::sync::Arc;

use crate::graph::client::GraphStats;
use crate::graph::stream::PageObserver;
use crate::run::Observer;

/// The progress bar shown on a terminal; `None` when stderr is not one (plain log lines then).
pub(super) struct Progress {
    bar: indicatif::ProgressBar,
    /// Sign-ins read from Graph so far (before filtering and dedup).
    read: std::sync::atomic::AtomicU64,
}

impl Progress {
    pub(super) fn new() -> Option<Arc<Progress>> {
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

    pub(super) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl PageObserver for Progress {
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
}

impl Observer for Progress {
    fn slice_done(&self, done: u32, total: u32, rows: u64) {
        self.bar.println(format!(
            "slice {done}/{total} committed, {rows} rows so far"
        ));
    }
}
