//! Flattening: one sign-in's nested JSON → one row of CSV cells, for a chosen list of columns.
//!
//! Every column has a camelCase name, the Graph property path it reads (nested objects joined
//! with `/`) and a kind saying how the JSON value becomes a [`Cell`]; [`reference`] lists them
//! all for the README. Rules shared by every column:
//!
//! * null, a missing property or a missing parent object → [`Cell::Empty`];
//! * JSON booleans → [`Cell::Bool`] (`true`/`false`);
//! * JSON numbers → [`Cell::Number`], printed as plain decimals with `.` and never an exponent
//!   (`-122.3`, `0.0000001`, `50126`); a number column that Graph sends as a numeric string
//!   keeps the string as a number (so the formula guard leaves `-122.3` alone);
//! * arrays of scalars → their values joined with `;` (e.g. `signInEventTypes`);
//! * flags enums, which Graph sends as one comma-joined string when several members apply
//!   (`"b2bCollaboration,b2bDirectConnect"`; [`crate::graph::model::FLAGS_PROPERTIES`]) → the
//!   members joined with `;`, like arrays;
//! * an object where a scalar was expected (a future Graph change) → its compact JSON text,
//!   never PowerShell's `@{...}`.
//!
//! Coordinates (`latitude`, `longitude`, `altitude`) are filled only for a point that means
//! something: both `latitude` and `longitude` numbers (or numeric strings) within ±90 / ±180 and
//! not exactly 0 and 0. Graph sends unknown locations as no `geoCoordinates`, an empty object,
//! nulls, or 0 and 0 — a point in the Atlantic on a map — and every one of those leaves all three
//! cells empty.
//!
//! Special columns: `createdDateTime` is ISO 8601 UTC (`2026-11-28T10:00:00Z`; Graph's string is
//! kept when it is already UTC), `location` is "City, State, CountryOrRegion" with empty parts
//! skipped (what a Power BI map geocodes), `appliedConditionalAccessPolicyCount` counts the
//! policies Graph evaluated and `conditionalAccessPoliciesApplied` names those that applied
//! (result `success` or `failure`).
//!
//! Columns read properties of Graph's v1.0 `signIn` or, for some, properties only beta has
//! ([`Column::needs_beta`], from [`crate::graph::model::V1_PROPERTIES`]); the configuration
//! refuses a beta-only column with `SIGNINS_GRAPH_VERSION=v1.0`, since it could only be empty.
//! The Conditional Access policy columns ([`Column::needs_policy_permission`]) stay empty unless
//! the identity may read Conditional Access data (`Policy.Read.All` or
//! `Policy.Read.ConditionalAccess`): Graph returns `appliedConditionalAccessPolicies` only to such
//! callers (<https://learn.microsoft.com/graph/api/resources/appliedconditionalaccesspolicy>).

use std::borrow::Cow;

use std::fmt::Write as _;

use time::format_description::well_known::Rfc3339;

use crate::graph::model::GraphVersion;
use crate::graph::model::{
    Field, GeoCoordinates, Property, PropertySet, Props, SignInRecord, V1_PROPERTIES,
};
#[cfg(test)]
use {crate::graph::model::SignIn, serde_json::Value};

/// One CSV cell. Text is borrowed from the sign-in where possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell<'a> {
    /// Free text from Graph: subject to line-break replacement and the formula guard.
    Text(Cow<'a, str>),
    /// A plain decimal number; never altered by the encoder.
    Number(Cow<'a, str>),
    Bool(bool),
    /// Null or missing.
    Empty,
}

impl Cell<'_> {
    /// The cell's text as it is before CSV encoding (`""` for empty).
    pub fn as_str(&self) -> &str {
        match self {
            Cell::Text(s) | Cell::Number(s) => s,
            Cell::Bool(true) => "true",
            Cell::Bool(false) => "false",
            Cell::Empty => "",
        }
    }
}

/// How a column turns the sign-in into a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The value at the path, by its JSON type.
    Value,
    /// The value at the path; a numeric string stays a number.
    Number,
    /// A coordinate at the path, as [`Kind::Number`], but only of a point that means something
    /// ([`point_is_known`]); else empty.
    Coordinate,
    /// A flags enum at the path: its comma-joined members joined with `;`.
    Flags,
    /// `createdDateTime`, normalised to UTC.
    Created,
    /// City, state and country joined.
    Location,
    /// The number of elements of the array at the path.
    Count,
    /// Display names of applied Conditional Access policies, joined with `;`.
    AppliedPolicies,
}

/// Reads a column's property out of the typed record ([`Kind::Value`] and [`Kind::Number`];
/// the special kinds read theirs themselves). Resolved once per column, not per row.
type Getter = for<'r, 'a> fn(&'r Props<'a>) -> &'r Field<'a>;

/// What a getter returns for a missing parent object.
static NULL: Field<'static> = Field::Null;

/// The definition of one column.
struct ColumnDef {
    name: &'static str,
    /// The Graph property path (documentation, and which version has it).
    path: &'static [&'static str],
    get: Getter,
    kind: Kind,
    meaning: &'static str,
}

// Columns are compared by name: a column is one entry of `COLUMNS`.
impl PartialEq for ColumnDef {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for ColumnDef {}

impl std::fmt::Debug for ColumnDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

const fn col(
    name: &'static str,
    path: &'static [&'static str],
    get: Getter,
    kind: Kind,
    meaning: &'static str,
) -> ColumnDef {
    ColumnDef {
        name,
        path,
        get,
        kind,
        meaning,
    }
}

/// How many entries of [`COLUMNS`] are the default set (they come first, in the issue's order).
const DEFAULT_COUNT: usize = 30;

