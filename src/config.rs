//! Settings: read once from the environment (Function App settings) and CLI flags, validated into
//! one typed [`Settings`] value that the rest of the crate trusts.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use crate::transform::flatten::Columns;

pub use crate::transform::filter::Preset;

/// Every `SIGNINS_*` setting the code reads, with its default ("" = unset) and meaning.
/// The single list behind the README table, the IaC app settings and the drift test.
pub const SETTINGS: &[Setting] = &[
    Setting { name: "SIGNINS_SOURCE", default: "graph", meaning: "where sign-ins are read: `graph` (Microsoft Graph's sign-in report API) or `diagnostic-settings` (the JSON Lines an Entra diagnostic setting archives to Storage: no request limit, filters applied client-side; docs/deploy.md)" },
    Setting { name: "SIGNINS_DIAGNOSTIC_STORAGE", default: "", meaning: "with `diagnostic-settings`: the storage account the diagnostic setting writes to, `https://<account>.blob.core.windows.net` (token auth: Storage Blob Data Reader), or one of its `insights-logs-*` containers; a SAS query string (r, l) instead of a token" },
    Setting { name: "SIGNINS_GRAPH_ENDPOINT", default: "https://graph.microsoft.com", meaning: "Graph base URL (national clouds, tests)" },
    Setting { name: "SIGNINS_GRAPH_VERSION", default: "beta", meaning: "`beta` or `v1.0`; only beta returns non-interactive sign-ins (where most mobile mail appears) and the beta-only columns" },
    Setting { name: "SIGNINS_AUTH", default: "auto", meaning: "`auto`, `managed-identity`, `client-secret`, `certificate`" },
    Setting { name: "SIGNINS_DESTINATION", default: "./signins-out", meaning: "local folder, or `https://<account>.blob.core.windows.net/<container>[/<prefix>]` (token auth), or that URL with a SAS query string" },
    Setting { name: "SIGNINS_PRESET", default: "exchange-activesync", meaning: "`exchange-activesync`, `exchange`, `legacy-auth`, `all`" },
    Setting { name: "SIGNINS_CLIENT_APPS", default: "", meaning: "comma list replacing the preset's client apps (`clientAppUsed`)" },
    Setting { name: "SIGNINS_APPS", default: "", meaning: "comma list replacing the preset's app names (`appDisplayName`)" },
    Setting { name: "SIGNINS_FILTER", default: "", meaning: "extra raw OData `$filter` clause, AND-ed on the server" },
    Setting { name: "SIGNINS_EVENT_TYPES", default: "interactiveUser,nonInteractiveUser", meaning: "comma list of `interactiveUser`, `nonInteractiveUser`, `servicePrincipal`, `managedIdentity` (all but the first need `beta`; unset with `v1.0`: `interactiveUser`), read in one query (one per type where Graph refuses the combined filter); with `diagnostic-settings`, the categories read (`insights-logs-signinlogs`, `…-noninteractiveusersigninlogs`, `…-serviceprincipalsigninlogs`, `…-managedidentitysigninlogs`)" },
    Setting { name: "SIGNINS_LOOKBACK", default: "7d", meaning: "window of the first run (no watermark yet), at most 30d" },
    Setting { name: "SIGNINS_OVERLAP", default: "1h", meaning: "how far before the watermark each run re-reads, to catch late-published sign-ins" },
    Setting { name: "SIGNINS_SETTLE", default: "15m", meaning: "sign-ins younger than this wait for a later run, so the row holds what Graph adds after publishing (risk, MFA details, Conditional Access); 0s to 24h" },
    Setting { name: "SIGNINS_SLICE", default: "1d", meaning: "longest window read as one slice (slices never cross a UTC midnight; a slice the deadline stops commits the part it read, so no length has to fit a deadline)" },
    Setting { name: "SIGNINS_COLUMNS", default: "", meaning: "comma list choosing and ordering columns (default: all default columns)" },
    Setting { name: "SIGNINS_CSV_SAFE", default: "true", meaning: "prefix cells starting with = + - @ tab CR with `'` (formula-injection guard)" },
    Setting { name: "SIGNINS_REPORT_DAYS", default: "30", meaning: "days kept in `latest.csv`" },
    Setting { name: "SIGNINS_GRAPH_RATE", default: "5/10s", meaning: "at most this many Graph requests per period, e.g. `5/10s` (Graph's documented limit for sign-in reports, per app and tenant; lower it when other tools share the app registration); learns from 429s" },
    Setting { name: "SIGNINS_RETRY_BUDGET", default: "5m", meaning: "total time a run may spend on failed Graph requests and the waits between retries (at most SIGNINS_RUN_DEADLINE)" },
    Setting { name: "SIGNINS_RUN_DEADLINE", default: "25m", meaning: "a timer run stops reading after this long and commits what it read (1s to 28m)" },
    Setting { name: "SIGNINS_REFRESH_DEADLINE", default: "200s", meaning: "an HTTP refresh stops reading after this long, commits what it read and answers 202 with progress (1s to 220s)" },
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
    ClientSecret {
        tenant_id: String,
        client_id: String,
        secret: Secret,
    },
    /// PEM file holding the certificate and its private key.
    Certificate {
        tenant_id: String,
        client_id: String,
        path: PathBuf,
    },
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

pub use crate::graph::model::{EventType, GraphVersion, PropertySet};

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
    /// Client-side pacing of every Graph request.
    pub rate: GraphRate,
    /// The sign-in properties the export reads (the columns' and the filter's): each record of a
    /// page is parsed for these and the rest of it skipped.
    pub properties: PropertySet,
}

/// `SIGNINS_GRAPH_RATE`: at most `requests` Graph requests in any `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraphRate {
    pub requests: u32,
    pub per: Duration,
}

impl GraphRate {
    /// `N/<duration>`, e.g. `5/10s`: 1 to 10,000 requests per 1 s to 1 h.
    pub fn parse(value: &str) -> Result<GraphRate, String> {
        let expected = format!(
            "expected REQUESTS/PERIOD, e.g. 5/10s (Graph's limit for sign-in reports), got '{value}'"
        );
        let (requests, per) = value.split_once('/').ok_or_else(|| expected.clone())?;
        let requests = requests
            .trim()
            .parse::<u32>()
            .map_err(|_| expected.clone())?;
        let per = parse_duration(per).map_err(|e| format!("{expected}: {e}"))?;
        if !(1..=10_000).contains(&requests) {
            return Err(format!(
                "{requests} requests per period: 1 to 10000 are accepted"
            ));
        }
        if per < Duration::from_secs(1) || per > Duration::from_secs(3600) {
            return Err(format!(
                "a period of {}: 1s to 1h is accepted",
                format_duration(per)
            ));
        }
        Ok(GraphRate { requests, per })
    }
}

impl std::fmt::Display for GraphRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.requests, format_duration(self.per))
    }
}

