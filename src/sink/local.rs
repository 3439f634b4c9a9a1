//! Local-folder sink: the same layout as the Blob sink, every file replaced atomically
//! (write a temp file in the same folder, fsync, rename).
//!
//! Staged blocks are files under `_staging/`; `prepare` assembles the complete new file next to the
//! target and records its identity (device, inode, size, modification time) in the ticket,
//! `commit` renames it into place — a rename keeps the identity — and `is_committed` compares the
//! target's identity with the ticket's. No file is hashed: that cost a whole read of the daily
//! file per check. The single-writer lock is an
//! exclusive OS file lock (`flock`) on `_state/lock`, held for the whole run: the kernel releases
//! it when the holder exits or crashes, so there is no expiry to wait for and no takeover that two
//! processes could race. The file itself carries the holder's name and start time for the
//! "already running" message.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::io::AsyncReadExt;

use super::{
    BlockId, CommitTicket, Committed, DailyFile, FileVersion, LockHolder, LockOutcome, Sink,
    SinkError, LATEST_FILE, STATE_FILE,
};

const LOCK_FILE: &str = "_state/lock";
const STAGING: &str = "_staging";

/// Writes under `<folder>/<preset>/`.
pub struct LocalSink {
    base: PathBuf,
    lock: Mutex<Option<HeldLock>>,
}

/// The open, locked `_state/lock`: the lock lasts as long as this handle.
struct HeldLock {
    file: std::fs::File,
}

/// What the lock file says about its holder.
#[derive(Debug, Serialize, Deserialize)]
struct LockDoc {
    holder: String,
    #[serde(with = "time::serde::rfc3339")]
    since: OffsetDateTime,
}

#[derive(Debug, Serialize, Deserialize)]
struct TicketDetail {
    /// The fully assembled new file, next to the target.
    temp: String,
    /// The new file's identity: the target has it exactly when the commit happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stamp: Option<FileStamp>,
    /// The target's identity when prepared (`None`: it did not exist).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    before_stamp: Option<FileStamp>,
    /// SHA-256 (hex) of the new file, in tickets written before identities were recorded: a
    /// pending ticket of an older version is still settled correctly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
}

/// What identifies one version of a file without reading it. A rename keeps all four; a rewrite
/// (a new temp file renamed over it) changes the inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

impl FileStamp {
    fn of(metadata: &std::fs::Metadata) -> FileStamp {
        use std::os::unix::fs::MetadataExt;
        FileStamp {
            dev: metadata.dev(),
            ino: metadata.ino(),
            len: metadata.len(),
            mtime_ns: i128::from(metadata.mtime()) * 1_000_000_000
                + i128::from(metadata.mtime_nsec()),
        }
    }

    /// The sink's [`FileVersion`] of the file with this identity.
    fn version(self) -> FileVersion {
        FileVersion::new(format!(
            "{}-{}-{}-{}",
            self.dev, self.ino, self.len, self.mtime_ns
        ))
    }
}

async fn stamp_of(path: &Path) -> Result<Option<FileStamp>, SinkError> {
    match tokio::fs::metadata(path).await {
        Ok(metadata) => Ok(Some(FileStamp::of(&metadata))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path, e)),
    }
}

fn io_error(what: &Path, e: std::io::Error) -> SinkError {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => SinkError::Denied {
            what: what.display().to_string(),
            hint: "the folder is not writable by this user".into(),
        },
        _ => SinkError::Unavailable {
            what: what.display().to_string(),
            detail: e.to_string(),
        },
    }
}

