//! The CSV files of the Blob sink: staging blocks, preparing a file's block list as a commit
//! ticket and committing it, recognising a commit that landed, listing the daily files, reading a
//! file, and the write probe.

use azure_core::http::Etag;
use azure_storage_blob::models::{
    BlobClientDownloadOptions, BlobClientGetPropertiesResultHeaders, BlobClientUploadOptions,
    BlobContainerClientListBlobsOptions, BlockBlobClientCommitBlockListOptions,
    BlockBlobClientCommitBlockListResultHeaders, BlockListHeaders, BlockListType, HttpRange,
};
use bytes::{Bytes, BytesMut};
use futures::{StreamExt as _, TryStreamExt as _};

use crate::sink::{BlockId, CommitTicket, Committed, DailyFile, FileVersion, Sink, SinkError};

use super::blocks::{self, TicketDetail};
use super::client::{content, Inner};
use super::errors;
use super::BlobSink;

/// Content type of the CSV files.
pub(super) const CSV_CONTENT_TYPE: &str = "text/csv; charset=utf-8";

/// The [`FileVersion`] of a blob from its ETag, as a header (`"0x8D…"`) or a listing (which may
/// leave out the quotes) gives it: always quoted, as `If-Match` wants it.
pub(super) fn etag_version(etag: &str) -> FileVersion {
    FileVersion::new(format!("\"{}\"", etag.trim().trim_matches('"')))
}

/// Put Block List options for a CSV file, conditional on the state the new list was built from:
/// the file's ETag then, or (`None`) that the file did not exist.
pub(super) fn commit_options<'a>(etag: Option<&str>) -> BlockBlobClientCommitBlockListOptions<'a> {
    let mut options = BlockBlobClientCommitBlockListOptions {
        blob_content_type: Some(CSV_CONTENT_TYPE.to_string()),
        ..Default::default()
    };
    match etag {
        Some(etag) => options.if_match = Some(Etag::from(etag)),
        None => options.if_none_match = Some(Etag::from("*")),
    }
    options
}

impl Inner {
    /// The committed block ids and ETag of `file`, or `None` if it does not exist (or has no
    /// committed block).
    pub(super) async fn committed_blocks(
        &self,
        file: &str,
    ) -> Result<Option<(Vec<BlockId>, String)>, SinkError> {
        let client = self.blob(file)?.block_blob_client();
        let response = match client.get_block_list(BlockListType::Committed, None).await {
            Ok(response) => response,
            Err(e) if errors::is_status(&e, 404, &[]) => return Ok(None),
            Err(e) => return Err(self.error(file, &e)),
        };
        let etag = response.etag().ok().flatten().map(String::from);
        let list = response.into_model().map_err(|e| {
            SinkError::Other(format!("{file}: {}", self.scrub(errors::describe(&e))))
        })?;
        let mut ids = Vec::new();
        for block in list.committed_blocks.unwrap_or_default() {
            let raw = block.name.unwrap_or_default();
            let id = blocks::block_id_from_raw(&raw).ok_or_else(|| {
                SinkError::Other(format!(
                    "{file} holds a block not written by signin-export; move it away or use a new destination prefix"
                ))
            })?;
            ids.push(parse_block_id(&id)?);
        }
        // A blob with only uncommitted blocks answers Get Block List too: it does not exist yet.
        if ids.is_empty() {
            return Ok(None);
        }
        let etag = etag
            .ok_or_else(|| SinkError::Other(format!("{file}: Get Block List returned no ETag")))?;
        Ok(Some((ids, etag)))
    }

    pub(super) async fn download(&self, file: &str) -> Result<Option<Bytes>, SinkError> {
        let client = self.blob(file)?;
        let response = match client.download(None).await {
            Ok(response) => response,
            Err(e) if errors::is_status(&e, 404, &[]) => return Ok(None),
            Err(e) => return Err(self.error(file, &e)),
        };
        let body = response
            .body
            .collect()
            .await
            .map_err(|e| self.error(file, &e))?;
        Ok(Some(body))
    }
}

/// A [`BlockId`] from its 32-character text (ids only come from this crate's own blocks).
fn parse_block_id(text: &str) -> Result<BlockId, SinkError> {
    serde_json::from_value(serde_json::Value::String(text.to_string()))
        .map_err(|e| SinkError::Other(format!("invalid block id: {e}")))
}

fn ticket_detail(ticket: &CommitTicket) -> Result<TicketDetail, SinkError> {
    serde_json::from_value(ticket.detail.clone()).map_err(|e| {
        SinkError::Other(format!(
            "the commit ticket for {} was not made by the Blob sink: {e}",
            ticket.file
        ))
    })
}

