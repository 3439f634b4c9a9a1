//! One sign-in record with every property of Graph beta's `signIn` (and `riskEventTypes`, the
//! v1.0-only one; the fake leaves out of each answer what its version lacks): the client and app
//! a user signed in with, the device, the token, risk, and the workload (service principal and
//! managed identity) sign-ins with no user at all.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};

use super::access::{self, Facts};
use super::places::{self, Origin};
use super::{guid, User, PARTNER_TENANT_ID, TENANT_ID};

/// The tenant that owns Microsoft's first-party apps and resources (`appOwnerTenantId`,
/// `resourceOwnerTenantId`).
const MICROSOFT_SERVICES_TENANT: &str = "f8cdef31-a31e-4b4a-93e4-5f571e91255a";

/// An app or resource: `(displayName, appId, the tenant's service principal id for it)`.
type App = (&'static str, &'static str, &'static str);

const EXCHANGE_ONLINE: App = (
    "Office 365 Exchange Online",
    "00000002-0000-0ff1-ce00-000000000000",
    "4e1f0b2a-6c3d-4b5e-8f7a-9b0c1d2e3f41",
);
const SHAREPOINT: App = (
    "Office 365 SharePoint Online",
    "00000003-0000-0ff1-ce00-000000000000",
    "7a2b3c4d-5e6f-4a0b-9c1d-2e3f4a5b6c72",
);
const TEAMS_WEB: App = (
    "Microsoft Teams Web Client",
    "5e3ce6c0-2b1f-4285-8d4b-75ee78787346",
    "1b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d53",
);
const TEAMS: App = (
    "Microsoft Teams",
    "1fec8e78-bce4-4aaf-ab1b-5451cc387264",
    "2c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e64",
);
const OFFICE: App = (
    "Microsoft Office",
    "d3590ed6-52b3-4102-aeff-aad2292ab01c",
    "3d4e5f6a-7b8c-4d9e-8f0a-1b2c3d4e5f75",
);
const OUTLOOK_MOBILE: App = (
    "Outlook Mobile",
    "27922004-5251-4030-b22d-91ecd9a37ea4",
    "4e5f6a7b-8c9d-4e0f-9a1b-2c3d4e5f6a86",
);
const AZURE_PORTAL: App = (
    "Azure Portal",
    "c44b4083-3bb0-49c1-b47d-974e53cbdf3c",
    "5f6a7b8c-9d0e-4f1a-8b2c-3d4e5f6a7b97",
);
const AZURE_MANAGEMENT: App = (
    "Windows Azure Service Management API",
    access::AZURE_MANAGEMENT_RESOURCE,
    "6a7b8c9d-0e1f-4a2b-9c3d-4e5f6a7b8ca8",
);
pub(super) const GRAPH: App = (
    "Microsoft Graph",
    "00000003-0000-0000-c000-000000000000",
    "7b8c9d0e-1f2a-4b3c-8d4e-5f6a7b8c9db9",
);

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

/// The kinds of client the simulation draws from, with their relative weights.
#[derive(Clone, Copy, PartialEq, Eq)]
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

/// A 22-character base64url token identifier (16 bytes, the last one zero as in the tokens'
/// `uti` claims Graph reports).
fn token_identifier(rng: &mut ChaCha8Rng) -> String {
    let mut bytes: [u8; 16] = rng.gen();
    bytes[15] = 0;
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Risk of a sign-in: the level (aggregated and during sign-in alike), state, detail and the
/// detections (`riskEventTypes`, `riskEventTypes_v2`).
struct Risk {
    level: &'static str,
    state: &'static str,
    detail: &'static str,
    events: &'static [&'static str],
}

/// Risk levels and detections of the sign-ins Conditional Access blocks for risk.
const BLOCKED_RISKS: &[(&str, &[&str])] = &[
    ("high", &["anonymizedIPAddress"]),
    ("medium", &["unfamiliarFeatures"]),
    ("medium", &["unlikelyTravel", "unfamiliarFeatures"]),
];

impl Risk {
    /// No risk detected.
    const NONE: Risk = Risk {
        level: "none",
        state: "none",
        detail: "none",
        events: &[],
    };
}

fn risk(blocked_by_risk: bool, rng: &mut ChaCha8Rng) -> Risk {
    if blocked_by_risk {
        let (level, events) = *BLOCKED_RISKS.choose(rng).unwrap_or(&BLOCKED_RISKS[0]);
        return Risk {
            level,
            state: "atRisk",
            detail: "none",
            events,
        };
    }
    match rng.gen_range(0..100) {
        0..=3 => Risk {
            level: "low",
            state: "atRisk",
            detail: "none",
            events: &["unfamiliarFeatures"],
        },
        4 => Risk {
            level: "low",
            state: "dismissed",
            detail: "adminDismissedAllRiskForUser",
            events: &["unfamiliarFeatures"],
        },
        _ => Risk::NONE,
    }
}

/// Inserts `key: value` (the records have too many members for one `json!`).
fn put(record: &mut Map<String, Value>, key: &str, value: Value) {
    record.insert(key.to_owned(), value);
}

/// A user's sign-in at `created` (RFC 3339, whole seconds).
pub(super) fn user_signin(user: &User, created: &str, rng: &mut ChaCha8Rng) -> Value {
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
            let resource = if app.1 == AZURE_PORTAL.1 {
                AZURE_MANAGEMENT
            } else {
                app
            };
            ("Browser", app, resource, 1.0)
        }
        Client::Desktop => {
            let app = if rng.gen_bool(0.6) { OFFICE } else { TEAMS };
            let resource = if app.1 == TEAMS.1 {
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
    let legacy = !matches!(
        client,
        Client::Browser | Client::Desktop | Client::OutlookMobile
    );
    // Failures: a first factor only fails interactively, and legacy clients cannot do MFA.
    let failure = if rng.gen_bool(0.18) {
        let possible: Vec<_> = FAILURES
            .iter()
            .filter(|(code, _, _)| interactive || !matches!(code, 50126 | 50053 | 50140))
            .filter(|(code, _, _)| !legacy || *code != 50074)
            .collect();
        possible.choose(rng).copied().copied()
    } else {
        None
    };
    let error_code = failure.map_or(0, |f| f.0);
    let status = match failure {
        Some((code, reason, details)) => {
            json!({"errorCode": code, "failureReason": reason, "additionalDetails": details})
        }
        None => json!({"errorCode": 0, "failureReason": "Other.", "additionalDetails": null}),
    };
    let risk = risk(error_code == 53003, rng);
    let device = user_device(client, user, rng);
    let managed_device = device.get("isManaged") == Some(&Value::Bool(true));
    let origin = places::origin(user.home, rng);

    let facts = Facts {
        legacy,
        browser: client == Client::Browser,
        interactive,
        managed_device,
        resource_id: resource.1,
        resource_name: resource.0,
        error_code,
        risky: error_code == 53003,
    };
    let ca = access::conditional_access(&facts, rng);
    let auth = access::authentication(&facts, &ca, created, rng);

    // Tokens and protocols (the flags enums are sometimes several members, comma-joined).
    let protocol = if legacy && interactive {
        "ropc"
    } else if !interactive {
        "none"
    } else {
        match rng.gen_range(0..100) {
            0..=1 => "deviceCode",
            2 => "oAuth2,deviceCode",
            _ => "oAuth2",
        }
    };
    let incoming_token = if interactive {
        "none"
    } else if legacy {
        "refreshToken"
    } else {
        match rng.gen_range(0..100) {
            0..=59 => "primaryRefreshToken",
            60..=96 => "refreshToken",
            _ => "primaryRefreshToken,refreshToken",
        }
    };
    let cross_tenant = if !user.guest {
        "none"
    } else if client == Client::Desktop && app.1 == TEAMS.1 {
        // A guest in a Teams shared channel: collaboration and direct connect at once.
        "b2bCollaboration,b2bDirectConnect"
    } else {
        "b2bCollaboration"
    };
    let user_agent = match client {
        Client::ActiveSync => format!("{}/17.1 ExchangeServicesClient", user.phone_os),
        Client::Browser => "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0".to_owned(),
        Client::OutlookMobile => format!("Outlook-{}/2.0", user.phone_os),
        _ => String::new(),
    };
    let id = guid(rng);
    let mut processing = vec![
        json!({"key": "Legacy TLS (TLS 1.0, 1.1, 3DES)", "value": "False"}),
        json!({"key": "Is CAE Token", "value": if legacy { "False" } else { "True" }}),
    ];
    if !legacy {
        processing.push(json!({"key": "Root Key Type", "value": "Unknown"}));
        if resource.1 == EXCHANGE_ONLINE.1 {
            processing.push(json!({
                "key": "Oauth Scope Info",
                "value": "[\"EAS.AccessAsUser.All\",\"EWS.AccessAsUser.All\",\"Mail.ReadWrite\",\"offline_access\"]"
            }));
        }
    }
    if client == Client::Desktop {
        processing.push(json!({
            "key": "Azure AD App Authentication Library",
            "value": "Family: MSAL Library: MSAL.NET 4.66.1.0 Platform: .NET FW"
        }));
    }
    if client == Client::Browser && interactive {
        processing.push(json!({"key": "Login Hint Present", "value": "True"}));
    }
    let home_tenant = if user.guest {
        PARTNER_TENANT_ID
    } else {
        TENANT_ID
    };

    let mut r = Map::new();
    put(&mut r, "id", json!(id));
    put(&mut r, "createdDateTime", json!(created));
    put(&mut r, "userDisplayName", json!(user.display_name));
    put(&mut r, "userPrincipalName", json!(user.upn));
    put(&mut r, "userId", json!(user.id));
    put(
        &mut r,
        "userType",
        json!(if user.guest { "guest" } else { "member" }),
    );
    put(&mut r, "appId", json!(app.1));
    put(&mut r, "appDisplayName", json!(app.0));
    put(&mut r, "appOwnerTenantId", json!(MICROSOFT_SERVICES_TENANT));
    put(&mut r, "ipAddress", json!(origin.ip));
    put(&mut r, "ipAddressFromResourceProvider", json!(""));
    put(&mut r, "autonomousSystemNumber", json!(origin.asn));
    put(&mut r, "clientAppUsed", json!(client_app));
    put(&mut r, "userAgent", json!(user_agent));
    put(&mut r, "correlationId", json!(guid(rng)));
    put(&mut r, "originalRequestId", json!(id));
    put(&mut r, "conditionalAccessStatus", json!(ca.status));
    put(&mut r, "isInteractive", json!(interactive));
    let event_type = if interactive {
        "interactiveUser"
    } else {
        "nonInteractiveUser"
    };
    put(&mut r, "signInEventTypes", json!([event_type]));
    put(&mut r, "authenticationProtocol", json!(protocol));
    put(&mut r, "incomingTokenType", json!(incoming_token));
    put(&mut r, "crossTenantAccessType", json!(cross_tenant));
    put(&mut r, "authenticationRequirement", json!(auth.requirement));
    put(
        &mut r,
        "authenticationRequirementPolicies",
        auth.requirement_policies,
    );
    put(&mut r, "authenticationMethodsUsed", auth.methods);
    put(&mut r, "authenticationDetails", auth.details);
    put(&mut r, "mfaDetail", auth.mfa);
    put(
        &mut r,
        "authenticationProcessingDetails",
        Value::Array(processing),
    );
    put(&mut r, "appliedConditionalAccessPolicies", ca.policies);
    let audiences = if ca.evaluated {
        json!([resource.1])
    } else {
        json!([])
    };
    put(&mut r, "conditionalAccessAudiences", audiences);
    put(&mut r, "networkLocationDetails", origin.networks);
    put(&mut r, "location", origin.location);
    put(&mut r, "deviceDetail", device);
    put(&mut r, "status", status);
    put(&mut r, "homeTenantId", json!(home_tenant));
    let session = if legacy { String::new() } else { guid(rng) };
    put(&mut r, "sessionId", json!(session));
    put(&mut r, "signInIdentifier", json!(user.upn));
    let identifier_type = if interactive {
        json!("userPrincipalName")
    } else {
        Value::Null
    };
    put(&mut r, "signInIdentifierType", identifier_type);
    put(
        &mut r,
        "processingTimeInMilliseconds",
        json!(rng.gen_range(40..900)),
    );
    common(&mut r, resource, &risk, rng);
    put(&mut r, "clientCredentialType", json!("none"));
    put(&mut r, "servicePrincipalId", json!(""));
    put(&mut r, "servicePrincipalName", json!(""));
    put(&mut r, "servicePrincipalCredentialKeyId", json!(""));
    put(&mut r, "servicePrincipalCredentialThumbprint", json!(""));
    put(&mut r, "azureResourceId", Value::Null);
    put(
        &mut r,
        "managedServiceIdentity",
        json!({"msiType": "none", "associatedResourceId": null, "federatedTokenId": null, "federatedTokenIssuer": null}),
    );
    Value::Object(r)
}

/// The members every sign-in has in the same form: the resource, risk, the token and its
/// protection, agents, Global Secure Access, private links, and the lists only some tenants fill.
fn common(r: &mut Map<String, Value>, resource: App, risk: &Risk, rng: &mut ChaCha8Rng) {
    put(r, "resourceDisplayName", json!(resource.0));
    put(r, "resourceId", json!(resource.1));
    put(r, "resourceServicePrincipalId", json!(resource.2));
    put(r, "resourceOwnerTenantId", json!(MICROSOFT_SERVICES_TENANT));
    put(r, "resourceTenantId", json!(TENANT_ID));
    put(r, "homeTenantName", json!(""));
    put(r, "riskDetail", json!(risk.detail));
    put(r, "riskLevelAggregated", json!(risk.level));
    put(r, "riskLevelDuringSignIn", json!(risk.level));
    put(r, "riskState", json!(risk.state));
    put(r, "riskEventTypes", json!(risk.events));
    put(r, "riskEventTypes_v2", json!(risk.events));
    put(r, "tokenIssuerType", json!("AzureAD"));
    put(r, "tokenIssuerName", json!(""));
    put(r, "uniqueTokenIdentifier", json!(token_identifier(rng)));
    put(r, "clientSessionId", json!(""));
    put(r, "federatedCredentialId", Value::Null);
    for list in [
        "authenticationContextClassReferences",
        "authenticationAppPolicyEvaluationDetails",
        "appliedEventListeners",
        "sessionLifetimePolicies",
    ] {
        put(r, list, json!([]));
    }
    put(r, "authenticationAppDeviceDetails", Value::Null);
    let protection = if rng.gen_bool(0.1) {
        "bound"
    } else {
        "unbound"
    };
    put(r, "signInTokenProtectionStatus", json!(protection));
    put(r, "appTokenProtectionStatus", json!("none"));
    put(
        r,
        "tokenProtectionStatusDetails",
        json!({"signInSessionStatus": protection, "signInSessionStatusCode": null}),
    );
    put(
        r,
        "agent",
        json!({"agentType": "notAgentic", "agentSubjectType": "notAgentic", "agentSubjectParentId": null, "parentAppId": null}),
    );
    put(r, "originalTransferMethod", json!("none"));
    put(r, "flaggedForReview", json!(false));
    put(r, "isTenantRestricted", json!(false));
    put(r, "isThroughGlobalSecureAccess", json!(false));
    put(r, "globalSecureAccessIpAddress", json!(""));
    put(
        r,
        "privateLinkDetails",
        json!({"policyId": "", "policyName": "", "policyTenantId": "", "resourceId": ""}),
    );
}

fn user_device(client: Client, user: &User, rng: &mut ChaCha8Rng) -> Value {
    match client {
        Client::ActiveSync | Client::OutlookMobile => json!({
            "deviceId": "",
            "displayName": null,
            "operatingSystem": user.phone_os,
            "browser": "",
            "browserId": "",
            "isCompliant": false,
            "isManaged": false,
            "trustType": null,
        }),
        Client::Browser | Client::Desktop => {
            let (os, browser) = *[
                ("Windows10", "Edge 131.0.0"),
                ("Windows10", "Chrome 131.0.0"),
                ("MacOs", "Safari 18.1"),
                ("Linux", "Firefox 133.0"),
            ]
            .choose(rng)
            .unwrap_or(&("Windows10", "Edge 131.0.0"));
            let browser = if client == Client::Desktop {
                ""
            } else {
                browser
            };
            match &user.laptop {
                Some((device_id, name)) if rng.gen_bool(0.8) => json!({
                    "deviceId": device_id,
                    "displayName": name,
                    "operatingSystem": os,
                    "browser": browser,
                    "browserId": "",
                    "isCompliant": rng.gen_bool(0.85),
                    "isManaged": true,
                    "trustType": "Azure AD joined",
                }),
                _ => json!({
                    "deviceId": "",
                    "displayName": "",
                    "operatingSystem": os,
                    "browser": browser,
                    "browserId": "",
                    "isCompliant": false,
                    "isManaged": false,
                    "trustType": "",
                }),
            }
        }
        _ => json!({
            "deviceId": "",
            "displayName": "",
            "operatingSystem": if rng.gen_bool(0.5) { "" } else { "Windows" },
            "browser": "",
            "browserId": "",
            "isCompliant": false,
            "isManaged": false,
            "trustType": "",
        }),
    }
}

/// The `i`-th workload sign-in: every third a managed identity, the others a service principal.
/// No user: `userId` null (managed identities have no user names at all, service principals
/// empty ones), and a `deviceDetail` without most of its members.
pub(super) fn workload_signin(i: usize, created: &str, rng: &mut ChaCha8Rng) -> Value {
    let managed = i.is_multiple_of(3);
    let (event_type, name) = if managed {
        ("managedIdentity", "func-signin-export")
    } else {
        ("servicePrincipal", "Contoso Reporting Daemon")
    };
    let sp_id = guid(rng);
    let app_id = guid(rng);
    let Origin {
        location, ip, asn, ..
    } = places::azure_origin(i, rng);
    let credential = if managed {
        "managedIdentity"
    } else if rng.gen_bool(0.5) {
        "certificate"
    } else {
        "clientSecret"
    };
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
    let device = if managed {
        json!({})
    } else {
        json!({"deviceId": "", "operatingSystem": "", "browser": ""})
    };
    let id = guid(rng);
    let mut r = Map::new();
    put(&mut r, "id", json!(id));
    put(&mut r, "createdDateTime", json!(created));
    let (display_name, upn) = if managed {
        (Value::Null, Value::Null)
    } else {
        (json!(""), json!(""))
    };
    put(&mut r, "userDisplayName", display_name);
    put(&mut r, "userPrincipalName", upn);
    put(&mut r, "userId", Value::Null);
    put(&mut r, "userType", Value::Null);
    put(&mut r, "appId", json!(app_id));
    put(&mut r, "appDisplayName", json!(name));
    put(&mut r, "appOwnerTenantId", json!(TENANT_ID));
    put(&mut r, "servicePrincipalId", json!(sp_id));
    put(&mut r, "servicePrincipalName", json!(name));
    let key_id = if managed { String::new() } else { guid(rng) };
    put(&mut r, "servicePrincipalCredentialKeyId", json!(key_id));
    let thumbprint = if credential == "certificate" {
        format!("{:040X}", rng.gen::<u128>())
    } else {
        String::new()
    };
    put(
        &mut r,
        "servicePrincipalCredentialThumbprint",
        json!(thumbprint),
    );
    put(&mut r, "clientCredentialType", json!(credential));
    let azure_resource = if managed {
        msi["associatedResourceId"].clone()
    } else {
        Value::Null
    };
    put(&mut r, "azureResourceId", azure_resource);
    put(&mut r, "managedServiceIdentity", msi);
    put(&mut r, "ipAddress", json!(ip));
    put(&mut r, "ipAddressFromResourceProvider", Value::Null);
    put(&mut r, "autonomousSystemNumber", json!(asn));
    put(&mut r, "clientAppUsed", Value::Null);
    put(&mut r, "userAgent", json!(""));
    put(&mut r, "correlationId", json!(guid(rng)));
    put(&mut r, "originalRequestId", json!(id));
    put(&mut r, "conditionalAccessStatus", json!("notApplied"));
    put(&mut r, "isInteractive", json!(false));
    put(&mut r, "signInEventTypes", json!([event_type]));
    put(&mut r, "authenticationProtocol", json!("none"));
    put(&mut r, "incomingTokenType", json!("none"));
    put(&mut r, "crossTenantAccessType", json!("none"));
    put(
        &mut r,
        "authenticationRequirement",
        json!("singleFactorAuthentication"),
    );
    put(&mut r, "authenticationRequirementPolicies", json!([]));
    put(&mut r, "authenticationMethodsUsed", json!([]));
    put(&mut r, "authenticationDetails", json!([]));
    put(
        &mut r,
        "mfaDetail",
        json!({"authMethod": null, "authDetail": null}),
    );
    put(
        &mut r,
        "authenticationProcessingDetails",
        json!([
            {"key": "Azure AD App Authentication Library", "value": "Family: MSAL Library: MSAL.NET 4.66.1.0 Platform: .NET"},
            {"key": "Is CAE Token", "value": "False"}
        ]),
    );
    put(&mut r, "appliedConditionalAccessPolicies", json!([]));
    put(&mut r, "conditionalAccessAudiences", json!([]));
    put(&mut r, "networkLocationDetails", json!([]));
    put(&mut r, "location", location);
    put(&mut r, "deviceDetail", device);
    put(
        &mut r,
        "status",
        json!({"errorCode": 0, "failureReason": null, "additionalDetails": null}),
    );
    put(&mut r, "homeTenantId", json!(TENANT_ID));
    put(&mut r, "sessionId", json!(""));
    put(&mut r, "signInIdentifier", json!(""));
    put(&mut r, "signInIdentifierType", Value::Null);
    put(
        &mut r,
        "processingTimeInMilliseconds",
        json!(rng.gen_range(5..120)),
    );
    common(&mut r, GRAPH, &Risk::NONE, rng);
    Value::Object(r)
}
