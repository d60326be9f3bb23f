//! The canonical format: scopewatch's own NDJSON, one JSON object per line,
//! `"stream": "auth"` or `"stream": "access"`, with the columns of the lake.
//! It is what the HTTP push endpoint takes and what a custom exporter should
//! write.
//!
//! Raw secrets and ids are accepted and reduced on the way in; nothing raw is
//! kept:
//! - `token` (a raw bearer token or JWT, `Bearer ` prefix allowed) becomes
//!   `token_id` (the JWT's `jti`, else a hash), and a JWT's claims fill
//!   `client_id`, the granted scopes, `user` (from `sub`), `patient`,
//!   `expires_at` (from `exp`) and, on access lines, `token_tenant` (from
//!   `iss`, named as the source names tenants: `tenant_map`, else a URL's
//!   last segment, e.g. the Keycloak realm) when the line does not give
//!   them;
//!   `refresh_token` and `parent_refresh_token` become `refresh_token_id` and
//!   `parent_token_id` the same way. Already reduced ids (`token_id`,
//!   `refresh_token_id`, `parent_token_id`) pass through unchanged; when a
//!   line has both, the raw token wins (so every source computes the same id);
//! - `user`, `patient` and `encounter` are raw ids (a string or an integer)
//!   and become keyed pseudonyms;
//! - access `path` is the raw request target; its ids are pseudonymised;
//! - auth `error` is free text and is scrubbed like a dead letter.
//!
//! Field types: `ts` and `expires_at` are RFC 3339 strings or epoch
//! milliseconds (a number); scopes are a space-separated string or an array
//! of strings, where an absent field (or `null`) means "the source does not
//! record them" and an empty one means "none"; `status` and `bytes` are
//! integers, `latency_ms` a number. `tenant` and `env` fall back to the
//! source's configured defaults. Fields not listed here are ignored (so
//! producers may add their own; note that a misspelt field is ignored too).
//! Blank lines are skipped. `event_id` and the lineage columns are the
//! pipeline's, never the line's.
//!
//! An auth event (`kind`: `authorize`, `token`, `refresh`, `revoke`,
//! `introspect`, `consent_grant`, `consent_withdraw`, `client_credentials`,
//! `token_exchange`, `logout`, `error`; `outcome`: `success` or `failure`,
//! default `success` unless `error` is present):
//!
//! ```json
//! {"stream":"auth","ts":"2026-11-23T10:00:00.123Z","tenant":"north","env":"prod","kind":"token","outcome":"success","client_id":"cardio-app","app_version":"2.4.1","user":"kc-user-42","session_id":"6f1c2d0e-5b7a-4c1e-9d3f-2a8b7c6d5e4f","patient":"pat-123","encounter":"enc-9","scopes_requested":"launch/patient openid fhirUser patient/Observation.rs offline_access","scopes_granted":["launch/patient","openid","patient/Observation.rs","offline_access"],"grant_type":"authorization_code","token":"eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJqdGkiOiJhdC03ZjNhOWMiLCJjbGllbnRfaWQiOiJjYXJkaW8tYXBwIiwic3ViIjoia2MtdXNlci00MiIsInNjb3BlIjoibGF1bmNoL3BhdGllbnQgb3BlbmlkIHBhdGllbnQvT2JzZXJ2YXRpb24ucnMiLCJwYXRpZW50IjoicGF0LTEyMyIsImlzcyI6Imh0dHBzOi8vYXV0aC5leGFtcGxlLm9yZy9yZWFsbXMvbm9ydGgiLCJhdWQiOiJodHRwczovL2ZoaXIuZXhhbXBsZS5vcmcvcjQiLCJleHAiOjE3OTU0MzE2MDAsImlhdCI6MTc5NTQyODAwMH0.c2lnbmF0dXJl","refresh_token":"8xLOxBtZp8QZ3m7s0cVq2yW4kR9dE1fJ","expires_at":"2026-11-23T11:00:00Z","ip":"10.1.2.3","user_agent":"CardioApp/2.4.1 (iOS 18.1)"}
//! ```
//!
//! An access event (`outcome`: `allowed`, `denied` or `error`, default from
//! `status`; `scopes` are the token's granted scopes, used to judge whether
//! they covered the call; `expires_at` is when the token used expires and
//! `token_tenant` the tenant whose authorization server issued it, taken as
//! written):
//!
//! ```json
//! {"stream":"access","ts":1795428060250,"tenant":"north","env":"prod","client_id":"cardio-app","token":"Bearer eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJqdGkiOiJhdC03ZjNhOWMiLCJjbGllbnRfaWQiOiJjYXJkaW8tYXBwIiwic3ViIjoia2MtdXNlci00MiIsInNjb3BlIjoibGF1bmNoL3BhdGllbnQgb3BlbmlkIHBhdGllbnQvT2JzZXJ2YXRpb24ucnMiLCJwYXRpZW50IjoicGF0LTEyMyIsImlzcyI6Imh0dHBzOi8vYXV0aC5leGFtcGxlLm9yZy9yZWFsbXMvbm9ydGgiLCJhdWQiOiJodHRwczovL2ZoaXIuZXhhbXBsZS5vcmcvcjQiLCJleHAiOjE3OTU0MzE2MDAsImlhdCI6MTc5NTQyODAwMH0.c2lnbmF0dXJl","method":"GET","path":"/fhir/r4/Observation?patient=pat-123&category=vital-signs&_count=50","status":200,"bytes":5120,"latency_ms":42.5,"scopes":"launch/patient openid patient/Observation.rs","ip":"10.1.2.3","user_agent":"CardioApp/2.4.1 (iOS 18.1)"}
//! ```

