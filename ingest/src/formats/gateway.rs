//! What every API-gateway format (`kong`, `nginx`, `envoy`) shares: a
//! [`GatewayRequest`] is one proxied HTTP request as the gateway logged it,
//! and [`gateway_event`] turns it into the event scopewatch keeps.
//!
//! - The `Authorization` value (`Bearer <token>` or `DPoP <token>`, or a bare
//!   JWT) is reduced by [`crate::privacy::Pseudonymiser::token_info`]: the
//!   token id (a JWT's `jti`, else a hash), the client (`client_id`/`azp`),
//!   the granted scopes, and the user (`sub`) and patient as pseudonyms.
//!   Nothing of the token itself is kept. A value that is no bearer token
//!   (`Basic ...`, Kong's `REDACTED`, `***`) is ignored: tokens shorter than
//!   16 characters or outside the token68 alphabet are taken for masks.
//! - A request whose path is one of the source's `authorize_paths` becomes an
//!   `auth` event of kind `authorize`: the scopes of its `scope` parameter,
//!   its `client_id` parameter, success when the status is below 400 (the
//!   usual 302 redirect is a success). No other parameter is kept
//!   (`redirect_uri`, `state`, `code_challenge`, `login_hint`, `launch`, ...).
//! - Any other request becomes an `access` event through
//!   [`crate::adapter::enrich_access`] (interaction, required permission,
//!   coverage by the token's scopes, ids pseudonymised in the path). A JWT's
//!   `exp` gives `expires_at` and its `iss` gives `token_tenant` (through
//!   [`crate::privacy::issuer_tenant`]: `tenant_map`, else a URL's last
//!   segment, the Keycloak realm), whatever `tenant_from` says.
//! - The tenant follows the source's `tenant_from`: `fixed` (or absent) is
//!   the source's `tenant`; `host` the request's host without its port;
//!   `path:N` the Nth path segment; `realm` the segment after `/realms/` in
//!   the path, else in the token's `iss`; `claim:NAME` that token claim
//!   (identity claims such as `sub`, `patient`, `email` are never used). The
//!   value goes through `tenant_map`; when it gives nothing the source's
//!   `tenant` is used, and without one the line is an error.
//! - The app version follows `app_version_from`: a token claim, or the
//!   first capture of a regular expression over the User-Agent.
//! - A status of 0 (envoy: no response was sent) is the `error` outcome.
//!
//! It also holds the parsing every gateway format needs: a JSON object line
//! read loosely ([`parse_json_object`], [`get`], [`get_path`], [`header`]),
//! JSON logs whose field names a site chooses ([`JsonLayout`],
//! [`request_from_json`], remapped through `[source.fields]`), space-separated
//! text lines with quoted and bracketed fields ([`split_tokens`],
//! [`request_line`], [`read_extras`]), and numbers and timestamps written as
//! numbers or text ([`timestamp_text`], [`timestamp_json`], [`number`]).

use std::borrow::Cow;
use std::cell::OnceCell;
use std::fmt;

use percent_encoding::percent_decode_str;
use scopewatch_model::config::{TenantFrom, VersionFrom};
use scopewatch_model::events::{
    AccessEvent, AccessOutcome, AuthEvent, AuthKind, AuthOutcome, Timestamp,
};

use crate::adapter::{
    enrich_access, json_kind_at, line_text, LineContext, Loose, ParseError, Parsed,
};
use crate::privacy::{jwt_claims, JwtClaims, TokenInfo};

/// One proxied request, as a gateway logged it. Values are raw; only
/// [`gateway_event`] decides what of them is kept.
#[derive(Clone, PartialEq)]
pub struct GatewayRequest<'a> {
    pub ts: Timestamp,
    pub method: Cow<'a, str>,
    /// The request target: path and query, or an absolute URL.
    pub target: Cow<'a, str>,
    /// The Host header (or `:authority`); a port is dropped.
    pub host: Option<Cow<'a, str>>,
    /// Required by [`gateway_event`]; `None` only while an adapter fills it.
    pub status: Option<u16>,
    /// Response bytes.
    pub bytes: Option<u64>,
    pub latency_ms: Option<f64>,
    /// The client address; the first of a comma-separated list is taken and
    /// a port is dropped.
    pub ip: Option<Cow<'a, str>>,
    pub user_agent: Option<Cow<'a, str>>,
    /// The raw `Authorization` header value: read, never stored.
    pub authorization: Option<Cow<'a, str>>,
    /// The client as the gateway knows it (e.g. Kong's consumer), used when
    /// the token does not name one.
    pub client_id: Option<Cow<'a, str>>,
    /// The gateway's request id. No stream has a column for it yet; it is
    /// read so that adapters agree on it, and not stored.
    pub request_id: Option<Cow<'a, str>>,
}

