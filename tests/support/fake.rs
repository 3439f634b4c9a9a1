//! Test conveniences around the fake Graph / Entra / managed-identity service
//! (`fake_tenant::FakeGraph`): spawning it over HTTP or HTTPS, a registered client-secret
//! app, and the environment a subprocess needs to talk to it.

use serde_json::Value;
use time::macros::datetime;
use time::OffsetDateTime;

use fake_tenant::tenant::{generate, TenantSpec};
use fake_tenant::FakeGraph;

use super::tls;

/// The client id of the app [`fake_graph_http`]/[`fake_graph_https`] register.
pub const CLIENT_ID: &str = "6f1d8a52-3c4e-4b7a-9e2f-0a1b2c3d4e5f";
/// `SIGNINS_GRAPH_RATE` for tests whose fake does not throttle by rate: pacing would only slow
/// them down. Tests of pacing set their own.
pub const UNPACED: &str = "1000/1s";
/// That app's client secret.
pub const CLIENT_SECRET: &str = "test-secret~value.Xq8";

/// A fixed end instant for deterministic test tenants.
pub const END: OffsetDateTime = datetime!(2026-11-28 12:00:00 UTC);

/// A deterministic tenant of `users` users over `days` days ending at [`END`].
pub fn tenant(users: usize, days: u32, seed: u64) -> Vec<Value> {
    generate(&TenantSpec {
        users,
        days,
        seed,
        end: END,
    })
}

/// A deterministic tenant ending at the tests' instant ([`super::clock::now`]), for runs whose
/// window is relative to the clock.
pub fn recent_tenant(users: usize, days: u32, seed: u64) -> Vec<Value> {
    tenant_ending_at(super::clock::now(), users, days, seed)
}

/// A tenant ending at the wall clock's now: for the packaged (release) binary the handler tests
/// run, which reads the system clock (only debug builds honour `SIGNINS_TEST_CLOCK`). Those tests
/// assert nothing that depends on the time of day.
pub fn wall_clock_tenant(users: usize, days: u32, seed: u64) -> Vec<Value> {
    tenant_ending_at(OffsetDateTime::now_utc(), users, days, seed)
}

/// A deterministic tenant ending at `end`.
pub fn tenant_ending_at(end: OffsetDateTime, users: usize, days: u32, seed: u64) -> Vec<Value> {
    generate(&TenantSpec {
        users,
        days,
        seed,
        end,
    })
}

/// A running fake with its base URL (`http(s)://127.0.0.1:PORT`, no trailing slash).
pub struct RunningFake {
    pub fake: FakeGraph,
    pub base_url: String,
}

impl RunningFake {
    /// `{base}/{tenant}/oauth2/v2.0/token`.
    pub fn token_url(&self) -> String {
        format!(
            "{}/{}/oauth2/v2.0/token",
            self.base_url,
            self.fake.tenant_id()
        )
    }

    /// `{base}/msi/token` (the App Service `IDENTITY_ENDPOINT`).
    pub fn identity_endpoint(&self) -> String {
        format!("{}/msi/token", self.base_url)
    }

    /// `{base}/{version}/auditLogs/signIns`.
    pub fn signins_url(&self, version: &str) -> String {
        format!("{}/{version}/auditLogs/signIns", self.base_url)
    }

    /// Environment for a subprocess using client-secret auth against this fake. Over HTTP the
    /// token endpoint cannot be used by azure_identity (it requires an https authority), so
    /// callers on HTTP should prefer managed identity or a minted token.
    pub fn client_secret_env(&self, version: &str) -> Vec<(String, String)> {
        vec![
            super::clock::env(),
            ("SIGNINS_GRAPH_ENDPOINT".into(), self.base_url.clone()),
            ("SIGNINS_GRAPH_VERSION".into(), version.into()),
            ("SIGNINS_GRAPH_RATE".into(), UNPACED.into()),
            ("SIGNINS_AUTH".into(), "client-secret".into()),
            ("AZURE_TENANT_ID".into(), self.fake.tenant_id().into()),
            ("AZURE_CLIENT_ID".into(), CLIENT_ID.into()),
            ("AZURE_CLIENT_SECRET".into(), CLIENT_SECRET.into()),
            ("AZURE_AUTHORITY_HOST".into(), self.base_url.clone()),
            (
                "SSL_CERT_FILE".into(),
                tls::test_ca().ca_pem_path.display().to_string(),
            ),
        ]
    }

    /// Environment for a subprocess using the App Service managed identity of this fake.
    pub fn managed_identity_env(&self, version: &str) -> Vec<(String, String)> {
        vec![
            super::clock::env(),
            ("SIGNINS_GRAPH_ENDPOINT".into(), self.base_url.clone()),
            ("SIGNINS_GRAPH_VERSION".into(), version.into()),
            ("SIGNINS_GRAPH_RATE".into(), UNPACED.into()),
            ("SIGNINS_AUTH".into(), "managed-identity".into()),
            ("IDENTITY_ENDPOINT".into(), self.identity_endpoint()),
            (
                "IDENTITY_HEADER".into(),
                self.fake.managed_identity_header(),
            ),
            (
                "SSL_CERT_FILE".into(),
                tls::test_ca().ca_pem_path.display().to_string(),
            ),
        ]
    }
}

fn with_test_app(fake: &FakeGraph) {
    fake.register_app(fake.tenant_id(), CLIENT_ID, CLIENT_SECRET);
}

/// The fake over plain HTTP, with the test app registered.
pub async fn fake_graph_http(signins: Vec<Value>) -> (FakeGraph, String) {
    let running = spawn_http(signins).await;
    (running.fake, running.base_url)
}

/// The fake over HTTPS (test CA, trusted through `SSL_CERT_FILE`), with the test app registered:
/// the token endpoint is then usable as `AZURE_AUTHORITY_HOST`.
pub async fn fake_graph_https(signins: Vec<Value>) -> (FakeGraph, String) {
    let running = spawn_https(signins).await;
    (running.fake, running.base_url)
}

/// [`fake_graph_http`] returning a [`RunningFake`].
pub async fn spawn_http(signins: Vec<Value>) -> RunningFake {
    let fake = FakeGraph::new(signins);
    with_test_app(&fake);
    let addr = fake.spawn().await.expect("spawn the fake over HTTP");
    RunningFake {
        fake,
        base_url: format!("http://{addr}"),
    }
}

/// [`fake_graph_https`] returning a [`RunningFake`].
pub async fn spawn_https(signins: Vec<Value>) -> RunningFake {
    let fake = FakeGraph::new(signins);
    with_test_app(&fake);
    fake.set_public_scheme(true);
    let addr = tls::spawn_https(fake.router()).await;
    RunningFake {
        fake,
        base_url: format!("https://{addr}"),
    }
}

/// Ids of a list of sign-in records, in order.
pub fn ids(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| r["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}