/// Where the files go.
#[derive(Debug, Clone)]
pub enum Destination {
    Local(PathBuf),
    /// `https://account.blob.core.windows.net/container[/prefix]`; `sas` is the query string, if any.
    Blob {
        container_url: Url,
        prefix: String,
        sas: Option<Secret>,
    },
}

/// Where sign-ins are read from (`SIGNINS_SOURCE`).
#[derive(Debug, Clone)]
pub enum Source {
    /// Microsoft Graph's `/auditLogs/signIns` ([`Settings::graph`]).
    Graph,
    /// The JSON Lines an Entra diagnostic setting archives to Azure Storage
    /// ([`crate::diagnostic`]); the event types of [`GraphSettings::event_types`] pick the
    /// categories (containers) read.
    DiagnosticSettings(DiagnosticStorage),
}

impl Source {
    /// The `SIGNINS_SOURCE` spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Source::Graph => "graph",
            Source::DiagnosticSettings(_) => "diagnostic-settings",
        }
    }
}

/// `SIGNINS_DIAGNOSTIC_STORAGE`: the storage account an Entra diagnostic setting archives
/// sign-in logs to, one `insights-logs-*` container per category.
#[derive(Debug, Clone)]
pub struct DiagnosticStorage {
    /// The Blob service: `https://<account>.blob.core.windows.net`, or an emulator's
    /// path-style `http://127.0.0.1:PORT/<account>`; no query string.
    pub account_url: Url,
    /// Set when the URL named one container: only that category is read.
    pub container: Option<EventType>,
    /// The SAS query string, if any; otherwise tokens for Azure Storage.
    pub sas: Option<Secret>,
}

impl std::fmt::Display for DiagnosticStorage {
    /// Never shows the SAS.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let base = self.account_url.as_str().trim_end_matches('/');
        let auth = if self.sas.is_some() { "SAS" } else { "token" };
        match self.container {
            Some(t) => write!(f, "{base}/{} ({auth})", t.diagnostic_container()),
            None => write!(f, "{base} ({auth})"),
        }
    }
}

/// The validated settings of one run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where sign-ins are read from.
    pub source: Source,
    pub graph: GraphSettings,
    pub destination: Destination,
    pub preset: Preset,
    /// Replaces the preset's `clientAppUsed` set.
    pub client_apps: Option<Vec<String>>,
    /// Replaces the preset's `appDisplayName` set.
    pub apps: Option<Vec<String>>,
    pub lookback: Duration,
    pub overlap: Duration,
    /// Sign-ins younger than this are exported by a later run (Graph still updates them).
    pub settle: Duration,
    pub slice: Duration,
    pub columns: crate::transform::flatten::Columns,
    pub csv_safe: bool,
    pub report_days: u32,
    pub run_deadline: Duration,
    pub refresh_deadline: Duration,
}

/// Graph keeps sign-in logs for 30 days; nothing older can be read.
pub const GRAPH_RETENTION: Duration = Duration::from_secs(30 * 86_400);

/// A setting that is missing or malformed. Displays as "SETTING: what is wrong; what is accepted".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct ConfigError {
    pub setting: &'static str,
    pub message: String,
}

fn invalid(setting: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        setting,
        message: message.into(),
    }
}

