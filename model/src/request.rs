//! What a FHIR R4 REST request needs: from an HTTP method and a path (with
//! its query), the interaction, the resource type, the compartment and
//! patient, and the SMART v2 permission letters the call requires.
//!
//! The mapping follows <http://hl7.org/fhir/R4/http.html>. Where R4 or SMART
//! leave a choice open, the choice made here is stated on the function that
//! makes it (see [`operation_need`] and [`classify`]).
//!
//! Errors never embed the whole request path: paths carry patient ids, and
//! errors end up in logs. They name only the segment or shape that failed.

use std::borrow::Cow;
use std::fmt;

use percent_encoding::percent_decode_str;

use crate::perms::{Context, Perms};
use crate::resource_types::{is_r4_resource_type, R4_COMPARTMENT_TYPES, R4_RESOURCE_TYPES};
use crate::scope::Required;

/// A FHIR RESTful interaction, as recorded in the access stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Interaction {
    Read,
    Vread,
    Update,
    Patch,
    Delete,
    History,
    Create,
    Search,
    Operation,
    Batch,
    Capabilities,
}

impl Interaction {
    /// Every interaction, in the order reports list them.
    pub const ALL: [Interaction; 11] = [
        Interaction::Read,
        Interaction::Vread,
        Interaction::Update,
        Interaction::Patch,
        Interaction::Delete,
        Interaction::History,
        Interaction::Create,
        Interaction::Search,
        Interaction::Operation,
        Interaction::Batch,
        Interaction::Capabilities,
    ];

    /// The snake_case name (same as the serde form).
    pub fn as_str(self) -> &'static str {
        match self {
            Interaction::Read => "read",
            Interaction::Vread => "vread",
            Interaction::Update => "update",
            Interaction::Patch => "patch",
            Interaction::Delete => "delete",
            Interaction::History => "history",
            Interaction::Create => "create",
            Interaction::Search => "search",
            Interaction::Operation => "operation",
            Interaction::Batch => "batch",
            Interaction::Capabilities => "capabilities",
        }
    }

    /// Parses [`Interaction::as_str`] names, ASCII case-insensitively, and
    /// also the R4 `restful-interaction` codes FHIR AuditEvents carry
    /// (`search-type`, `history-instance`, `transaction`, ...), so both log
    /// sources land on the same values.
    pub fn parse(s: &str) -> Option<Interaction> {
        let s = s.trim().to_ascii_lowercase();
        if let Some(i) = Interaction::ALL.into_iter().find(|i| i.as_str() == s) {
            return Some(i);
        }
        match s.as_str() {
            "search-type" | "search-system" | "search-compartment" => Some(Interaction::Search),
            "history-instance" | "history-type" | "history-system" => Some(Interaction::History),
            "transaction" => Some(Interaction::Batch),
            _ => None,
        }
    }
}

impl fmt::Display for Interaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where in the server an interaction acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// The whole server (`[base]`, `[base]/_history`, `[base]/$op`).
    System,
    /// One resource type (`[base]/Type...`); compartment searches count here
    /// too, since they search a type (within one compartment).
    Type,
    /// One resource (`[base]/Type/id...`).
    Instance,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::System => "system",
            Level::Type => "type",
            Level::Instance => "instance",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The permission a call needs, without its context (patient/user/system is
/// decided by the caller from the token's grants).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    /// The resource type; `None` means every type, i.e. `*`.
    pub resource: Option<String>,
    pub perms: Perms,
}

impl Need {
    pub fn new(resource: Option<&str>, perms: Perms) -> Need {
        Need {
            resource: resource.map(str::to_owned),
            perms,
        }
    }

    /// `Type` or `*`.
    pub fn resource_str(&self) -> &str {
        self.resource.as_deref().unwrap_or("*")
    }

    /// This need in `context`: a SMART v2 permission such as
    /// `patient/Observation.rs` (its `Display`).
    pub fn required(&self, context: Context) -> Required {
        Required {
            context,
            resource: self.resource.clone(),
            perms: self.perms,
        }
    }
}

/// `Observation.rs`, `*.s`.
impl fmt::Display for Need {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.resource_str(), self.perms.letters())
    }
}

/// What one FHIR request is and what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestNeed {
    pub interaction: Interaction,
    pub level: Level,
    /// The type acted on or searched; for a compartment search the searched
    /// type; `None` for system level and for `Patient/1/*`.
    pub resource_type: Option<String>,
    /// The instance id when the path names one of `resource_type` (not the
    /// compartment's id: that is in `compartment`).
    pub id: Option<String>,
    /// The operation name with its `$`, e.g. `$everything`.
    pub operation: Option<String>,
    /// `Type/id` of the compartment a compartment search runs in, e.g. `Patient/123`.
    pub compartment: Option<String>,
    /// The one patient this call names, raw. `None` when it names none, or
    /// several (see `patients`).
    pub patient: Option<String>,
    /// Every distinct patient id the call names, in order of appearance
    /// (path first, then query); a search such as `patient=1,2` names two.
    pub patients: Vec<String>,
    /// Decoded query parameters in order (form decoding: `+` is a space).
    pub query: Vec<(String, String)>,
    /// `None`: the call needs no scope (capabilities, batch/transaction wrapper).
    pub need: Option<Need>,
}

