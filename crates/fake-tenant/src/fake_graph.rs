//! A strict fake of Microsoft Graph's `/auditLogs/signIns`, the Entra ID v2 token endpoint and the
//! App Service managed-identity endpoint, served by axum over real HTTP(S) on loopback.
//!
//! It backs the `demo` command and every integration test. It behaves like the real services
//! where a client can get things wrong: bearer tokens are checked (issuer, audience, lifetime,
//! revocation), `$filter`/`$top` follow the service's grammar and refusals ([`crate::odata`]),
//! results are newest first, and paging uses opaque `$skiptoken`s bound to a server-side
//! snapshot. Faults (429 with `Retry-After`, 5xx, malformed or slow pages, foreign next links,
//! permission errors) are injected at run time through [`Faults`]. Every request is recorded.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::entra::{self, AppCredential, IssuedToken, TokenCheck};
use super::odata::{self, ApiVersion, Fields as _, SignInFields};
use super::schema;

/// The audience of Graph tokens.
pub const GRAPH_RESOURCE: &str = "https://graph.microsoft.com";
/// The audience of Blob Storage tokens.
pub const STORAGE_RESOURCE: &str = "https://storage.azure.com";
/// Graph's default (and maximum) page size.
pub const MAX_PAGE_SIZE: usize = 1000;
/// The content type Graph sends with JSON pages.
pub const GRAPH_CONTENT_TYPE: &str =
    "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8";

/// One request the fake received (recorded on arrival; `status` is 0 until it is answered, and
/// stays 0 if the client went away first).
#[derive(Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path_and_query: String,
    pub host: String,
    pub authorization: Option<String>,
    /// The `Prefer` header, if any (clients should send `include-unknown-enum-members`).
    pub prefer: Option<String>,
    pub status: u16,
}

impl std::fmt::Debug for RecordedRequest {
    /// The credential is redacted: recordings end up in assertion messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let authorization = self
            .authorization
            .as_deref()
            .map(|a| match a.split_once(' ') {
                Some((scheme, _)) => format!("{scheme} <redacted>"),
                None => "<redacted>".to_owned(),
            });
        f.debug_struct("RecordedRequest")
            .field("method", &self.method)
            .field("path_and_query", &self.path_and_query)
            .field("host", &self.host)
            .field("authorization", &authorization)
            .field("prefer", &self.prefer)
            .field("status", &self.status)
            .finish()
    }
}

impl RecordedRequest {
    /// Whether this was a Graph sign-ins page request.
    pub fn is_signins(&self) -> bool {
        self.path_and_query
            .split('?')
            .next()
            .is_some_and(|p| p.ends_with("/auditLogs/signIns"))
    }

    /// The decoded query parameters.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        let query = self.path_and_query.split_once('?').map_or("", |(_, q)| q);
        url::form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    /// One decoded query parameter.
    pub fn query(&self, name: &str) -> Option<String> {
        self.query_pairs()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

/// What a throttled response says in `Retry-After`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RetryAfter {
    /// `Retry-After: <n>`.
    Seconds(u64),
    /// `Retry-After: <IMF-fixdate>` two seconds in the future.
    HttpDate,
    /// No `Retry-After` header.
    #[default]
    None,
}

/// Why Graph refuses with 403.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraphDenial {
    /// The identity lacks `AuditLog.Read.All` (`Authorization_RequestDenied`).
    MissingPermission,
    /// The tenant has no Entra ID P1/P2 (`Authentication_RequestFromNonPremiumTenantOrB2CTenant`).
    NonPremiumTenant,
    /// The app has no `AuditLog.Read.All` application permission
    /// (`Authentication_MSGraphPermissionMissing`, as reported in
    /// microsoftgraph/microsoft-graph-explorer-v4#2731).
    AuditLogPermissionMissing,
}

/// Run-time fault injection for Graph page requests (the ones that pass auth and validation).
#[derive(Debug, Default)]
pub struct Faults {
    throttle: Mutex<(usize, Option<RetryAfter>)>,
    rate: Mutex<Option<RateLimit>>,
    /// Requests refused by the rate limit.
    rate_limited: AtomicU64,
    /// Page requests being answered now, and the most at once.
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
    fail: Mutex<(usize, (u16, RetryAfter))>,
    malformed: AtomicUsize,
    slow: Mutex<Duration>,
    foreign: Mutex<Option<String>>,
    page_cap: AtomicUsize,
    early_end: AtomicUsize,
    slow_wide: Mutex<Option<(Duration, Duration)>>,
    deny: Mutex<Option<GraphDenial>>,
    deny_counted: Mutex<(usize, Option<GraphDenial>)>,
    bad_skiptoken: AtomicUsize,
    refuse_combined_event_types: AtomicBool,
    token_fail: Mutex<(usize, u16)>,
    /// Tokens with a serial below this are revoked.
    pub(crate) revoked_below: AtomicU64,
    pub(crate) next_serial: AtomicU64,
}

/// Graph's request limit for identity and access reports: at most `requests` in any `per`
/// ("5 requests per 10 seconds" per app per tenant,
/// <https://learn.microsoft.com/graph/throttling-limits#identity-and-access-reports-service-limits>).
/// Every request of a fake comes from the one app of its tests, so one window serves it.
#[derive(Debug)]
struct RateLimit {
    requests: usize,
    per: Duration,
    /// When admitted requests arrived, oldest first; refused ones do not count.
    admitted: VecDeque<Instant>,
}

impl RateLimit {
    /// `None` when the request is admitted, else the `Retry-After` in whole seconds (Graph
    /// sends delta-seconds), rounded up so that a client honouring it is admitted.
    fn admit(&mut self, now: Instant) -> Option<u64> {
        while self
            .admitted
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.per)
        {
            self.admitted.pop_front();
        }
        if self.admitted.len() < self.requests {
            self.admitted.push_back(now);
            return None;
        }
        let free_at = self.admitted[self.admitted.len() - self.requests] + self.per;
        Some(free_at.duration_since(now).as_secs_f64().ceil().max(1.0) as u64)
    }
}

/// One page request being answered (see [`Faults::most_in_flight`]).
struct InFlight<'f>(&'f Faults);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock must not make the fake unusable for the rest of a test.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Faults {
    /// The next `n` page requests get 429 with the given `Retry-After`.
    pub fn throttle_next(&self, n: usize, retry_after: RetryAfter) {
        *lock(&self.throttle) = (n, Some(retry_after));
    }

    /// From now on, at most `requests` page requests in any `per`; the others get 429 with
    /// `Retry-After` (as Graph limits each app on a tenant).
    pub fn limit_rate(&self, requests: usize, per: Duration) {
        *lock(&self.rate) = Some(RateLimit {
            requests: requests.max(1),
            per,
            admitted: VecDeque::new(),
        });
    }

    /// Requests the rate limit refused so far.
    pub fn rate_limited(&self) -> u64 {
        self.rate_limited.load(Ordering::SeqCst)
    }

