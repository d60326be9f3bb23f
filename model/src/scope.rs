//! The SMART App Launch scope algebra (v1 and v2): parse and normalise a
//! scope, decide whether granted scopes cover a required permission, and
//! compute the least-privilege scope set for a list of uses.
//!
//! A scope that does not parse is never dropped: [`Scope`] keeps the raw text
//! and the reason, so reports can show exactly what a server granted.

use std::collections::BTreeMap;
use std::fmt;

use percent_encoding::percent_decode_str;
use serde::Serialize;

use crate::perms::{Context, Perms};
use crate::resource_types::is_r4_resource_type;

/// The prefix SMART defines for scopes written as URIs (appendix of the spec).
const SMART_URI_PREFIX: &str = "http://smarthealthit.org/fhir/scopes/";
/// The prefix for OpenID scopes written as URIs.
const OPENID_URI_PREFIX: &str = "http://openid.net/specs/openid-connect-core-1_0#";

/// OpenID Connect and SMART identity scopes, by their exact (case-sensitive) name.
const IDENTITY_SCOPES: [&str; 6] = ["openid", "fhirUser", "profile", "email", "address", "phone"];

/// Which edition of the SMART scope syntax a scope is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScopeVersion {
    /// `.read`, `.write`, `.*`
    V1,
    /// `.cruds` letters, granular filters.
    V2,
    /// Not a resource scope (launch, identity, refresh, extension).
    None,
}

impl ScopeVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            ScopeVersion::V1 => "v1",
            ScopeVersion::V2 => "v2",
            ScopeVersion::None => "none",
        }
    }
}

/// A granular (v2) filter: the search parameters after `?`, kept as written
/// (not decoded) so rendering gives back the same text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Filter {
    params: Vec<(String, String)>,
}

impl Filter {
    /// Parses `k=v&k2=v2`; every item needs a non-empty name and a value.
    pub fn parse(text: &str) -> Result<Filter, String> {
        if text.is_empty() {
            return Err("empty filter after `?`".into());
        }
        let mut params = Vec::new();
        for item in text.split('&') {
            let Some((name, value)) = item.split_once('=') else {
                return Err(format!("filter item `{item}` is not `param=value`"));
            };
            if name.is_empty() {
                return Err(format!("filter item `{item}` has no parameter name"));
            }
            if value.is_empty() {
                return Err(format!("filter parameter `{name}` has no value"));
            }
            params.push((name.to_string(), value.to_string()));
        }
        Ok(Filter { params })
    }

    /// The parameters as written.
    pub fn params(&self) -> &[(String, String)] {
        &self.params
    }

    /// Whether a request's decoded query satisfies this filter: `Some(true)`
    /// when every filter parameter appears with the same value, `Some(false)`
    /// when the query asks for the parameter with other values only, and
    /// `None` when the query does not say (the server must look at the data).
    pub fn judge(&self, query: &[(String, String)]) -> Option<bool> {
        let mut all_present = true;
        for (name, value) in &self.params {
            let want = decode(value);
            let mut seen = false;
            let mut matched = false;
            for (qname, qvalue) in query {
                if qname == name {
                    seen = true;
                    // A FHIR search value may be an OR list: every alternative
                    // must be the filter's value, or the request reaches beyond it.
                    if qvalue.split(',').all(|alt| alt == want) {
                        matched = true;
                    }
                }
            }
            if seen && !matched {
                return Some(false);
            }
            all_present &= matched;
        }
        if all_present {
            Some(true)
        } else {
            None
        }
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, value)) in self.params.iter().enumerate() {
            if i > 0 {
                f.write_str("&")?;
            }
            write!(f, "{name}={value}")?;
        }
        Ok(())
    }
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// A normalised resource scope: `context/Resource.perms?filter`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceScope {
    pub context: Context,
    /// `None` is the wildcard `*`.
    pub resource: Option<String>,
    pub perms: Perms,
    pub filter: Option<Filter>,
    /// The syntax it was written in; v1 scopes render back in v1.
    pub version: ScopeVersion,
}

