//! The two event streams of the lake, `auth` and `access`, each declared once:
//! the Rust struct, its Arrow schema (with a description per column, kept as
//! field metadata so the Parquet files document themselves), a builder that
//! turns events into `RecordBatch`es, and the reader that turns them back.
//!
//! Every other crate uses these; none names a column on its own.

use std::sync::Arc;

use arrow_array::builder::{
    ArrayBuilder, BooleanBuilder, Float64Builder, ListBuilder, StringBuilder,
    TimestampMicrosecondBuilder, UInt16Builder, UInt64Builder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, TimestampMicrosecondType, UInt16Type, UInt64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};

use crate::request::Interaction;

/// Reading a batch back into events failed: the batch is not of this stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("column `{0}` is missing from the batch")]
    MissingColumn(&'static str),
    #[error("column `{column}` has type {found}, expected {expected}")]
    WrongType {
        column: &'static str,
        found: String,
        expected: String,
    },
    #[error("column `{column}` row {row}: {message}")]
    BadValue {
        column: &'static str,
        row: usize,
        message: String,
    },
}

/// A point in time, UTC, in microseconds since the Unix epoch (the lake's
/// `ts` type: Arrow `Timestamp(µs, "UTC")`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn from_offset_datetime(t: time::OffsetDateTime) -> Timestamp {
        Timestamp((t.unix_timestamp_nanos() / 1_000) as i64)
    }

    pub fn to_offset_datetime(self) -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp_nanos(self.0 as i128 * 1_000)
            .expect("an i64 of microseconds is always in range")
    }

    /// Parses RFC 3339 (`2026-11-23T10:00:00.123Z`, any offset).
    pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .ok()
            .map(Timestamp::from_offset_datetime)
    }

    /// The UTC day, `YYYY-MM-DD`: the lake's partition key.
    pub fn date_string(self) -> String {
        self.to_offset_datetime().date().to_string()
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = self.to_offset_datetime();
        match t.format(&time::format_description::well_known::Rfc3339) {
            Ok(s) => f.write_str(&s),
            Err(_) => write!(f, "{}µs", self.0),
        }
    }
}

/// How a Rust value maps to one Arrow column.
pub trait ColumnValue: Sized {
    type Builder: ArrayBuilder;
    const NULLABLE: bool = false;
    fn data_type() -> DataType;
    fn new_builder(capacity: usize) -> Self::Builder;
    fn append_to(&self, builder: &mut Self::Builder);
    fn append_null(builder: &mut Self::Builder);
    /// Reads row `row`, which the caller has checked is not null.
    fn read(array: &dyn Array, row: usize) -> Result<Self, String>;
    /// The value a null reads as; `None` when the column may not be null.
    fn null_value() -> Option<Self> {
        None
    }
}

fn downcast_err(array: &dyn Array, expected: &str) -> String {
    format!("expected {expected}, found {}", array.data_type())
}

impl ColumnValue for String {
    type Builder = StringBuilder;
    fn data_type() -> DataType {
        DataType::Utf8
    }
    fn new_builder(capacity: usize) -> StringBuilder {
        StringBuilder::with_capacity(capacity, capacity * 16)
    }
    fn append_to(&self, b: &mut StringBuilder) {
        b.append_value(self);
    }
    fn append_null(b: &mut StringBuilder) {
        b.append_null();
    }
    fn read(array: &dyn Array, row: usize) -> Result<String, String> {
        array
            .as_string_opt::<i32>()
            .map(|a| a.value(row).to_string())
            .ok_or_else(|| downcast_err(array, "Utf8"))
    }
}

macro_rules! primitive_column {
    ($rust:ty, $builder:ty, $arrow:ty, $dt:expr) => {
        impl ColumnValue for $rust {
            type Builder = $builder;
            fn data_type() -> DataType {
                $dt
            }
            fn new_builder(capacity: usize) -> $builder {
                <$builder>::with_capacity(capacity)
            }
            fn append_to(&self, b: &mut $builder) {
                b.append_value(*self);
            }
            fn append_null(b: &mut $builder) {
                b.append_null();
            }
            fn read(array: &dyn Array, row: usize) -> Result<$rust, String> {
                array
                    .as_primitive_opt::<$arrow>()
                    .map(|a| a.value(row))
                    .ok_or_else(|| downcast_err(array, stringify!($dt)))
            }
        }
    };
}

