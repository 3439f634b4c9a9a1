//! Keeping the map-ready summaries (`summary/locations.csv`, `summary/devices.csv`, see
//! [`crate::summary`]) beside `latest.csv`: rebuilt in the same run and over the same days, each
//! replaced atomically by the lock holder, at a cost that follows what changed and in memory that
//! does not grow with the tenant.
//!
//! Per daily file a *tally* (`_state/tally/YYYY-MM-DD.bin`) holds what the summaries need of
//! the file, sorted by key, and the file's version it was made from (Blob: ETag; folder: the
//! file's identity). A run tallies each row from the cells the encoder wrote for it (`slice`:
//! the rows at a read's oldest instant only once an older row came, so a read the deadline
//! stopped tallies exactly what it commits) and keeps, per daily file it commits to, its
//! commits' tallies — spilled to sorted runs on local disk — with the file's version before the
//! first and after the last ([`CommittedRows`]). When the summaries are rebuilt, each report
//! day's tally is
//!
//! 1. the stored one, when its version is the file's; else
//! 2. the stored one (or nothing, for a file the run created) merged with the run's runs, when
//!    the stored version is the one the run's first commit to the file started from and the
//!    run's last commit made the file's version; else
//! 3. recomputed from the daily file, read in ranges pinned to its version: after a crash
//!    between a commit and the summaries, or a tally lost or written by another build.
//!
//! and is written back, block by block, before the summaries are rendered from the merge of all
//! of them, each stored tally read in ranges. A run that committed rows therefore reads the
//! report days' tallies and writes the tallies of the days it changed; it reads no daily file
//! unless a tally is missing or stale. Memory holds a range per day, the places (one per point on
//! the map) and a block of output, whatever the number of users and devices. Any crash leaves each
//! file whole (every write replaces a file atomically), a stored tally always matches the version
//! it names, and the state's `summariesDirty` — set with every commit, cleared once both
//! summaries are replaced — makes the next run rebuild them.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use super::slice::StagedSlice;
use super::{Run, RunError};
use crate::sink::{BlockId, Committed, DailyFile, FileVersion, Sink, SinkError};
use crate::state::State;
use crate::summary::{
    self, tally_file, BlockOut, Chunks, DayTally, FileTally, Merge, Rounding, RowLayout,
    SummaryError, DEVICES_FILE, LOCATIONS_FILE, MAX_LOCATION_ROWS,
};