    /// The most page requests the fake was answering at once (admitted ones, while their page
    /// was delayed and built).
    pub fn most_in_flight(&self) -> usize {
        self.most_in_flight.load(Ordering::SeqCst)
    }

    fn enter(&self) -> InFlight<'_> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(self)
    }

    fn over_rate(&self) -> Option<u64> {
        let retry_after = lock(&self.rate).as_mut()?.admit(Instant::now());
        if retry_after.is_some() {
            self.rate_limited.fetch_add(1, Ordering::SeqCst);
        }
        retry_after
    }

    /// The next `n` page requests get `status` (500, 502, 503 or 504) with a Graph error body.
    pub fn fail_next(&self, n: usize, status: u16) {
        *lock(&self.fail) = (n, (status, RetryAfter::None));
    }

    /// Like [`Self::fail_next`], with a `Retry-After` header (Graph sends one with some 503s).
    pub fn fail_next_with_retry_after(&self, n: usize, status: u16, retry_after: RetryAfter) {
        *lock(&self.fail) = (n, (status, retry_after));
    }

    /// The next `n` page requests get 200 with a truncated, invalid JSON body.
    pub fn malformed_next(&self, n: usize) {
        self.malformed.store(n, Ordering::SeqCst);
    }

    /// Delay before every page response (zero to turn off). A page's delay is fixed when it
    /// arrives: changing it later does not release a page already waiting, so a client's own
    /// timeout is what ends a stalled page.
    pub fn slow_pages(&self, delay: Duration) {
        *lock(&self.slow) = delay;
    }

    async fn page_delay(&self) {
        let delay = *lock(&self.slow);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }

    /// Every token issued so far is rejected from now on (401, as after a CAE revocation).
    pub fn revoke_tokens(&self) {
        self.revoked_below
            .store(self.next_serial.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    /// The next page that has a successor links to this origin instead of ours (`None` clears).
    pub fn foreign_next_link(&self, origin: Option<String>) {
        *lock(&self.foreign) = origin;
    }

    /// Serve at most `n` records per page whatever `$top` says (0 removes the cap).
    /// Every page request whose `createdDateTime` window is wider than `width` waits `delay`
    /// before answering: sign-in pages are reported to take minutes on selective filters, and
    /// Microsoft's guidance is a shorter time range (which this fault rewards).
    pub fn slow_windows_wider_than(&self, width: Duration, delay: Duration) {
        *lock(&self.slow_wide) = Some((width, delay));
    }

    async fn wide_window_delay(&self, filter: Option<&str>) {
        let Some((width, delay)) = *lock(&self.slow_wide) else {
            return;
        };
        let bound = |op: &str| {
            let text = filter?;
            let at = text.find(&format!("createdDateTime {op} "))? + "createdDateTime ge ".len();
            let token = text[at..].split_whitespace().next()?;
            OffsetDateTime::parse(token, &time::format_description::well_known::Rfc3339).ok()
        };
        let wide = match (bound("ge"), bound("le")) {
            (Some(start), Some(end)) => (end - start) > width,
            _ => true, // no bounded window at all: the widest there is
        };
        if wide {
            tokio::time::sleep(delay).await;
        }
    }

    /// The next `n` pages reached through `@odata.nextLink` that have more results after them
    /// are served short (half the page) and without `@odata.nextLink`: paging ends early, as users report of the real service
    /// (the same closed window returning different totals on different runs, e.g.
    /// microsoftgraph/msgraph-sdk-powershell issues about incomplete `Get-MgAuditLogSignIn` results).
    pub fn end_paging_early_next(&self, n: usize) {
        self.early_end.store(n, Ordering::SeqCst);
    }

    fn take_early_end(&self) -> bool {
        self.early_end
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    pub fn page_size_cap(&self, n: usize) {
        self.page_cap.store(n, Ordering::SeqCst);
    }

    /// The next `n` page requests get 403 for this reason, then it passes (Graph's license check
    /// answers `Authentication_RequestFromNonPremiumTenantOrB2CTenant` intermittently on licensed
    /// tenants: microsoftgraph/microsoft-graph-docs#13632).
    pub fn deny_next(&self, n: usize, denial: GraphDenial) {
        *lock(&self.deny_counted) = (n, Some(denial));
    }

    /// The next `n` requests that carry a `$skiptoken` get `400 Invalid Skip Token, skip token is
    /// null` although the token is Graph's own (a transient service fault reported in
    /// microsoftgraph/msgraph-sdk-powershell#1388).
    pub fn invalid_skiptoken_next(&self, n: usize) {
        self.bad_skiptoken.store(n, Ordering::SeqCst);
    }

    /// While on, a `$filter` whose `signInEventTypes/any(…)` combines several comparisons
    /// (`t eq 'interactiveUser' or t eq 'nonInteractiveUser'`) gets what Graph answers a filter it
    /// does not support: 400 `BadRequest`, "Invalid filter clause" (the body reported in
    /// microsoftgraph/microsoft-graph-docs#14173 and #5676). Microsoft documents only single-value
    /// lambdas (`any(t: t eq '…')`, `any(t: t ne '…')`, microsoftgraph/microsoft-graph-docs-contrib
    /// `api-reference/beta/api/signin-list.md`), which stay accepted.
    pub fn refuse_combined_event_types(&self, refuse: bool) {
        self.refuse_combined_event_types
            .store(refuse, Ordering::SeqCst);
    }

    /// Every page request gets 403 for this reason.
    pub fn deny(&self, denial: GraphDenial) {
        *lock(&self.deny) = Some(denial);
    }

    /// Stop denying.
    pub fn allow(&self) {
        *lock(&self.deny) = None;
    }

    /// The next `n` token requests (token endpoint or managed identity) get `status`.
    pub fn fail_token_requests_next(&self, n: usize, status: u16) {
        *lock(&self.token_fail) = (n, status);
    }

    /// Clears every fault (revocations stay).
    pub fn clear(&self) {
        *lock(&self.throttle) = (0, None);
        *lock(&self.rate) = None;
        *lock(&self.fail) = (0, (0, RetryAfter::None));
        self.malformed.store(0, Ordering::SeqCst);
        *lock(&self.slow) = Duration::ZERO;
        *lock(&self.foreign) = None;
        self.page_cap.store(0, Ordering::SeqCst);
        self.early_end.store(0, Ordering::SeqCst);
        *lock(&self.slow_wide) = None;
        *lock(&self.deny) = None;
        *lock(&self.deny_counted) = (0, None);
        self.bad_skiptoken.store(0, Ordering::SeqCst);
        self.refuse_combined_event_types
            .store(false, Ordering::SeqCst);
        *lock(&self.token_fail) = (0, 0);
    }

    fn take_counted<T: Copy>(slot: &Mutex<(usize, T)>) -> Option<T> {
        let mut guard = lock(slot);
        if guard.0 == 0 {
            return None;
        }
        guard.0 -= 1;
        Some(guard.1)
    }

    fn take_throttle(&self) -> Option<RetryAfter> {
        let mut guard = lock(&self.throttle);
        if guard.0 == 0 {
            return None;
        }
        guard.0 -= 1;
        guard.1
    }

    fn take_malformed(&self) -> bool {
        self.malformed
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    pub(crate) fn take_token_failure(&self) -> Option<u16> {
        Self::take_counted(&self.token_fail)
    }
}

/// A page cursor: the snapshot of the query's results and where the next page starts.
struct Cursor {
    version: ApiVersion,
    /// The tenant's own records (shared, never changed in place), as the tenant held them when
    /// the query arrived: later additions and publications do not change a snapshot.
    results: Arc<Vec<Arc<Stored>>>,
    start: usize,
    page_size: usize,
    filter_text: Option<String>,
    top: Option<usize>,
    orderby_text: Option<String>,
}

/// Where a member of a stored record goes in each version's answer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Run {
    /// A property both versions have.
    Shared,
    /// `appliedConditionalAccessPolicies`: in both versions, its elements with fewer members in
    /// v1.0, and emptied for callers that may not read Conditional Access data.
    Policies,
    /// `deviceDetail`: in both versions, with fewer members in v1.0.
    Device,
    /// A beta-only property (or one neither version lists: records hand-written by tests).
    BetaOnly,
    /// A v1.0-only property (`riskEventTypes`).
    V1Only,
}

impl Run {
    const ALL: [Run; 5] = [
        Run::Shared,
        Run::Policies,
        Run::Device,
        Run::BetaOnly,
        Run::V1Only,
    ];

    fn of(name: &str) -> Run {
        match name {
            "appliedConditionalAccessPolicies" => Run::Policies,
            "deviceDetail" => Run::Device,
            _ if schema::V1_ONLY.contains(&name) => Run::V1Only,
            _ if schema::V1_PROPERTIES.contains(&name) => Run::Shared,
            _ => Run::BetaOnly,
        }
    }

    fn shown_in(self, version: ApiVersion) -> bool {
        !matches!(
            (self, version),
            (Run::BetaOnly, ApiVersion::V1) | (Run::V1Only, ApiVersion::Beta)
        )
    }
}

/// A sign-in as the fake keeps it: its JSON text, laid out so an answer of either version is a
/// few copies of it, and what `$filter` reads. (A `serde_json::Value` of a full beta record
/// takes ~34 KB; this, the ~6.5 KB of text and a few hundred bytes.)
struct Stored {
    /// The record's `"name":value` members, comma-joined within each [`Run`], the runs one after
    /// the other in [`Run::ALL`] order.
    text: Box<str>,
    /// `ends[i]`: where the members of `Run::ALL[i]` end in `text` (a run may be empty).
    ends: [u32; Run::ALL.len()],
    fields: SignInFields,
}

impl Stored {
    fn new(record: &Value) -> Self {
        let fields = SignInFields::of(record);
        let Value::Object(map) = record else {
            // Not an object: kept whole as a shared run (never served as a sign-in).
            let text = record.to_string();
            let end = u32::try_from(text.len()).unwrap_or(u32::MAX);
            return Stored {
                text: text.into_boxed_str(),
                ends: [end; Run::ALL.len()],
                fields,
            };
        };
        let mut runs: [Vec<u8>; Run::ALL.len()] = Default::default();
        for (name, value) in map {
            let run = &mut runs[Run::of(name) as usize];
            if !run.is_empty() {
                run.push(b',');
            }
            // Writing JSON into memory does not fail.
            let _ = serde_json::to_writer(&mut *run, name);
            run.push(b':');
            let _ = serde_json::to_writer(&mut *run, value);
        }
        let mut text = Vec::with_capacity(runs.iter().map(Vec::len).sum());
        let mut ends = [0u32; Run::ALL.len()];
        for (end, run) in ends.iter_mut().zip(&runs) {
            text.extend_from_slice(run);
            *end = u32::try_from(text.len()).unwrap_or(u32::MAX);
        }
        Stored {
            // serde_json writes UTF-8; the lossy path is never taken.
            text: String::from_utf8(text)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
                .into_boxed_str(),
            ends,
            fields,
        }
    }

    /// The members of one run.
    fn run(&self, run: Run) -> &str {
        let i = run as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        self.text
            .get(start..self.ends[i] as usize)
            .unwrap_or_default()
    }

    fn id(&self) -> Option<&str> {
        self.fields.text("id")
    }

    /// The whole record (both versions' properties) as JSON.
    fn to_value(&self) -> Value {
        let mut text = String::with_capacity(self.text.len() + 2);
        text.push('{');
        for run in Run::ALL {
            let members = self.run(run);
            if !members.is_empty() {
                if text.len() > 1 {
                    text.push(',');
                }
                text.push_str(members);
            }
        }
        text.push('}');
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Appends the record as a `version` answer serves it: the runs that version has, with
    /// `appliedConditionalAccessPolicies` emptied unless `policies_readable`, and v1.0's nested
    /// objects cut to the members v1.0 has.
    fn write_served(&self, out: &mut Vec<u8>, version: ApiVersion, policies_readable: bool) {
        out.push(b'{');
        let mut first = true;
        for run in Run::ALL.into_iter().filter(|r| r.shown_in(version)) {
            let members = self.run(run);
            if members.is_empty() {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            match run {
                Run::Policies if !policies_readable => {
                    out.extend_from_slice(b"\"appliedConditionalAccessPolicies\":[]")
                }
                Run::Policies | Run::Device if version == ApiVersion::V1 => {
                    out.extend_from_slice(v1_member(members).as_bytes())
                }
                _ => out.extend_from_slice(members.as_bytes()),
            }
        }
        out.push(b'}');
    }
}

/// One `"name":value` member with the beta-only members of its nested objects left out
/// ([`schema::BETA_ONLY_NESTED`]): what v1.0 sends of `deviceDetail` and of each applied
/// Conditional Access policy.
fn v1_member(member: &str) -> String {
    let Ok(Value::Object(mut wrapper)) = serde_json::from_str::<Value>(&format!("{{{member}}}"))
    else {
        return member.to_owned();
    };
    for (name, value) in wrapper.iter_mut() {
        let Some((_, beta_only)) = schema::BETA_ONLY_NESTED.iter().find(|(p, _)| p == name) else {
            continue;
        };
        let strip = |object: &mut Value| {
            if let Some(object) = object.as_object_mut() {
                object.retain(|member, _| !beta_only.contains(&member.as_str()));
            }
        };
        match value {
            Value::Array(items) => items.iter_mut().for_each(strip),
            object => strip(object),
        }
    }
    let text = Value::Object(wrapper).to_string();
    text[1..text.len() - 1].to_owned()
}

/// The tenant's sign-ins, newest first, with each one's `createdDateTime` parsed once.
#[derive(Default)]
struct SignIns {
    records: Vec<Arc<Stored>>,
    /// `created[i]` is [`odata::created_of`] of `records[i]`.
    created: Vec<Option<OffsetDateTime>>,
    /// Every record has a valid time (they are sorted by it): then the records a
    /// `createdDateTime` window admits are one contiguous run, found by binary search instead of
    /// a scan of the whole tenant per query. (Records without a valid time sort last, and then
    /// every query scans the whole tenant.)
    ordered: bool,
}

impl SignIns {
    fn new(records: impl IntoIterator<Item = Value>) -> Self {
        let mut signins = SignIns::default();
        signins.extend(records);
        signins
    }

    fn extend(&mut self, more: impl IntoIterator<Item = Value>) {
        for record in more {
            self.created.push(odata::created_of(&record));
            self.records.push(Arc::new(Stored::new(&record)));
        }
        self.reindex();
    }

    /// Sorts newest first (Graph's order; ties by id, descending, so the order is total).
    fn reindex(&mut self) {
        let mut order: Vec<usize> = (0..self.records.len()).collect();
        order.sort_by(|&a, &b| {
            let key = |i: usize| (self.created[i], self.records[i].id().unwrap_or_default());
            key(b).cmp(&key(a))
        });
        self.records = order
            .iter()
            .map(|&i| Arc::clone(&self.records[i]))
            .collect();
        self.created = order.iter().map(|&i| self.created[i]).collect();
        self.ordered = self.created.iter().all(Option::is_some);
    }

    /// Indices of the records a filter with these `createdDateTime` bounds can match (all of
    /// them when the order cannot be trusted, or without bounds).
    fn window(
        &self,
        (earliest, latest): (Option<OffsetDateTime>, Option<OffsetDateTime>),
    ) -> std::ops::Range<usize> {
        if !self.ordered {
            return 0..self.records.len();
        }
        // Newest first: the run starts after the records newer than `latest` and ends before
        // the first one older than `earliest`.
        let start = latest.map_or(0, |latest| {
            self.created
                .partition_point(|t| t.is_some_and(|t| t > latest))
        });
        let end = earliest.map_or(self.records.len(), |earliest| {
            self.created
                .partition_point(|t| t.is_some_and(|t| t >= earliest))
        });
        start..end.max(start)
    }
}

#[derive(Default)]
pub(crate) struct StateData {
    signins: SignIns,
    hidden: HashSet<String>,
    requests: Vec<RecordedRequest>,
    /// How many recorded requests [`FakeGraph::clear_requests`] dropped (request sequence
    /// numbers stay absolute so in-flight requests update the right record).
    requests_cleared: usize,
    cursors: HashMap<String, Arc<Cursor>>,
    pub(crate) tokens: HashMap<String, IssuedToken>,
    /// `(tenant lowercased, client_id)` → credential.
    pub(crate) apps: HashMap<(String, String), AppCredential>,
    /// Known tenant names (ids and domains, lowercased) → tenant id.
    pub(crate) tenants: HashMap<String, String>,
    pub(crate) user_assigned: HashSet<String>,
    pub(crate) extra_resources: HashSet<String>,
    pub(crate) issued: usize,
    /// Application permissions granted beyond `AuditLog.Read.All` and `Directory.Read.All`
    /// (they appear in the tokens' `roles`).
    pub(crate) extra_roles: Vec<String>,
}

pub(crate) struct Inner {
    pub(crate) state: Mutex<StateData>,
    pub(crate) faults: Faults,
    pub(crate) tenant_id: String,
    pub(crate) mi_header: String,
    pub(crate) mi_client_id: String,
    pub(crate) mi_principal_id: String,
    pub(crate) demo_client_id: String,
    pub(crate) signing_key: Vec<u8>,
    scheme: Mutex<&'static str>,
    page_arrivals: tokio::sync::watch::Sender<usize>,
}

/// The fake service. Cheap to clone; all clones share one state.
#[derive(Clone)]
pub struct FakeGraph {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for FakeGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeGraph")
            .field("tenant_id", &self.inner.tenant_id)
            .finish_non_exhaustive()
    }
}

fn random_guid() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl FakeGraph {
    /// A fake tenant holding these sign-ins (Graph-shaped JSON, any order). Each is kept as
    /// compact text, one at a time: a tenant of a million generated sign-ins
    /// ([`crate::tenant::signins`]) never exists as `Value`s all at once.
    pub fn new(signins: impl IntoIterator<Item = Value>) -> Self {
        let tenant_id = random_guid();
        let mut state = StateData {
            signins: SignIns::new(signins),
            ..StateData::default()
        };
        state.tenants.insert(tenant_id.clone(), tenant_id.clone());
        state
            .tenants
            .insert("contoso.onmicrosoft.com".into(), tenant_id.clone());
        let mut signing_key = Vec::with_capacity(32);
        signing_key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        signing_key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        let (page_arrivals, _) = tokio::sync::watch::channel(0);
        FakeGraph {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                faults: Faults::default(),
                tenant_id,
                mi_header: uuid::Uuid::new_v4().simple().to_string(),
                mi_client_id: random_guid(),
                mi_principal_id: random_guid(),
                demo_client_id: random_guid(),
                signing_key,
                scheme: Mutex::new("http"),
                page_arrivals,
            }),
        }
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, StateData> {
        lock(&self.inner.state)
    }

    /// All routes: Graph, the token endpoint and the managed-identity endpoint.
    pub fn router(&self) -> Router {
        Router::new()
            .route(
                "/{version}/auditLogs/signIns",
                get(signins_handler).fallback(method_not_allowed),
            )
            .route(
                "/{tenant}/oauth2/v2.0/token",
                post(entra::token_handler).fallback(entra::token_wrong_method),
            )
            .route(
                "/msi/token",
                get(entra::managed_identity_handler).fallback(method_not_allowed),
            )
            .fallback(not_found)
            .layer(middleware::from_fn_with_state(self.clone(), record))
            .with_state(self.clone())
    }

    /// Serves [`Self::router`] over plain HTTP on `127.0.0.1:0` in the background.
    pub async fn spawn(&self) -> std::io::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let router = self.router();
        tokio::spawn(async move {
            // The server lives as long as the runtime; errors end it silently (tests see
            // connection failures).
            let _ = axum::serve(listener, router).await;
        });
        Ok(addr)
    }

    /// The scheme this fake is reached by (`http` or `https`), used in `@odata.nextLink`,
    /// `@odata.context` and the expected audience of client assertions.
    pub fn set_public_scheme(&self, https: bool) {
        *lock(&self.inner.scheme) = if https { "https" } else { "http" };
    }

    fn scheme(&self) -> &'static str {
        *lock(&self.inner.scheme)
    }

    /// `scheme://host` of a request.
    /// HTTP/1.1 carries the host in `Host`; HTTP/2 (negotiated over TLS) in `:authority`,
    /// which hyper exposes as the URI's authority.
    pub(crate) fn origin(&self, headers: &HeaderMap, uri: &axum::http::Uri) -> String {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
            .or_else(|| uri.authority().map(|a| a.to_string()))
            .unwrap_or_else(|| "127.0.0.1".to_owned());
        format!("{}://{host}", self.scheme())
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state().requests.clone()
    }

    /// The Graph page requests so far.
    pub fn signin_requests(&self) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(RecordedRequest::is_signins)
            .collect()
    }

    /// Forgets the recorded requests and resets the page-arrival count.
    pub fn clear_requests(&self) {
        let mut state = self.state();
        state.requests_cleared += state.requests.len();
        state.requests.clear();
        self.inner.page_arrivals.send_replace(0);
    }

    /// Waits until at least `n` Graph page requests have arrived (a real signal for tests
    /// that act while a page is in flight).
    pub async fn wait_for_page_requests(&self, n: usize) {
        let mut rx = self.inner.page_arrivals.subscribe();
        // The sender lives in `self`, so this only fails if the fake is gone.
        let _ = rx.wait_for(|count| *count >= n).await;
    }

    /// Adds sign-ins (new events, or late arrivals with older timestamps).
    pub fn add_signins(&self, more: Vec<Value>) {
        self.state().signins.extend(more);
    }

    /// How many sign-ins the tenant holds (hidden ones included).
    pub fn signin_count(&self) -> usize {
        self.state().signins.records.len()
    }

    /// Makes these sign-ins invisible until [`Self::publish`]ed.
    pub fn hide(&self, ids: &[&str]) {
        let mut state = self.state();
        state.hidden.extend(ids.iter().map(|s| (*s).to_owned()));
    }

    /// Makes hidden sign-ins visible.
    pub fn publish(&self, ids: &[&str]) {
        let mut state = self.state();
        for id in ids {
            state.hidden.remove(*id);
        }
    }

    /// Every sign-in the tenant holds (hidden ones included), newest first, with the properties
    /// of both versions.
    pub fn all_signins(&self) -> Vec<Value> {
        let records = self.state().signins.records.clone();
        records.iter().map(|r| r.to_value()).collect()
    }

    /// The visible sign-ins matching `filter` as the service evaluates it for `version` (with the
    /// interactive-only default): the ground truth a client's export should equal.
    pub fn expected(
        &self,
        version: ApiVersion,
        filter: Option<&str>,
    ) -> Result<Vec<Value>, odata::QueryError> {
        let expr = filter
            .map(|f| odata::parse_filter(f, version))
            .transpose()?;
        let selected = select(&self.state(), expr.as_ref(), false);
        Ok(selected.iter().map(|r| as_served(r, version)).collect())
    }

    /// The fault switches.
    pub fn faults(&self) -> &Faults {
        &self.inner.faults
    }

    /// How many tokens were issued (token endpoint, managed identity and [`Self::mint_token`]).
    pub fn issued_tokens(&self) -> usize {
        self.state().issued
    }

    /// The tenant id the fake issues tokens for.
    pub fn tenant_id(&self) -> &str {
        &self.inner.tenant_id
    }

    /// Registers an app that authenticates with a client secret.
    pub fn register_app(&self, tenant: &str, client_id: &str, secret: &str) {
        self.register(tenant, client_id, AppCredential::Secret(secret.to_owned()));
    }

    /// Registers an app that authenticates with a certificate (DER or PEM). Returns an error if
    /// the certificate cannot be parsed.
    pub fn register_app_certificate(
        &self,
        tenant: &str,
        client_id: &str,
        cert_der_or_pem: &[u8],
    ) -> Result<(), entra::CertificateError> {
        let credential = AppCredential::certificate(cert_der_or_pem)?;
        self.register(tenant, client_id, credential);
        Ok(())
    }

    fn register(&self, tenant: &str, client_id: &str, credential: AppCredential) {
        let mut state = self.state();
        let tenant_key = tenant.to_lowercase();
        if !state.tenants.contains_key(&tenant_key) {
            // A tenant named by GUID is its own id; a domain maps to the fake's tenant.
            let id = if uuid::Uuid::parse_str(tenant).is_ok() {
                tenant_key.clone()
            } else {
                self.inner.tenant_id.clone()
            };
            state.tenants.insert(tenant_key.clone(), id);
        }
        state
            .apps
            .insert((tenant_key, client_id.to_owned()), credential);
    }

    /// The secret App Service puts in `IDENTITY_HEADER`; requests must echo it in
    /// `X-IDENTITY-HEADER`.
    pub fn managed_identity_header(&self) -> String {
        self.inner.mi_header.clone()
    }

    /// The client id of the system-assigned managed identity.
    pub fn managed_identity_client_id(&self) -> &str {
        &self.inner.mi_client_id
    }

    /// Assigns a user-assigned identity (selected with `client_id=` on the MI endpoint).
    pub fn add_user_assigned_identity(&self, client_id: &str) {
        self.state().user_assigned.insert(client_id.to_owned());
    }

    /// Grants the identity another Graph application permission (e.g. `Policy.Read.All`): tokens
    /// issued from now on carry it in `roles`.
    pub fn grant_role(&self, role: &str) {
        let mut state = self.state();
        if !state.extra_roles.iter().any(|r| r == role) {
            state.extra_roles.push(role.to_owned());
        }
    }

    /// Lets tokens be issued for another resource (e.g. `https://<account>.blob.core.windows.net`).
    pub fn allow_resource(&self, resource: &str) {
        self.state()
            .extra_resources
            .insert(resource.trim_end_matches('/').to_owned());
    }

    /// Issues a valid one-hour token for `resource` (with or without `/.default`) directly, for
    /// a static-token credential (the demo runs without TLS and without the token endpoint).
    pub fn mint_token(&self, resource: &str) -> String {
        let resource = resource.strip_suffix("/.default").unwrap_or(resource);
        let client = self.inner.demo_client_id.clone();
        entra::issue(self, resource, &client, &client, 3600)
    }

    /// Issues a token for `resource` valid from now for `lifetime_secs` (negative: already
    /// expired) — for tests of expiry handling.
    pub fn mint_token_with_lifetime(&self, resource: &str, lifetime_secs: i64) -> String {
        let resource = resource.strip_suffix("/.default").unwrap_or(resource);
        let client = self.inner.demo_client_id.clone();
        entra::issue(self, resource, &client, &client, lifetime_secs)
    }

    /// Distinct bearer tokens that reached the Graph route (accepted or not).
    pub fn tokens_seen_by_graph(&self) -> Vec<String> {
        let mut seen = Vec::new();
        for r in self.signin_requests() {
            if let Some(token) = r
                .authorization
                .as_deref()
                .and_then(|a| a.strip_prefix("Bearer "))
            {
                if !seen.iter().any(|s: &String| s == token) {
                    seen.push(token.to_owned());
                }
            }
        }
        seen
    }
}

