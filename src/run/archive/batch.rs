//! One read batch of the archive: the pieces read across blobs, their rows routed to the daily
//! file of their `createdDateTime` and staged as blocks, then committed together — a ticket per
//! file in one pending record, and the cursors with it.
//!
//! Reads of several blobs share one [`Batch`] behind a mutex: a piece is routed in one
//! synchronous step (parse, filter, dedup, encode), and blocks are staged outside the lock.
//! Memory holds a block buffer per daily file being written (staged at [`BLOCK_TARGET`], or the
//! largest once all buffers reach [`BUFFERED_LIMIT`]), the batch's new ids, and the pieces in
//! flight.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use time::{OffsetDateTime, UtcOffset};
use tracing::{debug, warn};

use super::super::{Observer, RunError, BLOCK_TARGET};
use crate::config::Settings;
use crate::csv::CsvEncoder;
use crate::diagnostic::cursor::id_key;
use crate::diagnostic::{advanced, parse_line, BlobCursor, ListedBlob, Malformed, Piece};
use crate::sink::{daily_file, BlockId, Sink};
use crate::state::{
    ArchivePending, ArchiveState, ArchiveSummary, Coverage, IdWindow, Instant, ReadRange,
};
use crate::transform::filter::SignInFilter;

/// Block buffers of all daily files together, before the largest is staged early: late
/// deliveries can spread a batch over many days.
pub const BUFFERED_LIMIT: usize = 8 * 1024 * 1024;

/// Malformed lines logged one by one; the rest only counted (the summary lists the first ones).
const MALFORMED_LOGGED: u64 = 20;

/// What every read of one batch looks at.
pub struct ReadContext<'r> {
    pub settings: &'r Settings,
    pub filter: &'r SignInFilter,
    /// The archive's state as the batch found it: ids, replays.
    pub archive: &'r ArchiveState,
    /// What Graph exported before a switch: rows created there were written then.
    pub covered: &'r Coverage,
    /// The export's start: older rows are not its own.
    pub export_from: OffsetDateTime,
    /// How many hours apart a repeated delivery is looked for ([`super::jobs::id_reach`]).
    pub reach: time::Duration,
    pub sink: &'r dyn Sink,
    pub observer: Option<&'r dyn Observer>,
    pub run_id: &'r str,
    /// Sequence of the run's last staged block (block ids must not repeat within a file).
    pub last_block: &'r AtomicU32,
    /// Count only: stage nothing.
    pub dry_run: bool,
    /// The batch stops taking pieces once its reads consumed this many bytes.
    pub batch_bytes: u64,
    /// Longest line the reader keeps (for the report of a longer one).
    pub max_line: usize,
}

impl ReadContext<'_> {
    fn next_block_id(&self) -> BlockId {
        BlockId::new(
            self.run_id,
            self.last_block.fetch_add(1, Ordering::Relaxed) + 1,
        )
    }

    /// Stages `data` as the next block of `file` and records it in the batch.
    pub async fn stage(
        &self,
        batch: &Mutex<Batch>,
        file: String,
        data: Vec<u8>,
    ) -> Result<(), RunError> {
        if self.dry_run || data.is_empty() {
            return Ok(());
        }
        let block = self.next_block_id();
        self.sink.stage(&file, &block, Bytes::from(data)).await?;
        lock(batch)
            .files
            .entry(file)
            .or_default()
            .blocks
            .push(block);
        Ok(())
    }
}

/// The rows of one daily file in a batch.
#[derive(Debug, Default)]
pub struct FileRows {
    /// Encoded rows not staged yet.
    pub buffer: Vec<u8>,
    pub blocks: Vec<BlockId>,
    pub rows: u64,
}

/// How far a batch read one blob.
#[derive(Debug, Clone)]
pub struct BlobRead {
    pub blob: ListedBlob,
    /// Where the batch started reading it.
    pub from: u64,
    /// After the last complete line the batch took.
    pub consumed: u64,
}

/// What one batch read and staged, until it commits.
pub struct Batch {
    encoder: CsvEncoder,
    pub files: BTreeMap<String, FileRows>,
    /// Bytes in the files' buffers.
    buffered: usize,
    /// Ids of the rows taken, with the hour of their blob: a repeat within the batch is
    /// skipped, and the window keeps them after the commit.
    ids: HashMap<u128, OffsetDateTime>,
    pub newest: Option<OffsetDateTime>,
    pub rows: u64,
    pub duplicates: u64,
    /// Bytes consumed (complete lines).
    pub bytes: u64,
    pub reads: BTreeMap<String, BlobRead>,
    pub counts: ArchiveSummary,
}

impl Batch {
    pub fn new(settings: &Settings) -> Batch {
        Batch {
            encoder: CsvEncoder::new(&settings.columns, settings.csv_safe),
            files: BTreeMap::new(),
            buffered: 0,
            ids: HashMap::new(),
            newest: None,
            rows: 0,
            duplicates: 0,
            bytes: 0,
            reads: BTreeMap::new(),
            counts: ArchiveSummary::default(),
        }
    }

    /// Whether the batch has taken enough to commit.
    pub fn full(&self, limit: u64) -> bool {
        self.bytes >= limit
    }