use std::borrow::Cow;
use std::sync::Arc;

use serde::Deserialize;

use scopewatch_model::events::{
    AccessEvent, AccessOutcome, AuthEvent, AuthKind, AuthOutcome, Env, Timestamp,
};
use scopewatch_model::scope::Scope;

use crate::adapter::{
    enrich_access, json_kind_at, line_text, parse_scopes_cached, Adapter, LineContext, Loose,
    ParseError, Parsed, ValueHint,
};
use crate::privacy::{IdKind, TokenInfo};

/// The canonical NDJSON adapter (`format = "scopewatch"`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Canonical;

impl Canonical {
    pub const NAME: &'static str = "scopewatch";
}

/// Every field the format reads; each is `Loose` so a wrong type is
/// reported by field name without quoting the value.
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow, default)]
    stream: Option<Loose<'a>>,
    #[serde(borrow, default)]
    ts: Option<Loose<'a>>,
    #[serde(borrow, default)]
    tenant: Option<Loose<'a>>,
    #[serde(borrow, default)]
    env: Option<Loose<'a>>,
    #[serde(borrow, default)]
    kind: Option<Loose<'a>>,
    #[serde(borrow, default)]
    outcome: Option<Loose<'a>>,
    #[serde(borrow, default)]
    error: Option<Loose<'a>>,
    #[serde(borrow, default)]
    client_id: Option<Loose<'a>>,
    #[serde(borrow, default)]
    app_version: Option<Loose<'a>>,
    #[serde(borrow, default)]
    user: Option<Loose<'a>>,
    #[serde(borrow, default)]
    session_id: Option<Loose<'a>>,
    #[serde(borrow, default)]
    patient: Option<Loose<'a>>,
    #[serde(borrow, default)]
    encounter: Option<Loose<'a>>,
    #[serde(borrow, default)]
    scopes_requested: Option<Loose<'a>>,
    #[serde(borrow, default)]
    scopes_granted: Option<Loose<'a>>,
    #[serde(borrow, default)]
    scopes: Option<Loose<'a>>,
    #[serde(borrow, default)]
    grant_type: Option<Loose<'a>>,
    #[serde(borrow, default)]
    token: Option<Loose<'a>>,
    #[serde(borrow, default)]
    token_id: Option<Loose<'a>>,
    #[serde(borrow, default)]
    refresh_token: Option<Loose<'a>>,
    #[serde(borrow, default)]
    refresh_token_id: Option<Loose<'a>>,
    #[serde(borrow, default)]
    parent_refresh_token: Option<Loose<'a>>,
    #[serde(borrow, default)]
    parent_token_id: Option<Loose<'a>>,
    #[serde(borrow, default)]
    expires_at: Option<Loose<'a>>,
    #[serde(borrow, default)]
    token_tenant: Option<Loose<'a>>,
    #[serde(borrow, default)]
    ip: Option<Loose<'a>>,
    #[serde(borrow, default)]
    user_agent: Option<Loose<'a>>,
    #[serde(borrow, default)]
    method: Option<Loose<'a>>,
    #[serde(borrow, default)]
    path: Option<Loose<'a>>,
    #[serde(borrow, default)]
    status: Option<Loose<'a>>,
    #[serde(borrow, default)]
    bytes: Option<Loose<'a>>,
    #[serde(borrow, default)]
    latency_ms: Option<Loose<'a>>,
}

