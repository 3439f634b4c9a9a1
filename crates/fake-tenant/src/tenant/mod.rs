//! The simulated tenant: a deterministic generator of Graph-shaped `signIn` records.
//!
//! Every record carries every property of Graph beta's `signIn` ([`crate::schema`], from
//! Microsoft's published CSDL) plus `riskEventTypes`, the one v1.0 has and beta does not; the fake
//! leaves out of each answer what its version lacks. The shapes are those real tenants produce:
//! Outlook desktop and mobile signing in as the client `Microsoft Office` / `Outlook Mobile` to
//! the Office 365 Exchange Online *resource*; Exchange ActiveSync mostly as non-interactive token
//! refreshes (`signInEventTypes: ["nonInteractiveUser"]`, `incomingTokenType: refreshToken`);
//! only `clientAppUsed` values the service emits, in its spelling; every Conditional Access
//! policy of the tenant listed on each user sign-in with its result (`notApplied`, `notEnabled`,
//! `reportOnly…`) and `conditionalAccessStatus` consistent with them; authentication steps and
//! processing details; flags enums sometimes holding several comma-joined members;
//! service-principal and managed-identity sign-ins with no user (`userId` null) and a
//! `deviceDetail` missing most members. They also include what naive exporters get wrong:
//! failures with real AADSTS codes, unknown locations in every shape Graph sends them (nulls,
//! empty objects, coordinates of exactly 0 and 0), nulls in nested objects, and user names with
//! commas, quotes, line breaks, non-ASCII text and spreadsheet formulas. The same seed always
//! yields the same records.

mod access;
mod places;
mod signin;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

pub use access::POLICY_COUNT;

/// What to generate.
#[derive(Debug, Clone)]
pub struct TenantSpec {
    /// Number of distinct users.
    pub users: usize,
    /// Days of history, ending at `end`.
    pub days: u32,
    /// Random seed: the same spec always yields the same records.
    pub seed: u64,
    /// Newest possible `createdDateTime` (inclusive).
    pub end: OffsetDateTime,
}

impl TenantSpec {
    /// A small tenant ending now: handy defaults for the demo.
    pub fn demo(seed: u64) -> Self {
        TenantSpec {
            users: 40,
            days: 7,
            seed,
            end: OffsetDateTime::now_utc(),
        }
    }
}

/// The four values of beta's `signInEventTypes`.
pub const EVENT_TYPES: [&str; 4] = [
    "interactiveUser",
    "nonInteractiveUser",
    "servicePrincipal",
    "managedIdentity",
];

/// Display names that break naive CSV writers and spreadsheet imports; the first users get them.
const NASTY_NAMES: &[&str] = &[
    "Müller, Jürgen",
    "Danny \"The Hammer\" O'Brien",
    "Line\nBreak",
    "Carriage\r\nReturn",
    "Unicode\u{2028}Separator",
    "山田 漢字",
    "Émilie 🚀 Dubois",
    "=HYPERLINK(\"http://evil.example/\",\"click me\")",
    "+1 555 0100",
    "-2 Minus",
    "@SUM(A1:A9)",
    "Tab\tInside; semi;colon",
];

const FIRST_NAMES: &[&str] = &[
    "Adele",
    "Alex",
    "Allan",
    "Diego",
    "Grady",
    "Henrietta",
    "Isaiah",
    "Johanna",
    "Joni",
    "Lee",
    "Lidia",
    "Lynne",
    "Megan",
    "Miriam",
    "Nestor",
    "Patti",
    "Pradeep",
    "Zoë",
    "Søren",
    "Ngozi",
];
const LAST_NAMES: &[&str] = &[
    "Vance",
    "Wilber",
    "Deyoung",
    "Soto",
    "Archie",
    "Eriksson",
    "Langer",
    "Lund",
    "Sherman",
    "Gu",
    "Holloway",
    "Robbins",
    "Bowen",
    "Wells",
    "Torres",
    "Fernandes",
    "Gupta",
    "Øster",
    "Okafor",
    "Nakamura",
];

/// One simulated user.
struct User {
    id: String,
    display_name: String,
    upn: String,
    /// Index into [`places::PLACES`].
    home: usize,
    phone_os: &'static str,
    /// A guest from the partner tenant.
    guest: bool,
    /// The user's Entra-joined laptop, `(deviceId, displayName)`, if any.
    laptop: Option<(String, String)>,
}

