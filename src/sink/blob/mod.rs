//! The Azure Blob Storage sink: daily files grown by staged blocks and one atomic Put Block List
//! per commit, the single-writer lock as a lease on the state blob, `latest.csv` assembled
//! server-side from the daily files.
//!
//! # Layout and operations
//!
//! Under `<container>/<base>/` (see [`crate::sink`]): `daily/YYYY-MM-DD.csv`, `latest.csv`,
//! `_state/state.json`. Every operation maps to Blob REST calls as follows:
//!
//! | sink method | Blob REST calls |
//! |---|---|
//! | `acquire` | Lease Blob (acquire, 15–60 s) on the state blob + Set Blob Metadata (holder, since); on first use Put Blob `{}` (and Create Container); when busy, Get Blob Properties |
//! | (background) | Lease Blob (renew) every `renew_every` (default 15 s) while held |
//! | `release` | Lease Blob (release) |
//! | `read_state` | Get Blob |
//! | `write_state` | Put Blob with the lease id (atomic replace; re-sends the holder metadata) |
//! | `stage` | Put Block |
//! | `prepare` | Get Block List (committed) → ETag; if the file is new, Put Block (header) |
//! | `commit` | Put Block List with `If-Match: <etag>` or `If-None-Match: *` (its answer's ETag is the new version); on 412 one Get Block List |
//! | `is_committed` | Get Block List (committed) |
//! | `list_daily` | List Blobs (one call per 5000 files; names, ETags, sizes) |
//! | `read_range` | Get Blob with a range and `If-Match: <etag>` |
//! | `put_file` | Put Blob (a summary or a tally: one atomic replace) |
//! | `publish_latest` | Put Block (header) + per daily file: Get Blob Properties + Put Block From URL per 4000 MiB of rows; then Put Block List |
//! | `probe` | Put Blob + Get Blob + List Blobs + Delete Blob of `_state/probe-<uuid>` |
//!
//! **Cost of a run** that writes `s` slices of `b` blocks each and republishes `latest.csv` over
//! `d` days: `2` (lease + metadata) `+ 1` (read state) `+ s·(b + 1 + 1 + 2)` (stage, block list,
//! commit, two state writes) `+ 2 + 2d` (latest) `+ 1` (list) `+ 1` (release), plus one renewal
//! per 15 s. A typical 30-minute timer run (1 slice, 1 block, 30 days) is about 72 requests. The
//! daily files are never downloaded: `latest.csv` is copied server-side (Put Block From URL with
//! `x-ms-source-range` skipping each file's header), which moves no data through the function.
//! Put Block From URL copies at most 4000 MiB per call, so a larger daily file takes several
//! ranges; a blob holds at most 50 000 committed blocks (each commit adds its staged blocks, so a
//! daily file reaches that only after tens of thousands of commits).
//!
//! # Storage emulators
//!
//! Azurite does not implement Put Block From URL (with a SAS it answers 500 because its SAS
//! permission table lacks the operation; with a token 501 APINotImplemented). With
//! [`LatestCopy::Auto`] (the default) the sink recognises Azurite by its `Server` header (or any
//! service by a 501) and switches, once per sink and with a warning, to
//! [`LatestCopy::Download`]: each daily file's rows are downloaded in 4 MiB ranges (pinned to the
//! file's ETag) and staged as blocks, with the same atomic Put Block List at the end; that costs
//! `d·3` requests instead of `d·2` and moves the data through the function.
//! [`LatestCopy::ServerSide`] never falls back.
//!
//! # Secrets
//!
//! The SAS is only ever appended to request URLs (and to the source URL in `x-ms-copy-source`);
//! tokens only travel in `Authorization` and `x-ms-copy-source-authorization` headers (the SDK's
//! logging redacts `sig` and both headers). Every error message goes through
//! [`errors::redact`] plus a literal scrub of this sink's SAS, and [`BlobSink::describe`] never
//! shows a query string.
//!
//! # Where things are
//!
//! This file holds the [`BlobSink`] type and its [`Sink`] implementation, which delegates to:
//! `client` (authentication, tunables, URLs and clients, SAS scrubbing, creating the
//! container), `http` (retry policy and request counting), `lock` (acquire / ensure / release)
//! over `lease` (the held lease and its renewals), `state` (the state blob), `files` (stage,
//! prepare, commit, list, read, probe), `latest` (`latest.csv`), `blocks` (pure block
//! bookkeeping) and [`errors`] (redaction and error classification).

mod blocks;
mod client;
pub mod errors;
mod files;
/// The HTTP pipeline (retries, request counting), shared with the diagnostic-settings reader.
pub(crate) mod http;
mod latest;
mod lease;
mod lock;
mod state;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use url::Url;

use crate::sink::{
    BlockId, CommitTicket, Committed, DailyFile, FileVersion, LockOutcome, Sink, SinkCounters,
    SinkError,
};

