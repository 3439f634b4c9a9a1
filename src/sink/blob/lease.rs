//! The single-writer lock of the Blob sink: a lease on `_state/state.json`, kept alive by a
//! background task that renews it until release or drop. A crashed holder stops renewing and
//! its lease expires after the lease duration.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use azure_storage_blob::BlobClient;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::errors;

/// Health of a held lease, shared with the renewal task.
#[derive(Debug)]
pub struct LeaseHealth {
    lost: AtomicBool,
    /// When the last successful acquire/renew request was *sent* (conservative).
    last_ok: Mutex<Instant>,
    /// Successful renewals so far.
    renewals: AtomicU32,
    duration: Duration,
}

impl LeaseHealth {
    pub fn new(sent_at: Instant, duration: Duration) -> Self {
        LeaseHealth {
            lost: AtomicBool::new(false),
            last_ok: Mutex::new(sent_at),
            renewals: AtomicU32::new(0),
            duration,
        }
    }

    fn renewed(&self, sent_at: Instant) {
        if let Ok(mut last) = self.last_ok.lock() {
            *last = sent_at;
        }
        self.renewals.fetch_add(1, Ordering::SeqCst);
    }

    /// Successful renewals so far.
    pub fn renewals(&self) -> u32 {
        self.renewals.load(Ordering::SeqCst)
    }

    pub fn lose(&self) {
        self.lost.store(true, Ordering::SeqCst);
    }

    /// Whether the lease is still ours: never rejected, and renewed recently enough that it
    /// cannot have expired (a safety margin of a quarter of the duration, at most 5 s).
    pub fn is_held(&self) -> bool {
        self.is_held_at(Instant::now())
    }

    fn is_held_at(&self, now: Instant) -> bool {
        if self.lost.load(Ordering::SeqCst) {
            return false;
        }
        let margin = (self.duration / 4).min(Duration::from_secs(5));
        let elapsed = self
            .last_ok
            .lock()
            .map(|last| now.saturating_duration_since(*last))
            .unwrap_or(Duration::MAX);
        elapsed + margin < self.duration
    }
}

/// A lease this sink holds.
pub struct HeldLease {
    pub lease_id: String,
    /// Metadata (holder, since) re-sent with every state write, which replaces metadata.
    pub metadata: HashMap<String, String>,
    pub health: Arc<LeaseHealth>,
    cancel: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl HeldLease {
    /// Starts renewing `lease_id` on `client` every `every`.
    pub fn start(
        client: Arc<BlobClient>,
        lease_id: String,
        metadata: HashMap<String, String>,
        health: Arc<LeaseHealth>,
        every: Duration,
    ) -> HeldLease {
        let cancel = CancellationToken::new();
        let task = tokio::spawn(renew_loop(
            client,
            lease_id.clone(),
            health.clone(),
            every,
            cancel.clone(),
        ));
        HeldLease {
            lease_id,
            metadata,
            health,
            cancel,
            task: Some(task),
        }
    }

    /// Stops the renewals and waits until the task has ended.
    pub async fn stop(&mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn renew_loop(
    client: Arc<BlobClient>,
    lease_id: String,
    health: Arc<LeaseHealth>,
    every: Duration,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let sent_at = Instant::now();
        let result = tokio::select! {
            _ = cancel.cancelled() => return,
            result = client.renew_lease(lease_id.clone(), None) => result,
        };
        match result {
            Ok(_) => health.renewed(sent_at),
            Err(err) => {
                let (status, code) = errors::status_and_code(&err);
                // 409 (lease id mismatch / broken), 412, 404 (blob gone): the lease is gone for good.
                if matches!(status, Some(404 | 409 | 412)) {
                    tracing::error!(
                        status = status.unwrap_or_default(),
                        code = code.as_deref().unwrap_or(""),
                        "lease on the state blob was lost; the run will stop before writing more"
                    );
                    health.lose();
                    return;
                }
                tracing::warn!(error = %errors::describe(&err), "renewing the state blob lease failed; retrying");
                if !health.is_held() {
                    health.lose();
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_expires_with_the_lease() {
        let sent = Instant::now();
        let fresh = LeaseHealth::new(sent, Duration::from_secs(60));
        assert!(fresh.is_held());
        fresh.lose();
        assert!(!fresh.is_held());

        let lease = LeaseHealth::new(sent, Duration::from_secs(60));
        assert!(lease.is_held_at(sent + Duration::from_secs(54)));
        assert!(
            !lease.is_held_at(sent + Duration::from_secs(56)),
            "within the 5 s margin of expiry"
        );
        lease.renewed(sent + Duration::from_secs(50));
        assert!(lease.is_held_at(sent + Duration::from_secs(56)));
        assert_eq!(lease.renewals(), 1);
    }
}
