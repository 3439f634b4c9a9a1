//! The simulated tenant: a deterministic generator of Graph-shaped `signIn` records.
//!
//! The records use exactly the field names and nesting of Graph's beta `signIn` resource (the fake
//! drops the beta-only properties from v1.0 answers), with the shapes real tenants produce:
//! Outlook desktop and mobile signing in as the client `Microsoft Office` / `Outlook Mobile` to
//! the Office 365 Exchange Online *resource*; Exchange ActiveSync mostly as non-interactive token
//! refreshes (`signInEventTypes: ["nonInteractiveUser"]`, `incomingTokenType: refreshToken`);
//! only `clientAppUsed` values the service emits, in its spelling; service-principal and
//! managed-identity sign-ins with empty user fields and `managedServiceIdentity`. They also
//! include what naive exporters get wrong: failures with real AADSTS codes, missing locations and
//! coordinates, nulls in nested objects, and user names with commas, quotes, line breaks,
//! non-ASCII text and spreadsheet formulas. The same seed always yields the same records.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

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

/// `(city, state, countryOrRegion, latitude, longitude, ip prefix)`.
const PLACES: &[(&str, &str, &str, f64, f64, &str)] = &[
    ("Seattle", "Washington", "US", 47.6062, -122.3321, "131.107"),
    ("New York", "New York", "US", 40.7128, -74.006, "20.81"),
    ("London", "England", "GB", 51.5072, -0.1276, "51.140"),
    ("Paris", "Île-de-France", "FR", 48.8566, 2.3522, "90.84"),
    ("München", "Bayern", "DE", 48.1351, 11.582, "91.64"),
    ("Zürich", "Zürich", "CH", 47.3769, 8.5417, "194.230"),
    ("Tokyo", "Tokyo", "JP", 35.6762, 139.6503, "126.77"),
    ("São Paulo", "São Paulo", "BR", -23.5558, -46.6396, "177.71"),
    (
        "Sydney",
        "New South Wales",
        "AU",
        -33.8688,
        151.2093,
        "203.2",
    ),
    ("Bengaluru", "Karnataka", "IN", 12.9716, 77.5946, "49.207"),
];

const EXCHANGE_ONLINE: (&str, &str) = (
    "Office 365 Exchange Online",
    "00000002-0000-0ff1-ce00-000000000000",
);
const SHAREPOINT: (&str, &str) = (
    "Office 365 SharePoint Online",
    "00000003-0000-0ff1-ce00-000000000000",
);
const TEAMS_WEB: (&str, &str) = (
    "Microsoft Teams Web Client",
    "5e3ce6c0-2b1f-4285-8d4b-75ee78787346",
);
const TEAMS: (&str, &str) = ("Microsoft Teams", "1fec8e78-bce4-4aaf-ab1b-5451cc387264");
const OFFICE: (&str, &str) = ("Microsoft Office", "d3590ed6-52b3-4102-aeff-aad2292ab01c");
const OUTLOOK_MOBILE: (&str, &str) = ("Outlook Mobile", "27922004-5251-4030-b22d-91ecd9a37ea4");
const AZURE_PORTAL: (&str, &str) = ("Azure Portal", "c44b4083-3bb0-49c1-b47d-974e53cbdf3c");
const GRAPH: (&str, &str) = ("Microsoft Graph", "00000003-0000-0000-c000-000000000000");

/// `(errorCode, failureReason, additionalDetails)` with real AADSTS codes.
const FAILURES: &[(i64, &str, Option<&str>)] = &[
    (
        50126,
        "Error validating credentials due to invalid username or password.",
        Some("The user didn't enter the right credentials. It's expected to see some number of these errors in your logs due to users making mistakes."),
    ),
    (
        50053,
        "Account is locked because user tried to sign in too many times with an incorrect user ID or password.",
        None,
    ),
    (
        50074,
        "Strong Authentication is required.",
        Some("The user is required to complete multi-factor authentication."),
    ),
    (
        53003,
        "Access has been blocked by Conditional Access policies. The access policy does not allow token issuance.",
        None,
    ),
    (
        50140,
        "This error occurred due to 'Keep me signed in' interrupt when the user was signing in.",
        None,
    ),
];

