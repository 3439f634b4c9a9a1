//! Which sign-ins to keep: presets, their server-side OData clauses and the client-side match.
//!
//! A [`SignInFilter`] is a set of rules; a sign-in is kept when **any** rule matches:
//!
//! * a *client app* rule: `clientAppUsed` equals the value (the legacy/modern client protocol,
//!   e.g. `Exchange ActiveSync`, `IMAP4`);
//! * an *app* rule: `appDisplayName` equals the value, or — written with a trailing `*` in
//!   `SIGNINS_APPS`, e.g. `Exchange*` — starts with it.
//!
//! A filter without rules keeps everything (the `all` preset).
//!
//! # What Graph filters on the server, and what is checked here
//!
//! Graph documents `$filter` support on `signIn` for `clientAppUsed` (`eq`) and
//! `appDisplayName` (`eq`, `startsWith`), and OData joins clauses with `or`. Every rule of every
//! preset is therefore expressible on the server, and [`SignInFilter::server_clause`] sends them
//! all as one parenthesised `or` group (the pipeline AND-s it with the time window and
//! `SIGNINS_FILTER`). No preset reads more pages than the sign-ins it keeps, except `all`, which
//! has no clause and reads every sign-in of the window.
//!
//! The server comparison uses Graph's spelling of each value; this API offers no way to ask for
//! a case-insensitive comparison (no `tolower`), so rows Graph stores in another casing arrive
//! only as far as Graph's own `eq` ignores case. [`SignInFilter::matches`] is
//! always applied to what the server returns, trimming and ignoring case (real data spells some
//! clients differently, e.g. `exchange activesync`), so a fake or a lenient server can never
//! widen the output, and a server that ignores the clause still yields the right rows.
//!
//! | preset | client apps (`clientAppUsed eq`) | apps (`appDisplayName`) |
//! |---|---|---|
//! | `exchange-activesync` | Exchange ActiveSync | — |
//! | `exchange` | the Exchange client protocols ([`EXCHANGE_CLIENT_APPS`]) | `eq 'Office 365 Exchange Online'`, `startswith 'Exchange'` |
//! | `legacy-auth` | every legacy-authentication client ([`LEGACY_AUTH_CLIENT_APPS`]) | — |
//! | `all` | — | — |
//!
//! `SIGNINS_CLIENT_APPS` replaces the client-app column of the preset and `SIGNINS_APPS` the app
//! column, for the server clause and the client-side match alike (an empty list counts as not
//! set). An app entry of just `*` matches every sign-in.
//!
//! The client-app spellings are those Graph emits in `clientAppUsed` (the Entra sign-in log's
//! "Client app" filter and Conditional Access's legacy-authentication client list), e.g.
//! `AutoDiscover` with a capital D and `Outlook Anywhere (RPC over HTTP)`.

use std::fmt::Write as _;

use serde_json::Value;

use crate::graph::model::SignIn;

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

/// The `appDisplayName` of Exchange Online itself.
pub const EXCHANGE_ONLINE_APP: &str = "Office 365 Exchange Online";

/// Apps whose name starts with this are Exchange too (e.g. "Exchange Online PowerShell" apps).
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

