//! Local-folder sink: the same layout as the Blob sink, every file replaced atomically
//! (write a temp file in the same folder, fsync, rename).
//!
//! Staged blocks are files under `_staging/`; `prepare` assembles the complete new file next to the
//! target and records its SHA-256 in the ticket, `commit` renames it into place, and
//! `is_committed` compares the target's hash with the ticket's. The single-writer lock is
//! `_state/lock`, created exclusively and kept alive by a background task; a crashed holder's lock
//! expires after [`LOCK_TTL`].

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::{
    BlockId, CommitTicket, LockHolder, LockOutcome, Sink, SinkError, LATEST_FILE, STATE_FILE,
};

/// How long a lock outlives its last renewal.
pub const LOCK_TTL: Duration = Duration::from_secs(60);
const LOCK_FILE: &str = "_state/lock";
const STAGING: &str = "_staging";

/// Writes under `<folder>/<preset>/`.
pub struct LocalSink {
    base: PathBuf,
    lock: Mutex<Option<HeldLock>>,
}

struct HeldLock {
    token: String,
    renewer: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Serialize, Deserialize)]
struct LockDoc {
    token: String,
    holder: String,
    #[serde(with = "time::serde::rfc3339")]
    since: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    expires: OffsetDateTime,
}

#[derive(Debug, Serialize, Deserialize)]
struct TicketDetail {
    /// The fully assembled new file, next to the target.
    temp: String,
    /// SHA-256 (hex) of the new file.
    sha256: String,
    /// SHA-256 of the target when prepared (`None`: it did not exist).
    before: Option<String>,
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
    /// and SHA-256. Nothing is visible at `target` until the caller renames it.
    async fn assemble(
        &self,
        target: &Path,
        parts: &[Part<'_>],
    ) -> Result<(PathBuf, String), SinkError> {
        let dir = target.parent().unwrap_or(&self.base);
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| io_error(dir, e))?;
        let name = target
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("file");
        let temp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
        let mut out = tokio::fs::File::create(&temp)
            .await
            .map_err(|e| io_error(&temp, e))?;
        let mut hasher = Sha256::new();
        for part in parts {
            match part {
                Part::Bytes(bytes) => {
                    hasher.update(bytes);
                    out.write_all(bytes).await.map_err(|e| io_error(&temp, e))?;
                }
                // Streamed in chunks: daily files can be large, memory stays flat.
                Part::File { path, skip } => {
                    let mut input = tokio::fs::File::open(path)
                        .await
                        .map_err(|e| io_error(path, e))?;
                    let len = input.metadata().await.map_err(|e| io_error(path, e))?.len();
                    if len < *skip as u64 {
                        return Err(SinkError::Other(format!(
                            "{} is shorter than its header; it was changed by hand",
                            path.display()
                        )));
                    }
                    input
                        .seek(std::io::SeekFrom::Start(*skip as u64))
                        .await
                        .map_err(|e| io_error(path, e))?;
                    let mut chunk = vec![0u8; 256 * 1024];
                    loop {
                        let n = input
                            .read(&mut chunk)
                            .await
                            .map_err(|e| io_error(path, e))?;
                        if n == 0 {
                            break;
                        }
                        hasher.update(&chunk[..n]);
                        out.write_all(&chunk[..n])
                            .await
                            .map_err(|e| io_error(&temp, e))?;
                    }
                }
            }
        }
        out.sync_all().await.map_err(|e| io_error(&temp, e))?;
        Ok((temp, hex(&hasher.finalize())))
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

    async fn read_lock(&self) -> Result<Option<LockDoc>, SinkError> {
        let path = self.path(LOCK_FILE);
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(&path, e)),
        }
    }
}

enum Part<'a> {
    Bytes(&'a [u8]),
    File { path: PathBuf, skip: usize },
}