impl<'a> GatewayRequest<'a> {
    /// A request with only its time, method and target known.
    pub fn new(
        ts: Timestamp,
        method: impl Into<Cow<'a, str>>,
        target: impl Into<Cow<'a, str>>,
    ) -> GatewayRequest<'a> {
        GatewayRequest {
            ts,
            method: method.into(),
            target: target.into(),
            host: None,
            status: None,
            bytes: None,
            latency_ms: None,
            ip: None,
            user_agent: None,
            authorization: None,
            client_id: None,
            request_id: None,
        }
    }
}

/// Shows no raw value that could be PHI or a credential.
impl fmt::Debug for GatewayRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayRequest")
            .field("ts", &self.ts)
            .field("method", &self.method)
            .field("status", &self.status)
            .field("bytes", &self.bytes)
            .field("latency_ms", &self.latency_ms)
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

/// Turns a logged request into an `auth` event (an authorize endpoint) or
/// an `access` event, with everything gateway formats share (see the
/// module documentation).
pub fn gateway_event(
    req: &GatewayRequest<'_>,
    ctx: &LineContext<'_>,
) -> Result<Parsed, ParseError> {
    let status = req
        .status
        .ok_or(ParseError::MissingField("status".into()))?;
    let method = http_method(&req.method)?;
    let (url_host, target) = split_absolute(req.target.trim());
    if target.is_empty() {
        return Err(ParseError::MissingField("path".into()));
    }
    let path = target.split(['?', '#']).next().unwrap_or(target);
    let host = req
        .host
        .as_deref()
        .and_then(present)
        .or(url_host)
        .and_then(host_name);
    let token = req.authorization.as_deref().and_then(bearer_token);
    let info = token.map(|t| ctx.privacy.token_info(t));
    let claims = Claims {
        token,
        info: info.as_deref(),
        decoded: OnceCell::new(),
    };
    let tenant = tenant(ctx, host.as_deref(), path, &claims)?;
    let user_agent = req.user_agent.as_deref().and_then(present);
    let app_version = match &ctx.options.app_version_from {
        None => None,
        Some(VersionFrom::Claim(c)) => claims.get(c),
        Some(v @ VersionFrom::UserAgent(_)) => user_agent.and_then(|ua| v.from_user_agent(ua)),
    };
    let ip = req.ip.as_deref().and_then(client_ip).map(str::to_string);
    let user_agent = user_agent.map(str::to_string);
    let hint = req.client_id.as_deref().and_then(present);

    if ctx.options.is_authorize_path(path) {
        let query = target.split_once('?').map_or("", |(_, q)| q);
        let query = query.split('#').next().unwrap_or(query);
        let success = (100..400).contains(&status);
        return Ok(Parsed::Auth(AuthEvent {
            event_id: ctx.event_id.to_string(),
            ts: req.ts,
            tenant,
            env: ctx.env,
            kind: AuthKind::Authorize,
            outcome: if success {
                AuthOutcome::Success
            } else {
                AuthOutcome::Failure
            },
            error: (!success).then(|| format!("HTTP {status}")),
            client_id: query_param(query, "client_id")
                .as_deref()
                .and_then(present)
                .or(hint)
                .map(str::to_string),
            app_version,
            user: None,
            session_id: None,
            patient: None,
            encounter: None,
            scopes_requested: query_param(query, "scope")
                .map(|s| s.split_whitespace().map(str::to_string).collect()),
            scopes_granted: None,
            grant_type: None,
            token_id: None,
            refresh_token_id: None,
            parent_token_id: None,
            expires_at: None,
            ip,
            user_agent,
            source: ctx.source.to_string(),
            source_file: ctx.source_file.map(str::to_string),
            source_offset: ctx.offset,
        }));
    }

    let info = info.as_deref();
    let granted = info.and_then(|i| i.scopes.as_deref());
    let e = enrich_access(&method, target, granted, ctx);
    Ok(Parsed::Access(AccessEvent {
        event_id: ctx.event_id.to_string(),
        ts: req.ts,
        tenant,
        env: ctx.env,
        client_id: info
            .and_then(|i| i.client_id.clone())
            .or_else(|| hint.map(str::to_string)),
        app_version,
        user: info.and_then(|i| i.user.clone()),
        token_id: info.map(|i| i.id.clone()),
        expires_at: info.and_then(TokenInfo::expires_at),
        token_tenant: info.and_then(|i| i.tenant(ctx.options)),
        method,
        path: e.path,
        interaction: e.interaction,
        resource_type: e.resource_type,
        compartment: e.compartment,
        patient: e.patient.or_else(|| info.and_then(|i| i.patient.clone())),
        required: e.required,
        granted_covered: e.granted_covered,
        status: Some(status),
        outcome: if status == 0 {
            AccessOutcome::Error
        } else {
            AccessOutcome::from_status(status)
        },
        bytes: req.bytes,
        latency_ms: req.latency_ms,
        ip,
        user_agent,
        source: ctx.source.to_string(),
        source_file: ctx.source_file.map(str::to_string),
        source_offset: ctx.offset,
    }))
}