/// Visible records matching the filter, in the requested order. Without an event-type clause
/// only interactive sign-ins are returned, on both versions (as the service does). The records
/// are the tenant's own: what a version shows of them is applied when they are served
/// ([`Stored::write_served`]).
fn select(state: &StateData, filter: Option<&odata::Expr>, oldest_first: bool) -> Vec<Arc<Stored>> {
    let default_interactive = !filter.is_some_and(odata::Expr::mentions_event_types);
    let signins = &state.signins;
    let window = signins.window(filter.map_or((None, None), odata::Expr::created_bounds));
    let mut out: Vec<Arc<Stored>> = window
        .map(|i| (&signins.records[i], signins.created[i]))
        .filter(|(r, _)| {
            state.hidden.is_empty() || r.id().is_none_or(|id| !state.hidden.contains(id))
        })
        .filter(|(r, _)| !default_interactive || r.fields.event_types().contains("interactiveUser"))
        .filter(|(r, created)| filter.is_none_or(|f| f.matches_created(&r.fields, *created)))
        .map(|(r, _)| Arc::clone(r))
        .collect();
    if oldest_first {
        out.reverse();
    }
    out
}

/// A record as `version` shows it to a caller that may read Conditional Access data.
fn as_served(record: &Stored, version: ApiVersion) -> Value {
    let mut out = Vec::with_capacity(record.text.len() + 2);
    record.write_served(&mut out, version, true);
    serde_json::from_slice(&out).unwrap_or(Value::Null)
}