impl RequestNeed {
    /// The SMART v2 scope this call needs in `context`, if it needs one.
    pub fn required_scope(&self, context: Context) -> Option<Required> {
        self.need.as_ref().map(|n| n.required(context))
    }
}

/// Why a request could not be classified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("path is not under the configured FHIR base `{base}`")]
    NotUnderBase { base: String },
    #[error(
        "no FHIR resource type or marker segment (metadata, _history, _search, $operation) in path"
    )]
    NoResourceType,
    #[error("`{segment}` is not an R4 resource type{}", suggestion.map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
    UnknownResourceType {
        segment: String,
        suggestion: Option<&'static str>,
    },
    #[error("`{resource_type}` does not define a compartment (R4 compartments: Patient, Encounter, RelatedPerson, Practitioner, Device)")]
    NotACompartment { resource_type: String },
    #[error("unsupported HTTP method `{0}` (FHIR REST uses GET, HEAD, POST, PUT, PATCH, DELETE)")]
    UnsupportedMethod(String),
    #[error("{method} is not valid on `{shape}` (valid: {allowed})")]
    MethodNotAllowed {
        method: String,
        shape: &'static str,
        allowed: String,
    },
    #[error("not a FHIR R4 REST path shape: {0}")]
    UnrecognisedPath(String),
    #[error("bad FHIR base pattern `{pattern}`: {reason}")]
    BadBase { pattern: String, reason: String },
    #[error("bundle entry {index}: {reason}")]
    BadBundleEntry { index: usize, reason: String },
}

/// Where the FHIR base ends in a request path: either found automatically,
/// or one of several configured prefix patterns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FhirBase {
    /// Empty: automatic.
    prefixes: Vec<Prefix>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Prefix {
    pattern: String,
    segments: Vec<BaseSegment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum BaseSegment {
    Literal(String),
    /// `{name}`: any one segment (a tenant, a version).
    Any,
}

/// Where the base ends in a list of path segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Anchor {
    /// The segments from this index on are below the base.
    At(usize),
    /// Automatic base and no resource type or marker in the path: the whole
    /// path may be the base (a batch POST) or not FHIR at all.
    Unanchored,
}

impl FhirBase {
    /// No configured prefix: the base is everything before the first segment
    /// that is an R4 resource type or a marker (`metadata`, `_history`,
    /// `_search`, `$op`, `.well-known`).
    pub fn auto() -> FhirBase {
        FhirBase {
            prefixes: Vec::new(),
        }
    }

    /// One prefix such as `/fhir/r4`; a `{...}` segment matches any one
    /// segment (`/fhir/{tenant}`). `/` or the empty string is the server root.
    /// A full URL (`https://host/fhir`) is accepted and its host ignored.
    pub fn parse(prefix: &str) -> Result<FhirBase, RequestError> {
        Ok(FhirBase {
            prefixes: vec![Prefix::parse(prefix)?],
        })
    }

    /// Several prefixes; a path is matched against the one that consumes the
    /// most segments, so `/fhir` and `/fhir/r4` can both be configured.
    pub fn parse_many<'a>(
        prefixes: impl IntoIterator<Item = &'a str>,
    ) -> Result<FhirBase, RequestError> {
        let prefixes = prefixes
            .into_iter()
            .map(Prefix::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if prefixes.is_empty() {
            return Err(RequestError::BadBase {
                pattern: String::new(),
                reason: "no prefix given (use FhirBase::auto() to find the base by itself)".into(),
            });
        }
        Ok(FhirBase { prefixes })
    }

    pub fn is_auto(&self) -> bool {
        self.prefixes.is_empty()
    }

    /// The part of `path` below the base, without a leading slash and without
    /// any query string (`/fhir/r4/Patient/1?x=y` -> `Patient/1`). `None` when
    /// the path is not under a configured base. With an automatic base and no
    /// resource type or marker in the path, the whole path is taken as the
    /// base and the result is empty.
    pub fn strip<'a>(&self, path: &'a str) -> Option<&'a str> {
        let path = Target::path_part(path);
        let raw: Vec<(usize, &str)> = raw_segments(path).collect();
        let decoded: Vec<Cow<'_, str>> = raw.iter().map(|(_, s)| decode_segment(s)).collect();
        match self.locate(&decoded).ok()? {
            Anchor::At(i) if i < raw.len() => Some(&path[raw[i].0..]),
            Anchor::At(_) | Anchor::Unanchored => Some(""),
        }
    }

    fn locate<S: AsRef<str>>(&self, segments: &[S]) -> Result<Anchor, RequestError> {
        if self.is_auto() {
            return Ok(segments
                .iter()
                .position(|s| is_anchor(s.as_ref()))
                .map_or(Anchor::Unanchored, Anchor::At));
        }
        self.prefixes
            .iter()
            .filter(|p| p.matches(segments))
            .map(|p| p.segments.len())
            .max()
            .map(Anchor::At)
            .ok_or_else(|| RequestError::NotUnderBase {
                base: self.to_string(),
            })
    }
}