/// Every column: the default set first, in order, then the optional ones.
static COLUMNS: [ColumnDef; 57] = [
    col("createdDateTime", &["createdDateTime"], |_| &NULL, Kind::Created, "When the sign-in happened, ISO 8601 UTC"),
    col("userDisplayName", &["userDisplayName"], |p| &p.user_display_name, Kind::Value, "Display name of the user"),
    col("userPrincipalName", &["userPrincipalName"], |p| &p.user_principal_name, Kind::Value, "User principal name (sign-in name) of the user"),
    col("userId", &["userId"], |p| &p.user_id, Kind::Value, "Object id of the user"),
    col("appDisplayName", &["appDisplayName"], |p| &p.app_display_name, Kind::Value, "Name of the app signed in to, as the Entra admin center shows it"),
    col("appId", &["appId"], |p| &p.app_id, Kind::Value, "Application (client) id of the app"),
    col("clientAppUsed", &["clientAppUsed"], |p| &p.client_app_used, Kind::Value, "Client protocol, e.g. Browser, Exchange ActiveSync, IMAP4"),
    col("ipAddress", &["ipAddress"], |p| &p.ip_address, Kind::Value, "Client IP address"),
    col("locationCity", &["location", "city"], |p| p.location.get().map_or(&NULL, |o| &o.city), Kind::Value, "City of the sign-in"),
    col("locationState", &["location", "state"], |p| p.location.get().map_or(&NULL, |o| &o.state), Kind::Value, "State or province of the sign-in"),
    col("locationCountryOrRegion", &["location", "countryOrRegion"], |p| p.location.get().map_or(&NULL, |o| &o.country_or_region), Kind::Value, "Two-letter country or region code"),
    col("latitude", &["location", "geoCoordinates", "latitude"], |p| p.location.get().and_then(|o| o.geo_coordinates.get()).map_or(&NULL, |o| &o.latitude), Kind::Coordinate, "Latitude, decimal degrees; empty when Graph gives no coordinates, nulls, or exactly 0 and 0 (its unknown locations: a point at 0,0 would sit in the Atlantic), or latitude and longitude are not both numbers within ±90 / ±180"),
    col("longitude", &["location", "geoCoordinates", "longitude"], |p| p.location.get().and_then(|o| o.geo_coordinates.get()).map_or(&NULL, |o| &o.longitude), Kind::Coordinate, "Longitude, decimal degrees; empty exactly when `latitude` is (same rule)"),
    col("location", &["location"], |_| &NULL, Kind::Location, "\"City, State, CountryOrRegion\" with empty parts skipped (for Power BI maps)"),
    col("deviceOperatingSystem", &["deviceDetail", "operatingSystem"], |p| p.device_detail.get().map_or(&NULL, |o| &o.operating_system), Kind::Value, "Operating system of the device"),
    col("deviceBrowser", &["deviceDetail", "browser"], |p| p.device_detail.get().map_or(&NULL, |o| &o.browser), Kind::Value, "Browser (or client) of the device"),
    col("deviceId", &["deviceDetail", "deviceId"], |p| p.device_detail.get().map_or(&NULL, |o| &o.device_id), Kind::Value, "Entra device id, if the device is registered"),
    col("deviceDisplayName", &["deviceDetail", "displayName"], |p| p.device_detail.get().map_or(&NULL, |o| &o.display_name), Kind::Value, "Display name of the device"),
    col("deviceIsCompliant", &["deviceDetail", "isCompliant"], |p| p.device_detail.get().map_or(&NULL, |o| &o.is_compliant), Kind::Value, "Whether the device is compliant (true/false)"),
    col("deviceIsManaged", &["deviceDetail", "isManaged"], |p| p.device_detail.get().map_or(&NULL, |o| &o.is_managed), Kind::Value, "Whether the device is managed (true/false)"),
    col("deviceTrustType", &["deviceDetail", "trustType"], |p| p.device_detail.get().map_or(&NULL, |o| &o.trust_type), Kind::Value, "How the device is joined, e.g. Azure AD joined"),
    col("statusErrorCode", &["status", "errorCode"], |p| p.status.get().map_or(&NULL, |o| &o.error_code), Kind::Number, "0 on success, else the Entra error code (e.g. 50126)"),
    col("statusFailureReason", &["status", "failureReason"], |p| p.status.get().map_or(&NULL, |o| &o.failure_reason), Kind::Value, "Why the sign-in failed"),
    col("conditionalAccessStatus", &["conditionalAccessStatus"], |p| &p.conditional_access_status, Kind::Value, "success, failure, notApplied"),
    col("isInteractive", &["isInteractive"], |p| &p.is_interactive, Kind::Value, "Whether the sign-in was interactive (true/false)"),
    col("riskLevelAggregated", &["riskLevelAggregated"], |p| &p.risk_level_aggregated, Kind::Value, "Aggregated risk level (none, low, medium, high, hidden)"),
    col("riskState", &["riskState"], |p| &p.risk_state, Kind::Value, "Risk state, e.g. none, atRisk, remediated"),
    col("resourceDisplayName", &["resourceDisplayName"], |p| &p.resource_display_name, Kind::Value, "Name of the resource (API) signed in to"),
    col("correlationId", &["correlationId"], |p| &p.correlation_id, Kind::Value, "Correlation id of the sign-in request"),
    col("id", &["id"], |p| &p.id, Kind::Value, "Unique id of the sign-in event"),
    // Optional columns.
    col("statusAdditionalDetails", &["status", "additionalDetails"], |p| p.status.get().map_or(&NULL, |o| &o.additional_details), Kind::Value, "More detail on the status"),
    col("riskDetail", &["riskDetail"], |p| &p.risk_detail, Kind::Value, "Reason behind the risk state"),
    col("riskLevelDuringSignIn", &["riskLevelDuringSignIn"], |p| &p.risk_level_during_sign_in, Kind::Value, "Risk level during the sign-in"),
    col("riskEventTypes", &["riskEventTypes_v2"], |p| &p.risk_event_types_v2, Kind::Value, "Risk event types, joined with ';'"),
    col("resourceId", &["resourceId"], |p| &p.resource_id, Kind::Value, "Id of the resource signed in to"),
    col("resourceTenantId", &["resourceTenantId"], |p| &p.resource_tenant_id, Kind::Value, "Tenant id of the resource"),
    col("homeTenantId", &["homeTenantId"], |p| &p.home_tenant_id, Kind::Value, "Home tenant id of the user"),
    col("signInEventTypes", &["signInEventTypes"], |p| &p.sign_in_event_types, Kind::Value, "Event types (interactiveUser, nonInteractiveUser, …), joined with ';'"),
    col("userType", &["userType"], |p| &p.user_type, Kind::Value, "member or guest"),
    col("userAgent", &["userAgent"], |p| &p.user_agent, Kind::Value, "User agent of the client"),
    col("authenticationRequirement", &["authenticationRequirement"], |p| &p.authentication_requirement, Kind::Value, "singleFactorAuthentication or multiFactorAuthentication"),
    col("authenticationProtocol", &["authenticationProtocol"], |p| &p.authentication_protocol, Kind::Flags, "Protocol used, e.g. ropc, deviceCode, none; several joined with ';'"),
    col("tokenIssuerType", &["tokenIssuerType"], |p| &p.token_issuer_type, Kind::Value, "Token issuer, e.g. AzureAD, ADFederationServices"),
    col("crossTenantAccessType", &["crossTenantAccessType"], |p| &p.cross_tenant_access_type, Kind::Flags, "Cross-tenant access type, e.g. none, b2bCollaboration; several joined with ';'"),
    col("incomingTokenType", &["incomingTokenType"], |p| &p.incoming_token_type, Kind::Flags, "Token presented, e.g. primaryRefreshToken; several joined with ';'"),
    col("clientCredentialType", &["clientCredentialType"], |p| &p.client_credential_type, Kind::Value, "Credential type of a service principal sign-in"),
    col("servicePrincipalId", &["servicePrincipalId"], |p| &p.service_principal_id, Kind::Value, "Service principal id (service principal sign-ins)"),
    col("servicePrincipalName", &["servicePrincipalName"], |p| &p.service_principal_name, Kind::Value, "Service principal name (service principal sign-ins)"),
    col("managedIdentityType", &["managedServiceIdentity", "msiType"], |p| p.managed_service_identity.get().map_or(&NULL, |o| &o.msi_type), Kind::Value, "Managed identity type: systemAssigned, userAssigned or none (managed identity sign-ins)"),
    col("originalRequestId", &["originalRequestId"], |p| &p.original_request_id, Kind::Value, "Request id of the first request of the flow"),
    col("uniqueTokenIdentifier", &["uniqueTokenIdentifier"], |p| &p.unique_token_identifier, Kind::Value, "Unique id of the token issued"),
    col("ipAddressFromResourceProvider", &["ipAddressFromResourceProvider"], |p| &p.ip_address_from_resource_provider, Kind::Value, "Client IP as the resource provider saw it"),
    col("autonomousSystemNumber", &["autonomousSystemNumber"], |p| &p.autonomous_system_number, Kind::Number, "Autonomous system number of the client network"),
    col("altitude", &["location", "geoCoordinates", "altitude"], |p| p.location.get().and_then(|o| o.geo_coordinates.get()).map_or(&NULL, |o| &o.altitude), Kind::Coordinate, "Altitude from location/geoCoordinates; empty when latitude and longitude are"),
    col("isTenantRestricted", &["isTenantRestricted"], |p| &p.is_tenant_restricted, Kind::Value, "Whether tenant restrictions applied (true/false)"),
    col("appliedConditionalAccessPolicyCount", &["appliedConditionalAccessPolicies"], |_| &NULL, Kind::Count, "Number of Conditional Access policies evaluated"),
    col("conditionalAccessPoliciesApplied", &["appliedConditionalAccessPolicies"], |_| &NULL, Kind::AppliedPolicies, "Names of the Conditional Access policies that applied (result success or failure), joined with ';'"),
];