primitive_column!(u64, UInt64Builder, UInt64Type, DataType::UInt64);
primitive_column!(u16, UInt16Builder, UInt16Type, DataType::UInt16);
primitive_column!(f64, Float64Builder, Float64Type, DataType::Float64);

impl ColumnValue for bool {
    type Builder = BooleanBuilder;
    fn data_type() -> DataType {
        DataType::Boolean
    }
    fn new_builder(capacity: usize) -> BooleanBuilder {
        BooleanBuilder::with_capacity(capacity)
    }
    fn append_to(&self, b: &mut BooleanBuilder) {
        b.append_value(*self);
    }
    fn append_null(b: &mut BooleanBuilder) {
        b.append_null();
    }
    fn read(array: &dyn Array, row: usize) -> Result<bool, String> {
        array
            .as_boolean_opt()
            .map(|a| a.value(row))
            .ok_or_else(|| downcast_err(array, "Boolean"))
    }
}

impl ColumnValue for Timestamp {
    type Builder = TimestampMicrosecondBuilder;
    fn data_type() -> DataType {
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    }
    fn new_builder(capacity: usize) -> TimestampMicrosecondBuilder {
        TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone("UTC")
    }
    fn append_to(&self, b: &mut TimestampMicrosecondBuilder) {
        b.append_value(self.0);
    }
    fn append_null(b: &mut TimestampMicrosecondBuilder) {
        b.append_null();
    }
    fn read(array: &dyn Array, row: usize) -> Result<Timestamp, String> {
        array
            .as_primitive_opt::<TimestampMicrosecondType>()
            .map(|a| Timestamp(a.value(row)))
            .ok_or_else(|| downcast_err(array, "Timestamp(µs)"))
    }
}

impl ColumnValue for Vec<String> {
    type Builder = ListBuilder<StringBuilder>;
    fn data_type() -> DataType {
        DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)))
    }
    fn new_builder(capacity: usize) -> ListBuilder<StringBuilder> {
        ListBuilder::with_capacity(StringBuilder::new(), capacity)
    }
    fn append_to(&self, b: &mut ListBuilder<StringBuilder>) {
        for s in self {
            b.values().append_value(s);
        }
        b.append(true);
    }
    fn append_null(b: &mut ListBuilder<StringBuilder>) {
        b.append(false);
    }
    fn read(array: &dyn Array, row: usize) -> Result<Vec<String>, String> {
        let list = array
            .as_list_opt::<i32>()
            .ok_or_else(|| downcast_err(array, "List<Utf8>"))?;
        let values = list.value(row);
        let strings = values
            .as_string_opt::<i32>()
            .ok_or_else(|| downcast_err(&values, "Utf8"))?;
        Ok(strings
            .iter()
            .map(|s| s.unwrap_or_default().to_string())
            .collect())
    }
}

impl<T: ColumnValue> ColumnValue for Option<T> {
    type Builder = T::Builder;
    const NULLABLE: bool = true;
    fn data_type() -> DataType {
        T::data_type()
    }
    fn new_builder(capacity: usize) -> T::Builder {
        T::new_builder(capacity)
    }
    fn append_to(&self, b: &mut T::Builder) {
        match self {
            Some(v) => v.append_to(b),
            None => T::append_null(b),
        }
    }
    fn append_null(b: &mut T::Builder) {
        T::append_null(b);
    }
    fn read(array: &dyn Array, row: usize) -> Result<Option<T>, String> {
        T::read(array, row).map(Some)
    }
    fn null_value() -> Option<Option<T>> {
        Some(None)
    }
}

/// Enums are stored as their lower-case names (Parquet dictionary-encodes
/// them), so any engine reads them as plain strings.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
            pub fn parse(s: &str) -> Option<$name> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ColumnValue for $name {
            type Builder = StringBuilder;
            fn data_type() -> DataType { DataType::Utf8 }
            fn new_builder(capacity: usize) -> StringBuilder { StringBuilder::with_capacity(capacity, capacity * 8) }
            fn append_to(&self, b: &mut StringBuilder) { b.append_value(self.as_str()); }
            fn append_null(b: &mut StringBuilder) { b.append_null(); }
            fn read(array: &dyn Array, row: usize) -> Result<$name, String> {
                let s = String::read(array, row)?;
                $name::parse(&s).ok_or_else(|| format!("`{s}` is not a valid {}", stringify!($name)))
            }
        }
    };
}