impl fmt::Display for FhirBase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_auto() {
            return f.write_str("(auto)");
        }
        let patterns: Vec<&str> = self.prefixes.iter().map(|p| p.pattern.as_str()).collect();
        f.write_str(&patterns.join("`, `"))
    }
}

impl Prefix {
    fn parse(pattern: &str) -> Result<Prefix, RequestError> {
        let bad = |reason: &str| RequestError::BadBase {
            pattern: pattern.to_owned(),
            reason: reason.to_owned(),
        };
        if pattern.contains(['?', '#']) {
            return Err(bad("a base is a path; it cannot carry a query or fragment"));
        }
        let path = Target::path_part(pattern);
        let mut segments = Vec::new();
        for (_, seg) in raw_segments(path) {
            if seg.starts_with('{') && seg.ends_with('}') {
                let name = &seg[1..seg.len() - 1];
                if name.is_empty() || name.contains(['{', '}']) {
                    return Err(bad("a placeholder needs a name, e.g. `{tenant}`"));
                }
                segments.push(BaseSegment::Any);
            } else if seg.contains(['{', '}']) {
                return Err(bad("a `{...}` placeholder must be a whole segment"));
            } else {
                segments.push(BaseSegment::Literal(decode_segment(seg).into_owned()));
            }
        }
        Ok(Prefix {
            pattern: pattern.to_owned(),
            segments,
        })
    }

    fn matches<S: AsRef<str>>(&self, segments: &[S]) -> bool {
        segments.len() >= self.segments.len()
            && self.segments.iter().zip(segments).all(|(b, s)| match b {
                BaseSegment::Any => true,
                BaseSegment::Literal(l) => l == s.as_ref(),
            })
    }
}

/// A segment that starts what lies below an automatically found base.
fn is_anchor(seg: &str) -> bool {
    is_r4_resource_type(seg)
        || matches!(seg, "metadata" | "_history" | "_search" | ".well-known")
        || is_operation(seg)
}

fn is_operation(seg: &str) -> bool {
    seg.len() > 1 && seg.starts_with('$')
}

/// The HTTP methods of FHIR REST; HEAD behaves as GET.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    /// For error messages.
    fn names(self) -> &'static str {
        match self {
            Method::Get => "GET, HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }

    fn parse(method: &str) -> Result<Method, RequestError> {
        let name = method.trim();
        // Case-insensitive, without allocating an upper-case copy.
        const NAMES: [(&str, Method); 6] = [
            ("GET", Method::Get),
            ("HEAD", Method::Get),
            ("POST", Method::Post),
            ("PUT", Method::Put),
            ("PATCH", Method::Patch),
            ("DELETE", Method::Delete),
        ];
        NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, m)| m)
            .ok_or_else(|| RequestError::UnsupportedMethod(method.to_owned()))
    }
}

/// The method trimmed and upper-cased (for messages), borrowed when it
/// already is.
fn upper_method(method: &str) -> Cow<'_, str> {
    let name = method.trim();
    if name.bytes().any(|c| c.is_ascii_lowercase()) {
        Cow::Owned(name.to_ascii_uppercase())
    } else {
        Cow::Borrowed(name)
    }
}

/// A request target split into decoded path segments and query.
#[derive(Debug)]
struct Target<'a> {
    /// Borrowed from the target unless percent-decoding changed them.
    segments: Vec<Cow<'a, str>>,
    query: Vec<(String, String)>,
}