/// The properties of `signIn` in Graph v1.0, from Microsoft's published CSDL ([`crate::schema`]).
pub use crate::schema::V1_PROPERTIES;

/// Records every request on arrival and its status on completion.
async fn record(State(fake): State<FakeGraph>, request: Request, next: Next) -> Response {
    let recorded = RecordedRequest {
        method: request.method().to_string(),
        path_and_query: request
            .uri()
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_else(|| request.uri().path().to_owned()),
        host: request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
            .or_else(|| request.uri().authority().map(|a| a.to_string()))
            .unwrap_or_default(),
        authorization: request
            .headers()
            .get(header::AUTHORIZATION)
            .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned()),
        prefer: request
            .headers()
            .get("prefer")
            .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned()),
        status: 0,
    };
    let is_page = recorded.is_signins();
    let index = {
        let mut state = fake.state();
        state.requests.push(recorded);
        state.requests_cleared + state.requests.len() - 1
    };
    if is_page {
        fake.inner.page_arrivals.send_modify(|n| *n += 1);
    }
    let response = next.run(request).await;
    let mut state = fake.state();
    if let Some(position) = index.checked_sub(state.requests_cleared) {
        if let Some(r) = state.requests.get_mut(position) {
            r.status = response.status().as_u16();
        }
    }
    drop(state);
    response
}

