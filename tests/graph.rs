//! The Graph source against the strict fake Graph / Entra / managed-identity service: paging
//! completeness, throttling and retries, the nextLink origin rule, 401 refresh, malformed pages,
//! the three ways to get a token, and `check`'s explanations.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::time::{Duration, Instant};

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use fake_tenant::{FakeGraph, GraphDenial, RetryAfter, GRAPH_RESOURCE};
use signin_export::config::{AuthMode, EventType, GraphSettings, GraphVersion, Secret};
use signin_export::credential::{AuthError, AuthOptions, TokenProvider};
use signin_export::graph::client::{GraphClient, GraphError, SignInPager, Window};
use signin_export::graph::model::SignIn;

use crate::support::env::ENV_LOCK;
use crate::support::fake::{self, RunningFake, CLIENT_ID, CLIENT_SECRET, END};

const ALL_TYPES: [EventType; 4] = [
    EventType::InteractiveUser,
    EventType::NonInteractiveUser,
    EventType::ServicePrincipal,
    EventType::ManagedIdentity,
];

fn settings(base_url: &str, version: GraphVersion, budget: Duration) -> GraphSettings {
    GraphSettings {
        endpoint: url::Url::parse(base_url).unwrap(),
        version,
        auth: AuthMode::ManagedIdentity { client_id: None },
        event_types: vec![EventType::InteractiveUser],
        extra_filter: None,
        retry_budget: budget,
        // Generous: these tests are about paging and failures, not pacing.
        rate: signin_export::config::GraphRate {
            requests: 1000,
            per: Duration::from_secs(1),
        },
        properties: signin_export::graph::model::PropertySet::all(),
    }
}

/// A client with a token minted by the fake (no token endpoint involved).
fn minted_client(running: &RunningFake, budget: Duration) -> GraphClient {
    let tokens = TokenProvider::fixed(Secret::new(running.fake.mint_token(GRAPH_RESOURCE)));
    GraphClient::new(
        &settings(&running.base_url, GraphVersion::Beta, budget),
        tokens,
    )
    .unwrap()
}

fn days_before_end(days: i64) -> Window {
    Window {
        start: END - time::Duration::days(days),
        end: END,
    }
}

async fn read_all(mut pager: SignInPager) -> Result<Vec<SignIn>, GraphError> {
    let mut out = Vec::new();
    while let Some(page) = pager.next_page().await? {
        out.extend(page);
    }
    Ok(out)
}

fn created(record: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(record["createdDateTime"].as_str().unwrap(), &Rfc3339).unwrap()
}

fn event_type_of(record: &Value) -> String {
    record["signInEventTypes"][0].as_str().unwrap().to_string()
}

fn statuses(fake: &FakeGraph) -> Vec<u16> {
    fake.signin_requests().iter().map(|r| r.status).collect()
}

/// Sets environment variables for the lifetime of the value (hold `ENV_LOCK` meanwhile) and
/// restores the previous values on drop, panics included.
struct EnvVars(Vec<(String, Option<OsString>)>);

impl EnvVars {
    fn set(vars: &[(&str, &str)]) -> EnvVars {
        let saved = vars
            .iter()
            .map(|(k, _)| (k.to_string(), std::env::var_os(k)))
            .collect();
        for (k, v) in vars {
            std::env::set_var(k, v);
        }
        EnvVars(saved)
    }
}