impl<'a> Target<'a> {
    fn parse(target: &'a str) -> Target<'a> {
        let target = target.split('#').next().unwrap_or_default();
        let target = strip_origin(target);
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        Target {
            segments: raw_segments(path).map(|(_, s)| decode_segment(s)).collect(),
            query: parse_query(query),
        }
    }

    /// The path of `target`, without scheme, host, query or fragment.
    fn path_part(target: &str) -> &str {
        let target = strip_origin(target);
        let end = target.find(['?', '#']).unwrap_or(target.len());
        &target[..end]
    }
}

/// Drops `scheme://authority` from an absolute URL; leaves paths alone.
fn strip_origin(target: &str) -> &str {
    let Some(i) = target.find("://") else {
        return target;
    };
    let scheme = &target[..i];
    let is_scheme = !scheme.is_empty()
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !is_scheme {
        return target;
    }
    let rest = &target[i + 3..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    &rest[end..]
}

fn raw_segments(path: &str) -> impl Iterator<Item = (usize, &str)> {
    let base = path.as_ptr() as usize;
    // Empty segments (`//`, a trailing `/`) are tolerated by skipping them.
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(move |s| (s.as_ptr() as usize - base, s))
}

/// Path segments are percent-decoded (`%24everything`); `+` stays literal.
fn decode_segment(seg: &str) -> Cow<'_, str> {
    if !seg.contains('%') {
        return Cow::Borrowed(seg);
    }
    percent_decode_str(seg).decode_utf8_lossy()
}

/// Form-decodes a query string, keeping parameter order and repeats.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        if !s.contains(['+', '%']) {
            // Nothing to decode (the common case): one copy, no scan.
            return s.to_owned();
        }
        // `+` first, so an encoded `%2B` survives as a plus sign.
        let spaced = s.replace('+', " ");
        percent_decode_str(&spaced).decode_utf8_lossy().into_owned()
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// Classifies one FHIR REST call.
///
/// `path_and_query` is the request target as a gateway logs it; an absolute
/// URL is accepted (its host is ignored). Judgement calls beyond R4:
/// - a `.well-known` segment anywhere, under the base or not, is a
///   capabilities call needing nothing;
/// - `[base]/_search` and `[base]/Type/_search` accept GET as well as POST
///   (the call is a search either way; parameters in a POST body are not seen);
/// - a system search needs `*.s` even when `_type` names types;
/// - with an automatic base, a path with no resource type or marker is a
///   batch when POSTed, a system search when GET with `_type`, else an error;
///   and a near-miss of a type name (`Observaton`, `observation`) anywhere in
///   it is reported as a typo rather than taken as a prefix;
/// - a conditional update, patch or delete (`[base]/Type?query`) needs a query;
///   without one it is an error, not a mass operation.
pub fn classify(
    method: &str,
    path_and_query: &str,
    base: &FhirBase,
) -> Result<RequestNeed, RequestError> {
    let method_name = upper_method(method);
    let m = Method::parse(method)?;
    let target = Target::parse(path_and_query);
    if target.segments.iter().any(|s| s == ".well-known") {
        return capabilities(m, &method_name, ".well-known/...", target.query);
    }
    match base.locate(&target.segments)? {
        Anchor::At(i) => {
            if base.is_auto() && !is_r4_resource_type(&target.segments[i]) {
                // A marker anchored the base: a mistyped type before it would
                // otherwise silently turn `Observaton/1/_history` into a
                // system history.
                reject_typos(&target.segments[..i])?;
            }
            below_base(m, &method_name, &target.segments[i..], target.query)
        }
        Anchor::Unanchored => {
            reject_typos(&target.segments)?;
            let has_type = target.query.iter().any(|(k, _)| k == "_type");
            match m {
                Method::Post => below_base(m, &method_name, &[], target.query),
                Method::Get if has_type => below_base(m, &method_name, &[], target.query),
                _ => Err(RequestError::NoResourceType),
            }
        }
    }
}

/// A batch or transaction is judged entry by entry: each entry's
/// `request.method` and `request.url` classified the same way. Returns one
/// result per entry, in order (an empty list when `bundle` has no entries).
///
/// `request.url` is relative to the base (`Patient/1`, `Patient?identifier=x`);
/// an absolute URL or a path starting with `/` is matched against `base` as a
/// request path would be. `ifNoneExist` and friends do not change the need:
/// a conditional create needs `c`, like its unconditional form.
pub fn bundle_entries(
    bundle: &serde_json::Value,
    base: &FhirBase,
) -> Vec<Result<RequestNeed, RequestError>> {
    let Some(entries) = bundle.get("entry").and_then(|e| e.as_array()) else {
        return Vec::new();
    };
    entries
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            let bad = |reason: &str| RequestError::BadBundleEntry {
                index,
                reason: reason.to_owned(),
            };
            let request = entry.get("request").ok_or_else(|| bad("no `request`"))?;
            let method = request
                .get("method")
                .and_then(|m| m.as_str())
                .ok_or_else(|| bad("no `request.method`"))?;
            let url = request
                .get("url")
                .and_then(|u| u.as_str())
                .ok_or_else(|| bad("no `request.url`"))?;
            if url.starts_with('/') || strip_origin(url).len() != url.len() {
                classify(method, url, base)
            } else {
                classify_relative(method, url)
            }
        })
        .collect()
}

/// Classifies a URL that is already relative to the base.
fn classify_relative(method: &str, url: &str) -> Result<RequestNeed, RequestError> {
    let method_name = upper_method(method);
    let m = Method::parse(method)?;
    let target = Target::parse(url);
    if target.segments.iter().any(|s| s == ".well-known") {
        return capabilities(m, &method_name, ".well-known/...", target.query);
    }
    below_base(m, &method_name, &target.segments, target.query)
}

