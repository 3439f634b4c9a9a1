//! The HTTP pipeline shared by every client of one Blob sink: one transport, the explicit retry
//! policy from [`BlobSinkOptions`], and the two policies that count requests and retries for
//! [`RequestCounts`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::http::policies::{Policy, PolicyResult};
use azure_core::http::{
    new_http_client, ClientOptions, Context, ExponentialRetryOptions, HttpClientOptions, Request,
    RetryOptions, Transport,
};

use super::BlobSinkOptions;

/// Requests sent by a sink, for run summaries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCounts {
    /// Logical operations (one per SDK call).
    pub requests: u64,
    /// Extra attempts made by the retry policy.
    pub retries: u64,
    /// Bytes of daily files copied into `latest.csv` (server-side or by the download fallback).
    pub bytes_copied: u64,
}

#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) calls: AtomicU64,
    pub(super) tries: AtomicU64,
    pub(super) bytes_copied: AtomicU64,
}

/// Counts calls (per-call position) or attempts (per-try position) passing through the pipeline.
#[derive(Debug)]
struct CountPolicy {
    counters: Arc<Counters>,
    per_try: bool,
}

#[async_trait]
impl Policy for CountPolicy {
    async fn send(
        &self,
        ctx: &Context,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        let counter = if self.per_try {
            &self.counters.tries
        } else {
            &self.counters.calls
        };
        counter.fetch_add(1, Ordering::Relaxed);
        next[0].send(ctx, request, &next[1..]).await
    }
}

/// Client options shared by every client of one sink: one HTTP transport, an explicit retry
/// policy, and the request counters.
pub(super) fn client_options(options: &BlobSinkOptions, counters: &Arc<Counters>) -> ClientOptions {
    // Storage clients must see the bytes as stored (ranged downloads).
    let http = HttpClientOptions {
        automatic_decompression: false,
    };
    let to_time = |d: Duration| {
        azure_core::time::Duration::try_from(d).unwrap_or(azure_core::time::Duration::MAX)
    };
    ClientOptions {
        per_call_policies: vec![Arc::new(CountPolicy {
            counters: counters.clone(),
            per_try: false,
        })],
        per_try_policies: vec![Arc::new(CountPolicy {
            counters: counters.clone(),
            per_try: true,
        })],
        retry: RetryOptions::exponential(ExponentialRetryOptions {
            initial_delay: to_time(options.initial_retry_delay),
            max_retries: options.max_retries,
            max_total_elapsed: to_time(options.max_retry_elapsed),
            max_delay: to_time(options.max_retry_delay),
        }),
        transport: Some(Transport::new(new_http_client(Some(http)))),
        ..Default::default()
    }
}