/// Layout of a stored tally: another value makes the run recompute it from the daily file.
const TALLY_FORMAT: u32 = 3;
/// Bytes of a daily file read at a time when a tally is recomputed: memory stays flat.
const RECOMPUTE_CHUNK: u64 = 4 * 1024 * 1024;
/// Bytes of stored tallies the summaries hold at once, over all report days; each day's ranges
/// are this divided by the days, within [`MIN_TALLY_RANGE`] and [`MAX_TALLY_RANGE`].
const TALLY_READ_BYTES: u64 = 4 * 1024 * 1024;
const MIN_TALLY_RANGE: u64 = 64 * 1024;
const MAX_TALLY_RANGE: u64 = 1024 * 1024;
/// Stored tallies whose header line is read at once.
const HEADERS_IN_FLIGHT: usize = 4;
/// The most a stored tally's header line may take.
const MAX_HEADER_BYTES: u64 = 64 * 1024;
/// Bytes of a stored tally staged at a time.
const TALLY_BLOCK_BYTES: usize = 4 * 1024 * 1024;

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
    /// Records a committed slice: its versions and tally (taken from it, and spilled to disk: a
    /// backfill commits to many files, and what it tallied waits for the end of the run).
    pub(super) fn record(&mut self, staged: &mut StagedSlice) {
        let Some(committed) = staged.committed.take() else {
            return;
        };
        let tally = staged
            .tally
            .take()
            .filter(|tally| tally.rows == staged.rows)
            .and_then(|mut tally| match tally.spill() {
                Ok(()) => Some(tally),
                Err(error) => {
                    warn!(%error, "rows not kept for the summaries; the daily file is read instead");
                    None
                }
            });
        let Committed { before, after } = committed;
        match self.files.get_mut(&staged.file) {
            Some(rows) => {
                // Commits to one file are conditional on its version, so each starts where the
                // last one ended; anything else leaves the tally to be recomputed.
                let chained = before.as_ref() == Some(&rows.to);
                rows.tally = match (rows.tally.take(), tally) {
                    (Some(mut mine), Some(more)) if chained => {
                        mine.absorb(more).ok().map(|()| mine)
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

/// The first line of a stored tally: the file and version it was made from, with the columns of
/// its rows. Its entries follow (see [`crate::summary::merge`]).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TallyHeader {
    format: u32,
    daily_file: String,
    version: FileVersion,
    columns: Vec<String>,
}

/// A stored tally this build can use: where its entries are.
#[derive(Debug)]
struct StoredTally {
    path: String,
    /// The tally file's own version and length.
    version: FileVersion,
    len: u64,
    /// Where its entries start (after the header line).
    entries: u64,
    header: TallyHeader,
}

/// A stored tally's entries, read in ranges pinned to its version.
struct StoredChunks {
    sink: Arc<dyn Sink>,
    path: String,
    version: FileVersion,
    offset: u64,
    end: u64,
    range: u64,
}

impl StoredChunks {
    fn boxed(sink: Arc<dyn Sink>, stored: &StoredTally, range: u64) -> Box<dyn Chunks> {
        Box::new(StoredChunks {
            sink,
            path: stored.path.clone(),
            version: stored.version.clone(),
            offset: stored.entries,
            end: stored.len,
            range,
        })
    }
}

#[async_trait]
impl Chunks for StoredChunks {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, SummaryError> {
        if self.offset >= self.end {
            return Ok(None);
        }
        let len = self.range.min(self.end - self.offset);
        let chunk = self
            .sink
            .read_range(&self.path, &self.version, self.offset, len)
            .await
            .map_err(|e| SummaryError::Storage(Box::new(e)))?;
        self.offset += len;
        Ok(Some(chunk))
    }

    fn describe(&self) -> String {
        self.path.clone()
    }
}

/// A whole file written block by block: staged as it comes, replaced atomically at the end.
struct FileOut {
    sink: Arc<dyn Sink>,
    path: String,
    /// Names this write's blocks apart from any other's.
    write: String,
    blocks: Vec<BlockId>,
    /// Bytes staged.
    len: u64,
}

impl FileOut {
    fn new(sink: Arc<dyn Sink>, path: &str) -> FileOut {
        FileOut {
            sink,
            path: path.to_string(),
            write: format!("{path}@{}", uuid::Uuid::new_v4()),
            blocks: Vec::new(),
            len: 0,
        }
    }

    /// Replaces the file with the blocks staged: its new version and length.
    async fn finish(self) -> Result<(FileVersion, u64), SinkError> {
        let version = self.sink.put_blocks(&self.path, &self.blocks).await?;
        Ok((version, self.len))
    }
}

#[async_trait]
impl BlockOut for FileOut {
    async fn put(&mut self, block: Bytes) -> Result<(), SummaryError> {
        let seq = u32::try_from(self.blocks.len()).unwrap_or(u32::MAX);
        let id = BlockId::new(&self.write, seq);
        self.len += block.len() as u64;
        self.sink
            .stage(&self.path, &id, block)
            .await
            .map_err(|e| SummaryError::Storage(Box::new(e)))?;
        self.blocks.push(id);
        Ok(())
    }
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
        // The stored tallies' header lines, a few at a time; then the days whose tally is not
        // current, one at a time: a day's merge holds a range of each of its runs.
        let this = &*self;
        let reads: Vec<_> = days.iter().map(|day| this.stored_tally(day)).collect();
        let heads: Vec<Option<StoredTally>> = stream::iter(reads)
            .buffered(HEADERS_IN_FLIGHT)
            .try_collect()
            .await?;
        let mut stored = Vec::with_capacity(days.len());
        for (day, head) in days.iter().zip(heads) {
            let rows = committed.files.remove(&day.name);
            stored.push(self.day_tally(day, head, rows, &layout).await?);
        }
        let sink = &self.deps.sink;
        let range =
            (TALLY_READ_BYTES / days.len().max(1) as u64).clamp(MIN_TALLY_RANGE, MAX_TALLY_RANGE);
        let runs = stored
            .iter()
            .map(|tally| StoredChunks::boxed(Arc::clone(sink), tally, range))
            .collect();
        let mut merge = Merge::new(runs).await?;
        let mut devices = FileOut::new(Arc::clone(sink), DEVICES_FILE);
        let rendered = summary::render(
            &mut merge,
            &layout,
            self.settings.csv_safe,
            MAX_LOCATION_ROWS,
            &mut devices,
        )
        .await?;
        if rendered.rounding != Rounding::Exact {
            info!(
                rounding = %rendered.rounding,
                rows = rendered.location_rows,
                "more places than the map shows: places merged by rounding their coordinates"
            );
        }
        sink.put_file(LOCATIONS_FILE, rendered.locations).await?;
        devices.finish().await?;
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

    /// The tally of one daily file at its listed version: stored, stored merged with this run's
    /// rows, or recomputed from the file (see the module docs); written back when it changed.
    async fn day_tally(
        &self,
        day: &DailyFile,
        stored: Option<StoredTally>,
        rows: Option<FileRows>,
        layout: &RowLayout,
    ) -> Result<StoredTally, RunError> {
        let stored = match stored {
            Some(stored) if stored.header.version == day.version => return Ok(stored),
            stored => stored,
        };
        let path = tally_file(&day.name);
        let sink = &self.deps.sink;
        let updated = rows.and_then(|rows| {
            let added = rows.tally.filter(|_| rows.to == day.version)?;
            let base = match rows.from {
                None => None,
                Some(from) => Some(stored.as_ref().filter(|s| s.header.version == from)?),
            };
            Some((base, added))
        });
        let mut runs: Vec<Box<dyn Chunks>> = Vec::new();
        let added = match updated {
            Some((base, added)) => {
                if let Some(base) = base {
                    runs.push(StoredChunks::boxed(Arc::clone(sink), base, MAX_TALLY_RANGE));
                }
                added
            }
            None => self.recompute(day, layout).await?,
        };
        for run in added.into_runs()? {
            runs.push(run.into_chunks()?);
        }
        let header = TallyHeader {
            format: TALLY_FORMAT,
            daily_file: day.name.clone(),
            version: day.version.clone(),
            columns: self.query().columns,
        };
        let mut out = serde_json::to_vec(&header).map_err(|e| {
            crate::state::StateError::Corrupt(format!("cannot serialise {path}: {e}"))
        })?;
        out.push(b'\n');
        let entries = out.len() as u64;
        let mut file = FileOut::new(Arc::clone(sink), &path);
        let mut merge = Merge::new(runs).await?;
        while let Some(entry) = merge.next().await? {
            entry.write_to(&mut out);
            if out.len() >= TALLY_BLOCK_BYTES {
                file.put(Bytes::from(std::mem::take(&mut out))).await?;
            }
        }
        file.put(Bytes::from(out)).await?;
        let (version, len) = file.finish().await?;
        debug!(file = %day.name, tally = %path, "tally written");
        Ok(StoredTally {
            path,
            version,
            len,
            entries,
            header,
        })
    }

    /// The stored tally of `day`, if there is one this build can use: its header line read.
    async fn stored_tally(&self, day: &DailyFile) -> Result<Option<StoredTally>, RunError> {
        let path = &tally_file(&day.name);
        let sink = &self.deps.sink;
        let Some((version, len)) = sink.version_of(path).await? else {
            return Ok(None);
        };
        let head = sink
            .read_range(path, &version, 0, len.min(MAX_HEADER_BYTES))
            .await?;
        let Some(end) = head.iter().position(|&b| b == b'\n') else {
            warn!(tally = %path, "a tally without a header line; recomputing it from the daily file");
            return Ok(None);
        };
        match serde_json::from_slice::<TallyHeader>(&head[..end]) {
            Ok(header)
                if header.format == TALLY_FORMAT
                    && header.daily_file == day.name
                    && header.columns == self.query().columns =>
            {
                Ok(Some(StoredTally {
                    path: path.to_string(),
                    version,
                    len,
                    entries: end as u64 + 1,
                    header,
                }))
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