/// What a path shape resolves to, before the patient is worked out.
#[derive(Debug)]
struct Shape {
    interaction: Interaction,
    level: Level,
    resource_type: Option<String>,
    id: Option<String>,
    operation: Option<String>,
    /// (type, id)
    compartment: Option<(String, String)>,
    need: Option<Need>,
}

impl Shape {
    fn new(interaction: Interaction, level: Level, resource_type: Option<&str>) -> Shape {
        Shape {
            interaction,
            level,
            resource_type: resource_type.map(str::to_owned),
            id: None,
            operation: None,
            compartment: None,
            need: None,
        }
    }

    fn id(mut self, id: &str) -> Shape {
        self.id = Some(id.to_owned());
        self
    }

    /// Needs `perms` on this shape's resource type (`*` at system level).
    fn needs(mut self, perms: Perms) -> Shape {
        self.need = Some(Need {
            resource: self.resource_type.clone(),
            perms,
        });
        self
    }
}

fn capabilities(
    m: Method,
    method_name: &str,
    shape: &'static str,
    query: Vec<(String, String)>,
) -> Result<RequestNeed, RequestError> {
    allow(m, method_name, shape, &[Method::Get])?;
    Ok(finish(
        Shape::new(Interaction::Capabilities, Level::System, None),
        query,
    ))
}

fn allow(
    m: Method,
    method_name: &str,
    shape: &'static str,
    allowed: &[Method],
) -> Result<(), RequestError> {
    if allowed.contains(&m) {
        Ok(())
    } else {
        Err(not_allowed(method_name, shape, allowed))
    }
}

fn not_allowed(method_name: &str, shape: &'static str, allowed: &[Method]) -> RequestError {
    let names: Vec<&str> = allowed.iter().map(|m| m.names()).collect();
    RequestError::MethodNotAllowed {
        method: method_name.to_owned(),
        shape,
        allowed: names.join(", "),
    }
}