impl Drop for EnvVars {
    fn drop(&mut self) {
        for (k, v) in &self.0 {
            match v {
                Some(v) => std::env::set_var(k, v),
                None => std::env::remove_var(k),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Paging

#[tokio::test]
async fn several_event_types_are_one_newest_first_query_that_asks_for_unknown_enum_members() {
    let records = fake::tenant(25, 3, 31);
    let running = fake::spawn_http(records.clone()).await;
    running.fake.faults().page_size_cap(41);
    let client = minted_client(&running, Duration::from_secs(30));
    let types = [EventType::InteractiveUser, EventType::NonInteractiveUser];
    let got = read_all(client.pager_for(days_before_end(3), &types, None))
        .await
        .unwrap();
    let expected: BTreeSet<String> = records
        .iter()
        .filter(|r| {
            let t = event_type_of(r);
            t == "interactiveUser" || t == "nonInteractiveUser"
        })
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    let got_ids: BTreeSet<String> = got.iter().map(|s| s.id().to_string()).collect();
    assert_eq!(got_ids.len(), got.len(), "an id arrived twice");
    assert_eq!(got_ids, expected);
    assert!(got.windows(2).all(|w| w[0].created >= w[1].created));

    let requests = running.fake.signin_requests();
    assert!(requests.len() > 2, "several pages");
    // One query: the first request names both types in one clause, the rest follow nextLinks.
    assert_eq!(
        requests
            .iter()
            .filter(|r| r.query("$skiptoken").is_none())
            .count(),
        1
    );
    let filter = requests[0].query("$filter").unwrap();
    assert!(
        filter.ends_with(
            "signInEventTypes/any(t: t eq 'interactiveUser' or t eq 'nonInteractiveUser')"
        ),
        "{filter}"
    );
    // Every request, nextLinks included, asks for evolvable enum members by name.
    for r in &requests {
        assert_eq!(
            r.prefer.as_deref(),
            Some("include-unknown-enum-members"),
            "{r:?}"
        );
    }
}

#[tokio::test]
async fn every_signin_arrives_exactly_once_across_pages_and_event_types() {
    let records = fake::tenant(25, 4, 11);
    let running = fake::spawn_http(records.clone()).await;
    running.fake.faults().page_size_cap(37);
    let client = minted_client(&running, Duration::from_secs(30));

    let mut seen_overall: Vec<String> = Vec::new();
    for event_type in ALL_TYPES {
        let got = read_all(client.pager(days_before_end(4), event_type, None))
            .await
            .unwrap();
        let got_ids: Vec<String> = got.iter().map(|s| s.id().to_string()).collect();
        let unique: BTreeSet<&String> = got_ids.iter().collect();
        assert_eq!(
            unique.len(),
            got_ids.len(),
            "{event_type:?}: an id arrived twice"
        );
        let expected: BTreeSet<String> = records
            .iter()
            .filter(|r| event_type_of(r) == event_type.as_str())
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect();
        assert!(
            !expected.is_empty(),
            "{event_type:?}: the tenant has none; the test proves nothing"
        );
        assert_eq!(
            unique.into_iter().cloned().collect::<BTreeSet<_>>(),
            expected,
            "{event_type:?}"
        );
        // Pages arrive newest first, as Graph sends them.
        assert!(
            got.windows(2).all(|w| w[0].created >= w[1].created),
            "{event_type:?}: order"
        );
        seen_overall.extend(got_ids);
    }
    // The four streams together are the whole tenant, each sign-in once.
    assert_eq!(seen_overall.len(), records.len());
    assert_eq!(
        seen_overall.iter().collect::<BTreeSet<_>>().len(),
        records.len()
    );

    let stats = client.stats();
    let requests = running.fake.signin_requests();
    assert!(stats.pages >= (records.len() / 37) as u64, "{stats:?}");
    assert_eq!(stats.requests, requests.len() as u64);
    assert_eq!(stats.retries, 0);
    for request in &requests {
        assert_eq!(request.status, 200, "{}", request.path_and_query);
        let pairs = request.query_pairs();
        assert!(
            pairs.iter().all(|(k, _)| k != "$select" && k != "$skip"),
            "{pairs:?}"
        );
        assert!(request
            .path_and_query
            .starts_with("/beta/auditLogs/signIns?"));
    }
    // First pages: exactly what the client builds.
    let first = &requests[0];
    assert_eq!(first.query("$top").as_deref(), Some("1000"));
    assert_eq!(
        first.query("$filter").as_deref(),
        Some("createdDateTime ge 2026-11-24T12:00:00Z and createdDateTime le 2026-11-28T12:00:00Z")
    );
    assert!(
        !first.path_and_query.contains('+'),
        "spaces must be %20: {}",
        first.path_and_query
    );
}

#[tokio::test]
async fn window_bounds_are_inclusive_and_filters_are_anded() {
    let records = fake::tenant(20, 3, 5);
    let running = fake::spawn_http(records.clone()).await;
    running.fake.faults().page_size_cap(25);
    let tokens = TokenProvider::fixed(Secret::new(running.fake.mint_token(GRAPH_RESOURCE)));
    let mut s = settings(
        &running.base_url,
        GraphVersion::Beta,
        Duration::from_secs(30),
    );
    s.extra_filter = Some("status/errorCode eq 0".into());
    let client = GraphClient::new(&s, tokens).unwrap();

    // The window starts and ends exactly on two interactive sign-ins: both must be included.
    let interactive: Vec<&Value> = records
        .iter()
        .filter(|r| event_type_of(r) == "interactiveUser")
        .collect();
    let (newest, oldest) = (
        created(interactive[10]),
        created(interactive[interactive.len() - 10]),
    );
    let window = Window {
        start: oldest,
        end: newest,
    };
    let server = "clientAppUsed eq 'Browser' or clientAppUsed eq 'Exchange ActiveSync'";
    let got = read_all(client.pager(window, EventType::InteractiveUser, Some(server.into())))
        .await
        .unwrap();

    let expected: BTreeSet<String> = interactive
        .iter()
        .filter(|r| (oldest..=newest).contains(&created(r)))
        // Graph compares strings case-insensitively ("exchange activesync" matches too).
        .filter(|r| {
            let app = r["clientAppUsed"]
                .as_str()
                .unwrap_or_default()
                .to_lowercase();
            app == "browser" || app == "exchange activesync"
        })
        .filter(|r| r["status"]["errorCode"].as_i64() == Some(0))
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    let got_ids: BTreeSet<String> = got.iter().map(|s| s.id().to_string()).collect();
    assert!(
        expected.len() > 5,
        "too few rows to prove anything: {}",
        expected.len()
    );
    assert_eq!(got_ids.len(), got.len());
    assert_eq!(got_ids, expected);
    let sent = running.fake.signin_requests()[0].query("$filter").unwrap();
    assert!(
        sent.contains(&format!("({server})")) && sent.contains("(status/errorCode eq 0)"),
        "{sent}"
    );
}

// ---------------------------------------------------------------------------------------------
// Throttling and retries

#[tokio::test]
async fn retry_after_seconds_is_waited_out() {
    let running = fake::spawn_http(fake::tenant(5, 1, 1)).await;
    let client = minted_client(&running, Duration::from_secs(30));
    running
        .fake
        .faults()
        .throttle_next(1, RetryAfter::Seconds(1));
    let started = Instant::now();
    let rows = read_all(client.pager(days_before_end(1), EventType::InteractiveUser, None))
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "retried after {:?}",
        started.elapsed()
    );
    assert!(!rows.is_empty());
    assert_eq!(statuses(&running.fake), vec![429, 200]);
    let stats = client.stats();
    assert_eq!(
        (stats.throttled, stats.retries, stats.requests, stats.pages),
        (1, 1, 2, 1)
    );
}

#[tokio::test]
async fn retry_after_http_date_is_waited_out() {
    let running = fake::spawn_http(fake::tenant(5, 1, 1)).await;
    let client = minted_client(&running, Duration::from_secs(30));
    // The fake says "two seconds from now" as an HTTP-date (whole seconds): at least 1 s away.
    running.fake.faults().throttle_next(1, RetryAfter::HttpDate);
    let started = Instant::now();
    read_all(client.pager(days_before_end(1), EventType::InteractiveUser, None))
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "retried after {:?}",
        started.elapsed()
    );
    assert_eq!(statuses(&running.fake), vec![429, 200]);
}

#[tokio::test]
async fn a_spent_retry_budget_fails_the_page() {
    let running = fake::spawn_http(fake::tenant(5, 1, 1)).await;
    // Budget 2.5 s, the server wants 1 s each time, forever: two waits (and the attempts' own
    // few milliseconds) fit, the third wait does not.
    let client = minted_client(&running, Duration::from_millis(2500));
    running
        .fake
        .faults()
        .throttle_next(100, RetryAfter::Seconds(1));
    let err = read_all(client.pager(days_before_end(1), EventType::InteractiveUser, None))
        .await
        .unwrap_err();
    match &err {
        GraphError::Throttled { attempts, last, .. } => {
            assert_eq!(*attempts, 3, "{err}");
            assert!(last.contains("429"), "{err}");
        }
        other => panic!("expected Throttled, got {other:?}"),
    }
    assert!(err.to_string().contains("SIGNINS_RETRY_BUDGET"), "{err}");
    assert_eq!(statuses(&running.fake), vec![429, 429, 429]);

    // A Retry-After longer than what is left is not waited for at all.
    let running = fake::spawn_http(fake::tenant(5, 1, 1)).await;
    let client = minted_client(&running, Duration::from_secs(2));
    running
        .fake
        .faults()
        .throttle_next(1, RetryAfter::Seconds(30));
    let err = read_all(client.pager(days_before_end(1), EventType::InteractiveUser, None))
        .await
        .unwrap_err();
    assert!(
        matches!(err, GraphError::Throttled { attempts: 1, .. }),
        "{err}"
    );
    assert_eq!(statuses(&running.fake), vec![429]);
}

#[tokio::test]
async fn server_errors_are_retried_then_the_page_is_read() {
    let records = fake::tenant(5, 1, 2);
    let running = fake::spawn_http(records.clone()).await;
    let client = minted_client(&running, Duration::from_secs(30));
    for status in [503, 500, 502, 504] {
        running.fake.faults().fail_next(1, status);
        let rows = read_all(client.pager(days_before_end(1), EventType::InteractiveUser, None))
            .await
            .unwrap();
        let expected = records
            .iter()
            .filter(|r| event_type_of(r) == "interactiveUser")
            .count();
        assert_eq!(rows.len(), expected, "after {status}");
    }
    assert_eq!(
        statuses(&running.fake),
        vec![503, 200, 500, 200, 502, 200, 504, 200]
    );
    let stats = client.stats();
    assert_eq!((stats.retries, stats.throttled), (4, 1));
}

#[tokio::test]
async fn a_stalled_page_times_out_and_is_retried() {
    let running = fake::spawn_http(fake::tenant(5, 1, 3)).await;
    let client = minted_client(&running, Duration::from_secs(30))
        .with_request_timeout(Duration::from_millis(300));
    running.fake.faults().slow_pages(Duration::from_secs(30));
    let fake = running.fake.clone();
    let unstall = tokio::spawn(async move {
        fake.wait_for_page_requests(1).await;
        fake.faults().slow_pages(Duration::ZERO);
    });
    let rows = read_all(client.pager(days_before_end(1), EventType::InteractiveUser, None))
        .await
        .unwrap();
    unstall.await.unwrap();
    assert!(!rows.is_empty());
    assert_eq!(running.fake.signin_requests().len(), 2);
    assert_eq!(client.stats().retries, 1);
}

// ---------------------------------------------------------------------------------------------
// Malformed pages, nextLink origin

#[tokio::test]
async fn a_malformed_page_is_an_error_not_a_skip() {
    let running = fake::spawn_http(fake::tenant(10, 2, 4)).await;
    running.fake.faults().page_size_cap(10);
    let client = minted_client(&running, Duration::from_secs(30));
    let mut pager = client.pager(days_before_end(2), EventType::InteractiveUser, None);
    assert_eq!(pager.next_page().await.unwrap().unwrap().len(), 10);
    running.fake.faults().malformed_next(1);
    let err = pager.next_page().await.unwrap_err();
    assert!(
        matches!(err, GraphError::Malformed { page: 2, .. }),
        "{err:?}"
    );
    assert_eq!(
        statuses(&running.fake),
        vec![200, 200],
        "a malformed 200 is not retried"
    );
}

#[tokio::test]
async fn a_foreign_next_link_is_refused_and_never_contacted() {
    let foreign = FakeGraph::new(Vec::new());
    let foreign_addr = foreign.spawn().await.unwrap();
    let running = fake::spawn_http(fake::tenant(10, 2, 6)).await;
    running.fake.faults().page_size_cap(10);
    running
        .fake
        .faults()
        .foreign_next_link(Some(format!("http://{foreign_addr}")));
    let client = minted_client(&running, Duration::from_secs(30));

    let err = read_all(client.pager(days_before_end(2), EventType::InteractiveUser, None))
        .await
        .unwrap_err();
    match &err {
        GraphError::ForeignNextLink { host, expected } => {
            assert_eq!(host, &format!("http://{foreign_addr}"));
            assert_eq!(expected, &running.base_url);
        }
        other => panic!("expected ForeignNextLink, got {other:?}"),
    }
    assert!(
        foreign.requests().is_empty(),
        "the foreign origin was contacted: {:?}",
        foreign.requests()
    );
    assert_eq!(running.fake.signin_requests().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// 401 and token refresh

#[tokio::test]
async fn a_revoked_token_is_refreshed_once_and_the_page_retried() {
    let _env = ENV_LOCK.lock().await;
    let records = fake::tenant(10, 2, 7);
    let running = fake::spawn_http(records.clone()).await;
    running.fake.faults().page_size_cap(10);
    let header = running.fake.managed_identity_header();
    let _vars = EnvVars::set(&[
        ("IDENTITY_ENDPOINT", &running.identity_endpoint()),
        ("IDENTITY_HEADER", &header),
    ]);
    let tokens = TokenProvider::with_options(
        &AuthMode::ManagedIdentity { client_id: None },
        AuthOptions::default(),
    )
    .unwrap();
    let client = GraphClient::new(
        &settings(
            &running.base_url,
            GraphVersion::Beta,
            Duration::from_secs(30),
        ),
        tokens,
    )
    .unwrap();

    let mut pager = client.pager(days_before_end(2), EventType::InteractiveUser, None);
    let mut ids: Vec<String> = pager
        .next_page()
        .await
        .unwrap()
        .unwrap()
        .into_iter()
        .map(|s| s.id().to_string())
        .collect();
    running.fake.faults().revoke_tokens();
    while let Some(page) = pager.next_page().await.unwrap() {
        ids.extend(page.into_iter().map(|s| s.id().to_string()));
    }
    let expected: BTreeSet<String> = records
        .iter()
        .filter(|r| event_type_of(r) == "interactiveUser")
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), expected.len());
    assert_eq!(ids.into_iter().collect::<BTreeSet<_>>(), expected);
    let statuses = statuses(&running.fake);
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(statuses[1], 401, "{statuses:?}");
    assert_eq!(running.fake.tokens_seen_by_graph().len(), 2);
    assert_eq!(client.stats().retries, 1);
}

#[tokio::test]
async fn a_second_401_fails_the_run() {
    let running = fake::spawn_http(fake::tenant(5, 1, 8)).await;
    // A fixed token cannot be renewed: the refresh yields the same revoked token.
    let client = minted_client(&running, Duration::from_secs(30));
    running.fake.faults().revoke_tokens();
    let err = read_all(client.pager(days_before_end(1), EventType::InteractiveUser, None))
        .await
        .unwrap_err();
    assert!(matches!(err, GraphError::Unauthorized { .. }), "{err:?}");
    assert!(
        err.to_string().contains("InvalidAuthenticationToken"),
        "{err}"
    );
    assert_eq!(statuses(&running.fake), vec![401, 401]);
}

// ---------------------------------------------------------------------------------------------
// Token sources

#[tokio::test]
async fn client_secret_over_https_reads_graph() {
    let running = fake::spawn_https(fake::tenant(5, 1, 9)).await;
    let options = AuthOptions {
        authority_host: Some(url::Url::parse(&running.base_url).unwrap()),
    };
    let auth = AuthMode::ClientSecret {
        tenant_id: running.fake.tenant_id().to_string(),
        client_id: CLIENT_ID.into(),
        secret: Secret::new(CLIENT_SECRET),
    };
    let tokens = TokenProvider::with_options(&auth, options).unwrap();
    let client = GraphClient::new(
        &settings(&running.base_url, GraphVersion::V1, Duration::from_secs(30)),
        tokens,
    )
    .unwrap();
    // Several pages: nextLinks over HTTPS (with a port) are on the configured origin.
    running.fake.faults().page_size_cap(4);
    let rows = read_all(client.pager(days_before_end(1), EventType::InteractiveUser, None))
        .await
        .unwrap();
    assert!(rows.len() > 8, "{}", rows.len());
    assert_eq!(running.fake.issued_tokens(), 1, "one token for every page");
    let requests = running.fake.signin_requests();
    assert_eq!(requests.len(), rows.len().div_ceil(4));
    assert!(requests
        .iter()
        .all(|r| r.path_and_query.starts_with("/v1.0/")));
}

#[tokio::test]
async fn client_secret_failures_are_explained_without_the_secret() {
    let running = fake::spawn_https(Vec::new()).await;
    let options = AuthOptions {
        authority_host: Some(url::Url::parse(&running.base_url).unwrap()),
    };
    let tenant = running.fake.tenant_id().to_string();
    let token_for = |tenant: &str, client: &str, secret: &str| {
        let auth = AuthMode::ClientSecret {
            tenant_id: tenant.into(),
            client_id: client.into(),
            secret: Secret::new(secret),
        };
        let provider = TokenProvider::with_options(&auth, options.clone()).unwrap();
        async move { provider.token().await }
    };

    let wrong = "Wr0ng~secret.value-4711";
    let err = token_for(&tenant, CLIENT_ID, wrong).await.unwrap_err();
    assert!(matches!(err, AuthError::InvalidSecret), "{err:?}");
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("AADSTS7000215"), "{shown}");
    assert!(
        !shown.contains(wrong) && !shown.contains(CLIENT_SECRET),
        "{shown}"
    );

    let err = token_for(
        "0b1c2d3e-0000-4000-8000-00000000abcd",
        CLIENT_ID,
        CLIENT_SECRET,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, AuthError::UnknownTenant { .. }), "{err:?}");
    assert!(
        err.to_string().contains("AADSTS90002") && err.to_string().contains("AZURE_TENANT_ID"),
        "{err}"
    );