/// Values given on the command line; they win over the environment.
#[derive(Debug, Clone, Default)]
pub struct Overrides(HashMap<&'static str, String>);

impl Overrides {
    /// Sets `name` (one of [`SETTINGS`] or an `AZURE_*` name) if `value` is `Some`.
    pub fn set(&mut self, name: &'static str, value: Option<String>) -> &mut Self {
        if let Some(value) = value {
            self.0.insert(name, value);
        }
        self
    }
}

impl Settings {
    /// Reads the process environment (Function App settings), then validates.
    pub fn from_env() -> Result<Settings, ConfigError> {
        Settings::from_env_with(&Overrides::default())
    }

    /// Reads the process environment under the command line's `overrides`, then validates.
    pub fn from_env_with(overrides: &Overrides) -> Result<Settings, ConfigError> {
        Settings::load(overrides, |name| std::env::var(name).ok())
    }

    /// Reads `overrides` first, then `env`, and validates everything into one typed value.
    /// Empty values count as unset (App Service shows unset settings as empty strings).
    pub fn load(
        overrides: &Overrides,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings, ConfigError> {
        let get = |name: &'static str| -> Option<String> {
            overrides
                .0
                .get(name)
                .cloned()
                .or_else(|| env(name))
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let or_default = |name: &'static str| -> String {
            get(name).unwrap_or_else(|| default_of(name).to_string())
        };

        let version = match or_default("SIGNINS_GRAPH_VERSION").as_str() {
            "v1.0" => GraphVersion::V1,
            "beta" => GraphVersion::Beta,
            other => {
                return Err(invalid(
                    "SIGNINS_GRAPH_VERSION",
                    format!("unknown version '{other}'; accepted: v1.0, beta"),
                ))
            }
        };
        // Validated whatever the source, so a storage URL prepared before switching is checked.
        let diagnostic_storage = get("SIGNINS_DIAGNOSTIC_STORAGE")
            .map(|url| parse_diagnostic_storage(&url))
            .transpose()?;
        let source = match or_default("SIGNINS_SOURCE").as_str() {
            "graph" => Source::Graph,
            "diagnostic-settings" => {
                Source::DiagnosticSettings(diagnostic_storage.ok_or_else(|| {
                    invalid(
                    "SIGNINS_DIAGNOSTIC_STORAGE",
                    "required with SIGNINS_SOURCE=diagnostic-settings: the storage account the \
                     Entra diagnostic setting archives sign-in logs to, \
                     https://<account>.blob.core.windows.net (see docs/deploy.md)",
                )
                })?)
            }
            other => {
                return Err(invalid(
                    "SIGNINS_SOURCE",
                    format!("unknown source '{other}'; accepted: graph, diagnostic-settings"),
                ))
            }
        };
        let event_types = match &source {
            // Unset with v1.0, the default narrows to what v1.0 can return instead of failing.
            Source::Graph => match (get("SIGNINS_EVENT_TYPES"), version) {
                (Some(list), _) => parse_event_types(&list, Some(version))?,
                (None, GraphVersion::Beta) => {
                    parse_event_types(default_of("SIGNINS_EVENT_TYPES"), Some(version))?
                }
                (None, GraphVersion::V1) => vec![EventType::InteractiveUser],
            },
            // Every category is in the diagnostic export, whatever the Graph version.
            Source::DiagnosticSettings(storage) => {
                diagnostic_event_types(get("SIGNINS_EVENT_TYPES"), storage)?
            }
        };
        if matches!(source, Source::DiagnosticSettings(_)) && get("SIGNINS_FILTER").is_some() {
            return Err(invalid(
                "SIGNINS_FILTER",
                "is an OData clause only Graph can evaluate; SIGNINS_SOURCE=diagnostic-settings \
                 filters on the client: remove SIGNINS_FILTER and choose rows with SIGNINS_PRESET, \
                 SIGNINS_CLIENT_APPS or SIGNINS_APPS",
            ));
        }
        let endpoint = parse_endpoint(&or_default("SIGNINS_GRAPH_ENDPOINT"))?;
        let auth = parse_auth(&or_default("SIGNINS_AUTH"), &get)?;
        let preset = Preset::parse(&or_default("SIGNINS_PRESET"))
            .map_err(|message| invalid("SIGNINS_PRESET", message))?;
        let destination = parse_destination(&or_default("SIGNINS_DESTINATION"))?;
        let lookback = parse_duration_setting("SIGNINS_LOOKBACK", &or_default("SIGNINS_LOOKBACK"))?;
        if lookback > GRAPH_RETENTION || lookback.is_zero() {
            return Err(invalid(
                "SIGNINS_LOOKBACK",
                "must be more than 0 and at most 30d (Graph keeps sign-ins for 30 days)",
            ));
        }
        let overlap = parse_duration_setting("SIGNINS_OVERLAP", &or_default("SIGNINS_OVERLAP"))?;
        if overlap > Duration::from_secs(86_400) {
            return Err(invalid("SIGNINS_OVERLAP", "must be at most 24h"));
        }
        let settle = parse_bounded(
            "SIGNINS_SETTLE",
            &or_default("SIGNINS_SETTLE"),
            Duration::ZERO,
            Duration::from_secs(86_400),
            "a longer delay would leave the report more than a day behind",
        )?;
        let slice = parse_duration_setting("SIGNINS_SLICE", &or_default("SIGNINS_SLICE"))?;
        if slice < Duration::from_secs(60) || slice > Duration::from_secs(86_400) {
            return Err(invalid("SIGNINS_SLICE", "must be between 1m and 24h"));
        }
        let columns = match get("SIGNINS_COLUMNS") {
            None => Columns::default_set(),
            Some(list) => {
                Columns::parse(&list).map_err(|message| invalid("SIGNINS_COLUMNS", message))?
            }
        };
        // The diagnostic export carries Graph beta's properties whatever SIGNINS_GRAPH_VERSION says.
        if version == GraphVersion::V1 && matches!(source, Source::Graph) {
            let beta_only = columns.beta_only();
            if !beta_only.is_empty() {
                return Err(invalid(
                    "SIGNINS_COLUMNS",
                    format!(
                        "column{} '{}' exist{} only in Graph beta and would stay empty with \
                         SIGNINS_GRAPH_VERSION=v1.0; set SIGNINS_GRAPH_VERSION=beta or remove {} from SIGNINS_COLUMNS",
                        if beta_only.len() > 1 { "s" } else { "" },
                        beta_only.join("', '"),
                        if beta_only.len() > 1 { "" } else { "s" },
                        if beta_only.len() > 1 { "them" } else { "it" },
                    ),
                ));
            }
        }
        let csv_safe = parse_bool("SIGNINS_CSV_SAFE", &or_default("SIGNINS_CSV_SAFE"))?;
        let report_days = or_default("SIGNINS_REPORT_DAYS")
            .parse::<u32>()
            .ok()
            .filter(|days| (1..=366).contains(days))
            .ok_or_else(|| {
                invalid(
                    "SIGNINS_REPORT_DAYS",
                    "must be a whole number of days from 1 to 366",
                )
            })?;
        let run_deadline = parse_bounded(
            "SIGNINS_RUN_DEADLINE",
            &or_default("SIGNINS_RUN_DEADLINE"),
            Duration::from_secs(1),
            MAX_RUN_DEADLINE,
            "the host stops a timer invocation at functionTimeout (30 minutes in host.json); \
             the deadline leaves room for the last commit",
        )?;
        let refresh_deadline = parse_bounded(
            "SIGNINS_REFRESH_DEADLINE",
            &or_default("SIGNINS_REFRESH_DEADLINE"),
            Duration::from_secs(1),
            MAX_REFRESH_DEADLINE,
            "the Functions front end closes an HTTP request after 230 seconds",
        )?;
        let retry_budget = parse_bounded(
            "SIGNINS_RETRY_BUDGET",
            &or_default("SIGNINS_RETRY_BUDGET"),
            Duration::ZERO,
            run_deadline,
            "a run cannot wait on retries longer than SIGNINS_RUN_DEADLINE",
        )?;

        let rate = GraphRate::parse(&or_default("SIGNINS_GRAPH_RATE"))
            .map_err(|message| invalid("SIGNINS_GRAPH_RATE", message))?;

        Ok(Settings {
            source,
            graph: GraphSettings {
                endpoint,
                version,
                auth,
                event_types,
                extra_filter: get("SIGNINS_FILTER"),
                retry_budget,
                rate,
                properties: columns
                    .properties()
                    .union(crate::transform::filter::SignInFilter::properties()),
            },
            destination,
            preset,
            client_apps: get("SIGNINS_CLIENT_APPS").map(|list| split_list(&list)),
            apps: get("SIGNINS_APPS").map(|list| split_list(&list)),
            lookback,
            overlap,
            settle,
            slice,
            columns,
            csv_safe,
            report_days,
            run_deadline,
            refresh_deadline,
        })
    }

    /// The resolved settings as `(name, value)` pairs for `check`; secrets are redacted.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        let auth = match &self.graph.auth {
            AuthMode::ManagedIdentity { client_id: None } => {
                "managed-identity (system-assigned)".to_string()
            }
            AuthMode::ManagedIdentity {
                client_id: Some(id),
            } => {
                format!("managed-identity (user-assigned, client id {id})")
            }
            AuthMode::ClientSecret {
                tenant_id,
                client_id,
                ..
            } => {
                format!("client-secret (tenant {tenant_id}, client {client_id}, secret ***)")
            }
            AuthMode::Certificate {
                tenant_id,
                client_id,
                path,
            } => format!(
                "certificate (tenant {tenant_id}, client {client_id}, {})",
                path.display()
            ),
        };
        let fmt_list = |list: &Option<Vec<String>>| match list {
            Some(list) => list.join(","),
            None => "(preset)".to_string(),
        };
        let diagnostic_storage = match &self.source {
            Source::Graph => String::new(),
            Source::DiagnosticSettings(storage) => storage.to_string(),
        };
        vec![
            ("SIGNINS_SOURCE", self.source.as_str().to_string()),
            ("SIGNINS_DIAGNOSTIC_STORAGE", diagnostic_storage),
            ("SIGNINS_GRAPH_ENDPOINT", self.graph.endpoint.to_string()),
            (
                "SIGNINS_GRAPH_VERSION",
                self.graph.version.as_str().to_string(),
            ),
            ("SIGNINS_AUTH", auth),
            ("SIGNINS_DESTINATION", self.destination.to_string()),
            ("SIGNINS_PRESET", self.preset.as_str().to_string()),
            ("SIGNINS_CLIENT_APPS", fmt_list(&self.client_apps)),
            ("SIGNINS_APPS", fmt_list(&self.apps)),
            (
                "SIGNINS_FILTER",
                self.graph.extra_filter.clone().unwrap_or_default(),
            ),
            (
                "SIGNINS_EVENT_TYPES",
                self.graph
                    .event_types
                    .iter()
                    .map(|t| t.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            ("SIGNINS_LOOKBACK", format_duration(self.lookback)),
            ("SIGNINS_OVERLAP", format_duration(self.overlap)),
            ("SIGNINS_SETTLE", format_duration(self.settle)),
            ("SIGNINS_SLICE", format_duration(self.slice)),
            ("SIGNINS_COLUMNS", self.columns.names().join(",")),
            ("SIGNINS_CSV_SAFE", self.csv_safe.to_string()),
            ("SIGNINS_REPORT_DAYS", self.report_days.to_string()),
            ("SIGNINS_GRAPH_RATE", self.graph.rate.to_string()),
            (
                "SIGNINS_RETRY_BUDGET",
                format_duration(self.graph.retry_budget),
            ),
            ("SIGNINS_RUN_DEADLINE", format_duration(self.run_deadline)),
            (
                "SIGNINS_REFRESH_DEADLINE",
                format_duration(self.refresh_deadline),
            ),
        ]
    }
}

fn default_of(name: &str) -> &'static str {
    SETTINGS
        .iter()
        .find(|s| s.name == name)
        .map(|s| s.default)
        .unwrap_or("")
}