impl ResourceScope {
    /// A v2 scope with no filter.
    pub fn v2(context: Context, resource: Option<&str>, perms: Perms) -> ResourceScope {
        ResourceScope {
            context,
            resource: resource.map(str::to_string),
            perms,
            filter: None,
            version: ScopeVersion::V2,
        }
    }

    /// The resource as written in a scope: a type name or `*`.
    pub fn resource_str(&self) -> &str {
        self.resource.as_deref().unwrap_or("*")
    }

    fn reaches(&self, resource: Option<&str>) -> bool {
        match (&self.resource, resource) {
            (None, _) => true,
            (Some(mine), Some(theirs)) => mine == theirs,
            (Some(_), None) => false,
        }
    }
}

impl fmt::Display for ResourceScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let perms = match self.version {
            ScopeVersion::V1 if self.perms == Perms::READ => "read".to_string(),
            ScopeVersion::V1 if self.perms == Perms::WRITE => "write".to_string(),
            ScopeVersion::V1 if self.perms == Perms::ALL => "*".to_string(),
            _ => self.perms.letters(),
        };
        write!(f, "{}/{}.{}", self.context, self.resource_str(), perms)?;
        if let Some(filter) = &self.filter {
            write!(f, "?{filter}")?;
        }
        Ok(())
    }
}

/// What a scope is, once parsed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScopeKind {
    /// `patient/Observation.rs`, `user/*.read`, ...
    Resource(ResourceScope),
    /// `launch` (context `None`), `launch/patient`, `launch/encounter`, or an
    /// EHR-defined `launch/<lowercase type>`, optionally with `?role=`.
    Launch {
        context: Option<String>,
        role: Option<String>,
    },
    /// `openid`, `fhirUser`, `profile` and the other OpenID claim scopes.
    Identity(String),
    /// `offline_access`
    OfflineAccess,
    /// `online_access`
    OnlineAccess,
    /// A server-defined extension: `__name` or a full URL.
    Extension(String),
    /// A well-formed OAuth scope that SMART does not define (for example
    /// Keycloak's `roles`). Valid, but reported as foreign.
    Other(String),
    /// Not a valid scope; the reason says why.
    Invalid(String),
}

/// One scope as it appeared in a log or the registry, with its meaning.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope {
    raw: String,
    kind: ScopeKind,
}

impl Scope {
    /// Parses one scope. Never fails: an invalid scope keeps its text and reason.
    pub fn parse(raw: &str) -> Scope {
        Scope {
            raw: raw.to_string(),
            kind: parse_kind(raw),
        }
    }

    /// A scope built from a normalised resource scope (its raw text is its rendering).
    pub fn from_resource(resource: ResourceScope) -> Scope {
        let kind = ScopeKind::Resource(resource);
        Scope {
            raw: render_kind(&kind),
            kind,
        }
    }

