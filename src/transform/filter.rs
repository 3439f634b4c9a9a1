//! Which sign-ins to keep: presets, their server-side OData clauses and the client-side match.
//!
//! A [`SignInFilter`] is a set of rules; a sign-in is kept when **any** rule matches:
//!
//! * a *resource* rule: `resourceId` equals the value — the API signed in to (the `exchange`
//!   preset keys on Exchange Online's id, because Outlook desktop and mobile sign in as the
//!   *client* `Microsoft Office` / `Outlook Mobile` to the Exchange *resource*);
//! * a *client app* rule: `clientAppUsed` equals one of the values (`Exchange ActiveSync`, …),
//!   or — for `legacy-auth` — is a value other than the modern ones (`Browser`,
//!   `Mobile Apps and Desktop clients`);
//! * an *app* rule: `appDisplayName` equals the value, or — written with a trailing `*` in
//!   `SIGNINS_APPS`, e.g. `Exchange*` — starts with it.
//!
//! A filter without rules keeps everything (the `all` preset).
//!
//! # What Graph filters on the server, and what is checked here
//!
//! Graph documents `$filter` on `signIn` for `resourceId` and `clientAppUsed` (`eq`) and
//! `appDisplayName` (`eq`, `startsWith`)
//! (<https://learn.microsoft.com/graph/api/resources/signin>). `clientAppUsed ne '…'` is not in
//! that list but is what Microsoft's legacy-authentication guidance and widely used scripts send;
//! every rule of every preset is therefore sent as one parenthesised clause
//! ([`SignInFilter::server_clause`]), which the pipeline AND-s with the time window and
//! `SIGNINS_FILTER`. No preset reads more pages than the sign-ins it keeps, except `all`.
//!
//! String comparisons on this API are exact (case-sensitive), and there is no `tolower`, so every
//! value is sent in the spelling Graph emits. [`SignInFilter::matches`] applies the **same** exact
//! rules to what the server returns: it changes nothing when the server honours the clause, and
//! keeps the output defined by these rules (not by whatever a server returns) when it does not.
//! It deliberately does not ignore case: a case-insensitive guard would claim rows the server
//! never sends.
//!
//! | preset | rules |
//! |---|---|
//! | `exchange-activesync` | `clientAppUsed eq 'Exchange ActiveSync'` |
//! | `exchange` | `resourceId eq '00000002-0000-0ff1-ce00-000000000000'` (Office 365 Exchange Online), `appDisplayName eq 'Office 365 Exchange Online'`, `startswith(appDisplayName,'Exchange')`, the Exchange client protocols ([`EXCHANGE_CLIENT_APPS`]) |
//! | `legacy-auth` | `clientAppUsed` other than [`MODERN_CLIENT_APPS`] |
//! | `all` | — |
//!
//! `SIGNINS_CLIENT_APPS` replaces the client-app rule of the preset and `SIGNINS_APPS` the app
//! rules, for the server clause and the client-side match alike (an empty list counts as not
//! set); the `exchange` preset's resource rule stays. An app entry of just `*` matches every
//! sign-in.
//!
//! `legacy-auth` follows Microsoft's definition: a sign-in whose client app is `Browser` or
//! `Mobile Apps and Desktop clients` used modern authentication, any other client app is legacy
//! ("Sign-ins using legacy authentication" workbook,
//! <https://learn.microsoft.com/entra/identity/monitoring-health/workbook-legacy-authentication>;
//! MicrosoftDocs/entra-docs `docs/identity/monitoring-health/workbook-legacy-authentication.md`).
//! Defining it by exclusion means no legacy protocol is missed for its exact label. A sign-in
//! with no `clientAppUsed` at all (workload sign-ins) is not counted as legacy; OData's `ne`
//! lets such rows through the server clause, so the client-side check drops them.

use std::fmt::Write as _;

#[cfg(test)]
use crate::graph::model::SignIn;
use crate::graph::model::SignInRecord;
use crate::graph::model::{Property, PropertySet};

