//! The fake Graph's OData layer for `/auditLogs/signIns`: query-option validation and the
//! `$filter` grammar the real service accepts, with the real service's refusals.
//!
//! Supported, as Graph documents and behaves for sign-ins: `createdDateTime` with `eq`/`ge`/`le`
//! and an unquoted RFC 3339 literal (`gt`/`lt` are refused, as users report); string properties
//! with `eq`/`ne` and `startswith`, compared exactly (case-sensitive, as users report the service
//! does); `status/errorCode` and `isInteractive`; `and`/`or` with parentheses; and, on beta only,
//! `signInEventTypes/any(t: t eq '…')` and `any(t: t ne '…')` (the single-value forms Microsoft
//! documents: microsoftgraph/microsoft-graph-docs-contrib `api-reference/beta/api/signin-list.md`)
//! and the combined `any(t: t eq '…' or t eq '…')` — v1.0 answers every one with 400 "Invalid
//! filter clause", as reported against `Get-MgAuditLogSignIn`
//! (<https://github.com/MicrosoftDocs/SupportArticles-docs/issues/668>; beta accepts the combined
//! form: <https://github.com/microsoftgraph/msgraph-sdk-powershell/issues/956>, and the fake can
//! be told to refuse it, [`Expr::combines_event_types`]). Anything else is a 400 with an
//! OData-style message.
//!
//! A filter reads a sign-in through [`Fields`]: the JSON record itself, or the compact
//! [`SignInFields`] the fake keeps beside each record's text.

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Which Graph version a request addressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiVersion {
    V1,
    Beta,
}

impl ApiVersion {
    /// Parses the first path segment.
    pub fn from_segment(segment: &str) -> Option<Self> {
        match segment {
            "v1.0" => Some(ApiVersion::V1),
            "beta" => Some(ApiVersion::Beta),
            _ => None,
        }
    }

    /// The path segment.
    pub fn segment(self) -> &'static str {
        match self {
            ApiVersion::V1 => "v1.0",
            ApiVersion::Beta => "beta",
        }
    }
}

/// A refused query: the message goes into Graph's `BadRequest` error body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(pub String);

fn invalid_clause(detail: impl std::fmt::Display) -> QueryError {
    QueryError(format!("Invalid filter clause: {detail}"))
}

/// The validated query options of one `signIns` request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SignInQuery {
    /// `$top` as sent (1..=1000).
    pub top: Option<usize>,
    /// `$filter` text as sent, and its parsed form.
    pub filter_text: Option<String>,
    pub filter: Option<Expr>,
    /// `$skiptoken` as sent.
    pub skiptoken: Option<String>,
    /// `$orderby=createdDateTime asc` (the default and `desc` are newest first).
    pub oldest_first: bool,
    /// `$orderby` text as sent.
    pub orderby_text: Option<String>,
}

/// Parses and validates a raw query string for `auditLogs/signIns`.
pub fn parse_query(raw: Option<&str>, version: ApiVersion) -> Result<SignInQuery, QueryError> {
    let mut query = SignInQuery::default();
    let mut seen = std::collections::HashSet::new();
    for (key, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        let key = key.into_owned();
        let value = value.into_owned();
        if !key.starts_with('$') {
            // Graph ignores custom (non-system) query parameters.
            continue;
        }
        let lower = key.to_ascii_lowercase();
        if !seen.insert(lower.clone()) {
            return Err(QueryError(format!(
                "Query option '{key}' was specified more than once, it must be specified at most once."
            )));
        }
        match lower.as_str() {
            "$top" => {
                let top: i64 = value.trim().parse().map_err(|_| {
                    QueryError(format!(
                        "Invalid value '{value}' for $top query option found. The $top query option requires a non-negative integer value."
                    ))
                })?;
                if !(1..=1000).contains(&top) {
                    return Err(QueryError(format!(
                        "Invalid page size specified: '{top}'. Must be between 1 and 1000 inclusive."
                    )));
                }
                query.top = Some(top as usize);
            }
            "$filter" => {
                query.filter = Some(parse_filter(&value, version)?);
                query.filter_text = Some(value);
            }
            "$skiptoken" => query.skiptoken = Some(value),
            "$orderby" => {
                let normalized: Vec<&str> = value.split_whitespace().collect();
                query.oldest_first = match normalized.as_slice() {
                    ["createdDateTime"] | ["createdDateTime", "desc"] => false,
                    ["createdDateTime", "asc"] => true,
                    _ => {
                        return Err(QueryError(format!(
                            "Order by '{value}' is not supported. Only createdDateTime can be used in $orderby."
                        )))
                    }
                };
                query.orderby_text = Some(value);
            }
            "$select" | "$skip" | "$count" | "$search" | "$expand" | "$format" | "$apply"
            | "$compute" => {
                let name = match lower.as_str() {
                    "$select" => "Select",
                    "$skip" => "Skip",
                    "$count" => "Count",
                    "$search" => "Search",
                    "$expand" => "Expand",
                    "$format" => "Format",
                    "$apply" => "Apply",
                    _ => "Compute",
                };
                return Err(QueryError(format!(
                    "Query option '{name}' is not allowed. To allow it, set the 'AllowedQueryOptions' property on EnableQueryAttribute or QueryValidationSettings."
                )));
            }
            _ => {
                return Err(QueryError(format!(
                    "The query parameter '{key}' is not supported."
                )))
            }
        }
    }
    Ok(query)
}