    /// The text as it was given.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    pub fn kind(&self) -> &ScopeKind {
        &self.kind
    }

    pub fn is_valid(&self) -> bool {
        !matches!(self.kind, ScopeKind::Invalid(_))
    }

    /// Why the scope is invalid, if it is.
    pub fn error(&self) -> Option<&str> {
        match &self.kind {
            ScopeKind::Invalid(reason) => Some(reason),
            _ => None,
        }
    }

    pub fn resource(&self) -> Option<&ResourceScope> {
        match &self.kind {
            ScopeKind::Resource(r) => Some(r),
            _ => None,
        }
    }

    pub fn version(&self) -> ScopeVersion {
        self.resource().map_or(ScopeVersion::None, |r| r.version)
    }

    pub fn is_offline_access(&self) -> bool {
        self.kind == ScopeKind::OfflineAccess
    }

    /// `patient/*.rs` and the like: reaches every resource type.
    pub fn is_wildcard(&self) -> bool {
        self.resource().is_some_and(|r| r.resource.is_none())
    }

    /// Grants any of create, update or delete.
    pub fn is_write(&self) -> bool {
        self.resource()
            .is_some_and(|r| !r.perms.intersection(Perms::WRITE).is_empty())
    }

    pub fn is_system(&self) -> bool {
        self.resource()
            .is_some_and(|r| r.context == Context::System)
    }

    /// The kind's name as the CLI and reports print it.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            ScopeKind::Resource(_) => "resource",
            ScopeKind::Launch { .. } => "launch",
            ScopeKind::Identity(_) => "identity",
            ScopeKind::OfflineAccess | ScopeKind::OnlineAccess => "refresh",
            ScopeKind::Extension(_) => "extension",
            ScopeKind::Other(_) => "other",
            ScopeKind::Invalid(_) => "invalid",
        }
    }

    /// The machine-readable explanation `scopewatch scopes explain` prints.
    pub fn explain(&self) -> Explanation {
        let resource = self.resource();
        let (launch_context, launch_role) = match &self.kind {
            ScopeKind::Launch { context, role } => (context.clone(), role.clone()),
            _ => (None, None),
        };
        Explanation {
            input: self.raw.clone(),
            valid: self.is_valid(),
            kind: self.kind_name(),
            version: self.version().as_str(),
            context: resource.map(|r| r.context.as_str()),
            resource: resource.map(|r| r.resource_str().to_string()),
            permissions: resource.map(|r| r.perms.letters()),
            filter: resource
                .and_then(|r| r.filter.as_ref())
                .map(Filter::to_string),
            launch_context,
            launch_role,
            normalised: self.is_valid().then(|| self.normalised()),
            error: self.error().map(str::to_string),
        }
    }

    /// The canonical v2 form (v1 letters expanded); other scopes as they are.
    pub fn normalised(&self) -> String {
        match &self.kind {
            ScopeKind::Resource(r) => ResourceScope {
                version: ScopeVersion::V2,
                ..r.clone()
            }
            .to_string(),
            _ => self.to_string(),
        }
    }
}

/// What `scopes explain` prints for one scope; every key is always present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub input: String,
    pub valid: bool,
    pub kind: &'static str,
    pub version: &'static str,
    pub context: Option<&'static str>,
    pub resource: Option<String>,
    pub permissions: Option<String>,
    pub filter: Option<String>,
    pub launch_context: Option<String>,
    pub launch_role: Option<String>,
    pub normalised: Option<String>,
    pub error: Option<String>,
}

impl fmt::Display for Scope {
    /// Canonical rendering; an invalid or foreign scope renders as given.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ScopeKind::Invalid(_) | ScopeKind::Other(_) => f.write_str(&self.raw),
            kind => f.write_str(&render_kind(kind)),
        }
    }
}

fn render_kind(kind: &ScopeKind) -> String {
    match kind {
        ScopeKind::Resource(r) => r.to_string(),
        ScopeKind::Launch { context, role } => {
            let mut s = String::from("launch");
            if let Some(c) = context {
                s.push('/');
                s.push_str(c);
            }
            if let Some(r) = role {
                s.push_str("?role=");
                s.push_str(r);
            }
            s
        }
        ScopeKind::Identity(name) => name.clone(),
        ScopeKind::OfflineAccess => "offline_access".into(),
        ScopeKind::OnlineAccess => "online_access".into(),
        ScopeKind::Extension(s) | ScopeKind::Other(s) | ScopeKind::Invalid(s) => s.clone(),
    }
}

/// Splits a space-separated scope string (OAuth's `scope` parameter).
pub fn parse_scope_list(s: &str) -> Vec<Scope> {
    s.split_whitespace().map(Scope::parse).collect()
}

