//! Builds `latest.csv` of the Blob sink: the header block, then each daily file's rows staged
//! server-side from the daily file's URL (Put Block From URL with `x-ms-source-range`), then one
//! atomic Put Block List. Falls back to download-and-stage only where the service lacks
//! Put Block From URL (storage emulators), see [`LatestCopy`].
//!
//! A run copies only what changed: the blocks of a daily file are named after the file and its
//! ETag, so a day whose file did not change since the last build is still in `latest.csv`'s
//! committed block list under the same names, and the new list reuses those blocks as they are
//! (Put Block List mixes committed and new blocks). A typical 30-minute run copies one day.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use azure_core::http::headers::{HeaderName, Headers};
use azure_core::http::Etag;
use azure_storage_blob::models::{BlockBlobClientStageBlockFromUrlOptions, HttpRange};
use bytes::Bytes;

use super::blocks::{self, ListedBlock, Source};
use super::client::{content, with_sas, BlobAuth};
use super::files::{commit_options, length_and_etag};
use super::{errors, BlobSink};
use crate::credential::STORAGE_SCOPE;
use crate::sink::{BlockId, Sink, SinkError, LATEST_FILE};

/// Largest source range one Put Block From URL copies. Azure allows 4000 MiB, but the service has
/// to read the whole range before it answers: 256 MiB keeps each call well inside the SDK's
/// timeouts.
pub const MAX_FROM_URL_BYTES: u64 = 256 * 1024 * 1024;
/// Range size of the download fallback: bounds the memory it needs.
pub const DOWNLOAD_CHUNK_BYTES: u64 = 4 * 1024 * 1024;

/// How `latest.csv` gets the daily files' rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum LatestCopy {
    /// Server-side copy, except against Azurite (detected by its `Server` header) or after a
    /// 501 Not Implemented: then `Download` for the rest of the sink's life (with a warning).
    Auto = 0,
    /// Server-side copy only (Put Block From URL); fails where the service lacks it.
    ServerSide = 1,
    /// Download the rows in 4 MiB ranges and stage them (emulators; costs egress and time).
    Download = 2,
}

impl LatestCopy {
    pub(super) fn from_u8(value: u8) -> LatestCopy {
        match value {
            1 => LatestCopy::ServerSide,
            2 => LatestCopy::Download,
            _ => LatestCopy::Auto,
        }
    }
}

/// A daily file to copy: its rows are `[header_len, len)`, pinned to `etag`.
struct SourceFile<'a> {
    file: &'a str,
    len: u64,
    etag: Etag,
}

enum CopyFailure {
    /// The service does not implement Put Block From URL.
    NotImplemented(String),
    Sink(SinkError),
}

pub(super) async fn publish(
    sink: &BlobSink,
    header: Bytes,
    daily_files: &[String],
) -> Result<(), SinkError> {
    let inner = &sink.inner;
    let header_len = header.len() as u64;
    sink.stage(LATEST_FILE, &BlockId::header(), header).await?;
    let mut listed = vec![ListedBlock {
        id: BlockId::header(),
        from: Source::Uncommitted,
    }];
    // What the last build committed, and its ETag: the new list is committed only over it.
    let (current, latest_etag) = match inner.committed_blocks(LATEST_FILE).await? {
        Some((ids, etag)) => (ids.into_iter().collect::<HashSet<_>>(), Some(etag)),
        None => (HashSet::new(), None),
    };
    let mut bearer: Option<String> = None;

    for file in daily_files {
        let client = inner.blob(file)?;
        let properties = match client.get_properties(None).await {
            Ok(properties) => properties,
            Err(e) if errors::is_status(&e, 404, &[]) => {
                tracing::warn!(file = %file, "daily file vanished before latest.csv was built; skipped");
                continue;
            }
            Err(e) => return Err(inner.error(file, &e)),
        };
        let (len, etag) = length_and_etag(file, &properties)?;
        if len <= header_len {
            continue;
        }
        if sink.latest_copy() == LatestCopy::Auto && is_azurite(properties.headers()) {
            tracing::warn!(
                "the storage endpoint is Azurite, which lacks Put Block From URL; \
                 building latest.csv by downloading the daily files"
            );
            inner
                .latest_mode
                .store(LatestCopy::Download as u8, Ordering::Relaxed);
        }
        let source = SourceFile { file, len, etag };
        let mode = sink.latest_copy();
        let (ranges, ids) = day_blocks(&source, header_len, mode);
        if ids.iter().all(|id| current.contains(id)) {
            listed.extend(ids.into_iter().map(|id| ListedBlock {
                id,
                from: Source::Committed,
            }));
            continue;
        }
        let ids = match mode {
            LatestCopy::Auto | LatestCopy::ServerSide => {
                match copy_server_side(sink, &source, &ranges, &ids, &mut bearer).await {
                    Ok(ids) => ids,
                    Err(CopyFailure::Sink(e)) => return Err(e),
                    Err(CopyFailure::NotImplemented(detail)) if mode == LatestCopy::Auto => {
                        tracing::warn!(
                            detail = %detail,
                            "this storage endpoint does not implement Put Block From URL (an emulator?); \
                             building latest.csv by downloading the daily files from now on"
                        );
                        inner
                            .latest_mode
                            .store(LatestCopy::Download as u8, Ordering::Relaxed);
                        let (ranges, ids) = day_blocks(&source, header_len, LatestCopy::Download);
                        copy_by_download(sink, &source, &ranges, &ids).await?
                    }
                    Err(CopyFailure::NotImplemented(detail)) => {
                        return Err(SinkError::Other(format!(
                            "{file}: the storage endpoint does not implement Put Block From URL ({detail})"
                        )))
                    }
                }
            }
            LatestCopy::Download => copy_by_download(sink, &source, &ranges, &ids).await?,
        };
        listed.extend(ids.into_iter().map(|id| ListedBlock {
            id,
            from: Source::Uncommitted,
        }));
    }

    let target = inner.blob(LATEST_FILE)?.block_blob_client();
    // The reused blocks are those of the list read above: commit over that list only.
    let options = commit_options(latest_etag.as_deref());
    let body = Bytes::from(blocks::block_list_xml(&listed));
    match target.commit_block_list(content(body), Some(options)).await {
        Ok(_) => Ok(()),
        Err(e) if errors::is_status(&e, 412, &[]) || errors::is_status(&e, 409, &[]) => {
            Err(SinkError::Conflict {
                what: inner.blob_name(LATEST_FILE),
            })
        }
        Err(e) => Err(inner.error(LATEST_FILE, &e)),
    }
}