// ---------------------------------------------------------------------------
// Tenant, claims, tokens

/// The token's claims, the common ones from the cached [`TokenInfo`], any
/// other decoded on first use.
struct Claims<'t> {
    token: Option<&'t str>,
    info: Option<&'t TokenInfo>,
    decoded: OnceCell<Option<JwtClaims>>,
}

/// Claims that identify a person: never a tenant or a version.
const IDENTITY_CLAIMS: &[&str] = &[
    "sub",
    "patient",
    "patient_id",
    "fhirUser",
    "email",
    "name",
    "preferred_username",
    "given_name",
    "family_name",
    "phone_number",
    "launch_context",
    "context",
];

impl Claims<'_> {
    fn get(&self, name: &str) -> Option<String> {
        if IDENTITY_CLAIMS.contains(&name) {
            return None;
        }
        let info = self.info?;
        let value = match name {
            "iss" => info.iss.clone(),
            // Several audiences: the first names the resource server.
            "aud" => info
                .aud
                .as_deref()
                .and_then(|a| a.split_whitespace().next())
                .map(str::to_string),
            "client_id" | "azp" | "cid" => info.client_id.clone(),
            _ => self
                .decoded
                .get_or_init(|| self.token.and_then(jwt_claims))
                .as_ref()?
                .claim(name)
                .map(Cow::into_owned),
        };
        value.filter(|v| !v.trim().is_empty())
    }
}

fn tenant(
    ctx: &LineContext<'_>,
    host: Option<&str>,
    path: &str,
    claims: &Claims<'_>,
) -> Result<String, ParseError> {
    let value: Option<Cow<'_, str>> = match &ctx.options.tenant_from {
        None | Some(TenantFrom::Fixed) => None,
        Some(TenantFrom::Host) => host.map(Cow::Borrowed),
        Some(TenantFrom::PathSegment(n)) => path
            .split('/')
            .filter(|s| !s.is_empty())
            .nth(n.saturating_sub(1))
            .map(Cow::Borrowed),
        Some(TenantFrom::Realm) => realm_in(path).map(Cow::Borrowed).or_else(|| {
            claims
                .get("iss")
                .and_then(|iss| realm_in(&iss).map(|r| Cow::Owned(r.to_string())))
        }),
        Some(TenantFrom::Claim(c)) => claims.get(c).map(Cow::Owned),
    };
    value
        .and_then(|v| ctx.options.tenant_name(&v))
        .or_else(|| ctx.tenant.map(str::to_string))
        .ok_or(ParseError::MissingField("tenant".into()))
}

/// The segment after `/realms/` (Keycloak paths and issuers).
fn realm_in(s: &str) -> Option<&str> {
    let i = s.find("/realms/")?;
    let rest = &s[i + "/realms/".len()..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let realm = &rest[..end];
    (!realm.is_empty()).then_some(realm)
}

/// The token in an `Authorization` value: after `Bearer ` or `DPoP `, or a
/// bare JWT. `None` for other schemes and for masks (shorter than 16
/// characters, or characters outside token68).
pub fn bearer_token(value: &str) -> Option<&str> {
    let v = value.trim();
    let token = match v.split_once(char::is_whitespace) {
        Some((scheme, rest))
            if scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("dpop") =>
        {
            rest.trim()
        }
        Some(_) => return None,
        None if v.starts_with("ey") && v.matches('.').count() == 2 => v,
        None => return None,
    };
    (token.len() >= 16
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b)))
    .then_some(token)
}

// ---------------------------------------------------------------------------
// Request pieces

/// The method in upper case; `-` or nothing is missing.
fn http_method(m: &str) -> Result<String, ParseError> {
    let m = present(m).ok_or(ParseError::MissingField("method".into()))?;
    if m.len() > 32
        || !m
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(ParseError::bad_value("method", "not an HTTP method"));
    }
    Ok(m.to_ascii_uppercase())
}

