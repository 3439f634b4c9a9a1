//! Sinks: where the CSV files land, and the primitives the exactly-once commit protocol needs.
//!
//! Both sinks write the same layout under their base (`<destination>/<preset>/`):
//!
//! ```text
//! daily/YYYY-MM-DD.csv   every exported sign-in of that UTC day, once; header once at the top
//! latest.csv             the last N days, newest first; replaced atomically
//! summary/*.csv          the map-ready summaries of the same days; each replaced atomically
//! _state/state.json      watermark, overlap ids, pending commit, last run summary
//! _state/tally/*.bin     per daily file, what the summaries need of it, and the file's version
//! ```
//!
//! A daily file grows by *staging* blocks of encoded rows and then *committing* them in one atomic
//! step (Blob: Put Block List; local: write a temp file and rename). The new rows go right after the
//! header, ahead of the rows already there, so each file stays roughly newest-first. The commit is
//! split into `prepare` (returns a [`CommitTicket`] that the pipeline persists in the state *before*
//! committing) and `commit`, so that after a crash [`Sink::is_committed`] can tell whether the
//! ticket's commit happened. See `state.rs` for the protocol.

pub mod blob;
pub mod local;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::config::{Destination, Preset};
use crate::credential::TokenProvider;

/// Path of the state document, relative to the sink's base.
pub const STATE_FILE: &str = "_state/state.json";
/// Path of the rolling report, relative to the sink's base.
pub const LATEST_FILE: &str = "latest.csv";

/// Path of the daily file for a UTC day, relative to the sink's base.
pub fn daily_file(day: time::Date) -> String {
    format!(
        "daily/{:04}-{:02}-{:02}.csv",
        day.year(),
        u8::from(day.month()),
        day.day()
    )
}

/// One version of a file, as the sink tells it without reading the file (Blob Storage: its ETag;
/// a local folder: device, inode, size and modification time). Every change of the file changes
/// it, so the same version means the same bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FileVersion(String);

