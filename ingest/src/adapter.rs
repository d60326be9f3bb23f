//! The format-adapter trait every log format implements, the context the
//! pipeline hands it for each line, its error type, and what all access
//! adapters share: [`enrich_access`] turns a method and a raw request path into
//! the interaction, resource type, compartment, patient, required permission
//! and coverage columns, with ids pseudonymised.
//!
//! An adapter is handed raw log lines, which carry PHI and credentials. It
//! must reduce them through [`LineContext::privacy`] before they go into an
//! event, and a [`ParseError`] must never quote a raw value: errors are
//! logged and kept with dead letters.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Serialize;

use scopewatch_model::config::SourceOptions;
use scopewatch_model::events::{AccessEvent, AuthEvent, Env};
use scopewatch_model::request::{classify, FhirBase, Interaction};
use scopewatch_model::scope::{covers, infer_context, parse_scope_list, Scope};

use crate::privacy::{IdKind, Pseudonymiser};

/// One event an adapter produced. Serialises with a `stream` tag, as the
/// canonical format writes it: `{"stream":"access", ...}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "stream", rename_all = "lowercase")]
pub enum Parsed {
    Auth(AuthEvent),
    Access(AccessEvent),
}

/// What the pipeline knows about a line besides its bytes.
#[derive(Debug, Clone, Copy)]
pub struct LineContext<'a> {
    /// The configured source name.
    pub source: &'a str,
    /// The deterministic id the pipeline computed for this line. An adapter
    /// that emits several events from one line gives the first this id and
    /// appends `-1`, `-2`, ... to the second, third, ... (see
    /// [`LineContext::event_id_for`]).
    pub event_id: &'a str,
    /// The file (or push endpoint) the line came from.
    pub source_file: Option<&'a str>,
    /// Byte offset of the line in that file.
    pub offset: Option<u64>,
    /// The source's default tenant, for lines that do not name one.
    pub tenant: Option<&'a str>,
    /// The source's default environment.
    pub env: Env,
    pub privacy: &'a Pseudonymiser,
    pub fhir_base: &'a FhirBase,
    /// The source's tenant, version, authorize-endpoint and field-mapping
    /// settings.
    pub options: &'a SourceOptions,
}

impl LineContext<'_> {
    /// The id of the `n`th event (0-based) from this line.
    pub fn event_id_for(&self, n: usize) -> String {
        if n == 0 {
            self.event_id.to_string()
        } else {
            format!("{}-{n}", self.event_id)
        }
    }
}