/// One simulated user.
struct User {
    id: String,
    display_name: String,
    upn: String,
    home: usize,
    phone_os: &'static str,
}

/// Generates the tenant's sign-ins, newest first, `createdDateTime` in `(end - days, end]`.
pub fn generate(spec: &TenantSpec) -> Vec<Value> {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let users: Vec<User> = (0..spec.users).map(|i| make_user(i, &mut rng)).collect();
    // Whole seconds, as Graph reports them; truncating `end` keeps every time inside the window.
    let end = spec
        .end
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(spec.end);
    let span_secs = i64::from(spec.days) * 86_400;

    let mut out = Vec::new();
    if span_secs == 0 {
        return out;
    }
    for user in &users {
        for _day in 0..spec.days {
            let count = rng.gen_range(2..=9);
            for _ in 0..count {
                let created = end - Duration::seconds(rng.gen_range(0..span_secs));
                out.push(make_signin(user, created, &mut rng));
            }
        }
    }
    // A few workload (non-user) sign-ins: service principals and managed identities.
    let workloads = (spec.users * spec.days as usize / 6).max(1);
    for i in 0..workloads {
        let created = end - Duration::seconds(rng.gen_range(0..span_secs));
        out.push(make_workload_signin(i, created, &mut rng));
    }
    sort_newest_first(&mut out);
    out
}