impl FileVersion {
    pub fn new(text: impl Into<String>) -> FileVersion {
        FileVersion(text.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for FileVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A daily file as listed: its name (relative to the base), version and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyFile {
    pub name: String,
    pub version: FileVersion,
    pub len: u64,
}

/// What a commit changed: the file's version it was prepared on (`None`: the file was new) and
/// the version it made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub before: Option<FileVersion>,
    pub after: FileVersion,
}

/// Identifies one staged block of rows. Always [`BlockId::LEN`] ASCII characters (Azure requires
/// every block id of a blob to have the same length); sinks may encode it further (Blob: base64).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BlockId(String);

impl BlockId {
    pub const LEN: usize = 32;

    /// The block of run `run` (any string; hashed down) with sequence number `seq`.
    pub fn new(run: &str, seq: u32) -> Self {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(run.as_bytes());
        let mut hex = String::with_capacity(BlockId::LEN);
        for byte in &digest[..11] {
            hex.push_str(&format!("{byte:02x}"));
        }
        // 22 hex chars of run + "-" + 9-digit sequence = 32.
        BlockId(format!("{hex}-{seq:09}"))
    }

    /// The block holding a file's header row.
    pub fn header() -> Self {
        BlockId(format!("{:-<32}", "header"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A prepared, not yet committed, change of one file. Sink-specific details are opaque JSON so
/// the pipeline can persist the ticket in the state document without knowing the sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommitTicket {
    /// File the ticket changes, relative to the sink's base.
    pub file: String,
    /// Sink-specific: what `commit` will do and how `is_committed` recognises it.
    pub detail: serde_json::Value,
}

/// Who holds the single-writer lock, as far as the sink can tell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockHolder {
    /// Free text set by the holder: host, process, invocation id.
    pub holder: String,
    /// When the holder took the lock.
    #[serde(with = "time::serde::rfc3339::option")]
    pub since: Option<OffsetDateTime>,
}

/// Requests a sink sent and bytes it copied, since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkCounters {
    /// Storage requests (one per logical operation; retries not counted).
    pub requests: u64,
    /// Bytes of daily files copied into `latest.csv`.
    pub bytes_copied: u64,
}

/// Result of [`Sink::acquire`].
#[derive(Debug, Clone, PartialEq)]
pub enum LockOutcome {
    Acquired,
    /// Another writer holds the lock: not an error, the caller reports "already running".
    Busy(LockHolder),
}

/// Errors at the sink's edge. Messages never contain SAS tokens, bearer tokens or keys.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The identity may not do what the sink needs; `hint` says which role/permission is missing.
    #[error("access to {what} denied: {hint}")]
    Denied { what: String, hint: String },
    /// Network failure, timeout or 5xx after the retry policy gave up.
    #[error("{what} is unavailable: {detail}")]
    Unavailable { what: String, detail: String },
    /// The single-writer lock was lost (expired or broken) while the run held it.
    #[error("lost the single-writer lock on {what}; stopping before writing anything more")]
    LockLost { what: String },
    /// A file changed under us between prepare and commit (another writer).
    #[error("{what} changed concurrently; nothing was committed")]
    Conflict { what: String },
    /// Anything else, with a message that says what to fix.
    #[error("{0}")]
    Other(String),
}

/// A destination for the export. Methods take paths relative to the sink's base.
#[async_trait]
pub trait Sink: Send + Sync {
    /// Where the files go, for logs and summaries; never contains secrets.
    fn describe(&self) -> String;

    /// Takes the single-writer lock for this base and keeps it (renewing in the background as
    /// needed) until [`Sink::release`]. A crashed holder's lock expires on its own.
    async fn acquire(&self, holder: &str) -> Result<LockOutcome, SinkError>;

    /// Fails with [`SinkError::LockLost`] if the lock taken by `acquire` is no longer held.
    async fn ensure_locked(&self) -> Result<(), SinkError>;

    /// Releases the lock; a no-op if not held.
    async fn release(&self) -> Result<(), SinkError>;

    /// The state document's bytes, or `None` if there is none yet.
    async fn read_state(&self) -> Result<Option<Bytes>, SinkError>;

    /// Atomically replaces the state document. Requires the lock.
    async fn write_state(&self, bytes: Bytes) -> Result<(), SinkError>;

    /// Stages one block of encoded rows for `file`. Invisible to readers until committed.
    async fn stage(&self, file: &str, block: &BlockId, data: Bytes) -> Result<(), SinkError>;

    /// Prepares putting `blocks` (already staged, in order) right after the header of `file`,
    /// ahead of its existing rows. `header` (with BOM) starts the file if it does not exist yet.
    async fn prepare(
        &self,
        file: &str,
        header: Bytes,
        blocks: &[BlockId],
    ) -> Result<CommitTicket, SinkError>;

    /// Makes a prepared ticket visible, atomically: readers see the file before or after, never a
    /// mix. Fails with [`SinkError::Conflict`] if the file changed since `prepare`. Returns the
    /// file's versions before and after.
    async fn commit(&self, ticket: &CommitTicket) -> Result<Committed, SinkError>;

    /// Whether `ticket`'s commit is in the file (used to recover after a crash).
    async fn is_committed(&self, ticket: &CommitTicket) -> Result<bool, SinkError>;

    /// What this sink has done so far, for the run summary (zero where it does not count).
    fn counters(&self) -> SinkCounters {
        SinkCounters::default()
    }

    /// Settles a ticket another (earlier, possibly still running) writer prepared: whether its
    /// commit landed, and — when it has not — makes sure it never can, so a commit delayed in
    /// flight cannot land after this writer re-exports the same rows. The default suits sinks
    /// whose writer cannot outlive its lock (the local folder's OS lock dies with the process).
    async fn fence(&self, ticket: &CommitTicket) -> Result<bool, SinkError> {
        self.is_committed(ticket).await
    }

    /// The existing daily files, any order.
    async fn list_daily(&self) -> Result<Vec<DailyFile>, SinkError>;

    /// `len` bytes of `file` from `offset`, of the file's `version` only: fails with
    /// [`SinkError::Conflict`] when the file is at another version (or gone).
    async fn read_range(
        &self,
        file: &str,
        version: &FileVersion,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, SinkError>;

    /// Atomically replaces (or creates) a whole `file` with `bytes`: readers see the old or the
    /// new file, never a mix. Requires the lock.
    async fn put_file(&self, file: &str, bytes: Bytes) -> Result<(), SinkError>;

    /// Atomically replaces (or creates) a whole `file` with `blocks`, staged for it with
    /// [`Sink::stage`], in order: readers see the old or the new file, never a mix. How a file too
    /// large to hold in memory (a summary, a tally) is written. Requires the lock. Returns the
    /// file's new version.
    async fn put_blocks(&self, file: &str, blocks: &[BlockId]) -> Result<FileVersion, SinkError>;

    /// The version and length of `file`, or `None` if there is no such file: what
    /// [`Sink::read_range`] needs to read a file written by [`Sink::put_file`] or `put_blocks`.
    async fn version_of(&self, file: &str) -> Result<Option<(FileVersion, u64)>, SinkError>;

    /// Atomically replaces `latest.csv` with `header` followed by the rows (without their header)
    /// of `daily_files`, in the given order. `header` is byte-identical to each daily file's own.
    async fn publish_latest(&self, header: Bytes, daily_files: &[String]) -> Result<(), SinkError>;

    /// Downloads a whole file (diagnostics and tests; the pipeline never needs it).
    async fn read(&self, file: &str) -> Result<Option<Bytes>, SinkError>;

    /// Writes and deletes a small probe file: proves the destination is writable.
    async fn probe(&self) -> Result<(), SinkError>;
}

/// Opens the sink for `destination`, writing under `<destination>/<preset>/`. A Blob destination
/// without a SAS uses `tokens` (the Graph credential) with the Storage scope.
pub fn open(
    destination: &Destination,
    preset: Preset,
    tokens: &TokenProvider,
) -> Result<Arc<dyn Sink>, SinkError> {
    match destination {
        Destination::Local(folder) => Ok(Arc::new(local::LocalSink::new(
            folder.join(preset.as_str()),
        ))),
        Destination::Blob {
            container_url,
            prefix,
            sas,
        } => {
            let base = if prefix.is_empty() {
                preset.as_str().to_string()
            } else {
                format!("{}/{}", prefix.trim_end_matches('/'), preset.as_str())
            };
            let auth = match sas {
                Some(sas) => blob::BlobAuth::Sas(sas.clone()),
                None => blob::BlobAuth::Token(
                    tokens
                        .with_scope(crate::credential::STORAGE_SCOPE)
                        .credential(),
                ),
            };
            Ok(Arc::new(blob::BlobSink::new(container_url, &base, auth)?))
        }
    }
}