/// Renders scopes back into one space-separated string.
pub fn render_scope_list(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(Scope::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

fn parse_kind(raw: &str) -> ScopeKind {
    if raw.is_empty() {
        return ScopeKind::Invalid("empty scope".into());
    }
    // RFC 6749 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
    if let Some(bad) = raw
        .chars()
        .find(|c| !matches!(*c as u32, 0x21 | 0x23..=0x5B | 0x5D..=0x7E))
    {
        return ScopeKind::Invalid(format!(
            "character {bad:?} is not allowed in an OAuth scope"
        ));
    }
    let text = raw.strip_prefix(SMART_URI_PREFIX).unwrap_or(raw);
    if let Some(name) = raw.strip_prefix(OPENID_URI_PREFIX) {
        return parse_bare(name);
    }
    match text.split_once('/') {
        Some(("launch", rest)) => parse_launch(Some(rest)),
        Some((prefix, rest)) => {
            if let Some(context) = Context::parse(prefix) {
                parse_resource(context, rest)
            } else if text.contains("://") {
                ScopeKind::Extension(raw.to_string())
            } else if let Some(context) = Context::parse(&prefix.to_ascii_lowercase()) {
                ScopeKind::Invalid(format!(
                    "context `{prefix}` must be lower case: `{context}/`"
                ))
            } else {
                ScopeKind::Invalid(format!(
                    "unknown scope prefix `{prefix}/` (expected patient/, user/, system/ or launch/)"
                ))
            }
        }
        None => parse_bare(text),
    }
}

fn parse_bare(name: &str) -> ScopeKind {
    match name {
        "launch" => return parse_launch(None),
        "offline_access" => return ScopeKind::OfflineAccess,
        "online_access" => return ScopeKind::OnlineAccess,
        _ => {}
    }
    if IDENTITY_SCOPES.contains(&name) {
        return ScopeKind::Identity(name.to_string());
    }
    if name.starts_with("__") && name.len() > 2 {
        return ScopeKind::Extension(name.to_string());
    }
    let known = IDENTITY_SCOPES
        .iter()
        .chain(["launch", "offline_access", "online_access"].iter())
        .find(|k| k.eq_ignore_ascii_case(name));
    if let Some(known) = known {
        return ScopeKind::Invalid(format!(
            "scopes are case-sensitive: did you mean `{known}`?"
        ));
    }
    ScopeKind::Other(name.to_string())
}

fn parse_launch(rest: Option<&str>) -> ScopeKind {
    let Some(rest) = rest else {
        return ScopeKind::Launch {
            context: None,
            role: None,
        };
    };
    let (context, role) = match rest.split_once('?') {
        Some((c, query)) => match query.strip_prefix("role=") {
            Some(role) if !role.is_empty() && !role.contains('&') => (c, Some(role.to_string())),
            _ => {
                return ScopeKind::Invalid(format!(
                    "launch scope query `?{query}` must be exactly one `role=...`"
                ))
            }
        },
        None => (rest, None),
    };
    if context.is_empty() {
        return ScopeKind::Invalid("`launch/` needs a context such as `launch/patient`".into());
    }
    if context.chars().any(|c| c.is_ascii_uppercase()) {
        return ScopeKind::Invalid(format!(
            "launch context `{context}` must be all lower case: `launch/{}`",
            context.to_ascii_lowercase()
        ));
    }
    let known = crate::resource_types::R4_RESOURCE_TYPES
        .iter()
        .any(|t| t.eq_ignore_ascii_case(context));
    if !known {
        return ScopeKind::Invalid(format!(
            "launch context `{context}` is not a FHIR R4 resource type in lower case"
        ));
    }
    ScopeKind::Launch {
        context: Some(context.to_string()),
        role,
    }
}

fn parse_resource(context: Context, rest: &str) -> ScopeKind {
    let (body, filter) = match rest.split_once('?') {
        Some((body, filter)) => (body, Some(filter)),
        None => (rest, None),
    };
    let Some((resource, perm_text)) = body.split_once('.') else {
        return ScopeKind::Invalid(format!(
            "`{context}/{body}` has no permissions: expected `{context}/Type.rs` or `{context}/Type.read`"
        ));
    };
    let resource = match resource {
        "*" => None,
        "" => return ScopeKind::Invalid("missing resource type before `.`".into()),
        t if is_r4_resource_type(t) => Some(t.to_string()),
        t => {
            let hint = crate::resource_types::R4_RESOURCE_TYPES
                .iter()
                .find(|k| k.eq_ignore_ascii_case(t))
                .map(|k| format!(" (did you mean `{k}`?)"))
                .unwrap_or_default();
            return ScopeKind::Invalid(format!("`{t}` is not a FHIR R4 resource type{hint}"));
        }
    };
    let (perms, version) = match perm_text {
        "read" => (Perms::READ, ScopeVersion::V1),
        "write" => (Perms::WRITE, ScopeVersion::V1),
        "*" => (Perms::ALL, ScopeVersion::V1),
        letters => match parse_letters(letters) {
            Ok(p) => (p, ScopeVersion::V2),
            Err(reason) => return ScopeKind::Invalid(reason),
        },
    };
    let filter =
        match filter {
            None => None,
            Some(_) if version == ScopeVersion::V1 => return ScopeKind::Invalid(
                "granular `?` filters exist only in SMART v2 scopes (use letters such as `.rs`)"
                    .into(),
            ),
            Some(text) => match Filter::parse(text) {
                Ok(f) => Some(f),
                Err(reason) => return ScopeKind::Invalid(reason),
            },
        };
    ScopeKind::Resource(ResourceScope {
        context,
        resource,
        perms,
        filter,
        version,
    })
}

fn parse_letters(text: &str) -> Result<Perms, String> {
    if text.is_empty() {
        return Err("no permission letters after `.` (expected a subset of `cruds`)".into());
    }
    let mut perms = Perms::NONE;
    let mut last_rank = None;
    for c in text.chars() {
        let Some(rank) = "cruds".find(c) else {
            return Err(format!(
                "`.{text}`: `{c}` is not a permission (v2 letters are c r u d s; v1 is read, write or *)"
            ));
        };
        let bit = Perms::from_letter(c).expect("letter checked above");
        if perms.contains(bit) {
            return Err(format!("`.{text}`: letter `{c}` appears twice"));
        }
        if last_rank.is_some_and(|last| rank < last) {
            return Err(format!(
                "`.{text}`: permission letters out of order (they must follow `cruds`, e.g. `.{}`)",
                perms.union(bit).letters()
            ));
        }
        last_rank = Some(rank);
        perms = perms.union(bit);
    }
    Ok(perms)
}

// ---------------------------------------------------------------------------
// Coverage

/// A permission one call needs, in scope terms: `patient/Observation.r`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Required {
    pub context: Context,
    /// `None`: every type (system-level search and history, `$export`).
    pub resource: Option<String>,
    pub perms: Perms,
}

impl Required {
    /// Reads a required permission written as a scope without filter, e.g.
    /// `patient/Observation.r`.
    pub fn parse(text: &str) -> Result<Required, String> {
        let scope = Scope::parse(text);
        match scope.kind {
            ScopeKind::Resource(r) if r.filter.is_none() => Ok(Required {
                context: r.context,
                resource: r.resource,
                perms: r.perms,
            }),
            ScopeKind::Resource(_) => Err(format!("`{text}`: a required permission has no filter")),
            ScopeKind::Invalid(reason) => Err(format!("`{text}`: {reason}")),
            _ => Err(format!(
                "`{text}` is not a resource permission such as `patient/Observation.r`"
            )),
        }
    }

    /// As a scope, in v2 form.
    pub fn to_scope(&self) -> ResourceScope {
        ResourceScope::v2(self.context, self.resource.as_deref(), self.perms)
    }
}

impl fmt::Display for Required {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_scope().fmt(f)
    }
}