string_enum!(
    /// The deployment an event comes from.
    Env {
        Prod = "prod",
        Sandbox = "sandbox",
        Test = "test",
    }
);

string_enum!(
    /// What happened at the authorization server.
    AuthKind {
        /// The authorize endpoint (a user launched or logged in to an app).
        Authorize = "authorize",
        /// An authorization code exchanged for tokens.
        Token = "token",
        /// A refresh token exchanged for new tokens.
        Refresh = "refresh",
        Revoke = "revoke",
        Introspect = "introspect",
        ConsentGrant = "consent_grant",
        ConsentWithdraw = "consent_withdraw",
        /// A backend service's client-credentials grant.
        ClientCredentials = "client_credentials",
        TokenExchange = "token_exchange",
        Logout = "logout",
        /// An error the source reports without a more specific kind.
        Error = "error",
    }
);

string_enum!(
    /// Whether an authorization-server event succeeded.
    AuthOutcome {
        Success = "success",
        Failure = "failure",
    }
);

string_enum!(
    /// What became of a FHIR call.
    AccessOutcome {
        /// 1xx-3xx
        Allowed = "allowed",
        /// 401 and 403: the token did not allow it.
        Denied = "denied",
        /// any other 4xx or 5xx
        Error = "error",
    }
);

impl AccessOutcome {
    /// The outcome an HTTP status means.
    pub fn from_status(status: u16) -> AccessOutcome {
        match status {
            401 | 403 => AccessOutcome::Denied,
            400..=599 => AccessOutcome::Error,
            _ => AccessOutcome::Allowed,
        }
    }
}

impl ColumnValue for Interaction {
    type Builder = StringBuilder;
    fn data_type() -> DataType {
        DataType::Utf8
    }
    fn new_builder(capacity: usize) -> StringBuilder {
        StringBuilder::with_capacity(capacity, capacity * 8)
    }
    fn append_to(&self, b: &mut StringBuilder) {
        b.append_value(self.as_str());
    }
    fn append_null(b: &mut StringBuilder) {
        b.append_null();
    }
    fn read(array: &dyn Array, row: usize) -> Result<Interaction, String> {
        let s = String::read(array, row)?;
        Interaction::parse(&s).ok_or_else(|| format!("`{s}` is not a FHIR interaction"))
    }
}