async fn sha256_of(path: &Path) -> Result<Option<String>, SinkError> {
    let mut file = match tokio::fs::File::open(path).await {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(path, e)),
    };
    let mut hasher = Sha256::new();
    let mut chunk = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut chunk).await.map_err(|e| io_error(path, e))?;
        if n == 0 {
            return Ok(Some(hex(&hasher.finalize())));
        }
        hasher.update(&chunk[..n]);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl LocalSink {
    /// A sink writing under `base` (created if missing).
    pub fn new(base: impl Into<PathBuf>) -> LocalSink {
        LocalSink {
            base: base.into(),
            lock: Mutex::new(None),
        }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.base.join(file)
    }

    fn staged(&self, file: &str, block: &BlockId) -> PathBuf {
        self.base
            .join(STAGING)
            .join(file.replace('/', "_"))
            .join(block.as_str())
    }

    /// Writes `parts` (files and byte slices) to a new temp file beside `target`; returns its path
    /// and identity. Nothing is visible at `target` until the caller renames it.
    async fn assemble(
        &self,
        target: &Path,
        parts: Vec<Part>,
    ) -> Result<(PathBuf, FileStamp), SinkError> {
        let dir = target.parent().unwrap_or(&self.base).to_path_buf();
        let name = target
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("file");
        let temp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
        let writing = temp.clone();
        let stamp = tokio::task::spawn_blocking(move || write_parts(&dir, &writing, &parts))
            .await
            .map_err(|e| SinkError::Other(format!("writing {}: {e}", temp.display())))??;
        Ok((temp, stamp))
    }

    async fn replace(&self, temp: &Path, target: &Path) -> Result<(), SinkError> {
        tokio::fs::rename(temp, target)
            .await
            .map_err(|e| io_error(target, e))?;
        // Make the rename itself durable.
        if let Some(dir) = target.parent() {
            if let Ok(dir) = tokio::fs::File::open(dir).await {
                let _ = dir.sync_all().await;
            }
        }
        Ok(())
    }

    /// The holder named in the lock file, if it can be read.
    async fn read_holder(&self) -> Option<LockDoc> {
        let bytes = tokio::fs::read(self.path(LOCK_FILE)).await.ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

enum Part {
    Bytes(Bytes),
    File { path: PathBuf, skip: usize },
}

/// [`LocalSink::assemble`]'s blocking half. Byte parts are written from the caller's buffer (no
/// copy into an async file's own buffer), and file parts are copied by the kernel
/// (`std::io::copy` uses `copy_file_range` between files): daily files can be large, memory
/// stays flat.
fn write_parts(dir: &Path, temp: &Path, parts: &[Part]) -> Result<FileStamp, SinkError> {
    use std::io::{Seek, Write};
    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    let mut out = std::fs::File::create(temp).map_err(|e| io_error(temp, e))?;
    for part in parts {
        match part {
            Part::Bytes(bytes) => out.write_all(bytes).map_err(|e| io_error(temp, e))?,
            Part::File { path, skip } => {
                let mut input = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
                let len = input.metadata().map_err(|e| io_error(path, e))?.len();
                if len < *skip as u64 {
                    return Err(SinkError::Other(format!(
                        "{} is shorter than its header; it was changed by hand",
                        path.display()
                    )));
                }
                input
                    .seek(std::io::SeekFrom::Start(*skip as u64))
                    .map_err(|e| io_error(path, e))?;
                std::io::copy(&mut input, &mut out).map_err(|e| io_error(path, e))?;
            }
        }
    }
    out.sync_all().map_err(|e| io_error(temp, e))?;
    let metadata = out.metadata().map_err(|e| io_error(temp, e))?;
    Ok(FileStamp::of(&metadata))
}

/// [`LocalSink::read_range`]'s blocking half: the version is checked on the open file, so the
/// bytes read are that version's even if the path is replaced meanwhile.
fn read_range_of(
    path: &Path,
    version: &FileVersion,
    offset: u64,
    len: u64,
) -> Result<Bytes, SinkError> {
    use std::io::{Read, Seek};
    let changed = || SinkError::Conflict {
        what: path.display().to_string(),
    };
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(changed()),
        Err(e) => return Err(io_error(path, e)),
    };
    let metadata = file.metadata().map_err(|e| io_error(path, e))?;
    if FileStamp::of(&metadata).version() != *version {
        return Err(changed());
    }
    if offset.saturating_add(len) > metadata.len() {
        return Err(SinkError::Other(format!(
            "{}: {len} bytes at {offset} asked of a file of {}",
            path.display(),
            metadata.len()
        )));
    }
    file.seek(std::io::SeekFrom::Start(offset))
        .map_err(|e| io_error(path, e))?;
    let mut bytes = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX)];
    file.read_exact(&mut bytes).map_err(|e| io_error(path, e))?;
    Ok(Bytes::from(bytes))
}

/// Opens `path` (creating it) and takes an exclusive lock without waiting; `Ok(None)` when
/// another process holds it. Blocking file calls: run on the blocking pool.
fn try_lock_file(path: &Path, doc: &LockDoc) -> std::io::Result<Option<std::fs::File>> {
    use std::io::{Seek, Write};
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
        Err(std::fs::TryLockError::Error(e)) => return Err(e),
    }
    let bytes = serde_json::to_vec(doc).map_err(std::io::Error::other)?;
    file.set_len(0)?;
    file.rewind()?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    Ok(Some(file))
}

