//! The fake Graph / Entra / managed-identity service is as strict as the real ones: every other
//! test relies on it refusing what the real services refuse, so these tests pin that down with
//! plain reqwest calls (and azure_identity for the token endpoint over HTTPS).

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use fake_tenant::fake_graph::V1_PROPERTIES;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha1::Digest as _;

use fake_tenant::tenant::{generate, TenantSpec};
use fake_tenant::{
    ApiVersion, FakeGraph, GraphDenial, RetryAfter, GRAPH_RESOURCE, STORAGE_RESOURCE,
};

use crate::support::fake::{
    self, ids, spawn_http, spawn_https, RunningFake, CLIENT_ID, CLIENT_SECRET,
};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("reqwest client")
}

/// A fake over HTTP holding a 20-user, 3-day tenant, and a valid Graph token for it.
async fn graph() -> (RunningFake, String) {
    let running = spawn_http(fake::tenant(20, 3, 11)).await;
    // May read everything a sign-in holds, Conditional Access policies included.
    running.fake.grant_role("Policy.Read.All");
    let token = running.fake.mint_token(GRAPH_RESOURCE);
    (running, token)
}

async fn get(url: &str, token: Option<&str>) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let mut request = client().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.text().await.expect("body"))
}

async fn get_json(url: &str, token: Option<&str>) -> (StatusCode, Value) {
    let (status, _, body) = get(url, token).await;
    let value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    (status, value)
}

/// Follows every nextLink from `first`; returns the pages' `value` arrays and the links.
async fn all_pages(first: &str, token: &str) -> (Vec<Vec<Value>>, Vec<String>) {
    let mut pages = Vec::new();
    let mut links = Vec::new();
    let mut url = first.to_owned();
    loop {
        let (status, body) = get_json(&url, Some(token)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body["@odata.context"]
            .as_str()
            .unwrap()
            .contains("$metadata#auditLogs/signIns"));
        pages.push(body["value"].as_array().expect("value array").clone());
        match body["@odata.nextLink"].as_str() {
            Some(next) => {
                links.push(next.to_owned());
                url = next.to_owned();
            }
            None => break,
        }
        assert!(pages.len() < 10_000, "paging never ends");
    }
    (pages, links)
}

/// Asserts a Graph error body with this status and code.
fn assert_graph_error(status: StatusCode, body: &str, want_status: StatusCode, want_code: &str) {
    let short: String = body.chars().take(300).collect();
    assert_eq!(status, want_status, "{short}");
    let v: Value = serde_json::from_str(body).expect("error body is JSON");
    assert_eq!(v["error"]["code"], want_code, "{short}");
    assert!(v["error"]["message"].is_string());
    let inner = &v["error"]["innerError"];
    for key in ["date", "request-id", "client-request-id"] {
        assert!(inner[key].is_string(), "innerError.{key} missing: {short}");
    }
}

