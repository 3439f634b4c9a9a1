//! How a user sign-in was authenticated and what Conditional Access made of it: the tenant's
//! policies evaluated for every user sign-in (each one listed in `appliedConditionalAccessPolicies`
//! with its result, as Graph does), `conditionalAccessStatus` derived from those results, and the
//! authentication steps, methods and requirements that go with them.
//!
//! Result values and the policy object's members are those of `appliedConditionalAccessPolicy`
//! in the beta CSDL (`metadata/`); `conditionsSatisfied`/`conditionsNotSatisfied` are the flags
//! enum `conditionalAccessConditions`, comma-joined as Graph writes them (e.g.
//! `"application,users"` in MicrosoftDocs/entra-docs
//! `docs/identity/monitoring-health/reference-sign-ins-log-schema.md`).

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

/// A policy's state in the tenant.
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Enabled,
    /// `enabledForReportingButNotEnforced`: evaluated, results `reportOnly…`, never enforced.
    ReportOnly,
    Disabled,
}

/// What a policy targets (the simulation's rules, one per policy).
#[derive(Clone, Copy)]
enum Target {
    /// Browser and modern clients of every user: require MFA.
    ModernClients,
    /// Legacy authentication clients: block.
    LegacyClients,
    /// Medium and high sign-in risk: block.
    RiskySignIns,
    /// SharePoint: require a compliant device.
    SharePoint,
    /// Browsers on unmanaged devices: sign-in frequency.
    UnmanagedBrowsers,
    /// Azure management: require MFA.
    AzureManagement,
}

struct Policy {
    id: &'static str,
    name: &'static str,
    state: State,
    target: Target,
    grant: &'static [&'static str],
    session: &'static [&'static str],
}

/// The tenant's Conditional Access policies: every user sign-in lists all of them.
const POLICIES: &[Policy] = &[
    Policy {
        id: "0f2c3b1a-7d4e-4a6b-9c8d-1e2f3a4b5c61",
        name: "CA001: Require multifactor authentication for all users",
        state: State::Enabled,
        target: Target::ModernClients,
        grant: &["Mfa"],
        session: &[],
    },
    Policy {
        id: "6b0f5a2c-7d1e-4c3b-9a8f-2e4d5c6b7a81",
        name: "CA002: Block legacy authentication",
        state: State::ReportOnly,
        target: Target::LegacyClients,
        grant: &["Block"],
        session: &[],
    },
    Policy {
        id: "3d9e8f7a-1b2c-4d5e-8f90-a1b2c3d4e5f6",
        name: "CA003: Block medium and high risk sign-ins",
        state: State::Enabled,
        target: Target::RiskySignIns,
        grant: &["Block"],
        session: &[],
    },
    Policy {
        id: "8a7b6c5d-4e3f-4a1b-9c0d-e1f2a3b4c5d6",
        name: "CA004: Require compliant device for SharePoint",
        state: State::Disabled,
        target: Target::SharePoint,
        grant: &["RequireCompliantDevice"],
        session: &[],
    },
    Policy {
        id: "c4d5e6f7-a8b9-4c0d-8e1f-2a3b4c5d6e7f",
        name: "CA005: Sign-in frequency for unmanaged browsers",
        state: State::ReportOnly,
        target: Target::UnmanagedBrowsers,
        grant: &[],
        session: &["SignInFrequency"],
    },
    Policy {
        id: "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9",
        name: "CA006: Require multifactor authentication for Azure management",
        state: State::Enabled,
        target: Target::AzureManagement,
        grant: &["Mfa"],
        session: &[],
    },
];

/// The number of Conditional Access policies in the tenant (each user sign-in lists them all).
pub const POLICY_COUNT: usize = POLICIES.len();

/// The Windows Azure Service Management API, which Azure management policies target.
pub(super) const AZURE_MANAGEMENT_RESOURCE: &str = "797f4846-ba00-4fd7-ba43-dac1f8f63013";

/// What Conditional Access and the authentication steps depend on.
pub(super) struct Facts<'a> {
    pub legacy: bool,
    pub browser: bool,
    pub interactive: bool,
    pub managed_device: bool,
    pub resource_id: &'a str,
    pub resource_name: &'a str,
    /// The Entra error code, 0 on success.
    pub error_code: i64,
    /// Sign-in risk is medium or high (CA003 blocks it: the sign-in fails with 53003).
    pub risky: bool,
}

impl Facts<'_> {
    /// Whether the first factor failed, so Conditional Access was never evaluated.
    fn failed_before_conditional_access(&self) -> bool {
        matches!(self.error_code, 50126 | 50053 | 50140)
    }

    fn mfa_missing(&self) -> bool {
        self.error_code == 50074
    }
}