    let err = token_for(
        &tenant,
        "11111111-2222-3333-4444-555555555555",
        CLIENT_SECRET,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, AuthError::UnknownApp { .. }), "{err:?}");
    assert!(
        err.to_string().contains("AADSTS700016") && err.to_string().contains("AZURE_CLIENT_ID"),
        "{err}"
    );
    assert_eq!(running.fake.issued_tokens(), 0);

    // Nothing listens at the authority: "unreachable", naming the authority, not "rejected".
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let nowhere = format!("https://{closed}");
    let auth = AuthMode::ClientSecret {
        tenant_id: tenant.clone(),
        client_id: CLIENT_ID.into(),
        secret: Secret::new(CLIENT_SECRET),
    };
    let options = AuthOptions {
        authority_host: Some(url::Url::parse(&nowhere).unwrap()),
    };
    let err = TokenProvider::with_options(&auth, options)
        .unwrap()
        .token()
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains(&nowhere), "{err}");
    assert!(!format!("{err} {err:?}").contains(CLIENT_SECRET));
}

/// A self-signed RSA certificate with its key, as one PEM file.
fn certificate_file(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["signin-export".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let path = dir.join(name);
    std::fs::write(&path, format!("{}{}", cert.pem(), key.serialize_pem())).unwrap();
    (path, cert.pem())
}

#[tokio::test]
async fn certificate_auth_signs_an_assertion_the_token_endpoint_accepts() {
    let running = fake::spawn_https(fake::tenant(5, 1, 10)).await;
    let dir = tempfile::tempdir().unwrap();
    let (registered, cert_pem) = certificate_file(dir.path(), "app.pem");
    let (unregistered, _) = certificate_file(dir.path(), "other.pem");
    let tenant = running.fake.tenant_id().to_string();
    running
        .fake
        .register_app_certificate(&tenant, "cert-app", cert_pem.as_bytes())
        .unwrap();
    let options = AuthOptions {
        authority_host: Some(url::Url::parse(&running.base_url).unwrap()),
    };

    let auth = AuthMode::Certificate {
        tenant_id: tenant.clone(),
        client_id: "cert-app".into(),
        path: registered,
    };
    let tokens = TokenProvider::with_options(&auth, options.clone()).unwrap();
    let client = GraphClient::new(
        &settings(&running.base_url, GraphVersion::V1, Duration::from_secs(30)),
        tokens,
    )
    .unwrap();
    let rows = read_all(client.pager(days_before_end(1), EventType::InteractiveUser, None))
        .await
        .unwrap();
    assert!(!rows.is_empty());
    assert_eq!(running.fake.issued_tokens(), 1);

    let auth = AuthMode::Certificate {
        tenant_id: tenant,
        client_id: "cert-app".into(),
        path: unregistered.clone(),
    };
    let err = TokenProvider::with_options(&auth, options)
        .unwrap()
        .token()
        .await
        .unwrap_err();
    assert!(
        matches!(err, AuthError::CertificateRejected { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("AADSTS700027")
            && err
                .to_string()
                .contains(&unregistered.display().to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn managed_identity_from_the_app_service_endpoint() {
    let _env = ENV_LOCK.lock().await;
    let running = fake::spawn_http(fake::tenant(5, 1, 12)).await;
    let endpoint = running.identity_endpoint();
    let header = running.fake.managed_identity_header();
    let system = AuthMode::ManagedIdentity { client_id: None };

    {
        let _vars = EnvVars::set(&[
            ("IDENTITY_ENDPOINT", &endpoint),
            ("IDENTITY_HEADER", &header),
        ]);
        let tokens = TokenProvider::with_options(&system, AuthOptions::default()).unwrap();
        let client = GraphClient::new(
            &settings(&running.base_url, GraphVersion::V1, Duration::from_secs(30)),
            tokens,
        )
        .unwrap();
        let rows = read_all(client.pager(days_before_end(1), EventType::InteractiveUser, None))
            .await
            .unwrap();
        assert!(!rows.is_empty());

        // A user-assigned identity that is attached works; one that is not is named in the error.
        running.fake.add_user_assigned_identity("uami-attached");
        let attached = AuthMode::ManagedIdentity {
            client_id: Some("uami-attached".into()),
        };
        TokenProvider::with_options(&attached, AuthOptions::default())
            .unwrap()
            .token()
            .await
            .unwrap();
        let missing = AuthMode::ManagedIdentity {
            client_id: Some("uami-missing".into()),
        };
        let err = TokenProvider::with_options(&missing, AuthOptions::default())
            .unwrap()
            .token()
            .await
            .unwrap_err();
        assert!(
            matches!(err, AuthError::ManagedIdentityRejected { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("uami-missing"), "{err}");
    }
    {
        let _vars = EnvVars::set(&[
            ("IDENTITY_ENDPOINT", &endpoint),
            ("IDENTITY_HEADER", "not-the-header"),
        ]);
        let err = TokenProvider::with_options(&system, AuthOptions::default())
            .unwrap()
            .token()
            .await
            .unwrap_err();
        assert!(
            matches!(err, AuthError::ManagedIdentityRejected { .. }),
            "{err:?}"
        );
        assert!(!err.to_string().contains(&header), "{err}");
    }
    {
        // Nothing listens there.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let _vars = EnvVars::set(&[
            ("IDENTITY_ENDPOINT", &format!("http://{closed}/msi/token")),
            ("IDENTITY_HEADER", &header),
        ]);
        let err = TokenProvider::with_options(&system, AuthOptions::default())
            .unwrap()
            .token()
            .await
            .unwrap_err();
        assert!(
            matches!(err, AuthError::ManagedIdentityUnavailable { .. }),
            "{err:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// `check`: the probe and its explanations

#[tokio::test]
async fn probe_reads_one_row_with_the_run_filter_shape() {
    let mut records = fake::tenant(3, 1, 13);
    let recent = (OffsetDateTime::now_utc() - time::Duration::minutes(5))
        .replace_nanosecond(0)
        .unwrap();
    for r in records.iter_mut() {
        r["createdDateTime"] = Value::String(recent.format(&Rfc3339).unwrap());
    }
    let running = fake::spawn_http(records).await;
    let client = minted_client(&running, Duration::from_secs(30));
    assert_eq!(
        client.probe(&[EventType::InteractiveUser]).await.unwrap(),
        1
    );
    let request = &running.fake.signin_requests()[0];
    assert_eq!(request.query("$top").as_deref(), Some("1"));
    let filter = request.query("$filter").unwrap();
    assert!(
        filter.starts_with("createdDateTime ge ") && filter.contains(" and createdDateTime le "),
        "{filter}"
    );
}

#[tokio::test]
async fn probe_explains_permission_licence_and_filter_errors() {
    let running = fake::spawn_http(Vec::new()).await;
    let client = minted_client(&running, Duration::from_secs(30));

    running.fake.faults().deny(GraphDenial::MissingPermission);
    let err = client
        .probe(&[EventType::InteractiveUser])
        .await
        .unwrap_err();
    assert!(matches!(err, GraphError::Denied { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("AuditLog.Read.All")
            && text.contains("Directory.Read.All")
            && text.contains("admin consent"),
        "{text}"
    );

    running.fake.faults().deny(GraphDenial::NonPremiumTenant);
    let text = client
        .probe(&[EventType::InteractiveUser])
        .await
        .unwrap_err()
        .to_string();
    assert!(text.contains("Microsoft Entra ID P1 or P2"), "{text}");
    running.fake.faults().allow();

    let tokens = TokenProvider::fixed(Secret::new(running.fake.mint_token(GRAPH_RESOURCE)));
    let mut s = settings(&running.base_url, GraphVersion::V1, Duration::from_secs(30));
    s.extra_filter = Some("clientAppUsed eq".into());
    let err = GraphClient::new(&s, tokens)
        .unwrap()
        .probe(&[EventType::InteractiveUser])
        .await
        .unwrap_err();
    assert!(matches!(err, GraphError::BadRequest { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("BadRequest") && text.contains("SIGNINS_FILTER"),
        "{text}"
    );

    // Graph's own refusals reach the user too (gt on createdDateTime is not supported).
    let tokens = TokenProvider::fixed(Secret::new(running.fake.mint_token(GRAPH_RESOURCE)));
    s.extra_filter = Some("createdDateTime gt 2026-11-01T00:00:00Z".into());
    let err = GraphClient::new(&s, tokens)
        .unwrap()
        .probe(&[EventType::InteractiveUser])
        .await
        .unwrap_err();
    assert!(matches!(err, GraphError::BadRequest { .. }), "{err:?}");
}

// ---------------------------------------------------------------------------------------------
// Graph's real failure modes (issue 9)

/// The retry budget counts the time failed attempts took, not only the waits between them: slow
/// 503s with `Retry-After: 0` used to be retried up to the attempt limit whatever they cost.
#[tokio::test]
async fn slow_failures_spend_the_retry_budget() {
    let running = fake::spawn_http(fake::tenant(5, 1, 43)).await;
    let client = minted_client(&running, Duration::from_secs(1));
    running.fake.faults().slow_pages(Duration::from_millis(400));
    running
        .fake
        .faults()
        .fail_next_with_retry_after(100, 503, RetryAfter::Seconds(0));
    let err = read_all(client.pager(days_before_end(1), EventType::InteractiveUser, None))
        .await
        .unwrap_err();
    match &err {
        GraphError::Throttled { attempts, .. } => assert!(*attempts <= 4, "{err}"),
        other => panic!("expected Throttled, got {other:?}"),
    }
}

/// `400 Invalid Skip Token` mid-paging (transient, reported of the service): the query is read
/// again from its first page a bounded number of times; the rows read twice are the caller's to
/// deduplicate (the slice does, by id).
#[tokio::test]
async fn a_refused_skiptoken_restarts_the_query_from_its_first_page() {
    let records = fake::tenant(20, 2, 41);
    let running = fake::spawn_http(records.clone()).await;
    running.fake.faults().page_size_cap(10);
    let client = minted_client(&running, Duration::from_secs(30));
    let expected: BTreeSet<String> = records
        .iter()
        .filter(|r| event_type_of(r) == "interactiveUser")
        .filter(|r| (END - time::Duration::days(2)..=END).contains(&created(r)))
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    running.fake.faults().invalid_skiptoken_next(2);
    let got = read_all(client.pager(days_before_end(2), EventType::InteractiveUser, None))
        .await
        .unwrap();
    let ids: BTreeSet<String> = got.iter().map(|s| s.id().to_string()).collect();
    assert_eq!(ids, expected);
    assert!(
        got.len() > ids.len(),
        "the restarts re-read the first pages"
    );
    assert_eq!(
        statuses(&running.fake)
            .iter()
            .filter(|s| **s == 400)
            .count(),
        2
    );

    // A third refusal in the same query is believed: the error names Graph's answer.
    running.fake.faults().invalid_skiptoken_next(3);
    let err = read_all(client.pager(days_before_end(2), EventType::InteractiveUser, None))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Invalid Skip Token"), "{err}");
}

/// `403 Authentication_RequestFromNonPremiumTenantOrB2CTenant` comes and goes on licensed
/// tenants (Graph's license check): retried twice before it is believed and explained.
#[tokio::test]
async fn an_intermittent_licence_refusal_is_retried_before_it_is_believed() {
    let running = fake::spawn_http(fake::tenant(5, 1, 42)).await;
    let client = minted_client(&running, Duration::from_secs(30));
    running
        .fake
        .faults()
        .deny_next(2, GraphDenial::NonPremiumTenant);
    client.probe(&[EventType::InteractiveUser]).await.unwrap();
    assert_eq!(statuses(&running.fake), vec![403, 403, 200]);

    running
        .fake
        .faults()
        .deny_next(3, GraphDenial::NonPremiumTenant);
    let text = client
        .probe(&[EventType::InteractiveUser])
        .await
        .unwrap_err()
        .to_string();
    assert!(text.contains("Microsoft Entra ID P1 or P2"), "{text}");
    assert!(text.contains("Directory.Read.All"), "{text}");
}

#[tokio::test]
async fn a_missing_auditlog_permission_is_explained() {
    let running = fake::spawn_http(Vec::new()).await;
    let client = minted_client(&running, Duration::from_secs(30));
    running
        .fake
        .faults()
        .deny(GraphDenial::AuditLogPermissionMissing);
    let text = client
        .probe(&[EventType::InteractiveUser])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("Authentication_MSGraphPermissionMissing")
            && text.contains("lacks the Microsoft Graph application permission AuditLog.Read.All")
            && text.contains("admin consent"),
        "{text}"
    );
}