async fn method_not_allowed(headers: HeaderMap) -> Response {
    graph_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "Request_BadRequest",
        "The HTTP method is not allowed for the requested resource.",
        &headers,
    )
}

async fn not_found(headers: HeaderMap) -> Response {
    graph_error(
        StatusCode::NOT_FOUND,
        "UnknownError",
        "Resource not found for the segment.",
        &headers,
    )
}

/// Graph's error body: `{"error":{"code","message","innerError":{date,request-id,client-request-id}}}`.
pub(crate) fn graph_error(
    status: StatusCode,
    code: &str,
    message: &str,
    request_headers: &HeaderMap,
) -> Response {
    let request_id = random_guid();
    let client_request_id = request_headers
        .get("client-request-id")
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| request_id.clone());
    let now = OffsetDateTime::now_utc();
    let date = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    let body = json!({
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": date,
                "request-id": request_id,
                "client-request-id": client_request_id,
            }
        }
    });
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert("request-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(&client_request_id) {
        headers.insert("client-request-id", v);
    }
    response
}

fn bad_request(message: &str, headers: &HeaderMap) -> Response {
    graph_error(StatusCode::BAD_REQUEST, "BadRequest", message, headers)
}

async fn signins_handler(
    State(fake): State<FakeGraph>,
    Path(version): Path<String>,
    headers: HeaderMap,
    request: Request,
) -> Response {
    // 1. Authentication, as Graph does it before anything else.
    // Graph returns `appliedConditionalAccessPolicies` only to callers that may read Conditional
    // Access data (learn.microsoft.com/graph/api/resources/appliedconditionalaccesspolicy):
    // others get the property empty.
    let policies_readable = match entra::check_bearer(&fake, &headers, GRAPH_RESOURCE) {
        TokenCheck::Valid { roles } => roles
            .iter()
            .any(|r| r == "Policy.Read.All" || r == "Policy.Read.ConditionalAccess"),
        TokenCheck::Invalid(message) => {
            let mut response = graph_error(
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationToken",
                message,
                &headers,
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(
                    "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\"",
                ),
            );
            return response;
        }
    };
    let Some(version) = ApiVersion::from_segment(&version) else {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!("Invalid version: {version}"),
            &headers,
        );
    };
    // 2. Authorization and licensing.
    let denial = (*lock(&fake.inner.faults.deny))
        .or_else(|| Faults::take_counted(&fake.inner.faults.deny_counted).flatten());
    if let Some(denial) = denial {
        let (code, message) = match denial {
            GraphDenial::MissingPermission => (
                "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation.",
            ),
            GraphDenial::NonPremiumTenant => (
                "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
                "Neither tenant is B2C or tenant doesn't have premium license",
            ),
            GraphDenial::AuditLogPermissionMissing => (
                "Authentication_MSGraphPermissionMissing",
                "Calling principal does not have required MSGraph permissions AuditLog.Read.All",
            ),
        };
        return graph_error(StatusCode::FORBIDDEN, code, message, &headers);
    }
    // 3. Query validation.
    let query = match odata::parse_query(request.uri().query(), version) {
        Ok(q) => q,
        Err(e) => return bad_request(&e.0, &headers),
    };
    if fake
        .inner
        .faults
        .refuse_combined_event_types
        .load(Ordering::SeqCst)
        && query
            .filter
            .as_ref()
            .is_some_and(odata::Expr::combines_event_types)
    {
        return bad_request("Invalid filter clause", &headers);
    }
    let origin = fake.origin(&headers, request.uri());
    let page = match resolve_page(&fake, version, &query) {
        Ok(page) => page,
        Err(message) => return bad_request(&message, &headers),
    };
    if query.skiptoken.is_some()
        && fake
            .inner
            .faults
            .bad_skiptoken
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "UnknownError",
            "Invalid Skip Token, skip token is null",
            &headers,
        );
    }
    // 4. Faults, in the order a client would meet them. The rate limit counts a request when
    // it arrives, before its page is served.
    if let Some(seconds) = fake.inner.faults.over_rate() {
        let mut response = graph_error(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "Too many requests.",
            &headers,
        );
        set_retry_after(&mut response, RetryAfter::Seconds(seconds));
        return response;
    }
    let _answering = fake.inner.faults.enter();
    fake.inner.faults.page_delay().await;
    fake.inner
        .faults
        .wide_window_delay(query.filter_text.as_deref())
        .await;
    if let Some(retry_after) = fake.inner.faults.take_throttle() {
        let mut response = graph_error(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "Too many requests.",
            &headers,
        );
        set_retry_after(&mut response, retry_after);
        return response;
    }
    if let Some((status, retry_after)) = Faults::take_counted(&fake.inner.faults.fail) {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let (code, message) = match status.as_u16() {
            500 => ("UnknownError", ""),
            502 => ("BadGateway", "Bad Gateway"),
            504 => ("GatewayTimeout", "The request timed out."),
            _ => (
                "serviceNotAvailable",
                "The service is temporarily unavailable.",
            ),
        };
        let mut response = graph_error(status, code, message, &headers);
        set_retry_after(&mut response, retry_after);
        return response;
    }

    let mut page = page;
    // Mid-paging only (a page reached through `@odata.nextLink`), as reported.
    if query.skiptoken.is_some()
        && page.end < page.cursor.results.len()
        && fake.inner.faults.take_early_end()
    {
        page.end = page.cursor.start + (page.end - page.cursor.start).div_ceil(2);
        page.last = true;
    }
    let mut text = match page_body(&fake, &origin, version, &page, policies_readable) {
        Ok(text) => text,
        // Writing JSON values into memory does not fail; should it ever, a Graph-style 500.
        Err(e) => {
            return graph_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "UnknownError",
                &e.to_string(),
                &headers,
            )
        }
    };
    if fake.inner.faults.take_malformed() {
        // A body cut off mid-stream: valid prefix, invalid JSON.
        let cut = text.len() / 2;
        let cut = (0..=cut)
            .rev()
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        text.truncate(cut);
    }
    let mut response = Response::new(Body::from(text));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(GRAPH_CONTENT_TYPE),
    );
    if let Ok(v) = HeaderValue::from_str(&random_guid()) {
        h.insert("request-id", v);
    }
    response
}

