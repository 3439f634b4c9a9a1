//! The `/auditLogs/signIns` pager: one HTTP client, bearer tokens from [`TokenProvider`],
//! `@odata.nextLink` followed only on the configured origin, retries per [`throttle::decide`]
//! within the run's retry budget, one token refresh on 401, and Graph's errors explained.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, RETRY_AFTER};
use serde_json::Value;
use time::OffsetDateTime;
use tracing::{debug, warn};
use url::Url;

use crate::config::{EventType, GraphSettings, GraphVersion};
use crate::credential::{AuthError, TokenProvider, GRAPH_SCOPE};
use crate::graph::model::{Field, PropertySet, PropsInto, SignIn, SignInError, SignInRecord};
use crate::graph::query::{self, PAGE_SIZE};
use crate::graph::rate::RateWindow;
use crate::graph::slots::{PageClaim, PageLease};
use crate::graph::throttle::{self, Decision, Failure};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use yoke::{Yoke, Yokeable};

pub use crate::graph::query::Window;

/// Longest a single request (headers and body) may take before it counts as a failed attempt.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(180);
/// Asks Graph to send evolvable enum members added after `unknownFutureValue` (e.g.
/// `incomingTokenType: refreshToken`, policy results `reportOnly…`) instead of replacing them with
/// `unknownFutureValue`
/// (<https://learn.microsoft.com/graph/best-practices-concept#handling-future-members-in-evolvable-enumerations>).
/// A CSV export wants the real value.
pub const PREFER_UNKNOWN_ENUM_MEMBERS: &str = "include-unknown-enum-members";
/// Page buffers kept for reuse, and the largest kept: one per page a run holds or reads at once
/// (its page slots: two, four when each chain reads one query per event type), and none of an
/// unusual size.
const POOLED_BUFFERS: usize = 4;
const POOLED_BUFFER_BYTES: usize = 8 * 1024 * 1024;

/// Retry budget of [`GraphClient::probe`]: `check` should answer in seconds.
pub const PROBE_BUDGET: Duration = Duration::from_secs(10);

const HINT_PERMISSIONS: &str =
    "the identity needs the Microsoft Graph application permissions AuditLog.Read.All and \
     Directory.Read.All (admin consent)";
const HINT_PREMIUM: &str = "sign-in logs need Microsoft Entra ID P1 or P2 on the tenant (licensed \
     tenants get this answer intermittently too, mostly when the identity lacks Directory.Read.All, which \
     Graph needs for its license check)";
/// `Authentication_MSGraphPermissionMissing`: "Calling principal does not have required MSGraph
/// permissions AuditLog.Read.All" (as reported in microsoftgraph/microsoft-graph-explorer-v4#2731).
const HINT_AUDIT_LOG: &str = "the identity lacks the Microsoft Graph application permission \
     AuditLog.Read.All (grant it with admin consent; Directory.Read.All is needed too)";

/// Slow failures of one request in a row — timeouts, and 500/502/504 (or 503 without
/// `Retry-After`) — after which the request is given up as [`GraphError::Slow`]: Graph's
/// guidance for slow sign-in pages is a shorter time range, which the caller can ask for; the
/// same URL would only be slow again.
const SLOW_FAILURES: u32 = 2;

/// Restarts of a query from its first page after Graph refused one of its own skiptokens
/// (`400 Invalid Skip Token`, a transient service fault: microsoftgraph/msgraph-sdk-powershell
/// #1388). Rows read again are deduplicated by id.
const SKIPTOKEN_RESTARTS: u32 = 2;

/// Why the Graph source stopped.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error("token: {0}")]
    Auth(#[from] AuthError),
    #[error("Graph denied access (403 {code}): {hint}. Graph said: {message}")]
    Denied {
        code: String,
        message: String,
        hint: String,
    },
    #[error("Graph rejected the query (400 {code}): {message} (check SIGNINS_FILTER, SIGNINS_EVENT_TYPES and SIGNINS_GRAPH_VERSION)")]
    BadRequest { code: String, message: String },
    #[error(
        "Graph refused the token even after a refresh (401 {code}): {message}. Check that the identity \
         belongs to the tenant and that SIGNINS_GRAPH_ENDPOINT matches its cloud"
    )]
    Unauthorized { code: String, message: String },
    #[error(
        "Graph request failed {attempts} times (last: {last}); the retry budget of {}s (SIGNINS_RETRY_BUDGET) \
         is spent, so this run stops without writing the incomplete window",
        budget.as_secs()
    )]
    Throttled {
        last: String,
        attempts: u32,
        budget: Duration,
    },
    #[error("Graph answered HTTP {status} ({code}): {message}")]
    Http {
        status: u16,
        code: String,
        message: String,
    },
    #[error("page {page} of the sign-ins is not valid: {detail}")]
    Malformed { page: u64, detail: String },
    #[error(
        "Graph's @odata.nextLink points to {host}, not the configured endpoint {expected}; stopped without \
         following it (the token is only ever sent to SIGNINS_GRAPH_ENDPOINT)"
    )]
    ForeignNextLink { host: String, expected: String },
    #[error("cannot reach Graph: {0}")]
    Transport(String),
    /// The page timed out or failed with a server error twice in a row: ask for a shorter window.
    #[error(
        "Graph did not answer page {page} in time or failed it twice in a row (last: {last}); \
         a shorter time range is Microsoft's remedy"
    )]
    Slow { page: u64, last: String },
}

