//! A local-folder sink that fails on demand and says what it was asked: a "crash" at the N-th
//! commit (before it, or right after it landed), an outage while `latest.csv` or a summary is
//! written; the daily-file bytes read back and the whole files replaced.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;

use signin_export::sink::local::LocalSink;
use signin_export::sink::{
    BlockId, CommitTicket, Committed, DailyFile, FileVersion, LockOutcome, Sink, SinkError,
};

pub struct FaultySink {
    inner: LocalSink,
    commits: AtomicU32,
    /// Fail the N-th commit (0: never)…
    pub crash_at: AtomicU32,
    /// …after it landed (the run never settles it) rather than before.
    pub after_commit: AtomicBool,
    /// Rebuilding `latest.csv` fails.
    pub fail_latest: AtomicBool,
    /// Writing a summary (`summary/…`) fails.
    pub fail_summaries: AtomicBool,
    /// Bytes of daily files read back, per file.
    daily_bytes_read: Mutex<BTreeMap<String, u64>>,
    /// Whole files replaced (summaries, tallies), with how often.
    put: Mutex<BTreeMap<String, u32>>,
}

impl FaultySink {
    pub fn new(base: std::path::PathBuf) -> Arc<FaultySink> {
        Arc::new(FaultySink {
            inner: LocalSink::new(base),
            commits: AtomicU32::new(0),
            crash_at: AtomicU32::new(0),
            after_commit: AtomicBool::new(false),
            fail_latest: AtomicBool::new(false),
            fail_summaries: AtomicBool::new(false),
            daily_bytes_read: Mutex::default(),
            put: Mutex::default(),
        })
    }

    /// What was watched since the last call: daily-file bytes read back, files replaced.
    pub fn take_watched(&self) -> (BTreeMap<String, u64>, BTreeMap<String, u32>) {
        (
            std::mem::take(&mut *self.daily_bytes_read.lock().unwrap()),
            std::mem::take(&mut *self.put.lock().unwrap()),
        )
    }

    fn outage(what: &str, detail: &str) -> SinkError {
        SinkError::Unavailable {
            what: what.into(),
            detail: detail.into(),
        }
    }
}

#[async_trait]
impl Sink for FaultySink {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn acquire(&self, holder: &str) -> Result<LockOutcome, SinkError> {
        self.inner.acquire(holder).await
    }
    async fn ensure_locked(&self) -> Result<(), SinkError> {
        self.inner.ensure_locked().await
    }
    async fn release(&self) -> Result<(), SinkError> {
        self.inner.release().await
    }
    async fn read_state(&self) -> Result<Option<Bytes>, SinkError> {
        self.inner.read_state().await
    }
    async fn write_state(&self, bytes: Bytes) -> Result<(), SinkError> {
        self.inner.write_state(bytes).await
    }
    async fn stage(&self, file: &str, block: &BlockId, data: Bytes) -> Result<(), SinkError> {
        self.inner.stage(file, block, data).await
    }
    async fn prepare(
        &self,
        file: &str,
        header: Bytes,
        blocks: &[BlockId],
    ) -> Result<CommitTicket, SinkError> {
        self.inner.prepare(file, header, blocks).await
    }
    async fn commit(&self, ticket: &CommitTicket) -> Result<Committed, SinkError> {
        let n = self.commits.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.crash_at.load(Ordering::SeqCst) {
            if self.after_commit.load(Ordering::SeqCst) {
                self.inner.commit(ticket).await?;
            }
            return Err(FaultySink::outage("test", "simulated crash"));
        }
        self.inner.commit(ticket).await
    }
    async fn is_committed(&self, ticket: &CommitTicket) -> Result<bool, SinkError> {
        self.inner.is_committed(ticket).await
    }
    async fn list_daily(&self) -> Result<Vec<DailyFile>, SinkError> {
        self.inner.list_daily().await
    }
    async fn read_range(
        &self,
        file: &str,
        version: &FileVersion,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, SinkError> {
        // Tallies are read in ranges too; only daily files read back are watched.
        if file.starts_with("daily/") {
            *self
                .daily_bytes_read
                .lock()
                .unwrap()
                .entry(file.to_string())
                .or_default() += len;
        }
        self.inner.read_range(file, version, offset, len).await
    }
    async fn put_file(&self, file: &str, bytes: Bytes) -> Result<(), SinkError> {
        if file.starts_with("summary/") && self.fail_summaries.load(Ordering::SeqCst) {
            return Err(FaultySink::outage(
                file,
                "simulated outage while writing the summaries",
            ));
        }
        *self
            .put
            .lock()
            .unwrap()
            .entry(file.to_string())
            .or_default() += 1;
        self.inner.put_file(file, bytes).await
    }
    async fn put_blocks(&self, file: &str, blocks: &[BlockId]) -> Result<FileVersion, SinkError> {
        if file.starts_with("summary/") && self.fail_summaries.load(Ordering::SeqCst) {
            return Err(FaultySink::outage(
                file,
                "simulated outage while writing the summaries",
            ));
        }
        *self
            .put
            .lock()
            .unwrap()
            .entry(file.to_string())
            .or_default() += 1;
        self.inner.put_blocks(file, blocks).await
    }
    async fn version_of(&self, file: &str) -> Result<Option<(FileVersion, u64)>, SinkError> {
        self.inner.version_of(file).await
    }
    async fn publish_latest(&self, header: Bytes, files: &[String]) -> Result<(), SinkError> {
        if self.fail_latest.load(Ordering::SeqCst) {
            return Err(FaultySink::outage(
                "test",
                "simulated outage while rebuilding latest.csv",
            ));
        }
        self.inner.publish_latest(header, files).await
    }
    async fn read(&self, file: &str) -> Result<Option<Bytes>, SinkError> {
        self.inner.read(file).await
    }
    async fn probe(&self) -> Result<(), SinkError> {
        self.inner.probe().await
    }
}