async fn write_lock(path: &Path, doc: &LockDoc, exclusive: bool) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(doc).map_err(std::io::Error::other)?;
    if exclusive {
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .await?;
        file.write_all(&bytes).await?;
        file.sync_all().await
    } else {
        let temp = path.with_extension("renew");
        tokio::fs::write(&temp, &bytes).await?;
        tokio::fs::rename(&temp, path).await
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
        let now = OffsetDateTime::now_utc();
        if let Some(existing) = self.read_lock().await? {
            if existing.expires > now {
                return Ok(LockOutcome::Busy(LockHolder {
                    holder: existing.holder,
                    since: Some(existing.since),
                }));
            }
            // The holder crashed: its lock expired.
            let _ = tokio::fs::remove_file(&path).await;
        }
        let doc = LockDoc {
            token: uuid::Uuid::new_v4().to_string(),
            holder: holder.to_string(),
            since: now,
            expires: now + LOCK_TTL,
        };
        match write_lock(&path, &doc, true).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let current = self.read_lock().await?;
                return Ok(LockOutcome::Busy(LockHolder {
                    holder: current
                        .as_ref()
                        .map(|d| d.holder.clone())
                        .unwrap_or_default(),
                    since: current.map(|d| d.since),
                }));
            }
            Err(e) => return Err(io_error(&path, e)),
        }
        let token = doc.token.clone();
        let renewer = tokio::spawn(async move {
            let mut doc = doc;
            loop {
                tokio::time::sleep(LOCK_TTL / 3).await;
                doc.expires = OffsetDateTime::now_utc() + LOCK_TTL;
                if write_lock(&path, &doc, false).await.is_err() {
                    return;
                }
            }
        });
        if let Ok(mut held) = self.lock.lock() {
            *held = Some(HeldLock { token, renewer });
        }
        Ok(LockOutcome::Acquired)
    }

    async fn ensure_locked(&self) -> Result<(), SinkError> {
        let token = self
            .lock
            .lock()
            .ok()
            .and_then(|held| held.as_ref().map(|h| h.token.clone()));
        let current = self.read_lock().await?;
        match (token, current) {
            (Some(token), Some(doc))
                if doc.token == token && doc.expires > OffsetDateTime::now_utc() =>
            {
                Ok(())
            }
            _ => Err(SinkError::LockLost {
                what: self.path(LOCK_FILE).display().to_string(),
            }),
        }
    }

    async fn release(&self) -> Result<(), SinkError> {
        let held = self.lock.lock().ok().and_then(|mut held| held.take());
        if let Some(held) = held {
            held.renewer.abort();
            if let Some(doc) = self.read_lock().await? {
                if doc.token == held.token {
                    let path = self.path(LOCK_FILE);
                    tokio::fs::remove_file(&path)
                        .await
                        .map_err(|e| io_error(&path, e))?;
                }
            }
        }
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
        let (temp, _) = self.assemble(&target, &[Part::Bytes(&bytes)]).await?;
        self.replace(&temp, &target).await
    }

    async fn stage(&self, file: &str, block: &BlockId, data: Bytes) -> Result<(), SinkError> {
        let path = self.staged(file, block);
        let (temp, _) = self.assemble(&path, &[Part::Bytes(&data)]).await?;
        self.replace(&temp, &path).await
    }

    async fn prepare(
        &self,
        file: &str,
        header: Bytes,
        blocks: &[BlockId],
    ) -> Result<CommitTicket, SinkError> {
        let target = self.path(file);
        let before = sha256_of(&target).await?;
        let mut parts = vec![Part::Bytes(&header)];
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
        let (temp, sha256) = self.assemble(&target, &parts).await?;
        let detail = TicketDetail {
            temp: temp.display().to_string(),
            sha256,
            before,
        };
        Ok(CommitTicket {
            file: file.to_string(),
            detail: serde_json::to_value(detail).map_err(|e| SinkError::Other(e.to_string()))?,
        })
    }

    async fn commit(&self, ticket: &CommitTicket) -> Result<(), SinkError> {
        let detail: TicketDetail = serde_json::from_value(ticket.detail.clone())
            .map_err(|e| SinkError::Other(format!("not a local-folder commit ticket: {e}")))?;
        let target = self.path(&ticket.file);
        if sha256_of(&target).await? != detail.before {
            return Err(SinkError::Conflict {
                what: target.display().to_string(),
            });
        }
        self.replace(Path::new(&detail.temp), &target).await?;
        let staging = self.base.join(STAGING).join(ticket.file.replace('/', "_"));
        let _ = tokio::fs::remove_dir_all(staging).await;
        Ok(())
    }

    async fn is_committed(&self, ticket: &CommitTicket) -> Result<bool, SinkError> {
        let detail: TicketDetail = serde_json::from_value(ticket.detail.clone())
            .map_err(|e| SinkError::Other(format!("not a local-folder commit ticket: {e}")))?;
        let committed = sha256_of(&self.path(&ticket.file)).await? == Some(detail.sha256);
        if !committed {
            let _ = tokio::fs::remove_file(&detail.temp).await;
        }
        Ok(committed)
    }

    async fn list_daily(&self) -> Result<Vec<String>, SinkError> {
        let dir = self.base.join("daily");
        let mut entries = match tokio::fs::read_dir(&dir).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error(&dir, e)),
        };
        let mut files = Vec::new();
        while let Some(entry) = entries.next_entry().await.map_err(|e| io_error(&dir, e))? {
            if let Some(name) = entry.file_name().to_str() {
                if name.ends_with(".csv") && !name.starts_with('.') {
                    files.push(format!("daily/{name}"));
                }
            }
        }
        Ok(files)
    }

    async fn publish_latest(&self, header: Bytes, daily_files: &[String]) -> Result<(), SinkError> {
        let mut parts = vec![Part::Bytes(&header)];
        for file in daily_files {
            parts.push(Part::File {
                path: self.path(file),
                skip: header.len(),
            });
        }
        let target = self.path(LATEST_FILE);
        let (temp, _) = self.assemble(&target, &parts).await?;
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
        let (temp, _) = self.assemble(&path, &[Part::Bytes(b"probe")]).await?;
        self.replace(&temp, &path).await?;
        tokio::fs::remove_file(&path)
            .await
            .map_err(|e| io_error(&path, e))
    }
}

impl Drop for LocalSink {
    fn drop(&mut self) {
        if let Ok(mut held) = self.lock.lock() {
            if let Some(held) = held.take() {
                held.renewer.abort();
            }
        }
    }
}