fn split_list(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_string)
        .collect()
}

fn parse_bool(setting: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(invalid(
            setting,
            format!("'{value}' is not a boolean; accepted: true, false"),
        )),
    }
}

/// Parses `SIGNINS_EVENT_TYPES`; `version` is the Graph version that must return them (`None`:
/// the diagnostic export, which has every type).
fn parse_event_types(
    list: &str,
    version: Option<GraphVersion>,
) -> Result<Vec<EventType>, ConfigError> {
    let mut types = Vec::new();
    for name in split_list(list) {
        let event_type = match name.as_str() {
            "interactiveUser" => EventType::InteractiveUser,
            "nonInteractiveUser" => EventType::NonInteractiveUser,
            "servicePrincipal" => EventType::ServicePrincipal,
            "managedIdentity" => EventType::ManagedIdentity,
            other => {
                return Err(invalid(
                    "SIGNINS_EVENT_TYPES",
                    format!(
                        "unknown event type '{other}'; accepted: interactiveUser, nonInteractiveUser, servicePrincipal, managedIdentity"
                    ),
                ))
            }
        };
        if event_type != EventType::InteractiveUser && version == Some(GraphVersion::V1) {
            return Err(invalid(
                "SIGNINS_EVENT_TYPES",
                format!("'{name}' sign-ins are only in Graph beta; set SIGNINS_GRAPH_VERSION=beta"),
            ));
        }
        if !types.contains(&event_type) {
            types.push(event_type);
        }
    }
    if types.is_empty() {
        return Err(invalid(
            "SIGNINS_EVENT_TYPES",
            "must name at least one event type",
        ));
    }
    Ok(types)
}

/// The event types the diagnostic source reads: `SIGNINS_EVENT_TYPES` (default
/// `interactiveUser,nonInteractiveUser`), or the one category of a container URL.
fn diagnostic_event_types(
    list: Option<String>,
    storage: &DiagnosticStorage,
) -> Result<Vec<EventType>, ConfigError> {
    let Some(only) = storage.container else {
        let list = list.unwrap_or_else(|| default_of("SIGNINS_EVENT_TYPES").to_string());
        return parse_event_types(&list, None);
    };
    match list {
        None => Ok(vec![only]),
        Some(list) => {
            let types = parse_event_types(&list, None)?;
            if types == [only] {
                Ok(types)
            } else {
                Err(invalid(
                    "SIGNINS_EVENT_TYPES",
                    format!(
                        "SIGNINS_DIAGNOSTIC_STORAGE names the container {}, which holds only {} \
                         sign-ins; give the storage account URL (without a container) to read \
                         several categories, or leave SIGNINS_EVENT_TYPES unset",
                        only.diagnostic_container(),
                        only.as_str()
                    ),
                ))
            }
        }
    }
}

/// `SIGNINS_DIAGNOSTIC_STORAGE`: an account URL, or an account URL and one of the four sign-in
/// containers, each optionally with a SAS.
fn parse_diagnostic_storage(value: &str) -> Result<DiagnosticStorage, ConfigError> {
    const SETTING: &str = "SIGNINS_DIAGNOSTIC_STORAGE";
    let expected = "expected https://<account>.blob.core.windows.net, optionally followed by \
                    /<container> (one of the insights-logs-* sign-in containers)";
    // Never echo `value` in these errors: it may carry a SAS.
    let mut url = Url::parse(value)
        .map_err(|e| invalid(SETTING, format!("not a valid URL ({e}); {expected}")))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(invalid(
                SETTING,
                "storage URLs must use https (http only for a loopback emulator such as Azurite)",
            ))
        }
        _ => return Err(invalid(SETTING, format!("not an http(s) URL; {expected}"))),
    }
    if url.host_str().is_none() {
        return Err(invalid(SETTING, format!("the URL has no host; {expected}")));
    }
    let (sas, segments) = split_storage_url(SETTING, &mut url)?;
    // Emulators (loopback) use path-style URLs: /<account>/<container>.
    let leading = usize::from(is_loopback(&url));
    if segments.len() < leading {
        return Err(invalid(
            SETTING,
            "an emulator URL names its account first: http://127.0.0.1:<port>/<account>",
        ));
    }
    let container = match &segments[leading..] {
        [] => None,
        [name] => Some(EventType::from_diagnostic_container(name).ok_or_else(|| {
            let known: Vec<&str> = EventType::ALL
                .iter()
                .map(|t| t.diagnostic_container())
                .collect();
            invalid(
                SETTING,
                format!(
                    "'{name}' is not a sign-in container of a diagnostic setting; give the \
                     account URL, or one of {}",
                    known.join(", ")
                ),
            )
        })?),
        [_, ..] => {
            return Err(invalid(
                SETTING,
                format!(
                    "Azure Monitor names the blobs below the container (one per hour); {expected}"
                ),
            ))
        }
    };
    let mut account_url = url;
    account_url.set_path(&segments[..leading].join("/"));
    Ok(DiagnosticStorage {
        account_url,
        container,
        sas,
    })
}

/// Takes the SAS (checked to be one) and the fragment off a storage URL; returns the SAS and
/// the URL's non-empty path segments.
fn split_storage_url(
    setting: &'static str,
    url: &mut Url,
) -> Result<(Option<Secret>, Vec<String>), ConfigError> {
    let sas = url.query().filter(|q| !q.is_empty()).map(str::to_string);
    if let Some(sas) = &sas {
        if !sas.split('&').any(|pair| pair.starts_with("sig=")) {
            return Err(invalid(setting, "the URL has a query string that is not a SAS (no `sig=`); remove it or paste the full SAS"));
        }
    }
    url.set_query(None);
    url.set_fragment(None);
    let segments = url
        .path_segments()
        .map(|s| s.filter(|p| !p.is_empty()).map(str::to_string).collect())
        .unwrap_or_default();
    Ok((sas.map(Secret::new), segments))
}