/// Comparison operators the grammar knows (validity per property is checked while parsing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Ge,
    Le,
}

/// A parsed `$filter`.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    /// `createdDateTime eq|ge|le <instant>`.
    Created(CmpOp, OffsetDateTime),
    /// A string property at a `/` path compared exactly (`eq` or `ne`).
    Text {
        path: &'static str,
        negate: bool,
        value: String,
    },
    /// `startswith(path, 'prefix')`, case-sensitive.
    StartsWith {
        path: &'static str,
        prefix: String,
    },
    /// `status/errorCode eq|ne N`.
    ErrorCode {
        negate: bool,
        value: i64,
    },
    /// `isInteractive eq true|false`.
    IsInteractive(bool),
    /// `signInEventTypes/any(t: t eq 'a' or t ne 'b' …)`: some event type of the record passes
    /// one of the comparisons.
    EventTypes(Vec<EventTypeTest>),
}

/// One comparison inside `signInEventTypes/any(t: …)`: `t eq 'value'` or `t ne 'value'`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTypeTest {
    pub negate: bool,
    pub value: String,
}

/// String properties (and `/` paths) a filter compares with `eq`/`ne`.
pub const TEXT_PROPERTIES: [&str; 21] = [
    "id",
    "userId",
    "userDisplayName",
    "userPrincipalName",
    "appId",
    "appDisplayName",
    "ipAddress",
    "clientAppUsed",
    "correlationId",
    "conditionalAccessStatus",
    "resourceDisplayName",
    "resourceId",
    "riskDetail",
    "riskLevelAggregated",
    "riskLevelDuringSignIn",
    "riskState",
    "location/city",
    "location/state",
    "location/countryOrRegion",
    "deviceDetail/operatingSystem",
    "deviceDetail/browser",
];

const STARTSWITH_PROPERTIES: &[&str] = &[
    "userDisplayName",
    "userPrincipalName",
    "appDisplayName",
    "ipAddress",
    "location/city",
    "location/state",
    "location/countryOrRegion",
];

/// Properties of `signIn` that exist but cannot be filtered on.
const KNOWN_UNFILTERABLE: &[&str] = &[
    "deviceDetail",
    "location",
    "status",
    "appliedConditionalAccessPolicies",
    "riskEventTypes_v2",
    "deviceDetail/deviceId",
    "deviceDetail/displayName",
    "deviceDetail/isCompliant",
    "deviceDetail/isManaged",
    "deviceDetail/trustType",
    "status/failureReason",
    "status/additionalDetails",
    "location/geoCoordinates",
];

pub const EVENT_TYPE_VALUES: [&str; 4] = crate::tenant::EVENT_TYPES;

/// A set of the four sign-in event types ([`EVENT_TYPE_VALUES`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventTypeSet(u8);

impl EventTypeSet {
    /// The set of these names (unknown ones are left out: a filter can only name the four).
    pub fn of<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut bits = 0;
        for name in names {
            if let Some(i) = EVENT_TYPE_VALUES.iter().position(|t| *t == name) {
                bits |= 1 << i;
            }
        }
        EventTypeSet(bits)
    }

    pub fn contains(self, name: &str) -> bool {
        EVENT_TYPE_VALUES
            .iter()
            .position(|t| *t == name)
            .is_some_and(|i| self.0 & (1 << i) != 0)
    }

    /// The names in the set.
    pub fn iter(self) -> impl Iterator<Item = &'static str> {
        EVENT_TYPE_VALUES
            .into_iter()
            .enumerate()
            .filter(move |(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, t)| t)
    }
}