impl GraphError {
    /// Graph's 400 for a `$filter` it does not support ("Invalid filter clause", as it answers a
    /// lambda over `signInEventTypes` it cannot evaluate: microsoftgraph/microsoft-graph-docs
    /// #14173 and #5676).
    pub fn is_invalid_filter(&self) -> bool {
        matches!(self, GraphError::BadRequest { message, .. }
            if message.to_ascii_lowercase().contains("invalid filter clause"))
    }
}

/// Counters across every pager of one client.
#[derive(Default, Clone, Debug, PartialEq, Eq)]
pub struct GraphStats {
    /// Pages read successfully.
    pub pages: u64,
    /// HTTP requests sent (retries included).
    pub requests: u64,
    /// Requests that were a retry of an earlier failed one (including the one after a 401).
    pub retries: u64,
    /// Answers that were 429 or 503.
    pub throttled: u64,
}

#[derive(Default)]
struct Counters {
    pages: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
    throttled: AtomicU64,
}

/// `m`'s guard even if a panicking holder poisoned it: every value guarded here stays
/// consistent between statements.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Total time that may be spent waiting before retries.
struct Budget {
    limit: Duration,
    spent: Mutex<Duration>,
}

impl Budget {
    fn new(limit: Duration) -> Budget {
        Budget {
            limit,
            spent: Mutex::new(Duration::ZERO),
        }
    }

    /// Counts the time a failed attempt took against the budget: a slow failure (a timeout)
    /// spends the run's patience as much as a sleep does.
    fn charge(&self, wasted: Duration) {
        let mut spent = lock(&self.spent);
        *spent += wasted;
    }

    /// Decides under the lock, so concurrent pagers cannot overspend; a retry reserves its wait.
    fn decide(&self, failure: Failure, retry_after: Option<&str>, attempt: u32) -> Decision {
        let mut spent = lock(&self.spent);
        let left = self.limit.saturating_sub(*spent);
        let decision = throttle::decide(
            failure,
            retry_after,
            attempt,
            left,
            SystemTime::now(),
            rand::random::<f64>(),
        );
        if let Decision::Retry(wait) = decision {
            *spent += wait;
        }
        decision
    }
}

/// The Graph sign-ins source. Cheap to clone; clones share the HTTP client, budget and counters.
#[derive(Clone)]
pub struct GraphClient {
    inner: Arc<Inner>,
    request_timeout: Duration,
}

struct Inner {
    http: reqwest::Client,
    endpoint: Url,
    version: GraphVersion,
    extra_filter: Option<String>,
    tokens: TokenProvider,
    budget: Budget,
    /// Every request of the client, pagers and retries alike, is paced here.
    rate: Mutex<RateWindow>,
    /// Buffers of pages already read (see [`GraphClient::recycle`]).
    buffers: Mutex<Vec<PageBuffer>>,
    /// The properties of each record a page is parsed for.
    properties: PropertySet,
    counters: Counters,
}

impl std::fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphClient")
            .field("endpoint", &self.inner.endpoint.as_str())
            .field("version", &self.inner.version)
            .field("tokens", &self.inner.tokens)
            .finish_non_exhaustive()
    }
}

/// The Graph scope that belongs to a national-cloud endpoint, if `endpoint` is one.
fn national_cloud_scope(endpoint: &Url) -> Option<&'static str> {
    match endpoint.host_str()? {
        "graph.microsoft.us" => Some("https://graph.microsoft.us/.default"),
        "dod-graph.microsoft.us" => Some("https://dod-graph.microsoft.us/.default"),
        "microsoftgraph.chinacloudapi.cn" => {
            Some("https://microsoftgraph.chinacloudapi.cn/.default")
        }
        _ => None,
    }
}

impl GraphClient {
    /// One HTTP client (rustls with the platform's trust store, so `SSL_CERT_FILE` works; no
    /// redirects) for the whole run.
    pub fn new(settings: &GraphSettings, tokens: TokenProvider) -> Result<GraphClient, GraphError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("signin-export/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(20))
            .build()
            .map_err(|e| GraphError::Transport(format!("cannot build the HTTP client: {e}")))?;
        let tokens = match national_cloud_scope(&settings.endpoint) {
            Some(scope) if tokens.scope() == GRAPH_SCOPE => tokens.with_scope(scope),
            _ => tokens,
        };
        Ok(GraphClient {
            inner: Arc::new(Inner {
                http,
                endpoint: settings.endpoint.clone(),
                version: settings.version,
                extra_filter: settings
                    .extra_filter
                    .clone()
                    .filter(|f| !f.trim().is_empty()),
                tokens,
                budget: Budget::new(settings.retry_budget),
                rate: Mutex::new(RateWindow::new(settings.rate)),
                buffers: Mutex::new(Vec::new()),
                properties: settings.properties,
                counters: Counters::default(),
            }),
            request_timeout: REQUEST_TIMEOUT,
        })
    }

    /// The same client with another per-request timeout (tests of stalled pages).
    pub fn with_request_timeout(mut self, timeout: Duration) -> GraphClient {
        self.request_timeout = timeout;
        self
    }

    /// The first page's URL of one query.
    pub fn first_page_url(
        &self,
        window: &Window,
        event_types: &[EventType],
        server_filter: Option<&str>,
        top: u32,
    ) -> Result<Url, GraphError> {
        let filter = query::filter(
            window,
            event_types,
            server_filter,
            self.inner.extra_filter.as_deref(),
        );
        query::signins_url(&self.inner.endpoint, self.inner.version, top, &filter)
            .map_err(|e| GraphError::Transport(format!("cannot build the request URL: {e}")))
    }