/// One output column.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Column(&'static ColumnDef);

impl std::fmt::Debug for Column {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.name)
    }
}

impl Column {
    /// The column's header name.
    pub fn name(self) -> &'static str {
        self.0.name
    }

    /// Whether the property it reads exists only in Graph beta.
    pub fn needs_beta(self) -> bool {
        self.0
            .path
            .first()
            .is_none_or(|root| !V1_PROPERTIES.contains(root))
    }

    /// The oldest Graph version that returns the property: `v1.0` or `beta`.
    pub fn version(self) -> GraphVersion {
        if self.needs_beta() {
            GraphVersion::Beta
        } else {
            GraphVersion::V1
        }
    }

    /// Whether it reads a flags enum (several members comma-joined in one string).
    pub fn is_flags(self) -> bool {
        self.0.kind == Kind::Flags
    }

    /// Whether Graph fills it only for identities that may read Conditional Access data.
    pub fn needs_policy_permission(self) -> bool {
        self.0.path.first() == Some(&"appliedConditionalAccessPolicies")
    }

    /// The cell of this column for `signin` (owned where it had to be built; the export path
    /// uses [`Column::cell_into`], which builds nothing per row).
    pub fn cell<'a>(self, signin: &'a SignInRecord<'_>) -> Cell<'a> {
        let mut scratch = String::new();
        self.cell_into(signin, &mut scratch).into_owned()
    }

    /// The cell of this column for `signin`, borrowing from the record or, for text the column
    /// builds (numbers, joined lists, the location), from `scratch` (cleared first) — so a row
    /// costs no allocation.
    pub fn cell_into<'r>(self, signin: &'r SignInRecord<'_>, scratch: &'r mut String) -> Cell<'r> {
        let def = self.0;
        let props = &signin.props;
        scratch.clear();
        match def.kind {
            Kind::Value => value_cell((def.get)(props), scratch),
            Kind::Number => number_cell((def.get)(props), scratch),
            Kind::Coordinate => {
                let point = props.location.get().and_then(|l| l.geo_coordinates.get());
                if point.is_some_and(point_is_known) {
                    number_cell((def.get)(props), scratch)
                } else {
                    Cell::Empty
                }
            }
            Kind::Flags => flags_cell((def.get)(props), scratch),
            Kind::Created => created_cell(signin, scratch),
            Kind::Location => location_cell(props, scratch),
            Kind::Count => match &props.applied_conditional_access_policies.0 {
                Some(items) => {
                    let _ = write!(scratch, "{}", items.len());
                    Cell::Number(Cow::Borrowed(scratch))
                }
                None => Cell::Empty,
            },
            Kind::AppliedPolicies => applied_policies_cell(props, scratch),
        }
    }
}

impl Cell<'_> {
    /// The same cell owning its text.
    pub fn into_owned(self) -> Cell<'static> {
        match self {
            Cell::Text(s) => Cell::Text(Cow::Owned(s.into_owned())),
            Cell::Number(s) => Cell::Number(Cow::Owned(s.into_owned())),
            Cell::Bool(b) => Cell::Bool(b),
            Cell::Empty => Cell::Empty,
        }
    }
}

/// The chosen, ordered output columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Columns(Vec<Column>);

impl Columns {
    /// The default columns, in the issue's order.
    pub fn default_set() -> Columns {
        Columns(COLUMNS[..DEFAULT_COUNT].iter().map(Column).collect())
    }

    /// Every known column: the default set, then the optional ones.
    pub fn every() -> Columns {
        Columns(COLUMNS.iter().map(Column).collect())
    }

    /// Parses a comma list (`SIGNINS_COLUMNS`). Names match ignoring case; unknown names,
    /// duplicates and empty entries are errors that name the culprit and list the valid names.
    pub fn parse(list: &str) -> Result<Columns, String> {
        let mut columns = Vec::new();
        let mut unknown = Vec::new();
        for (position, raw) in list.split(',').enumerate() {
            let name = raw.trim();
            if name.is_empty() {
                return Err(format!(
                    "empty column name at position {} of '{}'; give a comma list of column names",
                    position + 1,
                    list.trim()
                ));
            }
            match COLUMNS.iter().find(|c| c.name.eq_ignore_ascii_case(name)) {
                Some(def) if columns.contains(&Column(def)) => {
                    return Err(format!("column '{}' is listed twice", def.name));
                }
                Some(def) => columns.push(Column(def)),
                None => unknown.push(name),
            }
        }
        if !unknown.is_empty() {
            let valid: Vec<&str> = COLUMNS.iter().map(|c| c.name).collect();
            return Err(format!(
                "unknown column{} '{}'; valid columns: {}",
                if unknown.len() > 1 { "s" } else { "" },
                unknown.join("', '"),
                valid.join(", ")
            ));
        }
        Ok(Columns(columns))
    }