impl Adapter for Canonical {
    fn name(&self) -> &'static str {
        Canonical::NAME
    }

    fn parse_line(
        &self,
        line: &[u8],
        ctx: &LineContext<'_>,
        out: &mut Vec<Parsed>,
    ) -> Result<(), ParseError> {
        let text = line_text(line)?;
        let text = text.strip_suffix('\r').unwrap_or(text);
        let start = text.trim_start();
        if start.is_empty() {
            return Ok(());
        }
        if !start.starts_with('{') {
            return Err(ParseError::NotAnObject(json_kind_at(start)));
        }
        let mut raw: Line<'_> =
            serde_json::from_str(text).map_err(|e| ParseError::from_json(&e, text))?;
        let stream = required_text("stream", raw.stream.take())?;
        match &*stream {
            "auth" => out.push(Parsed::Auth(auth(raw, ctx)?)),
            "access" => out.push(Parsed::Access(access(raw, ctx)?)),
            other => return Err(ParseError::UnknownStream(ValueHint::of(other))),
        }
        Ok(())
    }
}

/// The columns both streams share.
struct Common {
    ts: Timestamp,
    tenant: String,
    env: Env,
}

fn common(raw: &mut Line<'_>, ctx: &LineContext<'_>) -> Result<Common, ParseError> {
    let ts = timestamp("ts", raw.ts.take())?.ok_or(ParseError::MissingField("ts".into()))?;
    let tenant = match text("tenant", raw.tenant.take())? {
        Some(t) => t.into_owned(),
        None => ctx
            .tenant
            .map(str::to_string)
            .ok_or(ParseError::MissingField("tenant".into()))?,
    };
    let env = match text("env", raw.env.take())? {
        Some(e) => Env::parse(&e.to_ascii_lowercase())
            .ok_or_else(|| ParseError::bad_value("env", "expected `prod`, `sandbox` or `test`"))?,
        None => ctx.env,
    };
    Ok(Common { ts, tenant, env })
}

/// The access token's id and what its claims tell, from a raw `token`, or
/// a given `token_id`.
fn token(
    raw_token: Option<Loose<'_>>,
    given_id: Option<Loose<'_>>,
    ctx: &LineContext<'_>,
) -> Result<(Option<String>, Option<Arc<TokenInfo>>), ParseError> {
    let given_id = text("token_id", given_id)?;
    Ok(match text("token", raw_token)? {
        Some(t) => {
            let info = ctx.privacy.token_info(&t);
            (Some(info.id.clone()), Some(info))
        }
        None => (given_id.map(Cow::into_owned), None),
    })
}

/// A secondary token (refresh, parent) reduced to its id.
fn token_ref(
    raw_field: &'static str,
    raw_token: Option<Loose<'_>>,
    id_field: &'static str,
    given_id: Option<Loose<'_>>,
    ctx: &LineContext<'_>,
) -> Result<Option<String>, ParseError> {
    let given_id = text(id_field, given_id)?;
    Ok(match text(raw_field, raw_token)? {
        Some(t) => Some(ctx.privacy.token_id(&t)),
        None => given_id.map(Cow::into_owned),
    })
}