    /// One query of one event type; see [`GraphClient::pager_for`].
    pub fn pager(
        &self,
        window: Window,
        event_type: EventType,
        server_filter: Option<String>,
    ) -> SignInPager {
        self.pager_for(window, &[event_type], server_filter)
    }

    /// One query for a set of event types: the window, the event types (one
    /// `signInEventTypes/any(…)` clause), the preset's server clause (if any) and
    /// `SIGNINS_FILTER`, AND-ed. Graph returns the matching sign-ins of every type in one
    /// newest-first sequence of pages, so no client-side merge is needed.
    pub fn pager_for(
        &self,
        window: Window,
        event_types: &[EventType],
        server_filter: Option<String>,
    ) -> SignInPager {
        let first = self.first_page_url(&window, event_types, server_filter.as_deref(), PAGE_SIZE);
        let (next, pending_error) = match first {
            Ok(url) => (Some(url), None),
            Err(e) => (None, Some(e)),
        };
        SignInPager {
            client: self.clone(),
            first: next.clone(),
            next,
            pending_error,
            event_types: event_types.to_vec(),
            page: 0,
            restarts: 0,
            claim: None,
        }
    }

    /// Counters so far, across all pagers.
    pub fn stats(&self) -> GraphStats {
        let c = &self.inner.counters;
        GraphStats {
            pages: c.pages.load(Ordering::Relaxed),
            requests: c.requests.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            throttled: c.throttled.load(Ordering::Relaxed),
        }
    }

    /// For `check`: one request with `$top=1` over the last hour, the same filter shape as a run
    /// (the configured event types, `SIGNINS_FILTER`). Returns the rows of that page (0 or 1).
    pub async fn probe(&self, event_types: &[EventType]) -> Result<usize, GraphError> {
        let end = OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap_or_else(|_| OffsetDateTime::now_utc());
        let window = Window {
            start: end - time::Duration::hours(1),
            end,
        };
        let url = self.first_page_url(&window, event_types, None, 1)?;
        let budget = Budget::new(PROBE_BUDGET.min(self.inner.budget.limit));
        let (body, _) = self.get(&url, 1, &budget, None).await?;
        let page = parse_page(body, 1, self.inner.properties)?;
        Ok(page.rows.len())
    }

    /// `link` as a URL, if it is on the configured endpoint's origin (scheme, host and port).
    fn check_next_link(&self, link: &str, page: u64) -> Result<Url, GraphError> {
        let url = Url::parse(link).map_err(|e| GraphError::Malformed {
            page,
            detail: format!("@odata.nextLink is not an absolute URL ({e})"),
        })?;
        if url.origin() != self.inner.endpoint.origin() {
            return Err(GraphError::ForeignNextLink {
                host: url.origin().ascii_serialization(),
                expected: self.inner.endpoint.origin().ascii_serialization(),
            });
        }
        Ok(url)
    }