/// `(host, path and query)` of an absolute URL (user info dropped); a path
/// is returned as it is, with no host.
pub fn split_absolute(target: &str) -> (Option<&str>, &str) {
    let Some(i) = target.find("://") else {
        return (None, target);
    };
    let scheme = &target[..i];
    if !scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        || !scheme
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
    {
        return (None, target);
    }
    let rest = &target[i + 3..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let path = match &rest[end..] {
        "" => "/",
        p => p,
    };
    ((!host.is_empty()).then_some(host), path)
}

/// A host name without port, lower case, without a trailing dot.
fn host_name(h: &str) -> Option<String> {
    let h = h.trim();
    let h = h.rsplit_once('@').map_or(h, |(_, h)| h);
    let name = if let Some(rest) = h.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else if h.matches(':').count() == 1 {
        h.split(':').next().unwrap_or(h)
    } else {
        h
    };
    let name = name.trim_end_matches('.');
    (!name.is_empty()).then(|| name.to_ascii_lowercase())
}

/// The client address in an `X-Forwarded-For`-style list or an
/// `address:port`: the first entry, without its port.
pub fn client_ip(v: &str) -> Option<&str> {
    let first = present(v.split(',').next().unwrap_or(v))?;
    let ip = if let Some(rest) = first.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else if first.matches(':').count() == 1 {
        first.split(':').next().unwrap_or(first)
    } else {
        first
    };
    present(ip)
}

/// A logged text value: trimmed, with `""` and `-` (how gateways write an
/// empty variable) meaning absent.
pub fn present(s: &str) -> Option<&str> {
    let t = s.trim();
    (!t.is_empty() && t != "-").then_some(t)
}

/// A query parameter, form-decoded (`+` is a space, `%XX` decoded); the
/// first when it repeats.
pub fn query_param<'q>(query: &'q str, name: &str) -> Option<Cow<'q, str>> {
    query
        .split('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .find(|(k, _)| form_decode(k) == name)
        .map(|(_, v)| form_decode(v))
}

fn form_decode(s: &str) -> Cow<'_, str> {
    if !s.contains(['+', '%']) {
        return Cow::Borrowed(s);
    }
    let spaced = s.replace('+', " ");
    Cow::Owned(percent_decode_str(&spaced).decode_utf8_lossy().into_owned())
}

// ---------------------------------------------------------------------------
// Numbers and timestamps

/// A number written as a JSON number or as text (nginx's `escape=json`
/// writes every variable as a string); `-`, `""` and `null` are absent.
pub fn number(field: &'static str, v: Option<&Loose<'_>>) -> Result<Option<f64>, ParseError> {
    match v {
        None | Some(Loose::Null) => Ok(None),
        Some(Loose::Str(s)) => number_text(field, s),
        Some(n @ (Loose::Int(_) | Loose::UInt(_) | Loose::Float(_))) => Ok(n.as_f64()),
        Some(other) => Err(ParseError::wrong_type(field, "a number", other)),
    }
}

/// [`number`] for a text field.
pub fn number_text(field: &'static str, s: &str) -> Result<Option<f64>, ParseError> {
    let Some(s) = present(s) else {
        return Ok(None);
    };
    match s.parse::<f64>() {
        Ok(f) if f.is_finite() => Ok(Some(f)),
        _ => Err(ParseError::bad_value(field, "not a number")),
    }
}

/// An HTTP status (0 to 999).
pub fn as_status(field: &'static str, n: Option<f64>) -> Result<Option<u16>, ParseError> {
    match n {
        None => Ok(None),
        Some(f) if f.fract() == 0.0 && (0.0..=999.0).contains(&f) => Ok(Some(f as u16)),
        Some(_) => Err(ParseError::bad_value(field, "not an HTTP status")),
    }
}

/// A byte count.
pub fn as_bytes(field: &'static str, n: Option<f64>) -> Result<Option<u64>, ParseError> {
    match n {
        None => Ok(None),
        Some(f) if f.fract() == 0.0 && (0.0..9.0e15).contains(&f) => Ok(Some(f as u64)),
        Some(_) => Err(ParseError::bad_value(field, "not a byte count")),
    }
}

/// A duration in milliseconds, from `n` units of `ms_per_unit`.
pub fn as_latency_ms(
    field: &'static str,
    n: Option<f64>,
    ms_per_unit: f64,
) -> Result<Option<f64>, ParseError> {
    match n {
        None => Ok(None),
        Some(f) if f >= 0.0 => Ok(Some(f * ms_per_unit)),
        Some(_) => Err(ParseError::bad_value(field, "negative")),
    }
}

/// What a number without unit in a timestamp field counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Epoch {
    /// Milliseconds since the epoch (Kong's `started_at`).
    Millis,
    /// By magnitude: below 10^11 seconds (nginx `$msec`), below 10^14
    /// milliseconds, else microseconds.
    Guess,
}

/// Years 0000..=9999: what every engine reading the lake can represent.
const MIN_US: f64 = -62_167_219_200_000_000.0;
const MAX_US: f64 = 253_402_300_799_999_999.0;