    /// The properties these columns read: a page is parsed for these (and the filter's), and
    /// the rest of each record skipped. Each column reads the property its path starts with.
    pub fn properties(&self) -> PropertySet {
        self.0.iter().fold(PropertySet::REQUIRED, |set, column| {
            match column
                .0
                .path
                .first()
                .and_then(|root| Property::from_name(root))
            {
                Some(property) => set.with(property),
                // Not reachable (a test holds every column's root to a property): read all.
                None => PropertySet::all(),
            }
        })
    }

    /// The header names, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.0.iter().map(|c| c.name()).collect()
    }

    /// The columns, in order.
    pub fn columns(&self) -> &[Column] {
        &self.0
    }

    /// The names of the chosen columns that only Graph beta fills.
    pub fn beta_only(&self) -> Vec<&'static str> {
        self.0
            .iter()
            .filter(|c| c.needs_beta())
            .map(|c| c.name())
            .collect()
    }

    /// The names of the chosen Conditional Access policy columns.
    pub fn needing_policy_permission(&self) -> Vec<&'static str> {
        self.0
            .iter()
            .filter(|c| c.needs_policy_permission())
            .map(|c| c.name())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// One row of cells for this sign-in, in column order.
    pub fn row<'a>(&self, signin: &'a SignInRecord<'_>) -> Vec<Cell<'a>> {
        self.0.iter().map(|c| c.cell(signin)).collect()
    }

    /// Like [`Columns::row`], reusing `out`'s allocation (cleared first).
    pub fn row_into<'a>(&self, signin: &'a SignInRecord<'_>, out: &mut Vec<Cell<'a>>) {
        out.clear();
        out.extend(self.0.iter().map(|c| c.cell(signin)));
    }
}

/// Every column as `(name, Graph source path, Graph version, meaning)`, the default set first:
/// the README's column reference.
pub fn reference() -> Vec<(&'static str, String, &'static str, &'static str)> {
    COLUMNS
        .iter()
        .map(|c| {
            let source = match c.kind {
                Kind::Location => {
                    "location/city, location/state, location/countryOrRegion".to_string()
                }
                Kind::Count => format!("{} (count)", c.path.join("/")),
                Kind::AppliedPolicies => format!(
                    "{}[result in success, failure]/displayName",
                    c.path.join("/")
                ),
                _ => c.path.join("/"),
            };
            (c.name, source, Column(c).version().as_str(), c.meaning)
        })
        .collect()
}

/// True for the names of the default columns.
pub fn is_default(name: &str) -> bool {
    COLUMNS[..DEFAULT_COUNT].iter().any(|c| c.name == name)
}

/// A cell from any property, by the JSON type it arrived as.
fn value_cell<'r>(value: &'r Field<'_>, scratch: &'r mut String) -> Cell<'r> {
    match value {
        Field::Null => Cell::Empty,
        Field::Bool(b) => Cell::Bool(*b),
        Field::Int(_) | Field::UInt(_) | Field::Float(_) => {
            format_number(value, scratch);
            Cell::Number(Cow::Borrowed(scratch))
        }
        Field::Str(s) => Cell::Text(Cow::Borrowed(s)),
        Field::List(items) => join_array(items, scratch),
        Field::Object(v) => {
            let _ = write!(scratch, "{v}");
            Cell::Text(Cow::Borrowed(scratch))
        }
    }
}

/// Like [`value_cell`], but a string that is a plain decimal stays a number.
fn number_cell<'r>(value: &'r Field<'_>, scratch: &'r mut String) -> Cell<'r> {
    match value {
        Field::Str(s) if is_plain_decimal(s.trim()) => Cell::Number(Cow::Borrowed(s.trim())),
        Field::Str(s) if s.trim().is_empty() => Cell::Empty,
        other => value_cell(other, scratch),
    }
}

/// A coordinate as a number: a JSON number, or a string that is a plain decimal.
fn coordinate(value: &Field<'_>) -> Option<f64> {
    match value {
        Field::Float(f) => Some(*f),
        Field::Int(i) => Some(*i as f64),
        Field::UInt(u) => Some(*u as f64),
        Field::Str(s) if is_plain_decimal(s.trim()) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Whether `geoCoordinates` is a point on the map: latitude and longitude both numbers, within
/// range, and not exactly 0 and 0 (what Graph sends for some unknown locations: "Null Island",
/// a point in the Atlantic that no sign-in comes from).
fn point_is_known(point: &GeoCoordinates<'_>) -> bool {
    match (coordinate(&point.latitude), coordinate(&point.longitude)) {
        (Some(latitude), Some(longitude)) => {
            (-90.0..=90.0).contains(&latitude)
                && (-180.0..=180.0).contains(&longitude)
                && (latitude, longitude) != (0.0, 0.0)
        }
        _ => false,
    }
}

/// A flags enum: Graph joins several members with `,` (OData's `enumValue`, no spaces in what
/// it sends; spaces tolerated); the cell joins them with `;`, as arrays are. One member is
/// borrowed as it is.
fn flags_cell<'r>(value: &'r Field<'_>, scratch: &'r mut String) -> Cell<'r> {
    match value {
        Field::Str(s) if s.contains(',') => {
            let members = s.split(',').map(str::trim).filter(|m| !m.is_empty());
            joined(members, scratch)
        }
        other => value_cell(other, scratch),
    }
}

/// `items` joined with `;` in `scratch` (empty: no cell).
fn joined<'r, 'i>(items: impl Iterator<Item = &'i str>, scratch: &'r mut String) -> Cell<'r> {
    for item in items {
        if !scratch.is_empty() {
            scratch.push(';');
        }
        scratch.push_str(item);
    }
    if scratch.is_empty() {
        Cell::Empty
    } else {
        Cell::Text(Cow::Borrowed(scratch))
    }
}

/// Plain decimal: optional `-`, digits, optional `.digits`. No exponent, no `+`.
fn is_plain_decimal(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = match digits.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (digits, None),
    };
    !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
}

/// Appends a JSON number as a plain decimal: integers as they are, floats in Rust's shortest
/// round-trip form, which never uses an exponent (`1e-7` → `0.0000001`).
fn format_number(n: &Field<'_>, out: &mut String) {
    // Writing to a String cannot fail.
    let _ = match n {
        Field::Int(i) => write!(out, "{i}"),
        Field::UInt(u) => write!(out, "{u}"),
        // -0.0 prints as "-0"; a coordinate of zero is just 0.
        Field::Float(f) if *f == 0.0 => write!(out, "0"),
        Field::Float(f) => write!(out, "{f}"),
        _ => Ok(()),
    };
}