/// Whether granted scopes cover a permission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Coverage {
    /// Covered; the indices of the granted scopes that do it (one per letter
    /// group, most specific first).
    Covered(Vec<usize>),
    /// Only granular scopes could cover it and the request's query does not
    /// tell whether their filters hold; the candidates are given.
    Indeterminate(Vec<usize>),
    NotCovered,
}

impl Coverage {
    /// `Some(true)`, `Some(false)`, or `None` when it cannot be told.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Coverage::Covered(_) => Some(true),
            Coverage::NotCovered => Some(false),
            Coverage::Indeterminate(_) => None,
        }
    }

    pub fn scopes(&self) -> &[usize] {
        match self {
            Coverage::Covered(v) | Coverage::Indeterminate(v) => v,
            Coverage::NotCovered => &[],
        }
    }
}

/// Do `granted` scopes cover `required`? Contexts must match exactly (a
/// `user/` grant does not stand for a `patient/` need: the caller decides the
/// context from the token). `query` is the request's decoded search
/// parameters when it is a search; it is what granular filters are judged
/// against. Letters may be covered by different scopes (`.r` + `.s` = `.rs`).
pub fn covers(
    granted: &[Scope],
    required: &Required,
    query: Option<&[(String, String)]>,
) -> Coverage {
    let mut covered_by = Vec::new();
    let mut indeterminate = false;
    for letter in required.perms.iter() {
        let mut best: Option<(usize, (bool, u32))> = None;
        let mut candidate: Option<usize> = None;
        for (i, scope) in granted.iter().enumerate() {
            let Some(r) = scope.resource() else { continue };
            if r.context != required.context
                || !r.perms.contains(letter)
                || !r.reaches(required.resource.as_deref())
            {
                continue;
            }
            let holds = match (&r.filter, query) {
                (None, _) => Some(true),
                (Some(f), Some(q)) => f.judge(q),
                (Some(_), None) => None,
            };
            match holds {
                Some(true) => {
                    // Most specific: a named type before `*`, then fewer letters.
                    let rank = (r.resource.is_none(), r.perms.bits().count_ones());
                    if best.is_none_or(|(_, b)| rank < b) {
                        best = Some((i, rank));
                    }
                }
                None => {
                    candidate.get_or_insert(i);
                }
                Some(false) => {}
            }
        }
        match (best, candidate) {
            (Some((i, _)), _) => covered_by.push(i),
            (None, Some(i)) => {
                indeterminate = true;
                covered_by.push(i);
            }
            (None, None) => return Coverage::NotCovered,
        }
    }
    covered_by.dedup();
    if indeterminate {
        Coverage::Indeterminate(covered_by)
    } else {
        Coverage::Covered(covered_by)
    }
}

