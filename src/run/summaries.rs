//! Keeping the map-ready summaries (`summary/locations.csv`, `summary/devices.csv`, see
//! [`crate::summary`]) beside `latest.csv`: rebuilt in the same run and over the same days, each
//! replaced atomically by the lock holder, at a cost that follows what changed.
//!
//! Per daily file a *tally* (`_state/tally/YYYY-MM-DD.json`) holds what the summaries need of the
//! file and the file's version it was made from (Blob: ETag; folder: the file's identity). A run
//! tallies the rows of every block while it stages it ([`tally_while`], from the bytes staged, so
//! a read the deadline stopped tallies exactly what it commits) and keeps, per daily file it
//! commits to, the merged tally of its commits with the file's version before the first and
//! after the last ([`CommittedRows`]). When the summaries are rebuilt, each report day's tally is
//!
//! 1. the stored one, when its version is the file's; else
//! 2. the stored one (or nothing, for a file the run created) plus the run's rows, when the
//!    stored version is the one the run's first commit to the file started from and the run's
//!    last commit made the file's version; else
//! 3. recomputed from the daily file, read in ranges pinned to its version: after a crash
//!    between a commit and the summaries, or a tally lost or written by another build.
//!
//! and is written back before the summaries are rendered from all of them and replaced. A run
//! that committed rows therefore reads the report days' tallies (the size of the summaries) and
//! writes the tallies of the days it changed; it reads no daily file unless a tally is missing
//! or stale. Any crash leaves each file whole (every write replaces a file atomically), a stored
//! tally always matches the version it names, and the state's `summariesDirty` — set with every
//! commit, cleared once both summaries are replaced — makes the next run rebuild them.

use std::collections::BTreeMap;

use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use super::slice::StagedSlice;
use super::{Run, RunError};
use crate::sink::{Committed, DailyFile, FileVersion, SinkError};
use crate::state::State;
use crate::summary::{
    self, tally_file, DayTally, FileTally, Rounding, RowLayout, DEVICES_FILE, LOCATIONS_FILE,
    MAX_LOCATION_ROWS,
};

/// Layout of a stored tally: another value makes the run recompute it from the daily file.
const TALLY_FORMAT: u32 = 1;
/// Bytes of a daily file read at a time when a tally is recomputed: memory stays flat.
const RECOMPUTE_CHUNK: u64 = 4 * 1024 * 1024;
/// Tallies read (or recomputed) at once.
const TALLIES_IN_FLIGHT: usize = 4;

/// Tallies the rows of a block (nothing without a layout) on the blocking pool while `staging`
/// uploads it, so the read does not wait for the tally. A block that cannot be tallied — which
/// would be a bug: these are the bytes the encoder just wrote — leaves the slice untallied, and
/// its day's tally is then recomputed from the daily file.
pub(super) async fn tally_while<F>(
    layout: Option<RowLayout>,
    data: Bytes,
    staged: &mut StagedSlice,
    staging: F,
) -> Result<(), SinkError>
where
    F: std::future::Future<Output = Result<(), SinkError>>,
{
    let (Some(layout), Some(mut tally)) = (layout, staged.tally.take()) else {
        return staging.await;
    };
    let file = staged.file.clone();
    let tallying = tokio::task::spawn_blocking(move || {
        tally
            .add_rows(&layout, &data, &file)
            .map(|_| tally)
            .map_err(|e| e.to_string())
    });
    let (staged_block, tallied) = tokio::join!(staging, tallying);
    staged.tally = match tallied.map_err(|e| e.to_string()).and_then(|t| t) {
        Ok(tally) => Some(tally),
        Err(error) => {
            warn!(%error, "rows not tallied for the summaries; the daily file is read instead");
            None
        }
    };
    staged_block
}

/// This run's commits per daily file: what they added, from which version of the file to which.
#[derive(Debug, Default)]
pub(super) struct CommittedRows {
    files: BTreeMap<String, FileRows>,
}

#[derive(Debug)]
struct FileRows {
    from: Option<FileVersion>,
    to: FileVersion,
    /// `None`: some committed rows were not tallied.
    tally: Option<DayTally>,
}

impl CommittedRows {
    /// Records a committed slice: its versions and tally (taken from it).
    pub(super) fn record(&mut self, staged: &mut StagedSlice) {
        let Some(committed) = staged.committed.take() else {
            return;
        };
        let tally = staged
            .tally
            .take()
            .filter(|tally| tally.rows == staged.rows);
        let Committed { before, after } = committed;
        match self.files.get_mut(&staged.file) {
            Some(rows) => {
                // Commits to one file are conditional on its version, so each starts where the
                // last one ended; anything else leaves the tally to be recomputed.
                let chained = before.as_ref() == Some(&rows.to);
                rows.tally = match (rows.tally.take(), tally) {
                    (Some(mut mine), Some(more)) if chained => {
                        mine.absorb(more);
                        Some(mine)
                    }
                    _ => None,
                };
                rows.to = after;
            }
            None => {
                self.files.insert(
                    staged.file.clone(),
                    FileRows {
                        from: before,
                        to: after,
                        tally,
                    },
                );
            }
        }
    }
}

/// A stored tally: the file and version it was made from, with the columns of its rows.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TallyDocument {
    format: u32,
    daily_file: String,
    version: FileVersion,
    columns: Vec<String>,
    tally: DayTally,
}