/// Generates the tenant's sign-ins, newest first, `createdDateTime` in `(end - days, end]`.
pub fn generate(spec: &TenantSpec) -> Vec<Value> {
    let mut out: Vec<Value> = signins(spec).collect();
    sort_newest_first(&mut out);
    out
}

/// The tenant's sign-ins one at a time, in the order they are generated (by user and day, then
/// the workloads; not by time): the same records as [`generate`], for tenants too large to hold
/// as `Value`s (a full beta record takes ~34 KB in that form). Pass them straight to
/// [`crate::FakeGraph::new`], which keeps each as compact text.
pub fn signins(spec: &TenantSpec) -> impl Iterator<Item = Value> {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let users: Vec<User> = (0..spec.users).map(|i| make_user(i, &mut rng)).collect();
    // Whole seconds, as Graph reports them; truncating `end` keeps every time inside the window.
    let end = spec
        .end
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(spec.end);
    let span_secs = i64::from(spec.days) * 86_400;
    let (days, workloads) = if span_secs == 0 {
        (0, 0)
    } else {
        // A few workload (non-user) sign-ins: service principals and managed identities.
        (spec.days, (spec.users * spec.days as usize / 6).max(1))
    };
    Generator {
        rng,
        users,
        end,
        span_secs,
        days,
        user: 0,
        day: 0,
        left_today: None,
        workload: 0,
        workloads,
    }
}

/// The state of [`signins`]: each user's days (2 to 9 sign-ins a day at random times of the
/// window), then the workloads.
struct Generator {
    rng: ChaCha8Rng,
    users: Vec<User>,
    end: OffsetDateTime,
    span_secs: i64,
    days: u32,
    user: usize,
    day: u32,
    /// Sign-ins still to generate for `(user, day)` (`None`: not drawn yet).
    left_today: Option<u32>,
    workload: usize,
    workloads: usize,
}

impl Generator {
    fn created(&mut self) -> String {
        (self.end - Duration::seconds(self.rng.gen_range(0..self.span_secs)))
            .format(&Rfc3339)
            .unwrap_or_default()
    }
}

impl Iterator for Generator {
    type Item = Value;

    fn next(&mut self) -> Option<Value> {
        while self.user < self.users.len() && self.days > 0 {
            let left = *self
                .left_today
                .get_or_insert_with(|| self.rng.gen_range(2..=9));
            if left > 0 {
                self.left_today = Some(left - 1);
                let created = self.created();
                let user = &self.users[self.user];
                return Some(signin::user_signin(user, &created, &mut self.rng));
            }
            self.left_today = None;
            self.day += 1;
            if self.day == self.days {
                self.day = 0;
                self.user += 1;
            }
        }
        if self.workload < self.workloads {
            let created = self.created();
            let record = signin::workload_signin(self.workload, &created, &mut self.rng);
            self.workload += 1;
            return Some(record);
        }
        None
    }
}

/// Graph's order: `createdDateTime` descending; ties broken by `id` so the order is total.
pub fn sort_newest_first<R: std::borrow::Borrow<Value>>(records: &mut [R]) {
    records.sort_by(|a, b| {
        // Borrowed keys: comparing owned copies cost two allocations per comparison.
        fn key(v: &Value) -> (&str, &str) {
            (
                v["createdDateTime"].as_str().unwrap_or_default(),
                v["id"].as_str().unwrap_or_default(),
            )
        }
        key(b.borrow()).cmp(&key(a.borrow()))
    });
}