/// Whether `held` is still the file at `path` (not deleted and replaced by another writer's).
fn same_file(held: &std::fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (held.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[async_trait]
impl Sink for LocalSink {
    fn describe(&self) -> String {
        self.base.display().to_string()
    }

    async fn acquire(&self, holder: &str) -> Result<LockOutcome, SinkError> {
        let path = self.path(LOCK_FILE);
        let dir = self.base.join("_state");
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| io_error(&dir, e))?;
        let doc = LockDoc {
            holder: holder.to_string(),
            since: OffsetDateTime::now_utc(),
        };
        let locking = path.clone();
        let locked = tokio::task::spawn_blocking(move || try_lock_file(&locking, &doc))
            .await
            .map_err(|e| io_error(&path, std::io::Error::other(e)))?
            .map_err(|e| io_error(&path, e))?;
        let Some(file) = locked else {
            let current = self.read_holder().await;
            return Ok(LockOutcome::Busy(LockHolder {
                holder: current
                    .as_ref()
                    .map(|d| d.holder.clone())
                    .unwrap_or_else(|| "another process".into()),
                since: current.map(|d| d.since),
            }));
        };
        if let Ok(mut held) = self.lock.lock() {
            *held = Some(HeldLock { file });
        }
        Ok(LockOutcome::Acquired)
    }

    async fn ensure_locked(&self) -> Result<(), SinkError> {
        let path = self.path(LOCK_FILE);
        let still_ours = self
            .lock
            .lock()
            .ok()
            .is_some_and(|held| held.as_ref().is_some_and(|h| same_file(&h.file, &path)));
        if still_ours {
            Ok(())
        } else {
            Err(SinkError::LockLost {
                what: path.display().to_string(),
            })
        }
    }

    async fn release(&self) -> Result<(), SinkError> {
        // Closing the handle releases the OS lock; the file stays for the next holder.
        let held = self.lock.lock().ok().and_then(|mut held| held.take());
        drop(held);
        Ok(())
    }

    async fn read_state(&self) -> Result<Option<Bytes>, SinkError> {
        let path = self.path(STATE_FILE);
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(Some(Bytes::from(bytes))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(&path, e)),
        }
    }

    async fn write_state(&self, bytes: Bytes) -> Result<(), SinkError> {
        self.ensure_locked().await?;
        let target = self.path(STATE_FILE);
        let (temp, _) = self.assemble(&target, vec![Part::Bytes(bytes)]).await?;
        self.replace(&temp, &target).await
    }

    async fn stage(&self, file: &str, block: &BlockId, data: Bytes) -> Result<(), SinkError> {
        let path = self.staged(file, block);
        let (temp, _) = self.assemble(&path, vec![Part::Bytes(data)]).await?;
        self.replace(&temp, &path).await
    }

    async fn prepare(
        &self,
        file: &str,
        header: Bytes,
        blocks: &[BlockId],
    ) -> Result<CommitTicket, SinkError> {
        let target = self.path(file);
        let before = stamp_of(&target).await?;
        let mut parts = vec![Part::Bytes(header.clone())];
        for block in blocks {
            parts.push(Part::File {
                path: self.staged(file, block),
                skip: 0,
            });
        }
        if before.is_some() {
            let mut head = vec![0u8; header.len()];
            let mut existing = tokio::fs::File::open(&target)
                .await
                .map_err(|e| io_error(&target, e))?;
            let starts_with_header =
                existing.read_exact(&mut head).await.is_ok() && head[..] == header[..];
            if !starts_with_header {
                return Err(SinkError::Other(format!(
                    "{} does not start with the expected header; it was edited or written with other columns",
                    target.display()
                )));
            }
            parts.push(Part::File {
                path: target.clone(),
                skip: header.len(),
            });
        }
        let (temp, stamp) = self.assemble(&target, parts).await?;
        let detail = TicketDetail {
            temp: temp.display().to_string(),
            stamp: Some(stamp),
            before_stamp: before,
            sha256: None,
        };
        Ok(CommitTicket {
            file: file.to_string(),
            detail: serde_json::to_value(detail).map_err(|e| SinkError::Other(e.to_string()))?,
        })
    }

    async fn commit(&self, ticket: &CommitTicket) -> Result<Committed, SinkError> {
        let detail: TicketDetail = serde_json::from_value(ticket.detail.clone())
            .map_err(|e| SinkError::Other(format!("not a local-folder commit ticket: {e}")))?;
        let target = self.path(&ticket.file);
        let Some(stamp) = detail.stamp else {
            return Err(SinkError::Conflict {
                what: target.display().to_string(),
            });
        };
        if stamp_of(&target).await? != detail.before_stamp {
            return Err(SinkError::Conflict {
                what: target.display().to_string(),
            });
        }
        self.replace(Path::new(&detail.temp), &target).await?;
        let staging = self.base.join(STAGING).join(ticket.file.replace('/', "_"));
        let _ = tokio::fs::remove_dir_all(staging).await;
        // A rename keeps the identity the new file had when it was assembled.
        Ok(Committed {
            before: detail.before_stamp.map(FileStamp::version),
            after: stamp.version(),
        })
    }

    async fn is_committed(&self, ticket: &CommitTicket) -> Result<bool, SinkError> {
        let detail: TicketDetail = serde_json::from_value(ticket.detail.clone())
            .map_err(|e| SinkError::Other(format!("not a local-folder commit ticket: {e}")))?;
        let target = self.path(&ticket.file);
        let committed = match (detail.stamp, &detail.sha256) {
            (Some(stamp), _) => stamp_of(&target).await? == Some(stamp),
            (None, Some(sha256)) => sha256_of(&target).await?.as_ref() == Some(sha256),
            (None, None) => false,
        };
        if !committed {
            let _ = tokio::fs::remove_file(&detail.temp).await;
        }
        Ok(committed)
    }

    async fn list_daily(&self) -> Result<Vec<DailyFile>, SinkError> {
        let dir = self.base.join("daily");
        let mut entries = match tokio::fs::read_dir(&dir).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error(&dir, e)),
        };
        let mut files = Vec::new();
        while let Some(entry) = entries.next_entry().await.map_err(|e| io_error(&dir, e))? {
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if !name.ends_with(".csv") || name.starts_with('.') {
                continue;
            }
            // Gone since the listing: not there any more.
            if let Some(stamp) = stamp_of(&entry.path()).await? {
                files.push(DailyFile {
                    name: format!("daily/{name}"),
                    version: stamp.version(),
                    len: stamp.len,
                });
            }
        }
        Ok(files)
    }

    async fn read_range(
        &self,
        file: &str,
        version: &FileVersion,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, SinkError> {
        let path = self.path(file);
        let version = version.clone();
        let reading = path.clone();
        tokio::task::spawn_blocking(move || read_range_of(&reading, &version, offset, len))
            .await
            .map_err(|e| io_error(&path, std::io::Error::other(e)))?
    }

    async fn put_file(&self, file: &str, bytes: Bytes) -> Result<(), SinkError> {
        self.ensure_locked().await?;
        let target = self.path(file);
        let (temp, _) = self.assemble(&target, vec![Part::Bytes(bytes)]).await?;
        self.replace(&temp, &target).await
    }

    async fn put_blocks(&self, file: &str, blocks: &[BlockId]) -> Result<FileVersion, SinkError> {
        self.ensure_locked().await?;
        let target = self.path(file);
        let parts = blocks
            .iter()
            .map(|block| Part::File {
                path: self.staged(file, block),
                skip: 0,
            })
            .collect();
        let (temp, stamp) = self.assemble(&target, parts).await?;
        self.replace(&temp, &target).await?;
        let staging = self.base.join(STAGING).join(file.replace('/', "_"));
        let _ = tokio::fs::remove_dir_all(staging).await;
        // A rename keeps the identity the new file had when it was assembled.
        Ok(stamp.version())
    }

    async fn version_of(&self, file: &str) -> Result<Option<(FileVersion, u64)>, SinkError> {
        let path = self.path(file);
        match tokio::fs::metadata(&path).await {
            Ok(metadata) => Ok(Some((FileStamp::of(&metadata).version(), metadata.len()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(&path, e)),
        }
    }

    async fn publish_latest(&self, header: Bytes, daily_files: &[String]) -> Result<(), SinkError> {
        let mut parts = vec![Part::Bytes(header.clone())];
        for file in daily_files {
            parts.push(Part::File {
                path: self.path(file),
                skip: header.len(),
            });
        }
        let target = self.path(LATEST_FILE);
        let (temp, _) = self.assemble(&target, parts).await?;
        self.replace(&temp, &target).await
    }

    async fn read(&self, file: &str) -> Result<Option<Bytes>, SinkError> {
        let path = self.path(file);
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(Some(Bytes::from(bytes))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(&path, e)),
        }
    }

    async fn probe(&self) -> Result<(), SinkError> {
        let path = self
            .base
            .join("_state")
            .join(format!("probe-{}", uuid::Uuid::new_v4().simple()));
        let (temp, _) = self
            .assemble(&path, vec![Part::Bytes(Bytes::from_static(b"probe"))])
            .await?;
        self.replace(&temp, &path).await?;
        tokio::fs::remove_file(&path)
            .await
            .map_err(|e| io_error(&path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_at_a_time_and_a_crashed_holder_frees_the_lock_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let first = LocalSink::new(dir.path());
        assert!(matches!(
            first.acquire("first run").await.unwrap(),
            LockOutcome::Acquired
        ));
        first.ensure_locked().await.unwrap();
        let second = LocalSink::new(dir.path());
        match second.acquire("second run").await.unwrap() {
            LockOutcome::Busy(holder) => {
                assert_eq!(holder.holder, "first run");
                assert!(holder.since.is_some());
            }
            LockOutcome::Acquired => panic!("two holders"),
        }
        // The first process "crashes": its handle closes without a release.
        drop(first);
        assert!(matches!(
            second.acquire("second run").await.unwrap(),
            LockOutcome::Acquired
        ));
    }

    #[tokio::test]
    async fn racing_takeovers_of_a_stale_lock_leave_exactly_one_holder() {
        let dir = tempfile::tempdir().unwrap();
        // A stale lock file left by a crashed holder.
        std::fs::create_dir_all(dir.path().join("_state")).unwrap();
        std::fs::write(
            dir.path().join(LOCK_FILE),
            br#"{"holder":"crashed","since":"2026-11-30T00:00:00Z"}"#,
        )
        .unwrap();
        let sinks: Vec<LocalSink> = (0..8).map(|_| LocalSink::new(dir.path())).collect();
        let outcomes =
            futures::future::join_all(sinks.iter().enumerate().map(|(i, sink)| async move {
                sink.acquire(&format!("racer {i}")).await.unwrap()
            }))
            .await;
        let acquired = outcomes
            .iter()
            .filter(|o| matches!(o, LockOutcome::Acquired))
            .count();
        assert_eq!(acquired, 1, "{outcomes:?}");
    }

    #[tokio::test]
    async fn commits_are_recognised_by_file_identity_and_old_hash_tickets_still_settle() {
        let dir = tempfile::tempdir().unwrap();
        let sink = LocalSink::new(dir.path());
        sink.acquire("run").await.unwrap();
        let file = "daily/2026-11-30.csv";
        let block = BlockId::new("run", 0);
        sink.stage(file, &block, Bytes::from_static(b"a,1\r\n"))
            .await
            .unwrap();
        let header = Bytes::from_static(b"id,n\r\n");
        let ticket = sink
            .prepare(file, header.clone(), std::slice::from_ref(&block))
            .await
            .unwrap();
        assert!(!sink.is_committed(&ticket).await.unwrap());
        // is_committed removed the uncommitted temp file: prepare again, then commit.
        let ticket = sink
            .prepare(file, header.clone(), std::slice::from_ref(&block))
            .await
            .unwrap();
        sink.commit(&ticket).await.unwrap();
        assert!(sink.is_committed(&ticket).await.unwrap());

        // A ticket of the previous version (SHA-256 of the new file) settles the same way.
        let content = std::fs::read(dir.path().join(file)).unwrap();
        let legacy = CommitTicket {
            file: file.to_string(),
            detail: serde_json::json!({
                "temp": "gone",
                "sha256": hex(&Sha256::digest(&content)),
                "before": null,
            }),
        };
        assert!(sink.is_committed(&legacy).await.unwrap());
        // A second version of the file is another identity.
        let next = BlockId::new("run", 1);
        sink.stage(file, &next, Bytes::from_static(b"b,2\r\n"))
            .await
            .unwrap();
        let second = sink
            .prepare(file, header, std::slice::from_ref(&next))
            .await
            .unwrap();
        sink.commit(&second).await.unwrap();
        assert!(!sink.is_committed(&ticket).await.unwrap());
        assert!(sink.is_committed(&second).await.unwrap());
    }

    #[tokio::test]
    async fn a_replaced_lock_file_is_not_ours_any_more() {
        let dir = tempfile::tempdir().unwrap();
        let sink = LocalSink::new(dir.path());
        sink.acquire("run").await.unwrap();
        std::fs::remove_file(dir.path().join(LOCK_FILE)).unwrap();
        let other = LocalSink::new(dir.path());
        assert!(matches!(
            other.acquire("other").await.unwrap(),
            LockOutcome::Acquired
        ));
        assert!(matches!(
            sink.ensure_locked().await,
            Err(SinkError::LockLost { .. })
        ));
        assert!(sink.write_state(Bytes::from_static(b"{}")).await.is_err());
    }
}