/// What a `$filter` reads of a sign-in.
pub trait Fields {
    /// The string at a `/` path of [`TEXT_PROPERTIES`] (`None`: missing, null or not a string).
    fn text(&self, path: &str) -> Option<&str>;
    /// `status/errorCode`.
    fn error_code(&self) -> Option<i64>;
    /// `isInteractive`.
    fn is_interactive(&self) -> Option<bool>;
    /// `signInEventTypes` when present, else derived from `isInteractive` (records hand-written
    /// by tests may lack the beta-only property).
    fn event_types(&self) -> EventTypeSet;
}

impl Fields for Value {
    fn text(&self, path: &str) -> Option<&str> {
        lookup(self, path).and_then(Value::as_str)
    }

    fn error_code(&self) -> Option<i64> {
        self["status"]["errorCode"].as_i64()
    }

    fn is_interactive(&self) -> Option<bool> {
        self["isInteractive"].as_bool()
    }

    fn event_types(&self) -> EventTypeSet {
        EventTypeSet::of(event_types(self))
    }
}

/// The [`Fields`] of one sign-in, apart from its JSON: the strings a filter can compare,
/// concatenated, and the few non-string values (a few hundred bytes instead of a `Value` tree).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInFields {
    /// The strings at [`TEXT_PROPERTIES`], concatenated in that order.
    texts: Box<str>,
    /// `ends[i]`: where the `i`-th string ends in `texts`.
    ends: [u32; TEXT_PROPERTIES.len()],
    /// Bit `i`: the `i`-th property is a string (else missing, null or another type).
    present: u32,
    error_code: Option<i64>,
    interactive: Option<bool>,
    event_types: EventTypeSet,
}

impl SignInFields {
    pub fn of(record: &Value) -> Self {
        let mut texts = String::new();
        let mut ends = [0u32; TEXT_PROPERTIES.len()];
        let mut present = 0u32;
        for (i, path) in TEXT_PROPERTIES.iter().enumerate() {
            if let Some(text) = record.text(path) {
                texts.push_str(text);
                present |= 1 << i;
            }
            // Records are far below 4 GiB; saturate rather than wrap should one not be.
            ends[i] = u32::try_from(texts.len()).unwrap_or(u32::MAX);
        }
        SignInFields {
            texts: texts.into_boxed_str(),
            ends,
            present,
            error_code: record.error_code(),
            interactive: record.is_interactive(),
            event_types: record.event_types(),
        }
    }
}

impl Fields for SignInFields {
    fn text(&self, path: &str) -> Option<&str> {
        let i = TEXT_PROPERTIES.iter().position(|p| *p == path)?;
        if self.present & (1 << i) == 0 {
            return None;
        }
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        self.texts.get(start..self.ends[i] as usize)
    }

    fn error_code(&self) -> Option<i64> {
        self.error_code
    }

    fn is_interactive(&self) -> Option<bool> {
        self.interactive
    }

    fn event_types(&self) -> EventTypeSet {
        self.event_types
    }
}

impl Expr {
    /// Whether the record satisfies the filter.
    pub fn matches(&self, record: &Value) -> bool {
        self.matches_created(record, created_of(record))
    }

    /// [`Self::matches`] on any [`Fields`], with the record's `createdDateTime` already parsed
    /// ([`created_of`]): the fake parses each record's time once, not once per query.
    pub fn matches_created<R: Fields + ?Sized>(
        &self,
        record: &R,
        created: Option<OffsetDateTime>,
    ) -> bool {
        match self {
            Expr::And(a, b) => {
                a.matches_created(record, created) && b.matches_created(record, created)
            }
            Expr::Or(a, b) => {
                a.matches_created(record, created) || b.matches_created(record, created)
            }
            Expr::Created(op, at) => {
                let Some(t) = created else {
                    return false;
                };
                match op {
                    CmpOp::Eq => t == *at,
                    CmpOp::Ne => t != *at,
                    CmpOp::Ge => t >= *at,
                    CmpOp::Le => t <= *at,
                }
            }
            Expr::Text {
                path,
                negate,
                value,
            } => {
                let equal = record.text(path).is_some_and(|s| s == value);
                equal != *negate
            }
            Expr::StartsWith { path, prefix } => record
                .text(path)
                .is_some_and(|s| s.starts_with(prefix.as_str())),
            Expr::ErrorCode { negate, value } => {
                let equal = record.error_code() == Some(*value);
                equal != *negate
            }
            Expr::IsInteractive(value) => record.is_interactive() == Some(*value),
            Expr::EventTypes(tests) => record
                .event_types()
                .iter()
                .any(|t| tests.iter().any(|test| (test.value == t) != test.negate)),
        }
    }