fn parse_endpoint(value: &str) -> Result<Url, ConfigError> {
    const SETTING: &str = "SIGNINS_GRAPH_ENDPOINT";
    let url = Url::parse(value).map_err(|e| {
        invalid(
            SETTING,
            format!("'{value}' is not a URL ({e}); e.g. https://graph.microsoft.com"),
        )
    })?;
    if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
        return Err(invalid(
            SETTING,
            "must be an http(s) URL with a host, e.g. https://graph.microsoft.com",
        ));
    }
    if url.scheme() == "http" && !is_loopback(&url) {
        return Err(invalid(
            SETTING,
            "must use https (http is accepted only for a loopback test endpoint)",
        ));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(SETTING, "must be scheme://host[:port] only, without a path or query; the version is SIGNINS_GRAPH_VERSION"));
    }
    Ok(url)
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => domain == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn parse_auth(
    mode: &str,
    get: &impl Fn(&'static str) -> Option<String>,
) -> Result<AuthMode, ConfigError> {
    let tenant = || {
        get("AZURE_TENANT_ID").ok_or_else(|| {
            invalid(
                "AZURE_TENANT_ID",
                "required with a client secret or certificate (the directory id of the tenant)",
            )
        })
    };
    let client = || {
        get("AZURE_CLIENT_ID").ok_or_else(|| {
            invalid("AZURE_CLIENT_ID", "required with a client secret or certificate (the app registration's application id)")
        })
    };
    let secret_mode = || -> Result<AuthMode, ConfigError> {
        let secret = get("AZURE_CLIENT_SECRET").ok_or_else(|| {
            invalid(
                "AZURE_CLIENT_SECRET",
                "required with SIGNINS_AUTH=client-secret",
            )
        })?;
        Ok(AuthMode::ClientSecret {
            tenant_id: tenant()?,
            client_id: client()?,
            secret: Secret::new(secret),
        })
    };
    let certificate_mode = || -> Result<AuthMode, ConfigError> {
        let path = get("AZURE_CLIENT_CERTIFICATE_PATH").ok_or_else(|| {
            invalid("AZURE_CLIENT_CERTIFICATE_PATH", "required with SIGNINS_AUTH=certificate (a PEM file with the certificate and its private key)")
        })?;
        Ok(AuthMode::Certificate {
            tenant_id: tenant()?,
            client_id: client()?,
            path: PathBuf::from(path),
        })
    };
    let managed = || AuthMode::ManagedIdentity {
        client_id: get("AZURE_CLIENT_ID"),
    };
    if let Some(host) = get("AZURE_AUTHORITY_HOST") {
        let ok = Url::parse(&host)
            .map(|u| u.scheme() == "https")
            .unwrap_or(false);
        if !ok {
            return Err(invalid(
                "AZURE_AUTHORITY_HOST",
                "must be an https URL, e.g. https://login.microsoftonline.com",
            ));
        }
    }
    match mode {
        "auto" if get("AZURE_CLIENT_SECRET").is_some() => secret_mode(),
        "auto" if get("AZURE_CLIENT_CERTIFICATE_PATH").is_some() => certificate_mode(),
        "auto" | "managed-identity" => Ok(managed()),
        "client-secret" => secret_mode(),
        "certificate" => certificate_mode(),
        other => Err(invalid(
            "SIGNINS_AUTH",
            format!("unknown mode '{other}'; accepted: auto, managed-identity, client-secret, certificate"),
        )),
    }
}

fn parse_destination(value: &str) -> Result<Destination, ConfigError> {
    const SETTING: &str = "SIGNINS_DESTINATION";
    if !(value.starts_with("https://") || value.starts_with("http://")) {
        return Ok(Destination::Local(PathBuf::from(value)));
    }
    // Never echo `value` in these errors: it may carry a SAS.
    let mut url = Url::parse(value).map_err(|e| {
        invalid(SETTING, format!("not a valid URL ({e}); expected https://<account>.blob.core.windows.net/<container>[/<prefix>]"))
    })?;
    if url.scheme() == "http" && !is_loopback(&url) {
        return Err(invalid(
            SETTING,
            "Blob Storage URLs must use https (http only for a loopback emulator such as Azurite)",
        ));
    }
    let (sas, segments) = split_storage_url(SETTING, &mut url)?;
    // Emulators (loopback) use path-style URLs: /<account>/<container>/...
    let leading = if is_loopback(&url) { 2 } else { 1 };
    if segments.len() < leading {
        return Err(invalid(SETTING, "the URL names no container: https://<account>.blob.core.windows.net/<container>[/<prefix>]"));
    }
    let container = &segments[leading - 1];
    let valid_container = (3..=63).contains(&container.len())
        && container
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !container.starts_with('-')
        && !container.ends_with('-')
        && !container.contains("--");
    if !valid_container {
        return Err(invalid(SETTING, format!("'{container}' is not a valid container name (3-63 lowercase letters, digits and single hyphens)")));
    }
    let mut container_url = url.clone();
    container_url.set_path(&segments[..leading].join("/"));
    Ok(Destination::Blob {
        container_url,
        prefix: segments[leading..].join("/"),
        sas,
    })
}

impl std::fmt::Display for Destination {
    /// Never shows the SAS.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::Local(path) => write!(f, "{}", path.display()),
            Destination::Blob {
                container_url,
                prefix,
                sas,
            } => {
                let base = container_url.as_str().trim_end_matches('/');
                let auth = if sas.is_some() { "SAS" } else { "token" };
                if prefix.is_empty() {
                    write!(f, "{base} ({auth})")
                } else {
                    write!(f, "{base}/{prefix} ({auth})")
                }
            }
        }
    }
}

/// Parses `90s`, `30m`, `1h`, `7d`, `1h30m`.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let accepted = "expected a number with a unit s, m, h or d, e.g. 90s, 30m, 24h, 7d";
    let mut total: u64 = 0;
    let mut number = String::new();
    let mut saw_unit = false;
    for c in value.trim().chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            _ => return Err(format!("'{value}': {accepted}")),
        };
        let n: u64 = number
            .parse()
            .map_err(|_| format!("'{value}': {accepted}"))?;
        total = n
            .checked_mul(unit)
            .and_then(|secs| total.checked_add(secs))
            .ok_or_else(|| format!("'{value}' is too long"))?;
        number.clear();
        saw_unit = true;
    }
    if !number.is_empty() || !saw_unit {
        return Err(format!("'{value}': {accepted}"));
    }
    Ok(Duration::from_secs(total))
}

