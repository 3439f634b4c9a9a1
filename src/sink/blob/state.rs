//! The state blob `_state/state.json` of the Blob sink: put as `{}` on first use (so that it can
//! be leased), read back (`{}` means "no state yet"), and replaced under the held lease.

use azure_core::http::Etag;
use azure_storage_blob::models::BlobClientUploadOptions;
use bytes::Bytes;

use crate::sink::{SinkError, STATE_FILE};

use super::client::{content, Inner};
use super::errors;
use super::BlobSink;

/// What a state blob holds before the first run wrote a state (read back as "no state").
const EMPTY_STATE: &[u8] = b"{}";

impl Inner {
    /// Puts `{}` as the state blob unless it exists (creating the container if needed).
    pub(super) async fn create_state_blob(&self) -> Result<(), SinkError> {
        let state = self.blob(STATE_FILE)?;
        for attempt in 0..2 {
            let options = BlobClientUploadOptions {
                if_none_match: Some(Etag::from("*")),
                blob_content_type: Some("application/json".to_string()),
                ..Default::default()
            };
            match state
                .upload(content(Bytes::from_static(EMPTY_STATE)), Some(options))
                .await
            {
                Ok(_) => return Ok(()),
                // Exists already (possibly leased by someone else).
                Err(e) if errors::is_status(&e, 409, &[]) || errors::is_status(&e, 412, &[]) => {
                    return Ok(())
                }
                Err(e) if attempt == 0 && Self::container_missing(&e) => {
                    self.create_container().await?;
                }
                Err(e) => return Err(self.error(STATE_FILE, &e)),
            }
        }
        Err(SinkError::Other(format!(
            "{}: the container disappeared while creating the state blob",
            self.blob_name(STATE_FILE)
        )))
    }
}

pub(super) async fn read_state(sink: &BlobSink) -> Result<Option<Bytes>, SinkError> {
    let Some(bytes) = sink.inner.download(STATE_FILE).await? else {
        return Ok(None);
    };
    let trimmed = String::from_utf8_lossy(&bytes);
    let trimmed = trimmed.trim();
    if trimmed.is_empty() || trimmed == "{}" {
        return Ok(None);
    }
    Ok(Some(bytes))
}

pub(super) async fn write_state(sink: &BlobSink, bytes: Bytes) -> Result<(), SinkError> {
    let (lease_id, metadata, health) = sink.held_lease().await?;
    let state = sink.inner.blob(STATE_FILE)?;
    let options = BlobClientUploadOptions {
        lease_id: Some(lease_id),
        metadata: Some(metadata),
        blob_content_type: Some("application/json".to_string()),
        ..Default::default()
    };
    match state.upload(content(bytes), Some(options)).await {
        Ok(_) => Ok(()),
        Err(e) if errors::is_status(&e, 412, &[]) || errors::is_status(&e, 409, &[]) => {
            health.lose();
            Err(sink.inner.lock_lost())
        }
        Err(e) => Err(sink.inner.error(STATE_FILE, &e)),
    }
}