fn from_epoch(field: &'static str, x: f64, unit: Epoch) -> Result<Timestamp, ParseError> {
    let micros = match unit {
        Epoch::Millis => x * 1e3,
        Epoch::Guess if x.abs() < 1e11 => x * 1e6,
        Epoch::Guess if x.abs() < 1e14 => x * 1e3,
        Epoch::Guess => x,
    };
    if micros.is_finite() && (MIN_US..=MAX_US).contains(&micros) {
        Ok(Timestamp(micros.round() as i64))
    } else {
        Err(ParseError::bad_value(field, "out of range"))
    }
}

/// A timestamp written as text: RFC 3339 (nginx `$time_iso8601`, envoy
/// `%START_TIME%`), nginx's `$time_local` (`10/Oct/2000:13:55:36 -0700`), or
/// an epoch number.
pub fn timestamp_text(field: &'static str, s: &str, unit: Epoch) -> Result<Timestamp, ParseError> {
    let s = s.trim();
    if let Some(t) = Timestamp::parse_rfc3339(s) {
        return Ok(t);
    }
    let time_local = time::macros::format_description!(
        "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] [offset_hour sign:mandatory][offset_minute]"
    );
    if let Ok(t) = time::OffsetDateTime::parse(s, &time_local) {
        return Ok(Timestamp::from_offset_datetime(t));
    }
    match s.parse::<f64>() {
        Ok(x) => from_epoch(field, x, unit),
        Err(_) => Err(ParseError::bad_value(
            field,
            "not a timestamp (RFC 3339, nginx time_local, or epoch)",
        )),
    }
}

/// [`timestamp_text`] for a JSON value, which may also be a number.
pub fn timestamp_json(
    field: &'static str,
    v: Option<&Loose<'_>>,
    unit: Epoch,
) -> Result<Option<Timestamp>, ParseError> {
    match v {
        None | Some(Loose::Null) => Ok(None),
        Some(Loose::Str(s)) => match present(s) {
            None => Ok(None),
            Some(s) => timestamp_text(field, s, unit).map(Some),
        },
        Some(n @ (Loose::Int(_) | Loose::UInt(_) | Loose::Float(_))) => {
            from_epoch(field, n.as_f64().unwrap_or(f64::NAN), unit).map(Some)
        }
        Some(other) => Err(ParseError::wrong_type(
            field,
            "a timestamp (text or epoch number)",
            other,
        )),
    }
}

// ---------------------------------------------------------------------------
// JSON lines

/// One member of a JSON object: name and value.
pub type Member<'a> = (Cow<'a, str>, Loose<'a>);

/// A JSON object's members, in order.
pub type JsonObject<'a> = Vec<Member<'a>>;

/// Parses a line (or a pretty-printed record) that must be one JSON object.
/// A gateway line that is either a JSON object (fields found through
/// `layout` and the source's `[source.fields]`) or the format's text form
/// (read by `text`): the one `Adapter::parse_line` of nginx and envoy.
pub fn parse_json_or_text(
    line: &[u8],
    ctx: &LineContext<'_>,
    out: &mut Vec<Parsed>,
    layout: &JsonLayout,
    text: for<'a> fn(&'a str) -> Result<GatewayRequest<'a>, ParseError>,
) -> Result<(), ParseError> {
    let whole = line_text(line)?;
    let whole = whole.strip_suffix('\r').unwrap_or(whole);
    let start = whole.trim_start();
    if start.is_empty() {
        return Ok(());
    }
    if start.starts_with('{') {
        let obj = parse_json_object(whole)?;
        let req = request_from_json(&obj, layout, ctx)?;
        out.push(gateway_event(&req, ctx)?);
    } else {
        out.push(gateway_event(&text(start)?, ctx)?);
    }
    Ok(())
}

pub fn parse_json_object(text: &str) -> Result<JsonObject<'_>, ParseError> {
    let start = text.trim_start();
    if !start.starts_with('{') {
        return Err(ParseError::NotAnObject(json_kind_at(start)));
    }
    match serde_json::from_str::<Loose<'_>>(text) {
        Ok(Loose::Object(fields)) => Ok(fields),
        Ok(other) => Err(ParseError::NotAnObject(other.type_name())),
        Err(e) => Err(ParseError::from_json(&e, text)),
    }
}

/// A member by exact name (the first when it repeats).
pub fn get<'v, 'a>(obj: &'v [Member<'a>], key: &str) -> Option<&'v Loose<'a>> {
    obj.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// A member by name, else by a dotted path through nested objects
/// (`request.headers.host`).
pub fn get_path<'v, 'a>(obj: &'v [Member<'a>], path: &str) -> Option<&'v Loose<'a>> {
    if let Some(v) = get(obj, path) {
        return Some(v);
    }
    let (first, rest) = path.split_once('.')?;
    match get(obj, first)? {
        Loose::Object(inner) => get_path(inner, rest),
        _ => None,
    }
}