/// A named selection of sign-ins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    ExchangeActiveSync,
    Exchange,
    LegacyAuth,
    All,
}

/// `clientAppUsed` of Exchange ActiveSync sign-ins (the seed report).
pub const EXCHANGE_ACTIVESYNC: &str = "Exchange ActiveSync";

/// The `appDisplayName` (and `resourceDisplayName`) of Exchange Online itself.
pub const EXCHANGE_ONLINE_APP: &str = "Office 365 Exchange Online";

/// The application id of Office 365 Exchange Online, the `resourceId` of every sign-in to it.
pub const EXCHANGE_ONLINE_RESOURCE_ID: &str = "00000002-0000-0ff1-ce00-000000000000";

/// Apps whose name starts with this are Exchange too (the original script matched
/// `*Exchange *`; OData on this API has no `contains`, and apps that merely mention Exchange
/// and sign in to it are caught by the resource rule).
pub const EXCHANGE_APP_PREFIX: &str = "Exchange";

/// The client protocols that talk to Exchange (`exchange` preset), as Graph spells them.
pub const EXCHANGE_CLIENT_APPS: [&str; 9] = [
    "Exchange ActiveSync",
    "Exchange Web Services",
    "MAPI Over HTTP",
    "Outlook Anywhere (RPC over HTTP)",
    "AutoDiscover",
    "Offline Address Book",
    "IMAP4",
    "POP3",
    "Authenticated SMTP",
];

/// The `clientAppUsed` values of modern authentication; every other value is legacy
/// authentication (`legacy-auth` preset).
pub const MODERN_CLIENT_APPS: [&str; 2] = ["Browser", "Mobile Apps and Desktop clients"];

impl Preset {
    /// Every preset, in documentation order.
    pub const ALL: [Preset; 4] = [
        Preset::ExchangeActiveSync,
        Preset::Exchange,
        Preset::LegacyAuth,
        Preset::All,
    ];

    /// The name used in settings and in the destination layout (`<prefix>/<preset>/`).
    pub fn as_str(self) -> &'static str {
        match self {
            Preset::ExchangeActiveSync => "exchange-activesync",
            Preset::Exchange => "exchange",
            Preset::LegacyAuth => "legacy-auth",
            Preset::All => "all",
        }
    }

    /// Parses a preset name (surrounding spaces and case are ignored).
    /// The error lists the accepted names.
    pub fn parse(s: &str) -> Result<Preset, String> {
        let wanted = s.trim();
        Preset::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| {
                let accepted: Vec<&str> = Preset::ALL.iter().map(|p| p.as_str()).collect();
                format!(
                    "unknown preset '{wanted}'; accepted: {}",
                    accepted.join(", ")
                )
            })
    }

    /// One line for the README / `--help`: what the preset keeps.
    pub fn description(self) -> &'static str {
        match self {
            Preset::ExchangeActiveSync => "sign-ins whose client app is Exchange ActiveSync",
            Preset::Exchange => {
                "sign-ins to the Exchange Online resource, by an app named 'Office 365 Exchange Online' or starting with 'Exchange', or by any Exchange client protocol"
            }
            Preset::LegacyAuth => {
                "sign-ins by any client app other than Browser and Mobile Apps and Desktop clients"
            }
            Preset::All => "every sign-in",
        }
    }

    /// The preset's `clientAppUsed` set: the values kept, or for `legacy-auth` the values
    /// excluded (see [`Preset::excludes_client_apps`]).
    pub fn client_apps(self) -> &'static [&'static str] {
        match self {
            Preset::ExchangeActiveSync => &[EXCHANGE_ACTIVESYNC],
            Preset::Exchange => &EXCHANGE_CLIENT_APPS,
            Preset::LegacyAuth => &MODERN_CLIENT_APPS,
            Preset::All => &[],
        }
    }

    /// Whether [`Preset::client_apps`] lists the values to exclude rather than to keep.
    pub fn excludes_client_apps(self) -> bool {
        self == Preset::LegacyAuth
    }

    /// The preset's `resourceId` set.
    pub fn resource_ids(self) -> &'static [&'static str] {
        match self {
            Preset::Exchange => &[EXCHANGE_ONLINE_RESOURCE_ID],
            _ => &[],
        }
    }

    /// The preset's `appDisplayName` set, in `SIGNINS_APPS` syntax (trailing `*` = prefix).
    pub fn apps(self) -> &'static [&'static str] {
        match self {
            Preset::Exchange => &[EXCHANGE_ONLINE_APP, "Exchange*"],
            _ => &[],
        }
    }
}

