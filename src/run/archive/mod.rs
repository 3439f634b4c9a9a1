//! The diagnostic-settings source in a run (`SIGNINS_SOURCE=diagnostic-settings`): the hourly
//! append blobs an Entra diagnostic setting archives, read by byte offset and committed exactly
//! once (the design is [`crate::diagnostic`]'s "Exactly once").
//!
//! A run settles what a previous run left pending, lists each category's container, keeps its
//! own tenant's blobs from the archive's start hour on, and reads what grew since each blob's
//! cursor ([`jobs`]), oldest hour first, several blobs at once, in ranged pieces. Rows go to the
//! daily file of their `createdDateTime` and are staged as blocks as they come (`batch`). Every
//! [`ArchiveOptions::batch_bytes`] of lines, at the deadline (less the time commits need) and
//! at the end, the batch commits: one pending record with a ticket per daily file and the new
//! cursors, the files, then the settled state. A run killed at any instant leaves the previous
//! cursors or the new ones, and the next run settles a pending record whatever landed.
//!
//! Same rows as the Graph path: the preset and column rules apply unchanged, client-side (there
//! is no server to filter); `SIGNINS_SETTLE` does not apply (an archived line is written once,
//! never updated). `covered` stays what Graph exported before a switch: rows created inside it
//! were written then and are skipped, so a Graph export continues here with no gap and no
//! duplicate (see [`jobs::handover_start`]). Back to Graph is refused
//! ([`crate::state::State::check_source`]).

mod batch;
pub mod jobs;

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::AtomicU32;
use std::sync::Mutex;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{rfc3339, state_bytes, Run, RunError};
use crate::config::DiagnosticStorage;
use crate::credential::TokenProvider;
use crate::diagnostic::layout::prefix_tenant;
use crate::diagnostic::{
    DiagnosticReader, ListedBlob, Listing, Malformed, ReaderOptions, SourceError,
};
use crate::state::{ArchiveState, ArchiveSummary, State};
use batch::{lock, Batch, ReadContext};
use jobs::Job;

/// Bytes of JSON Lines a batch reads before it commits. Large, because a commit writes the
/// state (the id window included) twice; small enough that a crash re-reads little.
pub const BATCH_BYTES: u64 = 256 * 1024 * 1024;
/// Blobs read at once: ranged reads of one blob follow each other, so several keep the
/// storage account's latency out of the way.
pub const BLOBS_IN_FLIGHT: usize = 4;
/// Largest ranged read (and what the reader holds of a blob, with one line).
pub const PIECE_BYTES: usize = 2 * 1024 * 1024;

/// The request cannot name the end of a window on this source.
const UNTIL: &str = "--until (or ?until=) with SIGNINS_SOURCE=diagnostic-settings: the archive is read blob by blob to the end of every blob, not by a window of time; leave it out";
/// A back-fill below the export's start.
const BACKFILL: &str = "--since (or ?since=) before where this export starts, with SIGNINS_SOURCE=diagnostic-settings: the archive is read once by byte offset, so blobs read already are not read again for older sign-ins. Export into a new destination prefix with --since, or back-fill the earlier days from Graph into another prefix";
/// `Deps` built without the archive (a wiring error of a test or a shell).
const NO_READER: &str =
    "SIGNINS_SOURCE=diagnostic-settings, but this run was wired without a reader of the archive";

/// Tunables of an archive run; [`Default`] is what production uses.
#[derive(Debug, Clone)]
pub struct ArchiveOptions {
    /// A batch commits once its reads consumed this many bytes.
    pub batch_bytes: u64,
    /// Blobs read at once.
    pub blobs_in_flight: usize,
}

impl Default for ArchiveOptions {
    fn default() -> Self {
        ArchiveOptions {
            batch_bytes: BATCH_BYTES,
            blobs_in_flight: BLOBS_IN_FLIGHT,
        }
    }
}

/// The archive a run reads, and how.
pub struct ArchiveSource {
    pub reader: DiagnosticReader,
    /// The app's credential: its tenant picks this export's blobs when the storage account
    /// holds several tenants' (`None`: the only tenant's blobs are read).
    pub tokens: Option<TokenProvider>,
    pub options: ArchiveOptions,
}