fn auth(mut raw: Line<'_>, ctx: &LineContext<'_>) -> Result<AuthEvent, ParseError> {
    let c = common(&mut raw, ctx)?;
    let kind_text = required_text("kind", raw.kind.take())?;
    let kind = AuthKind::parse(&kind_text)
        .or_else(|| AuthKind::parse(&kind_text.to_ascii_lowercase()))
        .ok_or_else(|| ParseError::UnknownKind(ValueHint::of(&kind_text)))?;
    let error = text("error", raw.error.take())?;
    let outcome = match text("outcome", raw.outcome.take())? {
        Some(o) => AuthOutcome::parse(&o.to_ascii_lowercase())
            .ok_or_else(|| ParseError::bad_value("outcome", "expected `success` or `failure`"))?,
        None if error.is_some() => AuthOutcome::Failure,
        None => AuthOutcome::Success,
    };
    let (token_id, info) = token(raw.token.take(), raw.token_id.take(), ctx)?;
    let info = info.as_deref();
    let refresh_token_id = token_ref(
        "refresh_token",
        raw.refresh_token.take(),
        "refresh_token_id",
        raw.refresh_token_id.take(),
        ctx,
    )?;
    let parent_token_id = token_ref(
        "parent_refresh_token",
        raw.parent_refresh_token.take(),
        "parent_token_id",
        raw.parent_token_id.take(),
        ctx,
    )?;
    let scopes_granted = match scope_list("scopes_granted", raw.scopes_granted.take())? {
        Some(s) => Some(s),
        None => info.and_then(|i| i.scope.as_deref()).map(split_scopes),
    };
    let expires_at = match timestamp("expires_at", raw.expires_at.take())? {
        Some(t) => Some(t),
        None => info.and_then(TokenInfo::expires_at),
    };
    let privacy = ctx.privacy;
    Ok(AuthEvent {
        event_id: ctx.event_id.to_string(),
        ts: c.ts,
        tenant: c.tenant,
        env: c.env,
        kind,
        outcome,
        error: error.map(|e| privacy.redact_text(&e)),
        client_id: owned(text("client_id", raw.client_id.take())?)
            .or_else(|| info.and_then(|i| i.client_id.clone())),
        app_version: owned(text("app_version", raw.app_version.take())?)
            .or_else(|| version_from_user_agent(ctx, raw.user_agent.as_ref())),
        user: match id_text("user", raw.user.take())? {
            Some(u) => Some(privacy.pseudonym(IdKind::User, &u)),
            None => info.and_then(|i| i.user.clone()),
        },
        session_id: owned(id_text("session_id", raw.session_id.take())?),
        patient: match id_text("patient", raw.patient.take())? {
            Some(p) => Some(privacy.pseudonym(IdKind::Patient, &p)),
            None => info.and_then(|i| i.patient.clone()),
        },
        encounter: id_text("encounter", raw.encounter.take())?
            .map(|e| privacy.pseudonym(IdKind::Encounter, &e)),
        scopes_requested: scope_list("scopes_requested", raw.scopes_requested.take())?,
        scopes_granted,
        grant_type: owned(text("grant_type", raw.grant_type.take())?),
        token_id,
        refresh_token_id,
        parent_token_id,
        expires_at,
        ip: owned(text("ip", raw.ip.take())?),
        user_agent: owned(text("user_agent", raw.user_agent.take())?),
        source: ctx.source.to_string(),
        source_file: ctx.source_file.map(str::to_string),
        source_offset: ctx.offset,
    })
}

