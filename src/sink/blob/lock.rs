//! The single-writer lock of the Blob sink as the [`Sink`](crate::sink::Sink) methods see it:
//! `acquire` (lease the state blob, creating it on first use, and record the holder in its
//! metadata), `ensure_locked` and `release`. The held lease and its renewal task are in
//! [`super::lease`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use azure_storage_blob::models::{
    BlobClientAcquireLeaseOptions, BlobClientGetPropertiesResultHeaders,
    BlobClientSetMetadataOptions,
};
use time::OffsetDateTime;

use crate::sink::{LockOutcome, SinkError, STATE_FILE};

use super::blocks;
use super::errors;
use super::lease::{HeldLease, LeaseHealth};
use super::BlobSink;

impl BlobSink {
    /// The held lease's id and metadata, or LockLost.
    pub(super) async fn held_lease(
        &self,
    ) -> Result<(String, HashMap<String, String>, Arc<LeaseHealth>), SinkError> {
        let guard = self.lease.lock().await;
        match guard.as_ref() {
            Some(held) if held.health.is_held() => Ok((
                held.lease_id.clone(),
                held.metadata.clone(),
                held.health.clone(),
            )),
            _ => Err(self.inner.lock_lost()),
        }
    }
}

pub(super) async fn acquire(sink: &BlobSink, holder: &str) -> Result<LockOutcome, SinkError> {
    let inner = &sink.inner;
    let mut guard = sink.lease.lock().await;
    if let Some(held) = guard.as_mut() {
        if held.health.is_held() {
            return Ok(LockOutcome::Acquired);
        }
        held.stop().await;
        *guard = None;
    }
    let state = inner.blob(STATE_FILE)?;
    let duration = i32::try_from(inner.options.lease_duration.as_secs()).unwrap_or(60);
    let mut created = false;
    let (lease_id, sent_at) = loop {
        let proposed = uuid::Uuid::new_v4().to_string();
        let sent_at = Instant::now();
        let options = BlobClientAcquireLeaseOptions {
            proposed_lease_id: Some(proposed.clone()),
            ..Default::default()
        };
        match state.acquire_lease(duration, Some(options)).await {
            Ok(_) => break (proposed, sent_at),
            Err(e) if errors::is_status(&e, 409, &["LeaseAlreadyPresent"]) => {
                let properties = state
                    .get_properties(None)
                    .await
                    .map_err(|e| inner.error(STATE_FILE, &e))?;
                let metadata = properties.metadata().unwrap_or_default();
                return Ok(LockOutcome::Busy(blocks::holder_from_metadata(&metadata)));
            }
            Err(e) if !created && errors::is_status(&e, 404, &[]) => {
                inner.create_state_blob().await?;
                created = true;
            }
            Err(e) => return Err(inner.error(STATE_FILE, &e)),
        }
    };
    let since = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| OffsetDateTime::now_utc());
    let metadata = blocks::holder_metadata(holder, since);
    let options = BlobClientSetMetadataOptions {
        lease_id: Some(lease_id.clone()),
        ..Default::default()
    };
    if let Err(e) = state.set_metadata(&metadata, Some(options)).await {
        let _ = state.release_lease(lease_id, None).await;
        return Err(inner.error(STATE_FILE, &e));
    }
    let health = Arc::new(LeaseHealth::new(sent_at, inner.options.lease_duration));
    *guard = Some(HeldLease::start(
        state,
        lease_id,
        metadata,
        health,
        inner.options.renew_every,
    ));
    tracing::info!(state = %inner.blob_name(STATE_FILE), "took the single-writer lease");
    Ok(LockOutcome::Acquired)
}

pub(super) async fn ensure_locked(sink: &BlobSink) -> Result<(), SinkError> {
    sink.held_lease().await.map(|_| ())
}

pub(super) async fn release(sink: &BlobSink) -> Result<(), SinkError> {
    let mut guard = sink.lease.lock().await;
    let Some(mut held) = guard.take() else {
        return Ok(());
    };
    held.stop().await;
    let state = sink.inner.blob(STATE_FILE)?;
    match state.release_lease(held.lease_id.clone(), None).await {
        Ok(_) => Ok(()),
        // Expired and taken by someone else, or already broken: not ours any more.
        Err(e) if errors::is_status(&e, 409, &[]) || errors::is_status(&e, 412, &[]) => {
            tracing::warn!(error = %sink.inner.scrub(errors::describe(&e)), "the lease was already gone when releasing it");
            Ok(())
        }
        Err(e) => Err(sink.inner.error(STATE_FILE, &e)),
    }
}