pub(super) async fn stage(
    sink: &BlobSink,
    file: &str,
    block: &BlockId,
    data: Bytes,
) -> Result<(), SinkError> {
    let client = sink.inner.blob(file)?.block_blob_client();
    let len = data.len() as u64;
    match client
        .stage_block(block.as_str().as_bytes(), len, content(data.clone()), None)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if Inner::container_missing(&e) => {
            sink.inner.create_container().await?;
            client
                .stage_block(block.as_str().as_bytes(), len, content(data), None)
                .await
                .map(|_| ())
                .map_err(|e| sink.inner.error(file, &e))
        }
        Err(e) => Err(sink.inner.error(file, &e)),
    }
}

pub(super) async fn prepare(
    sink: &BlobSink,
    file: &str,
    header: Bytes,
    blocks: &[BlockId],
) -> Result<CommitTicket, SinkError> {
    let existing = sink.inner.committed_blocks(file).await?;
    if existing.is_none() {
        stage(sink, file, &BlockId::header(), header).await?;
    }
    let detail = TicketDetail::new(
        existing
            .as_ref()
            .map(|(ids, etag)| (ids.as_slice(), etag.clone())),
        blocks,
    )
    .map_err(|e| SinkError::Other(format!("{}: {e}", sink.inner.blob_name(file))))?;
    let detail = serde_json::to_value(&detail)
        .map_err(|e| SinkError::Other(format!("{file}: cannot encode the ticket: {e}")))?;
    Ok(CommitTicket {
        file: file.to_string(),
        detail,
    })
}

pub(super) async fn commit(sink: &BlobSink, ticket: &CommitTicket) -> Result<Committed, SinkError> {
    let detail = ticket_detail(ticket)?;
    let file = ticket.file.as_str();
    let client = sink.inner.blob(file)?.block_blob_client();
    let options = commit_options(detail.etag.as_deref());
    let body = Bytes::from(blocks::block_list_xml(&detail.blocks));
    let before = detail.etag.as_deref().map(etag_version);
    match client.commit_block_list(content(body), Some(options)).await {
        Ok(response) => {
            let etag = response.etag().ok().flatten().ok_or_else(|| {
                SinkError::Other(format!("{file}: Put Block List returned no ETag"))
            })?;
            Ok(Committed {
                before,
                after: etag_version(etag.as_ref()),
            })
        }
        // 412: the ETag changed; 409: the file appeared; 400 InvalidBlockList: our staged
        // blocks are gone (another writer's commit discarded them).
        Err(e)
            if errors::is_status(&e, 412, &[])
                || errors::is_status(&e, 409, &[])
                || errors::is_status(&e, 400, &["InvalidBlockList"]) =>
        {
            // A retried request whose first attempt succeeded also lands here.
            if let Some((committed, etag)) = sink.inner.committed_blocks(file).await? {
                if committed.iter().collect::<Vec<_>>() == detail.ids() {
                    return Ok(Committed {
                        before,
                        after: etag_version(&etag),
                    });
                }
            }
            Err(SinkError::Conflict {
                what: sink.inner.blob_name(file),
            })
        }
        Err(e) => Err(sink.inner.error(file, &e)),
    }
}

pub(super) async fn is_committed(
    sink: &BlobSink,
    ticket: &CommitTicket,
) -> Result<bool, SinkError> {
    let detail = ticket_detail(ticket)?;
    Ok(sink
        .inner
        .committed_blocks(&ticket.file)
        .await?
        .is_some_and(|(ids, _)| ids.contains(&detail.marker)))
}

/// How often [`fence`] re-reads the block list when the file changes under it.
const FENCE_ATTEMPTS: u32 = 5;