    fn rate(&self) -> MutexGuard<'_, RateWindow> {
        lock(&self.inner.rate)
    }

    fn buffers(&self) -> MutexGuard<'_, Vec<PageBuffer>> {
        lock(&self.inner.buffers)
    }

    /// Gives a read page's buffers back for the next page. A page is ~6.5 MB of JSON and ~1.3 MB
    /// of records: reading each into fresh memory cost a page fault per 4 KiB touched (the
    /// largest item of the profile after parsing), and reused buffers also keep the heap from
    /// fragmenting.
    pub fn recycle(&self, page: PageRows) {
        let (buffer, lease) = page.into_parts();
        self.keep_buffer(buffer);
        // Only now: whoever takes the slot next finds the buffer in the pool.
        drop(lease);
    }

    /// Pools `buffer` for the next page, unless the pool is full or the buffer unusually large.
    fn keep_buffer(&self, mut buffer: PageBuffer) {
        if buffer.bytes.capacity() > POOLED_BUFFER_BYTES {
            return;
        }
        if buffer.records.capacity() > PAGE_SIZE as usize + 1 {
            buffer.records = Vec::new();
        }
        let mut buffers = self.buffers();
        if buffers.len() < POOLED_BUFFERS {
            buffers.push(buffer);
        }
    }

    /// Reads the body of a successful answer into a reused buffer.
    async fn read_body(
        &self,
        response: &mut reqwest::Response,
    ) -> Result<PageBuffer, reqwest::Error> {
        let mut buffer = self.buffers().pop().unwrap_or_default();
        let bytes = buffer.bytes_mut();
        if let Some(length) = response.content_length() {
            bytes.reserve(
                usize::try_from(length)
                    .unwrap_or(0)
                    .min(POOLED_BUFFER_BYTES),
            );
        }
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
                Ok(None) => return Ok(buffer),
                Err(e) => {
                    self.keep_buffer(buffer);
                    return Err(e);
                }
            }
        }
    }

    /// Whether requests waited for `SIGNINS_GRAPH_RATE` within its last window: the export is
    /// bound by the rate, not by Graph's answers.
    pub fn pacing(&self) -> bool {
        self.rate().pacing(std::time::Instant::now())
    }

    /// Waits for a slot in `SIGNINS_GRAPH_RATE` (see [`crate::graph::rate`]).
    async fn pace(&self) {
        loop {
            let retry_at = match self.rate().try_send(std::time::Instant::now()) {
                Ok(()) => return,
                Err(at) => at,
            };
            tokio::time::sleep_until(retry_at.into()).await;
        }
    }

    /// GETs `url` (on the configured origin) with retries; the body of the 2xx answer, read once
    /// `claim` (if any) holds a page slot for it, and the lease on that slot.
    async fn get(
        &self,
        url: &Url,
        page: u64,
        budget: &Budget,
        claim: Option<&Arc<PageClaim>>,
    ) -> Result<(PageBuffer, Option<PageLease>), GraphError> {
        let counters = &self.inner.counters;
        let mut attempt: u32 = 0;
        let mut refreshed = false;
        let mut slow_failures = 0;
        loop {
            self.pace().await;
            let attempt_started = std::time::Instant::now();
            let token = self.inner.tokens.token().await?;
            let mut bearer =
                HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| {
                    GraphError::Auth(AuthError::Rejected {
                        code: None,
                        detail: "the token is not a valid header value".into(),
                    })
                })?;
            bearer.set_sensitive(true);
            counters.requests.fetch_add(1, Ordering::Relaxed);
            let sent = self
                .inner
                .http
                .get(url.clone())
                .header(AUTHORIZATION, bearer)
                .header(ACCEPT, "application/json")
                .header("Prefer", PREFER_UNKNOWN_ENUM_MEMBERS)
                .timeout(self.request_timeout)
                .send()
                .await;
            let (failure, retry_after, last, slow) = match sent {
                Ok(mut response) if response.status().is_success() => {
                    let lease = match claim {
                        Some(claim) => Some(claim.lease().await),
                        None => None,
                    };
                    match self.read_body(&mut response).await {
                        Ok(body) => {
                            self.rate().succeeded();
                            return Ok((body, lease));
                        }
                        Err(e) => {
                            let slow = e.is_timeout();
                            (Failure::Transport, None, describe_transport(e), slow)
                        }
                    }
                }
                Ok(response) => {
                    let status = response.status().as_u16();
                    let retry_after = response
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    if status == 401 && !refreshed {
                        refreshed = true;
                        counters.retries.fetch_add(1, Ordering::Relaxed);
                        debug!(page, "Graph answered 401; refreshing the token once");
                        self.inner.tokens.refresh().await?;
                        continue;
                    }
                    if matches!(status, 429 | 503) {
                        counters.throttled.fetch_add(1, Ordering::Relaxed);
                    }
                    if status == 429 {
                        // Over the app's budget (shared with other tools): everyone waits.
                        let pause = retry_after
                            .as_deref()
                            .and_then(|v| throttle::parse_retry_after(v, SystemTime::now()));
                        self.rate().throttled(std::time::Instant::now(), pause);
                    }
                    if !throttle::is_retryable(Failure::Status(status)) {
                        let body = response.bytes().await.unwrap_or_default();
                        let error = error_for_status(status, &body);
                        let licence_check = matches!(&error, GraphError::Denied { code, .. }
                            if code == "Authentication_RequestFromNonPremiumTenantOrB2CTenant");
                        if !licence_check {
                            return Err(error);
                        }
                        budget.charge(attempt_started.elapsed());
                        match budget.decide(Failure::LicenceCheck, None, attempt) {
                            Decision::Retry(wait) => {
                                debug!(
                                    page,
                                    "Graph answered 403 (license check); retrying, it is often transient"
                                );
                                counters.retries.fetch_add(1, Ordering::Relaxed);
                                attempt += 1;
                                tokio::time::sleep(wait).await;
                                continue;
                            }
                            Decision::BudgetExhausted { .. } | Decision::Fail => return Err(error),
                        }
                    }
                    let reason = response.status().canonical_reason().unwrap_or("");
                    let slow = matches!(status, 500 | 502 | 504)
                        || (status == 503 && retry_after.is_none());
                    (
                        Failure::Status(status),
                        retry_after,
                        format!("HTTP {status} {reason}").trim_end().to_string(),
                        slow,
                    )
                }
                Err(e) => {
                    let slow = e.is_timeout();
                    (Failure::Transport, None, describe_transport(e), slow)
                }
            };
            budget.charge(attempt_started.elapsed());
            slow_failures = if slow { slow_failures + 1 } else { 0 };
            if slow_failures == SLOW_FAILURES {
                return Err(GraphError::Slow { page, last });
            }
            match budget.decide(failure, retry_after.as_deref(), attempt) {
                Decision::Retry(wait) => {
                    warn!(
                        page,
                        attempt,
                        wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        last = %last,
                        path = url.path(),
                        "Graph request failed; retrying"
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                    counters.retries.fetch_add(1, Ordering::Relaxed);
                }
                Decision::BudgetExhausted { .. } | Decision::Fail => {
                    return Err(GraphError::Throttled {
                        last,
                        attempts: attempt + 1,
                        budget: budget.limit,
                    });
                }
            }
        }
    }
}

/// A transport error without its URL (which would carry the skiptoken), with its causes.
fn describe_transport(error: reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else if error.is_body() || error.is_decode() {
        "response body interrupted"
    } else {
        "request failed"
    };
    let error = error.without_url();
    let mut text = format!("{kind}: {error}");
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text.chars().take(300).collect()
}

/// Graph's `{"error": {"code", "message"}}`, one line, bounded.
fn graph_error(body: &[u8]) -> (String, String) {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let code = error
        .and_then(|e| e.get("code"))
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_string();
    let message = error
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
    let mut message: String = message
        .replace(['\r', '\n'], " ")
        .chars()
        .take(500)
        .collect();
    if message.is_empty() {
        message = "(no message)".into();
    }
    (code, message)
}