fn access(mut raw: Line<'_>, ctx: &LineContext<'_>) -> Result<AccessEvent, ParseError> {
    let c = common(&mut raw, ctx)?;
    let method = required_text("method", raw.method.take())?.to_ascii_uppercase();
    let path = required_text("path", raw.path.take())?;
    let status = match raw.status.take() {
        None => None,
        Some(v) => Some(
            u16::try_from(integer("status", v)?)
                .map_err(|_| ParseError::bad_value("status", "out of range"))?,
        ),
    };
    let bytes = match raw.bytes.take() {
        None => None,
        Some(v) => Some(
            u64::try_from(integer("bytes", v)?)
                .map_err(|_| ParseError::bad_value("bytes", "negative"))?,
        ),
    };
    let latency_ms = match raw.latency_ms.take() {
        None => None,
        Some(v) => match v.as_f64() {
            Some(f) if f.is_finite() && f >= 0.0 => Some(f),
            Some(_) => return Err(ParseError::bad_value("latency_ms", "negative")),
            None => return Err(ParseError::wrong_type("latency_ms", "a number", &v)),
        },
    };
    let outcome = match text("outcome", raw.outcome.take())? {
        Some(o) => AccessOutcome::parse(&o.to_ascii_lowercase()).ok_or_else(|| {
            ParseError::bad_value("outcome", "expected `allowed`, `denied` or `error`")
        })?,
        None => status
            .map(AccessOutcome::from_status)
            .ok_or(ParseError::MissingEither("status", "outcome"))?,
    };
    let (token_id, info) = token(raw.token.take(), raw.token_id.take(), ctx)?;
    let info = info.as_deref();
    let line_scopes = granted_scopes(raw.scopes.take())?;
    let granted: Option<&[Scope]> = match &line_scopes {
        Some(s) => Some(s),
        None => info.and_then(|i| i.scopes.as_deref()),
    };
    let e = enrich_access(&method, &path, granted, ctx);
    let privacy = ctx.privacy;
    let patient = match id_text("patient", raw.patient.take())? {
        Some(p) => Some(privacy.pseudonym(IdKind::Patient, &p)),
        None => e.patient.or_else(|| info.and_then(|i| i.patient.clone())),
    };
    let expires_at = match timestamp("expires_at", raw.expires_at.take())? {
        Some(t) => Some(t),
        None => info.and_then(TokenInfo::expires_at),
    };
    let token_tenant = match text("token_tenant", raw.token_tenant.take())? {
        Some(t) => Some(t.into_owned()),
        None => info.and_then(|i| i.tenant(ctx.options)),
    };
    Ok(AccessEvent {
        event_id: ctx.event_id.to_string(),
        ts: c.ts,
        tenant: c.tenant,
        env: c.env,
        client_id: owned(text("client_id", raw.client_id.take())?)
            .or_else(|| info.and_then(|i| i.client_id.clone())),
        app_version: owned(text("app_version", raw.app_version.take())?)
            .or_else(|| version_from_user_agent(ctx, raw.user_agent.as_ref())),
        user: match id_text("user", raw.user.take())? {
            Some(u) => Some(privacy.pseudonym(IdKind::User, &u)),
            None => info.and_then(|i| i.user.clone()),
        },
        token_id,
        expires_at,
        token_tenant,
        method,
        path: e.path,
        interaction: e.interaction,
        resource_type: e.resource_type,
        compartment: e.compartment,
        patient,
        required: e.required,
        granted_covered: e.granted_covered,
        status,
        outcome,
        bytes,
        latency_ms,
        ip: owned(text("ip", raw.ip.take())?),
        user_agent: owned(text("user_agent", raw.user_agent.take())?),
        source: ctx.source.to_string(),
        source_file: ctx.source_file.map(str::to_string),
        source_offset: ctx.offset,
    })
}

/// The version a `user_agent:` source setting finds in the line's
/// User-Agent.
fn version_from_user_agent(
    ctx: &LineContext<'_>,
    user_agent: Option<&Loose<'_>>,
) -> Option<String> {
    let from = ctx.options.app_version_from.as_ref()?;
    match user_agent? {
        Loose::Str(ua) => from.from_user_agent(ua),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Field readers

fn owned(v: Option<Cow<'_, str>>) -> Option<String> {
    v.map(Cow::into_owned)
}

/// A string field; `""` counts as absent.
fn text<'a>(field: &'static str, v: Option<Loose<'a>>) -> Result<Option<Cow<'a, str>>, ParseError> {
    match v {
        None => Ok(None),
        Some(Loose::Str(s)) => Ok((!s.is_empty()).then_some(s)),
        Some(other) => Err(ParseError::wrong_type(field, "a string", &other)),
    }
}

fn required_text<'a>(
    field: &'static str,
    v: Option<Loose<'a>>,
) -> Result<Cow<'a, str>, ParseError> {
    text(field, v)?.ok_or(ParseError::MissingField(field.into()))
}

/// An id: a string or an integer.
fn id_text<'a>(
    field: &'static str,
    v: Option<Loose<'a>>,
) -> Result<Option<Cow<'a, str>>, ParseError> {
    match v {
        None => Ok(None),
        Some(Loose::Str(s)) => Ok((!s.is_empty()).then_some(s)),
        Some(Loose::Int(n)) => Ok(Some(Cow::Owned(n.to_string()))),
        Some(Loose::UInt(n)) => Ok(Some(Cow::Owned(n.to_string()))),
        Some(other) => Err(ParseError::wrong_type(field, "a string", &other)),
    }
}

fn integer(field: &'static str, v: Loose<'_>) -> Result<i64, ParseError> {
    match v {
        Loose::Int(n) => Ok(n),
        Loose::UInt(_) => Err(ParseError::bad_value(field, "out of range")),
        Loose::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(f as i64),
        Loose::Float(_) => Err(ParseError::bad_value(field, "not an integer")),
        other => Err(ParseError::wrong_type(field, "a number", &other)),
    }
}