/// Settles another writer's ticket: `true` if its commit landed; otherwise rewrites the file's
/// committed block list as it is, conditionally on its ETag, and returns `false`. The rewrite
/// changes the ETag (the stale Put Block List is conditional on the old one) and discards every
/// uncommitted block (the stale list names them), so a commit still in flight fails instead of
/// landing after this writer re-exported its rows. A file that does not exist yet is created
/// with the stale writer's own staged header for the same reason (its commit expects no file).
pub(super) async fn fence(sink: &BlobSink, ticket: &CommitTicket) -> Result<bool, SinkError> {
    let detail = ticket_detail(ticket)?;
    let file = ticket.file.as_str();
    let client = sink.inner.blob(file)?.block_blob_client();
    for _ in 0..FENCE_ATTEMPTS {
        let (list, options) = match sink.inner.committed_blocks(file).await? {
            Some((ids, _)) if ids.contains(&detail.marker) => return Ok(true),
            Some((ids, etag)) => {
                let list = ids
                    .into_iter()
                    .map(|id| blocks::ListedBlock {
                        id,
                        from: blocks::Source::Committed,
                    })
                    .collect::<Vec<_>>();
                (list, commit_options(Some(&etag)))
            }
            None => {
                let header = blocks::ListedBlock {
                    id: BlockId::header(),
                    from: blocks::Source::Uncommitted,
                };
                (vec![header], commit_options(None))
            }
        };
        let body = Bytes::from(blocks::block_list_xml(&list));
        match client.commit_block_list(content(body), Some(options)).await {
            Ok(_) => return Ok(false),
            // The stale writer's staged header is gone: nothing it staged can be committed.
            Err(e) if errors::is_status(&e, 400, &["InvalidBlockList"]) => return Ok(false),
            // The file changed between the read and the rewrite: look again.
            Err(e) if errors::is_status(&e, 412, &[]) || errors::is_status(&e, 409, &[]) => {}
            Err(e) => return Err(sink.inner.error(file, &e)),
        }
    }
    Err(SinkError::Conflict {
        what: sink.inner.blob_name(file),
    })
}