/// Why a line could not be parsed. The reasons are short and specific, and
/// never quote a raw value from the line (it may be PHI or a token): field
/// names, JSON types and positions only. [`ValueHint`] shows a value only
/// when it is a plain word (such as a misspelt stream name).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty line")]
    Empty,
    #[error("invalid UTF-8 at byte {0}")]
    InvalidUtf8(usize),
    #[error("truncated JSON at column {0}")]
    TruncatedJson(usize),
    /// `reason` is one of serde_json's fixed syntax messages.
    #[error("invalid JSON at column {column}: {reason}")]
    InvalidJson { column: usize, reason: String },
    #[error("expected a JSON object, found {0}")]
    NotAnObject(&'static str),
    #[error("missing field `{0}`")]
    MissingField(Cow<'static, str>),
    #[error("missing field `{0}` (or `{1}`)")]
    MissingEither(&'static str, &'static str),
    #[error("field `{field}`: expected {expected}, found {found}")]
    WrongType {
        field: Cow<'static, str>,
        expected: &'static str,
        found: &'static str,
    },
    #[error("field `{field}`: {reason}")]
    BadValue {
        field: Cow<'static, str>,
        reason: Cow<'static, str>,
    },
    #[error("unknown stream {0}")]
    UnknownStream(ValueHint),
    #[error("unknown auth kind {0}")]
    UnknownKind(ValueHint),
    /// The line's shape is wrong for the format (another adapter's words,
    /// e.g. "expected 12 space-separated fields, found 9"). No raw values.
    #[error("{0}")]
    Format(Cow<'static, str>),
}

impl ParseError {
    pub fn wrong_type(
        field: &'static str,
        expected: &'static str,
        found: &Loose<'_>,
    ) -> ParseError {
        ParseError::WrongType {
            field: Cow::Borrowed(field),
            expected,
            found: found.type_name(),
        }
    }

    pub fn bad_value(field: &'static str, reason: &'static str) -> ParseError {
        ParseError::BadValue {
            field: Cow::Borrowed(field),
            reason: Cow::Borrowed(reason),
        }
    }

    /// Maps a serde_json error without ever quoting the input: syntax
    /// errors keep serde_json's fixed message, data errors keep only
    /// "duplicate field `x`" (our own field names).
    pub fn from_json(err: &serde_json::Error, text: &str) -> ParseError {
        use serde_json::error::Category;
        let column = err.column();
        let message = || {
            let s = err.to_string();
            match s.rfind(" at line ") {
                Some(i) => s[..i].to_string(),
                None => s,
            }
        };
        match err.classify() {
            Category::Eof => ParseError::TruncatedJson(column),
            Category::Syntax => ParseError::InvalidJson {
                column,
                reason: message(),
            },
            Category::Data => {
                let m = message();
                if m.starts_with("duplicate field `") {
                    ParseError::InvalidJson { column, reason: m }
                } else if !text.trim_start().starts_with('{') {
                    ParseError::NotAnObject(json_kind_at(text))
                } else {
                    ParseError::InvalidJson {
                        column,
                        reason: "unexpected value".into(),
                    }
                }
            }
            Category::Io => ParseError::InvalidJson {
                column,
                reason: "read error".into(),
            },
        }
    }
}

/// The JSON type the text starts with, by its first character.
pub fn json_kind_at(text: &str) -> &'static str {
    match text.trim_start().bytes().next() {
        Some(b'{') => "object",
        Some(b'[') => "array",
        Some(b'"') => "string",
        Some(b't' | b'f') => "boolean",
        Some(b'n') => "null",
        Some(b'-' | b'0'..=b'9') => "number",
        Some(_) => "text that is not JSON",
        None => "nothing",
    }
}

/// A value an error may mention: shown (in backticks) only when it is a
/// short plain word (ASCII letters, `_`, `-`, no digits), which a stream or
/// kind name is and an id or token is not; otherwise only its length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueHint {
    shown: Option<String>,
    chars: usize,
}

impl ValueHint {
    pub fn of(raw: &str) -> ValueHint {
        let plain = (1..=32).contains(&raw.len())
            && raw
                .bytes()
                .all(|c| c.is_ascii_alphabetic() || c == b'_' || c == b'-');
        ValueHint {
            shown: plain.then(|| raw.to_string()),
            chars: raw.chars().count(),
        }
    }
}

impl fmt::Display for ValueHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.shown {
            Some(s) => write!(f, "`{s}`"),
            None => write!(f, "(a value of {} characters, not shown)", self.chars),
        }
    }
}

/// A log format.
pub trait Adapter: Send + Sync {
    /// The format's name in the source configuration.
    fn name(&self) -> &'static str;

    /// Parses one line (without its newline) into zero or more events
    /// appended to `out`. On error nothing is appended.
    fn parse_line(
        &self,
        line: &[u8],
        ctx: &LineContext<'_>,
        out: &mut Vec<Parsed>,
    ) -> Result<(), ParseError>;
}

/// The UTF-8 text of a line, or where it stops being UTF-8.
pub fn line_text(line: &[u8]) -> Result<&str, ParseError> {
    std::str::from_utf8(line).map_err(|e| ParseError::InvalidUtf8(e.valid_up_to()))
}