impl ArchiveSource {
    /// The archive of `SIGNINS_DIAGNOSTIC_STORAGE` with production tunables. Debug builds — the
    /// binary the end-to-end tests start — take a batch and a piece size in bytes from
    /// `SIGNINS_TEST_ARCHIVE_BATCH` and `SIGNINS_TEST_ARCHIVE_PIECE`, so a small test archive
    /// takes several batches; release builds never read them.
    pub fn new(
        storage: &DiagnosticStorage,
        tokens: &TokenProvider,
    ) -> Result<ArchiveSource, RunError> {
        let (options, piece_bytes) = tunables();
        let reader_options = ReaderOptions {
            piece_bytes,
            ..ReaderOptions::default()
        };
        let reader = DiagnosticReader::for_storage(storage, tokens, reader_options)
            .map_err(RunError::Source)?;
        Ok(ArchiveSource {
            reader,
            tokens: Some(tokens.clone()),
            options,
        })
    }
}

/// Production's batch and piece sizes.
#[cfg(not(debug_assertions))]
fn tunables() -> (ArchiveOptions, usize) {
    (ArchiveOptions::default(), PIECE_BYTES)
}

/// Production's batch and piece sizes, or the test knobs' when set (debug builds only).
#[cfg(debug_assertions)]
fn tunables() -> (ArchiveOptions, usize) {
    let bytes = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|n| *n > 0)
    };
    let options = ArchiveOptions {
        batch_bytes: bytes("SIGNINS_TEST_ARCHIVE_BATCH").unwrap_or(BATCH_BYTES),
        ..ArchiveOptions::default()
    };
    let piece_bytes = bytes("SIGNINS_TEST_ARCHIVE_PIECE")
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(PIECE_BYTES);
    (options, piece_bytes)
}

/// How one blob's read in a batch ended.
struct Ended {
    job: Job,
    /// After the last complete line taken.
    consumed: u64,
    /// The read reached the end of its range.
    complete: bool,
    error: Option<SourceError>,
}

/// How a batch's reads ended.
#[derive(Default)]
struct BatchRead {
    /// Jobs read to the end of their range.
    done: u32,
    /// The deadline (or a failure) stopped reading.
    stopped: bool,
    /// A read failed: the batch commits what it has, then the run fails with this.
    failure: Option<SourceError>,
}