/// A nested object, or `None` when absent or null.
pub fn object<'v, 'a>(
    field: &'static str,
    v: Option<&'v Loose<'a>>,
) -> Result<Option<&'v [Member<'a>]>, ParseError> {
    match v {
        None | Some(Loose::Null) => Ok(None),
        Some(Loose::Object(o)) => Ok(Some(o)),
        Some(other) => Err(ParseError::wrong_type(field, "an object", other)),
    }
}

/// A text value (a number is taken as its text); `""`, `-` and `null` are
/// absent.
pub fn text_of<'v>(
    field: &'static str,
    v: Option<&'v Loose<'_>>,
) -> Result<Option<Cow<'v, str>>, ParseError> {
    match v {
        None | Some(Loose::Null) => Ok(None),
        Some(Loose::Str(s)) => Ok(present(s).map(Cow::Borrowed)),
        Some(n @ (Loose::Int(_) | Loose::UInt(_) | Loose::Float(_))) => {
            Ok(n.clone().into_text().map(Cow::Owned))
        }
        Some(other) => Err(ParseError::wrong_type(field, "a string", other)),
    }
}

/// A header from a JSON headers object, by case-insensitive name; a
/// repeated header (an array) gives its first value.
pub fn header<'v>(headers: Option<&'v [Member<'_>]>, name: &str) -> Option<&'v str> {
    let v = headers?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)?;
    match v {
        Loose::Str(s) => present(s),
        Loose::Array(items) => items.iter().find_map(|i| match i {
            Loose::Str(s) => present(s),
            _ => None,
        }),
        _ => None,
    }
}

/// Where a JSON gateway format keeps each field, when the source's
/// `[source.fields]` does not say.
#[derive(Debug, Clone, Copy)]
pub struct JsonLayout {
    /// For each of our fields (`ts`, `method`, `path`, `query`, `status`,
    /// `bytes`, `latency_ms`, `ip`, `user_agent`, `host`, `authorization`,
    /// `client_id`, `request_id`), their names, tried in order; the first
    /// with a value wins.
    pub defaults: &'static [(&'static str, &'static [&'static str])],
    /// Names of a whole request line (`GET /x HTTP/1.1`), read when the
    /// method or the path is not found.
    pub request_line: &'static [&'static str],
    /// Milliseconds per unit of the latency field (nginx: seconds, 1000).
    pub latency_ms_per_unit: f64,
}

impl JsonLayout {
    /// Our field's value: the source's mapped name (exact, else a dotted
    /// path), else the first default with a value.
    fn lookup<'v, 'a>(
        &self,
        obj: &'v [Member<'a>],
        ctx: &LineContext<'_>,
        ours: &str,
    ) -> Option<&'v Loose<'a>> {
        if let Some(theirs) = ctx.options.fields.get(ours) {
            return get_path(obj, theirs);
        }
        let names = self
            .defaults
            .iter()
            .find(|(o, _)| *o == ours)
            .map_or(&[][..], |(_, t)| t);
        names.iter().filter_map(|n| get(obj, n)).find(|v| match v {
            Loose::Null => false,
            Loose::Str(s) => present(s).is_some(),
            _ => true,
        })
    }
}

/// A request from a JSON log line, its fields found through `layout` and
/// the source's `[source.fields]`. Errors name our field.
pub fn request_from_json<'v>(
    obj: &'v [Member<'v>],
    layout: &JsonLayout,
    ctx: &LineContext<'_>,
) -> Result<GatewayRequest<'v>, ParseError> {
    let find = |ours: &str| layout.lookup(obj, ctx, ours);
    let ts = timestamp_json("ts", find("ts"), Epoch::Guess)?
        .ok_or(ParseError::MissingField("ts".into()))?;
    let mut method = text_of("method", find("method"))?;
    let mut path = text_of("path", find("path"))?;
    if method.is_none() || path.is_none() {
        let line = layout
            .request_line
            .iter()
            .filter_map(|n| get(obj, n))
            .find_map(|v| match v {
                Loose::Str(s) => present(s),
                _ => None,
            });
        if let Some(line) = line {
            let (m, p) = request_line(line)?;
            method = method.or(Some(Cow::Borrowed(m)));
            path = path.or(Some(Cow::Borrowed(p)));
        }
    }
    let method = method.ok_or(ParseError::MissingField("method".into()))?;
    let mut path = path.ok_or(ParseError::MissingField("path".into()))?;
    if !path.contains('?') {
        if let Some(q) = text_of("query", find("query"))? {
            let q = q.strip_prefix('?').unwrap_or(&q);
            if !q.is_empty() {
                path = Cow::Owned(format!("{path}?{q}"));
            }
        }
    }
    let mut req = GatewayRequest::new(ts, method, path);
    req.status = as_status("status", number("status", find("status"))?)?;
    req.bytes = as_bytes("bytes", number("bytes", find("bytes"))?)?;
    req.latency_ms = as_latency_ms(
        "latency_ms",
        number("latency_ms", find("latency_ms"))?,
        layout.latency_ms_per_unit,
    )?;
    req.ip = text_of("ip", find("ip"))?;
    req.user_agent = text_of("user_agent", find("user_agent"))?;
    req.host = text_of("host", find("host"))?;
    req.authorization = text_of("authorization", find("authorization"))?;
    req.client_id = text_of("client_id", find("client_id"))?;
    req.request_id = text_of("request_id", find("request_id"))?;
    Ok(req)
}