/// The context a call is judged in when the logs do not say: the context of
/// the granted resource scopes that could cover it (patient before user
/// before system), else `patient` when the token was launched with a patient
/// or the call names one, else `user`.
pub fn infer_context(
    granted: &[Scope],
    resource: Option<&str>,
    perms: Perms,
    names_patient: bool,
) -> Context {
    for context in Context::ALL {
        let required = Required {
            context,
            resource: resource.map(str::to_string),
            perms,
        };
        if covers(granted, &required, None) != Coverage::NotCovered {
            return context;
        }
    }
    let has = |c: Context| {
        granted
            .iter()
            .any(|s| s.resource().is_some_and(|r| r.context == c))
    };
    let launched_with_patient = granted
        .iter()
        .any(|s| matches!(s.kind(), ScopeKind::Launch { context: Some(c), .. } if c == "patient"));
    if has(Context::Patient) || launched_with_patient || names_patient {
        Context::Patient
    } else if has(Context::User) {
        Context::User
    } else if has(Context::System) {
        Context::System
    } else {
        Context::User
    }
}

// ---------------------------------------------------------------------------
// Least privilege

/// The result of [`minimise`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Minimised {
    /// The least-privilege scope set, sorted, in v2 form.
    pub scopes: Vec<Scope>,
    /// Inputs that are not valid scopes; they cannot be part of a suggestion.
    pub rejected: Vec<Scope>,
}