/// Classifies the segments below the base.
fn below_base(
    m: Method,
    method_name: &str,
    segments: &[Cow<'_, str>],
    query: Vec<(String, String)>,
) -> Result<RequestNeed, RequestError> {
    use Method::*;
    let segs: Vec<&str> = segments.iter().map(|s| &**s).collect();
    let has_query = !query.is_empty();
    let shape = match segs.as_slice() {
        [] => match m {
            Get => Shape::new(Interaction::Search, Level::System, None).needs(Perms::S),
            Post => Shape::new(Interaction::Batch, Level::System, None),
            _ => return Err(not_allowed(method_name, "[base]", &[Get, Post])),
        },
        ["metadata"] => return capabilities(m, method_name, "[base]/metadata", query),
        ["_history"] => {
            allow(m, method_name, "[base]/_history", &[Get])?;
            Shape::new(Interaction::History, Level::System, None).needs(Perms::S)
        }
        ["_search"] => {
            allow(m, method_name, "[base]/_search", &[Get, Post])?;
            Shape::new(Interaction::Search, Level::System, None).needs(Perms::S)
        }
        [op] if is_operation(op) => {
            allow(m, method_name, "[base]/$operation", &[Get, Post])?;
            operation(Level::System, None, op)
        }
        [ty, rest @ ..] => {
            let ty = check_type(ty)?;
            below_type(m, method_name, ty, rest, has_query)?
        }
    };
    Ok(finish(shape, query))
}

/// Classifies `[base]/Type/rest...`.
fn below_type(
    m: Method,
    method_name: &str,
    ty: &str,
    rest: &[&str],
    has_query: bool,
) -> Result<Shape, RequestError> {
    use Method::*;
    let t = Some(ty);
    let shape = match rest {
        [] => match m {
            Get => Shape::new(Interaction::Search, Level::Type, t).needs(Perms::S),
            Post => Shape::new(Interaction::Create, Level::Type, t).needs(Perms::C),
            Put | Patch | Delete if !has_query => {
                return Err(RequestError::UnrecognisedPath(format!(
                    "{method_name} on `[base]/{ty}` needs search parameters (a conditional {}); \
                     without them it would act on every {ty}",
                    if m == Delete { "delete" } else { "update" }
                )))
            }
            Put => Shape::new(Interaction::Update, Level::Type, t).needs(Perms::U),
            Patch => Shape::new(Interaction::Patch, Level::Type, t).needs(Perms::U),
            Delete => Shape::new(Interaction::Delete, Level::Type, t).needs(Perms::D),
        },
        ["_search"] => {
            allow(m, method_name, "[type]/_search", &[Get, Post])?;
            Shape::new(Interaction::Search, Level::Type, t).needs(Perms::S)
        }
        ["_history"] => {
            allow(m, method_name, "[type]/_history", &[Get])?;
            Shape::new(Interaction::History, Level::Type, t).needs(Perms::S)
        }
        [op] if is_operation(op) => {
            allow(m, method_name, "[type]/$operation", &[Get, Post])?;
            operation(Level::Type, t, op)
        }
        [id] => {
            let id = check_id(id)?;
            match m {
                Get => Shape::new(Interaction::Read, Level::Instance, t).needs(Perms::R),
                Put => Shape::new(Interaction::Update, Level::Instance, t).needs(Perms::U),
                Patch => Shape::new(Interaction::Patch, Level::Instance, t).needs(Perms::U),
                Delete => Shape::new(Interaction::Delete, Level::Instance, t).needs(Perms::D),
                Post => {
                    return Err(not_allowed(
                        method_name,
                        "[type]/[id]",
                        &[Get, Put, Patch, Delete],
                    ))
                }
            }
            .id(id)
        }
        [id, "_history"] => {
            let id = check_id(id)?;
            allow(m, method_name, "[type]/[id]/_history", &[Get])?;
            Shape::new(Interaction::History, Level::Instance, t)
                .needs(Perms::R)
                .id(id)
        }
        [id, op] if is_operation(op) => {
            let id = check_id(id)?;
            allow(m, method_name, "[type]/[id]/$operation", &[Get, Post])?;
            operation(Level::Instance, t, op).id(id)
        }
        [id, "_history", vid] => {
            let id = check_id(id)?;
            check_id(vid)?;
            allow(m, method_name, "[type]/[id]/_history/[vid]", &[Get])?;
            Shape::new(Interaction::Vread, Level::Instance, t)
                .needs(Perms::R)
                .id(id)
        }
        [id, "_history", vid, op] if is_operation(op) => {
            let id = check_id(id)?;
            check_id(vid)?;
            allow(
                m,
                method_name,
                "[type]/[id]/_history/[vid]/$operation",
                &[Get, Post],
            )?;
            operation(Level::Instance, t, op).id(id)
        }
        [id, target] | [id, target, "_search"] => {
            let id = check_id(id)?;
            if !R4_COMPARTMENT_TYPES.contains(&ty) {
                return Err(RequestError::NotACompartment {
                    resource_type: ty.to_owned(),
                });
            }
            let searched = match *target {
                "*" => None,
                other => Some(check_type(other)?),
            };
            if rest.len() == 3 {
                allow(
                    m,
                    method_name,
                    "[compartment]/[id]/[type]/_search",
                    &[Get, Post],
                )?;
            } else {
                allow(m, method_name, "[compartment]/[id]/[type]", &[Get])?;
            }
            let mut shape = Shape::new(Interaction::Search, Level::Type, searched).needs(Perms::S);
            shape.compartment = Some((ty.to_owned(), id.to_owned()));
            shape
        }
        _ => {
            return Err(RequestError::UnrecognisedPath(format!(
                "{} segments below `[base]/{ty}`",
                rest.len()
            )))
        }
    };
    Ok(shape)
}

/// An operation call and what it needs.
fn operation(level: Level, ty: Option<&str>, op: &str) -> Shape {
    let mut shape = Shape::new(Interaction::Operation, level, ty);
    shape.need = Some(operation_need(level, ty, op));
    shape.operation = Some(op.to_owned());
    shape
}

/// What an operation needs. R4 and SMART do not say in general, so:
/// - `$everything` and `$export` return data of every type, at any level:
///   `*.rs`;
/// - `$meta` reads: `r` on the type (`*.r` at system level);
/// - `$meta-add` and `$meta-delete` change a resource: `u` on the type;
/// - any other operation is a judgement call: at instance level it is taken
///   as reading that resource (`r` on the type), at type level as querying
///   the type (`s` on the type), at system level as querying everything
///   (`*.s`). Writing operations (`$process-message`, `$apply`, ...) are
///   under-counted by this default; name them here when they matter.
pub fn operation_need(level: Level, ty: Option<&str>, op: &str) -> Need {
    match op {
        "$everything" | "$export" => Need::new(None, Perms::READ),
        "$meta" => Need::new(ty, Perms::R),
        "$meta-add" | "$meta-delete" => Need::new(ty, Perms::U),
        _ => match level {
            Level::Instance => Need::new(ty, Perms::R),
            Level::Type => Need::new(ty, Perms::S),
            Level::System => Need::new(None, Perms::S),
        },
    }
}

fn check_type(seg: &str) -> Result<&str, RequestError> {
    if is_r4_resource_type(seg) {
        Ok(seg)
    } else {
        Err(RequestError::UnknownResourceType {
            segment: seg.to_owned(),
            suggestion: suggest_type(seg),
        })
    }
}

/// Ids cannot start with `_` or `$` (those are FHIR markers); anything else
/// is accepted, as servers differ in what ids they mint.
fn check_id(seg: &str) -> Result<&str, RequestError> {
    if seg.starts_with(['_', '$']) {
        Err(RequestError::UnrecognisedPath(format!(
            "`{seg}` is not a FHIR marker nor a valid id"
        )))
    } else {
        Ok(seg)
    }
}

/// Fails on the first segment that looks like a mistyped resource type.
fn reject_typos(segments: &[Cow<'_, str>]) -> Result<(), RequestError> {
    match segments
        .iter()
        .find_map(|s| suggest_type(s).map(|t| (s, t)))
    {
        Some((segment, t)) => Err(RequestError::UnknownResourceType {
            segment: segment.to_string(),
            suggestion: Some(t),
        }),
        None => Ok(()),
    }
}

/// The R4 type `seg` most likely means, if it is a near miss: a case
/// difference, or one edit (two for names of 8+ letters). Exact matches are
/// not near misses.
fn suggest_type(seg: &str) -> Option<&'static str> {
    if seg.len() < 3 || !seg.chars().all(|c| c.is_ascii_alphabetic()) || is_r4_resource_type(seg) {
        return None;
    }
    // Runs on every base segment of every request line (`fhir`, `r4`, the
    // tenant): lower-case the names once, and skip names whose length alone
    // puts them out of reach.
    static LOWER: std::sync::LazyLock<Vec<(String, &'static str)>> =
        std::sync::LazyLock::new(|| {
            R4_RESOURCE_TYPES
                .iter()
                .map(|t| (t.to_ascii_lowercase(), *t))
                .collect()
        });
    let lower = seg.to_ascii_lowercase();
    let max = if seg.len() >= 8 { 2 } else { 1 };
    LOWER
        .iter()
        .filter(|(l, _)| l.len().abs_diff(lower.len()) <= max)
        .map(|(l, t)| (edit_distance(&lower, l), *t))
        .filter(|(d, _)| *d <= max)
        .min_by_key(|(d, _)| *d)
        .map(|(_, t)| t)
}

/// Optimal-string-alignment distance (edits and adjacent transpositions).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let width = b.len() + 1;
    // Three rolling rows: the transposition looks two rows back.
    let mut rows = vec![0usize; 3 * width];
    for (j, cell) in rows[..width].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        let (cur, prev, prev2) = (i % 3, (i + 2) % 3, (i + 1) % 3);
        rows[cur * width] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (rows[prev * width + j] + 1)
                .min(rows[cur * width + j - 1] + 1)
                .min(rows[prev * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(rows[prev2 * width + j - 2] + 1);
            }
            rows[cur * width + j] = v;
        }
    }
    rows[(a.len() % 3) * width + b.len()]
}