    /// The `createdDateTime` range every matching record lies in, `(earliest, latest)` (`None`:
    /// open), from the `ge`/`le`/`eq` clauses that must all hold (joined by `and`). A record
    /// outside it, or without a valid `createdDateTime`, cannot match when a bound is set.
    pub fn created_bounds(&self) -> (Option<OffsetDateTime>, Option<OffsetDateTime>) {
        match self {
            Expr::And(a, b) => {
                let (a_low, a_high) = a.created_bounds();
                let (b_low, b_high) = b.created_bounds();
                let low = match (a_low, b_low) {
                    (Some(x), Some(y)) => Some(x.max(y)),
                    (x, y) => x.or(y),
                };
                let high = match (a_high, b_high) {
                    (Some(x), Some(y)) => Some(x.min(y)),
                    (x, y) => x.or(y),
                };
                (low, high)
            }
            Expr::Created(CmpOp::Ge, at) => (Some(*at), None),
            Expr::Created(CmpOp::Le, at) => (None, Some(*at)),
            Expr::Created(CmpOp::Eq, at) => (Some(*at), Some(*at)),
            _ => (None, None),
        }
    }

    /// Whether the filter says anything about `signInEventTypes` (else only interactive
    /// sign-ins are returned, as the service does).
    pub fn mentions_event_types(&self) -> bool {
        match self {
            Expr::And(a, b) | Expr::Or(a, b) => {
                a.mentions_event_types() || b.mentions_event_types()
            }
            Expr::EventTypes(_) => true,
            _ => false,
        }
    }

    /// Whether a `signInEventTypes/any(…)` lambda combines several comparisons
    /// (`t eq 'a' or t eq 'b'`): a form Microsoft's documentation never shows, which the fake
    /// can be told to refuse.
    pub fn combines_event_types(&self) -> bool {
        match self {
            Expr::And(a, b) | Expr::Or(a, b) => {
                a.combines_event_types() || b.combines_event_types()
            }
            Expr::EventTypes(tests) => tests.len() > 1,
            _ => false,
        }
    }
}

/// A record's `createdDateTime` as the service compares it (`None`: missing or not RFC 3339).
pub fn created_of(record: &Value) -> Option<OffsetDateTime> {
    record["createdDateTime"]
        .as_str()
        .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
}

/// A record's event types: `signInEventTypes` when present, else derived from `isInteractive`
/// (records hand-written by tests may lack the beta-only property).
pub fn event_types(record: &Value) -> Vec<&str> {
    match record.get("signInEventTypes").and_then(Value::as_array) {
        Some(types) => types.iter().filter_map(Value::as_str).collect(),
        None if record["isInteractive"] == Value::Bool(false) => vec!["nonInteractiveUser"],
        None => vec!["interactiveUser"],
    }
}

fn lookup<'a>(record: &'a Value, path: &str) -> Option<&'a Value> {
    let mut current = record;
    for part in path.split('/') {
        current = current.as_object()?.get(part)?;
    }
    Some(current)
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    Comma,
    Colon,
    Str(String),
    /// Identifiers, keywords, numbers and unquoted date-times.
    Word(String),
}

fn tokenize(text: &str) -> Result<Vec<Token>, QueryError> {
    let mut tokens = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                tokens.push(Token::Open);
                i += 1;
            }
            ')' => {
                tokens.push(Token::Close);
                i += 1;
            }
            ',' => {
                tokens.push(Token::Comma);
                i += 1;
            }
            ':' => {
                tokens.push(Token::Colon);
                i += 1;
            }
            '\'' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(invalid_clause("unterminated string literal")),
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            s.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(other) => {
                            s.push(*other);
                            i += 1;
                        }
                    }
                }
                tokens.push(Token::Str(s));
            }
            c if c.is_ascii_digit() || c == '-' => {
                // Numbers and date-time literals (which contain ':' '.' '+' '-').
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric()
                        || matches!(chars[i], ':' | '.' | '+' | '-'))
                {
                    i += 1;
                }
                tokens.push(Token::Word(chars[start..i].iter().collect()));
            }
            c if c.is_alphabetic() || c == '_' || c == '$' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '/' | '.' | '$'))
                {
                    i += 1;
                }
                tokens.push(Token::Word(chars[start..i].iter().collect()));
            }
            other => {
                return Err(invalid_clause(format!(
                    "syntax error at position {i}: unexpected '{other}'"
                )))
            }
        }
    }
    Ok(tokens)
}