/// One policy's evaluation: applies (and whether its controls were satisfied), or not, naming
/// the condition that did not match.
enum Evaluation {
    Applies { satisfied: bool, interrupted: bool },
    NotApplies { missing: &'static str },
}

fn evaluate(policy: &Policy, facts: &Facts, rng: &mut ChaCha8Rng) -> Evaluation {
    use Evaluation::{Applies, NotApplies};
    match policy.target {
        Target::ModernClients if facts.legacy => NotApplies {
            missing: "clientType",
        },
        Target::ModernClients => Applies {
            satisfied: !facts.mfa_missing(),
            interrupted: false,
        },
        Target::LegacyClients if facts.legacy => Applies {
            satisfied: false,
            interrupted: false,
        },
        Target::LegacyClients => NotApplies {
            missing: "clientType",
        },
        Target::RiskySignIns if facts.risky => Applies {
            satisfied: false,
            interrupted: false,
        },
        Target::RiskySignIns => NotApplies {
            missing: "signInRisk",
        },
        Target::SharePoint if facts.resource_name.contains("SharePoint") => Applies {
            satisfied: facts.managed_device,
            interrupted: false,
        },
        Target::SharePoint => NotApplies {
            missing: "application",
        },
        Target::UnmanagedBrowsers if facts.browser && !facts.managed_device => Applies {
            satisfied: true,
            // Report-only: the sign-in would have been interrupted to reauthenticate.
            interrupted: facts.interactive && rng.gen_bool(0.3),
        },
        Target::UnmanagedBrowsers => NotApplies {
            missing: "deviceState",
        },
        Target::AzureManagement if facts.resource_id == AZURE_MANAGEMENT_RESOURCE => Applies {
            satisfied: !facts.mfa_missing(),
            interrupted: false,
        },
        Target::AzureManagement => NotApplies {
            missing: "application",
        },
    }
}

/// Conditional Access for one user sign-in.
pub(super) struct Outcome {
    /// `conditionalAccessStatus`: `failure` if an enabled policy failed, else `success` if one
    /// applied, else `notApplied` (report-only and disabled policies never count).
    pub status: &'static str,
    /// `appliedConditionalAccessPolicies`: every policy of the tenant.
    pub policies: Value,
    /// An enabled policy requiring MFA applied.
    pub mfa_required: bool,
    /// Conditional Access was evaluated (the first factor succeeded).
    pub evaluated: bool,
}

pub(super) fn conditional_access(facts: &Facts, rng: &mut ChaCha8Rng) -> Outcome {
    let evaluated = !facts.failed_before_conditional_access();
    let mut failure = false;
    let mut success = false;
    let mut mfa_required = false;
    let mut listed = Vec::with_capacity(POLICIES.len());
    for policy in POLICIES {
        let evaluation = if evaluated && policy.state != State::Disabled {
            evaluate(policy, facts, rng)
        } else {
            Evaluation::NotApplies { missing: "none" }
        };
        let result = match (&evaluation, policy.state) {
            (_, State::Disabled) => "notEnabled",
            (Evaluation::NotApplies { .. }, State::Enabled) => "notApplied",
            (Evaluation::NotApplies { .. }, State::ReportOnly) => "reportOnlyNotApplied",
            (Evaluation::Applies { satisfied, .. }, State::Enabled) => {
                if policy.grant.contains(&"Mfa") {
                    mfa_required = true;
                }
                if *satisfied {
                    success = true;
                    "success"
                } else {
                    failure = true;
                    "failure"
                }
            }
            (
                Evaluation::Applies {
                    interrupted: true, ..
                },
                State::ReportOnly,
            ) => "reportOnlyInterrupted",
            (Evaluation::Applies { satisfied, .. }, State::ReportOnly) => {
                if *satisfied {
                    "reportOnlySuccess"
                } else {
                    "reportOnlyFailure"
                }
            }
        };
        listed.push(policy_object(policy, &evaluation, result, evaluated));
    }
    let status = if failure {
        "failure"
    } else if success {
        "success"
    } else {
        "notApplied"
    };
    Outcome {
        status,
        policies: Value::Array(listed),
        mfa_required,
        evaluated,
    }
}

fn policy_object(policy: &Policy, evaluation: &Evaluation, result: &str, evaluated: bool) -> Value {
    let applies = matches!(evaluation, Evaluation::Applies { .. });
    let (satisfied, not_satisfied) = match evaluation {
        _ if !evaluated || policy.state == State::Disabled => ("none", "none"),
        Evaluation::Applies { .. } => match policy.target {
            Target::ModernClients | Target::LegacyClients => {
                ("application,users,clientType", "none")
            }
            Target::RiskySignIns => ("application,users,signInRisk", "none"),
            Target::UnmanagedBrowsers => ("application,users,clientType,deviceState", "none"),
            Target::SharePoint | Target::AzureManagement => ("application,users", "none"),
        },
        Evaluation::NotApplies { missing } => match *missing {
            "application" => ("users", *missing),
            _ => ("application,users", *missing),
        },
    };
    let include_rules = if applies {
        let application = match policy.target {
            Target::AzureManagement => "microsoftAdminPortals",
            Target::SharePoint => "appId",
            _ => "allApps",
        };
        json!([
            {"conditionalAccessCondition": "application", "ruleSatisfied": application},
            {"conditionalAccessCondition": "users", "ruleSatisfied": "allUsers"}
        ])
    } else {
        json!([])
    };
    let enforced = |controls: &[&str]| {
        if applies && evaluated {
            json!(controls)
        } else {
            json!([])
        }
    };
    json!({
        "id": policy.id,
        "displayName": policy.name,
        "enforcedGrantControls": enforced(policy.grant),
        "enforcedSessionControls": enforced(policy.session),
        "sessionControlsNotSatisfied": [],
        "result": result,
        "conditionsSatisfied": satisfied,
        "conditionsNotSatisfied": not_satisfied,
        "authenticationStrength": null,
        "includeRulesSatisfied": include_rules,
        "excludeRulesSatisfied": [],
    })
}

/// How a user sign-in authenticated.
pub(super) struct Authentication {
    /// `authenticationDetails`: the steps, in order.
    pub details: Value,
    /// `authenticationMethodsUsed`.
    pub methods: Value,
    /// `mfaDetail`.
    pub mfa: Value,
    /// `authenticationRequirement`.
    pub requirement: &'static str,
    /// `authenticationRequirementPolicies`.
    pub requirement_policies: Value,
}

/// Second factors: `(authenticationMethod, authenticationMethodDetail, mfaDetail.authMethod)`.
const SECOND_FACTORS: &[(&str, Option<&str>, &str)] = &[
    ("Mobile app notification", None, "PhoneAppNotification"),
    ("OATH verification code", None, "PhoneAppOTP"),
    ("Text message", Some("+X XXXXXXXX42"), "OneWaySMS"),
    ("Passkey (Microsoft Authenticator)", None, "Passkey"),
];

pub(super) fn authentication(
    facts: &Facts,
    ca: &Outcome,
    created: &str,
    rng: &mut ChaCha8Rng,
) -> Authentication {
    let step = |method: &str, detail: Option<&str>, ok: bool, result: &str, requirement: &str| {
        json!({
            "authenticationStepDateTime": created,
            "authenticationMethod": method,
            "authenticationMethodDetail": detail,
            "succeeded": ok,
            "authenticationStepResultDetail": result,
            "authenticationStepRequirement": requirement,
        })
    };
    // MFA done earlier in the session, carried by the token.
    let mfa_by_claim = || {
        step(
            "Previously satisfied",
            None,
            true,
            "MFA requirement satisfied by claim in the token",
            "Multifactor authentication",
        )
    };
    let mut steps = Vec::new();
    let mut methods: Vec<&str> = Vec::new();
    let mut mfa_method: Option<&str> = None;
    if !facts.interactive {
        // Token refreshes: the factors were satisfied by claims in the refresh token.
        steps.push(step(
            "Previously satisfied",
            None,
            true,
            "First factor requirement satisfied by claim in the token",
            "Primary authentication",
        ));
        if ca.mfa_required && !facts.mfa_missing() {
            steps.push(mfa_by_claim());
        }
    } else {
        let detail = if rng.gen_bool(0.7) {
            "Password Hash Sync"
        } else {
            "Password in the cloud"
        };
        let (ok, result) = match facts.error_code {
            50126 => (
                false,
                "Invalid username or password or Invalid on-premise username or password.",
            ),
            50053 => (false, "Account is locked"),
            _ => (true, "Correct password"),
        };
        steps.push(step(
            "Password",
            Some(detail),
            ok,
            result,
            "Primary authentication",
        ));
        methods.push("Password");
        if ca.mfa_required && ca.evaluated {
            let (method, method_detail, mfa) =
                *SECOND_FACTORS.choose(rng).unwrap_or(&SECOND_FACTORS[0]);
            if facts.mfa_missing() {
                steps.push(step(
                    method,
                    method_detail,
                    false,
                    "MFA required in Azure AD",
                    "Multifactor authentication",
                ));
            } else if rng.gen_bool(0.3) {
                steps.push(mfa_by_claim());
            } else {
                steps.push(step(
                    method,
                    method_detail,
                    true,
                    "MFA successfully completed",
                    "Multifactor authentication",
                ));
                methods.push(method);
                mfa_method = Some(mfa);
            }
        }
    }
    let requirement = if ca.mfa_required {
        "multiFactorAuthentication"
    } else {
        "singleFactorAuthentication"
    };
    let requirement_policies = if ca.mfa_required {
        json!([{"requirementProvider": "multiConditionalAccess", "detail": "Conditional Access"}])
    } else {
        json!([])
    };
    Authentication {
        details: Value::Array(steps),
        methods: json!(methods),
        mfa: json!({"authMethod": mfa_method, "authDetail": null}),
        requirement,
        requirement_policies,
    }
}