/// A daily file's rows as `latest.csv` blocks: the byte ranges `mode` copies, and their names.
/// The names derive from the file, its ETag and the range size, so they stay the same exactly
/// as long as the file does (and the blocks can be reused).
fn day_blocks(
    source: &SourceFile<'_>,
    header_len: u64,
    mode: LatestCopy,
) -> (Vec<(u64, u64)>, Vec<BlockId>) {
    let chunk = match mode {
        LatestCopy::Download => DOWNLOAD_CHUNK_BYTES,
        LatestCopy::Auto | LatestCopy::ServerSide => MAX_FROM_URL_BYTES,
    };
    let ranges = blocks::split_range(header_len, source.len, chunk);
    let key = format!("{}@{}/{chunk}", source.file, source.etag);
    let ids = (0..ranges.len())
        .map(|k| BlockId::new(&key, u32::try_from(k).unwrap_or(u32::MAX)))
        .collect();
    (ranges, ids)
}

/// Whether the response comes from Azurite (`Server: Azurite-Blob/x.y.z`). Azurite does not
/// implement Put Block From URL: with a SAS it answers 500 (its SAS permission table lacks the
/// operation), with a token 501 APINotImplemented.
fn is_azurite(headers: &Headers) -> bool {
    headers
        .get_optional_str(&HeaderName::from_static("server"))
        .is_some_and(|server| server.starts_with("Azurite"))
}

/// Stages the rows of `source` into `latest.csv` with Put Block From URL, in ranges of at most
/// [`MAX_FROM_URL_BYTES`], pinned to the source's ETag.
async fn copy_server_side(
    sink: &BlobSink,
    source: &SourceFile<'_>,
    ranges: &[(u64, u64)],
    ids: &[BlockId],
    bearer: &mut Option<String>,
) -> Result<Vec<BlockId>, CopyFailure> {
    let inner = &sink.inner;
    let target = inner
        .blob(LATEST_FILE)
        .map_err(CopyFailure::Sink)?
        .block_blob_client();
    let source_url = with_sas(&inner.blob_url(source.file), &inner.auth).to_string();
    if let (BlobAuth::Token(credential), None) = (&inner.auth, bearer.as_ref()) {
        let token = credential
            .get_token(&[STORAGE_SCOPE], None)
            .await
            .map_err(|e| CopyFailure::Sink(inner.error(source.file, &e)))?;
        *bearer = Some(format!("Bearer {}", token.token.secret()));
    }
    let mut staged = Vec::new();
    for (&(offset, length), id) in ranges.iter().zip(ids) {
        let options = BlockBlobClientStageBlockFromUrlOptions {
            source_range: Some(HttpRange::new(offset, length)),
            source_if_match: Some(source.etag.clone()),
            copy_source_authorization: bearer.clone(),
            ..Default::default()
        };
        match target
            .stage_block_from_url(id.as_str().as_bytes(), 0, source_url.clone(), Some(options))
            .await
        {
            Ok(_) => {
                inner
                    .counters
                    .bytes_copied
                    .fetch_add(length, Ordering::Relaxed);
                staged.push(id.clone());
            }
            Err(e) if errors::is_status(&e, 501, &[]) => {
                return Err(CopyFailure::NotImplemented(
                    inner.scrub(errors::describe(&e)),
                ))
            }
            Err(e) if errors::is_status(&e, 412, &[]) => {
                return Err(CopyFailure::Sink(SinkError::Conflict {
                    what: inner.blob_name(source.file),
                }))
            }
            Err(e) => {
                let what = format!("{} (Put Block From URL into {LATEST_FILE})", source.file);
                return Err(CopyFailure::Sink(inner.error(&what, &e)));
            }
        }
    }
    Ok(staged)
}

/// Stages the rows of `source` by downloading them in [`DOWNLOAD_CHUNK_BYTES`] ranges.
async fn copy_by_download(
    sink: &BlobSink,
    source: &SourceFile<'_>,
    ranges: &[(u64, u64)],
    ids: &[BlockId],
) -> Result<Vec<BlockId>, SinkError> {
    let inner = &sink.inner;
    let mut staged = Vec::new();
    for (&(offset, length), id) in ranges.iter().zip(ids) {
        let bytes = inner
            .download_range(source.file, source.etag.as_ref(), offset, length)
            .await?;
        inner
            .counters
            .bytes_copied
            .fetch_add(length, Ordering::Relaxed);
        sink.stage(LATEST_FILE, id, bytes).await?;
        staged.push(id.clone());
    }
    Ok(staged)
}