/// Every legacy-authentication client (`legacy-auth` preset), as Graph spells them.
pub const LEGACY_AUTH_CLIENT_APPS: [&str; 13] = [
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
    "Universal Outlook",
    "Other clients",
];

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
                "sign-ins to Exchange Online (app 'Office 365 Exchange Online' or starting with 'Exchange') or by any Exchange client protocol"
            }
            Preset::LegacyAuth => "sign-ins by any legacy-authentication client protocol",
            Preset::All => "every sign-in",
        }
    }

    /// The preset's `clientAppUsed` set.
    pub fn client_apps(self) -> &'static [&'static str] {
        match self {
            Preset::ExchangeActiveSync => &[EXCHANGE_ACTIVESYNC],
            Preset::Exchange => &EXCHANGE_CLIENT_APPS,
            Preset::LegacyAuth => &LEGACY_AUTH_CLIENT_APPS,
            Preset::All => &[],
        }
    }

    /// The preset's `appDisplayName` set, in `SIGNINS_APPS` syntax (trailing `*` = prefix).
    pub fn apps(self) -> &'static [&'static str] {
        match self {
            Preset::Exchange => &["Office 365 Exchange Online", "Exchange*"],
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

/// The rules of one run: a sign-in is kept when any rule matches; no rules keeps everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInFilter {
    /// `clientAppUsed` values (trimmed, as given).
    client_apps: Vec<String>,
    /// Lower-cased `client_apps`, for the case-insensitive match.
    client_apps_folded: Vec<String>,
    app_rules: Vec<AppRule>,
    /// Lower-cased `app_rules`.
    app_rules_folded: Vec<AppRule>,
    /// An app entry `*` was given: everything matches.
    match_all: bool,
}

impl SignInFilter {
    /// From the preset, optionally replacing its client-app set (`SIGNINS_CLIENT_APPS`) and
    /// app-name set (`SIGNINS_APPS`; a trailing `*` makes an entry a prefix). `Some` of an empty
    /// list counts as not set.
    pub fn new(
        preset: Preset,
        client_apps: Option<Vec<String>>,
        apps: Option<Vec<String>>,
    ) -> SignInFilter {
        let client_apps: Vec<String> = match client_apps.filter(|l| !l.is_empty()) {
            Some(list) => list,
            None => preset.client_apps().iter().map(|s| s.to_string()).collect(),
        };
        let apps: Vec<String> = match apps.filter(|l| !l.is_empty()) {
            Some(list) => list,
            None => preset.apps().iter().map(|s| s.to_string()).collect(),
        };

        let mut filter = SignInFilter {
            client_apps: Vec::new(),
            client_apps_folded: Vec::new(),
            app_rules: Vec::new(),
            app_rules_folded: Vec::new(),
            match_all: false,
        };
        for app in client_apps {
            let app = app.trim();
            let folded = fold(app);
            if !app.is_empty() && !filter.client_apps_folded.contains(&folded) {
                filter.client_apps.push(app.to_string());
                filter.client_apps_folded.push(folded);
            }
        }
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
            let folded = match &rule {
                AppRule::Equals(s) => AppRule::Equals(fold(s)),
                AppRule::StartsWith(s) => AppRule::StartsWith(fold(s)),
            };
            if !filter.app_rules_folded.contains(&folded) {
                filter.app_rules.push(rule);
                filter.app_rules_folded.push(folded);
            }
        }
        filter
    }

    /// True when every sign-in is kept (no server clause, no client-side work).
    pub fn keeps_everything(&self) -> bool {
        self.match_all || (self.client_apps.is_empty() && self.app_rules.is_empty())
    }

    /// The `clientAppUsed` values this filter keeps.
    pub fn client_apps(&self) -> &[String] {
        &self.client_apps
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
    /// `(clientAppUsed eq 'Exchange ActiveSync')`, or
    /// `(appDisplayName eq 'Office 365 Exchange Online' or startswith(appDisplayName,'Exchange') or clientAppUsed eq 'IMAP4' ...)`;
    /// `None` when everything is kept. App rules come first, then client apps, each in the
    /// order given. Single quotes inside values are doubled (OData); URL-encoding is the HTTP
    /// layer's job.
    pub fn server_clause(&self) -> Option<String> {
        if self.keeps_everything() {
            return None;
        }
        let mut clause = String::from("(");
        let mut first = true;
        let mut sep = |clause: &mut String| {
            if !first {
                clause.push_str(" or ");
            }
            first = false;
        };
        for rule in &self.app_rules {
            sep(&mut clause);
            // Writing to a String cannot fail.
            let _ = match rule {
                AppRule::Equals(s) => write!(clause, "appDisplayName eq '{}'", odata_escape(s)),
                AppRule::StartsWith(s) => {
                    write!(clause, "startswith(appDisplayName,'{}')", odata_escape(s))
                }
            };
        }
        for app in &self.client_apps {
            sep(&mut clause);
            let _ = write!(clause, "clientAppUsed eq '{}'", odata_escape(app));
        }
        clause.push(')');
        Some(clause)
    }

    /// The client-side check, applied to every sign-in the server returns: trims and ignores
    /// case.
    pub fn matches(&self, signin: &SignIn) -> bool {
        if self.keeps_everything() {
            return true;
        }
        if !self.client_apps_folded.is_empty() {
            if let Some(Value::String(client)) = signin.raw.get("clientAppUsed") {
                let client = client.trim();
                if self
                    .client_apps_folded
                    .iter()
                    .any(|want| eq_folded(client, want))
                {
                    return true;
                }
            }
        }
        if !self.app_rules_folded.is_empty() {
            if let Some(Value::String(app)) = signin.raw.get("appDisplayName") {
                let app = app.trim();
                return self.app_rules_folded.iter().any(|rule| match rule {
                    AppRule::Equals(want) => eq_folded(app, want),
                    AppRule::StartsWith(want) => starts_with_folded(app, want),
                });
            }
        }
        false
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

fn fold(s: &str) -> String {
    s.to_lowercase()
}

/// `value` equals `folded` (already lower-cased), ignoring case.
fn eq_folded(value: &str, folded: &str) -> bool {
    if value.is_ascii() {
        value.eq_ignore_ascii_case(folded)
    } else {
        value.to_lowercase() == folded
    }
}

/// `value` starts with `folded` (already lower-cased), ignoring case.
fn starts_with_folded(value: &str, folded: &str) -> bool {
    if value.is_ascii() && folded.is_ascii() {
        value.len() >= folded.len() && value[..folded.len()].eq_ignore_ascii_case(folded)
    } else {
        value.to_lowercase().starts_with(folded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn signin(client: Option<&str>, app: Option<&str>) -> SignIn {
        let mut v = json!({"id": "1", "createdDateTime": "2026-11-28T10:00:00Z"});
        if let Some(c) = client {
            v["clientAppUsed"] = json!(c);
        }
        if let Some(a) = app {
            v["appDisplayName"] = json!(a);
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
    fn exchange_activesync_server_clause_and_match() {
        let f = SignInFilter::new(Preset::ExchangeActiveSync, None, None);
        assert_eq!(
            f.server_clause().as_deref(),
            Some("(clientAppUsed eq 'Exchange ActiveSync')")
        );
        assert!(f.matches(&signin(
            Some("Exchange ActiveSync"),
            Some("Office 365 Exchange Online")
        )));
        assert!(f.matches(&signin(Some("exchange activesync"), None)));
        assert!(f.matches(&signin(Some("  EXCHANGE ACTIVESYNC "), None)));
        assert!(!f.matches(&signin(Some("Exchange ActiveSync2"), None)));
        assert!(!f.matches(&signin(Some("Browser"), Some("Office 365 Exchange Online"))));
        assert!(!f.matches(&signin(None, None)));
    }

    #[test]
    fn exchange_server_clause_is_apps_then_every_exchange_protocol() {
        let f = SignInFilter::new(Preset::Exchange, None, None);
        assert_eq!(
            f.server_clause().as_deref(),
            Some(
                "(appDisplayName eq 'Office 365 Exchange Online' or startswith(appDisplayName,'Exchange') \
                 or clientAppUsed eq 'Exchange ActiveSync' or clientAppUsed eq 'Exchange Web Services' \
                 or clientAppUsed eq 'MAPI Over HTTP' or clientAppUsed eq 'Outlook Anywhere (RPC over HTTP)' \
                 or clientAppUsed eq 'AutoDiscover' or clientAppUsed eq 'Offline Address Book' \
                 or clientAppUsed eq 'IMAP4' or clientAppUsed eq 'POP3' or clientAppUsed eq 'Authenticated SMTP')"
            )
        );
    }

    #[test]
    fn exchange_matches_app_or_protocol_ignoring_case() {
        let f = SignInFilter::new(Preset::Exchange, None, None);
        // By app name, whatever the client.
        assert!(f.matches(&signin(Some("Browser"), Some("Office 365 Exchange Online"))));
        assert!(f.matches(&signin(Some("Browser"), Some("office 365 exchange online"))));
        assert!(f.matches(&signin(Some("Browser"), Some("Exchange Online PowerShell"))));
        assert!(f.matches(&signin(None, Some("exchange admin center"))));
        // By protocol, whatever the app.
        for client in EXCHANGE_CLIENT_APPS {
            assert!(
                f.matches(&signin(Some(client), Some("Some Other App"))),
                "{client}"
            );
            assert!(
                f.matches(&signin(Some(&client.to_uppercase()), None)),
                "{client}"
            );
        }
        assert!(f.matches(&signin(Some("Autodiscover"), None)));
        // Neither.
        assert!(!f.matches(&signin(Some("Browser"), Some("Microsoft Teams"))));
        assert!(!f.matches(&signin(
            Some("Other clients"),
            Some("Office 365 SharePoint Online")
        )));
        assert!(!f.matches(&signin(Some("Browser"), Some("My Exchange"))));
    }

    #[test]
    fn legacy_auth_lists_every_legacy_client() {
        let f = SignInFilter::new(Preset::LegacyAuth, None, None);
        let expected = [
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
            "Universal Outlook",
            "Other clients",
        ]
        .map(|c| format!("clientAppUsed eq '{c}'"))
        .join(" or ");
        assert_eq!(f.server_clause(), Some(format!("({expected})")));
        for client in LEGACY_AUTH_CLIENT_APPS {
            assert!(f.matches(&signin(Some(client), None)));
            assert!(f.matches(&signin(Some(&client.to_lowercase()), None)));
        }
        assert!(!f.matches(&signin(Some("Browser"), Some("Office 365 Exchange Online"))));
        assert!(!f.matches(&signin(Some("Mobile Apps and Desktop clients"), None)));
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
    fn client_app_override_replaces_the_preset_set_on_both_sides() {
        let f = SignInFilter::new(
            Preset::LegacyAuth,
            strings(&[" IMAP4 ", "POP3", "imap4"]),
            None,
        );
        assert_eq!(
            f.server_clause().as_deref(),
            Some("(clientAppUsed eq 'IMAP4' or clientAppUsed eq 'POP3')")
        );
        assert!(f.matches(&signin(Some("pop3"), None)));
        assert!(!f.matches(&signin(Some("Exchange ActiveSync"), None)));

        // The exchange preset keeps its app rules when only the client apps are replaced.
        let f = SignInFilter::new(Preset::Exchange, strings(&["Browser"]), None);
        assert_eq!(
            f.server_clause().as_deref(),
            Some("(appDisplayName eq 'Office 365 Exchange Online' or startswith(appDisplayName,'Exchange') or clientAppUsed eq 'Browser')")
        );
        assert!(!f.matches(&signin(Some("IMAP4"), Some("Other"))));
        assert!(f.matches(&signin(Some("browser"), Some("Other"))));
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
        assert!(f.matches(&signin(None, Some("microsoft teams"))));
        assert!(f.matches(&signin(None, Some("Azure Portal"))));
        assert!(!f.matches(&signin(None, Some("Microsoft Teams Web"))));
        assert!(!f.matches(&signin(Some("Browser"), None)));

        // Replacing the exchange app set drops the default app rules.
        let f = SignInFilter::new(Preset::Exchange, strings(&["IMAP4"]), strings(&["Outlook"]));
        assert_eq!(
            f.server_clause().as_deref(),
            Some("(appDisplayName eq 'Outlook' or clientAppUsed eq 'IMAP4')")
        );
        assert!(!f.matches(&signin(None, Some("Office 365 Exchange Online"))));
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
        assert!(f.matches(&signin(Some("o'brien's CLIENT"), None)));
        assert!(f.matches(&signin(None, Some("Bob's App"))));
    }

    #[test]
    fn non_ascii_values_match_ignoring_case() {
        let f = SignInFilter::new(Preset::All, None, strings(&["Ämter-App", "Öffentlich*"]));
        assert!(f.matches(&signin(None, Some("ämter-app"))));
        assert!(f.matches(&signin(None, Some("ÖFFENTLICH Portal"))));
        assert!(!f.matches(&signin(None, Some("Amter-App"))));
    }

    #[test]
    fn non_string_fields_never_match() {
        let f = SignInFilter::new(Preset::Exchange, None, None);
        let s = SignIn::from_json(json!({
            "id": "1", "createdDateTime": "2026-11-28T10:00:00Z",
            "clientAppUsed": 5, "appDisplayName": null
        }))
        .unwrap();
        assert!(!f.matches(&s));
    }
}