impl Run<'_> {
    /// The archive run: `Ok(true)` when everything listed was read and committed, `Ok(false)`
    /// when the deadline stopped it.
    pub(super) async fn export_archive(&mut self) -> Result<bool, RunError> {
        let deps = self.deps;
        let source = deps
            .archive
            .as_ref()
            .ok_or(RunError::Unsupported(NO_READER))?;
        if self.request.until.is_some() {
            return Err(RunError::Unsupported(UNTIL));
        }
        let now = deps.clock.now();
        let mut state = self.load_state().await?;
        if let Some(state) = state.as_mut() {
            if self
                .request
                .since
                .is_some_and(|since| since < state.export_from)
            {
                return Err(RunError::Unsupported(BACKFILL));
            }
            // A Graph export's commit, before it switched to this source.
            self.settle_previous(state).await?;
            self.settle_archive(state).await?;
        }
        let mut state = state.unwrap_or_else(|| {
            let export_from = self.request.since.unwrap_or(now - self.settings.lookback);
            State::new(self.settings.preset.as_str(), self.query(), export_from)
        });
        let switched = state.archive.is_none() && !state.covered.is_empty();
        if state.archive.is_none() {
            let start = jobs::handover_start(state.export_from, &state.covered, now);
            if switched {
                info!(
                    watermark = %rfc3339(state.watermark()),
                    read_from = %rfc3339(start),
                    "continuing a Graph export from the diagnostic-settings archive: sign-ins created in what Graph exported are skipped"
                );
            }
            state.adopt_archive(ArchiveState::new(start));
        }
        self.summary.archive = Some(ArchiveSummary::default());
        // Every path below leaves the state in `self.state`: `finish` records the run in it.
        let result = self.archive_run(source, &mut state, now, switched).await;
        self.state = Some(state);
        result
    }

    /// Lists, plans, reads and commits; publishes `latest.csv`; records what remains.
    async fn archive_run(
        &mut self,
        source: &ArchiveSource,
        state: &mut State,
        now: time::OffsetDateTime,
        switched: bool,
    ) -> Result<bool, RunError> {
        let (listed, oldest) = self.list_archive(source, state).await?;
        let archive = archive_of(state)?;
        if switched && oldest.is_none_or(|oldest| oldest > archive.read_from) {
            warn!(
                read_from = %rfc3339(archive.read_from),
                oldest = %oldest.map_or_else(|| "none".to_string(), rfc3339),
                "the archive starts after the first hour Graph did not export: sign-ins created in between were never archived (the diagnostic setting was created later) and are missing from the export; export them from Graph into another prefix"
            );
        }
        let plan = jobs::plan(archive, &listed);
        for (path, why) in &plan.restarts {
            warn!(blob = %path, reason = ?why, "a blob was written again under a name read before: reading it from its start (rows already exported are recognised by their id as far as the id window reaches)");
            archive.restart(path);
        }
        if let Some(summary) = self.summary.archive.as_mut() {
            summary.restarts = plan.restarts.len() as u64;
        }
        let newest_hour = plan.jobs.iter().map(Job::hour).max();
        self.summary.window_start = Some(archive.read_from);
        self.summary.window_end =
            Some(newest_hour.map_or(now, |h| (h + time::Duration::HOUR).max(now)));
        self.summary.slices_total = u32::try_from(plan.jobs.len()).unwrap_or(u32::MAX);
        self.had_work = !plan.jobs.is_empty();

        let (read, left) = self.read_archive(source, state, plan.jobs).await;
        let result = match read {
            Ok(completed) if !self.request.dry_run => self
                .publish_latest_by_deadline(state)
                .await
                .map(|published| completed && published),
            other => other,
        };
        let archive = archive_of(state)?;
        self.summary.remaining = jobs::remaining(&left, archive.bytes_per_row);
        // Only when every read in flight came back: one dropped by an error is in no list, and
        // its hour must not be forgotten.
        if !self.request.dry_run && result.is_ok() {
            self.forget_old_blobs(archive, now, &left);
        }
        result
    }

    /// Settles an archive commit a previous run recorded and did not settle: every ticket is
    /// fenced, then the cursors apply, stay, or the read ranges become replays (see
    /// [`crate::state::archive`]).
    async fn settle_archive(&self, state: &mut State) -> Result<(), RunError> {
        if self.request.dry_run {
            return Ok(());
        }
        let Some(pending) = state.archive.as_mut().and_then(|a| a.pending.take()) else {
            return Ok(());
        };
        let mut landed = Vec::with_capacity(pending.tickets.len());
        for ticket in &pending.tickets {
            landed.push(self.deps.sink.fence(ticket).await?);
        }
        info!(
            files = pending.tickets.len(),
            landed = landed.iter().filter(|l| **l).count(),
            "settling the previous run's pending commit"
        );
        let archive = archive_of(state)?;
        if archive.settle(pending, &landed) {
            state.latest_dirty = true;
            state.summaries_dirty = true;
        }
        self.deps.sink.write_state(state_bytes(state)?).await?;
        Ok(())
    }

    /// This export's blobs: each chosen category's container listed whole, its own tenant's
    /// blobs of hours from the archive's start on; and the oldest hour the archive holds for
    /// its tenant. Cursors of deleted blobs are forgotten.
    async fn list_archive(
        &mut self,
        source: &ArchiveSource,
        state: &mut State,
    ) -> Result<(Vec<ListedBlob>, Option<time::OffsetDateTime>), RunError> {
        let mut listed = Vec::new();
        let mut containers = Vec::new();
        let mut missing = None;
        for &event_type in &self.settings.graph.event_types {
            let asked = std::time::Instant::now();
            match source.reader.list(event_type, &Listing::Container).await {
                Ok(blobs) => {
                    containers.push(event_type.diagnostic_container());
                    listed.extend(blobs);
                }
                Err(e @ SourceError::NoContainer { .. }) => {
                    warn!(container = event_type.diagnostic_container(), "no such container: no sign-in of this category archived yet, or the diagnostic setting does not send it");
                    missing.get_or_insert(e);
                }
                Err(e) => return Err(RunError::Source(e)),
            }
            self.storage_latency = self.storage_latency.max(asked.elapsed());
        }
        if containers.is_empty() {
            if let Some(e) = missing {
                return Err(RunError::Source(e));
            }
        }
        let archive = archive_of(state)?;
        jobs::forget_deleted(archive, &containers, &listed);
        let Some(prefix) = own_prefix(source, archive, &listed).await? else {
            return Ok((Vec::new(), None));
        };
        let oldest = listed
            .iter()
            .filter_map(|b| b.hour.as_ref())
            .filter(|h| h.prefix == prefix)
            .map(|h| h.hour)
            .min();
        Ok((jobs::ours(listed, &prefix, archive.read_from), oldest))
    }

    /// Reads and commits `jobs` batch by batch until they are done, the deadline stops reading
    /// or a read fails. Returns the result and the jobs left unread (from where they stopped).
    async fn read_archive(
        &mut self,
        source: &ArchiveSource,
        state: &mut State,
        jobs: Vec<Job>,
    ) -> (Result<bool, RunError>, Vec<Job>) {
        let stop_at = self.stop_reading_at(state);
        let stop = CancellationToken::new();
        let last_block = AtomicU32::new(0);
        let mut queue: VecDeque<Job> = jobs.into();
        let mut blobs_read = BTreeSet::new();
        let mut newest_read: Option<time::OffsetDateTime> = None;
        let reach = jobs::id_reach(self.settings.overlap);
        let mut stopped = false;
        while !queue.is_empty() && !stopped {
            if self.cancel.is_cancelled() {
                return (Err(RunError::Cancelled), queue.into());
            }
            let batch = Mutex::new(Batch::new(self.settings));
            let read = {
                let Some(archive) = state.archive.as_ref() else {
                    return (Err(RunError::Unsupported(NO_READER)), queue.into());
                };
                let ctx = ReadContext {
                    settings: self.settings,
                    filter: &self.filter,
                    archive,
                    covered: &state.covered,
                    export_from: state.export_from,
                    reach,
                    sink: self.deps.sink.as_ref(),
                    observer: self.deps.observer.as_deref(),
                    run_id: &self.run_id,
                    last_block: &last_block,
                    dry_run: self.request.dry_run,
                    batch_bytes: source.options.batch_bytes,
                    max_line: source.reader.options().max_line_bytes,
                };
                let read = read_batch(
                    &ctx,
                    &source.reader,
                    source.options.blobs_in_flight.max(1),
                    &batch,
                    &mut queue,
                    &stop,
                    stop_at,
                    &self.cancel,
                )
                .await;
                match read {
                    Ok(read) => {
                        let buffers = lock(&batch).take_buffers();
                        let mut staged = Ok(read);
                        for (file, data) in buffers {
                            if let Err(e) = ctx.stage(&batch, file, data).await {
                                staged = Err(e);
                                break;
                            }
                        }
                        staged
                    }
                    Err(e) => Err(e),
                }
            };
            let read = match read {
                Ok(read) => read,
                Err(e) => return (Err(e), queue.into()),
            };
            let batch = batch.into_inner().unwrap_or_else(|p| p.into_inner());
            blobs_read.extend(batch.reads.keys().cloned());
            newest_read = batch
                .reads
                .values()
                .filter_map(|r| r.blob.hour.as_ref().map(|h| h.hour))
                .chain(newest_read)
                .max();
            let oldest_left = queue.iter().map(Job::hour).min();
            let keep_ids = jobs::keep_ids_from(newest_read, oldest_left, reach);
            if let Err(e) = self.commit_batch(state, batch, keep_ids).await {
                return (Err(e), queue.into());
            }
            self.summary.slices_done += read.done;
            if let Some(summary) = self.summary.archive.as_mut() {
                summary.blobs = u32::try_from(blobs_read.len()).unwrap_or(u32::MAX);
            }
            if let Some(observer) = &self.deps.observer {
                observer.slice_done(
                    self.summary.slices_done,
                    self.summary.slices_total,
                    self.summary.rows,
                );
            }
            if let Some(error) = read.failure {
                return (Err(RunError::Source(error)), queue.into());
            }
            stopped = read.stopped;
        }
        (Ok(!stopped && queue.is_empty()), queue.into())
    }

    /// Commits one batch: stage what is left, prepare a ticket per daily file, record them
    /// pending with the cursors, commit each file, settle. A dry run only counts.
    async fn commit_batch(
        &mut self,
        state: &mut State,
        mut batch: Batch,
        keep_ids: Option<time::OffsetDateTime>,
    ) -> Result<(), RunError> {
        let sink = self.deps.sink.as_ref();
        let dry_run = self.request.dry_run;
        if let Some(summary) = self.summary.archive.as_mut() {
            let counts = std::mem::take(&mut batch.counts);
            summary.lines += counts.lines;
            summary.before_start += counts.before_start;
            summary.exported_from_graph += counts.exported_from_graph;
            summary.replayed += counts.replayed;
            summary.malformed_lines += counts.malformed_lines;
            for line in counts.malformed {
                if summary.malformed.len() < crate::state::summary::MALFORMED_LISTED {
                    summary.malformed.push(line);
                }
            }
        }
        self.summary.duplicates_skipped += batch.duplicates;
        let mut pending = batch.pending(keep_ids);
        if pending.cursors.is_empty() {
            return Ok(());
        }
        if !dry_run {
            batch.log_staged();
            for (file, rows) in batch.files_to_commit() {
                pending.tickets.push(
                    sink.prepare(file, self.header.clone(), &rows.blocks)
                        .await?,
                );
            }
            if !pending.tickets.is_empty() {
                let archive = archive_of(state)?;
                archive.pending = Some(pending.clone());
                sink.write_state(state_bytes(state)?).await?;
                debug!(files = pending.tickets.len(), "pending commit recorded");
                sink.ensure_locked().await?;
                for ticket in &pending.tickets {
                    sink.commit(ticket).await?;
                    debug!(file = %ticket.file, "commit landed");
                }
                // Both rebuilt by this run (or, after a crash, the next): new rows in a report
                // day the summaries already cover change them as much as `latest.csv`.
                state.latest_dirty = true;
                state.summaries_dirty = true;
            }
        }
        let archive = archive_of(state)?;
        archive.pending = None;
        archive.apply(pending, keep_ids);
        archive.learn_bytes_per_row(batch.bytes, batch.rows);
        if !dry_run {
            sink.write_state(state_bytes(state)?).await?;
        }
        self.summary.rows += batch.rows;
        for (file, rows) in &batch.files {
            if rows.rows > 0 {
                *self.summary.files.entry(file.clone()).or_default() += rows.rows;
            }
        }
        if let Some(summary) = self.summary.archive.as_mut() {
            summary.bytes += batch.bytes;
        }
        info!(
            rows = batch.rows,
            files = batch.files.values().filter(|r| r.rows > 0).count(),
            blobs = batch.reads.len(),
            bytes = batch.bytes,
            "batch committed"
        );
        Ok(())
    }

    /// Moves the archive's start up to [`jobs::HORIZON`] ago (less what is left unread) and
    /// forgets the cursors below it; a blob whose last line never got its end is reported.
    fn forget_old_blobs(
        &mut self,
        archive: &mut ArchiveState,
        now: time::OffsetDateTime,
        left: &[Job],
    ) {
        let start = jobs::next_start(now, left);
        for (path, cursor) in &archive.cursors {
            if cursor.offset < cursor.length
                && jobs::cursor_hour(path).is_some_and(|hour| hour < start)
            {
                if let Some(summary) = self.summary.archive.as_mut() {
                    summary.malformed(Malformed {
                        blob: path.clone(),
                        offset: cursor.offset,
                        record: None,
                        reason: format!(
                            "a last line without its end, not completed within {} hours: skipped",
                            jobs::HORIZON.whole_hours()
                        ),
                    });
                }
            }
        }
        archive.move_start(start);
    }

    /// The summary's archive figures that need the final state: the newest sign-in exported
    /// (the summary's `watermark` on this source) and the runs without progress. A run made
    /// progress when it consumed bytes, or when it read everything listed (what it found may
    /// have been only a last line still without its end, which is not being stuck).
    pub(super) fn record_archive(&mut self, succeeded: bool) {
        let consumed = self.summary.archive.as_ref().is_some_and(|a| a.bytes > 0);
        let progressed = consumed || (succeeded && self.summary.remaining.is_none());
        if let Some(state) = self.state.as_mut() {
            self.summary.watermark = state.archive.as_ref().and_then(|a| a.newest).map(|n| n.0);
            if !self.request.dry_run {
                self.summary.stalled_runs = state.record_progress(progressed, self.had_work);
            }
        }
    }
}