/// The access columns derived from a method and a raw request target.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AccessEnrichment {
    /// `None` when the path is not a FHIR request.
    pub interaction: Option<Interaction>,
    pub resource_type: Option<String>,
    /// `Type/<pseudonym>`, e.g. `Patient/p_..`.
    pub compartment: Option<String>,
    /// Pseudonym of the one patient the call names (path or query).
    pub patient: Option<String>,
    /// The SMART v2 permission the call needed, e.g. `patient/Observation.rs`.
    pub required: Option<String>,
    /// Whether the granted scopes cover `required`; `None` when the scopes
    /// are unknown, the call needs nothing, or granular filters leave it open.
    pub granted_covered: Option<bool>,
    /// The path and query with ids pseudonymised.
    pub path: String,
}

/// What every access adapter calls: classifies the request (model
/// `classify` against the source's FHIR base), decides the context of the
/// required permission (model `infer_context`: from the granted scopes, else
/// patient when the call names a patient, else user), judges coverage (model
/// `covers`, with the query for searches) and redacts the path. A target that
/// is not a FHIR request still gets its redacted path; the rest is `None`.
pub fn enrich_access(
    method: &str,
    raw_path_and_query: &str,
    granted_scopes: Option<&[Scope]>,
    ctx: &LineContext<'_>,
) -> AccessEnrichment {
    let path = ctx.privacy.redact_path(raw_path_and_query);
    let Ok(need) = classify(method, raw_path_and_query, ctx.fhir_base) else {
        return AccessEnrichment {
            path,
            ..AccessEnrichment::default()
        };
    };
    let compartment = need.compartment.as_deref().and_then(|c| {
        let (ty, id) = c.split_once('/')?;
        let mut s = String::with_capacity(ty.len() + 19);
        s.push_str(ty);
        s.push('/');
        ctx.privacy
            .pseudonym_into(IdKind::of_resource_type(ty), id, &mut s);
        Some(s)
    });
    let patient = need
        .patient
        .as_deref()
        .map(|id| ctx.privacy.pseudonym(IdKind::Patient, id));
    let (required, granted_covered) = match &need.need {
        None => (None, None),
        Some(n) => {
            let context = infer_context(
                granted_scopes.unwrap_or(&[]),
                n.resource.as_deref(),
                n.perms,
                !need.patients.is_empty(),
            );
            let required = n.required(context);
            let query = (need.interaction == Interaction::Search).then_some(need.query.as_slice());
            let covered = granted_scopes.and_then(|g| covers(g, &required, query).as_bool());
            (Some(required.to_string()), covered)
        }
    };
    AccessEnrichment {
        interaction: Some(need.interaction),
        resource_type: need.resource_type,
        compartment,
        patient,
        required,
        granted_covered,
        path,
    }
}

/// Scope lists repeat on every line of a token; parsed lists are kept per
/// thread (bounded), keyed by the text.
const SCOPE_CACHE_ENTRIES: usize = 1024;

thread_local! {
    static SCOPE_CACHE: RefCell<foldhash::HashMap<Box<str>, Arc<[Scope]>>> = RefCell::new(foldhash::HashMap::default());
}

/// `parse_scope_list`, cached per thread: adapters call this for a scope
/// string taken from a log line.
pub fn parse_scopes_cached(list: &str) -> Arc<[Scope]> {
    if let Some(hit) = SCOPE_CACHE.with(|c| c.borrow().get(list).cloned()) {
        return hit;
    }
    let parsed: Arc<[Scope]> = parse_scope_list(list).into();
    SCOPE_CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= SCOPE_CACHE_ENTRIES {
            c.clear();
        }
        c.insert(list.into(), Arc::clone(&parsed));
    });
    parsed
}

// ---------------------------------------------------------------------------
// Loose JSON values