/// Longest SIGNINS_RUN_DEADLINE: two minutes inside host.json's functionTimeout of 30 minutes.
pub const MAX_RUN_DEADLINE: Duration = Duration::from_secs(28 * 60);
/// Longest SIGNINS_REFRESH_DEADLINE: ten seconds inside the 230 s after which the Functions front
/// end (Azure Load Balancer) answers an HTTP trigger with 502, whatever the function does
/// (learn.microsoft.com/azure/azure-functions/functions-scale#timeout).
pub const MAX_REFRESH_DEADLINE: Duration = Duration::from_secs(220);

/// A duration setting within `[min, max]`; the error says why the bound exists.
fn parse_bounded(
    setting: &'static str,
    value: &str,
    min: Duration,
    max: Duration,
    why: &str,
) -> Result<Duration, ConfigError> {
    let d = parse_duration_setting(setting, value)?;
    if d < min || d > max {
        return Err(invalid(
            setting,
            format!(
                "'{value}' must be from {} to {}: {why}",
                format_duration(min),
                format_duration(max)
            ),
        ));
    }
    Ok(d)
}

fn parse_duration_setting(setting: &'static str, value: &str) -> Result<Duration, ConfigError> {
    parse_duration(value).map_err(|message| invalid(setting, message))
}

/// The shortest `parse_duration` spelling of `d` (whole seconds).
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if secs >= size && secs.is_multiple_of(size) {
            return format!("{}{unit}", secs / size);
        }
    }
    format!("{secs}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::load(&Overrides::default(), |name| vars.get(name).cloned())
    }

    fn error_of(vars: &[(&str, &str)]) -> ConfigError {
        load(vars).expect_err("expected a configuration error")
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let s = load(&[]).unwrap();
        assert_eq!(s.graph.endpoint.as_str(), "https://graph.microsoft.com/");
        assert_eq!(s.graph.version, GraphVersion::Beta);
        assert_eq!(s.graph.auth, AuthMode::ManagedIdentity { client_id: None });
        assert_eq!(s.preset, Preset::ExchangeActiveSync);
        assert_eq!(s.lookback, Duration::from_secs(7 * 86_400));
        assert_eq!(s.overlap, Duration::from_secs(3_600));
        assert_eq!(s.report_days, 30);
        assert_eq!(
            s.graph.rate,
            GraphRate {
                requests: 5,
                per: Duration::from_secs(10)
            }
        );
        assert_eq!(s.graph.rate.to_string(), "5/10s");
        assert!(s.csv_safe);
        assert!(
            matches!(s.destination, Destination::Local(ref p) if p == &PathBuf::from("./signins-out"))
        );
        assert_eq!(
            s.graph.event_types,
            vec![EventType::InteractiveUser, EventType::NonInteractiveUser]
        );
        // v1.0 without event types: what v1.0 can return.
        let s = load(&[("SIGNINS_GRAPH_VERSION", "v1.0")]).unwrap();
        assert_eq!(s.graph.event_types, vec![EventType::InteractiveUser]);
        // Named explicitly, a beta-only type with v1.0 is still an error.
        let e = error_of(&[
            ("SIGNINS_GRAPH_VERSION", "v1.0"),
            ("SIGNINS_EVENT_TYPES", "interactiveUser,nonInteractiveUser"),
        ]);
        assert_eq!(e.setting, "SIGNINS_EVENT_TYPES");
    }

    #[test]
    fn beta_only_columns_with_v1_name_the_settings_and_the_fix() {
        let e = error_of(&[
            ("SIGNINS_GRAPH_VERSION", "v1.0"),
            ("SIGNINS_COLUMNS", "id,userType,incomingTokenType,userAgent"),
        ]);
        assert_eq!(e.setting, "SIGNINS_COLUMNS");
        assert_eq!(
            e.to_string(),
            "SIGNINS_COLUMNS: columns 'userType', 'incomingTokenType' exist only in Graph beta and would stay \
             empty with SIGNINS_GRAPH_VERSION=v1.0; set SIGNINS_GRAPH_VERSION=beta or remove them from SIGNINS_COLUMNS"
        );
        let e = error_of(&[
            ("SIGNINS_GRAPH_VERSION", "v1.0"),
            ("SIGNINS_COLUMNS", "managedIdentityType"),
        ]);
        assert!(
            e.message
                .starts_with("column 'managedIdentityType' exists only"),
            "{e}"
        );
        // The v1.0 columns and every column on beta are fine.
        assert!(load(&[
            ("SIGNINS_GRAPH_VERSION", "v1.0"),
            (
                "SIGNINS_COLUMNS",
                "id,userAgent,servicePrincipalName,homeTenantId"
            )
        ])
        .is_ok());
        let every = crate::transform::flatten::Columns::every()
            .names()
            .join(",");
        assert!(load(&[("SIGNINS_COLUMNS", every.as_str())]).is_ok());
    }

    #[test]
    fn every_setting_has_a_default_that_parses() {
        // The defaults in SETTINGS are what the IaC passes: each must be accepted as a value.
        let vars: Vec<(&str, &str)> = SETTINGS.iter().map(|s| (s.name, s.default)).collect();
        load(&vars).unwrap();
    }

    #[test]
    fn overrides_win_over_the_environment() {
        let mut overrides = Overrides::default();
        overrides
            .set("SIGNINS_PRESET", Some("all".into()))
            .set("SIGNINS_LOOKBACK", None);
        let s = Settings::load(&overrides, |name| match name {
            "SIGNINS_PRESET" => Some("legacy-auth".into()),
            "SIGNINS_LOOKBACK" => Some("24h".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(s.preset, Preset::All);
        assert_eq!(s.lookback, Duration::from_secs(86_400));
    }

    #[test]
    fn errors_name_the_setting() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("SIGNINS_PRESET", "imap")], "SIGNINS_PRESET"),
            (&[("SIGNINS_RUN_DEADLINE", "0s")], "SIGNINS_RUN_DEADLINE"),
            (&[("SIGNINS_RUN_DEADLINE", "45m")], "SIGNINS_RUN_DEADLINE"),
            (
                &[("SIGNINS_REFRESH_DEADLINE", "0s")],
                "SIGNINS_REFRESH_DEADLINE",
            ),
            (
                &[("SIGNINS_REFRESH_DEADLINE", "5m")],
                "SIGNINS_REFRESH_DEADLINE",
            ),
            (
                &[
                    ("SIGNINS_RUN_DEADLINE", "10m"),
                    ("SIGNINS_RETRY_BUDGET", "11m"),
                ],
                "SIGNINS_RETRY_BUDGET",
            ),
            (
                &[("SIGNINS_RETRY_BUDGET", "99999999999d")],
                "SIGNINS_RETRY_BUDGET",
            ),
            (&[("SIGNINS_GRAPH_RATE", "5")], "SIGNINS_GRAPH_RATE"),
            (&[("SIGNINS_GRAPH_RATE", "0/10s")], "SIGNINS_GRAPH_RATE"),
            (&[("SIGNINS_GRAPH_RATE", "5/0s")], "SIGNINS_GRAPH_RATE"),
            (&[("SIGNINS_GRAPH_RATE", "5/2h")], "SIGNINS_GRAPH_RATE"),
            (&[("SIGNINS_GRAPH_RATE", "five/10s")], "SIGNINS_GRAPH_RATE"),
            (&[("SIGNINS_LOOKBACK", "a week")], "SIGNINS_LOOKBACK"),
            (&[("SIGNINS_LOOKBACK", "31d")], "SIGNINS_LOOKBACK"),
            (&[("SIGNINS_GRAPH_VERSION", "v2")], "SIGNINS_GRAPH_VERSION"),
            (
                &[("SIGNINS_GRAPH_ENDPOINT", "graph.microsoft.com")],
                "SIGNINS_GRAPH_ENDPOINT",
            ),
            (
                &[("SIGNINS_GRAPH_ENDPOINT", "http://graph.example.com")],
                "SIGNINS_GRAPH_ENDPOINT",
            ),
            (
                &[("SIGNINS_GRAPH_ENDPOINT", "https://graph.microsoft.com/v1.0")],
                "SIGNINS_GRAPH_ENDPOINT",
            ),
            (
                &[
                    ("SIGNINS_GRAPH_VERSION", "v1.0"),
                    ("SIGNINS_EVENT_TYPES", "nonInteractiveUser"),
                ],
                "SIGNINS_EVENT_TYPES",
            ),
            (&[("SIGNINS_EVENT_TYPES", "robots")], "SIGNINS_EVENT_TYPES"),
            (&[("SIGNINS_AUTH", "password")], "SIGNINS_AUTH"),
            (
                &[
                    ("AZURE_CLIENT_SECRET", "s3cr3t"),
                    ("AZURE_CLIENT_ID", "app"),
                ],
                "AZURE_TENANT_ID",
            ),
            (
                &[
                    ("SIGNINS_AUTH", "certificate"),
                    ("AZURE_TENANT_ID", "t"),
                    ("AZURE_CLIENT_ID", "c"),
                ],
                "AZURE_CLIENT_CERTIFICATE_PATH",
            ),
            (
                &[("SIGNINS_DESTINATION", "https://acct.blob.core.windows.net")],
                "SIGNINS_DESTINATION",
            ),
            (
                &[(
                    "SIGNINS_DESTINATION",
                    "https://acct.blob.core.windows.net/Bad_Name",
                )],
                "SIGNINS_DESTINATION",
            ),
            (
                &[(
                    "SIGNINS_DESTINATION",
                    "http://acct.blob.core.windows.net/c1",
                )],
                "SIGNINS_DESTINATION",
            ),
            (&[("SIGNINS_CSV_SAFE", "maybe")], "SIGNINS_CSV_SAFE"),
            (&[("SIGNINS_REPORT_DAYS", "0")], "SIGNINS_REPORT_DAYS"),
            (&[("SIGNINS_SLICE", "10s")], "SIGNINS_SLICE"),
            (
                &[("AZURE_AUTHORITY_HOST", "http://login.example.com")],
                "AZURE_AUTHORITY_HOST",
            ),
        ];
        for (vars, setting) in cases {
            let err = error_of(vars);
            assert_eq!(err.setting, *setting, "{vars:?} → {err}");
            assert!(err.to_string().starts_with(setting), "{err}");
        }
    }

    #[test]
    fn secrets_never_show() {
        let s = load(&[
            ("AZURE_TENANT_ID", "tenant"),
            ("AZURE_CLIENT_ID", "client"),
            ("AZURE_CLIENT_SECRET", "hunter2-secret"),
            (
                "SIGNINS_DESTINATION",
                "https://acct.blob.core.windows.net/exports/pbi?sv=2024&sig=SASSIGNATURE",
            ),
        ])
        .unwrap();
        let shown = format!("{s:?} {:?} {}", s.describe(), s.destination);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("SASSIGNATURE"), "{shown}");
        let err = error_of(&[(
            "SIGNINS_DESTINATION",
            "https://acct.blob.core.windows.net/?sig=SASSIGNATURE",
        )]);
        assert!(!err.to_string().contains("SASSIGNATURE"));
    }

    #[test]
    fn auto_auth_picks_secret_then_certificate_then_managed_identity() {
        let secret = load(&[
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_CLIENT_SECRET", "s"),
        ])
        .unwrap();
        assert!(matches!(secret.graph.auth, AuthMode::ClientSecret { .. }));
        let cert = load(&[
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_CLIENT_CERTIFICATE_PATH", "/c.pem"),
        ])
        .unwrap();
        assert!(matches!(cert.graph.auth, AuthMode::Certificate { .. }));
        let user_assigned = load(&[("AZURE_CLIENT_ID", "uami")]).unwrap();
        assert_eq!(
            user_assigned.graph.auth,
            AuthMode::ManagedIdentity {
                client_id: Some("uami".into())
            }
        );
    }

    #[test]
    fn blob_destinations_split_into_container_and_prefix() {
        let s = load(&[(
            "SIGNINS_DESTINATION",
            "https://acct.blob.core.windows.net/exports/power-bi/signins?sv=1&sig=abc",
        )])
        .unwrap();
        let Destination::Blob {
            container_url,
            prefix,
            sas,
        } = s.destination
        else {
            panic!("not blob")
        };
        assert_eq!(
            container_url.as_str(),
            "https://acct.blob.core.windows.net/exports"
        );
        assert_eq!(prefix, "power-bi/signins");
        assert_eq!(
            sas.map(|s| s.expose().to_string()).as_deref(),
            Some("sv=1&sig=abc")
        );
        // Emulators are path-style: account first.
        let s = load(&[(
            "SIGNINS_DESTINATION",
            "http://127.0.0.1:10000/devstoreaccount1/exports",
        )])
        .unwrap();
        let Destination::Blob {
            container_url,
            prefix,
            sas,
        } = s.destination
        else {
            panic!("not blob")
        };
        assert_eq!(
            container_url.as_str(),
            "http://127.0.0.1:10000/devstoreaccount1/exports"
        );
        assert_eq!(prefix, "");
        assert!(sas.is_none());
    }

    #[test]
    fn graph_is_the_default_source_and_a_prepared_storage_url_is_still_checked() {
        let s = load(&[]).unwrap();
        assert!(matches!(s.source, Source::Graph));
        let s = load(&[(
            "SIGNINS_DIAGNOSTIC_STORAGE",
            "https://stdiag.blob.core.windows.net",
        )])
        .unwrap();
        assert!(matches!(s.source, Source::Graph));
        let e = error_of(&[(
            "SIGNINS_DIAGNOSTIC_STORAGE",
            "https://stdiag.blob.core.windows.net/logs",
        )]);
        assert_eq!(e.setting, "SIGNINS_DIAGNOSTIC_STORAGE");
    }

    fn diagnostic(vars: &[(&str, &str)]) -> (DiagnosticStorage, Vec<EventType>) {
        let mut all = vec![("SIGNINS_SOURCE", "diagnostic-settings")];
        all.extend_from_slice(vars);
        let s = load(&all).unwrap();
        match s.source {
            Source::DiagnosticSettings(storage) => (storage, s.graph.event_types),
            Source::Graph => panic!("not the diagnostic source"),
        }
    }

    #[test]
    fn diagnostic_source_takes_an_account_or_one_container() {
        let (storage, types) = diagnostic(&[(
            "SIGNINS_DIAGNOSTIC_STORAGE",
            "https://stdiag.blob.core.windows.net/",
        )]);
        assert_eq!(
            storage.account_url.as_str(),
            "https://stdiag.blob.core.windows.net/"
        );
        assert_eq!(storage.container, None);
        assert!(storage.sas.is_none());
        assert_eq!(
            types,
            vec![EventType::InteractiveUser, EventType::NonInteractiveUser]
        );

        // A container: its category only; SAS kept, never shown.
        let (storage, types) = diagnostic(&[(
            "SIGNINS_DIAGNOSTIC_STORAGE",
            "https://stdiag.blob.core.windows.net/insights-logs-noninteractiveusersigninlogs?sv=1&sp=rl&sig=SECRETSIG",
        )]);
        assert_eq!(storage.container, Some(EventType::NonInteractiveUser));
        assert_eq!(types, vec![EventType::NonInteractiveUser]);
        assert_eq!(
            storage.sas.as_ref().map(Secret::expose),
            Some("sv=1&sp=rl&sig=SECRETSIG")
        );
        assert_eq!(
            storage.to_string(),
            "https://stdiag.blob.core.windows.net/insights-logs-noninteractiveusersigninlogs (SAS)"
        );
        assert!(!format!("{storage:?}").contains("SECRETSIG"));

        // Emulators are path-style; every event type, whatever the Graph version.
        let (storage, types) = diagnostic(&[
            (
                "SIGNINS_DIAGNOSTIC_STORAGE",
                "http://127.0.0.1:10000/devstoreaccount1",
            ),
            ("SIGNINS_GRAPH_VERSION", "v1.0"),
            ("SIGNINS_EVENT_TYPES", "managedIdentity,servicePrincipal"),
            ("SIGNINS_COLUMNS", "id,userType,managedIdentityType"),
        ]);
        assert_eq!(
            storage.account_url.as_str(),
            "http://127.0.0.1:10000/devstoreaccount1"
        );
        assert_eq!(
            types,
            vec![EventType::ManagedIdentity, EventType::ServicePrincipal]
        );
        // Naming the container's own type is fine.
        diagnostic(&[
            (
                "SIGNINS_DIAGNOSTIC_STORAGE",
                "https://stdiag.blob.core.windows.net/insights-logs-signinlogs",
            ),
            ("SIGNINS_EVENT_TYPES", "interactiveUser"),
        ]);
    }

    #[test]
    fn diagnostic_source_errors_name_the_setting_and_the_fix() {
        let source = ("SIGNINS_SOURCE", "diagnostic-settings");
        let storage = (
            "SIGNINS_DIAGNOSTIC_STORAGE",
            "https://stdiag.blob.core.windows.net",
        );
        // (variables, the setting named, a phrase of the message)
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: &[Case] = &[
            (&[("SIGNINS_SOURCE", "eventhub")], "SIGNINS_SOURCE", "accepted: graph, diagnostic-settings"),
            (&[source], "SIGNINS_DIAGNOSTIC_STORAGE", "required with SIGNINS_SOURCE=diagnostic-settings"),
            (&[source, storage, ("SIGNINS_FILTER", "appId eq 'x'")], "SIGNINS_FILTER", "remove SIGNINS_FILTER"),
            (&[source, storage, ("SIGNINS_EVENT_TYPES", "robots")], "SIGNINS_EVENT_TYPES", "unknown event type"),
            (
                &[source, ("SIGNINS_DIAGNOSTIC_STORAGE", "https://stdiag.blob.core.windows.net/insights-logs-signinlogs"), ("SIGNINS_EVENT_TYPES", "interactiveUser,nonInteractiveUser")],
                "SIGNINS_EVENT_TYPES",
                "holds only interactiveUser sign-ins",
            ),
            (&[source, ("SIGNINS_DIAGNOSTIC_STORAGE", "http://stdiag.blob.core.windows.net")], "SIGNINS_DIAGNOSTIC_STORAGE", "must use https"),
            (&[source, ("SIGNINS_DIAGNOSTIC_STORAGE", "stdiag")], "SIGNINS_DIAGNOSTIC_STORAGE", "not a valid URL"),
            (&[source, ("SIGNINS_DIAGNOSTIC_STORAGE", "https://stdiag.blob.core.windows.net/insights-logs-auditlogs")], "SIGNINS_DIAGNOSTIC_STORAGE", "not a sign-in container"),
            (
                &[source, ("SIGNINS_DIAGNOSTIC_STORAGE", "https://stdiag.blob.core.windows.net/insights-logs-signinlogs/tenantId=x/y=2026")],
                "SIGNINS_DIAGNOSTIC_STORAGE",
                "names the blobs below the container",
            ),
            (&[source, ("SIGNINS_DIAGNOSTIC_STORAGE", "https://stdiag.blob.core.windows.net/?sv=1&sp=rl")], "SIGNINS_DIAGNOSTIC_STORAGE", "not a SAS"),
            (&[source, ("SIGNINS_DIAGNOSTIC_STORAGE", "http://127.0.0.1:10000")], "SIGNINS_DIAGNOSTIC_STORAGE", "names its account first"),
        ];
        for (vars, setting, needle) in cases {
            let err = error_of(vars);
            assert_eq!(err.setting, *setting, "{vars:?} → {err}");
            assert!(err.to_string().contains(needle), "{vars:?} → {err}");
        }
        let err = error_of(&[
            source,
            (
                "SIGNINS_DIAGNOSTIC_STORAGE",
                "https://stdiag.blob.core.windows.net/bad?sv=1&sig=SECRETSIG",
            ),
        ]);
        assert!(!err.to_string().contains("SECRETSIG"), "{err}");
    }

    #[test]
    fn describe_shows_the_source_without_the_sas() {
        let s = load(&[
            ("SIGNINS_SOURCE", "diagnostic-settings"),
            (
                "SIGNINS_DIAGNOSTIC_STORAGE",
                "https://stdiag.blob.core.windows.net?sv=1&sig=SECRETSIG",
            ),
        ])
        .unwrap();
        let described = s.describe();
        let get = |name: &str| {
            described
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(get("SIGNINS_SOURCE"), "diagnostic-settings");
        assert_eq!(
            get("SIGNINS_DIAGNOSTIC_STORAGE"),
            "https://stdiag.blob.core.windows.net (SAS)"
        );
        assert!(!format!("{described:?}").contains("SECRETSIG"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert!(parse_duration("7").is_err());
        assert!(parse_duration("d").is_err());
        assert!(parse_duration("-1h").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
        assert_eq!(format_duration(Duration::from_secs(5_400)), "90m");
        assert_eq!(format_duration(Duration::from_secs(86_400)), "1d");
    }
}
