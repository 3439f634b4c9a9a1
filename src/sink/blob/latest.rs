//! Builds `latest.csv` of the Blob sink: the header block, then each daily file's rows staged
//! server-side from the daily file's URL (Put Block From URL with `x-ms-source-range`), then one
//! atomic Put Block List. Falls back to download-and-stage only where the service lacks
//! Put Block From URL (storage emulators), see [`LatestCopy`].

use std::sync::atomic::Ordering;

use azure_core::http::headers::{HeaderName, Headers};
use azure_core::http::Etag;
use azure_storage_blob::models::{
    BlobClientDownloadOptions, BlobClientGetPropertiesResultHeaders,
    BlockBlobClientCommitBlockListOptions, BlockBlobClientStageBlockFromUrlOptions, HttpRange,
};
use bytes::Bytes;

use super::blocks::{self, ListedBlock, Source};
use super::client::{content, with_sas, BlobAuth};
use super::files::CSV_CONTENT_TYPE;
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
    let mut seq: u32 = 0;
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
        let len = properties.content_length().ok().flatten().unwrap_or(0);
        let etag = properties
            .etag()
            .ok()
            .flatten()
            .ok_or_else(|| SinkError::Other(format!("{file}: no ETag in its properties")))?;
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
        let ids = match mode {
            LatestCopy::Auto | LatestCopy::ServerSide => {
                match copy_server_side(sink, &source, header_len, &mut seq, &mut bearer).await {
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
                        copy_by_download(sink, &source, header_len, &mut seq).await?
                    }
                    Err(CopyFailure::NotImplemented(detail)) => {
                        return Err(SinkError::Other(format!(
                            "{file}: the storage endpoint does not implement Put Block From URL ({detail})"
                        )))
                    }
                }
            }
            LatestCopy::Download => copy_by_download(sink, &source, header_len, &mut seq).await?,
        };
        listed.extend(ids.into_iter().map(|id| ListedBlock {
            id,
            from: Source::Uncommitted,
        }));
    }

    let target = inner.blob(LATEST_FILE)?.block_blob_client();
    let options = BlockBlobClientCommitBlockListOptions {
        blob_content_type: Some(CSV_CONTENT_TYPE.to_string()),
        ..Default::default()
    };
    let body = Bytes::from(blocks::block_list_xml(&listed));
    target
        .commit_block_list(content(body), Some(options))
        .await
        .map(|_| ())
        .map_err(|e| inner.error(LATEST_FILE, &e))
}

/// Whether the response comes from Azurite (`Server: Azurite-Blob/x.y.z`). Azurite does not
/// implement Put Block From URL: with a SAS it answers 500 (its SAS permission table lacks the
/// operation), with a token 501 APINotImplemented.
fn is_azurite(headers: &Headers) -> bool {
    headers
        .get_optional_str(&HeaderName::from_static("server"))
        .is_some_and(|server| server.starts_with("Azurite"))
}

fn next_id(seq: &mut u32) -> BlockId {
    let id = BlockId::new(LATEST_FILE, *seq);
    *seq += 1;
    id
}

/// Stages the rows of `source` into `latest.csv` with Put Block From URL, in ranges of at most
/// [`MAX_FROM_URL_BYTES`], pinned to the source's ETag.
async fn copy_server_side(
    sink: &BlobSink,
    source: &SourceFile<'_>,
    header_len: u64,
    seq: &mut u32,
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
    let mut ids = Vec::new();
    for (offset, length) in blocks::split_range(header_len, source.len, MAX_FROM_URL_BYTES) {
        let id = next_id(seq);
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
                ids.push(id);
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
    Ok(ids)
}

/// Stages the rows of `source` by downloading them in [`DOWNLOAD_CHUNK_BYTES`] ranges.
async fn copy_by_download(
    sink: &BlobSink,
    source: &SourceFile<'_>,
    header_len: u64,
    seq: &mut u32,
) -> Result<Vec<BlockId>, SinkError> {
    let inner = &sink.inner;
    let client = inner.blob(source.file)?;
    let mut ids = Vec::new();
    for (offset, length) in blocks::split_range(header_len, source.len, DOWNLOAD_CHUNK_BYTES) {
        let options = BlobClientDownloadOptions {
            range: Some(HttpRange::new(offset, length)),
            if_match: Some(source.etag.clone()),
            ..Default::default()
        };
        let response = match client.download(Some(options)).await {
            Ok(response) => response,
            Err(e) if errors::is_status(&e, 412, &[]) => {
                return Err(SinkError::Conflict {
                    what: inner.blob_name(source.file),
                })
            }
            Err(e) => return Err(inner.error(source.file, &e)),
        };
        let bytes = response
            .body
            .collect()
            .await
            .map_err(|e| inner.error(source.file, &e))?;
        if bytes.len() as u64 != length {
            return Err(SinkError::Other(format!(
                "{}: expected {length} bytes at offset {offset}, got {}",
                source.file,
                bytes.len()
            )));
        }
        inner
            .counters
            .bytes_copied
            .fetch_add(length, Ordering::Relaxed);
        let id = next_id(seq);
        sink.stage(LATEST_FILE, &id, bytes).await?;
        ids.push(id);
    }
    Ok(ids)
}