/// Declares one stream: the struct, its schema, its batch builder and reader,
/// all from one list of fields, so a column is named in exactly one place.
macro_rules! stream {
    (
        $(#[$meta:meta])*
        $name:ident, $builder:ident, $stream:literal {
            $( $(#[doc = $doc:literal])* $field:ident : $ty:ty ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        pub struct $name {
            $( $(#[doc = $doc])* pub $field: $ty, )+
        }

        impl $name {
            /// The stream's name: the lake folder `lake/<name>/`.
            pub const STREAM: &'static str = $stream;
            /// Column names in schema order.
            pub const COLUMNS: &'static [&'static str] = &[$(stringify!($field)),+];

            /// The Arrow schema, with each column's description in its
            /// field metadata under `description`.
            pub fn schema() -> SchemaRef {
                static SCHEMA: std::sync::OnceLock<SchemaRef> = std::sync::OnceLock::new();
                SCHEMA
                    .get_or_init(|| {
                        Arc::new(Schema::new(vec![$(
                            Field::new(stringify!($field), <$ty as ColumnValue>::data_type(), <$ty as ColumnValue>::NULLABLE)
                                .with_metadata(std::collections::HashMap::from([(
                                    "description".to_string(),
                                    { let docs: &[&str] = &[$($doc),*]; docs.iter().map(|d| d.trim()).collect::<Vec<_>>().join(" ") },
                                )])),
                        )+]))
                    })
                    .clone()
            }

            /// Reads a batch of this stream back into events. A nullable
            /// column the batch lacks (a file written before the column
            /// existed) reads as null.
            pub fn from_batch(batch: &RecordBatch) -> Result<Vec<$name>, SchemaError> {
                $(
                    let $field: ArrayRef = match batch.column_by_name(stringify!($field)) {
                        Some(c) => c.clone(),
                        None if <$ty as ColumnValue>::NULLABLE => {
                            arrow_array::new_null_array(&<$ty as ColumnValue>::data_type(), batch.num_rows())
                        }
                        None => return Err(SchemaError::MissingColumn(stringify!($field))),
                    };
                    let expected = <$ty as ColumnValue>::data_type();
                    if $field.data_type() != &expected {
                        return Err(SchemaError::WrongType {
                            column: stringify!($field),
                            found: $field.data_type().to_string(),
                            expected: expected.to_string(),
                        });
                    }
                )+
                let mut out = Vec::with_capacity(batch.num_rows());
                for row in 0..batch.num_rows() {
                    out.push($name {$(
                        $field: if $field.is_null(row) {
                            <$ty as ColumnValue>::null_value().ok_or_else(|| SchemaError::BadValue {
                                column: stringify!($field), row, message: "null in a required column".into(),
                            })?
                        } else {
                            <$ty as ColumnValue>::read($field.as_ref(), row)
                                .map_err(|message| SchemaError::BadValue { column: stringify!($field), row, message })?
                        },
                    )+});
                }
                Ok(out)
            }
        }

        /// Accumulates events of this stream into a `RecordBatch`.
        pub struct $builder {
            $( $field: <$ty as ColumnValue>::Builder, )+
            rows: usize,
        }

        impl std::fmt::Debug for $builder {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($builder)).field("rows", &self.rows).finish()
            }
        }

        impl Default for $builder {
            fn default() -> Self {
                Self::with_capacity(1024)
            }
        }

        impl $builder {
            pub fn with_capacity(capacity: usize) -> Self {
                $builder {
                    $( $field: <$ty as ColumnValue>::new_builder(capacity), )+
                    rows: 0,
                }
            }

            pub fn push(&mut self, event: &$name) {
                $( event.$field.append_to(&mut self.$field); )+
                self.rows += 1;
            }

            pub fn len(&self) -> usize {
                self.rows
            }

            pub fn is_empty(&self) -> bool {
                self.rows == 0
            }

            /// Takes the rows pushed so far as a batch and starts empty again.
            pub fn finish(&mut self) -> RecordBatch {
                let columns: Vec<ArrayRef> = vec![$( ArrayBuilder::finish(&mut self.$field) ),+];
                self.rows = 0;
                RecordBatch::try_new($name::schema(), columns)
                    .expect("builders produce the schema's own types")
            }
        }
    };
}

stream!(
    /// One event of the authorization server.
    AuthEvent, AuthBatchBuilder, "auth" {
        /// Deterministic id from the source, file identity and offset: the same line always gets the same id.
        event_id: String,
        /// When it happened, UTC.
        ts: Timestamp,
        /// The tenant (hospital or organisation) the event belongs to.
        tenant: String,
        /// Environment: prod, sandbox or test.
        env: Env,
        /// What happened: authorize, token, refresh, revoke, introspect, consent_grant, consent_withdraw, client_credentials, token_exchange, logout or error.
        kind: AuthKind,
        /// success or failure.
        outcome: AuthOutcome,
        /// The source's error code or reason, when it failed.
        error: Option<String>,
        /// The OAuth client (app).
        client_id: Option<String>,
        /// The app's version, when the source or the User-Agent tells it.
        app_version: Option<String>,
        /// Keyed pseudonym of the user.
        user: Option<String>,
        /// The identity provider's session id.
        session_id: Option<String>,
        /// Keyed pseudonym of the launch patient.
        patient: Option<String>,
        /// Keyed pseudonym of the launch encounter.
        encounter: Option<String>,
        /// Scopes asked for, as written; null when the source does not record them.
        scopes_requested: Option<Vec<String>>,
        /// Scopes in the issued token, as written; null when the source does not record them.
        scopes_granted: Option<Vec<String>>,
        /// The OAuth grant type, e.g. authorization_code, refresh_token, client_credentials.
        grant_type: Option<String>,
        /// Id of the access token issued or acted on (a JWT's jti, else a hash): never the token.
        token_id: Option<String>,
        /// Id of the refresh token issued or consumed.
        refresh_token_id: Option<String>,
        /// The refresh token this event's token replaced.
        parent_token_id: Option<String>,
        /// When the issued token expires, UTC.
        expires_at: Option<Timestamp>,
        /// Client IP address.
        ip: Option<String>,
        /// Client User-Agent.
        user_agent: Option<String>,
        /// Lineage: the configured source name.
        source: String,
        /// Lineage: the file (or push endpoint) the event came from.
        source_file: Option<String>,
        /// Lineage: byte offset of the line in that file.
        source_offset: Option<u64>,
    }
);

stream!(
    /// One FHIR API call, seen at the gateway or in a FHIR AuditEvent.
    AccessEvent, AccessBatchBuilder, "access" {
        /// Deterministic id from the source, file identity and offset.
        event_id: String,
        /// When the call was made, UTC.
        ts: Timestamp,
        /// The tenant (hospital or organisation) whose API was called.
        tenant: String,
        /// Environment: prod, sandbox or test.
        env: Env,
        /// The OAuth client (app) that made the call.
        client_id: Option<String>,
        /// The app's version, when the line, the token or the User-Agent tells it.
        app_version: Option<String>,
        /// Keyed pseudonym of the user.
        user: Option<String>,
        /// Id of the access token used (a JWT's jti, else a hash): never the token.
        token_id: Option<String>,
        /// When the access token used expires (its JWT `exp`), UTC; null when the token is not a JWT or has no exp.
        expires_at: Option<Timestamp>,
        /// The tenant whose authorization server issued the token (from the JWT's `iss`, mapped like the source's tenants); null when unknown.
        token_tenant: Option<String>,
        /// HTTP method.
        method: String,
        /// Request path and query with ids pseudonymised.
        path: String,
        /// The FHIR interaction; null when the path is not a FHIR request.
        interaction: Option<Interaction>,
        /// The FHIR resource type the call is about.
        resource_type: Option<String>,
        /// The compartment the call is in, e.g. `Patient/<pseudonym>`.
        compartment: Option<String>,
        /// Keyed pseudonym of the patient the call concerns.
        patient: Option<String>,
        /// The permission the call needed as a SMART v2 scope, e.g. `patient/Observation.r`; null when none.
        required: Option<String>,
        /// Whether the token's scopes covered `required`; null when unknown.
        granted_covered: Option<bool>,
        /// HTTP status, when the source records it.
        status: Option<u16>,
        /// allowed, denied (401/403) or error.
        outcome: AccessOutcome,
        /// Response size in bytes.
        bytes: Option<u64>,
        /// Time to answer, in milliseconds.
        latency_ms: Option<f64>,
        /// Client IP address.
        ip: Option<String>,
        /// Client User-Agent.
        user_agent: Option<String>,
        /// Lineage: the configured source name.
        source: String,
        /// Lineage: the file (or push endpoint) the event came from.
        source_file: Option<String>,
        /// Lineage: byte offset of the line in that file.
        source_offset: Option<u64>,
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> AuthEvent {
        AuthEvent {
            event_id: "e1".into(),
            ts: Timestamp::parse_rfc3339("2026-11-23T10:00:00.123456Z").unwrap(),
            tenant: "north".into(),
            env: Env::Prod,
            kind: AuthKind::Refresh,
            outcome: AuthOutcome::Success,
            error: None,
            client_id: Some("cardio".into()),
            app_version: Some("2.4.1".into()),
            user: Some("u_1a2b".into()),
            session_id: None,
            patient: Some("p_9f".into()),
            encounter: None,
            scopes_requested: None,
            scopes_granted: Some(vec!["launch".into(), "patient/Observation.rs".into()]),
            grant_type: Some("refresh_token".into()),
            token_id: Some("t1".into()),
            refresh_token_id: Some("r2".into()),
            parent_token_id: Some("r1".into()),
            expires_at: Some(Timestamp(1_790_000_000_000_000)),
            ip: Some("10.0.0.1".into()),
            user_agent: None,
            source: "keycloak".into(),
            source_file: Some("/var/log/kc.log".into()),
            source_offset: Some(42),
        }
    }

    #[test]
    fn auth_round_trips_through_a_batch() {
        let mut b = AuthBatchBuilder::default();
        let mut second = auth();
        second.event_id = "e2".into();
        second.scopes_granted = Some(vec![]);
        second.client_id = None;
        b.push(&auth());
        b.push(&second);
        assert_eq!(b.len(), 2);
        let batch = b.finish();
        assert!(b.is_empty());
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.schema(), AuthEvent::schema());
        let back = AuthEvent::from_batch(&batch).unwrap();
        assert_eq!(back, vec![auth(), second]);
    }

    fn access() -> AccessEvent {
        AccessEvent {
            event_id: "a1".into(),
            ts: Timestamp::parse_rfc3339("2026-11-23T10:01:00.250Z").unwrap(),
            tenant: "north".into(),
            env: Env::Prod,
            client_id: Some("cardio".into()),
            app_version: None,
            user: Some("u_1a2b".into()),
            token_id: Some("jti:t1".into()),
            expires_at: Some(Timestamp(1_795_431_600_000_000)),
            token_tenant: Some("south".into()),
            method: "GET".into(),
            path: "/fhir/r4/Observation?patient=p_9f".into(),
            interaction: Some(Interaction::Search),
            resource_type: Some("Observation".into()),
            compartment: Some("Patient/p_9f".into()),
            patient: Some("p_9f".into()),
            required: Some("patient/Observation.rs".into()),
            granted_covered: Some(true),
            status: Some(200),
            outcome: AccessOutcome::Allowed,
            bytes: Some(5120),
            latency_ms: Some(42.5),
            ip: None,
            user_agent: None,
            source: "gateway".into(),
            source_file: None,
            source_offset: Some(7),
        }
    }

    #[test]
    fn access_round_trips_through_a_batch() {
        let mut b = AccessBatchBuilder::default();
        let mut opaque = access();
        opaque.event_id = "a2".into();
        opaque.token_id = Some("h:0123".into());
        opaque.expires_at = None;
        opaque.token_tenant = None;
        b.push(&access());
        b.push(&opaque);
        let batch = b.finish();
        assert_eq!(batch.schema(), AccessEvent::schema());
        assert_eq!(
            AccessEvent::from_batch(&batch).unwrap(),
            vec![access(), opaque]
        );
    }

    #[test]
    fn access_token_columns_follow_token_id() {
        let schema = AccessEvent::schema();
        let at = |name: &str| AccessEvent::COLUMNS.iter().position(|c| *c == name);
        assert_eq!(at("expires_at"), at("token_id").map(|i| i + 1));
        assert_eq!(at("token_tenant"), at("token_id").map(|i| i + 2));
        let expires = schema.field_with_name("expires_at").unwrap();
        assert!(expires.is_nullable());
        // The same type as the auth stream's `expires_at`, so the two join.
        assert_eq!(
            expires.data_type(),
            AuthEvent::schema()
                .field_with_name("expires_at")
                .unwrap()
                .data_type()
        );
        assert!(expires.metadata()["description"].contains("JWT `exp`"));
        let tenant = schema.field_with_name("token_tenant").unwrap();
        assert!(tenant.is_nullable());
        assert_eq!(tenant.data_type(), &DataType::Utf8);
        assert!(tenant.metadata()["description"].contains("`iss`"));
    }

    #[test]
    fn schema_documents_columns() {
        let schema = AccessEvent::schema();
        assert_eq!(schema.fields().len(), AccessEvent::COLUMNS.len());
        let required = schema.field_with_name("required").unwrap();
        assert!(required.metadata()["description"].contains("SMART v2 scope"));
        assert!(!schema.field_with_name("ts").unwrap().is_nullable());
        assert!(schema.field_with_name("patient").unwrap().is_nullable());
    }

    #[test]
    fn a_foreign_batch_is_refused() {
        let mut b = AuthBatchBuilder::default();
        b.push(&auth());
        let err = AccessEvent::from_batch(&b.finish()).unwrap_err();
        assert!(matches!(err, SchemaError::MissingColumn(_)), "{err}");
    }

    #[test]
    fn status_means_outcome() {
        assert_eq!(AccessOutcome::from_status(200), AccessOutcome::Allowed);
        assert_eq!(AccessOutcome::from_status(304), AccessOutcome::Allowed);
        assert_eq!(AccessOutcome::from_status(403), AccessOutcome::Denied);
        assert_eq!(AccessOutcome::from_status(401), AccessOutcome::Denied);
        assert_eq!(AccessOutcome::from_status(404), AccessOutcome::Error);
        assert_eq!(AccessOutcome::from_status(503), AccessOutcome::Error);
    }
}