/// The smallest scope set that covers every use and grants nothing beyond
/// them: uses of the same context, type and filter merge into one scope;
/// letters already granted by a `*` scope of the same context (or by an
/// unfiltered scope of the same type, for filtered ones) are dropped.
/// Widening to a wildcard would shorten the list but grant more, so it is
/// never done. Non-resource scopes (launch, identity, refresh) pass through
/// once each.
pub fn minimise<'a>(uses: impl IntoIterator<Item = &'a Scope>) -> Minimised {
    type Key = (Context, Option<String>, Option<Filter>);
    let mut merged: BTreeMap<Key, Perms> = BTreeMap::new();
    let mut others: Vec<Scope> = Vec::new();
    let mut rejected: Vec<Scope> = Vec::new();
    for scope in uses {
        match scope.kind() {
            ScopeKind::Resource(r) => {
                let key = (r.context, r.resource.clone(), r.filter.clone());
                let perms = merged.entry(key).or_default();
                *perms = perms.union(r.perms);
            }
            ScopeKind::Invalid(_) => {
                if !rejected.contains(scope) {
                    rejected.push(scope.clone());
                }
            }
            _ => {
                let canonical = Scope::parse(&scope.to_string());
                if !others.contains(&canonical) {
                    others.push(canonical);
                }
            }
        }
    }
    let mut scopes: Vec<Scope> = others;
    scopes.sort_by_key(|s| s.to_string());
    for ((context, resource, filter), perms) in &merged {
        let mut left = *perms;
        let wildcard = merged
            .get(&(*context, None, None))
            .copied()
            .unwrap_or_default();
        if resource.is_some() || filter.is_some() {
            left = left.difference(wildcard);
        }
        if filter.is_some() && resource.is_some() {
            let typed = merged
                .get(&(*context, resource.clone(), None))
                .copied()
                .unwrap_or_default();
            left = left.difference(typed);
        }
        if left.is_empty() {
            continue;
        }
        scopes.push(Scope::from_resource(ResourceScope {
            context: *context,
            resource: resource.clone(),
            perms: left,
            filter: filter.clone(),
            version: ScopeVersion::V2,
        }));
    }
    Minimised { scopes, rejected }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(s: &str) -> ResourceScope {
        Scope::parse(s)
            .resource()
            .cloned()
            .unwrap_or_else(|| panic!("{s} should be a resource scope"))
    }

    #[test]
    fn v1_and_v2_normalise_alike() {
        assert_eq!(res("patient/Observation.read").perms, Perms::READ);
        assert_eq!(res("patient/Observation.rs").perms, Perms::READ);
        assert_eq!(res("user/*.write").perms, Perms::WRITE);
        assert_eq!(res("patient/*.*").perms, Perms::ALL);
        assert_eq!(Scope::parse("patient/*.*").normalised(), "patient/*.cruds");
        assert_eq!(Scope::parse("patient/*.read").to_string(), "patient/*.read");
    }

    #[test]
    fn bad_letters_are_explained() {
        let s = Scope::parse("user/Patient.dus");
        assert!(!s.is_valid());
        assert!(
            s.error().unwrap().contains("out of order"),
            "{:?}",
            s.error()
        );
        assert!(Scope::parse("patient/Observation.rrs")
            .error()
            .unwrap()
            .contains("twice"));
        assert!(Scope::parse("patient/Observation.x")
            .error()
            .unwrap()
            .contains("not a permission"));
        assert!(Scope::parse("patient/Observaton.rs")
            .error()
            .unwrap()
            .contains("not a FHIR R4"));
        assert!(Scope::parse("Patient/Observation.rs")
            .error()
            .unwrap()
            .contains("lower case"));
        assert!(Scope::parse("fhiruser")
            .error()
            .unwrap()
            .contains("fhirUser"));
    }

    #[test]
    fn filter_judgement() {
        let f = Filter::parse("category=http://x|laboratory").unwrap();
        let q = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        assert_eq!(f.judge(&q("category", "http://x|laboratory")), Some(true));
        assert_eq!(f.judge(&q("category", "http://x|vital-signs")), Some(false));
        assert_eq!(f.judge(&q("code", "1234")), None);
        let encoded = Filter::parse("category=http://x%7Claboratory").unwrap();
        assert_eq!(
            encoded.judge(&q("category", "http://x|laboratory")),
            Some(true)
        );
    }

    #[test]
    fn minimise_merges_and_drops_what_wildcards_hold() {
        let uses: Vec<Scope> = [
            "patient/Observation.r",
            "patient/Observation.s",
            "patient/*.r",
            "patient/Condition.rs",
            "launch",
            "launch",
        ]
        .iter()
        .map(|s| Scope::parse(s))
        .collect();
        let m = minimise(&uses);
        assert_eq!(
            render_scope_list(&m.scopes),
            "launch patient/*.r patient/Condition.s patient/Observation.s"
        );
    }
}