    /// Routes the rows of `piece` of `blob` (read from `from`), and returns the block buffers
    /// that are now to be staged.
    pub fn take_piece(
        &mut self,
        ctx: &ReadContext<'_>,
        blob: &ListedBlob,
        from: u64,
        piece: &Piece<'_>,
    ) -> Vec<(String, Vec<u8>)> {
        let path = blob.key.path();
        let hour = blob
            .hour
            .as_ref()
            .map_or(OffsetDateTime::UNIX_EPOCH, |h| h.hour);
        let read = self.reads.entry(path.clone()).or_insert_with(|| BlobRead {
            blob: blob.clone(),
            from,
            consumed: from,
        });
        self.bytes += piece.consumed.saturating_sub(read.consumed);
        read.consumed = read.consumed.max(piece.consumed);
        for line in &piece.oversized {
            self.malformed(Malformed::oversized(&path, line, ctx.max_line));
        }
        let mut full = Vec::new();
        for line in &piece.lines {
            self.counts.lines += 1;
            let records = match parse_line(line.bytes, blob.key.event_type) {
                Ok(records) => records,
                Err(e) => {
                    self.malformed(Malformed::record(&path, line.offset, None, &e));
                    continue;
                }
            };
            let message = records.is_message();
            for (i, record) in records.enumerate() {
                let signin = match record {
                    Ok(record) => record.signin,
                    Err(e) => {
                        let index = message.then_some(i);
                        self.malformed(Malformed::record(&path, line.offset, index, &e));
                        continue;
                    }
                };
                let created = signin.created;
                if created < ctx.export_from {
                    self.counts.before_start += 1;
                    continue;
                }
                if ctx.covered.contains(created) {
                    self.counts.exported_from_graph += 1;
                    continue;
                }
                if !ctx.filter.matches(&signin) {
                    continue;
                }
                let file = daily_file(created.to_offset(UtcOffset::UTC).date());
                let key = id_key(signin.id());
                if ctx.archive.written_before(&path, line.offset, &file) {
                    // Written by a commit of which only some files landed; the window learns
                    // its id with this batch.
                    self.counts.replayed += 1;
                    self.ids.insert(key, hour);
                    continue;
                }
                if self.ids.contains_key(&key) || ctx.archive.ids.contains(key, hour, ctx.reach) {
                    self.duplicates += 1;
                    continue;
                }
                self.ids.insert(key, hour);
                self.newest = Some(self.newest.map_or(created, |n| n.max(created)));
                self.rows += 1;
                let rows = self.files.entry(file.clone()).or_default();
                rows.rows += 1;
                if ctx.dry_run {
                    continue;
                }
                let before = rows.buffer.len();
                self.encoder
                    .encode_signin(&ctx.settings.columns, &signin, &mut rows.buffer);
                self.buffered += rows.buffer.len() - before;
                if rows.buffer.len() >= BLOCK_TARGET {
                    let data = std::mem::take(&mut rows.buffer);
                    self.buffered -= data.len();
                    full.push((file, data));
                }
            }
        }
        while self.buffered >= BUFFERED_LIMIT {
            let Some((file, rows)) = self
                .files
                .iter_mut()
                .max_by_key(|(_, rows)| rows.buffer.len())
            else {
                break;
            };
            let data = std::mem::take(&mut rows.buffer);
            if data.is_empty() {
                self.buffered = 0;
                break;
            }
            self.buffered -= data.len();
            full.push((file.clone(), data));
        }
        full
    }

    fn malformed(&mut self, line: Malformed) {
        if self.counts.malformed_lines < MALFORMED_LOGGED {
            warn!(blob = %line.blob, offset = line.offset, record = ?line.record, reason = %line.reason, "malformed line skipped");
        }
        self.counts.malformed(line);
    }

    /// The buffers not staged yet, emptied.
    pub fn take_buffers(&mut self) -> Vec<(String, Vec<u8>)> {
        self.buffered = 0;
        self.files
            .iter_mut()
            .filter(|(_, rows)| !rows.buffer.is_empty())
            .map(|(file, rows)| (file.clone(), std::mem::take(&mut rows.buffer)))
            .collect()
    }

    /// The pending record of this batch (without tickets): the cursors it leaves, the ranges
    /// it read, the ids the window keeps (those of blobs from `keep_from`'s hour on).
    pub fn pending(&self, keep_from: Option<OffsetDateTime>) -> ArchivePending {
        let ids = IdWindow::of(
            self.ids
                .iter()
                .filter(|(_, hour)| keep_from.is_none_or(|k| **hour >= k))
                .map(|(key, hour)| (*key, *hour)),
        );
        let progressed = || self.reads.iter().filter(|(_, r)| r.consumed > r.from);
        ArchivePending {
            tickets: Vec::new(),
            cursors: progressed()
                .map(|(path, r)| (path.clone(), advanced(&r.blob, r.consumed)))
                .collect::<BTreeMap<String, BlobCursor>>(),
            ranges: progressed()
                .map(|(path, r)| ReadRange {
                    blob: path.clone(),
                    from: r.from,
                    to: r.consumed,
                })
                .collect(),
            ids,
            rows: self.rows,
            newest: self.newest.map(Instant),
        }
    }

    /// The files with rows, and their staged blocks.
    pub fn files_to_commit(&self) -> impl Iterator<Item = (&String, &FileRows)> {
        self.files
            .iter()
            .filter(|(_, rows)| rows.rows > 0 && !rows.blocks.is_empty())
    }

    /// Logs what was staged for each file (the kill tests stop the process at this event).
    pub fn log_staged(&self) {
        for (file, rows) in &self.files {
            debug!(file = %file, blocks = rows.blocks.len(), rows = rows.rows, "blocks staged");
        }
    }
}

/// The batch, whoever panicked while holding it (a read's panic does not poison the rest).
pub fn lock(batch: &Mutex<Batch>) -> std::sync::MutexGuard<'_, Batch> {
    batch.lock().unwrap_or_else(|p| p.into_inner())
}