/// The error for a non-retryable status.
fn error_for_status(status: u16, body: &[u8]) -> GraphError {
    let (code, message) = graph_error(body);
    match status {
        400 => GraphError::BadRequest { code, message },
        401 => GraphError::Unauthorized { code, message },
        403 => {
            let hint = match code.as_str() {
                "Authentication_RequestFromNonPremiumTenantOrB2CTenant" => HINT_PREMIUM,
                "Authentication_MSGraphPermissionMissing" => HINT_AUDIT_LOG,
                _ => HINT_PERMISSIONS,
            };
            GraphError::Denied {
                code,
                message,
                hint: hint.to_string(),
            }
        }
        _ => GraphError::Http {
            status,
            code,
            message,
        },
    }
}

/// One page's sign-ins, their text borrowed from the page's own bytes (which it owns): the page
/// is parsed once, into typed records, with no copy of the text that has no JSON escapes.
pub struct PageRows {
    rows: Yoke<Rows<'static>, Vec<u8>>,
    /// The page slot it is held under, if its reader claimed one (see [`crate::graph::slots`]).
    lease: Option<PageLease>,
}

/// The records of one page, borrowing from its bytes.
#[derive(Yokeable)]
pub struct Rows<'a>(Vec<SignInRecord<'a>>);

/// The memory a page is read and parsed into, reused from page to page: its JSON bytes, and an
/// empty vector with room for its records.
#[derive(Debug, Default)]
pub struct PageBuffer {
    bytes: Vec<u8>,
    records: Vec<SignInRecord<'static>>,
}

impl PageBuffer {
    /// The bytes, emptied, to read a page into.
    pub fn bytes_mut(&mut self) -> &mut Vec<u8> {
        self.bytes.clear();
        &mut self.bytes
    }
}

impl From<Vec<u8>> for PageBuffer {
    fn from(bytes: Vec<u8>) -> PageBuffer {
        PageBuffer {
            bytes,
            records: Vec::new(),
        }
    }
}

impl From<&[u8]> for PageBuffer {
    fn from(bytes: &[u8]) -> PageBuffer {
        PageBuffer::from(bytes.to_vec())
    }
}

impl PageRows {
    /// The page's memory, its records dropped (its slot, if any, given back).
    pub fn into_buffer(self) -> PageBuffer {
        self.into_parts().0
    }

    /// The page's memory, its records dropped, and the lease on its slot.
    fn into_parts(self) -> (PageBuffer, Option<PageLease>) {
        let PageRows { mut rows, lease } = self;
        let records = rows.with_mut_return(|rows| {
            let mut page_records = std::mem::take(&mut rows.0);
            page_records.clear();
            // Empty, so nothing borrows the page any more; collected in place (same layout), so
            // the allocation is kept. The closure is never called.
            page_records
                .into_iter()
                .map(|_| SignInRecord::unparsed())
                .collect::<Vec<SignInRecord<'static>>>()
        });
        let buffer = PageBuffer {
            bytes: rows.into_backing_cart(),
            records,
        };
        (buffer, lease)
    }

    /// The page's sign-ins, in Graph's order.
    pub fn rows(&self) -> &[SignInRecord<'_>] {
        &self.rows.get().0
    }

    pub fn len(&self) -> usize {
        self.rows.get().0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Owned copies of the page's sign-ins, for callers that keep them past the page (tests); the
/// export reads [`PageRows::rows`] and copies nothing. The page parsed before, so it parses again.
impl IntoIterator for PageRows {
    type Item = SignIn;
    type IntoIter = std::vec::IntoIter<SignIn>;

    fn into_iter(self) -> Self::IntoIter {
        let items = match serde_json::from_slice::<Value>(self.rows.backing_cart()) {
            Ok(Value::Object(mut page)) => match page.remove("value") {
                Some(Value::Array(items)) => items,
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        let rows: Vec<SignIn> = items
            .into_iter()
            .filter_map(|item| SignIn::from_json(item).ok())
            .collect();
        rows.into_iter()
    }
}

impl std::fmt::Debug for PageRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageRows")
            .field("rows", &self.len())
            .finish()
    }
}

/// One parsed page.
#[derive(Debug)]
pub struct Page {
    pub rows: PageRows,
    pub next_link: Option<String>,
}

impl Page {
    pub fn rows(&self) -> &[SignInRecord<'_>] {
        self.rows.rows()
    }
}

/// The body of a page: `{"value": [...], "@odata.nextLink": "..."}`; every other property is
/// skipped. `value`'s records are parsed for a [`PropertySet`], so the envelope is read by hand
/// (a derived one could not pass the set down).
struct Envelope<'a> {
    value: Option<Vec<SignInRecord<'a>>>,
    next_link: Field<'a>,
}

/// The `visit_*` methods of a page visitor for JSON scalars: not what a page holds there, `None`.
macro_rules! none_for_scalars {
    () => {
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok(None)
        }
    };
}

/// Reads an [`Envelope`]; `None` when the body is not a JSON object.
/// The properties to parse, and the vector the records go in (reused: see [`PageBuffer`]).
struct EnvelopeSeed<'de>(PropertySet, Vec<SignInRecord<'de>>);