/// Adds the patients the path and query name.
fn finish(shape: Shape, query: Vec<(String, String)>) -> RequestNeed {
    let mut patients: Vec<String> = Vec::new();
    let mut add = |id: &str| {
        if !patients.iter().any(|p| p == id) {
            patients.push(id.to_owned());
        }
    };
    if shape.level == Level::Instance && shape.resource_type.as_deref() == Some("Patient") {
        if let Some(id) = &shape.id {
            add(id);
        }
    }
    if let Some((ty, id)) = &shape.compartment {
        if ty == "Patient" {
            add(id);
        }
    }
    // `_id` names patients only where Patient itself is searched (incl. the
    // search behind a conditional update or delete).
    let id_names_patient = shape.resource_type.as_deref() == Some("Patient")
        && shape.level == Level::Type
        && matches!(
            shape.interaction,
            Interaction::Search | Interaction::Update | Interaction::Patch | Interaction::Delete
        );
    if !matches!(
        shape.interaction,
        Interaction::Capabilities | Interaction::Batch
    ) {
        for (key, value) in &query {
            let (name, modifier) = match key.split_once(':') {
                Some((n, m)) => (n, Some(m)),
                None => (key.as_str(), None),
            };
            // The `patient` parameter targets Patient, so a bare id is one;
            // `subject` may target other types, so it must say Patient.
            let bare_ok = match (name, modifier) {
                ("patient", None | Some("Patient")) | ("subject", Some("Patient")) => true,
                ("subject", None) => false,
                ("_id", None) if id_names_patient => true,
                _ => continue,
            };
            for item in value.split(',') {
                if let Some(id) = patient_reference(item.trim(), bare_ok) {
                    add(id);
                }
            }
        }
    }
    let patient = match patients.as_slice() {
        [only] => Some(only.clone()),
        _ => None,
    };
    RequestNeed {
        interaction: shape.interaction,
        level: shape.level,
        resource_type: shape.resource_type,
        id: shape.id,
        operation: shape.operation,
        compartment: shape.compartment.map(|(t, i)| format!("{t}/{i}")),
        patient,
        patients,
        query,
        need: shape.need,
    }
}