/// RFC 3339 text or epoch milliseconds.
fn timestamp(field: &'static str, v: Option<Loose<'_>>) -> Result<Option<Timestamp>, ParseError> {
    let micros = match v {
        None => return Ok(None),
        Some(Loose::Str(s)) => {
            return Timestamp::parse_rfc3339(s.trim())
                .map(Some)
                .ok_or_else(|| ParseError::bad_value(field, "not an RFC 3339 timestamp"));
        }
        Some(Loose::Int(ms)) => ms.checked_mul(1_000),
        Some(Loose::UInt(_)) => None,
        Some(Loose::Float(ms)) if ms.is_finite() && ms.abs() < 9.0e15 => {
            Some((ms * 1_000.0).round() as i64)
        }
        Some(Loose::Float(_)) => None,
        Some(other) => {
            return Err(ParseError::wrong_type(
                field,
                "an RFC 3339 string or epoch milliseconds",
                &other,
            ))
        }
    };
    // Years 0000..=9999: what every engine reading the lake can represent.
    const MIN_US: i64 = -62_167_219_200_000_000;
    const MAX_US: i64 = 253_402_300_799_999_999;
    match micros {
        Some(us) if (MIN_US..=MAX_US).contains(&us) => Ok(Some(Timestamp(us))),
        _ => Err(ParseError::bad_value(field, "out of range")),
    }
}

/// The access line's `scopes`, parsed (a string form through the shared cache).
fn granted_scopes(v: Option<Loose<'_>>) -> Result<Option<ScopeList>, ParseError> {
    Ok(match v {
        Some(Loose::Str(s)) => Some(ScopeList::Shared(parse_scopes_cached(&s))),
        other => scope_list("scopes", other)?
            .map(|list| ScopeList::Owned(list.iter().map(|s| Scope::parse(s)).collect())),
    })
}

/// Parsed scopes, shared from the cache or parsed for this line.
enum ScopeList {
    Shared(Arc<[Scope]>),
    Owned(Vec<Scope>),
}

impl std::ops::Deref for ScopeList {
    type Target = [Scope];
    fn deref(&self) -> &[Scope] {
        match self {
            ScopeList::Shared(s) => s,
            ScopeList::Owned(s) => s,
        }
    }
}

fn split_scopes(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

/// A space-separated string or an array of strings; `null`/absent is `None`.
fn scope_list(
    field: &'static str,
    v: Option<Loose<'_>>,
) -> Result<Option<Vec<String>>, ParseError> {
    match v {
        None => Ok(None),
        Some(Loose::Str(s)) => Ok(Some(split_scopes(&s))),
        Some(Loose::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Loose::Str(s) => out.extend(s.split_whitespace().map(str::to_string)),
                    other => {
                        return Err(ParseError::wrong_type(
                            field,
                            "a string or an array of strings",
                            &other,
                        ))
                    }
                }
            }
            Ok(Some(out))
        }
        Some(other) => Err(ParseError::wrong_type(
            field,
            "a string or an array of strings",
            &other,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(
            timestamp("ts", Some(Loose::Int(1_795_428_000_123))).unwrap(),
            Some(Timestamp(1_795_428_000_123_000))
        );
        assert_eq!(
            timestamp("ts", Some(Loose::Str("2026-11-23T10:00:00Z".into()))).unwrap(),
            Some(Timestamp(1_795_428_000_000_000))
        );
        assert!(timestamp("ts", Some(Loose::Int(i64::MAX))).is_err());
        assert!(timestamp("ts", Some(Loose::Str("yesterday".into()))).is_err());
    }

    #[test]
    fn scope_lists() {
        assert_eq!(scope_list("s", None).unwrap(), None);
        assert_eq!(
            scope_list("s", Some(Loose::Str("".into()))).unwrap(),
            Some(vec![])
        );
        assert_eq!(
            scope_list(
                "s",
                Some(Loose::Array(vec![
                    Loose::Str("a b".into()),
                    Loose::Str("c".into())
                ]))
            )
            .unwrap(),
            Some(vec!["a".into(), "b".into(), "c".into()])
        );
        assert!(scope_list("s", Some(Loose::Int(1))).is_err());
    }
}