/// The archive part of a state that has one (every archive run sets it first).
fn archive_of(state: &mut State) -> Result<&mut ArchiveState, RunError> {
    state
        .archive
        .as_mut()
        .ok_or(RunError::Unsupported(NO_READER))
}

/// The source prefix (`tenantId=<id>/`) of this export's blobs: the one recorded, else the
/// one of this app's tenant among those listed (the only one, unless the settings name another
/// tenant). `None` while nothing is archived.
async fn own_prefix(
    source: &ArchiveSource,
    archive: &mut ArchiveState,
    listed: &[ListedBlob],
) -> Result<Option<String>, RunError> {
    if let Some(prefix) = &archive.prefix {
        return Ok(Some(prefix.clone()));
    }
    let prefixes: BTreeSet<&str> = listed
        .iter()
        .filter_map(|b| b.hour.as_ref())
        .map(|h| h.prefix.as_str())
        .collect();
    let Some(&first) = prefixes.first() else {
        return Ok(None);
    };
    // A token is fetched only to tell several tenants' blobs apart: a deployment reading the
    // archive and writing the export with SASes may have no identity at all.
    let tenant = match &source.tokens {
        Some(tokens) if prefixes.len() > 1 => tokens.tenant().await.ok(),
        Some(tokens) => tokens.configured_tenant(),
        None => None,
    };
    let chosen = match &tenant {
        Some(tenant) => prefixes
            .iter()
            .find(|p| prefix_tenant(p).is_some_and(|t| t.eq_ignore_ascii_case(tenant)))
            .copied()
            .or_else(|| (prefixes.len() == 1 && prefix_tenant(first).is_none()).then_some(first)),
        None => (prefixes.len() == 1).then_some(first),
    };
    let Some(chosen) = chosen else {
        let seen: Vec<&str> = prefixes
            .iter()
            .map(|p| prefix_tenant(p).unwrap_or(p))
            .collect();
        return Err(RunError::Source(SourceError::Other {
            what: "the diagnostic-settings export".to_string(),
            detail: format!(
                "its containers hold the sign-ins of {}, and none is this app's tenant ({}): \
                 SIGNINS_DIAGNOSTIC_STORAGE points at (or shares) another tenant's export; use \
                 the storage account this tenant's diagnostic setting writes to \
                 (`signin-export check` lists the tenants)",
                seen.join(", "),
                tenant
                    .as_deref()
                    .unwrap_or("unknown: no token to read it from")
            ),
        }));
    };
    info!(prefix = chosen, "reading this tenant's blobs");
    archive.prefix = Some(chosen.to_string());
    Ok(Some(chosen.to_string()))
}