impl std::fmt::Display for Preset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `appDisplayName` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AppRule {
    Equals(String),
    StartsWith(String),
}

/// The `clientAppUsed` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ClientRule {
    /// Equals one of these (no values: no client rule).
    AnyOf(Vec<String>),
    /// Present, non-empty and none of these.
    NoneOf(Vec<String>),
}

/// The rules of one run: a sign-in is kept when any rule matches; no rules keeps everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInFilter {
    resource_ids: Vec<String>,
    client_rule: ClientRule,
    app_rules: Vec<AppRule>,
    /// An app entry `*` was given: everything matches.
    match_all: bool,
}

/// Trimmed, non-empty, without duplicates, in the order given.
fn distinct(values: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for value in values {
        let value = value.trim();
        if !value.is_empty() && !out.iter().any(|v| v == value) {
            out.push(value.to_string());
        }
    }
    out
}

impl SignInFilter {
    /// The properties [`SignInFilter::matches`] reads, whatever the rules: a page must be parsed
    /// for them.
    pub fn properties() -> PropertySet {
        PropertySet::REQUIRED
            .with(Property::ResourceId)
            .with(Property::AppDisplayName)
            .with(Property::ClientAppUsed)
    }

    /// From the preset, optionally replacing its client-app rule (`SIGNINS_CLIENT_APPS`: keep
    /// these values) and app-name rules (`SIGNINS_APPS`; a trailing `*` makes an entry a
    /// prefix). `Some` of an empty list counts as not set.
    pub fn new(
        preset: Preset,
        client_apps: Option<Vec<String>>,
        apps: Option<Vec<String>>,
    ) -> SignInFilter {
        let preset_list = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let client_rule = match client_apps.filter(|l| !l.is_empty()) {
            Some(list) => ClientRule::AnyOf(distinct(list)),
            None if preset.excludes_client_apps() => {
                ClientRule::NoneOf(distinct(preset_list(preset.client_apps())))
            }
            None => ClientRule::AnyOf(distinct(preset_list(preset.client_apps()))),
        };
        let apps: Vec<String> = match apps.filter(|l| !l.is_empty()) {
            Some(list) => list,
            None => preset_list(preset.apps()),
        };
        let mut filter = SignInFilter {
            resource_ids: distinct(preset_list(preset.resource_ids())),
            client_rule,
            app_rules: Vec::new(),
            match_all: false,
        };
        for app in apps {
            let app = app.trim();
            let rule = match app.strip_suffix('*') {
                Some(prefix) if prefix.trim().is_empty() => {
                    filter.match_all = true;
                    continue;
                }
                Some(prefix) => AppRule::StartsWith(prefix.trim_end().to_string()),
                None if app.is_empty() => continue,
                None => AppRule::Equals(app.to_string()),
            };
            if !filter.app_rules.contains(&rule) {
                filter.app_rules.push(rule);
            }
        }
        filter
    }

    /// True when every sign-in is kept (no server clause, no client-side work).
    pub fn keeps_everything(&self) -> bool {
        self.match_all
            || (self.resource_ids.is_empty()
                && self.app_rules.is_empty()
                && matches!(&self.client_rule, ClientRule::AnyOf(l) if l.is_empty()))
    }

