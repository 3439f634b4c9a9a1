//! The sign-in record as the rest of the pipeline sees it, and the API vocabulary every stage
//! shares (the Graph version, the sign-in event types).
//!
//! Graph's `signIn` resource has dozens of nested, version-dependent properties. A page is
//! deserialized straight into [`SignInRecord`]: typed fields for exactly the properties some
//! column or the filter reads, text borrowed from the page's bytes (an owned copy only for
//! strings with JSON escapes), everything else skipped while parsing. There is no
//! `serde_json::Value` tree per record: that tree (one allocation per property, a map per
//! object) was a third of the export's CPU (issue 10). Each property is a [`Field`] that keeps
//! the JSON type it arrived with, so the flattener's rules (numbers, booleans, arrays joined,
//! objects as compact JSON) see what Graph sent, and a property changing type in a future Graph
//! version still flattens instead of failing the page. `id` (dedup) and `createdDateTime`
//! (windowing and day files) are lifted out and checked.

use std::borrow::Cow;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The properties of `microsoft.graph.signIn` in Graph v1.0: `id` and the 29 of
/// `schemas/v1.0-Prod.csdl` (microsoftgraph/msgraph-metadata at
/// `0564689b82afc308d5aa8be54edfb9e5f1e0539f`; the fake tenant vendors that excerpt and a test
/// keeps the two lists equal). Every other property a column reads (`signInEventTypes`,
/// `userType`, `incomingTokenType`, `managedServiceIdentity`, …) is beta-only.
pub const V1_PROPERTIES: [&str; 30] = [
    "id",
    "appDisplayName",
    "appId",
    "appliedConditionalAccessPolicies",
    "authenticationAppDeviceDetails",
    "clientAppUsed",
    "conditionalAccessStatus",
    "correlationId",
    "createdDateTime",
    "deviceDetail",
    "homeTenantId",
    "ipAddress",
    "isInteractive",
    "location",
    "resourceDisplayName",
    "resourceId",
    "resourceTenantId",
    "riskDetail",
    "riskEventTypes",
    "riskEventTypes_v2",
    "riskLevelAggregated",
    "riskLevelDuringSignIn",
    "riskState",
    "servicePrincipalId",
    "servicePrincipalName",
    "status",
    "userAgent",
    "userDisplayName",
    "userId",
    "userPrincipalName",
];

/// Beta properties typed as an enum the CSDL marks `IsFlags="true"`: Graph sends several members
/// at once as one comma-joined string (`"b2bCollaboration,b2bDirectConnect"`). Same source as
/// [`V1_PROPERTIES`] (`schemas/beta-Prod.csdl`).
pub const FLAGS_PROPERTIES: [&str; 3] = [
    "authenticationProtocol",
    "crossTenantAccessType",
    "incomingTokenType",
];

/// An owned sign-in (built from a `serde_json::Value`: tests, benches, callers without a page).
pub type SignIn = SignInRecord<'static>;

/// One sign-in event, its text borrowed from the page it was read from (`'a`).
#[derive(Debug, Clone, PartialEq)]
pub struct SignInRecord<'a> {
    /// Graph's unique id of the sign-in (a GUID string).
    pub id: String,
    /// When the sign-in happened, UTC.
    pub created: OffsetDateTime,
    /// The properties the columns and the filter read, as Graph sent them.
    pub props: Props<'a>,
}