// ---------------------------------------------------------------------------
// Text lines

/// One field of a space-separated access log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token<'a> {
    /// A word (may contain `key="quoted value"`).
    Bare(&'a str),
    /// `"..."`, without the quotes.
    Quoted(&'a str),
    /// `[...]`, without the brackets.
    Bracketed(&'a str),
}

impl<'a> Token<'a> {
    pub fn text(self) -> &'a str {
        match self {
            Token::Bare(s) | Token::Quoted(s) | Token::Bracketed(s) => s,
        }
    }
}

/// The end (exclusive, the closing byte's index) of a field opened at
/// `start` (just after the opening `open`): the first `close` that is not
/// backslash-escaped and is followed by a space or the end of the line (so
/// a stray quote inside an unescaped value does not end it).
fn closing(bytes: &[u8], start: usize, close: u8) -> Option<usize> {
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if close == b'"' => i += 2,
            c if c == close && matches!(bytes.get(i + 1), None | Some(b' ' | b'\t')) => {
                return Some(i)
            }
            _ => i += 1,
        }
    }
    None
}

/// Splits an access log line into its fields: words, `"quoted"` and
/// `[bracketed]` fields, separated by spaces.
pub fn split_tokens(line: &str) -> Result<Vec<Token<'_>>, ParseError> {
    let bytes = line.as_bytes();
    let mut out = Vec::with_capacity(16);
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b' ' | b'\t' => i += 1,
            open @ (b'"' | b'[') => {
                let close = if open == b'"' { b'"' } else { b']' };
                let end =
                    closing(bytes, i + 1, close).ok_or(ParseError::Format(if open == b'"' {
                        "unterminated quoted field".into()
                    } else {
                        "unterminated bracketed field".into()
                    }))?;
                let text = &line[i + 1..end];
                out.push(if open == b'"' {
                    Token::Quoted(text)
                } else {
                    Token::Bracketed(text)
                });
                i = end + 1;
            }
            _ => {
                let start = i;
                while i < bytes.len() && !matches!(bytes[i], b' ' | b'\t') {
                    if bytes[i] == b'"' {
                        // `key="a value"`; an unmatched quote is a character.
                        i = closing(bytes, i + 1, b'"').unwrap_or(i);
                    }
                    i += 1;
                }
                out.push(Token::Bare(&line[start..i]));
            }
        }
    }
    Ok(out)
}

/// `(method, target)` of a request line `METHOD target [PROTOCOL]`.
pub fn request_line(s: &str) -> Result<(&str, &str), ParseError> {
    let mut parts = s.split([' ', '\t']).filter(|p| !p.is_empty());
    let (Some(method), target, protocol, None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::Format(
            "request line is not `METHOD target [PROTOCOL]`".into(),
        ));
    };
    let target = match target.and_then(present) {
        Some(t) => t,
        None if method == "-" => {
            return Err(ParseError::Format("no HTTP request on this line".into()))
        }
        None => return Err(ParseError::MissingField("path".into())),
    };
    if protocol.is_some_and(|p| p != "-" && !p.starts_with("HTTP/")) {
        return Err(ParseError::Format(
            "request line is not `METHOD target [PROTOCOL]`".into(),
        ));
    }
    Ok((method, target))
}