fn join_array<'r>(items: &'r [Field<'_>], scratch: &'r mut String) -> Cell<'r> {
    match items {
        [] => Cell::Empty,
        [Field::Str(s)] => Cell::Text(Cow::Borrowed(s)),
        _ => {
            let mut any = false;
            for item in items {
                if matches!(item, Field::Null) {
                    continue;
                }
                if any {
                    scratch.push(';');
                }
                any = true;
                match item {
                    Field::Str(s) => scratch.push_str(s),
                    Field::Int(_) | Field::UInt(_) | Field::Float(_) => {
                        format_number(item, scratch)
                    }
                    Field::Bool(b) => scratch.push_str(if *b { "true" } else { "false" }),
                    // Nested arrays and objects as compact JSON.
                    other => {
                        let _ = write!(scratch, "{}", other.to_value());
                    }
                }
            }
            if any {
                Cell::Text(Cow::Borrowed(scratch))
            } else {
                Cell::Empty
            }
        }
    }
}

fn created_cell<'r>(signin: &'r SignInRecord<'_>, scratch: &'r mut String) -> Cell<'r> {
    if let Field::Str(s) = &signin.props.created_date_time {
        if s.ends_with('Z') {
            return Cell::Text(Cow::Borrowed(s));
        }
    }
    // `SignIn::created` is already UTC; RFC 3339 of a UTC time ends with `Z`.
    match signin.created.format(&Rfc3339) {
        Ok(s) => {
            scratch.push_str(&s);
            Cell::Text(Cow::Borrowed(scratch))
        }
        Err(_) => Cell::Empty,
    }
}

fn location_cell<'r>(props: &Props<'_>, scratch: &'r mut String) -> Cell<'r> {
    let Some(location) = props.location.get() else {
        return Cell::Empty;
    };
    for part in [&location.city, &location.state, &location.country_or_region] {
        let part = part.as_str().map_or("", str::trim);
        if !part.is_empty() {
            if !scratch.is_empty() {
                scratch.push_str(", ");
            }
            scratch.push_str(part);
        }
    }
    if scratch.is_empty() {
        Cell::Empty
    } else {
        Cell::Text(Cow::Borrowed(scratch))
    }
}