/// Parses a `$filter` for the given version.
pub fn parse_filter(text: &str, version: ApiVersion) -> Result<Expr, QueryError> {
    let tokens = tokenize(text)?;
    if tokens.is_empty() {
        return Err(invalid_clause("the filter is empty"));
    }
    let mut parser = Parser {
        tokens,
        pos: 0,
        version,
    };
    let expr = parser.or_expr()?;
    if parser.pos != parser.tokens.len() {
        return Err(invalid_clause(format!(
            "syntax error at token {}",
            parser.pos + 1
        )));
    }
    Ok(expr)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    version: ApiVersion,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn expect(&mut self, want: Token) -> Result<(), QueryError> {
        match self.next() {
            Some(t) if t == want => Ok(()),
            _ => Err(invalid_clause(format!("expected {want:?}"))),
        }
    }

    fn peek_word(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w == word)
    }

    fn or_expr(&mut self) -> Result<Expr, QueryError> {
        let mut left = self.and_expr()?;
        while self.peek_word("or") {
            self.pos += 1;
            let right = self.and_expr()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and_expr(&mut self) -> Result<Expr, QueryError> {
        let mut left = self.primary()?;
        while self.peek_word("and") {
            self.pos += 1;
            let right = self.primary()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn primary(&mut self) -> Result<Expr, QueryError> {
        match self.next() {
            Some(Token::Open) => {
                let inner = self.or_expr()?;
                self.expect(Token::Close)?;
                Ok(inner)
            }
            Some(Token::Word(word)) => {
                if word == "not" {
                    return Err(invalid_clause("the 'not' operator is not supported"));
                }
                if self.peek() == Some(&Token::Open) {
                    return self.function(&word);
                }
                self.comparison(&word)
            }
            _ => Err(invalid_clause("expected a property, a function or '('")),
        }
    }

    fn property_error(&self, name: &str) -> QueryError {
        QueryError(format!(
            "Could not find a property named '{name}' on type 'microsoft.graph.signIn'."
        ))
    }

    fn operator(&mut self) -> Result<String, QueryError> {
        match self.next() {
            Some(Token::Word(op))
                if matches!(
                    op.as_str(),
                    "eq" | "ne" | "ge" | "le" | "gt" | "lt" | "in" | "has"
                ) =>
            {
                Ok(op)
            }
            _ => Err(invalid_clause("expected a comparison operator")),
        }
    }

    fn comparison(&mut self, property: &str) -> Result<Expr, QueryError> {
        let op = self.operator()?;
        let literal = self.next();
        match property {
            "createdDateTime" => {
                let op = match op.as_str() {
                    "eq" => CmpOp::Eq,
                    "ge" => CmpOp::Ge,
                    "le" => CmpOp::Le,
                    other => {
                        return Err(invalid_clause(format!(
                            "The operator '{other}' is not supported for property 'createdDateTime'. Supported operators: eq, ge, le."
                        )))
                    }
                };
                match literal {
                    Some(Token::Word(w)) => {
                        let at = OffsetDateTime::parse(&w, &Rfc3339).map_err(|_| {
                            invalid_clause(format!(
                                "'{w}' is not a valid DateTimeOffset literal (expected e.g. 2026-11-28T00:00:00Z)"
                            ))
                        })?;
                        Ok(Expr::Created(op, at))
                    }
                    Some(Token::Str(s)) => Err(invalid_clause(format!(
                        "A binary operator with incompatible types was detected. Found operand types 'Edm.DateTimeOffset' and 'Edm.String' for operator kind '{op:?}' ('{s}' must not be quoted)."
                    ))),
                    _ => Err(invalid_clause("expected a DateTimeOffset literal")),
                }
            }
            "status/errorCode" => {
                let negate = self.eq_or_ne(&op, property)?;
                match literal {
                    Some(Token::Word(w)) => {
                        let value = w.parse().map_err(|_| {
                            invalid_clause(format!("'{w}' is not a valid Edm.Int32 literal"))
                        })?;
                        Ok(Expr::ErrorCode { negate, value })
                    }
                    _ => Err(invalid_clause(
                        "A binary operator with incompatible types was detected for 'status/errorCode'.",
                    )),
                }
            }
            "isInteractive" => {
                if op != "eq" {
                    return Err(invalid_clause(format!(
                        "The operator '{op}' is not supported for property 'isInteractive'."
                    )));
                }
                match literal {
                    Some(Token::Word(w)) if w == "true" => Ok(Expr::IsInteractive(true)),
                    Some(Token::Word(w)) if w == "false" => Ok(Expr::IsInteractive(false)),
                    _ => Err(invalid_clause("'isInteractive' compares to true or false")),
                }
            }
            "signInEventTypes" if self.version == ApiVersion::Beta => Err(invalid_clause(
                "'signInEventTypes' is a collection: use signInEventTypes/any(t: t eq '…')",
            )),
            _ => {
                let Some(path) = TEXT_PROPERTIES.iter().find(|p| **p == property) else {
                    if KNOWN_UNFILTERABLE.contains(&property) {
                        return Err(invalid_clause(format!(
                            "filtering on property '{property}' is not supported"
                        )));
                    }
                    return Err(self.property_error(property));
                };
                let negate = self.eq_or_ne(&op, property)?;
                match literal {
                    Some(Token::Str(value)) => Ok(Expr::Text {
                        path,
                        negate,
                        value,
                    }),
                    Some(Token::Word(w)) if w == "null" => Err(invalid_clause(format!(
                        "comparing '{property}' with null is not supported"
                    ))),
                    _ => Err(invalid_clause(format!(
                        "A binary operator with incompatible types was detected. '{property}' is Edm.String: quote the value."
                    ))),
                }
            }
        }
    }

    fn eq_or_ne(&self, op: &str, property: &str) -> Result<bool, QueryError> {
        match op {
            "eq" => Ok(false),
            "ne" => Ok(true),
            other => Err(invalid_clause(format!(
                "The operator '{other}' is not supported for property '{property}'."
            ))),
        }
    }

    fn function(&mut self, name: &str) -> Result<Expr, QueryError> {
        self.expect(Token::Open)?;
        if name == "signInEventTypes/any" {
            if self.version != ApiVersion::Beta {
                // What v1.0 answers (see the module docs).
                return Err(invalid_clause(
                    "signInEventTypes is not available in v1.0; use the beta endpoint",
                ));
            }
            return self.event_type_lambda();
        }
        if let Some(property) = name.strip_suffix("/any").or(name.strip_suffix("/all")) {
            if TEXT_PROPERTIES.contains(&property) || KNOWN_UNFILTERABLE.contains(&property) {
                return Err(invalid_clause(format!("'{property}' is not a collection")));
            }
            return Err(self.property_error(property));
        }
        match name.to_ascii_lowercase().as_str() {
            "startswith" => {
                let property = match self.next() {
                    Some(Token::Word(p)) => p,
                    _ => return Err(invalid_clause("startswith expects a property first")),
                };
                self.expect(Token::Comma)?;
                let prefix = match self.next() {
                    Some(Token::Str(s)) => s,
                    _ => return Err(invalid_clause("startswith expects a quoted prefix")),
                };
                self.expect(Token::Close)?;
                match STARTSWITH_PROPERTIES.iter().find(|p| **p == property) {
                    Some(path) => Ok(Expr::StartsWith { path, prefix }),
                    None if TEXT_PROPERTIES.contains(&property.as_str())
                        || property == "createdDateTime" =>
                    {
                        Err(invalid_clause(format!(
                            "startswith is not supported for property '{property}'"
                        )))
                    }
                    None => Err(self.property_error(&property)),
                }
            }
            "contains" | "endswith" | "substringof" | "tolower" | "toupper" | "indexof"
            | "length" | "trim" | "concat" | "year" | "month" | "day" => Err(invalid_clause(
                format!("The function '{name}' is not supported."),
            )),
            _ => Err(QueryError(format!(
                "An unknown function with name '{name}' was found. This may also be a function import or a key lookup on a navigation property, which is not allowed."
            ))),
        }
    }

    /// `t: t eq|ne 'x' [or t eq|ne 'y']…)` after `signInEventTypes/any(`.
    fn event_type_lambda(&mut self) -> Result<Expr, QueryError> {
        let var = match self.next() {
            Some(Token::Word(v)) if v.chars().all(|c| c.is_alphanumeric() || c == '_') => v,
            _ => return Err(invalid_clause("any() expects a lambda variable")),
        };
        self.expect(Token::Colon)?;
        let mut types = Vec::new();
        loop {
            match self.next() {
                Some(Token::Word(w)) if w == var => {}
                _ => {
                    return Err(invalid_clause(format!(
                        "the lambda body must compare '{var}'"
                    )))
                }
            }
            let negate = match self.next() {
                Some(Token::Word(op)) if op == "eq" => false,
                Some(Token::Word(op)) if op == "ne" => true,
                _ => {
                    return Err(invalid_clause(
                        "only 'eq' and 'ne' are supported inside any()",
                    ))
                }
            };
            match self.next() {
                Some(Token::Str(value)) => {
                    if !EVENT_TYPE_VALUES.contains(&value.as_str()) {
                        return Err(invalid_clause(format!(
                            "'{value}' is not a valid signInEventType (interactiveUser, nonInteractiveUser, servicePrincipal, managedIdentity)"
                        )));
                    }
                    types.push(EventTypeTest { negate, value });
                }
                _ => return Err(invalid_clause("signInEventTypes values must be quoted")),
            }
            if self.peek_word("or") {
                self.pos += 1;
                continue;
            }
            break;
        }
        self.expect(Token::Close)?;
        Ok(Expr::EventTypes(types))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn beta(f: &str) -> Result<Expr, QueryError> {
        parse_filter(f, ApiVersion::Beta)
    }

    fn v1(f: &str) -> Result<Expr, QueryError> {
        parse_filter(f, ApiVersion::V1)
    }

    #[test]
    fn parses_the_pipeline_filter_shape() {
        let f = "createdDateTime ge 2026-11-21T00:00:00Z and createdDateTime le 2026-11-28T00:00:00Z and (clientAppUsed eq 'Exchange ActiveSync' or startswith(appDisplayName,'Office 365'))";
        let e = v1(f).unwrap();
        let r = json!({"createdDateTime": "2026-11-25T10:00:00Z", "clientAppUsed": "exchange activesync", "appDisplayName": "x"});
        assert!(!e.matches(&r), "eq is exact");
        let r = json!({"createdDateTime": "2026-11-25T10:00:00Z", "clientAppUsed": "Exchange ActiveSync", "appDisplayName": "x"});
        assert!(e.matches(&r));
        let r = json!({"createdDateTime": "2026-11-29T10:00:00Z", "clientAppUsed": "Exchange ActiveSync"});
        assert!(!e.matches(&r));
        let r = json!({"createdDateTime": "2026-11-25T10:00:00Z", "clientAppUsed": "Browser", "appDisplayName": "Office 365 Exchange Online"});
        assert!(e.matches(&r));
        let r = json!({"createdDateTime": "2026-11-25T10:00:00Z", "clientAppUsed": "Browser", "appDisplayName": "office 365 Exchange Online"});
        assert!(!e.matches(&r), "startswith is case-sensitive");
    }

    #[test]
    fn refuses_what_the_service_refuses() {
        assert!(v1("createdDateTime gt 2026-11-21T00:00:00Z").is_err());
        assert!(v1("createdDateTime lt 2026-11-21T00:00:00Z").is_err());
        assert!(v1("createdDateTime ge '2026-11-21T00:00:00Z'").is_err());
        assert!(v1("createdDateTime ge 2026-11-21T00:00:00 00:00").is_err());
        assert!(v1("signInEventTypes/any(t: t eq 'nonInteractiveUser')").is_err());
        assert!(beta("signInEventTypes/any(t: t eq 'nonInteractiveUser')").is_ok());
        assert!(beta("signInEventTypes/any(t: t eq 'robot')").is_err());
        assert!(v1("foo eq 'x'").is_err());
        assert!(v1("contains(appDisplayName,'x')").is_err());
        assert!(v1("frobnicate(appDisplayName,'x')").is_err());
        assert!(v1("not (clientAppUsed eq 'x')").is_err());
        assert!(v1("clientAppUsed eq x").is_err());
        assert!(v1("clientAppUsed eq 'x").is_err());
        assert!(v1("(clientAppUsed eq 'x'").is_err());
        assert!(v1("").is_err());
    }

    #[test]
    fn the_presets_clauses_parse_and_match_as_graph_evaluates_them() {
        let exchange = v1("(resourceId eq '00000002-0000-0ff1-ce00-000000000000' or appDisplayName eq 'Office 365 Exchange Online' or startswith(appDisplayName,'Exchange') or clientAppUsed eq 'IMAP4')").unwrap();
        assert!(exchange.matches(&json!({"appDisplayName": "Microsoft Office", "resourceId": "00000002-0000-0ff1-ce00-000000000000"})));
        assert!(!exchange.matches(&json!({"appDisplayName": "Microsoft Office", "resourceId": "00000003-0000-0ff1-ce00-000000000000"})));
        let legacy = v1(
            "(clientAppUsed ne 'Browser' and clientAppUsed ne 'Mobile Apps and Desktop clients')",
        )
        .unwrap();
        assert!(legacy.matches(&json!({"clientAppUsed": "IMAP4"})));
        assert!(!legacy.matches(&json!({"clientAppUsed": "Browser"})));
        // OData: null ne 'x' is true, so workload sign-ins pass the server clause.
        assert!(legacy.matches(&json!({"clientAppUsed": null})));
        let combined =
            "signInEventTypes/any(t: t eq 'interactiveUser' or t eq 'nonInteractiveUser')";
        let e = beta(combined).unwrap();
        assert!(e.matches(&json!({"signInEventTypes": ["nonInteractiveUser"]})));
        assert!(!e.matches(&json!({"signInEventTypes": ["servicePrincipal"]})));
        let err = v1(combined).unwrap_err();
        assert!(err.0.starts_with("Invalid filter clause"), "{err}");
    }

    #[test]
    fn quotes_are_doubled_inside_literals() {
        let e = v1("userPrincipalName eq 'danny.o''brien@contoso.com'").unwrap();
        assert!(e.matches(&json!({"userPrincipalName": "danny.o'brien@contoso.com"})));
        assert!(!e.matches(&json!({"userPrincipalName": "Danny.O'Brien@contoso.com"})));
    }

    #[test]
    fn event_types_and_error_codes() {
        let e = beta("signInEventTypes/any(t: t eq 'nonInteractiveUser' or t eq 'servicePrincipal') and status/errorCode ne 0").unwrap();
        assert!(e.mentions_event_types());
        assert!(e.matches(
            &json!({"signInEventTypes": ["servicePrincipal"], "status": {"errorCode": 50126}})
        ));
        assert!(!e.matches(
            &json!({"signInEventTypes": ["interactiveUser"], "status": {"errorCode": 50126}})
        ));
        assert!(!e.matches(
            &json!({"signInEventTypes": ["nonInteractiveUser"], "status": {"errorCode": 0}})
        ));
        // Records without the beta-only property fall back to isInteractive.
        let e = beta("signInEventTypes/any(t: t eq 'nonInteractiveUser')").unwrap();
        assert!(e.matches(&json!({"isInteractive": false})));
        assert!(!e.matches(&json!({"isInteractive": true})));
        assert_eq!(event_types(&json!({})), vec!["interactiveUser"]);
    }

    #[test]
    fn query_options() {
        let q = parse_query(
            Some("%24top=10&%24filter=clientAppUsed%20eq%20%27IMAP4%27"),
            ApiVersion::V1,
        )
        .unwrap();
        assert_eq!(q.top, Some(10));
        assert!(q.filter.is_some());
        for bad in [
            "$top=0",
            "$top=1001",
            "$top=ten",
            "$select=id",
            "$skip=10",
            "$count=true",
            "$search=x",
            "$orderby=userPrincipalName",
            "$top=5&$top=6",
            "$frob=1",
        ] {
            assert!(
                parse_query(Some(bad), ApiVersion::V1).is_err(),
                "{bad} accepted"
            );
        }
        assert!(
            parse_query(Some("$orderby=createdDateTime%20asc"), ApiVersion::V1)
                .unwrap()
                .oldest_first
        );
        // A literal '+' in a query string decodes to a space: the offset is then malformed.
        assert!(parse_query(
            Some("$filter=createdDateTime ge 2026-11-21T00:00:00+00:00"),
            ApiVersion::V1
        )
        .is_err());
        assert!(parse_query(
            Some("$filter=createdDateTime ge 2026-11-21T00:00:00%2B00:00"),
            ApiVersion::V1
        )
        .is_ok());
    }
}