fn guid(rng: &mut ChaCha8Rng) -> String {
    let bytes: [u8; 16] = rng.gen();
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

fn make_user(i: usize, rng: &mut ChaCha8Rng) -> User {
    let id = guid(rng);
    let first = FIRST_NAMES[rng.gen_range(0..FIRST_NAMES.len())];
    let last = LAST_NAMES[rng.gen_range(0..LAST_NAMES.len())];
    let (display_name, upn) = match NASTY_NAMES.get(i) {
        Some(nasty) => (
            (*nasty).to_owned(),
            // An apostrophe is legal in a UPN and must be doubled inside an OData literal.
            if i == 1 {
                "danny.o'brien@contoso.com".to_owned()
            } else {
                format!("user{i}@contoso.com")
            },
        ),
        None => (
            format!("{first} {last}"),
            format!(
                "{}.{}{i}@contoso.com",
                ascii_fold(first).to_lowercase(),
                ascii_fold(last).to_lowercase()
            ),
        ),
    };
    let home = rng.gen_range(0..places::PLACES.len());
    let phone_os = if rng.gen_bool(0.55) { "Ios" } else { "Android" };
    let laptop = rng.gen_bool(0.6).then(|| {
        let device_id = guid(rng);
        (
            device_id,
            format!("LAPTOP-{:06X}", rng.gen_range(0..0xFF_FFFFu32)),
        )
    });
    User {
        id,
        display_name,
        upn,
        home,
        phone_os,
        // Every thirteenth user (none of those with hostile names) is a guest.
        guest: i >= NASTY_NAMES.len() && i.is_multiple_of(13),
        laptop,
    }
}

fn ascii_fold(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'ë' => 'e',
            'ø' | 'Ø' => 'o',
            c if c.is_ascii_alphabetic() => c,
            _ => 'x',
        })
        .collect()
}

/// The simulated tenant's id (`homeTenantId` / `resourceTenantId`).
pub const TENANT_ID: &str = "8f2c1d4e-5a6b-4c7d-9e8f-0a1b2c3d4e5f";