/// One page to serve: a slice of a snapshot, plus the cursor for the next one.
struct Page {
    cursor: Arc<Cursor>,
    end: usize,
    /// Served without `@odata.nextLink` even if results remain (a fault).
    last: bool,
}

fn resolve_page(
    fake: &FakeGraph,
    version: ApiVersion,
    query: &odata::SignInQuery,
) -> Result<Page, String> {
    let cap = fake.inner.faults.page_cap.load(Ordering::SeqCst);
    let state = fake.state();
    let cursor = match &query.skiptoken {
        Some(token) => {
            let cursor = state
                .cursors
                .get(token)
                .cloned()
                .ok_or_else(|| format!("Invalid $skiptoken value: '{token}'."))?;
            let consistent = cursor.version == version
                && (query.filter_text.is_none() || query.filter_text == cursor.filter_text)
                && (query.top.is_none() || query.top == cursor.top)
                && (query.orderby_text.is_none() || query.orderby_text == cursor.orderby_text);
            if !consistent {
                return Err(
                    "The $skiptoken does not belong to this query: follow @odata.nextLink as returned."
                        .into(),
                );
            }
            cursor
        }
        None => {
            let results = select(&state, query.filter.as_ref(), query.oldest_first);
            Arc::new(Cursor {
                version,
                results: Arc::new(results),
                start: 0,
                page_size: query.top.unwrap_or(MAX_PAGE_SIZE),
                filter_text: query.filter_text.clone(),
                top: query.top,
                orderby_text: query.orderby_text.clone(),
            })
        }
    };
    let size = if cap > 0 {
        cursor.page_size.min(cap)
    } else {
        cursor.page_size
    };
    let end = (cursor.start + size).min(cursor.results.len());
    Ok(Page {
        cursor,
        end,
        last: false,
    })
}