    /// The `clientAppUsed` values this filter keeps (empty for an exclusion rule).
    pub fn client_apps(&self) -> &[String] {
        match &self.client_rule {
            ClientRule::AnyOf(list) => list,
            ClientRule::NoneOf(_) => &[],
        }
    }

    /// The app rules in `SIGNINS_APPS` syntax (trailing `*` = prefix).
    pub fn apps(&self) -> Vec<String> {
        self.app_rules
            .iter()
            .map(|rule| match rule {
                AppRule::Equals(s) => s.clone(),
                AppRule::StartsWith(s) => format!("{s}*"),
            })
            .collect()
    }

    /// The OData clause Graph evaluates server-side for this filter, e.g.
    /// `(clientAppUsed eq 'Exchange ActiveSync')`,
    /// `(resourceId eq '…' or appDisplayName eq '…' or startswith(appDisplayName,'Exchange') or clientAppUsed eq 'IMAP4' …)`
    /// or `(clientAppUsed ne 'Browser' and clientAppUsed ne 'Mobile Apps and Desktop clients')`;
    /// `None` when everything is kept. Resource rules come first, then app rules, then the
    /// client rule, each in the order given. Single quotes inside values are doubled (OData);
    /// URL-encoding is the HTTP layer's job.
    pub fn server_clause(&self) -> Option<String> {
        if self.keeps_everything() {
            return None;
        }
        let mut terms: Vec<String> = Vec::new();
        for id in &self.resource_ids {
            terms.push(format!("resourceId eq '{}'", odata_escape(id)));
        }
        for rule in &self.app_rules {
            terms.push(match rule {
                AppRule::Equals(s) => format!("appDisplayName eq '{}'", odata_escape(s)),
                AppRule::StartsWith(s) => {
                    format!("startswith(appDisplayName,'{}')", odata_escape(s))
                }
            });
        }
        match &self.client_rule {
            ClientRule::AnyOf(list) => {
                for app in list {
                    terms.push(format!("clientAppUsed eq '{}'", odata_escape(app)));
                }
            }
            ClientRule::NoneOf(list) => {
                let mut group = String::new();
                for (i, app) in list.iter().enumerate() {
                    if i > 0 {
                        group.push_str(" and ");
                    }
                    // Writing to a String cannot fail.
                    let _ = write!(group, "clientAppUsed ne '{}'", odata_escape(app));
                }
                // Alone, the group needs no inner parentheses; OR-ed with other rules it does.
                if self.resource_ids.is_empty() && self.app_rules.is_empty() {
                    terms.push(group);
                } else {
                    terms.push(format!("({group})"));
                }
            }
        }
        Some(format!("({})", terms.join(" or ")))
    }

    /// The client-side check, applied to every sign-in the server returns: the same rules as
    /// [`SignInFilter::server_clause`], compared exactly as Graph compares.
    pub fn matches(&self, signin: &SignInRecord<'_>) -> bool {
        if self.keeps_everything() {
            return true;
        }
        let props = &signin.props;
        if let Some(resource) = props.resource_id.as_str() {
            if self.resource_ids.iter().any(|id| id == resource) {
                return true;
            }
        }
        if let Some(app) = props.app_display_name.as_str() {
            let by_app = self.app_rules.iter().any(|rule| match rule {
                AppRule::Equals(want) => app == want,
                AppRule::StartsWith(want) => app.starts_with(want.as_str()),
            });
            if by_app {
                return true;
            }
        }
        let client = props.client_app_used.as_str();
        match &self.client_rule {
            ClientRule::AnyOf(list) => client.is_some_and(|c| list.iter().any(|want| want == c)),
            ClientRule::NoneOf(list) => {
                client.is_some_and(|c| !c.is_empty() && !list.iter().any(|modern| modern == c))
            }
        }
    }
}