/// Reads the fields some sites append to a text format:
/// - `key=value` (the value may be quoted) for the keys `rt` or
///   `request_time` (seconds), `latency_ms` or `duration_ms`, `host` or
///   `http_host`, `rid`, `request_id` or `x_request_id`, `client_id` or
///   `cid`, `auth`, `authorization` or `http_authorization`;
/// - a value that is a bearer token (`"Bearer eyJ..."`, a bare JWT): the
///   `Authorization` header;
/// - with `bare_seconds`, the first bare decimal number (`0.005`): nginx's
///   `$request_time` in seconds.
///
/// Anything else (`$http_x_forwarded_for`, upstream times, ...) is skipped.
pub fn read_extras<'a>(
    tokens: &[Token<'a>],
    req: &mut GatewayRequest<'a>,
    bare_seconds: bool,
) -> Result<(), ParseError> {
    for t in tokens {
        let text = t.text();
        if let Some((key, value)) = text.split_once('=') {
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            let key = key.to_ascii_lowercase();
            let handled = match key.as_str() {
                "rt" | "request_time" => {
                    req.latency_ms =
                        as_latency_ms("latency_ms", number_text("latency_ms", value)?, 1000.0)?;
                    true
                }
                "latency_ms" | "duration_ms" => {
                    req.latency_ms =
                        as_latency_ms("latency_ms", number_text("latency_ms", value)?, 1.0)?;
                    true
                }
                "host" | "http_host" => {
                    req.host = present(value).map(Cow::Borrowed);
                    true
                }
                "rid" | "request_id" | "x_request_id" => {
                    req.request_id = present(value).map(Cow::Borrowed);
                    true
                }
                "client_id" | "cid" => {
                    req.client_id = present(value).map(Cow::Borrowed);
                    true
                }
                "auth" | "authorization" | "http_authorization" => {
                    req.authorization = present(value).map(Cow::Borrowed);
                    true
                }
                _ => false,
            };
            if handled {
                continue;
            }
        }
        if req.authorization.is_none() && bearer_token(text).is_some() {
            req.authorization = Some(Cow::Borrowed(text));
        } else if bare_seconds
            && req.latency_ms.is_none()
            && matches!(t, Token::Bare(_))
            && text.contains('.')
            && text.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        {
            req.latency_ms = as_latency_ms("latency_ms", number_text("latency_ms", text)?, 1000.0)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_split_quotes_and_brackets() {
        let t = split_tokens(
            r#"1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.1" 200 k="a b" "x "y"z""#,
        )
        .unwrap();
        assert_eq!(t[3], Token::Bracketed("10/Oct/2000:13:55:36 -0700"));
        assert_eq!(t[4], Token::Quoted("GET / HTTP/1.1"));
        assert_eq!(t[6], Token::Bare(r#"k="a b""#));
        assert_eq!(t[7], Token::Quoted(r#"x "y"z"#));
        assert!(split_tokens(r#"a "b c"#).is_err());
    }

    #[test]
    fn bearer_values() {
        let jwt = "eyJhbGciOiJub25lIn0.eyJqdGkiOiIxIn0.c2lnbmF0dXJl";
        assert_eq!(bearer_token(&format!("Bearer {jwt}")), Some(jwt));
        assert_eq!(bearer_token(&format!("dpop {jwt}")), Some(jwt));
        assert_eq!(bearer_token(jwt), Some(jwt));
        assert_eq!(bearer_token("REDACTED"), None);
        assert_eq!(bearer_token("Bearer ***REDACTED***"), None);
        assert_eq!(bearer_token("Basic dXNlcjpwYXNzd29yZA=="), None);
        assert_eq!(bearer_token("Bearer short"), None);
    }

    #[test]
    fn hosts_ips_and_urls() {
        assert_eq!(
            host_name("FHIR.North.example.org:443").as_deref(),
            Some("fhir.north.example.org")
        );
        assert_eq!(host_name("[::1]:8080").as_deref(), Some("::1"));
        assert_eq!(client_ip("10.0.0.1:5555"), Some("10.0.0.1"));
        assert_eq!(client_ip("203.0.113.9, 10.0.0.1"), Some("203.0.113.9"));
        assert_eq!(client_ip("2001:db8::1"), Some("2001:db8::1"));
        assert_eq!(
            split_absolute("https://u:p@h.example:8443/fhir/Patient?x=1"),
            (Some("h.example:8443"), "/fhir/Patient?x=1")
        );
        assert_eq!(split_absolute("http://h"), (Some("h"), "/"));
        assert_eq!(
            split_absolute("/authorize?redirect_uri=https://app/cb"),
            (None, "/authorize?redirect_uri=https://app/cb")
        );
        assert_eq!(
            query_param("a=1&scope=openid+patient%2FObservation.rs&scope=x", "scope").as_deref(),
            Some("openid patient/Observation.rs")
        );
    }

    #[test]
    fn timestamps() {
        let want = Timestamp::parse_rfc3339("2000-10-10T20:55:36Z").unwrap();
        assert_eq!(
            timestamp_text("ts", "10/Oct/2000:13:55:36 -0700", Epoch::Guess),
            Ok(want)
        );
        assert_eq!(timestamp_text("ts", "971211336", Epoch::Guess), Ok(want));
        assert_eq!(timestamp_text("ts", "971211336000", Epoch::Guess), Ok(want));
        assert_eq!(
            timestamp_text("ts", "971211336.000", Epoch::Guess),
            Ok(want)
        );
        assert_eq!(
            timestamp_json("ts", Some(&Loose::Int(971211336000)), Epoch::Millis),
            Ok(Some(want))
        );
        assert!(timestamp_text("ts", "yesterday", Epoch::Guess).is_err());
        assert!(timestamp_text("ts", "1e300", Epoch::Guess).is_err());
    }
}
