//! The sign-in record as the rest of the pipeline sees it, and the API vocabulary every stage
//! shares (the Graph version, the sign-in event types).
//!
//! Graph's `signIn` resource has dozens of nested, version-dependent properties. We keep the raw
//! JSON object (so `beta`-only fields and future additions flow through to the flattener) and lift
//! out only the two properties the pipeline itself depends on: `id` (dedup) and `createdDateTime`
//! (windowing and day files).

use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The properties of `microsoft.graph.signIn` in Graph v1.0: `id` and the 29 of the v1.0 CSDL
/// (microsoftgraph/msgraph-metadata, `clean_v10_metadata/cleanMetadata.xml`). Every other
/// property (`signInEventTypes`, `userType`, `incomingTokenType`, `managedServiceIdentity`, …)
/// is beta-only.
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

/// One sign-in event.
#[derive(Debug, Clone, PartialEq)]
pub struct SignIn {
    /// Graph's unique id of the sign-in (a GUID string).
    pub id: String,
    /// When the sign-in happened, UTC.
    pub created: OffsetDateTime,
    /// The whole JSON object as Graph returned it.
    pub raw: Map<String, Value>,
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
}

impl SignIn {
    /// Lifts a sign-in out of one element of a page's `value` array.
    pub fn from_json(value: Value) -> Result<Self, SignInError> {
        let Value::Object(raw) = value else {
            return Err(SignInError::NotAnObject);
        };
        let id = match raw.get("id") {
            Some(Value::String(id)) if !id.is_empty() => id.clone(),
            _ => return Err(SignInError::MissingId),
        };
        let created = raw
            .get("createdDateTime")
            .and_then(Value::as_str)
            .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
            .ok_or_else(|| SignInError::BadCreated { id: id.clone() })?
            .to_offset(time::UtcOffset::UTC);
        Ok(SignIn { id, created, raw })
    }

    /// The value at a `/`-separated path of nested objects, e.g. `location/geoCoordinates/latitude`.
    pub fn path(&self, path: &str) -> Option<&Value> {
        let mut parts = path.split('/');
        let mut current = self.raw.get(parts.next()?)?;
        for part in parts {
            current = current.as_object()?.get(part)?;
        }
        Some(current)
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
        assert_eq!(
            s.path("location/geoCoordinates/latitude"),
            Some(&json!(47.5))
        );
        assert_eq!(s.path("location/nothing"), None);
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
}