/// Doubles single quotes, the OData string-literal escape.
fn odata_escape(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\'') {
        std::borrow::Cow::Owned(s.replace('\'', "''"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn signin(client: Option<&str>, app: Option<&str>) -> SignIn {
        signin_to(client, app, None)
    }

    fn signin_to(client: Option<&str>, app: Option<&str>, resource: Option<&str>) -> SignIn {
        let mut v = json!({"id": "1", "createdDateTime": "2026-11-28T10:00:00Z"});
        if let Some(c) = client {
            v["clientAppUsed"] = json!(c);
        }
        if let Some(a) = app {
            v["appDisplayName"] = json!(a);
        }
        if let Some(r) = resource {
            v["resourceId"] = json!(r);
        }
        SignIn::from_json(v).unwrap()
    }

    fn strings(list: &[&str]) -> Option<Vec<String>> {
        Some(list.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn parse_accepts_every_name_and_lists_them_on_error() {
        for preset in Preset::ALL {
            assert_eq!(Preset::parse(preset.as_str()), Ok(preset));
        }
        assert_eq!(Preset::parse(" Legacy-Auth "), Ok(Preset::LegacyAuth));
        let err = Preset::parse("exchange-sync").unwrap_err();
        assert_eq!(
            err,
            "unknown preset 'exchange-sync'; accepted: exchange-activesync, exchange, legacy-auth, all"
        );
        assert!(Preset::parse("").is_err());
    }

    #[test]
    fn exchange_activesync_server_clause_and_exact_match() {
        let f = SignInFilter::new(Preset::ExchangeActiveSync, None, None);
        assert_eq!(
            f.server_clause().as_deref(),
            Some("(clientAppUsed eq 'Exchange ActiveSync')")
        );
        assert!(f.matches(&signin(
            Some("Exchange ActiveSync"),
            Some("Office 365 Exchange Online")
        )));
        // Graph compares exactly; so does the guard.
        assert!(!f.matches(&signin(Some("exchange activesync"), None)));
        assert!(!f.matches(&signin(Some(" Exchange ActiveSync"), None)));
        assert!(!f.matches(&signin(Some("Exchange ActiveSync2"), None)));
        assert!(!f.matches(&signin(Some("Browser"), Some("Office 365 Exchange Online"))));
        assert!(!f.matches(&signin(None, None)));
    }

    #[test]
    fn exchange_server_clause_is_resource_then_apps_then_every_exchange_protocol() {
        let f = SignInFilter::new(Preset::Exchange, None, None);
        assert_eq!(
            f.server_clause().as_deref(),
            Some(
                "(resourceId eq '00000002-0000-0ff1-ce00-000000000000' \
                 or appDisplayName eq 'Office 365 Exchange Online' or startswith(appDisplayName,'Exchange') \
                 or clientAppUsed eq 'Exchange ActiveSync' or clientAppUsed eq 'Exchange Web Services' \
                 or clientAppUsed eq 'MAPI Over HTTP' or clientAppUsed eq 'Outlook Anywhere (RPC over HTTP)' \
                 or clientAppUsed eq 'AutoDiscover' or clientAppUsed eq 'Offline Address Book' \
                 or clientAppUsed eq 'IMAP4' or clientAppUsed eq 'POP3' or clientAppUsed eq 'Authenticated SMTP')"
            )
        );
    }

    #[test]
    fn exchange_matches_resource_app_or_protocol() {
        let f = SignInFilter::new(Preset::Exchange, None, None);
        // Outlook desktop / mobile: the client is "Microsoft Office", the resource is Exchange.
        assert!(f.matches(&signin_to(
            Some("Mobile Apps and Desktop clients"),
            Some("Microsoft Office"),
            Some(EXCHANGE_ONLINE_RESOURCE_ID)
        )));
        assert!(!f.matches(&signin_to(
            Some("Mobile Apps and Desktop clients"),
            Some("Microsoft Office"),
            Some("00000003-0000-0ff1-ce00-000000000000")
        )));
        // By app name, whatever the client.
        assert!(f.matches(&signin(Some("Browser"), Some("Office 365 Exchange Online"))));
        assert!(f.matches(&signin(Some("Browser"), Some("Exchange Online PowerShell"))));
        assert!(!f.matches(&signin(Some("Browser"), Some("office 365 exchange online"))));
        // By protocol, whatever the app.
        for client in EXCHANGE_CLIENT_APPS {
            assert!(
                f.matches(&signin(Some(client), Some("Some Other App"))),
                "{client}"
            );
            assert!(
                !f.matches(&signin(Some(&client.to_lowercase()), None)),
                "{client}"
            );
        }
        // Neither.
        assert!(!f.matches(&signin(Some("Browser"), Some("Microsoft Teams"))));
        assert!(!f.matches(&signin(
            Some("Other clients"),
            Some("Office 365 SharePoint Online")
        )));
        assert!(!f.matches(&signin(Some("Browser"), Some("My Exchange"))));
    }

    #[test]
    fn legacy_auth_is_every_client_but_the_modern_ones() {
        let f = SignInFilter::new(Preset::LegacyAuth, None, None);
        assert_eq!(
            f.server_clause().as_deref(),
            Some("(clientAppUsed ne 'Browser' and clientAppUsed ne 'Mobile Apps and Desktop clients')")
        );
        for client in [
            "IMAP4",
            "POP3",
            "Authenticated SMTP",
            "Exchange ActiveSync",
            "Exchange Web Services",
            "MAPI Over HTTP",
            "AutoDiscover",
            "Outlook Anywhere (RPC over HTTP)",
            "Offline Address Book",
            "Exchange Online PowerShell",
            "Reporting Web Services",
            "Other clients",
            "A protocol added next year",
        ] {
            assert!(f.matches(&signin(Some(client), None)), "{client}");
        }
        assert!(!f.matches(&signin(Some("Browser"), Some("Office 365 Exchange Online"))));
        assert!(!f.matches(&signin(Some("Mobile Apps and Desktop clients"), None)));
        // Workload sign-ins have no client app: not legacy authentication.
        assert!(!f.matches(&signin(None, Some("Contoso Daemon"))));
        assert!(!f.matches(&signin(Some(""), None)));
        assert!(f.client_apps().is_empty());
    }

    #[test]
    fn all_has_no_clause_and_keeps_everything() {
        let f = SignInFilter::new(Preset::All, None, None);
        assert_eq!(f.server_clause(), None);
        assert!(f.keeps_everything());
        assert!(f.matches(&signin(None, None)));
        assert!(f.matches(&signin(Some("Browser"), Some("Teams"))));
    }

    #[test]
    fn client_app_override_replaces_the_preset_rule_on_both_sides() {
        let f = SignInFilter::new(
            Preset::LegacyAuth,
            strings(&[" IMAP4 ", "POP3", "IMAP4"]),
            None,
        );
        assert_eq!(
            f.server_clause().as_deref(),
            Some("(clientAppUsed eq 'IMAP4' or clientAppUsed eq 'POP3')")
        );
        assert!(f.matches(&signin(Some("POP3"), None)));
        assert!(!f.matches(&signin(Some("Exchange ActiveSync"), None)));

        // The exchange preset keeps its resource and app rules when only the client apps are
        // replaced.
        let f = SignInFilter::new(Preset::Exchange, strings(&["Browser"]), None);
        assert_eq!(
            f.server_clause().as_deref(),
            Some("(resourceId eq '00000002-0000-0ff1-ce00-000000000000' or appDisplayName eq 'Office 365 Exchange Online' or startswith(appDisplayName,'Exchange') or clientAppUsed eq 'Browser')")
        );
        assert!(!f.matches(&signin(Some("IMAP4"), Some("Other"))));
        assert!(f.matches(&signin(Some("Browser"), Some("Other"))));
    }

    #[test]
    fn app_override_with_prefixes_and_on_all() {
        let f = SignInFilter::new(Preset::All, None, strings(&["Microsoft Teams", "Azure *"]));
        assert_eq!(
            f.server_clause().as_deref(),
            Some("(appDisplayName eq 'Microsoft Teams' or startswith(appDisplayName,'Azure'))")
        );
        assert_eq!(
            f.apps(),
            vec!["Microsoft Teams".to_string(), "Azure*".to_string()]
        );
        assert!(f.matches(&signin(None, Some("Microsoft Teams"))));
        assert!(f.matches(&signin(None, Some("Azure Portal"))));
        assert!(!f.matches(&signin(None, Some("Microsoft Teams Web"))));
        assert!(!f.matches(&signin(Some("Browser"), None)));

        // Replacing the exchange app set drops the default app rules, not the resource rule.
        let f = SignInFilter::new(Preset::Exchange, strings(&["IMAP4"]), strings(&["Outlook"]));
        assert_eq!(
            f.server_clause().as_deref(),
            Some("(resourceId eq '00000002-0000-0ff1-ce00-000000000000' or appDisplayName eq 'Outlook' or clientAppUsed eq 'IMAP4')")
        );
        assert!(!f.matches(&signin(None, Some("Office 365 Exchange Online"))));

        // App rules OR-ed with legacy-auth's exclusion group keep it parenthesised.
        let f = SignInFilter::new(Preset::LegacyAuth, None, strings(&["Contoso"]));
        assert_eq!(
            f.server_clause().as_deref(),
            Some("(appDisplayName eq 'Contoso' or (clientAppUsed ne 'Browser' and clientAppUsed ne 'Mobile Apps and Desktop clients'))")
        );
    }

    #[test]
    fn star_app_keeps_everything_and_empty_override_is_ignored() {
        let f = SignInFilter::new(Preset::ExchangeActiveSync, None, strings(&["*"]));
        assert_eq!(f.server_clause(), None);
        assert!(f.matches(&signin(Some("Browser"), None)));

        let f = SignInFilter::new(Preset::ExchangeActiveSync, Some(vec![]), Some(vec![]));
        assert_eq!(f, SignInFilter::new(Preset::ExchangeActiveSync, None, None));
    }

    #[test]
    fn single_quotes_are_doubled_in_the_server_clause() {
        let f = SignInFilter::new(
            Preset::All,
            strings(&["O'Brien's client"]),
            strings(&["Bob's*"]),
        );
        assert_eq!(
            f.server_clause().as_deref(),
            Some("(startswith(appDisplayName,'Bob''s') or clientAppUsed eq 'O''Brien''s client')")
        );
        assert!(f.matches(&signin(Some("O'Brien's client"), None)));
        assert!(f.matches(&signin(None, Some("Bob's App"))));
    }

    #[test]
    fn non_ascii_values_match_exactly() {
        let f = SignInFilter::new(Preset::All, None, strings(&["Ämter-App", "Öffentlich*"]));
        assert!(f.matches(&signin(None, Some("Ämter-App"))));
        assert!(f.matches(&signin(None, Some("Öffentlich Portal"))));
        assert!(!f.matches(&signin(None, Some("ämter-app"))));
        assert!(!f.matches(&signin(None, Some("Amter-App"))));
    }

    #[test]
    fn non_string_fields_never_match() {
        let f = SignInFilter::new(Preset::Exchange, None, None);
        let s = SignIn::from_json(json!({
            "id": "1", "createdDateTime": "2026-11-28T10:00:00Z",
            "clientAppUsed": 5, "appDisplayName": null, "resourceId": ["00000002-0000-0ff1-ce00-000000000000"]
        }))
        .unwrap();
        assert!(!f.matches(&s));
        let legacy = SignInFilter::new(Preset::LegacyAuth, None, None);
        assert!(!legacy.matches(&s));
    }
}