/// Waits until `at` (forever without one).
async fn until(at: Option<std::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Reads one batch: up to `in_flight` blobs at once from the front of `queue`, until the batch
/// is full, the queue is empty, or reading stops (the deadline, a failure). Reads the batch did
/// not finish go back to the front of the queue, from where they stopped.
#[allow(clippy::too_many_arguments)]
async fn read_batch(
    ctx: &ReadContext<'_>,
    reader: &DiagnosticReader,
    in_flight: usize,
    batch: &Mutex<Batch>,
    queue: &mut VecDeque<Job>,
    stop: &CancellationToken,
    stop_at: Option<std::time::Instant>,
    cancel: &CancellationToken,
) -> Result<BatchRead, RunError> {
    let deadline = until(stop_at);
    tokio::pin!(deadline);
    let mut reads = FuturesUnordered::new();
    let mut unfinished = Vec::new();
    let mut read = BatchRead {
        stopped: stop.is_cancelled(),
        ..BatchRead::default()
    };
    loop {
        while !read.stopped && reads.len() < in_flight && !lock(batch).full(ctx.batch_bytes) {
            let Some(job) = queue.pop_front() else { break };
            reads.push(read_job(ctx, reader, batch, stop, job));
        }
        if reads.is_empty() {
            break;
        }
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(RunError::Cancelled),
            _ = &mut deadline, if !read.stopped => {
                info!("deadline: reads stop and commit what they read");
                read.stopped = true;
                stop.cancel();
            }
            Some(ended) = reads.next() => {
                let Ended { job, consumed, complete, error } = ended?;
                match error {
                    None if complete => read.done += 1,
                    None => unfinished.push(Job { from: consumed, ..job }),
                    Some(SourceError::Changed { what, detail }) => {
                        // Written again while it was read: the next run lists it again.
                        warn!(blob = %what, detail = %detail, "a blob changed while it was read; the next run reads it again");
                    }
                    Some(error) => {
                        warn!(blob = %job.path(), error = %error, "a read failed; committing what every read has");
                        unfinished.push(Job { from: consumed, ..job });
                        read.failure.get_or_insert(error);
                        read.stopped = true;
                        stop.cancel();
                    }
                }
            }
        }
    }
    unfinished.sort_by(|a, b| (a.hour(), &a.blob.key).cmp(&(b.hour(), &b.blob.key)));
    for job in unfinished.into_iter().rev() {
        queue.push_front(job);
    }
    Ok(read)
}