/// The home tenant of the tenant's guests (`homeTenantId` of their sign-ins).
pub const PARTNER_TENANT_ID: &str = "2b3c4d5e-6f7a-4b8c-9d0e-1f2a3b4c5d6e";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema;
    use serde_json::json;
    use std::collections::HashSet;
    use time::macros::datetime;

    fn spec(seed: u64) -> TenantSpec {
        TenantSpec {
            users: 20,
            days: 3,
            seed,
            end: datetime!(2026-11-28 12:00:00.5 UTC),
        }
    }

    #[test]
    fn same_seed_same_records_other_seed_other_records() {
        assert_eq!(generate(&spec(7)), generate(&spec(7)));
        assert_ne!(generate(&spec(7)), generate(&spec(8)));
    }

    #[test]
    fn newest_first_inside_the_window_with_unique_ids() {
        let s = spec(1);
        let records = generate(&s);
        assert!(records.len() > 100);
        let start = s.end - Duration::days(3);
        let mut ids = HashSet::new();
        let mut previous: Option<OffsetDateTime> = None;
        for r in &records {
            let t =
                OffsetDateTime::parse(r["createdDateTime"].as_str().unwrap(), &Rfc3339).unwrap();
            assert!(t > start && t <= s.end, "{t} outside the window");
            if let Some(p) = previous {
                assert!(t <= p, "not newest first");
            }
            previous = Some(t);
            assert!(ids.insert(r["id"].as_str().unwrap().to_owned()));
        }
    }

    #[test]
    fn event_types_agree_with_is_interactive_and_cover_the_mix() {
        let records = generate(&spec(3));
        let mut counts = std::collections::HashMap::new();
        for r in &records {
            let types = r["signInEventTypes"].as_array().unwrap();
            assert_eq!(types.len(), 1);
            let t = types[0].as_str().unwrap();
            assert!(EVENT_TYPES.contains(&t));
            assert_eq!(
                r["isInteractive"].as_bool().unwrap(),
                t == "interactiveUser"
            );
            *counts.entry(t).or_insert(0usize) += 1;
        }
        let interactive = counts["interactiveUser"];
        assert!(
            interactive * 2 > records.len(),
            "most sign-ins are interactive"
        );
        assert!(counts["nonInteractiveUser"] * 10 > records.len());
        assert!(counts["servicePrincipal"] > 0 && counts["managedIdentity"] > 0);
    }

    #[test]
    fn covers_the_hard_cases() {
        let records = generate(&spec(5));
        let field = |name: &str| -> HashSet<String> {
            records
                .iter()
                .filter_map(|r| r[name].as_str().map(str::to_owned))
                .collect()
        };
        let clients = field("clientAppUsed");
        for c in [
            "Exchange ActiveSync",
            "Browser",
            "Mobile Apps and Desktop clients",
            "IMAP4",
            "POP3",
            "Authenticated SMTP",
            "Exchange Web Services",
            "MAPI Over HTTP",
            "AutoDiscover",
            "Exchange Online PowerShell",
            "Offline Address Book",
            "Other clients",
        ] {
            assert!(clients.contains(c), "missing client {c}");
        }
        // Only the service's own spellings.
        assert_eq!(clients.len(), 12, "{clients:?}");
        let names = field("userDisplayName");
        for n in NASTY_NAMES {
            assert!(names.contains(*n), "missing name {n:?}");
        }
        let codes: HashSet<i64> = records
            .iter()
            .map(|r| r["status"]["errorCode"].as_i64().unwrap())
            .collect();
        for c in [0, 50126, 50053, 50074, 53003, 50140] {
            assert!(codes.contains(&c), "missing error code {c}");
        }
        assert!(field("ipAddress").len() > 50);
    }

    /// Every shape of location Graph sends, the unknown ones included.
    #[test]
    fn locations_in_every_shape_graph_sends() {
        let records = generate(&spec(5));
        let geo = |r: &Value| r["location"]["geoCoordinates"].clone();
        type Shape<'a> = (&'a str, &'a dyn Fn(&Value) -> bool);
        let shapes: [Shape; 6] = [
            ("a city with coordinates", &|r| {
                geo(r)["latitude"].as_f64().is_some_and(|l| l != 0.0)
            }),
            ("a city without coordinates", &|r| {
                r["location"]["city"]
                    .as_str()
                    .is_some_and(|c| !c.is_empty())
                    && geo(r) == json!({})
            }),
            ("a country only", &|r| {
                geo(r).is_null() && r["location"]["city"] == ""
            }),
            ("nothing, as nulls", &|r| {
                r["location"]["city"].is_null()
                    && geo(r)["latitude"].is_null()
                    && geo(r).is_object()
            }),
            ("nothing, as empty values", &|r| {
                r["location"]["countryOrRegion"] == "" && geo(r) == json!({})
            }),
            ("nothing, at 0,0", &|r| {
                geo(r)["latitude"] == json!(0.0) && geo(r)["longitude"] == json!(0.0)
            }),
        ];
        for (shape, test) in shapes {
            assert!(records.iter().any(test), "no location as {shape}");
        }
        // Never a real place at 0,0.
        for r in records.iter().filter(|r| geo(r)["latitude"] == json!(0.0)) {
            assert_eq!(r["location"]["city"], "", "{r}");
        }
    }

    #[test]
    fn every_record_has_every_beta_property_and_the_v1_only_one() {
        let mut want: Vec<&str> = schema::BETA_PROPERTIES
            .iter()
            .chain(schema::V1_ONLY.iter())
            .copied()
            .collect();
        want.sort_unstable();
        for r in generate(&spec(4)) {
            let mut got: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
            got.sort_unstable();
            assert_eq!(got, want);
            assert_eq!(r["riskEventTypes"], r["riskEventTypes_v2"]);
            let uti = r["uniqueTokenIdentifier"].as_str().unwrap();
            assert_eq!(uti.len(), 22, "{uti}");
            assert!(uti
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        }
    }

    /// The members of the flags enums (beta CSDL, `metadata/`) the simulation uses.
    const FLAG_MEMBERS: [(&str, &[&str]); 3] = [
        (
            "authenticationProtocol",
            &["none", "oAuth2", "ropc", "deviceCode"],
        ),
        (
            "crossTenantAccessType",
            &["none", "b2bCollaboration", "b2bDirectConnect"],
        ),
        (
            "incomingTokenType",
            &["none", "primaryRefreshToken", "refreshToken"],
        ),
    ];

    #[test]
    fn flags_enums_are_sometimes_comma_joined() {
        let records = generate(&TenantSpec {
            users: 60,
            ..spec(6)
        });
        assert_eq!(
            FLAG_MEMBERS.map(|(p, _)| p),
            schema::FLAGS_PROPERTIES,
            "every flags property is simulated"
        );
        for (property, members) in FLAG_MEMBERS {
            let values: Vec<&str> = records
                .iter()
                .map(|r| r[property].as_str().unwrap())
                .collect();
            assert!(
                values.iter().any(|v| v.contains(',')),
                "{property}: never several"
            );
            for value in values {
                assert!(!value.contains(' '), "Graph writes no space: {value}");
                for member in value.split(',') {
                    assert!(members.contains(&member), "{property}: {value}");
                }
            }
        }
    }

    /// Each user sign-in lists every policy of the tenant, with the results Graph uses, and
    /// `conditionalAccessStatus` follows from them; workloads list none.
    #[test]
    fn conditional_access_lists_every_policy_consistently() {
        let records = generate(&spec(7));
        let mut results = HashSet::new();
        let mut statuses = HashSet::new();
        for r in &records {
            let policies = r["appliedConditionalAccessPolicies"].as_array().unwrap();
            let status = r["conditionalAccessStatus"].as_str().unwrap();
            statuses.insert(status);
            if r["userId"].is_null() {
                assert!(policies.is_empty());
                assert_eq!(status, "notApplied");
                continue;
            }
            assert_eq!(policies.len(), POLICY_COUNT);
            let of: Vec<&str> = policies
                .iter()
                .map(|p| p["result"].as_str().unwrap())
                .collect();
            results.extend(of.iter().copied());
            let want = if of.contains(&"failure") {
                "failure"
            } else if of.contains(&"success") {
                "success"
            } else {
                "notApplied"
            };
            assert_eq!(status, want, "{of:?}");
            // Blocked by Conditional Access exactly when a policy failed for a risky sign-in.
            if r["status"]["errorCode"] == 53003 {
                assert_eq!(status, "failure");
                assert_ne!(r["riskLevelDuringSignIn"], "none");
            }
            for p in policies {
                for flags in ["conditionsSatisfied", "conditionsNotSatisfied"] {
                    assert!(!p[flags].as_str().unwrap().contains(' '));
                }
            }
        }
        for result in [
            "success",
            "failure",
            "notApplied",
            "notEnabled",
            "reportOnlySuccess",
            "reportOnlyFailure",
            "reportOnlyNotApplied",
            "reportOnlyInterrupted",
        ] {
            assert!(results.contains(result), "no policy result {result}");
        }
        assert_eq!(statuses.len(), 3, "{statuses:?}");
    }

    #[test]
    fn realistic_shapes_for_mail_clients_and_workloads() {
        let records = generate(&spec(9));
        let types = |r: &Value| {
            r["signInEventTypes"][0]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        };
        // Outlook desktop: client app "Microsoft Office", resource Exchange Online.
        assert!(records
            .iter()
            .any(|r| r["appDisplayName"] == "Microsoft Office"
                && r["resourceId"] == "00000002-0000-0ff1-ce00-000000000000"));
        // ActiveSync: mostly non-interactive refresh-token sign-ins.
        let eas: Vec<&Value> = records
            .iter()
            .filter(|r| r["clientAppUsed"] == "Exchange ActiveSync")
            .collect();
        let background = eas
            .iter()
            .filter(|r| types(r) == "nonInteractiveUser")
            .count();
        assert!(background * 2 > eas.len(), "{background} of {}", eas.len());
        assert!(eas
            .iter()
            .filter(|r| types(r) == "nonInteractiveUser")
            .all(|r| r["incomingTokenType"] == "refreshToken"
                && r["authenticationDetails"][0]["authenticationMethod"]
                    == "Previously satisfied"));
        // Workloads: no user (userId null), a deviceDetail without most members, and a
        // managed identity says which kind.
        let workloads: Vec<&Value> = records.iter().filter(|r| r["userId"].is_null()).collect();
        assert!(!workloads.is_empty());
        for r in workloads {
            assert!(["servicePrincipal", "managedIdentity"].contains(&types(r).as_str()));
            assert!(r["deviceDetail"].get("isCompliant").is_none());
            assert!(r["clientAppUsed"].is_null());
        }
        for r in records.iter().filter(|r| types(r) == "managedIdentity") {
            assert!(r["userPrincipalName"].is_null());
            assert_eq!(r["managedServiceIdentity"]["msiType"], "systemAssigned");
        }
        // Guests come from the partner tenant, through B2B collaboration.
        let guests: Vec<&Value> = records
            .iter()
            .filter(|r| r["userType"] == "guest")
            .collect();
        assert!(!guests.is_empty());
        assert!(guests.iter().all(|r| r["homeTenantId"] == PARTNER_TENANT_ID
            && r["crossTenantAccessType"]
                .as_str()
                .unwrap()
                .starts_with("b2bCollaboration")));
    }

    #[test]
    fn signins_are_generate_unsorted() {
        let s = spec(11);
        let mut streamed: Vec<Value> = signins(&s).collect();
        sort_newest_first(&mut streamed);
        assert_eq!(streamed, generate(&s));
    }
}