impl<'de> DeserializeSeed<'de> for EnvelopeSeed<'de> {
    type Value = Option<Envelope<'de>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EnvelopeSeed<'de> {
    type Value = Option<Envelope<'de>>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a page of sign-ins")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut records = self.1;
        let mut envelope = Envelope {
            value: None,
            next_link: Field::Null,
        };
        let (mut value_seen, mut link_seen) = (false, false);
        while let Some(key) = map.next_key::<EnvelopeKey>()? {
            match key {
                EnvelopeKey::Value if value_seen => {
                    return Err(de::Error::duplicate_field("value"))
                }
                EnvelopeKey::Value => {
                    value_seen = true;
                    let records = std::mem::take(&mut records);
                    envelope.value = map.next_value_seed(RecordsSeed(self.0, records))?;
                }
                EnvelopeKey::NextLink if link_seen => {
                    return Err(de::Error::duplicate_field("@odata.nextLink"))
                }
                EnvelopeKey::NextLink => {
                    link_seen = true;
                    envelope.next_link = map.next_value()?;
                }
                EnvelopeKey::Other => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        Ok(Some(envelope))
    }

    // Anything but an object: not a page.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<de::IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    none_for_scalars!();
}

/// The keys of a page the export reads.
enum EnvelopeKey {
    Value,
    NextLink,
    Other,
}

impl<'de> Deserialize<'de> for EnvelopeKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = EnvelopeKey;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E>(self, key: &str) -> Result<EnvelopeKey, E> {
                Ok(match key {
                    "value" => EnvelopeKey::Value,
                    "@odata.nextLink" => EnvelopeKey::NextLink,
                    _ => EnvelopeKey::Other,
                })
            }
        }
        d.deserialize_identifier(V)
    }
}

/// The `value` array, each element parsed in place for the set and checked as a sign-in;
/// `None` for `null` or any other type (the page then has no `value` array). The records go in
/// the vector given (empty).
struct RecordsSeed<'de>(PropertySet, Vec<SignInRecord<'de>>);

impl<'de> DeserializeSeed<'de> for RecordsSeed<'de> {
    type Value = Option<Vec<SignInRecord<'de>>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RecordsSeed<'de> {
    type Value = Option<Vec<SignInRecord<'de>>>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of sign-ins")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // Graph's pages hold at most `$top` records: sized once, never regrown (serde_json gives
        // no size hint), with room for the slot the end of the array leaves unused.
        let mut rows = self.1;
        rows.clear();
        rows.reserve(
            seq.size_hint()
                .unwrap_or(PAGE_SIZE as usize)
                .min(PAGE_SIZE as usize)
                + 1,
        );
        loop {
            let index = rows.len();
            // Parsed where it stays: a record is too large to move cheaply (see `PropsInto`).
            rows.push(SignInRecord::unparsed());
            let slot = &mut rows[index];
            let checked = match seq.next_element_seed(PropsInto::new(&mut slot.props, self.0))? {
                None => {
                    rows.pop();
                    return Ok(Some(rows));
                }
                Some(false) => Err(SignInError::NotAnObject),
                Some(true) => slot.lift(),
            };
            checked.map_err(|e| de::Error::custom(format!("record {index}: {e}")))?;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map
            .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
            .is_some()
        {}
        Ok(None)
    }
    none_for_scalars!();
}

/// Parses `{"value": [...], "@odata.nextLink": "..."}`, each record for `properties` (the rest of
/// it skipped); any record that is not a sign-in fails the page (never skipped). Public for the
/// benches (`benches/pipeline.rs`).
pub fn parse_page(
    buffer: impl Into<PageBuffer>,
    page: u64,
    properties: PropertySet,
) -> Result<Page, GraphError> {
    let malformed = |detail: String| GraphError::Malformed { page, detail };
    let mut next_link = None;
    let PageBuffer { bytes, records } = buffer.into();
    let rows = Yoke::<Rows<'static>, Vec<u8>>::try_attach_to_cart(bytes, |bytes| {
        // One UTF-8 check of the whole body (std's is vectorised), then serde_json's `str` reader,
        // which trusts it: from a byte slice it would re-validate every string it reads or skips.
        let text = std::str::from_utf8(bytes)
            .map_err(|e| malformed(format!("not JSON (not UTF-8: {e})")))?;
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let envelope = EnvelopeSeed(properties, records)
            .deserialize(&mut deserializer)
            .and_then(|envelope| deserializer.end().map(|()| envelope))
            .map_err(|e| {
                if e.is_syntax() || e.is_eof() {
                    malformed(format!("not JSON ({e})"))
                } else {
                    malformed(e.to_string())
                }
            })?
            .ok_or_else(|| malformed("not a JSON object".into()))?;
        next_link = match envelope.next_link {
            Field::Null => None,
            Field::Str(link) => Some(link.into_owned()),
            _ => return Err(malformed("@odata.nextLink is not a string".into())),
        };
        let records = envelope
            .value
            .ok_or_else(|| malformed("no `value` array".into()))?;
        Ok(Rows(records))
    })?;
    Ok(Page {
        rows: PageRows { rows, lease: None },
        next_link,
    })
}

/// Reads one query stream page by page, following `@odata.nextLink`.
pub struct SignInPager {
    client: GraphClient,
    /// The query's first page: where a restart begins.
    first: Option<Url>,
    next: Option<Url>,
    pending_error: Option<GraphError>,
    event_types: Vec<EventType>,
    page: u64,
    restarts: u32,
    /// The reader's claim its pages are held under, if it has one (see [`crate::graph::slots`]).
    claim: Option<Arc<PageClaim>>,
}

impl std::fmt::Debug for SignInPager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL is left out: nextLinks carry opaque skiptokens.
        f.debug_struct("SignInPager")
            .field("event_types", &self.event_types)
            .field("pages_read", &self.page)
            .field("done", &self.next.is_none())
            .finish_non_exhaustive()
    }
}