/// Reads one blob's range piece by piece into the batch, until it ends, the batch is full
/// (once this read took something) or reading stops.
async fn read_job(
    ctx: &ReadContext<'_>,
    reader: &DiagnosticReader,
    batch: &Mutex<Batch>,
    stop: &CancellationToken,
    job: Job,
) -> Result<Ended, RunError> {
    let mut consumed = job.from;
    let ended = |job: Job, consumed: u64, complete: bool, error: Option<SourceError>| Ended {
        job,
        consumed,
        complete,
        error,
    };
    let mut lines = match reader.open(&job.blob, job.from, job.to) {
        Ok(lines) => lines,
        Err(e) => return Ok(ended(job, consumed, false, Some(e))),
    };
    loop {
        if stop.is_cancelled() || (consumed > job.from && lock(batch).full(ctx.batch_bytes)) {
            return Ok(ended(job, consumed, false, None));
        }
        let piece = tokio::select! {
            biased;
            _ = stop.cancelled() => return Ok(ended(job, consumed, false, None)),
            piece = lines.next_piece() => piece,
        };
        let full = match piece {
            Ok(None) => return Ok(ended(job, consumed, true, None)),
            Ok(Some(piece)) => {
                let full = lock(batch).take_piece(ctx, &job.blob, job.from, &piece);
                let bytes = piece.consumed.saturating_sub(consumed);
                consumed = consumed.max(piece.consumed);
                debug!(blob = %job.blob.key.name, consumed, "piece read");
                if let Some(observer) = ctx.observer {
                    observer.archive_piece(usize::try_from(bytes).unwrap_or(usize::MAX));
                }
                full
            }
            Err(e) => return Ok(ended(job, consumed, false, Some(e))),
        };
        for (file, data) in full {
            ctx.stage(batch, file, data).await?;
        }
    }
}