pub(super) async fn list_daily(sink: &BlobSink) -> Result<Vec<DailyFile>, SinkError> {
    let inner = &sink.inner;
    let prefix = inner.blob_name("daily/");
    let base_prefix = inner.blob_name("");
    let options = BlobContainerClientListBlobsOptions {
        prefix: Some(prefix),
        ..Default::default()
    };
    let mut pages = inner
        .container
        .list_blobs(Some(options))
        .map_err(|e| inner.error("daily/", &e))?
        .into_pages();
    let mut files = Vec::new();
    loop {
        let page = match pages.try_next().await {
            Ok(Some(page)) => page,
            Ok(None) => break,
            Err(e) if Inner::container_missing(&e) => break,
            Err(e) => return Err(inner.error("daily/", &e)),
        };
        let page = page.into_model().map_err(|e| inner.error("daily/", &e))?;
        for item in page.blob_items {
            let Some(name) = item.name else { continue };
            let relative = if base_prefix.is_empty() {
                name.as_str()
            } else {
                name.strip_prefix(base_prefix.as_str()).unwrap_or(&name)
            };
            let day = relative.strip_prefix("daily/").unwrap_or("");
            if day.contains('/') || !day.ends_with(".csv") {
                continue;
            }
            let properties = item.properties.as_ref();
            let etag = properties.and_then(|p| p.etag.as_ref()).ok_or_else(|| {
                SinkError::Other(format!("{relative}: List Blobs returned no ETag"))
            })?;
            files.push(DailyFile {
                name: relative.to_string(),
                version: etag_version(etag.as_ref()),
                len: properties.and_then(|p| p.content_length).unwrap_or(0),
            });
        }
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

pub(super) async fn read(sink: &BlobSink, file: &str) -> Result<Option<Bytes>, SinkError> {
    sink.inner.download(file).await
}

impl Inner {
    /// `len` bytes of `file` from `offset`, pinned to `etag` (`If-Match`): a file changed since
    /// is a [`SinkError::Conflict`].
    pub(super) async fn download_range(
        &self,
        file: &str,
        etag: &str,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, SinkError> {
        let client = self.blob(file)?;
        let options = BlobClientDownloadOptions {
            range: Some(HttpRange::new(offset, len)),
            if_match: Some(Etag::from(etag)),
            ..Default::default()
        };
        let response = match client.download(Some(options)).await {
            Ok(response) => response,
            Err(e) if errors::is_status(&e, 412, &[]) || errors::is_status(&e, 404, &[]) => {
                return Err(SinkError::Conflict {
                    what: self.blob_name(file),
                })
            }
            Err(e) => return Err(self.error(file, &e)),
        };
        // Into one buffer of the range's size: collecting grows a buffer from nothing, copying
        // the range several times over.
        let mut bytes = BytesMut::with_capacity(usize::try_from(len).unwrap_or(0));
        let mut body = response.body;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| self.error(file, &e))?;
            bytes.extend_from_slice(&chunk);
        }
        let bytes = bytes.freeze();
        if bytes.len() as u64 != len {
            return Err(SinkError::Other(format!(
                "{file}: expected {len} bytes at offset {offset}, got {}",
                bytes.len()
            )));
        }
        Ok(bytes)
    }
}

pub(super) async fn read_range(
    sink: &BlobSink,
    file: &str,
    version: &FileVersion,
    offset: u64,
    len: u64,
) -> Result<Bytes, SinkError> {
    sink.inner
        .download_range(file, version.as_str(), offset, len)
        .await
}

/// Put Blob of a whole file (a summary, a tally): one atomic replace, by the lock holder only.
pub(super) async fn put_file(sink: &BlobSink, file: &str, bytes: Bytes) -> Result<(), SinkError> {
    sink.ensure_locked().await?;
    let options = BlobClientUploadOptions {
        blob_content_type: Some(content_type(file).to_string()),
        ..Default::default()
    };
    sink.inner
        .blob(file)?
        .upload(content(bytes), Some(options))
        .await
        .map(|_| ())
        .map_err(|e| sink.inner.error(file, &e))
}

/// Put Block List of blocks staged for `file`, all uncommitted: the blob becomes exactly them,
/// atomically, and Blob Storage drops the blocks it held before. By the lock holder only, so no
/// condition on the blob's ETag is needed. Returns the new ETag.
pub(super) async fn put_blocks(
    sink: &BlobSink,
    file: &str,
    ids: &[BlockId],
) -> Result<FileVersion, SinkError> {
    sink.ensure_locked().await?;
    let listed: Vec<blocks::ListedBlock> = ids
        .iter()
        .map(|id| blocks::ListedBlock {
            id: id.clone(),
            from: blocks::Source::Uncommitted,
        })
        .collect();
    let options = BlockBlobClientCommitBlockListOptions {
        blob_content_type: Some(content_type(file).to_string()),
        ..Default::default()
    };
    let body = Bytes::from(blocks::block_list_xml(&listed));
    let response = sink
        .inner
        .blob(file)?
        .block_blob_client()
        .commit_block_list(content(body), Some(options))
        .await
        .map_err(|e| sink.inner.error(file, &e))?;
    let etag = response
        .etag()
        .ok()
        .flatten()
        .ok_or_else(|| SinkError::Other(format!("{file}: Put Block List returned no ETag")))?;
    Ok(etag_version(etag.as_ref()))
}

/// Get Blob Properties: the ETag (as a [`FileVersion`]) and length of `file`.
pub(super) async fn version_of(
    sink: &BlobSink,
    file: &str,
) -> Result<Option<(FileVersion, u64)>, SinkError> {
    let properties = match sink.inner.blob(file)?.get_properties(None).await {
        Ok(properties) => properties,
        Err(e) if errors::is_status(&e, 404, &[]) => return Ok(None),
        Err(e) => return Err(sink.inner.error(file, &e)),
    };
    let (len, etag) = length_and_etag(file, &properties)?;
    Ok(Some((etag_version(etag.as_ref()), len)))
}

/// A blob's length and ETag from its properties.
pub(super) fn length_and_etag(
    file: &str,
    properties: &impl BlobClientGetPropertiesResultHeaders,
) -> Result<(u64, Etag), SinkError> {
    let len = properties.content_length().ok().flatten().unwrap_or(0);
    let etag = properties
        .etag()
        .ok()
        .flatten()
        .ok_or_else(|| SinkError::Other(format!("{file}: no ETag in its properties")))?;
    Ok((len, etag))
}

/// The content type a whole file is written with.
fn content_type(file: &str) -> &'static str {
    if file.ends_with(".csv") {
        CSV_CONTENT_TYPE
    } else if file.ends_with(".bin") {
        "application/octet-stream"
    } else {
        "application/json"
    }
}

pub(super) async fn probe(sink: &BlobSink) -> Result<(), SinkError> {
    let inner = &sink.inner;
    let name = format!("_state/probe-{}", uuid::Uuid::new_v4());
    let client = inner.blob(&name)?;
    let payload = Bytes::from_static(b"signin-export write probe");
    let upload = || async { client.upload(content(payload.clone()), None).await };
    match upload().await {
        Ok(_) => {}
        Err(e) if Inner::container_missing(&e) => {
            inner.create_container().await?;
            upload().await.map_err(|e| inner.error(&name, &e))?;
        }
        Err(e) => return Err(inner.error(&name, &e)),
    }
    let read_back = inner.download(&name).await;
    let listed = list_daily(sink).await;
    let deleted = client
        .delete(None)
        .await
        .map_err(|e| inner.error(&name, &e));
    if inner.blobs.lock().map(|mut c| c.remove(&name)).is_err() {
        tracing::debug!("blob client cache poisoned");
    }
    match read_back? {
        Some(bytes) if bytes == payload => {}
        _ => {
            return Err(SinkError::Other(format!(
                "{name}: the probe blob did not read back as written"
            )))
        }
    }
    listed?;
    deleted?;
    Ok(())
}