use client::Inner;
use lease::HeldLease;

pub use client::{BlobAuth, BlobSinkOptions};
pub use http::RequestCounts;
pub use latest::LatestCopy;

/// Writes the export to one container (and optional path prefix) of Azure Blob Storage.
///
/// Dropping the sink stops the lease renewals without releasing the lease: like a crashed
/// holder, its lease then expires after the lease duration.
pub struct BlobSink {
    inner: Arc<Inner>,
    lease: tokio::sync::Mutex<Option<HeldLease>>,
}

impl BlobSink {
    /// A sink writing under `container_url` (`https://account.blob.core.windows.net/container`, or
    /// Azurite's `http://127.0.0.1:PORT/devstoreaccount1/container`) at path `base` (`""` allowed).
    pub fn new(container_url: &Url, base: &str, auth: BlobAuth) -> Result<BlobSink, SinkError> {
        BlobSink::with_options(container_url, base, auth, BlobSinkOptions::default())
    }

    /// [`BlobSink::new`] with explicit tunables (tests use short leases and retries).
    pub fn with_options(
        container_url: &Url,
        base: &str,
        auth: BlobAuth,
        options: BlobSinkOptions,
    ) -> Result<BlobSink, SinkError> {
        Ok(BlobSink {
            inner: Arc::new(Inner::new(container_url, base, auth, options)?),
            lease: tokio::sync::Mutex::new(None),
        })
    }

    /// Requests sent so far by this sink (including the lease renewals).
    pub fn request_counts(&self) -> RequestCounts {
        self.inner.counters.snapshot()
    }

    /// Successful renewals of the lease held now (0 when none is held): tests wait on them
    /// rather than on the clock.
    pub async fn lease_renewals(&self) -> u32 {
        self.lease
            .lock()
            .await
            .as_ref()
            .map_or(0, |held| held.health.renewals())
    }

    /// How `latest.csv` is currently assembled (Auto turns into Download after a 501).
    pub fn latest_copy(&self) -> LatestCopy {
        LatestCopy::from_u8(self.inner.latest_mode.load(Ordering::Relaxed))
    }
}

#[async_trait]
impl Sink for BlobSink {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn acquire(&self, holder: &str) -> Result<LockOutcome, SinkError> {
        lock::acquire(self, holder).await
    }

    async fn ensure_locked(&self) -> Result<(), SinkError> {
        lock::ensure_locked(self).await
    }

    async fn release(&self) -> Result<(), SinkError> {
        lock::release(self).await
    }

    async fn read_state(&self) -> Result<Option<Bytes>, SinkError> {
        state::read_state(self).await
    }

    async fn write_state(&self, bytes: Bytes) -> Result<(), SinkError> {
        state::write_state(self, bytes).await
    }

    async fn stage(&self, file: &str, block: &BlockId, data: Bytes) -> Result<(), SinkError> {
        files::stage(self, file, block, data).await
    }

    async fn prepare(
        &self,
        file: &str,
        header: Bytes,
        blocks: &[BlockId],
    ) -> Result<CommitTicket, SinkError> {
        files::prepare(self, file, header, blocks).await
    }

    async fn commit(&self, ticket: &CommitTicket) -> Result<Committed, SinkError> {
        files::commit(self, ticket).await
    }

    async fn is_committed(&self, ticket: &CommitTicket) -> Result<bool, SinkError> {
        files::is_committed(self, ticket).await
    }

    fn counters(&self) -> SinkCounters {
        let counts = self.request_counts();
        SinkCounters {
            requests: counts.requests,
            bytes_copied: counts.bytes_copied,
        }
    }

    async fn fence(&self, ticket: &CommitTicket) -> Result<bool, SinkError> {
        files::fence(self, ticket).await
    }

    async fn list_daily(&self) -> Result<Vec<DailyFile>, SinkError> {
        files::list_daily(self).await
    }

    async fn read_range(
        &self,
        file: &str,
        version: &FileVersion,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, SinkError> {
        files::read_range(self, file, version, offset, len).await
    }

    async fn put_file(&self, file: &str, bytes: Bytes) -> Result<(), SinkError> {
        files::put_file(self, file, bytes).await
    }

    async fn put_blocks(&self, file: &str, blocks: &[BlockId]) -> Result<FileVersion, SinkError> {
        files::put_blocks(self, file, blocks).await
    }

    async fn version_of(&self, file: &str) -> Result<Option<(FileVersion, u64)>, SinkError> {
        files::version_of(self, file).await
    }

    async fn publish_latest(&self, header: Bytes, daily_files: &[String]) -> Result<(), SinkError> {
        latest::publish(self, header, daily_files).await
    }

    async fn read(&self, file: &str) -> Result<Option<Bytes>, SinkError> {
        files::read(self, file).await
    }

    async fn probe(&self) -> Result<(), SinkError> {
        files::probe(self).await
    }
}
