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

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
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

/// A sign-in id as a compact dedup key: the 128 bits of a GUID (Graph's sign-in ids are GUIDs),
/// or for any other text a 128-bit digest of it (SHA-256, truncated). Both sources' id windows
/// hold these, not the ids' text: 16 bytes and no allocation per row.
pub fn id_key(id: &str) -> u128 {
    if let Ok(guid) = uuid::Uuid::try_parse(id) {
        return guid.as_u128();
    }
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(id.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    u128::from_be_bytes(bytes)
}

/// An owned sign-in (built from a `serde_json::Value`: tests, benches, callers without a page).
pub type SignIn = SignInRecord<'static>;

/// One sign-in event, its text borrowed from the page it was read from (`'a`).
#[derive(Debug, Clone, PartialEq)]
pub struct SignInRecord<'a> {
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
    /// An array (of anything). A boxed slice, not a `Vec`: it makes every `Field` 24 bytes instead
    /// of 32, and a record holds ~55 of them.
    List(Box<[Field<'a>]>),
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
                Ok(Field::List(items.into_boxed_slice()))
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

/// Declares [`Props`] (one field per Graph property) and [`Property`] (the same list as names),
/// from one list of `field: Type = "graphName" => Variant`, so the two cannot drift apart.
macro_rules! properties {
    ($( $(#[$doc:meta])* $field:ident: $ty:ident = $name:literal => $variant:ident, )*) => {
        /// The properties of a sign-in that some column or the filter reads; Graph's other
        /// properties are skipped while parsing, and so are these when the export reads none of
        /// their columns (a page is parsed for a [`PropertySet`]).
        #[derive(Debug, Clone, PartialEq, Default)]
        pub struct Props<'a> {
            $( $(#[$doc])* pub $field: $ty<'a>, )*
        }

        /// A property of [`Props`], by its Graph name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Property {
            $( $variant, )*
        }

        impl Property {
            /// Every property [`Props`] has, in its order.
            pub const ALL: &'static [Property] = &[$( Property::$variant, )*];

            /// The name Graph sends it under.
            pub fn name(self) -> &'static str {
                match self {
                    $( Property::$variant => $name, )*
                }
            }

            /// The property Graph sends under `name` (exact, as JSON keys are), if [`Props`]
            /// has it.
            pub fn from_name(name: &str) -> Option<Property> {
                match name {
                    $( $name => Some(Property::$variant), )*
                    _ => None,
                }
            }

        }

        impl<'a> Props<'a> {
            /// Parses the next value of `map` into the field of `property`.
            fn read<'de: 'a, A: MapAccess<'de>>(
                &mut self,
                property: Property,
                map: &mut A,
            ) -> Result<(), A::Error> {
                match property {
                    $( Property::$variant => self.$field = map.next_value()?, )*
                }
                Ok(())
            }
        }
    };
}

properties! {
    created_date_time: Field = "createdDateTime" => CreatedDateTime,
    id: Field = "id" => Id,
    user_display_name: Field = "userDisplayName" => UserDisplayName,
    user_principal_name: Field = "userPrincipalName" => UserPrincipalName,
    user_id: Field = "userId" => UserId,
    app_display_name: Field = "appDisplayName" => AppDisplayName,
    app_id: Field = "appId" => AppId,
    client_app_used: Field = "clientAppUsed" => ClientAppUsed,
    ip_address: Field = "ipAddress" => IpAddress,
    location: NestedLocation = "location" => Location,
    device_detail: NestedDeviceDetail = "deviceDetail" => DeviceDetail,
    status: NestedStatus = "status" => Status,
    conditional_access_status: Field = "conditionalAccessStatus" => ConditionalAccessStatus,
    is_interactive: Field = "isInteractive" => IsInteractive,
    risk_level_aggregated: Field = "riskLevelAggregated" => RiskLevelAggregated,
    risk_state: Field = "riskState" => RiskState,
    resource_display_name: Field = "resourceDisplayName" => ResourceDisplayName,
    correlation_id: Field = "correlationId" => CorrelationId,
    risk_detail: Field = "riskDetail" => RiskDetail,
    risk_level_during_sign_in: Field = "riskLevelDuringSignIn" => RiskLevelDuringSignIn,
    risk_event_types_v2: Field = "riskEventTypes_v2" => RiskEventTypesV2,
    resource_id: Field = "resourceId" => ResourceId,
    resource_tenant_id: Field = "resourceTenantId" => ResourceTenantId,
    home_tenant_id: Field = "homeTenantId" => HomeTenantId,
    sign_in_event_types: Field = "signInEventTypes" => SignInEventTypes,
    user_type: Field = "userType" => UserType,
    user_agent: Field = "userAgent" => UserAgent,
    authentication_requirement: Field = "authenticationRequirement" => AuthenticationRequirement,
    authentication_protocol: Field = "authenticationProtocol" => AuthenticationProtocol,
    token_issuer_type: Field = "tokenIssuerType" => TokenIssuerType,
    cross_tenant_access_type: Field = "crossTenantAccessType" => CrossTenantAccessType,
    incoming_token_type: Field = "incomingTokenType" => IncomingTokenType,
    client_credential_type: Field = "clientCredentialType" => ClientCredentialType,
    service_principal_id: Field = "servicePrincipalId" => ServicePrincipalId,
    service_principal_name: Field = "servicePrincipalName" => ServicePrincipalName,
    managed_service_identity: NestedManagedServiceIdentity = "managedServiceIdentity" => ManagedServiceIdentity,
    original_request_id: Field = "originalRequestId" => OriginalRequestId,
    unique_token_identifier: Field = "uniqueTokenIdentifier" => UniqueTokenIdentifier,
    ip_address_from_resource_provider: Field = "ipAddressFromResourceProvider" => IpAddressFromResourceProvider,
    autonomous_system_number: Field = "autonomousSystemNumber" => AutonomousSystemNumber,
    is_tenant_restricted: Field = "isTenantRestricted" => IsTenantRestricted,
    /// Kept whole (elements as [`Field`]s): the count column counts any array, the names column
    /// reads `result` and `displayName` of its objects. The largest property Graph sends (every
    /// policy of the tenant, ~2.4 KB of a ~6.6 KB record), so it is parsed only for those columns.
    applied_conditional_access_policies: Policies = "appliedConditionalAccessPolicies" => AppliedConditionalAccessPolicies,
}

// The macro takes a type name with one lifetime parameter.
type NestedLocation<'a> = Nested<Location<'a>>;
type NestedDeviceDetail<'a> = Nested<DeviceDetail<'a>>;
type NestedStatus<'a> = Nested<Status<'a>>;
type NestedManagedServiceIdentity<'a> = Nested<ManagedServiceIdentity<'a>>;

/// Which [`Property`]s to parse; the others are skipped as Graph's unknown properties are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PropertySet(u64);

impl PropertySet {
    /// `id` and `createdDateTime`, which every record needs (dedup, windows, day files).
    pub const REQUIRED: PropertySet =
        PropertySet(1 << Property::Id as u64 | 1 << Property::CreatedDateTime as u64);

    /// Every property of [`Props`].
    pub fn all() -> PropertySet {
        Property::ALL
            .iter()
            .fold(PropertySet::REQUIRED, |s, &p| s.with(p))
    }

    /// This set and `property`.
    pub const fn with(self, property: Property) -> PropertySet {
        PropertySet(self.0 | 1 << property as u64)
    }

    /// Both sets' properties.
    pub const fn union(self, other: PropertySet) -> PropertySet {
        PropertySet(self.0 | other.0)
    }

    pub const fn contains(self, property: Property) -> bool {
        self.0 & (1 << property as u64) != 0
    }
}

impl Default for PropertySet {
    fn default() -> Self {
        PropertySet::all()
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Props<'a> {
    /// Every property (for sources that keep records whole: tests, the diagnostic archive).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut props = Props::default();
        if PropsInto::new(&mut props, PropertySet::all()).deserialize(d)? {
            Ok(props)
        } else {
            Err(de::Error::custom("a sign-in is a JSON object"))
        }
    }
}

/// Parses a sign-in object into an existing [`Props`] (default-initialised), reading only the
/// properties of a [`PropertySet`] and skipping the rest. A page's records are parsed in place in
/// the page's vector: moving each ~1.3 KB record out of the parser into its slot cost more than
/// parsing several of its properties. Yields whether the value was an object at all (anything
/// else is skipped, for the caller to refuse, as [`Nested`] does).
pub struct PropsInto<'p, 'a> {
    props: &'p mut Props<'a>,
    wanted: PropertySet,
}

impl<'p, 'a> PropsInto<'p, 'a> {
    pub fn new(props: &'p mut Props<'a>, wanted: PropertySet) -> Self {
        PropsInto { props, wanted }
    }
}

impl<'de: 'a, 'a, 'p> DeserializeSeed<'de> for PropsInto<'p, 'a> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de: 'a, 'a, 'p> Visitor<'de> for PropsInto<'p, 'a> {
    type Value = bool;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a sign-in object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        // A property sent twice fails the record, as it would any JSON-to-struct mapping
        // (serde's derive refuses duplicate fields); skipped properties are checked too, so what
        // fails does not depend on the columns chosen.
        let mut seen = 0u64;
        while let Some(PropertyKey(key)) = map.next_key()? {
            match key {
                Some(property) => {
                    let bit = 1u64 << property as u64;
                    if seen & bit != 0 {
                        return Err(de::Error::duplicate_field(property.name()));
                    }
                    seen |= bit;
                    if self.wanted.contains(property) {
                        self.props.read(property, &mut map)?;
                    } else {
                        map.next_value::<de::IgnoredAny>()?;
                    }
                }
                None => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        Ok(true)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element::<de::IgnoredAny>()?.is_some() {}
        Ok(false)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_none<E>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_str<E>(self, _: &str) -> Result<bool, E> {
        Ok(false)
    }
}

/// A key of a sign-in object: the [`Property`] it names, `None` for every other key. Matched
/// while the key is read, so no key is kept.
struct PropertyKey(Option<Property>);

impl<'de> Deserialize<'de> for PropertyKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = PropertyKey;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a property name")
            }
            fn visit_str<E>(self, key: &str) -> Result<PropertyKey, E> {
                Ok(PropertyKey(Property::from_name(key)))
            }
        }
        d.deserialize_identifier(V)
    }
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
        let mut record = SignInRecord::unparsed();
        record.props = props;
        record.lift()?;
        Ok(record)
    }

    /// A record with no properties yet: a slot to parse one into ([`PropsInto`]), then
    /// [`SignInRecord::lift`].
    pub fn unparsed() -> Self {
        SignInRecord {
            created: OffsetDateTime::UNIX_EPOCH,
            props: Props::default(),
        }
    }

    /// Graph's unique id of the sign-in (a GUID string; never empty once [`lift`]ed).
    ///
    /// [`lift`]: SignInRecord::lift
    pub fn id(&self) -> &str {
        self.props.id.as_str().unwrap_or("")
    }

    /// Checks `id` and sets `created` from the parsed properties.
    pub fn lift(&mut self) -> Result<(), SignInError> {
        let id = match &self.props.id {
            Field::Str(id) if !id.is_empty() => id.as_ref(),
            _ => return Err(SignInError::MissingId),
        };
        let created = self
            .props
            .created_date_time
            .as_str()
            .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
            .ok_or_else(|| SignInError::BadCreated { id: id.to_string() })?
            .to_offset(time::UtcOffset::UTC);
        self.created = created;
        Ok(())
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
        assert_eq!(s.id(), "a");
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
    fn fields_stay_small() {
        // Every record holds ~55 of them: their size is most of a page's memory besides its text.
        assert_eq!(std::mem::size_of::<Field>(), 24);
    }

    #[test]
    fn a_property_set_parses_its_properties_and_skips_the_rest() {
        let json = br#"{"id": "a", "createdDateTime": "2026-11-28T10:00:00Z", "userId": "u",
            "location": {"city": "Oslo"}, "appliedConditionalAccessPolicies": [{"result": "x"}],
            "unknownProperty": {"deep": [1, {"x": null}]}}"#;
        let wanted = PropertySet::REQUIRED.with(Property::Location);
        let mut props = Props::default();
        let mut d = serde_json::Deserializer::from_slice(json);
        assert!(PropsInto::new(&mut props, wanted)
            .deserialize(&mut d)
            .unwrap());
        assert_eq!(props.id.as_str(), Some("a"));
        assert_eq!(props.location.get().unwrap().city.as_str(), Some("Oslo"));
        assert_eq!(props.user_id, Field::Null);
        assert_eq!(props.applied_conditional_access_policies, Policies(None));
        // Every property: the same as the derived parse of the whole record.
        let all: Props = serde_json::from_slice(json).unwrap();
        assert_eq!(all.user_id.as_str(), Some("u"));
        assert_eq!(all.applied_conditional_access_policies.0.unwrap().len(), 1);
        // Not an object: nothing parsed, and the caller is told.
        let mut d = serde_json::Deserializer::from_slice(b"[1, 2]");
        let mut empty = Props::default();
        assert!(!PropsInto::new(&mut empty, wanted)
            .deserialize(&mut d)
            .unwrap());
    }

    #[test]
    fn a_property_sent_twice_fails_whether_parsed_or_skipped() {
        for key in ["userId", "id"] {
            let json =
                format!(r#"{{"id": "a", "{key}": "b", "createdDateTime": "x", "{key}": "c"}}"#);
            for wanted in [PropertySet::REQUIRED, PropertySet::all()] {
                let mut props = Props::default();
                let mut d = serde_json::Deserializer::from_str(&json);
                let err = PropsInto::new(&mut props, wanted)
                    .deserialize(&mut d)
                    .unwrap_err();
                assert!(
                    err.to_string()
                        .contains(&format!("duplicate field `{key}`")),
                    "{err}"
                );
            }
        }
    }

    #[test]
    fn every_property_has_one_name() {
        let mut names: Vec<_> = Property::ALL.iter().map(|p| p.name()).collect();
        for &property in Property::ALL {
            assert_eq!(Property::from_name(property.name()), Some(property));
            assert!(PropertySet::all().contains(property));
        }
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Property::ALL.len());
        assert!(Property::ALL.len() <= 64, "PropertySet is one u64");
        assert_eq!(Property::from_name("authenticationDetails"), None);
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