#[tokio::test]
async fn paging_returns_every_record_exactly_once_newest_first() {
    let (running, token) = graph().await;
    let expected = running.fake.expected(ApiVersion::V1, None).unwrap();
    assert!(expected.len() > 120, "tenant too small for a paging test");
    let first = format!("{}?$top=50", running.signins_url("v1.0"));
    let (pages, links) = all_pages(&first, &token).await;

    assert_eq!(pages.len(), expected.len().div_ceil(50));
    assert!(pages.iter().all(|p| !p.is_empty() && p.len() <= 50));
    let got: Vec<Value> = pages.into_iter().flatten().collect();
    assert_eq!(ids(&got), ids(&expected), "every record once, in order");
    assert_eq!(got, expected, "records are served unchanged");
    // v1.0 only returns interactive sign-ins, without the beta-only property.
    assert!(got.iter().all(|r| r["isInteractive"] == json!(true)));
    assert!(got.iter().all(|r| r.get("signInEventTypes").is_none()));
    // Only v1.0 properties: the beta-only ones the tenant carries are left out.
    for r in &got {
        for name in r.as_object().unwrap().keys() {
            assert!(V1_PROPERTIES.contains(&name.as_str()), "{name} on v1.0");
        }
        assert!(r.get("userAgent").is_some() && r.get("incomingTokenType").is_none());
    }
    let times: Vec<&str> = got
        .iter()
        .map(|r| r["createdDateTime"].as_str().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");

    for link in &links {
        assert!(
            link.starts_with(&running.signins_url("v1.0")),
            "same origin and path: {link}"
        );
        let url = url::Url::parse(link).unwrap();
        let token: String = url
            .query_pairs()
            .find(|(k, _)| k == "$skiptoken")
            .map(|(_, v)| v.into_owned())
            .expect("a $skiptoken");
        assert!(token.len() >= 32, "opaque token, not an offset: {token}");
        assert!(token.parse::<u64>().is_err());
    }
    // Every request carried the token and was recorded with its status.
    let requests = running.fake.signin_requests();
    assert_eq!(requests.len(), links.len() + 1);
    assert!(requests.iter().all(|r| r.status == 200));
    assert!(requests
        .iter()
        .all(|r| r.authorization.as_deref() == Some(format!("Bearer {token}").as_str())));
}

#[tokio::test]
async fn retrying_a_next_link_serves_the_same_page_and_late_arrivals_wait_for_a_new_query() {
    let (running, token) = graph().await;
    let first = format!("{}?$top=40", running.signins_url("v1.0"));
    let (_, page1) = get_json(&first, Some(&token)).await;
    let next = page1["@odata.nextLink"].as_str().unwrap().to_owned();
    let (_, a) = get_json(&next, Some(&token)).await;
    let (_, b) = get_json(&next, Some(&token)).await;
    assert_eq!(
        a["value"], b["value"],
        "a nextLink is replayable (retries after 429/5xx)"
    );

    // A sign-in added mid-paging is not in this snapshot, but a new query sees it.
    let mut late = page1["value"][0].clone();
    late["id"] = json!("late-arrival-1");
    late["isInteractive"] = json!(true);
    late["signInEventTypes"] = json!(["interactiveUser"]);
    running.fake.add_signins(vec![late]);
    let (pages, _) = all_pages(&next, &token).await;
    assert!(!ids(&pages.concat()).contains(&"late-arrival-1".to_string()));
    let (pages, _) = all_pages(&first, &token).await;
    assert!(ids(&pages.concat()).contains(&"late-arrival-1".to_string()));

    // Hidden sign-ins are invisible until published.
    running.fake.hide(&["late-arrival-1"]);
    let (pages, _) = all_pages(&first, &token).await;
    assert!(!ids(&pages.concat()).contains(&"late-arrival-1".to_string()));
    running.fake.publish(&["late-arrival-1"]);
    let (pages, _) = all_pages(&first, &token).await;
    assert!(ids(&pages.concat()).contains(&"late-arrival-1".to_string()));
}

#[tokio::test]
async fn top_must_be_between_1_and_1000() {
    let (running, token) = graph().await;
    let base = running.signins_url("v1.0");
    for bad in ["0", "1001", "-1", "ten"] {
        let (status, _, body) = get(&format!("{base}?$top={bad}"), Some(&token)).await;
        assert_graph_error(status, &body, StatusCode::BAD_REQUEST, "BadRequest");
    }
    let (status, body) = get_json(&format!("{base}?$top=1000"), Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.get("@odata.nextLink").is_none(),
        "everything fits in one page"
    );
    let (status, body) = get_json(&format!("{base}?$top=1"), Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["value"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn refuses_what_the_real_service_refuses() {
    let (running, token) = graph().await;
    let v1 = running.signins_url("v1.0");
    let beta = running.signins_url("beta");
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let refused = [
        format!("{v1}?$select=id,createdDateTime"),
        format!("{v1}?$skip=10"),
        format!("{v1}?$count=true"),
        format!("{v1}?$search={}", enc("\"bob\"")),
        format!("{v1}?$orderby=userPrincipalName"),
        format!("{v1}?$expand=status"),
        format!("{v1}?$top=5&$top=6"),
        format!(
            "{v1}?$filter={}",
            enc("createdDateTime gt 2026-11-27T00:00:00Z")
        ),
        format!(
            "{v1}?$filter={}",
            enc("createdDateTime lt 2026-11-27T00:00:00Z")
        ),
        format!(
            "{v1}?$filter={}",
            enc("createdDateTime ge '2026-11-27T00:00:00Z'")
        ),
        // A raw '+' decodes to a space, so the offset is malformed (as on the real service).
        format!("{v1}?$filter=createdDateTime%20ge%202026-11-27T00:00:00+00:00"),
        format!(
            "{v1}?$filter={}",
            enc("signInEventTypes/any(t: t eq 'nonInteractiveUser')")
        ),
        format!(
            "{beta}?$filter={}",
            enc("signInEventTypes/any(t: t eq 'robot')")
        ),
        format!("{v1}?$filter={}", enc("favouriteColour eq 'blue'")),
        format!(
            "{v1}?$filter={}",
            enc("contains(appDisplayName,'Exchange')")
        ),
        format!("{v1}?$filter={}", enc("clientAppUsed eq IMAP4")),
        format!("{v1}?$filter={}", enc("(clientAppUsed eq 'IMAP4'")),
        format!("{v1}?$skiptoken=0"),
    ];
    for url in &refused {
        let (status, _, body) = get(url, Some(&token)).await;
        assert_graph_error(status, &body, StatusCode::BAD_REQUEST, "BadRequest");
    }
    let requests = running.fake.signin_requests();
    assert_eq!(requests.len(), refused.len());
    assert!(requests.iter().all(|r| r.status == 400));
}

#[tokio::test]
async fn skiptokens_are_opaque_and_bound_to_their_query() {
    let (running, token) = graph().await;
    let (_, page1) = get_json(
        &format!("{}?$top=30", running.signins_url("v1.0")),
        Some(&token),
    )
    .await;
    let next = page1["@odata.nextLink"].as_str().unwrap().to_owned();
    let tampered = {
        let mut t = next.clone();
        let last = t.pop().unwrap();
        t.push(if last == 'a' { 'b' } else { 'a' });
        t
    };
    let (status, _, body) = get(&tampered, Some(&token)).await;
    assert_graph_error(status, &body, StatusCode::BAD_REQUEST, "BadRequest");
    // The same token on the other version, or with another $top, is refused too.
    let other_version = next.replace("/v1.0/", "/beta/");
    let (status, _, body) = get(&other_version, Some(&token)).await;
    assert_graph_error(status, &body, StatusCode::BAD_REQUEST, "BadRequest");
    let other_top = next.replace("$top=30", "$top=31");
    assert_ne!(other_top, next);
    let (status, _, body) = get(&other_top, Some(&token)).await;
    assert_graph_error(status, &body, StatusCode::BAD_REQUEST, "BadRequest");
}

#[tokio::test]
async fn filters_follow_the_service_semantics() {
    let (running, token) = graph().await;
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let all = running.fake.all_signins();

    // String eq is exact (case-sensitive), like the service; one combined event-type clause
    // reads both user event types on beta.
    let both = "signInEventTypes/any(t: t eq 'interactiveUser' or t eq 'nonInteractiveUser')";
    let user = |r: &&Value| {
        r["signInEventTypes"][0] == "interactiveUser"
            || r["signInEventTypes"][0] == "nonInteractiveUser"
    };
    for (clause, keep) in [
        (
            "clientAppUsed eq 'Exchange ActiveSync'",
            Box::new(|r: &Value| r["clientAppUsed"] == "Exchange ActiveSync")
                as Box<dyn Fn(&Value) -> bool>,
        ),
        (
            "clientAppUsed eq 'exchange activesync'",
            Box::new(|_: &Value| false),
        ),
        (
            "resourceId eq '00000002-0000-0ff1-ce00-000000000000'",
            Box::new(|r: &Value| r["resourceId"] == "00000002-0000-0ff1-ce00-000000000000"),
        ),
        (
            "clientAppUsed ne 'Browser' and clientAppUsed ne 'Mobile Apps and Desktop clients'",
            // OData: null ne 'x' holds, so records without a client app pass too.
            Box::new(|r: &Value| {
                r["clientAppUsed"] != "Browser"
                    && r["clientAppUsed"] != "Mobile Apps and Desktop clients"
            }),
        ),
    ] {
        let url = format!(
            "{}?$filter={}",
            running.signins_url("beta"),
            enc(&format!("{both} and ({clause})"))
        );
        let (pages, _) = all_pages(&url, &token).await;
        let got = pages.concat().len();
        let truth = all.iter().filter(user).filter(|r| keep(r)).count();
        assert_eq!(got, truth, "{clause}");
        if !clause.contains("exchange activesync") {
            assert!(truth > 0, "{clause}");
        }
    }
    // v1.0 has no signInEventTypes: "Invalid filter clause".
    let (status, _, body) = get(
        &format!("{}?$filter={}", running.signins_url("v1.0"), enc(both)),
        Some(&token),
    )
    .await;
    assert_graph_error(status, &body, StatusCode::BAD_REQUEST, "BadRequest");
    let body: Value = serde_json::from_str(&body).expect("JSON error");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Invalid filter clause")),
        "{body}"
    );

    // beta event-type filter returns exactly that type.
    let url = format!(
        "{}?$filter={}",
        running.signins_url("beta"),
        enc("signInEventTypes/any(t: t eq 'nonInteractiveUser')")
    );
    let (pages, _) = all_pages(&url, &token).await;
    let got = pages.concat();
    let truth = all
        .iter()
        .filter(|r| r["signInEventTypes"][0] == "nonInteractiveUser")
        .count();
    assert!(truth > 0);
    assert_eq!(got.len(), truth);
    assert!(got
        .iter()
        .all(|r| r["signInEventTypes"] == json!(["nonInteractiveUser"])));

    // Without an event-type filter, beta too returns only interactive sign-ins.
    let (pages, _) = all_pages(&running.signins_url("beta"), &token).await;
    let got = pages.concat();
    assert!(got
        .iter()
        .all(|r| r["signInEventTypes"] == json!(["interactiveUser"])));
    assert_eq!(
        got.len(),
        all.iter()
            .filter(|r| r["signInEventTypes"][0] == "interactiveUser")
            .count()
    );

    // ge/le on createdDateTime are inclusive bounds.
    let pivot = got[got.len() / 2]["createdDateTime"]
        .as_str()
        .unwrap()
        .to_owned();
    let later = got[got.len() / 4]["createdDateTime"]
        .as_str()
        .unwrap()
        .to_owned();
    let window = format!("createdDateTime ge {pivot} and createdDateTime le {later}");
    let url = format!("{}?$filter={}", running.signins_url("v1.0"), enc(&window));
    let (pages, _) = all_pages(&url, &token).await;
    let in_window = pages.concat();
    let truth: Vec<&Value> = got
        .iter()
        .filter(|r| {
            let t = r["createdDateTime"].as_str().unwrap();
            t >= pivot.as_str() && t <= later.as_str()
        })
        .collect();
    assert_eq!(in_window.len(), truth.len());
    assert!(in_window
        .iter()
        .any(|r| r["createdDateTime"] == json!(pivot)));
    assert!(in_window
        .iter()
        .any(|r| r["createdDateTime"] == json!(later)));

    // startswith and status/errorCode, joined with and/or and parentheses.
    let f = "(startswith(appDisplayName,'Office 365') or appDisplayName eq 'Microsoft Office') and status/errorCode eq 50126";
    let url = format!("{}?$filter={}", running.signins_url("v1.0"), enc(f));
    let (pages, _) = all_pages(&url, &token).await;
    let got = pages.concat();
    let truth = running.fake.expected(ApiVersion::V1, Some(f)).unwrap();
    assert!(!truth.is_empty());
    assert_eq!(ids(&got), ids(&truth));
    assert!(got.iter().all(|r| r["status"]["errorCode"] == 50126));

    // An apostrophe doubled inside a literal.
    let f = "userPrincipalName eq 'danny.o''brien@contoso.com'";
    let url = format!("{}?$filter={}", running.signins_url("v1.0"), enc(f));
    let (pages, _) = all_pages(&url, &token).await;
    let got = pages.concat();
    assert!(!got.is_empty());
    assert!(got
        .iter()
        .all(|r| r["userPrincipalName"] == "danny.o'brien@contoso.com"));
}

#[tokio::test]
async fn graph_checks_the_bearer_token() {
    let (running, token) = graph().await;
    let url = running.signins_url("v1.0");
    let check = |status: StatusCode, headers: &reqwest::header::HeaderMap, body: &str| {
        assert_graph_error(
            status,
            body,
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
        );
        assert!(headers.get("www-authenticate").is_some());
    };

    let (status, headers, body) = get(&url, None).await;
    check(status, &headers, &body);
    let (status, headers, body) = get(&url, Some("not-a-jwt")).await;
    check(status, &headers, &body);
    let expired = running.fake.mint_token_with_lifetime(GRAPH_RESOURCE, -60);
    let (status, headers, body) = get(&url, Some(&expired)).await;
    check(status, &headers, &body);
    assert!(body.contains("expired"), "{body}");
    let storage = running.fake.mint_token(STORAGE_RESOURCE);
    let (status, headers, body) = get(&url, Some(&storage)).await;
    check(status, &headers, &body);
    assert!(body.contains("audience"), "{body}");
    // A well-formed token from another issuer (another fake) is rejected.
    let stranger = FakeGraph::new(vec![]).mint_token(GRAPH_RESOURCE);
    let (status, headers, body) = get(&url, Some(&stranger)).await;
    check(status, &headers, &body);

    let (status, _, _) = get(&url, Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    running.fake.faults().revoke_tokens();
    let (status, headers, body) = get(&url, Some(&token)).await;
    check(status, &headers, &body);
    let fresh = running.fake.mint_token(GRAPH_RESOURCE);
    let (status, _, _) = get(&url, Some(&fresh)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "tokens issued after the revocation work"
    );

    // Rejected requests are recorded too, with their status.
    let statuses: Vec<u16> = running
        .fake
        .signin_requests()
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, vec![401, 401, 401, 401, 401, 200, 401, 200]);
    assert!(running.fake.signin_requests()[0].authorization.is_none());
}

#[tokio::test]
async fn faults_throttle_fail_and_corrupt_pages() {
    let (running, token) = graph().await;
    let url = format!("{}?$top=100", running.signins_url("v1.0"));
    let faults = running.fake.faults();

    faults.throttle_next(1, RetryAfter::Seconds(3));
    let (status, headers, body) = get(&url, Some(&token)).await;
    assert_graph_error(
        status,
        &body,
        StatusCode::TOO_MANY_REQUESTS,
        "TooManyRequests",
    );
    assert_eq!(headers["retry-after"], "3");
    let (status, _, _) = get(&url, Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "only the next request is throttled");

    faults.throttle_next(1, RetryAfter::HttpDate);
    let (status, headers, _) = get(&url, Some(&token)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let date = headers["retry-after"].to_str().unwrap();
    assert!(
        date.ends_with(" GMT") && date.len() == 29,
        "IMF-fixdate: {date}"
    );

    faults.throttle_next(1, RetryAfter::None);
    let (status, headers, _) = get(&url, Some(&token)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(headers.get("retry-after").is_none());

    for code in [500u16, 502, 503, 504] {
        faults.fail_next(1, code);
        let (status, _, body) = get(&url, Some(&token)).await;
        assert_eq!(status.as_u16(), code, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(v["error"]["code"].is_string());
    }

    faults.malformed_next(1);
    let (status, headers, body) = get(&url, Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    assert!(
        serde_json::from_str::<Value>(&body).is_err(),
        "body must be invalid JSON"
    );
    assert!(body.starts_with('{'));

    faults.deny(GraphDenial::MissingPermission);
    let (status, _, body) = get(&url, Some(&token)).await;
    assert_graph_error(
        status,
        &body,
        StatusCode::FORBIDDEN,
        "Authorization_RequestDenied",
    );
    faults.deny(GraphDenial::NonPremiumTenant);
    let (status, _, body) = get(&url, Some(&token)).await;
    assert_graph_error(
        status,
        &body,
        StatusCode::FORBIDDEN,
        "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
    );
    faults.allow();
    let (status, _, _) = get(&url, Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn page_size_cap_and_foreign_next_link() {
    let (running, token) = graph().await;
    let faults = running.fake.faults();
    faults.page_size_cap(7);
    let first = format!("{}?$top=50", running.signins_url("v1.0"));
    let (pages, _) = all_pages(&first, &token).await;
    let expected = running.fake.expected(ApiVersion::V1, None).unwrap();
    assert!(pages.iter().all(|p| p.len() <= 7));
    assert_eq!(
        ids(&pages.concat()),
        ids(&expected),
        "smaller pages, still complete"
    );
    faults.page_size_cap(0);

    let foreign = spawn_http(vec![]).await;
    faults.foreign_next_link(Some(foreign.base_url.clone()));
    let (_, page) = get_json(&first, Some(&token)).await;
    let next = page["@odata.nextLink"].as_str().unwrap();
    assert!(
        next.starts_with(&format!("{}/v1.0/auditLogs/signIns?", foreign.base_url)),
        "{next}"
    );
    // Only one page is redirected.
    let (_, page) = get_json(&first, Some(&token)).await;
    assert!(page["@odata.nextLink"]
        .as_str()
        .unwrap()
        .starts_with(&running.base_url));
    assert!(foreign.fake.requests().is_empty());
}

#[tokio::test]
async fn slow_pages_are_delayed_and_arrivals_are_signalled() {
    let (running, token) = graph().await;
    running.fake.faults().slow_pages(Duration::from_secs(2));
    let url = running.signins_url("v1.0");
    let fake = running.fake.clone();
    let started = std::time::Instant::now();
    let (u, t) = (url.clone(), token.clone());
    let request = tokio::spawn(async move { get(&u, Some(&t)).await.0 });
    fake.wait_for_page_requests(1).await;
    assert_eq!(fake.signin_requests()[0].status, 0, "in flight");
    assert_eq!(request.await.unwrap(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_secs(2));

    // The delay is fixed when a page arrives; the next page sees the new setting.
    fake.clear_requests();
    fake.faults().slow_pages(Duration::ZERO);
    let started = std::time::Instant::now();
    assert_eq!(get(&url, Some(&token)).await.0, StatusCode::OK);
    // Far below the 2 s the first page took, even on a loaded machine.
    assert!(started.elapsed() < Duration::from_secs(2));
    let recorded = fake.signin_requests();
    assert_eq!(recorded.len(), 1, "cleared before the second request");
    assert_eq!(recorded[0].status, 200);
}

#[tokio::test]
async fn server_errors_can_carry_retry_after() {
    let (running, token) = graph().await;
    running
        .fake
        .faults()
        .fail_next_with_retry_after(2, 503, RetryAfter::Seconds(7));
    let url = running.signins_url("v1.0");
    for _ in 0..2 {
        let (status, headers, body) = get(&url, Some(&token)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(headers["retry-after"], "7");
    }
    let (status, _, _) = get(&url, Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn wrong_methods_paths_and_bodies_are_refused() {
    let (running, token) = graph().await;
    let response = client()
        .post(running.signins_url("v1.0"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let (status, _, body) = get(
        &format!("{}/v2.0/auditLogs/signIns", running.base_url),
        Some(&token),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _, body) = get(
        &format!("{}/v1.0/auditLogs/directoryAudits", running.base_url),
        Some(&token),
    )
    .await;
    assert_graph_error(status, &body, StatusCode::NOT_FOUND, "UnknownError");

    let (status, _, body) = get(&running.token_url(), None).await;
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_aad_error(
        status,
        &body,
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request",
        900561,
    );
    // The token endpoint takes a form, not JSON.
    let response = client()
        .post(running.token_url())
        .json(&json!({"grant_type": "client_credentials", "client_id": CLIENT_ID}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_aad_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        900144,
    );
}

fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

async fn post_token(url: &str, body: String) -> (StatusCode, Value) {
    let response = client()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("token request");
    let status = response.status();
    (status, response.json().await.expect("JSON body"))
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("JWT payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url"))
        .expect("JSON claims")
}

fn assert_aad_error(
    status: StatusCode,
    body: &Value,
    want_status: StatusCode,
    error: &str,
    code: u64,
) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"], error, "{body}");
    assert_eq!(body["error_codes"], json!([code]), "{body}");
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .starts_with(&format!("AADSTS{code}:")));
}

#[tokio::test]
async fn token_endpoint_issues_tokens_and_real_aadsts_errors() {
    let running = spawn_http(vec![]).await;
    let fake = &running.fake;
    let good = |scope: &'static str| {
        form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("scope", scope),
        ])
    };

    let (status, body) = post_token(
        &running.token_url(),
        good("https://graph.microsoft.com/.default"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);
    assert_eq!(body["ext_expires_in"], 3599);
    let token = body["access_token"].as_str().unwrap().to_owned();
    let c = claims(&token);
    assert_eq!(c["aud"], GRAPH_RESOURCE);
    assert_eq!(
        c["iss"],
        format!("https://sts.windows.net/{}/", fake.tenant_id())
    );
    assert_eq!(c["tid"], fake.tenant_id());
    assert_eq!(c["appid"], CLIENT_ID);
    for claim in ["iat", "nbf", "exp"] {
        assert!(c[claim].is_i64(), "{claim} must be a number");
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(c["nbf"].as_i64().unwrap() <= now && c["exp"].as_i64().unwrap() > now + 3000);
    let (status, _, _) = get(&running.signins_url("v1.0"), Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "the issued token works on Graph");

    let (status, body) = post_token(
        &running.token_url(),
        good("https://storage.azure.com/.default"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        claims(body["access_token"].as_str().unwrap())["aud"],
        STORAGE_RESOURCE
    );

    let unknown_tenant = format!(
        "{}/00000000-1111-2222-3333-444444444444/oauth2/v2.0/token",
        running.base_url
    );
    let (status, body) = post_token(
        &unknown_tenant,
        good("https://graph.microsoft.com/.default"),
    )
    .await;
    assert_aad_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        90002,
    );

    let bad_secret = form(&[
        ("grant_type", "client_credentials"),
        ("client_id", CLIENT_ID),
        ("client_secret", "wrong"),
        ("scope", "https://graph.microsoft.com/.default"),
    ]);
    let (status, body) = post_token(&running.token_url(), bad_secret).await;
    assert_aad_error(
        status,
        &body,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        7000215,
    );
    assert!(
        !body.to_string().contains("wrong"),
        "the secret is not echoed"
    );

    let unknown_client = form(&[
        ("grant_type", "client_credentials"),
        ("client_id", "11111111-2222-3333-4444-555555555555"),
        ("client_secret", CLIENT_SECRET),
        ("scope", "https://graph.microsoft.com/.default"),
    ]);
    let (status, body) = post_token(&running.token_url(), unknown_client).await;
    assert_aad_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "unauthorized_client",
        700016,
    );

    let (status, body) = post_token(
        &running.token_url(),
        good("https://graph.microsoft.com/AuditLog.Read.All"),
    )
    .await;
    assert_aad_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid_scope",
        1002012,
    );
    let (status, body) = post_token(
        &running.token_url(),
        good("https://vault.azure.net/.default"),
    )
    .await;
    assert_aad_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid_resource",
        500011,
    );

    let no_credential = form(&[
        ("grant_type", "client_credentials"),
        ("client_id", CLIENT_ID),
        ("scope", "https://graph.microsoft.com/.default"),
    ]);
    let (status, body) = post_token(&running.token_url(), no_credential).await;
    assert_aad_error(
        status,
        &body,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        7000218,
    );

    // Transient failures of the token endpoint.
    fake.faults().fail_token_requests_next(1, 503);
    let (status, body) = post_token(
        &running.token_url(),
        good("https://graph.microsoft.com/.default"),
    )
    .await;
    assert_aad_error(
        status,
        &body,
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        90033,
    );
    let (status, _) = post_token(
        &running.token_url(),
        good("https://graph.microsoft.com/.default"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    assert_eq!(fake.issued_tokens(), 3);
}

/// An RSA certificate and its PKCS#8 key, for certificate-credential tests.
fn rsa_certificate() -> (Vec<u8>, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("RSA key");
    let params = rcgen::CertificateParams::new(vec!["signin-export".to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.der().to_vec(), key.serialize_pem())
}

fn assertion(der: &[u8], key_pem: &str, aud: &str, iss: &str, exp_in: i64) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.x5t = Some(URL_SAFE_NO_PAD.encode(sha1::Sha1::digest(der)));
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = json!({
        "aud": aud, "iss": iss, "sub": iss, "jti": uuid::Uuid::new_v4().to_string(),
        "nbf": now, "exp": now + exp_in,
    });
    jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_rsa_pem(key_pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn certificate_assertions_are_verified() {
    let running = spawn_http(vec![]).await;
    let (der, key) = rsa_certificate();
    let app = "2a2b2c2d-0000-4000-8000-000000000001";
    running
        .fake
        .register_app_certificate(running.fake.tenant_id(), app, &der)
        .unwrap();
    let request = |assertion: String| {
        form(&[
            ("grant_type", "client_credentials"),
            ("client_id", app),
            ("scope", "https://graph.microsoft.com/.default"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &assertion),
        ])
    };
    let aud = running.token_url();

    let (status, body) = post_token(&aud, request(assertion(&der, &key, &aud, app, 300))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(claims(body["access_token"].as_str().unwrap())["appid"], app);

    let wrong_aud = "https://login.microsoftonline.com/common/oauth2/v2.0/token";
    let (status, body) =
        post_token(&aud, request(assertion(&der, &key, wrong_aud, app, 300))).await;
    assert_aad_error(
        status,
        &body,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        700212,
    );

    let (status, body) = post_token(&aud, request(assertion(&der, &key, &aud, app, -600))).await;
    assert_aad_error(
        status,
        &body,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        700024,
    );

    let (status, body) =
        post_token(&aud, request(assertion(&der, &key, &aud, CLIENT_ID, 300))).await;
    assert_aad_error(
        status,
        &body,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        700021,
    );

    // Signed by another key while claiming the registered certificate's thumbprint.
    let (_, other_key) = rsa_certificate();
    let (status, body) =
        post_token(&aud, request(assertion(&der, &other_key, &aud, app, 300))).await;
    assert_aad_error(
        status,
        &body,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        700027,
    );

    // A certificate that was never registered.
    let (other_der, other_key) = rsa_certificate();
    let (status, body) = post_token(
        &aud,
        request(assertion(&other_der, &other_key, &aud, app, 300)),
    )
    .await;
    assert_aad_error(
        status,
        &body,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        700027,
    );
}

#[tokio::test]
async fn managed_identity_endpoint_checks_the_header() {
    let running = spawn_http(vec![]).await;
    let fake = &running.fake;
    let url = |extra: &str| {
        format!(
            "{}?api-version=2019-08-01&resource=https%3A%2F%2Fstorage.azure.com{extra}",
            running.identity_endpoint()
        )
    };
    let call = |url: String, header: Option<String>| async move {
        let mut request = client().get(url).header("metadata", "true");
        if let Some(h) = header {
            request = request.header("X-IDENTITY-HEADER", h);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json::<Value>().await.unwrap())
    };

    let (status, _) = call(url(""), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = call(url(""), Some("wrong".into())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let secret = fake.managed_identity_header();
    let (status, _) = call(
        format!(
            "{}?api-version=2017-09-01&resource=https%3A%2F%2Fstorage.azure.com",
            running.identity_endpoint()
        ),
        Some(secret.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, body) = call(url(""), Some(secret.clone())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["resource"], STORAGE_RESOURCE);
    assert_eq!(body["client_id"], fake.managed_identity_client_id());
    let expires_on: i64 = body["expires_on"]
        .as_str()
        .expect("expires_on is a string")
        .parse()
        .unwrap();
    assert!(expires_on > time::OffsetDateTime::now_utc().unix_timestamp() + 3000);
    let c = claims(body["access_token"].as_str().unwrap());
    assert_eq!(c["aud"], STORAGE_RESOURCE);
    assert!(c["iss"]
        .as_str()
        .unwrap()
        .starts_with("https://sts.windows.net/"));

    let (status, _) = call(
        url("&client_id=99999999-0000-0000-0000-000000000000"),
        Some(secret.clone()),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "unassigned user-assigned identity"
    );
    fake.add_user_assigned_identity("99999999-0000-0000-0000-000000000000");
    let (status, body) = call(
        url("&client_id=99999999-0000-0000-0000-000000000000"),
        Some(secret),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["client_id"], "99999999-0000-0000-0000-000000000000");
    assert_eq!(fake.issued_tokens(), 2);
}

#[tokio::test]
async fn https_fake_is_trusted_by_reqwest_and_azure_identity_through_ssl_cert_file() {
    use azure_core::credentials::{Secret, TokenCredential};
    let running = spawn_https(fake::tenant(5, 1, 3)).await;
    assert!(running.base_url.starts_with("https://127.0.0.1:"));

    // Plain reqwest with the platform verifier (what azure_core uses).
    let (status, _, _) = get(&running.signins_url("v1.0"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "TLS handshake succeeded");

    // azure_identity against the fake authority host.
    let mut custom = azure_core::cloud::CustomConfiguration::default();
    custom.authority_host = running.base_url.clone();
    let options = azure_identity::ClientSecretCredentialOptions {
        client_options: azure_core::http::ClientOptions {
            cloud: Some(std::sync::Arc::new(custom.into())),
            ..Default::default()
        },
    };
    let credential = azure_identity::ClientSecretCredential::new(
        running.fake.tenant_id(),
        CLIENT_ID.to_string(),
        Secret::new(CLIENT_SECRET),
        Some(options),
    )
    .unwrap();
    let token = credential
        .get_token(&["https://graph.microsoft.com/.default"], None)
        .await
        .expect("token from the fake over HTTPS");
    let (status, body) = get_json(&running.signins_url("v1.0"), Some(token.token.secret())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["value"].as_array().unwrap().len(),
        running.fake.expected(ApiVersion::V1, None).unwrap().len()
    );
    assert!(body["@odata.context"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{}/v1.0/", running.base_url)));
    // Over TLS the client negotiates HTTP/2 (no Host header): next links keep the port.
    let first = format!("{}?$top=3", running.signins_url("v1.0"));
    let (pages, links) = all_pages(&first, token.token.secret()).await;
    assert!(pages.len() > 2);
    assert!(
        links
            .iter()
            .all(|l| l.starts_with(&running.signins_url("v1.0"))),
        "{links:?}"
    );

    // A certificate assertion whose audience is the HTTPS token endpoint (with its port).
    let (der, key) = rsa_certificate();
    let app = "2a2b2c2d-0000-4000-8000-000000000002";
    running
        .fake
        .register_app_certificate(running.fake.tenant_id(), app, &der)
        .unwrap();
    let body = form(&[
        ("grant_type", "client_credentials"),
        ("client_id", app),
        ("scope", "https://graph.microsoft.com/.default"),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        (
            "client_assertion",
            &assertion(&der, &key, &running.token_url(), app, 300),
        ),
    ]);
    let (status, body) = post_token(&running.token_url(), body).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[test]
fn generate_is_deterministic_for_a_seed() {
    let spec = |seed| TenantSpec {
        users: 8,
        days: 2,
        seed,
        end: fake::END,
    };
    assert_eq!(generate(&spec(42)), generate(&spec(42)));
    assert_ne!(ids(&generate(&spec(42))), ids(&generate(&spec(43))));
}

/// The fake's lists from Microsoft's CSDL (vendored in `crates/fake-tenant/metadata`, checked
/// against it there) are the pipeline's: the v1.0 properties and the flags-enum properties.
#[test]
fn the_fake_and_the_pipeline_agree_on_the_csdl_lists() {
    assert_eq!(
        fake_tenant::fake_graph::V1_PROPERTIES,
        signin_export::graph::model::V1_PROPERTIES
    );
    assert_eq!(
        fake_tenant::schema::FLAGS_PROPERTIES,
        signin_export::graph::model::FLAGS_PROPERTIES
    );
}

/// Every event type, so a beta page holds every kind of sign-in.
const EVERY_EVENT_TYPE: &str = "signInEventTypes/any(t: t eq 'interactiveUser' or t eq \
    'nonInteractiveUser' or t eq 'servicePrincipal' or t eq 'managedIdentity')";

fn sorted_keys(object: &Value) -> Vec<String> {
    let mut keys: Vec<String> = object.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

/// A beta answer carries exactly the 77 properties of beta's `signIn` and a v1.0 answer exactly
/// the 30 of v1.0's, nested objects included (Microsoft's CSDL, `fake_tenant::schema`): the
/// tenant's records hold the union, and each version leaves out what it lacks.
#[tokio::test]
async fn answers_carry_exactly_the_properties_of_their_version() {
    let (running, token) = graph().await;
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let sorted = |names: &[&str]| {
        let mut names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
        names.sort();
        names
    };
    let beta_url = format!(
        "{}?$filter={}",
        running.signins_url("beta"),
        enc(EVERY_EVENT_TYPE)
    );
    let (pages, _) = all_pages(&beta_url, &token).await;
    let beta: Vec<Value> = pages.concat();
    assert_eq!(beta.len(), running.fake.signin_count());
    let beta_properties = sorted(&fake_tenant::schema::BETA_PROPERTIES);
    assert_eq!(beta_properties.len(), 77);
    for r in &beta {
        assert_eq!(sorted_keys(r), beta_properties);
    }
    assert!(beta
        .iter()
        .any(|r| r["deviceDetail"].get("browserId").is_some()));
    assert!(beta.iter().any(|r| r["appliedConditionalAccessPolicies"][0]
        .get("conditionsSatisfied")
        .is_some()));

    let (pages, _) = all_pages(&running.signins_url("v1.0"), &token).await;
    let v1: Vec<Value> = pages.concat();
    assert!(!v1.is_empty());
    let v1_properties = sorted(&V1_PROPERTIES);
    for r in &v1 {
        assert_eq!(sorted_keys(r), v1_properties);
        assert!(r["riskEventTypes"].is_array());
        assert!(r["deviceDetail"].get("browserId").is_none(), "{r}");
        for policy in r["appliedConditionalAccessPolicies"].as_array().unwrap() {
            assert_eq!(
                sorted_keys(policy),
                [
                    "displayName",
                    "enforcedGrantControls",
                    "enforcedSessionControls",
                    "id",
                    "result"
                ]
            );
        }
    }
    assert!(v1.iter().any(|r| !r["appliedConditionalAccessPolicies"]
        .as_array()
        .unwrap()
        .is_empty()));
    // The tenant itself holds both versions' properties.
    let all = running.fake.all_signins();
    assert!(all
        .iter()
        .all(|r| r.get("riskEventTypes").is_some() && r.get("signInEventTypes").is_some()));
}

/// With the switch on, the combined lambda gets the 400 Graph sends for a filter it does not
/// support; the single-value forms Microsoft documents (`eq`, `ne`) keep working.
#[tokio::test]
async fn the_combined_event_type_lambda_can_be_refused_as_graph_refuses_a_filter() {
    let (running, token) = graph().await;
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let url = |filter: &str| format!("{}?$filter={}", running.signins_url("beta"), enc(filter));
    let all = running.fake.all_signins();
    let of_type = |t: &str| all.iter().filter(|r| r["signInEventTypes"][0] == t).count();
    let combined = "signInEventTypes/any(t: t eq 'interactiveUser' or t eq 'nonInteractiveUser')";
    let window = "createdDateTime ge 2026-11-25T00:00:00Z and ";

    running.fake.faults().refuse_combined_event_types(true);
    for refused in [combined.to_owned(), format!("{window}({combined})")] {
        let (status, _, body) = get(&url(&refused), Some(&token)).await;
        assert_graph_error(status, &body, StatusCode::BAD_REQUEST, "BadRequest");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"]["message"], "Invalid filter clause");
    }
    for (filter, want) in [
        (
            "signInEventTypes/any(t: t eq 'nonInteractiveUser')",
            of_type("nonInteractiveUser"),
        ),
        (
            "signInEventTypes/any(t: t eq 'interactiveUser')",
            of_type("interactiveUser"),
        ),
        (
            "(signInEventTypes/any(t: t ne 'interactiveUser'))",
            all.len() - of_type("interactiveUser"),
        ),
    ] {
        let (pages, _) = all_pages(&url(filter), &token).await;
        assert_eq!(pages.concat().len(), want, "{filter}");
        assert!(want > 0, "{filter}");
    }

    // Off (and after clear), the combined form reads both user event types in one query.
    running.fake.faults().clear();
    let (pages, _) = all_pages(&url(combined), &token).await;
    assert_eq!(
        pages.concat().len(),
        of_type("interactiveUser") + of_type("nonInteractiveUser")
    );
}
