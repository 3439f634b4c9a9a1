//! Settings: read once from the environment (Function App settings) and CLI flags, validated into
//! one typed [`Settings`] value that the rest of the crate trusts.

use std::path::PathBuf;
use std::time::Duration;

use url::Url;

pub use crate::transform::filter::Preset;

/// Every `SIGNINS_*` setting the code reads, with its default ("" = unset) and meaning.
/// The single list behind the README table, the IaC app settings and the drift test.
pub const SETTINGS: &[Setting] = &[
    Setting { name: "SIGNINS_GRAPH_ENDPOINT", default: "https://graph.microsoft.com", meaning: "Graph base URL (national clouds, tests)" },
    Setting { name: "SIGNINS_GRAPH_VERSION", default: "v1.0", meaning: "`v1.0` or `beta`" },
    Setting { name: "SIGNINS_AUTH", default: "auto", meaning: "`auto`, `managed-identity`, `client-secret`, `certificate`" },
    Setting { name: "SIGNINS_DESTINATION", default: "./signins-out", meaning: "local folder, or `https://<account>.blob.core.windows.net/<container>[/<prefix>]` (token auth), or that URL with a SAS query string" },
    Setting { name: "SIGNINS_PRESET", default: "exchange-activesync", meaning: "`exchange-activesync`, `exchange`, `legacy-auth`, `all`" },
    Setting { name: "SIGNINS_CLIENT_APPS", default: "", meaning: "comma list replacing the preset's client apps (`clientAppUsed`)" },
    Setting { name: "SIGNINS_APPS", default: "", meaning: "comma list replacing the preset's app names (`appDisplayName`)" },
    Setting { name: "SIGNINS_FILTER", default: "", meaning: "extra raw OData `$filter` clause, AND-ed on the server" },
    Setting { name: "SIGNINS_EVENT_TYPES", default: "interactiveUser", meaning: "comma list of `interactiveUser`, `nonInteractiveUser`, `servicePrincipal`, `managedIdentity` (all but the first need `beta`)" },
    Setting { name: "SIGNINS_LOOKBACK", default: "7d", meaning: "window of the first run (no watermark yet), at most 30d" },
    Setting { name: "SIGNINS_OVERLAP", default: "1h", meaning: "how far before the watermark each run re-reads, to catch late-published sign-ins" },
    Setting { name: "SIGNINS_SLICE", default: "6h", meaning: "longest window committed at once; a run that hits its deadline keeps finished slices" },
    Setting { name: "SIGNINS_COLUMNS", default: "", meaning: "comma list choosing and ordering columns (default: all default columns)" },
    Setting { name: "SIGNINS_CSV_SAFE", default: "true", meaning: "prefix cells starting with = + - @ tab CR with `'` (formula-injection guard)" },
    Setting { name: "SIGNINS_REPORT_DAYS", default: "30", meaning: "days kept in `latest.csv`" },
    Setting { name: "SIGNINS_RETRY_BUDGET", default: "5m", meaning: "total time a run may spend waiting on Graph throttling and retries" },
    Setting { name: "SIGNINS_RUN_DEADLINE", default: "25m", meaning: "a timer run stops starting new slices after this long" },
    Setting { name: "SIGNINS_REFRESH_DEADLINE", default: "200s", meaning: "an HTTP refresh answers 202 with progress after this long" },
    Setting { name: "SIGNINS_SCHEDULE", default: "0 */30 * * * *", meaning: "NCRONTAB schedule of the timer function (read by the Functions host)" },
];

/// One documented setting.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    pub name: &'static str,
    pub default: &'static str,
    pub meaning: &'static str,
}

/// How to get tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMode {
    /// App Service / Functions managed identity (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`), or IMDS.
    /// `client_id` selects a user-assigned identity.
    ManagedIdentity { client_id: Option<String> },
    ClientSecret { tenant_id: String, client_id: String, secret: Secret },
    /// PEM file holding the certificate and its private key.
    Certificate { tenant_id: String, client_id: String, path: PathBuf },
}

/// A secret string that never shows in `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Graph API version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphVersion {
    V1,
    Beta,
}

impl GraphVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            GraphVersion::V1 => "v1.0",
            GraphVersion::Beta => "beta",
        }
    }
}

/// Sign-in event types (`signInEventTypes`); all but `InteractiveUser` need `beta`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    InteractiveUser,
    NonInteractiveUser,
    ServicePrincipal,
    ManagedIdentity,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::InteractiveUser => "interactiveUser",
            EventType::NonInteractiveUser => "nonInteractiveUser",
            EventType::ServicePrincipal => "servicePrincipal",
            EventType::ManagedIdentity => "managedIdentity",
        }
    }
}

/// Everything the Graph source needs.
#[derive(Debug, Clone)]
pub struct GraphSettings {
    /// scheme://host[:port] (no path); the token is sent nowhere else.
    pub endpoint: Url,
    pub version: GraphVersion,
    pub auth: AuthMode,
    pub event_types: Vec<EventType>,
    /// Extra raw OData clause AND-ed on the server.
    pub extra_filter: Option<String>,
    /// Total time the run may spend waiting on throttling/retries.
    pub retry_budget: Duration,
}

/// Where the files go.
#[derive(Debug, Clone)]
pub enum Destination {
    Local(PathBuf),
    /// `https://account.blob.core.windows.net/container[/prefix]`; `sas` is the query string, if any.
    Blob { container_url: Url, prefix: String, sas: Option<Secret> },
}

/// The validated settings of one run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub graph: GraphSettings,
    pub destination: Destination,
    pub preset: Preset,
    /// Replaces the preset's `clientAppUsed` set.
    pub client_apps: Option<Vec<String>>,
    /// Replaces the preset's `appDisplayName` set.
    pub apps: Option<Vec<String>>,
    pub lookback: Duration,
    pub overlap: Duration,
    pub slice: Duration,
    pub columns: crate::transform::flatten::Columns,
    pub csv_safe: bool,
    pub report_days: u32,
    pub run_deadline: Duration,
    pub refresh_deadline: Duration,
}