impl Run<'_> {
    /// Rebuilds the summaries over `days` (the report days, as `latest.csv` was just built from)
    /// when a commit made them dirty or the days changed.
    pub(super) async fn publish_summaries(
        &mut self,
        state: &mut State,
        days: &[DailyFile],
    ) -> Result<(), RunError> {
        let names: Vec<String> = days.iter().map(|d| d.name.clone()).collect();
        if !state.summaries_dirty && state.summary_files.as_ref() == Some(&names) {
            return Ok(());
        }
        let columns = self.settings.columns.names();
        let layout = match RowLayout::new(&columns) {
            Ok(layout) => layout,
            Err(e) => {
                // Said once per change of the report, not every run.
                warn!("{e}");
                state.summaries_dirty = false;
                state.summary_files = Some(names);
                return Ok(());
            }
        };
        self.deps.sink.ensure_locked().await?;
        let mut committed = std::mem::take(&mut self.committed_rows);
        let this = &*self;
        let tallies: Vec<_> = days
            .iter()
            .map(|day| {
                let rows = committed.files.remove(&day.name);
                this.day_tally(day.clone(), rows, &layout)
            })
            .collect();
        let total = stream::iter(tallies)
            .buffer_unordered(TALLIES_IN_FLIGHT)
            .try_fold(DayTally::default(), |mut total, tally| async move {
                total.absorb(tally);
                Ok(total)
            })
            .await?;
        let rendered = summary::render(total, &layout, self.settings.csv_safe, MAX_LOCATION_ROWS);
        if rendered.rounding != Rounding::Exact {
            info!(
                rounding = %rendered.rounding,
                rows = rendered.location_rows,
                "more places than the map shows: places merged by rounding their coordinates"
            );
        }
        let sink = &self.deps.sink;
        sink.put_file(LOCATIONS_FILE, rendered.locations).await?;
        sink.put_file(DEVICES_FILE, rendered.devices).await?;
        info!(
            days = days.len(),
            places = rendered.location_rows,
            devices = rendered.device_rows,
            sign_ins = rendered.sign_ins,
            located = rendered.located,
            "summaries replaced"
        );
        state.summaries_dirty = false;
        state.summary_files = Some(names);
        Ok(())
    }

    /// The tally of one daily file at its listed version: stored, stored plus this run's rows, or
    /// recomputed from the file (see the module docs); written back when it changed.
    async fn day_tally(
        &self,
        day: DailyFile,
        rows: Option<FileRows>,
        layout: &RowLayout,
    ) -> Result<DayTally, RunError> {
        let path = tally_file(&day.name);
        let stored = match self.stored_tally(&day, &path).await? {
            // Moved out, not cloned: a big tenant's tally is tens of megabytes.
            Some(stored) if stored.version == day.version => return Ok(stored.tally),
            stored => stored,
        };
        let updated = rows.and_then(|rows| {
            let added = rows.tally.filter(|_| rows.to == day.version)?;
            let mut base = match rows.from {
                None => DayTally::default(),
                Some(from) => stored.filter(|s| s.version == from)?.tally,
            };
            base.absorb(added);
            Some(base)
        });
        let tally = match updated {
            Some(tally) => tally,
            None => self.recompute(&day, layout).await?,
        };
        let document = TallyDocument {
            format: TALLY_FORMAT,
            daily_file: day.name,
            version: day.version,
            columns: self.query().columns,
            tally,
        };
        let bytes = serde_json::to_vec(&document).map_err(|e| {
            crate::state::StateError::Corrupt(format!("cannot serialise {path}: {e}"))
        })?;
        self.deps.sink.put_file(&path, Bytes::from(bytes)).await?;
        debug!(file = %document.daily_file, tally = %path, "tally written");
        Ok(document.tally)
    }

    /// The stored tally of `day`, if there is one this build can use.
    async fn stored_tally(
        &self,
        day: &DailyFile,
        path: &str,
    ) -> Result<Option<TallyDocument>, RunError> {
        let Some(bytes) = self.deps.sink.read(path).await? else {
            return Ok(None);
        };
        match serde_json::from_slice::<TallyDocument>(&bytes) {
            Ok(document)
                if document.format == TALLY_FORMAT
                    && document.daily_file == day.name
                    && document.columns == self.query().columns =>
            {
                Ok(Some(document))
            }
            Ok(_) => Ok(None),
            Err(e) => {
                warn!(tally = %path, error = %e, "unreadable tally; recomputing it from the daily file");
                Ok(None)
            }
        }
    }

    /// Tallies a whole daily file, read in ranges pinned to its listed version.
    async fn recompute(&self, day: &DailyFile, layout: &RowLayout) -> Result<DayTally, RunError> {
        info!(file = %day.name, bytes = day.len, "tallying the daily file for the summaries");
        let header = self.header.as_ref();
        let mut tally = FileTally::new(layout.clone(), &day.name);
        let mut offset = 0;
        while offset < day.len {
            let len = RECOMPUTE_CHUNK.min(day.len - offset);
            let chunk = self
                .deps
                .sink
                .read_range(&day.name, &day.version, offset, len)
                .await?;
            let rows = if offset == 0 {
                chunk
                    .strip_prefix(header)
                    .ok_or_else(|| summary::SummaryError::Malformed {
                        what: day.name.clone(),
                        row: 0,
                        problem: "it does not start with the export's header".into(),
                    })?
            } else {
                &chunk[..]
            };
            tally.feed(rows)?;
            offset += len;
        }
        Ok(tally.finish()?)
    }
}