fn applied_policies_cell<'r>(props: &Props<'_>, scratch: &'r mut String) -> Cell<'r> {
    let Some(policies) = &props.applied_conditional_access_policies.0 else {
        return Cell::Empty;
    };
    let applied = policies
        .iter()
        .filter_map(|p| p.get())
        .filter(|p| matches!(p.result.as_str(), Some("success" | "failure")))
        .filter_map(|p| p.display_name.as_str());
    joined(applied, scratch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(s: &str) -> Cell<'static> {
        Cell::Text(Cow::Owned(s.to_string()))
    }
    fn num(s: &str) -> Cell<'static> {
        Cell::Number(Cow::Owned(s.to_string()))
    }

    fn full_record() -> SignIn {
        SignIn::from_json(json!({
            "id": "66ea54eb-6301-4ee5-be62-ff5a759b0100",
            "createdDateTime": "2026-11-28T10:00:00Z",
            "userDisplayName": "Doe, Jane \"JD\"",
            "userPrincipalName": "jane@contoso.com",
            "userId": "d7cc485d-2c1b-422c-98fd-5ce52859a4a3",
            "appId": "00000002-0000-0ff1-ce00-000000000000",
            "appDisplayName": "Office 365 Exchange Online",
            "ipAddress": "203.0.113.7",
            "clientAppUsed": "Exchange ActiveSync",
            "correlationId": "5d295068-919b-4017-85d8-44be2f5f5483",
            "conditionalAccessStatus": "success",
            "isInteractive": true,
            "riskDetail": "none",
            "riskLevelAggregated": "none",
            "riskLevelDuringSignIn": "none",
            "riskState": "none",
            "riskEventTypes_v2": [],
            "resourceDisplayName": "Office 365 Exchange Online",
            "resourceId": "00000002-0000-0ff1-ce00-000000000000",
            "signInEventTypes": ["interactiveUser", "nonInteractiveUser"],
            "status": {"errorCode": 0, "failureReason": "Other.", "additionalDetails": null},
            "deviceDetail": {
                "deviceId": "", "displayName": "iPhone", "operatingSystem": "Ios 17.1",
                "browser": "Mobile Safari", "isCompliant": false, "isManaged": true, "trustType": ""
            },
            "location": {
                "city": "Seattle", "state": "Washington", "countryOrRegion": "US",
                "geoCoordinates": {"altitude": null, "latitude": 47.6062, "longitude": -122.3321}
            },
            "appliedConditionalAccessPolicies": [
                {"id": "1", "displayName": "Require MFA", "result": "success"},
                {"id": "2", "displayName": "Block legacy", "result": "notApplied"},
                {"id": "3", "displayName": "Compliant device", "result": "failure"}
            ]
        }))
        .unwrap()
    }

    /// Every v1.0 property (the v1.0 CSDL), with the nulls and empty objects Graph sends for a
    /// sign-in whose location and status are unknown and whose user is redacted.
    fn documented_v1_record() -> Value {
        json!({
            "id": "b01a2f7e-0000-4000-8000-000000000001",
            "createdDateTime": "2026-11-28T10:00:00Z",
            "appDisplayName": "Microsoft Office",
            "appId": "d3590ed6-52b3-4102-aeff-aad2292ab01c",
            "appliedConditionalAccessPolicies": [],
            "authenticationAppDeviceDetails": null,
            "clientAppUsed": "Mobile Apps and Desktop clients",
            "conditionalAccessStatus": "notApplied",
            "correlationId": "c0ffee00-0000-4000-8000-000000000002",
            "deviceDetail": {"browser": "", "deviceId": "", "displayName": "", "isCompliant": false,
                              "isManaged": false, "operatingSystem": "Ios", "trustType": ""},
            "homeTenantId": "8f2c1d4e-5a6b-4c7d-9e8f-0a1b2c3d4e5f",
            "ipAddress": "203.0.113.xxx",
            "isInteractive": false,
            "location": {"city": null, "countryOrRegion": null, "state": null, "geoCoordinates": {}},
            "resourceDisplayName": "Office 365 Exchange Online",
            "resourceId": "00000002-0000-0ff1-ce00-000000000000",
            "resourceTenantId": "8f2c1d4e-5a6b-4c7d-9e8f-0a1b2c3d4e5f",
            "riskDetail": "hidden",
            "riskEventTypes": [],
            "riskEventTypes_v2": [],
            "riskLevelAggregated": "hidden",
            "riskLevelDuringSignIn": "hidden",
            "riskState": "none",
            "servicePrincipalId": "",
            "servicePrincipalName": "",
            "status": {},
            "userAgent": "",
            "userDisplayName": "PII Removed",
            "userId": "00000000-0000-0000-0000-000000000000",
            "userPrincipalName": "PII Removed"
        })
    }

    fn cells(cols: &Columns, s: &SignIn) -> Vec<String> {
        cols.row(s).iter().map(|c| c.as_str().to_string()).collect()
    }

    #[test]
    fn the_documented_v1_shape_flattens_cell_by_cell() {
        let s = SignIn::from_json(documented_v1_record()).unwrap();
        let cols = Columns::parse(
            "userDisplayName,userPrincipalName,ipAddress,locationCity,latitude,longitude,location,\
             statusErrorCode,statusFailureReason,resourceId,homeTenantId,userAgent,servicePrincipalName,\
             appliedConditionalAccessPolicyCount,conditionalAccessPoliciesApplied,riskEventTypes,isInteractive",
        )
        .unwrap();
        assert_eq!(
            cells(&cols, &s),
            [
                "PII Removed",
                "PII Removed",
                "203.0.113.xxx",
                "",
                "",
                "",
                "",
                "",
                "",
                "00000002-0000-0ff1-ce00-000000000000",
                "8f2c1d4e-5a6b-4c7d-9e8f-0a1b2c3d4e5f",
                "",
                "",
                "0",
                "",
                "",
                "false"
            ]
        );
        // Beta-only columns of a v1.0 record are empty, never an error.
        let beta = Columns::every().beta_only().join(",");
        let beta = Columns::parse(&beta).unwrap();
        assert!(cells(&beta, &s).iter().all(String::is_empty));
        // Every column of every v1.0 property is marked v1.0.
        for column in Columns::every().columns() {
            let root = column.0.path[0];
            assert_eq!(
                column.needs_beta(),
                documented_v1_record().get(root).is_none(),
                "{}",
                column.name()
            );
        }
    }

    #[test]
    fn the_documented_beta_shape_fills_the_beta_columns() {
        let mut v = documented_v1_record();
        let beta = json!({
            "signInEventTypes": ["nonInteractiveUser"],
            "userType": "member",
            "authenticationRequirement": "singleFactorAuthentication",
            "authenticationProtocol": "none",
            "tokenIssuerType": "AzureAD",
            "crossTenantAccessType": "none",
            "incomingTokenType": "refreshToken",
            "clientCredentialType": "none",
            "originalRequestId": "0d1e2f3a-0000-4000-8000-000000000003",
            "uniqueTokenIdentifier": "AbCdEf0123456789",
            "ipAddressFromResourceProvider": "2001:db8::xxxx",
            "autonomousSystemNumber": 8075,
            "isTenantRestricted": false,
            "managedServiceIdentity": {"msiType": "none", "associatedResourceId": null,
                                       "federatedTokenId": null, "federatedTokenIssuer": null}
        });
        if let (Some(o), Value::Object(b)) = (v.as_object_mut(), beta) {
            o.extend(b);
        }
        let s = SignIn::from_json(v).unwrap();
        let cols = Columns::parse(&Columns::every().beta_only().join(",")).unwrap();
        assert_eq!(
            cols.names(),
            [
                "signInEventTypes",
                "userType",
                "authenticationRequirement",
                "authenticationProtocol",
                "tokenIssuerType",
                "crossTenantAccessType",
                "incomingTokenType",
                "clientCredentialType",
                "managedIdentityType",
                "originalRequestId",
                "uniqueTokenIdentifier",
                "ipAddressFromResourceProvider",
                "autonomousSystemNumber",
                "isTenantRestricted"
            ]
        );
        assert_eq!(
            cells(&cols, &s),
            [
                "nonInteractiveUser",
                "member",
                "singleFactorAuthentication",
                "none",
                "AzureAD",
                "none",
                "refreshToken",
                "none",
                "none",
                "0d1e2f3a-0000-4000-8000-000000000003",
                "AbCdEf0123456789",
                "2001:db8::xxxx",
                "8075",
                "false"
            ]
        );
        assert_eq!(
            cols.row(&s)[12],
            num("8075"),
            "the AS number is a number cell"
        );
    }

    #[test]
    fn workload_sign_ins_with_empty_user_fields() {
        let managed = SignIn::from_json(json!({
            "id": "m", "createdDateTime": "2026-11-28T10:00:00Z",
            "userDisplayName": "", "userPrincipalName": "", "userId": "",
            "clientAppUsed": null, "isInteractive": false,
            "servicePrincipalId": "5b1f0000-0000-4000-8000-000000000004",
            "servicePrincipalName": "func-signin-export",
            "signInEventTypes": ["managedIdentity"],
            "clientCredentialType": "managedIdentity",
            "managedServiceIdentity": {"msiType": "systemAssigned",
                "associatedResourceId": "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Web/sites/func"},
            "status": {"errorCode": 0, "failureReason": null, "additionalDetails": null},
            "deviceDetail": {}, "location": {}
        }))
        .unwrap();
        let cols = Columns::parse(
            "userDisplayName,userPrincipalName,userId,clientAppUsed,servicePrincipalName,managedIdentityType,\
             clientCredentialType,statusErrorCode,deviceOperatingSystem,location",
        )
        .unwrap();
        assert_eq!(
            cells(&cols, &managed),
            [
                "",
                "",
                "",
                "",
                "func-signin-export",
                "systemAssigned",
                "managedIdentity",
                "0",
                "",
                ""
            ]
        );
    }

    #[test]
    fn default_set_is_the_issue_order() {
        assert_eq!(
            Columns::default_set().names().join(","),
            "createdDateTime,userDisplayName,userPrincipalName,userId,appDisplayName,appId,clientAppUsed,\
             ipAddress,locationCity,locationState,locationCountryOrRegion,latitude,longitude,location,\
             deviceOperatingSystem,deviceBrowser,deviceId,deviceDisplayName,deviceIsCompliant,deviceIsManaged,\
             deviceTrustType,statusErrorCode,statusFailureReason,conditionalAccessStatus,isInteractive,\
             riskLevelAggregated,riskState,resourceDisplayName,correlationId,id"
        );
        assert!(is_default("id") && !is_default("riskDetail"));
    }

    #[test]
    fn flattens_a_full_record() {
        let s = full_record();
        let row = Columns::default_set().row(&s);
        let expected = vec![
            text("2026-11-28T10:00:00Z"),
            text("Doe, Jane \"JD\""),
            text("jane@contoso.com"),
            text("d7cc485d-2c1b-422c-98fd-5ce52859a4a3"),
            text("Office 365 Exchange Online"),
            text("00000002-0000-0ff1-ce00-000000000000"),
            text("Exchange ActiveSync"),
            text("203.0.113.7"),
            text("Seattle"),
            text("Washington"),
            text("US"),
            num("47.6062"),
            num("-122.3321"),
            text("Seattle, Washington, US"),
            text("Ios 17.1"),
            text("Mobile Safari"),
            text(""),
            text("iPhone"),
            Cell::Bool(false),
            Cell::Bool(true),
            text(""),
            num("0"),
            text("Other."),
            text("success"),
            Cell::Bool(true),
            text("none"),
            text("none"),
            text("Office 365 Exchange Online"),
            text("5d295068-919b-4017-85d8-44be2f5f5483"),
            text("66ea54eb-6301-4ee5-be62-ff5a759b0100"),
        ];
        assert_eq!(row, expected);
    }

    #[test]
    fn optional_columns_join_count_and_name_policies() {
        let s = full_record();
        let cols = Columns::parse(
            "signInEventTypes,riskEventTypes,appliedConditionalAccessPolicyCount,conditionalAccessPoliciesApplied,statusAdditionalDetails,altitude,resourceId",
        )
        .unwrap();
        assert_eq!(
            cols.row(&s),
            vec![
                text("interactiveUser;nonInteractiveUser"),
                Cell::Empty,
                num("3"),
                text("Require MFA;Compliant device"),
                Cell::Empty,
                Cell::Empty,
                text("00000002-0000-0ff1-ce00-000000000000"),
            ]
        );
    }

    #[test]
    fn nulls_and_missing_objects_give_empty_cells() {
        let s = SignIn::from_json(json!({
            "id": "x", "createdDateTime": "2026-11-28T10:00:00Z",
            "userDisplayName": null, "deviceDetail": null, "status": {},
            "location": {"city": null, "state": "", "countryOrRegion": null, "geoCoordinates": null}
        }))
        .unwrap();
        let cols = Columns::default_set();
        let row = cols.row(&s);
        for (name, cell) in cols.names().iter().zip(&row) {
            match *name {
                "createdDateTime" => assert_eq!(cell, &text("2026-11-28T10:00:00Z")),
                "id" => assert_eq!(cell, &text("x")),
                // Graph's empty string stays an (empty) text cell.
                "locationState" => assert_eq!(cell, &text("")),
                _ => assert_eq!(cell, &Cell::Empty, "{name}"),
            }
        }
        let every = Columns::every();
        assert_eq!(every.row(&s).len(), every.len());
    }

    #[test]
    fn location_skips_empty_parts() {
        let cases = [
            (
                json!({"city": "Zürich", "state": "", "countryOrRegion": "CH"}),
                Some("Zürich, CH"),
            ),
            (
                json!({"city": null, "state": "Bavaria", "countryOrRegion": "DE"}),
                Some("Bavaria, DE"),
            ),
            (json!({"countryOrRegion": "FR"}), Some("FR")),
            (
                json!({"city": " Paris ", "state": "  ", "countryOrRegion": "FR"}),
                Some("Paris, FR"),
            ),
            (json!({"city": "", "state": null}), None),
            (json!(null), None),
        ];
        let cols = Columns::parse("location").unwrap();
        for (location, expected) in cases {
            let s = SignIn::from_json(json!({
                "id": "x", "createdDateTime": "2026-11-28T10:00:00Z", "location": location
            }))
            .unwrap();
            let want = expected.map_or(Cell::Empty, text);
            assert_eq!(cols.row(&s), vec![want], "{location}");
        }
    }

    #[test]
    fn numbers_are_plain_decimals() {
        let cols = Columns::parse("latitude,longitude,statusErrorCode,altitude").unwrap();
        let row = |loc: Value, status: Value| {
            let s = SignIn::from_json(json!({
                "id": "x", "createdDateTime": "2026-11-28T10:00:00Z",
                "location": {"geoCoordinates": loc}, "status": status
            }))
            .unwrap();
            cols.row(&s)
                .iter()
                .map(|c| c.as_str().to_string())
                .collect::<Vec<_>>()
        };
        let got = row(
            json!({"latitude": 1e-7, "longitude": -0.000012, "altitude": 1.5e3}),
            json!({"errorCode": 50126}),
        );
        assert_eq!(got, ["0.0000001", "-0.000012", "50126", "1500"]);
        // Numeric strings stay numbers.
        let s = SignIn::from_json(json!({
            "id": "x", "createdDateTime": "2026-11-28T10:00:00Z",
            "location": {"geoCoordinates": {"latitude": "-33.8688", "longitude": " 151.2093 ", "altitude": -0.0}},
            "autonomousSystemNumber": "8075"
        }))
        .unwrap();
        assert_eq!(
            cols.row(&s),
            vec![num("-33.8688"), num("151.2093"), Cell::Empty, num("0")]
        );
        let asn = Columns::parse("autonomousSystemNumber").unwrap();
        assert_eq!(asn.row(&s), vec![num("8075")]);
    }

    /// Coordinates are a point on the map or nothing: Graph's unknown locations (no
    /// `geoCoordinates`, an empty object, nulls, 0 and 0) never become a point, least of all one
    /// in the Atlantic at 0,0.
    #[test]
    fn coordinates_only_for_a_point_that_means_something() {
        let cols = Columns::parse("latitude,longitude,altitude,location").unwrap();
        let row = |location: Value| {
            let s = SignIn::from_json(json!({
                "id": "x", "createdDateTime": "2026-11-28T10:00:00Z", "location": location
            }))
            .unwrap();
            cols.row(&s)
                .iter()
                .map(|c| c.as_str().to_string())
                .collect::<Vec<_>>()
        };
        let point = |geo: Value| json!({"city": "", "state": "", "countryOrRegion": "", "geoCoordinates": geo});
        let empty = ["", "", "", ""];
        for unknown in [
            json!(null),
            json!({"city": null, "state": null, "countryOrRegion": null, "geoCoordinates": null}),
            point(json!({})),
            point(json!({"altitude": null, "latitude": null, "longitude": null})),
            point(json!({"altitude": 0.0, "latitude": 0.0, "longitude": 0.0})),
            point(json!({"altitude": 12, "latitude": 0, "longitude": -0.0})),
            point(json!({"latitude": "0", "longitude": "0.000"})),
            point(json!({"latitude": 47.6, "longitude": null, "altitude": 50.0})),
            point(json!({"latitude": 47.6})),
            point(json!({"latitude": 91.0, "longitude": 8.5})),
            point(json!({"latitude": 47.6, "longitude": -180.5})),
            point(json!({"latitude": "north", "longitude": 8.5})),
        ] {
            assert_eq!(row(unknown.clone()), empty, "{unknown}");
        }
        // A real point: on the equator, on the prime meridian, or anywhere else.
        assert_eq!(
            row(
                json!({"city": "Quito", "state": "", "countryOrRegion": "EC",
                       "geoCoordinates": {"latitude": 0.0, "longitude": -78.5, "altitude": 2850}})
            ),
            ["0", "-78.5", "2850", "Quito, EC"]
        );
        assert_eq!(
            row(point(
                json!({"latitude": 51.48, "longitude": 0, "altitude": null})
            )),
            ["51.48", "0", "", ""]
        );
        // The location text stays what Graph named, coordinates or not.
        assert_eq!(
            row(
                json!({"city": "Redmond", "state": "Washington", "countryOrRegion": "US", "geoCoordinates": {}})
            ),
            ["", "", "", "Redmond, Washington, US"]
        );
    }

    #[test]
    fn flags_columns_join_their_members_with_semicolons() {
        let s = SignIn::from_json(json!({
            "id": "x", "createdDateTime": "2026-11-28T10:00:00Z",
            "authenticationProtocol": "oAuth2,deviceCode",
            "crossTenantAccessType": "b2bCollaboration, b2bDirectConnect",
            "incomingTokenType": "none"
        }))
        .unwrap();
        let cols = Columns::parse("authenticationProtocol,crossTenantAccessType,incomingTokenType")
            .unwrap();
        assert_eq!(
            cols.row(&s),
            vec![
                text("oAuth2;deviceCode"),
                text("b2bCollaboration;b2bDirectConnect"),
                text("none")
            ]
        );
        // The flags columns are exactly those of the CSDL's flags properties.
        let flags: Vec<&str> = Columns::every()
            .columns()
            .iter()
            .filter(|c| c.is_flags())
            .map(|c| c.0.path[0])
            .collect();
        assert_eq!(flags, crate::graph::model::FLAGS_PROPERTIES);
    }

    /// Every record of the simulated tenant (every shape Graph beta sends: comma-joined flags,
    /// nulls, absent members, unknown locations, workloads without a user) parses from its JSON
    /// text and flattens into every column, with no point at 0,0 and no comma left in a flags cell.
    #[test]
    fn every_simulated_record_flattens() {
        use fake_tenant::tenant::{generate, TenantSpec};
        let records = generate(&TenantSpec {
            users: 40,
            days: 3,
            ..TenantSpec::demo(5)
        });
        let every = Columns::every();
        let names = every.names();
        let at = |name: &str| names.iter().position(|n| *n == name).unwrap();
        let (lat, lon, alt) = (at("latitude"), at("longitude"), at("altitude"));
        let mut zero_points = 0;
        for record in &records {
            let bytes = serde_json::to_vec(record).unwrap();
            let signin = SignInRecord::from_slice(&bytes).unwrap();
            let row = every.row(&signin);
            assert_eq!(row.len(), every.len());
            let geo = &record["location"]["geoCoordinates"];
            if geo["latitude"] == json!(0.0) && geo["longitude"] == json!(0.0) {
                zero_points += 1;
            }
            match geo["latitude"].as_f64().filter(|l| *l != 0.0) {
                Some(latitude) => {
                    assert_eq!(row[lat].as_str().parse::<f64>().unwrap(), latitude);
                    assert!(!row[lon].as_str().is_empty());
                }
                None => {
                    assert_eq!(
                        [&row[lat], &row[lon], &row[alt]],
                        [&Cell::Empty; 3],
                        "{geo}"
                    )
                }
            }
            for (column, cell) in every.columns().iter().zip(&row) {
                if column.is_flags() {
                    assert!(!cell.as_str().contains(','), "{cell:?}");
                }
            }
            if record["userId"].is_null() {
                assert_eq!(row[at("userId")], Cell::Empty);
            }
        }
        assert!(
            zero_points > 0,
            "the tenant has sign-ins at 0,0 to test with"
        );
    }

    #[test]
    fn created_is_utc() {
        let cols = Columns::parse("createdDateTime").unwrap();
        let at = |created: &str| {
            let s = SignIn::from_json(json!({"id": "x", "createdDateTime": created})).unwrap();
            cols.row(&s)[0].as_str().to_string()
        };
        assert_eq!(at("2026-11-28T10:00:00Z"), "2026-11-28T10:00:00Z");
        assert_eq!(
            at("2026-11-28T10:00:00.1234567Z"),
            "2026-11-28T10:00:00.1234567Z"
        );
        assert_eq!(at("2026-11-28T12:00:00+02:00"), "2026-11-28T10:00:00Z");
        assert_eq!(at("2026-11-28T10:00:00.5+00:00"), "2026-11-28T10:00:00.5Z");
    }

    #[test]
    fn unexpected_shapes_never_print_powershell_objects() {
        let s = SignIn::from_json(json!({
            "id": "x", "createdDateTime": "2026-11-28T10:00:00Z",
            "userDisplayName": {"given": "A"}, "clientAppUsed": ["a", 1, null, true]
        }))
        .unwrap();
        let cols = Columns::parse("userDisplayName,clientAppUsed").unwrap();
        assert_eq!(
            cols.row(&s),
            vec![text("{\"given\":\"A\"}"), text("a;1;true")]
        );
    }

    #[test]
    fn parse_checks_names() {
        let cols = Columns::parse(" id , createdDateTime,LOCATION").unwrap();
        assert_eq!(cols.names(), vec!["id", "createdDateTime", "location"]);

        let err = Columns::parse("id,bogus,nope").unwrap_err();
        assert!(
            err.starts_with(
                "unknown columns 'bogus', 'nope'; valid columns: createdDateTime, userDisplayName"
            ),
            "{err}"
        );
        assert!(err.contains("signInEventTypes"));
        let err = Columns::parse("id,ID").unwrap_err();
        assert_eq!(err, "column 'id' is listed twice");
        assert!(Columns::parse("id,,userId")
            .unwrap_err()
            .contains("empty column name at position 2"));
        assert!(Columns::parse("")
            .unwrap_err()
            .contains("empty column name"));
    }

    #[test]
    fn every_column_reads_a_property_the_parser_knows() {
        for def in &COLUMNS {
            let root = def.path.first().copied().unwrap_or_default();
            let property = Property::from_name(root);
            assert!(
                property.is_some(),
                "{}: no Props field for {root}",
                def.name
            );
            let one = Columns::parse(def.name).unwrap().properties();
            assert_eq!(
                one,
                PropertySet::REQUIRED.with(property.unwrap()),
                "{}",
                def.name
            );
        }
        assert_eq!(Columns::every().properties(), PropertySet::all());
        // The default set leaves out the beta-only properties and the policies.
        let default = Columns::default_set().properties();
        assert!(!default.contains(Property::AppliedConditionalAccessPolicies));
        assert!(!default.contains(Property::UserAgent));
    }

    #[test]
    fn reference_covers_every_column_once() {
        let reference = reference();
        assert_eq!(reference.len(), COLUMNS.len());
        let mut names: Vec<_> = reference.iter().map(|r| r.0).collect();
        assert_eq!(
            &names[..DEFAULT_COUNT],
            Columns::default_set().names().as_slice()
        );
        names.sort();
        names.dedup();
        assert_eq!(names.len(), COLUMNS.len());
        let lat = reference.iter().find(|r| r.0 == "latitude").unwrap();
        assert_eq!(lat.1, "location/geoCoordinates/latitude");
        assert!(reference.iter().all(|r| !r.3.is_empty()));
    }
}
