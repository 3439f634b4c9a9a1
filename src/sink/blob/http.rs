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

/// What every client of one pipeline has sent so far.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) calls: AtomicU64,
    pub(crate) tries: AtomicU64,
    pub(crate) bytes_copied: AtomicU64,
}

impl Counters {
    /// The counts so far.
    pub(crate) fn snapshot(&self) -> RequestCounts {
        let calls = self.calls.load(Ordering::Relaxed);
        let tries = self.tries.load(Ordering::Relaxed);
        RequestCounts {
            requests: calls,
            retries: tries.saturating_sub(calls),
            bytes_copied: self.bytes_copied.load(Ordering::Relaxed),
        }
    }
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
pub(crate) fn client_options(options: &BlobSinkOptions, counters: &Arc<Counters>) -> ClientOptions {
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