/// The patient id in a reference value: `123` (when `bare_ok`),
/// `Patient/123`, `Patient/123/_history/2`, or an absolute
/// `https://x/fhir/Patient/123`. References to other types give `None`.
pub fn patient_reference(value: &str, bare_ok: bool) -> Option<&str> {
    if !value.contains('/') {
        return (bare_ok && is_fhir_id(value)).then_some(value);
    }
    let segs: Vec<&str> = Target::path_part(value).split('/').collect();
    // The last `Type/id` pair, allowing a trailing `_history/vid`.
    let pair = match segs.as_slice() {
        [.., ty, id, "_history", _] => (*ty, *id),
        [.., ty, id] => (*ty, *id),
        _ => return None,
    };
    match pair {
        ("Patient", id) if is_fhir_id(id) => Some(id),
        _ => None,
    }
}

/// FHIR R4 `id`: `[A-Za-z0-9\-\.]{1,64}`.
fn is_fhir_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interaction_names_round_trip() {
        for i in Interaction::ALL {
            assert_eq!(Interaction::parse(i.as_str()), Some(i));
            assert_eq!(
                serde_json::to_value(i).unwrap(),
                serde_json::json!(i.as_str())
            );
        }
        assert_eq!(Interaction::parse("search-type"), Some(Interaction::Search));
        assert_eq!(
            Interaction::parse("history-instance"),
            Some(Interaction::History)
        );
        assert_eq!(Interaction::parse("transaction"), Some(Interaction::Batch));
        assert_eq!(Interaction::parse("VREAD"), Some(Interaction::Vread));
        assert_eq!(Interaction::parse("fetch"), None);
    }

    #[test]
    fn query_is_form_decoded_in_order() {
        assert_eq!(
            parse_query("b=2&a=x+y&&c&d=%2B1%20z&a=3"),
            vec![
                ("b".into(), "2".into()),
                ("a".into(), "x y".into()),
                ("c".into(), "".into()),
                ("d".into(), "+1 z".into()),
                ("a".into(), "3".into()),
            ]
        );
    }

    #[test]
    fn patient_references_reduce_to_ids() {
        assert_eq!(patient_reference("123", true), Some("123"));
        assert_eq!(patient_reference("123", false), None);
        assert_eq!(patient_reference("Patient/123", false), Some("123"));
        assert_eq!(
            patient_reference("https://x/fhir/Patient/a-1.b/_history/3", false),
            Some("a-1.b")
        );
        assert_eq!(patient_reference("Group/7", true), None);
        assert_eq!(patient_reference("", true), None);
        assert_eq!(patient_reference("not an id", true), None);
    }

    #[test]
    fn strip_and_locate_bases() {
        let base = FhirBase::parse("/fhir/{tenant}").unwrap();
        assert_eq!(base.strip("/fhir/acme/Patient/1?x=y"), Some("Patient/1"));
        assert_eq!(base.strip("/fhir/acme/"), Some(""));
        assert_eq!(base.strip("/other/acme/Patient"), None);
        assert_eq!(
            base.strip("https://h/fhir/acme//Patient/1/"),
            Some("Patient/1/")
        );
        let auto = FhirBase::auto();
        assert_eq!(
            auto.strip("/fhir/r4/t/Observation/1"),
            Some("Observation/1")
        );
        assert_eq!(auto.strip("/fhir/r4/$export"), Some("$export"));
        assert_eq!(auto.strip("/fhir/r4"), Some(""));
        let many = FhirBase::parse_many(["/fhir", "/fhir/r4"]).unwrap();
        assert_eq!(many.strip("/fhir/r4/Patient"), Some("Patient"));
        assert_eq!(many.strip("/fhir/Patient"), Some("Patient"));
    }

    #[test]
    fn bad_base_patterns() {
        for bad in ["/fhir/{}", "/fhir/r{4}", "/fhir?x=1", "/fhir/{a"] {
            assert!(
                matches!(FhirBase::parse(bad), Err(RequestError::BadBase { .. })),
                "{bad}"
            );
        }
        assert!(FhirBase::parse_many([]).is_err());
        assert_eq!(
            FhirBase::parse("/").unwrap().strip("/Patient/1"),
            Some("Patient/1")
        );
    }

    #[test]
    fn typo_suggestions() {
        assert_eq!(suggest_type("Observaton"), Some("Observation"));
        assert_eq!(suggest_type("observation"), Some("Observation"));
        assert_eq!(suggest_type("Patinet"), Some("Patient"));
        assert_eq!(suggest_type("Patient"), None);
        assert_eq!(suggest_type("fhir"), None);
        assert_eq!(suggest_type("r4"), None);
        assert_eq!(suggest_type("tenant-a"), None);
    }

    #[test]
    fn need_renders_as_scope() {
        let n = Need::new(Some("Observation"), Perms::READ);
        assert_eq!(n.to_string(), "Observation.rs");
        assert_eq!(
            n.required(Context::Patient).to_string(),
            "patient/Observation.rs"
        );
        assert_eq!(
            Need::new(None, Perms::S)
                .required(Context::System)
                .to_string(),
            "system/*.s"
        );
    }
}