/// Graph's order: `createdDateTime` descending; ties broken by `id` so the order is total.
/// Generic over how the records are held (the fake keeps them behind `Arc`s it shares with page
/// snapshots).
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
    User {
        id,
        display_name,
        upn,
        home: rng.gen_range(0..PLACES.len()),
        phone_os: if rng.gen_bool(0.55) { "Ios" } else { "Android" },
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

/// The kinds of client the simulation draws from, with their relative weights.
#[derive(Clone, Copy)]
enum Client {
    ActiveSync,
    Browser,
    Desktop,
    OutlookMobile,
    Imap,
    Pop,
    Smtp,
    Ews,
    Mapi,
    Autodiscover,
    ExchangePowerShell,
    OfflineAddressBook,
    Other,
}

const CLIENT_WEIGHTS: &[(Client, u32)] = &[
    (Client::ActiveSync, 22),
    (Client::Browser, 26),
    (Client::Desktop, 18),
    (Client::OutlookMobile, 8),
    (Client::Imap, 5),
    (Client::Pop, 3),
    (Client::Smtp, 5),
    (Client::Ews, 4),
    (Client::Mapi, 4),
    (Client::Autodiscover, 3),
    (Client::ExchangePowerShell, 1),
    (Client::OfflineAddressBook, 1),
    (Client::Other, 2),
];

fn pick_client(rng: &mut ChaCha8Rng) -> Client {
    let total: u32 = CLIENT_WEIGHTS.iter().map(|(_, w)| w).sum();
    let mut n = rng.gen_range(0..total);
    for (client, weight) in CLIENT_WEIGHTS {
        if n < *weight {
            return *client;
        }
        n -= weight;
    }
    Client::Other
}

fn make_signin(user: &User, created: OffsetDateTime, rng: &mut ChaCha8Rng) -> Value {
    let client = pick_client(rng);
    let (client_app, app, resource, interactive_share) = match client {
        // Phones sync mail mostly by refreshing tokens in the background: non-interactive.
        Client::ActiveSync => (
            "Exchange ActiveSync",
            EXCHANGE_ONLINE,
            EXCHANGE_ONLINE,
            0.15,
        ),
        Client::Browser => {
            let app = *[EXCHANGE_ONLINE, SHAREPOINT, TEAMS_WEB, AZURE_PORTAL]
                .choose(rng)
                .unwrap_or(&SHAREPOINT);
            ("Browser", app, app, 1.0)
        }
        Client::Desktop => {
            let app = if rng.gen_bool(0.6) { OFFICE } else { TEAMS };
            let resource = if app.0 == TEAMS.0 {
                GRAPH
            } else {
                EXCHANGE_ONLINE
            };
            ("Mobile Apps and Desktop clients", app, resource, 0.5)
        }
        Client::OutlookMobile => (
            "Mobile Apps and Desktop clients",
            OUTLOOK_MOBILE,
            EXCHANGE_ONLINE,
            0.15,
        ),
        Client::Imap => ("IMAP4", EXCHANGE_ONLINE, EXCHANGE_ONLINE, 1.0),
        Client::Pop => ("POP3", EXCHANGE_ONLINE, EXCHANGE_ONLINE, 1.0),
        Client::Smtp => ("Authenticated SMTP", EXCHANGE_ONLINE, EXCHANGE_ONLINE, 1.0),
        Client::Ews => (
            "Exchange Web Services",
            EXCHANGE_ONLINE,
            EXCHANGE_ONLINE,
            0.9,
        ),
        Client::Mapi => ("MAPI Over HTTP", EXCHANGE_ONLINE, EXCHANGE_ONLINE, 0.9),
        Client::Autodiscover => ("AutoDiscover", EXCHANGE_ONLINE, EXCHANGE_ONLINE, 0.9),
        Client::ExchangePowerShell => (
            "Exchange Online PowerShell",
            EXCHANGE_ONLINE,
            EXCHANGE_ONLINE,
            1.0,
        ),
        Client::OfflineAddressBook => (
            "Offline Address Book",
            EXCHANGE_ONLINE,
            EXCHANGE_ONLINE,
            0.5,
        ),
        Client::Other => ("Other clients", EXCHANGE_ONLINE, EXCHANGE_ONLINE, 1.0),
    };
    let interactive = rng.gen_bool(interactive_share);
    let event_type = if interactive {
        "interactiveUser"
    } else {
        "nonInteractiveUser"
    };

    let failure = if rng.gen_bool(0.18) {
        FAILURES.choose(rng).copied()
    } else {
        None
    };
    let status = match failure {
        Some((code, reason, details)) => {
            json!({"errorCode": code, "failureReason": reason, "additionalDetails": details})
        }
        None => json!({"errorCode": 0, "failureReason": "Other.", "additionalDetails": null}),
    };
    let blocked_by_ca = matches!(failure, Some((53003, _, _)));
    let ca_status = if blocked_by_ca {
        "failure"
    } else if rng.gen_bool(0.7) {
        "success"
    } else {
        "notApplied"
    };
    let policies = if ca_status == "notApplied" {
        json!([])
    } else {
        json!([{
            "id": "6b0f5a2c-7d1e-4c3b-9a8f-2e4d5c6b7a81",
            "displayName": "Block legacy authentication",
            "enforcedGrantControls": ["Block"],
            "enforcedSessionControls": [],
            "result": if blocked_by_ca { "failure" } else { "notApplied" }
        }])
    };

    let device = device_detail(client, user, rng);
    let (location, ip) = location(user.home, rng);
    let risk = if rng.gen_bool(0.05) { "low" } else { "none" };
    let legacy = !matches!(
        client,
        Client::Browser | Client::Desktop | Client::OutlookMobile
    );
    let incoming_token = if interactive {
        "none"
    } else if legacy {
        "refreshToken"
    } else {
        "primaryRefreshToken"
    };
    let user_agent = match client {
        Client::ActiveSync => format!("{}/17.1 ExchangeServicesClient", user.phone_os),
        Client::Browser => "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Edg/131.0.0.0".to_owned(),
        _ => String::new(),
    };

    let record = json!({
        "id": guid(rng),
        "createdDateTime": created.format(&Rfc3339).unwrap_or_default(),
        "userDisplayName": user.display_name,
        "userPrincipalName": user.upn,
        "userId": user.id,
        "appId": app.1,
        "appDisplayName": app.0,
        "ipAddress": ip,
        "clientAppUsed": client_app,
        "correlationId": guid(rng),
        "conditionalAccessStatus": ca_status,
        "isInteractive": interactive,
        "riskDetail": "none",
        "riskEventTypes_v2": [],
        "riskLevelAggregated": risk,
        "riskLevelDuringSignIn": risk,
        "riskState": if risk == "none" { "none" } else { "atRisk" },
        "resourceDisplayName": resource.0,
        "resourceId": resource.1,
        "status": status,
        "deviceDetail": device,
        "location": location,
        "appliedConditionalAccessPolicies": policies,
        "userAgent": user_agent,
        "homeTenantId": TENANT_ID,
        "resourceTenantId": TENANT_ID,
        "servicePrincipalId": "",
        "servicePrincipalName": "",
    });
    let beta = json!({
        "signInEventTypes": [event_type],
        "userType": "member",
        "authenticationRequirement": if interactive { "multiFactorAuthentication" } else { "singleFactorAuthentication" },
        "authenticationProtocol": if legacy { "ropc" } else { "none" },
        "tokenIssuerType": "AzureAD",
        "crossTenantAccessType": "none",
        "incomingTokenType": incoming_token,
        "clientCredentialType": "none",
        "originalRequestId": guid(rng),
        "uniqueTokenIdentifier": format!("{:032x}", rng.gen::<u128>()),
        "ipAddressFromResourceProvider": "",
        "autonomousSystemNumber": 8075,
        "isTenantRestricted": false,
        "managedServiceIdentity": {"msiType": "none", "associatedResourceId": null, "federatedTokenId": null, "federatedTokenIssuer": null},
    });
    with_beta(record, beta)
}

/// `record` with the beta-only properties of `beta` added (two `json!` calls: one would exceed
/// the macro's recursion limit).
fn with_beta(mut record: Value, beta: Value) -> Value {
    if let (Some(record), Value::Object(beta)) = (record.as_object_mut(), beta) {
        record.extend(beta);
    }
    record
}

/// The simulated tenant's id (`homeTenantId` / `resourceTenantId`).
pub const TENANT_ID: &str = "8f2c1d4e-5a6b-4c7d-9e8f-0a1b2c3d4e5f";

fn device_detail(client: Client, user: &User, rng: &mut ChaCha8Rng) -> Value {
    match client {
        Client::ActiveSync | Client::OutlookMobile => json!({
            "deviceId": "",
            "displayName": null,
            "operatingSystem": user.phone_os,
            "browser": "",
            "isCompliant": false,
            "isManaged": false,
            "trustType": null,
        }),
        Client::Browser | Client::Desktop => {
            let managed = rng.gen_bool(0.6);
            let (os, browser) = *[
                ("Windows10", "Edge 131.0.0"),
                ("Windows10", "Chrome 131.0.0"),
                ("MacOs", "Safari 18.1"),
                ("Linux", "Firefox 133.0"),
            ]
            .choose(rng)
            .unwrap_or(&("Windows10", "Edge 131.0.0"));
            let browser = if matches!(client, Client::Desktop) {
                ""
            } else {
                browser
            };
            if managed {
                json!({
                    "deviceId": guid(rng),
                    "displayName": format!("LAPTOP-{:06X}", rng.gen_range(0..0xFF_FFFFu32)),
                    "operatingSystem": os,
                    "browser": browser,
                    "isCompliant": rng.gen_bool(0.85),
                    "isManaged": true,
                    "trustType": "Azure AD joined",
                })
            } else {
                json!({
                    "deviceId": "",
                    "displayName": "",
                    "operatingSystem": os,
                    "browser": browser,
                    "isCompliant": false,
                    "isManaged": false,
                    "trustType": "",
                })
            }
        }
        _ => json!({
            "deviceId": "",
            "displayName": "",
            "operatingSystem": if rng.gen_bool(0.5) { "" } else { "Windows" },
            "browser": "",
            "isCompliant": false,
            "isManaged": false,
            "trustType": "",
        }),
    }
}

/// The sign-in's location and IP: usually the user's home, sometimes travel, sometimes unknown.
fn location(home: usize, rng: &mut ChaCha8Rng) -> (Value, String) {
    let roll: f64 = rng.gen();
    if roll < 0.06 {
        // Unknown location: every field present but null, as Graph reports it.
        let ip = format!(
            "2a01:111:f400:{:x}::{:x}",
            rng.gen_range(0..0xffffu32),
            rng.gen_range(1..0xffffu32)
        );
        let loc = json!({
            "city": null, "state": null, "countryOrRegion": null,
            "geoCoordinates": {"altitude": null, "latitude": null, "longitude": null}
        });
        return (loc, ip);
    }
    let place = if roll < 0.85 {
        home
    } else {
        rng.gen_range(0..PLACES.len())
    };
    let (city, state, country, lat, lon, prefix) = PLACES[place];
    let ip = format!(
        "{prefix}.{}.{}",
        rng.gen_range(0..=255u8),
        rng.gen_range(1..=254u8)
    );
    let loc = if roll > 0.97 {
        // Country known, city and coordinates not.
        json!({"city": "", "state": "", "countryOrRegion": country, "geoCoordinates": null})
    } else {
        json!({
            "city": city, "state": state, "countryOrRegion": country,
            "geoCoordinates": {"altitude": null, "latitude": lat, "longitude": lon}
        })
    };
    (loc, ip)
}

fn make_workload_signin(i: usize, created: OffsetDateTime, rng: &mut ChaCha8Rng) -> Value {
    let managed = i.is_multiple_of(3);
    let (event_type, name) = if managed {
        ("managedIdentity", "func-signin-export")
    } else {
        ("servicePrincipal", "Contoso Reporting Daemon")
    };
    let sp_id = guid(rng);
    let (location, ip) = location(i % PLACES.len(), rng);
    let msi = if managed {
        json!({
            "msiType": "systemAssigned",
            "associatedResourceId": "/subscriptions/6a1b2c3d-0000-4000-8000-000000000001/resourceGroups/rg-signins/providers/Microsoft.Web/sites/func-signin-export",
            "federatedTokenId": null,
            "federatedTokenIssuer": null
        })
    } else {
        json!({"msiType": "none", "associatedResourceId": null, "federatedTokenId": null, "federatedTokenIssuer": null})
    };
    let record = json!({
        "id": guid(rng),
        "createdDateTime": created.format(&Rfc3339).unwrap_or_default(),
        // Workload sign-ins carry no user: empty strings, as Graph sends them.
        "userDisplayName": "",
        "userPrincipalName": "",
        "userId": "",
        "appId": guid(rng),
        "appDisplayName": name,
        "servicePrincipalId": sp_id,
        "servicePrincipalName": name,
        "ipAddress": ip,
        "clientAppUsed": null,
        "correlationId": guid(rng),
        "conditionalAccessStatus": "notApplied",
        "isInteractive": false,
        "riskDetail": "none",
        "riskEventTypes_v2": [],
        "riskLevelAggregated": "none",
        "riskLevelDuringSignIn": "none",
        "riskState": "none",
        "resourceDisplayName": GRAPH.0,
        "resourceId": GRAPH.1,
        "status": {"errorCode": 0, "failureReason": null, "additionalDetails": null},
        "deviceDetail": {
            "deviceId": null, "displayName": null, "operatingSystem": null, "browser": null,
            "isCompliant": null, "isManaged": null, "trustType": null
        },
        "location": location,
        "appliedConditionalAccessPolicies": [],
        "userAgent": "",
        "homeTenantId": TENANT_ID,
        "resourceTenantId": TENANT_ID,
    });
    let beta = json!({
        "signInEventTypes": [event_type],
        "userType": null,
        "authenticationRequirement": "singleFactorAuthentication",
        "authenticationProtocol": "none",
        "tokenIssuerType": "AzureAD",
        "crossTenantAccessType": "none",
        "incomingTokenType": "none",
        "clientCredentialType": if managed { "managedIdentity" } else { "clientSecret" },
        "originalRequestId": guid(rng),
        "uniqueTokenIdentifier": format!("{:032x}", rng.gen::<u128>()),
        "ipAddressFromResourceProvider": null,
        "autonomousSystemNumber": 8075,
        "isTenantRestricted": false,
        "managedServiceIdentity": msi,
    });
    with_beta(record, beta)
}

#[cfg(test)]
mod tests {
    use super::*;
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
        assert!(records
            .iter()
            .any(|r| r["location"]["geoCoordinates"].is_null()));
        assert!(records.iter().any(|r| r["location"]["city"].is_null()));
        assert!(records
            .iter()
            .any(|r| r["location"]["geoCoordinates"]["latitude"].is_f64()));
        let countries = field("ipAddress").len();
        assert!(countries > 50);
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
                && r["resourceId"] == EXCHANGE_ONLINE.1));
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
            .all(|r| r["incomingTokenType"] == "refreshToken"));
        // Workloads: no user, a managed identity says which kind.
        for r in records.iter().filter(|r| types(r) == "managedIdentity") {
            assert_eq!(r["userPrincipalName"], "");
            assert_eq!(r["managedServiceIdentity"]["msiType"], "systemAssigned");
        }
    }
}