/// One property's value with the JSON type it arrived as. `Null` also stands for "absent".
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Field<'a> {
    #[default]
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(Cow<'a, str>),
    /// An array (of anything).
    List(Vec<Field<'a>>),
    /// An object where a scalar was expected (never in today's Graph): kept as JSON.
    Object(Box<Value>),
}

impl<'a> Field<'a> {
    /// The text, for a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Field::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Back to a JSON value (the rare paths that print nested JSON).
    pub fn to_value(&self) -> Value {
        match self {
            Field::Null => Value::Null,
            Field::Bool(b) => Value::Bool(*b),
            Field::Int(i) => Value::from(*i),
            Field::UInt(u) => Value::from(*u),
            Field::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Field::Str(s) => Value::String(s.to_string()),
            Field::List(items) => Value::Array(items.iter().map(Field::to_value).collect()),
            Field::Object(v) => (**v).clone(),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Field<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Field<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Field<'de>, E> {
                Ok(Field::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Field<'de>, E> {
                Ok(Field::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Field<'de>, E> {
                Ok(Field::UInt(v))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Field<'de>, E> {
                Ok(Field::Float(v))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Field<'de>, E> {
                Ok(Field::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Field<'de>, E> {
                Ok(Field::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Field<'de>, E> {
                Ok(Field::Str(Cow::Owned(v)))
            }
            fn visit_unit<E>(self) -> Result<Field<'de>, E> {
                Ok(Field::Null)
            }
            fn visit_none<E>(self) -> Result<Field<'de>, E> {
                Ok(Field::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Field<'de>, D::Error> {
                Field::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Field<'de>, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Field::List(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Field<'de>, A::Error> {
                let value = Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Field::Object(Box::new(value)))
            }
        }
        d.deserialize_any(V)
    }
}

/// A nested object: `Some` when Graph sent an object, `None` for null, a missing property or any
/// other type (so `location: "x"` empties the location columns instead of failing the page).
#[derive(Debug, Clone, PartialEq)]
pub struct Nested<T>(pub Option<T>);

impl<T> Default for Nested<T> {
    fn default() -> Self {
        Nested(None)
    }
}

impl<T> Nested<T> {
    pub fn get(&self) -> Option<&T> {
        self.0.as_ref()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Nested<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Nested<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Nested<T>, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(|t| Nested(Some(t)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Nested<T>, A::Error> {
                while seq.next_element::<de::IgnoredAny>()?.is_some() {}
                Ok(Nested(None))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Nested<T>, D::Error> {
                Nested::deserialize(d)
            }
            fn visit_none<E>(self) -> Result<Nested<T>, E> {
                Ok(Nested(None))
            }
            fn visit_unit<E>(self) -> Result<Nested<T>, E> {
                Ok(Nested(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Nested<T>, E> {
                Ok(Nested(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Nested<T>, E> {
                Ok(Nested(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Nested<T>, E> {
                Ok(Nested(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Nested<T>, E> {
                Ok(Nested(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<Nested<T>, E> {
                Ok(Nested(None))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// The properties of a sign-in that some column or the filter reads; Graph's other properties
/// are skipped while parsing.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Props<'a> {
    #[serde(borrow)]
    pub created_date_time: Field<'a>,
    #[serde(borrow)]
    pub id: Field<'a>,
    #[serde(borrow)]
    pub user_display_name: Field<'a>,
    #[serde(borrow)]
    pub user_principal_name: Field<'a>,
    #[serde(borrow)]
    pub user_id: Field<'a>,
    #[serde(borrow)]
    pub app_display_name: Field<'a>,
    #[serde(borrow)]
    pub app_id: Field<'a>,
    #[serde(borrow)]
    pub client_app_used: Field<'a>,
    #[serde(borrow)]
    pub ip_address: Field<'a>,
    #[serde(borrow)]
    pub location: Nested<Location<'a>>,
    #[serde(borrow)]
    pub device_detail: Nested<DeviceDetail<'a>>,
    #[serde(borrow)]
    pub status: Nested<Status<'a>>,
    #[serde(borrow)]
    pub conditional_access_status: Field<'a>,
    #[serde(borrow)]
    pub is_interactive: Field<'a>,
    #[serde(borrow)]
    pub risk_level_aggregated: Field<'a>,
    #[serde(borrow)]
    pub risk_state: Field<'a>,
    #[serde(borrow)]
    pub resource_display_name: Field<'a>,
    #[serde(borrow)]
    pub correlation_id: Field<'a>,
    #[serde(borrow)]
    pub risk_detail: Field<'a>,
    #[serde(borrow)]
    pub risk_level_during_sign_in: Field<'a>,
    #[serde(borrow, rename = "riskEventTypes_v2")]
    pub risk_event_types_v2: Field<'a>,
    #[serde(borrow)]
    pub resource_id: Field<'a>,
    #[serde(borrow)]
    pub resource_tenant_id: Field<'a>,
    #[serde(borrow)]
    pub home_tenant_id: Field<'a>,
    #[serde(borrow)]
    pub sign_in_event_types: Field<'a>,
    #[serde(borrow)]
    pub user_type: Field<'a>,
    #[serde(borrow)]
    pub user_agent: Field<'a>,
    #[serde(borrow)]
    pub authentication_requirement: Field<'a>,
    #[serde(borrow)]
    pub authentication_protocol: Field<'a>,
    #[serde(borrow)]
    pub token_issuer_type: Field<'a>,
    #[serde(borrow)]
    pub cross_tenant_access_type: Field<'a>,
    #[serde(borrow)]
    pub incoming_token_type: Field<'a>,
    #[serde(borrow)]
    pub client_credential_type: Field<'a>,
    #[serde(borrow)]
    pub service_principal_id: Field<'a>,
    #[serde(borrow)]
    pub service_principal_name: Field<'a>,
    #[serde(borrow)]
    pub managed_service_identity: Nested<ManagedServiceIdentity<'a>>,
    #[serde(borrow)]
    pub original_request_id: Field<'a>,
    #[serde(borrow)]
    pub unique_token_identifier: Field<'a>,
    #[serde(borrow)]
    pub ip_address_from_resource_provider: Field<'a>,
    #[serde(borrow)]
    pub autonomous_system_number: Field<'a>,
    #[serde(borrow)]
    pub is_tenant_restricted: Field<'a>,
    /// Kept whole (elements as [`Field`]s): the count column counts any array, the names column
    /// reads `result` and `displayName` of its objects.
    #[serde(borrow)]
    pub applied_conditional_access_policies: Policies<'a>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Location<'a> {
    #[serde(borrow)]
    pub city: Field<'a>,
    #[serde(borrow)]
    pub state: Field<'a>,
    #[serde(borrow)]
    pub country_or_region: Field<'a>,
    #[serde(borrow)]
    pub geo_coordinates: Nested<GeoCoordinates<'a>>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct GeoCoordinates<'a> {
    #[serde(borrow)]
    pub latitude: Field<'a>,
    #[serde(borrow)]
    pub longitude: Field<'a>,
    #[serde(borrow)]
    pub altitude: Field<'a>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DeviceDetail<'a> {
    #[serde(borrow)]
    pub operating_system: Field<'a>,
    #[serde(borrow)]
    pub browser: Field<'a>,
    #[serde(borrow)]
    pub device_id: Field<'a>,
    #[serde(borrow)]
    pub display_name: Field<'a>,
    #[serde(borrow)]
    pub is_compliant: Field<'a>,
    #[serde(borrow)]
    pub is_managed: Field<'a>,
    #[serde(borrow)]
    pub trust_type: Field<'a>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Status<'a> {
    #[serde(borrow)]
    pub error_code: Field<'a>,
    #[serde(borrow)]
    pub failure_reason: Field<'a>,
    #[serde(borrow)]
    pub additional_details: Field<'a>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ManagedServiceIdentity<'a> {
    #[serde(borrow)]
    pub msi_type: Field<'a>,
}

/// `appliedConditionalAccessPolicies`: `None` unless Graph sent an array.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Policies<'a>(pub Option<Vec<Nested<Policy<'a>>>>);

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Policy<'a> {
    #[serde(borrow)]
    pub display_name: Field<'a>,
    #[serde(borrow)]
    pub result: Field<'a>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Policies<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Policies<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array of policies")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Policies<'de>, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Policies(Some(items)))
            }
            // Any other type: no array, no count (as `Nested` does for objects).
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Policies<'de>, A::Error> {
                while map
                    .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Policies(None))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Policies<'de>, D::Error> {
                Policies::deserialize(d)
            }
            fn visit_none<E>(self) -> Result<Policies<'de>, E> {
                Ok(Policies(None))
            }
            fn visit_unit<E>(self) -> Result<Policies<'de>, E> {
                Ok(Policies(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Policies<'de>, E> {
                Ok(Policies(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Policies<'de>, E> {
                Ok(Policies(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Policies<'de>, E> {
                Ok(Policies(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Policies<'de>, E> {
                Ok(Policies(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<Policies<'de>, E> {
                Ok(Policies(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// Why a JSON value is not a usable sign-in.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SignInError {
    #[error("sign-in is not a JSON object")]
    NotAnObject,
    #[error("sign-in has no string `id`")]
    MissingId,
    #[error("sign-in {id} has no valid `createdDateTime`")]
    BadCreated { id: String },
    #[error("sign-in is not valid: {0}")]
    Invalid(String),
}

impl<'a> SignInRecord<'a> {
    /// Lifts `id` and `createdDateTime` out of the parsed properties and checks them.
    pub fn from_props(props: Props<'a>) -> Result<Self, SignInError> {
        let id = match &props.id {
            Field::Str(id) if !id.is_empty() => id.to_string(),
            _ => return Err(SignInError::MissingId),
        };
        let created = props
            .created_date_time
            .as_str()
            .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
            .ok_or_else(|| SignInError::BadCreated { id: id.clone() })?
            .to_offset(time::UtcOffset::UTC);
        Ok(SignInRecord { id, created, props })
    }

    /// Parses one sign-in object from JSON text, borrowing from it.
    pub fn from_slice(json: &'a [u8]) -> Result<Self, SignInError> {
        let props: Nested<Props<'a>> =
            serde_json::from_slice(json).map_err(|e| SignInError::Invalid(e.to_string()))?;
        Self::from_props(props.0.ok_or(SignInError::NotAnObject)?)
    }
}

impl SignIn {
    /// Lifts a sign-in out of one element of a page's `value` array.
    pub fn from_json(value: Value) -> Result<Self, SignInError> {
        if !value.is_object() {
            return Err(SignInError::NotAnObject);
        }
        let props = Props::deserialize(value).map_err(|e| SignInError::Invalid(e.to_string()))?;
        Self::from_props(props)
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventType {
    InteractiveUser,
    NonInteractiveUser,
    ServicePrincipal,
    ManagedIdentity,
}

impl EventType {
    /// Every event type, in Graph's order.
    pub const ALL: [EventType; 4] = [
        EventType::InteractiveUser,
        EventType::NonInteractiveUser,
        EventType::ServicePrincipal,
        EventType::ManagedIdentity,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::InteractiveUser => "interactiveUser",
            EventType::NonInteractiveUser => "nonInteractiveUser",
            EventType::ServicePrincipal => "servicePrincipal",
            EventType::ManagedIdentity => "managedIdentity",
        }
    }

    /// The Entra diagnostic-settings log category that carries these sign-ins (the `category` of
    /// each record): one category per event type (entra-docs
    /// `docs/identity/monitoring-health/concept-diagnostic-settings-logs-options.md`).
    pub fn diagnostic_category(self) -> &'static str {
        match self {
            EventType::InteractiveUser => "SignInLogs",
            EventType::NonInteractiveUser => "NonInteractiveUserSignInLogs",
            EventType::ServicePrincipal => "ServicePrincipalSignInLogs",
            EventType::ManagedIdentity => "ManagedIdentitySignInLogs",
        }
    }

    /// The container a diagnostic setting archives the category to: `insights-logs-` and the
    /// category in lower case (azure-monitor-docs `articles/azure-monitor/platform/resource-logs.md`,
    /// "Azure Storage").
    pub fn diagnostic_container(self) -> &'static str {
        match self {
            EventType::InteractiveUser => "insights-logs-signinlogs",
            EventType::NonInteractiveUser => "insights-logs-noninteractiveusersigninlogs",
            EventType::ServicePrincipal => "insights-logs-serviceprincipalsigninlogs",
            EventType::ManagedIdentity => "insights-logs-managedidentitysigninlogs",
        }
    }

    /// The event type of a diagnostic-settings category, matched ignoring case (the docs spell
    /// `NonInteractiveUserSIgnInLogs` once).
    pub fn from_diagnostic_category(category: &str) -> Option<EventType> {
        EventType::ALL
            .into_iter()
            .find(|t| t.diagnostic_category().eq_ignore_ascii_case(category))
    }

    /// The event type whose sign-ins a diagnostic-settings container holds.
    pub fn from_diagnostic_container(container: &str) -> Option<EventType> {
        EventType::ALL
            .into_iter()
            .find(|t| t.diagnostic_container() == container)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lifts_id_and_created_and_keeps_the_rest() {
        let s = SignIn::from_json(json!({
            "id": "a", "createdDateTime": "2026-11-28T10:00:00.123Z",
            "location": {"geoCoordinates": {"latitude": 47.5}}
        }))
        .unwrap();
        assert_eq!(s.id, "a");
        assert_eq!(s.created.hour(), 10);
        let location = s.props.location.get().unwrap();
        let coordinates = location.geo_coordinates.get().unwrap();
        assert_eq!(coordinates.latitude, Field::Float(47.5));
        assert_eq!(location.city, Field::Null);
        // The same record parsed from page bytes borrows its text.
        let bytes = br#"{"id": "a", "createdDateTime": "2026-11-28T10:00:00Z", "userId": "u\"1", "ipAddress": "1.2.3.4", "location": 5}"#;
        let b = SignInRecord::from_slice(bytes).unwrap();
        assert!(matches!(
            b.props.ip_address,
            Field::Str(Cow::Borrowed("1.2.3.4"))
        ));
        assert_eq!(b.props.user_id.as_str(), Some("u\"1"));
        assert_eq!(b.props.location, Nested(None));
    }

    #[test]
    fn rejects_records_without_id_or_time() {
        assert_eq!(SignIn::from_json(json!([])), Err(SignInError::NotAnObject));
        assert_eq!(
            SignIn::from_json(json!({"createdDateTime": "2026-11-28T10:00:00Z"})),
            Err(SignInError::MissingId)
        );
        assert_eq!(
            SignIn::from_json(json!({"id": "x", "createdDateTime": "yesterday"})),
            Err(SignInError::BadCreated { id: "x".into() })
        );
    }

    #[test]
    fn diagnostic_categories_and_containers_name_each_event_type_once() {
        for t in EventType::ALL {
            let container = t.diagnostic_container();
            assert_eq!(
                container,
                format!("insights-logs-{}", t.diagnostic_category().to_lowercase())
            );
            assert_eq!(EventType::from_diagnostic_container(container), Some(t));
            assert_eq!(
                EventType::from_diagnostic_category(&t.diagnostic_category().to_uppercase()),
                Some(t)
            );
        }
        assert_eq!(EventType::from_diagnostic_category("AuditLogs"), None);
        assert_eq!(
            EventType::from_diagnostic_container("insights-logs-auditlogs"),
            None
        );
    }
}