/// The page's JSON text.
fn page_body(
    fake: &FakeGraph,
    origin: &str,
    version: ApiVersion,
    page: &Page,
    policies_readable: bool,
) -> serde_json::Result<String> {
    let cursor = &page.cursor;
    let mut body = serde_json::Map::new();
    body.insert(
        "@odata.context".into(),
        json!(format!(
            "{origin}/{}/$metadata#auditLogs/signIns",
            version.segment()
        )),
    );
    // A placeholder: the records are written from the tenant's own values below.
    body.insert("value".into(), Value::Null);
    if page.end < cursor.results.len() && !page.last {
        let token = new_skiptoken();
        let next = Arc::new(Cursor {
            version: cursor.version,
            results: Arc::clone(&cursor.results),
            start: page.end,
            page_size: cursor.page_size,
            filter_text: cursor.filter_text.clone(),
            top: cursor.top,
            orderby_text: cursor.orderby_text.clone(),
        });
        fake.state().cursors.insert(token.clone(), next);
        let link_origin = lock(&fake.inner.faults.foreign)
            .take()
            .unwrap_or_else(|| origin.to_owned());
        let mut link = format!(
            "{}/{}/auditLogs/signIns?",
            link_origin.trim_end_matches('/'),
            version.segment()
        );
        if let Some(top) = cursor.top {
            link.push_str(&format!("$top={top}&"));
        }
        if let Some(filter) = &cursor.filter_text {
            link.push_str(&format!("$filter={}&", encode_component(filter)));
        }
        if let Some(orderby) = &cursor.orderby_text {
            link.push_str(&format!("$orderby={}&", encode_component(orderby)));
        }
        link.push_str(&format!("$skiptoken={token}"));
        body.insert("@odata.nextLink".into(), Value::String(link));
    }
    // What `Value::Object(body).to_string()` writes with the records in place of the
    // placeholder: members in the map's own order, compact.
    let items = &cursor.results[cursor.start..page.end];
    let mut out = Vec::with_capacity(4096 + items.iter().map(|r| r.text.len() + 2).sum::<usize>());
    out.push(b'{');
    for (i, (name, value)) in body.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, name)?;
        out.push(b':');
        if name == "value" {
            out.push(b'[');
            for (j, record) in items.iter().enumerate() {
                if j > 0 {
                    out.push(b',');
                }
                record.write_served(&mut out, version, policies_readable);
            }
            out.push(b']');
        } else {
            serde_json::to_writer(&mut out, value)?;
        }
    }
    out.push(b'}');
    // serde_json writes UTF-8; the lossy path is never taken.
    Ok(String::from_utf8(out)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

/// An opaque, unguessable page token (random, mapped server-side to a cursor).
fn new_skiptoken() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Percent-encodes a query component the way Graph writes next links (spaces as `%20`).
fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn set_retry_after(response: &mut Response, retry_after: RetryAfter) {
    let value = match retry_after {
        RetryAfter::Seconds(n) => n.to_string(),
        RetryAfter::HttpDate => http_date(OffsetDateTime::now_utc() + time::Duration::seconds(2)),
        RetryAfter::None => return,
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
}

/// An RFC 7231 IMF-fixdate.
pub(crate) fn http_date(t: OffsetDateTime) -> String {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[t.weekday().number_days_from_monday() as usize],
        t.day(),
        MONTHS[usize::from(u8::from(t.month())) - 1],
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    #[test]
    fn recorded_requests_do_not_show_the_token_in_debug() {
        let r = RecordedRequest {
            method: "GET".into(),
            path_and_query: "/v1.0/auditLogs/signIns".into(),
            host: "127.0.0.1:1".into(),
            authorization: Some("Bearer eyJsecret".into()),
            prefer: None,
            status: 200,
        };
        let text = format!("{r:?}");
        assert!(
            !text.contains("eyJsecret") && text.contains("Bearer <redacted>"),
            "{text}"
        );
    }

    /// A record as `version` shows it, stripped as a `Value` straight from the schema lists:
    /// what the text runs of [`Stored`] must serve.
    fn strip_for(mut record: Value, version: ApiVersion) -> Value {
        let Some(object) = record.as_object_mut() else {
            return record;
        };
        match version {
            ApiVersion::Beta => object.retain(|name, _| !schema::V1_ONLY.contains(&name.as_str())),
            ApiVersion::V1 => {
                object.retain(|name, _| V1_PROPERTIES.contains(&name.as_str()));
                for (property, beta_only) in schema::BETA_ONLY_NESTED {
                    let strip = |o: &mut Value| {
                        if let Some(o) = o.as_object_mut() {
                            o.retain(|m, _| !beta_only.contains(&m.as_str()));
                        }
                    };
                    match object.get_mut(property) {
                        Some(Value::Array(items)) => items.iter_mut().for_each(strip),
                        Some(other) => strip(other),
                        None => {}
                    }
                }
            }
        }
        record
    }

    /// What `select` + `page_body` serve, the slow way: a scan of every record as a `Value`,
    /// stripped for the version. The indexed, text-run path must serve the same records.
    fn full_scan(fake: &FakeGraph, version: ApiVersion, filter: Option<&str>) -> Vec<Value> {
        let expr = filter.map(|f| odata::parse_filter(f, version).unwrap());
        let default_interactive = !expr.as_ref().is_some_and(odata::Expr::mentions_event_types);
        let hidden = fake.state().hidden.clone();
        fake.all_signins()
            .into_iter()
            .filter(|r| r["id"].as_str().is_none_or(|id| !hidden.contains(id)))
            .filter(|r| !default_interactive || odata::event_types(r).contains(&"interactiveUser"))
            .filter(|r| expr.as_ref().is_none_or(|f| f.matches(r)))
            .map(|r| strip_for(r, version))
            .collect()
    }

    fn check_against_full_scan(fake: &FakeGraph) {
        // Bounds on records' own times too, so the edges of a window are exercised.
        let all = fake.all_signins();
        let at = |i: usize| all[i]["createdDateTime"].as_str().unwrap().to_owned();
        let (newer, older) = (at(10), at(all.len() - 10));
        let exact = [
            format!("createdDateTime eq {newer}"),
            format!("createdDateTime ge {older} and createdDateTime le {newer}"),
            format!("createdDateTime ge {newer} and createdDateTime le {newer}"),
        ];
        let filters = [
            Some(exact[0].as_str()),
            Some(exact[1].as_str()),
            Some(exact[2].as_str()),
            None,
            Some("createdDateTime ge 2026-11-26T06:00:00Z and createdDateTime le 2026-11-26T12:00:00Z"),
            Some("createdDateTime le 2026-11-26T12:00:00Z and createdDateTime ge 2026-11-26T06:00:00Z and signInEventTypes/any(t: t eq 'interactiveUser' or t eq 'nonInteractiveUser')"),
            Some("createdDateTime ge 2026-11-27T00:00:00Z"),
            Some("createdDateTime le 2026-11-26T00:00:00Z and clientAppUsed ne 'Browser'"),
            Some("createdDateTime ge 2026-11-27T00:00:00Z and createdDateTime le 2026-11-26T00:00:00Z"),
            Some("createdDateTime ge 2026-11-26T00:00:00Z or createdDateTime le 2026-11-25T06:00:00Z"),
            Some("(createdDateTime ge 2026-11-26T00:00:00Z and createdDateTime le 2026-11-26T08:00:00Z) and createdDateTime ge 2026-11-26T04:00:00Z"),
            Some("createdDateTime eq 2026-11-27T10:00:00Z"),
            Some("signInEventTypes/any(t: t eq 'servicePrincipal')"),
            Some("signInEventTypes/any(t: t ne 'interactiveUser') and userPrincipalName eq ''"),
            Some("status/errorCode eq 53003 or startswith(location/city,'Z')"),
            Some("deviceDetail/operatingSystem eq 'Ios' and isInteractive eq false"),
        ];
        for version in [ApiVersion::Beta, ApiVersion::V1] {
            for filter in filters {
                let Ok(expr) = filter.map(|f| odata::parse_filter(f, version)).transpose() else {
                    continue; // event-type clauses on v1.0
                };
                let want = full_scan(fake, version, filter);
                assert_eq!(fake.expected(version, filter).unwrap(), want, "{filter:?}");
                let query = odata::SignInQuery {
                    top: Some(7),
                    filter_text: filter.map(str::to_owned),
                    filter: expr,
                    ..odata::SignInQuery::default()
                };
                let page = resolve_page(fake, version, &query).unwrap();
                for policies_readable in [true, false] {
                    let text =
                        page_body(fake, "http://h", version, &page, policies_readable).unwrap();
                    let served: Value = serde_json::from_str(&text).unwrap();
                    let mut items: Vec<Value> = want.iter().take(7).cloned().collect();
                    if !policies_readable {
                        for item in &mut items {
                            if let Some(p) = item.get_mut("appliedConditionalAccessPolicies") {
                                *p = Value::Array(Vec::new());
                            }
                        }
                    }
                    assert_eq!(served["value"], Value::Array(items), "{filter:?}");
                    assert_eq!(
                        served.get("@odata.nextLink").is_some(),
                        want.len() > 7,
                        "{filter:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_indexed_tenant_serves_what_a_full_scan_serves() {
        let spec = crate::tenant::TenantSpec {
            users: 12,
            days: 4,
            seed: 3,
            end: datetime!(2026-11-28 00:00 UTC),
        };
        let fake = FakeGraph::new(crate::tenant::generate(&spec));
        assert!(fake.state().signins.ordered);
        check_against_full_scan(&fake);
        // Hidden records; a late arrival whose text orders differently from its instant (an
        // offset), placed by its instant; and one without a valid time: the order is no longer
        // trusted and every query scans, with the same answers.
        let ids: Vec<String> = fake.all_signins()[3..9]
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect();
        fake.hide(&ids.iter().map(String::as_str).collect::<Vec<_>>());
        check_against_full_scan(&fake);
        let mut late = fake.all_signins()[20].clone();
        late["id"] = json!("late-1");
        late["createdDateTime"] = json!("2026-11-26T09:30:00+05:00");
        fake.add_signins(vec![late.clone()]);
        assert!(fake.state().signins.ordered);
        check_against_full_scan(&fake);
        late["id"] = json!("late-2");
        late["createdDateTime"] = json!("yesterday");
        fake.add_signins(vec![late]);
        assert!(!fake.state().signins.ordered);
        check_against_full_scan(&fake);
    }

    #[test]
    fn http_dates_are_imf_fixdate() {
        assert_eq!(
            http_date(datetime!(2026-11-28 16:05:09 UTC)),
            "Sat, 28 Nov 2026 16:05:09 GMT"
        );
    }

    #[test]
    fn next_link_components_are_percent_encoded() {
        assert_eq!(
            encode_component("clientAppUsed eq 'a+b'"),
            "clientAppUsed%20eq%20%27a%2Bb%27"
        );
    }
}