/// A JSON value read without committing to a type, borrowing strings from
/// the input when they have no escapes. Adapters declare their fields as
/// `Option<Loose>` so that a wrong type is reported per field
/// ("field `status`: expected a number, found string") instead of as a
/// serde error that would quote the value.
#[derive(Debug, Clone, PartialEq)]
pub enum Loose<'a> {
    Null,
    Bool(bool),
    Int(i64),
    /// Integers above `i64::MAX`.
    UInt(u64),
    Float(f64),
    Str(Cow<'a, str>),
    Array(Vec<Loose<'a>>),
    Object(Vec<(Cow<'a, str>, Loose<'a>)>),
}

impl<'a> Loose<'a> {
    /// The JSON type's name, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Loose::Null => "null",
            Loose::Bool(_) => "boolean",
            Loose::Int(_) | Loose::UInt(_) | Loose::Float(_) => "number",
            Loose::Str(_) => "string",
            Loose::Array(_) => "array",
            Loose::Object(_) => "object",
        }
    }

    /// A string, or a number written as text (ids are sometimes numbers).
    pub fn into_text(self) -> Option<String> {
        match self {
            Loose::Str(s) => Some(s.into_owned()),
            Loose::Int(n) => Some(n.to_string()),
            Loose::UInt(n) => Some(n.to_string()),
            Loose::Float(n) => Some(n.to_string()),
            _ => None,
        }
    }

    /// An integer (a float is truncated toward zero when in range).
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Loose::Int(n) => Some(n),
            Loose::UInt(n) => i64::try_from(n).ok(),
            Loose::Float(f) if f.is_finite() && f.abs() < 9.2e18 => Some(f as i64),
            _ => None,
        }
    }

    /// Any number as `f64`.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Loose::Int(n) => Some(n as f64),
            Loose::UInt(n) => Some(n as f64),
            Loose::Float(f) => Some(f),
            _ => None,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Loose<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LooseVisitor(PhantomData))
    }
}

struct LooseVisitor<'a>(PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for LooseVisitor<'a> {
    type Value = Loose<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Loose::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Loose::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(i64::try_from(v).map_or(Loose::UInt(v), Loose::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Loose::Float(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Loose::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Loose::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Loose::Str(Cow::Owned(v)))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Loose::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Loose::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        Loose::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(4).min(64));
        while let Some(item) = seq.next_element::<Loose<'a>>()? {
            items.push(item);
        }
        Ok(Loose::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Vec::new();
        while let Some(key) = map.next_key::<Key<'a>>()? {
            fields.push((key.0, map.next_value::<Loose<'a>>()?));
        }
        Ok(Loose::Object(fields))
    }
}

/// A map key, borrowed when possible.
struct Key<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Key<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for KeyVisitor<'a> {
            type Value = Key<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loose_values_keep_their_types() {
        let v: Loose<'_> =
            serde_json::from_str(r#"{"a":[1,-2,1.5,"x\n",null,true],"b":{"c":"d"}}"#).unwrap();
        let Loose::Object(fields) = v else { panic!() };
        assert_eq!(fields[0].0, "a");
        assert_eq!(
            fields[0].1,
            Loose::Array(vec![
                Loose::Int(1),
                Loose::Int(-2),
                Loose::Float(1.5),
                Loose::Str("x\n".into()),
                Loose::Null,
                Loose::Bool(true)
            ])
        );
        assert_eq!(fields[1].1.type_name(), "object");
    }

    #[test]
    fn value_hints_hide_ids() {
        assert_eq!(ValueHint::of("metrics").to_string(), "`metrics`");
        assert_eq!(
            ValueHint::of("12345").to_string(),
            "(a value of 5 characters, not shown)"
        );
        assert!(!ValueHint::of("eyJhbGciOi.eyJzdWIi.sig")
            .to_string()
            .contains("eyJ"));
    }

    #[test]
    fn event_ids_for_several_events() {
        let p = Pseudonymiser::from_key([1; 32]);
        let base = FhirBase::auto();
        let opts = SourceOptions::default();
        let ctx = LineContext {
            source: "s",
            event_id: "abc",
            source_file: None,
            offset: None,
            tenant: None,
            env: Env::Test,
            privacy: &p,
            fhir_base: &base,
            options: &opts,
        };
        assert_eq!(ctx.event_id_for(0), "abc");
        assert_eq!(ctx.event_id_for(2), "abc-2");
    }
}