impl SignInPager {
    /// Holds every page this pager reads under `claim`.
    pub fn claimed_by(mut self, claim: Arc<PageClaim>) -> SignInPager {
        self.claim = Some(claim);
        self
    }

    /// The event types this query reads.
    pub fn event_types(&self) -> &[EventType] {
        &self.event_types
    }

    /// The next page's sign-ins, or `None` when the previous page had no `@odata.nextLink`.
    /// On error the pager stays where it was (calling again re-requests the same page).
    pub async fn next_page(&mut self) -> Result<Option<PageRows>, GraphError> {
        if let Some(error) = self.pending_error.take() {
            return Err(error);
        }
        let Some(url) = self.next.clone() else {
            return Ok(None);
        };
        let page = self.page + 1;
        let budget = &self.client.inner.budget;
        let (body, lease) = match self
            .client
            .get(&url, page, budget, self.claim.as_ref())
            .await
        {
            Ok(answer) => answer,
            Err(GraphError::BadRequest { code, message })
                if self.page > 0
                    && message.to_ascii_lowercase().contains("skip token")
                    && self.restarts < SKIPTOKEN_RESTARTS =>
            {
                self.restarts += 1;
                warn!(
                    page,
                    restart = self.restarts,
                    code = %code,
                    "Graph refused its own skiptoken; reading the query again from its first page"
                );
                self.next = self.first.clone();
                self.page = 0;
                return Box::pin(self.next_page()).await;
            }
            Err(e) => return Err(e),
        };
        let mut parsed = parse_page(body, page, self.client.inner.properties)?;
        parsed.rows.lease = lease;
        let next = match &parsed.next_link {
            Some(link) => Some(self.client.check_next_link(link, page)?),
            None => None,
        };
        self.next = next;
        self.page = page;
        self.client
            .inner
            .counters
            .pages
            .fetch_add(1, Ordering::Relaxed);
        debug!(
            rows = parsed.rows.len(),
            page,
            event_types = ?self.event_types,
            more = self.next.is_some(),
            "page fetched"
        );
        Ok(Some(parsed.rows))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_parsed_page_gives_back_its_bytes_and_its_records_room() {
        let body = json!({
            "value": [
                {"id": "a", "createdDateTime": "2026-11-28T10:00:00Z"},
                {"id": "b", "createdDateTime": "2026-11-28T09:00:00Z"},
            ],
        })
        .to_string();
        let page = parse_page(body.as_bytes(), 1, PropertySet::all()).unwrap();
        assert_eq!(page.rows().len(), 2);
        let buffer = page.rows.into_buffer();
        assert_eq!(buffer.bytes, body.as_bytes());
        assert!(buffer.records.is_empty());
        let room = buffer.records.capacity();
        assert!(
            room > PAGE_SIZE as usize,
            "the records' vector was not kept: {room}"
        );

        // The next page is read into the same memory.
        let mut buffer = buffer;
        let records = buffer.records.as_ptr();
        buffer.bytes_mut().extend_from_slice(body.as_bytes());
        let page = parse_page(buffer, 2, PropertySet::all()).unwrap();
        assert_eq!(page.rows()[1].id(), "b");
        assert_eq!(page.rows().as_ptr() as usize, records as usize);
    }

    #[test]
    fn pages_parse_and_bad_records_fail_the_page() {
        let body = json!({
            "@odata.context": "x",
            "value": [{"id": "a", "createdDateTime": "2026-11-28T10:00:00Z"}],
            "@odata.nextLink": "https://graph.microsoft.com/v1.0/auditLogs/signIns?$skiptoken=abc"
        });
        let page = parse_page(body.to_string().as_bytes(), 1, PropertySet::all()).unwrap();
        assert_eq!(page.rows().len(), 1);
        assert_eq!(page.rows()[0].id(), "a");
        assert!(page.next_link.is_some());

        let last = parse_page(
            &br#"{"value": [], "@odata.nextLink": null}"#[..],
            2,
            PropertySet::all(),
        )
        .unwrap();
        assert!(last.rows().is_empty() && last.next_link.is_none());

        let bad = json!({"value": [{"id": "ok", "createdDateTime": "2026-11-28T10:00:00Z"}, {"id": "b7", "createdDateTime": "soon"}]});
        let err = parse_page(bad.to_string().as_bytes(), 3, PropertySet::all()).unwrap_err();
        assert!(
            matches!(err, GraphError::Malformed { page: 3, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("b7"), "{err}");

        for body in [
            &b"{\"value\": [ {\"id\""[..],
            b"[]",
            b"{}",
            b"{\"value\": {}}",
            b"{\"value\": [], \"@odata.nextLink\": 5}",
        ] {
            assert!(
                matches!(
                    parse_page(body, 4, PropertySet::all()),
                    Err(GraphError::Malformed { page: 4, .. })
                ),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn forbidden_codes_get_their_explanations() {
        let denied = br#"{"error":{"code":"Authorization_RequestDenied","message":"Insufficient privileges to complete the operation."}}"#;
        let err = error_for_status(403, denied);
        let text = err.to_string();
        assert!(
            text.contains("AuditLog.Read.All") && text.contains("Directory.Read.All"),
            "{text}"
        );
        assert!(text.contains("Insufficient privileges"), "{text}");

        let premium = br#"{"error":{"code":"Authentication_RequestFromNonPremiumTenantOrB2CTenant","message":"Neither tenant is B2C or tenant doesn't have premium license"}}"#;
        let text = error_for_status(403, premium).to_string();
        assert!(text.contains("P1 or P2"), "{text}");
        assert!(!text.contains("AuditLog.Read.All"), "{text}");
    }

    #[test]
    fn bad_requests_carry_graph_code_and_message() {
        let body = br#"{"error":{"code":"BadRequest","message":"Invalid filter clause:\nSyntax error at position 12"}}"#;
        let err = error_for_status(400, body);
        assert!(matches!(err, GraphError::BadRequest { .. }));
        let text = err.to_string();
        assert!(
            text.contains("BadRequest") && text.contains("Invalid filter clause: Syntax error"),
            "{text}"
        );
        assert!(text.contains("SIGNINS_FILTER"), "{text}");
        // A body that is not Graph's error shape still says something.
        let text = error_for_status(404, b"<html>nope</html>").to_string();
        assert!(text.contains("404") && text.contains("nope"), "{text}");
    }

    fn settings(endpoint: &str) -> GraphSettings {
        GraphSettings {
            endpoint: Url::parse(endpoint).unwrap(),
            version: GraphVersion::Beta,
            auth: crate::config::AuthMode::ManagedIdentity { client_id: None },
            event_types: vec![EventType::InteractiveUser],
            extra_filter: Some("userType eq 'member'".into()),
            retry_budget: Duration::from_secs(30),
            rate: crate::config::GraphRate {
                requests: 1000,
                per: Duration::from_secs(1),
            },
            properties: PropertySet::all(),
        }
    }

    fn client(endpoint: &str) -> GraphClient {
        let tokens = TokenProvider::fixed(crate::config::Secret::new("t"));
        GraphClient::new(&settings(endpoint), tokens).unwrap()
    }

    #[test]
    fn next_links_must_stay_on_the_configured_origin() {
        let c = client("https://graph.microsoft.com");
        assert!(c
            .check_next_link(
                "https://graph.microsoft.com/v1.0/auditLogs/signIns?$skiptoken=x",
                1
            )
            .is_ok());
        assert!(c
            .check_next_link("https://GRAPH.microsoft.com:443/beta/x", 1)
            .is_ok());
        for (link, host) in [
            (
                "https://evil.example.com/v1.0/auditLogs/signIns?$skiptoken=x",
                "https://evil.example.com",
            ),
            (
                "http://graph.microsoft.com/v1.0/x",
                "http://graph.microsoft.com",
            ),
            (
                "https://graph.microsoft.com:8443/v1.0/x",
                "https://graph.microsoft.com:8443",
            ),
            (
                "https://graph.microsoft.com.evil.example/v1.0/x",
                "https://graph.microsoft.com.evil.example",
            ),
        ] {
            match c.check_next_link(link, 1) {
                Err(GraphError::ForeignNextLink {
                    host: got,
                    expected,
                }) => {
                    assert_eq!(got, host);
                    assert_eq!(expected, "https://graph.microsoft.com");
                }
                other => panic!("{link}: {other:?}"),
            }
        }
        assert!(matches!(
            c.check_next_link("/v1.0/relative", 1),
            Err(GraphError::Malformed { .. })
        ));
    }

    #[test]
    fn first_page_url_includes_extra_filter_and_event_type() {
        let c = client("http://127.0.0.1:9");
        let window = Window {
            start: time::macros::datetime!(2026-11-21 10:00:00 UTC),
            end: time::macros::datetime!(2026-11-28 10:00:00 UTC),
        };
        let url = c
            .first_page_url(
                &window,
                &[EventType::NonInteractiveUser],
                Some("clientAppUsed eq 'IMAP4'"),
                PAGE_SIZE,
            )
            .unwrap();
        let filter = url
            .query_pairs()
            .find(|(k, _)| k == "$filter")
            .unwrap()
            .1
            .into_owned();
        assert_eq!(
            filter,
            "createdDateTime ge 2026-11-21T10:00:00Z and createdDateTime le 2026-11-28T10:00:00Z and (clientAppUsed eq 'IMAP4') \
             and (userType eq 'member') and signInEventTypes/any(t: t eq 'nonInteractiveUser')"
        );
        assert!(url
            .as_str()
            .starts_with("http://127.0.0.1:9/beta/auditLogs/signIns?$top=1000&$filter="));
    }

    #[test]
    fn national_clouds_get_their_own_scope() {
        let c = client("https://graph.microsoft.us");
        assert_eq!(
            c.inner.tokens.scope(),
            "https://graph.microsoft.us/.default"
        );
        let c = client("https://graph.microsoft.com");
        assert_eq!(c.inner.tokens.scope(), GRAPH_SCOPE);
    }

    #[test]
    fn the_budget_is_shared_and_reserved() {
        let budget = Budget::new(Duration::from_secs(10));
        assert_eq!(
            budget.decide(Failure::Status(429), Some("6"), 0),
            Decision::Retry(Duration::from_secs(6))
        );
        // 4 s left: a second 6 s wait no longer fits.
        assert_eq!(
            budget.decide(Failure::Status(429), Some("6"), 0),
            Decision::BudgetExhausted {
                wanted: Duration::from_secs(6)
            }
        );
        assert_eq!(
            budget.decide(Failure::Status(429), Some("4"), 0),
            Decision::Retry(Duration::from_secs(4))
        );
        assert!(matches!(
            budget.decide(Failure::Status(503), None, 0),
            Decision::BudgetExhausted { .. }
        ));
        assert_eq!(budget.decide(Failure::Status(403), None, 0), Decision::Fail);
    }
}
