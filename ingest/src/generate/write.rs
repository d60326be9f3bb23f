//! The generator's records, written in each supported log format. Each
//! writer produces what the real system writes (see the adapters in
//! `crate::formats` for what is read back); raw ids and bearer tokens are in
//! these logs on purpose: ingest must reduce them.

use std::fmt::Write as _;

use base64::Engine as _;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// One thing the ecosystem did, before it is written in a format.
#[derive(Debug, Clone)]
pub enum Record {
    /// A browser hitting the identity provider's authorize endpoint (seen
    /// by the gateway in front of it).
    Authorize {
        ts_ms: i64,
        tenant: String,
        client_id: String,
        scopes: Vec<String>,
        ip: String,
        user_agent: String,
        state: String,
    },
    /// An identity-provider event (Keycloak event types).
    Idp(IdpEvent),
    /// A FHIR API call seen at a gateway.
    Call(Call),
}

impl Record {
    pub fn ts_ms(&self) -> i64 {
        match self {
            Record::Authorize { ts_ms, .. } => *ts_ms,
            Record::Idp(e) => e.ts_ms,
            Record::Call(c) => c.ts_ms,
        }
    }
}

#[derive(Debug, Clone)]
pub struct IdpEvent {
    pub ts_ms: i64,
    pub tenant: String,
    /// Keycloak event type, e.g. `CODE_TO_TOKEN`, `REFRESH_TOKEN_ERROR`.
    pub kind: &'static str,
    pub client_id: String,
    pub user: Option<String>,
    pub session: Option<String>,
    pub ip: String,
    /// Keycloak details in order (`token_id`, `refresh_token_id`, `scope`, ...).
    pub details: Vec<(&'static str, String)>,
    /// `error` code of an `_ERROR` event.
    pub error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Call {
    pub ts_ms: i64,
    pub tenant: String,
    pub method: &'static str,
    /// Path and query, raw ids included.
    pub target: String,
    pub status: u16,
    pub bytes: u64,
    pub latency_ms: f64,
    pub ip: String,
    pub user_agent: String,
    /// The compact JWT sent as `Authorization: Bearer`.
    pub jwt: std::sync::Arc<str>,
    /// For FHIR AuditEvent output (BALP): what the server knows.
    pub client_id: String,
    pub user: Option<String>,
    pub jti: String,
    pub request_id: String,
    /// The FHIR resource the call is about, e.g. `Patient/123` (AuditEvent).
    pub what: Option<String>,
    /// restful-interaction code (AuditEvent subtype), e.g. `search-type`.
    pub interaction_code: &'static str,
}

/// The claims of a generated access token.
#[derive(Debug, Clone)]
pub struct Claims<'a> {
    pub jti: &'a str,
    pub client_id: &'a str,
    pub scope: &'a str,
    pub sub: Option<&'a str>,
    pub patient: Option<&'a str>,
    pub iss: &'a str,
    pub aud: &'a str,
    pub iat: i64,
    pub exp: i64,
    pub software_version: &'a str,
}

/// A compact JWS with these claims and a fake signature (scopewatch reads
/// claims without verifying).
pub fn jwt(c: &Claims<'_>) -> String {
    let header = r#"{"alg":"RS256","typ":"JWT","kid":"gen"}"#;
    let mut payload = serde_json::json!({
        "jti": c.jti, "client_id": c.client_id, "azp": c.client_id, "scope": c.scope,
        "iss": c.iss, "aud": c.aud, "iat": c.iat, "exp": c.exp,
        "software_version": c.software_version,
    });
    if let Some(sub) = c.sub {
        payload["sub"] = sub.into();
    }
    if let Some(p) = c.patient {
        payload["patient"] = p.into();
    }
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.{}",
        b64.encode(header),
        b64.encode(payload.to_string()),
        b64.encode(format!("sig-{}", c.jti))
    )
}

fn rfc3339(ts_ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ts_ms) * 1_000_000)
        .expect("generated times are in range")
        .format(&Rfc3339)
        .expect("formats")
}

/// `2026-11-23 10:00:00,123` as JBoss logging prints it.
fn jboss_time(ts_ms: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ts_ms) * 1_000_000)
        .expect("generated times are in range");
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02},{:03}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// The authorize request's target, as the browser sent it.
pub fn authorize_target(tenant: &str, client_id: &str, scopes: &[String], state: &str) -> String {
    // Everything but RFC 3986's unreserved characters, as browsers do.
    const QUERY: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    let enc = |s: &str| percent_encoding::utf8_percent_encode(s, QUERY).to_string();
    format!(
        "/realms/{tenant}/protocol/openid-connect/auth?response_type=code&client_id={}&redirect_uri={}&scope={}&state={}&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256",
        enc(client_id),
        enc(&format!("https://{client_id}.example.com/callback")),
        enc(&scopes.join(" ")),
        enc(state),
    )
}

/// Keycloak 26.x JBoss-logging event line (quoted values).
pub fn keycloak(e: &IdpEvent, realm_id: &str) -> String {
    let level = if e.error.is_some() { "WARN " } else { "DEBUG" };
    let mut line = format!(
        "{} {level} [org.keycloak.events] (executor-thread-{}) type=\"{}\", realmId=\"{realm_id}\", realmName=\"{}\", clientId=\"{}\"",
        jboss_time(e.ts_ms),
        e.ts_ms % 16,
        e.kind,
        e.tenant,
        e.client_id
    );
    if let Some(u) = &e.user {
        let _ = write!(line, ", userId=\"{u}\"");
    }
    if let Some(s) = &e.session {
        let _ = write!(line, ", sessionId=\"{s}\"");
    }
    let _ = write!(line, ", ipAddress=\"{}\"", e.ip);
    if let Some(err) = &e.error {
        let _ = write!(line, ", error=\"{err}\"");
    }
    for (k, v) in &e.details {
        let _ = write!(line, ", {k}=\"{}\"", v.replace('"', "\\\""));
    }
    line
}

/// Our canonical NDJSON (the `scopewatch` format), for any record.
pub fn canonical(r: &Record) -> String {
    match r {
        Record::Authorize {
            ts_ms,
            tenant,
            client_id,
            scopes,
            ip,
            user_agent,
            ..
        } => serde_json::json!({
            "stream": "auth", "ts": ts_ms, "tenant": tenant, "kind": "authorize",
            "client_id": client_id, "scopes_requested": scopes.join(" "),
            "ip": ip, "user_agent": user_agent,
        })
        .to_string(),
        Record::Idp(e) => {
            let kind = match e.kind.trim_end_matches("_ERROR") {
                "LOGIN" => "authorize",
                "CODE_TO_TOKEN" => "token",
                "REFRESH_TOKEN" => "refresh",
                "CLIENT_LOGIN" => "client_credentials",
                "REVOKE_GRANT" => "revoke",
                "LOGOUT" => "logout",
                "INTROSPECT_TOKEN" => "introspect",
                "TOKEN_EXCHANGE" => "token_exchange",
                _ => "error",
            };
            let detail = |k: &str| e.details.iter().find(|(d, _)| *d == k).map(|(_, v)| v);
            let mut v = serde_json::json!({
                "stream": "auth", "ts": e.ts_ms, "tenant": e.tenant, "kind": kind,
                "outcome": if e.error.is_some() { "failure" } else { "success" },
                "client_id": e.client_id, "ip": e.ip,
            });
            let o = v.as_object_mut().expect("object");
            if let Some(u) = &e.user {
                o.insert("user".into(), u.as_str().into());
            }
            if let Some(s) = &e.session {
                o.insert("session_id".into(), s.as_str().into());
            }
            if let Some(err) = &e.error {
                let reason = detail("reason").map_or(String::new(), |r| format!(": {r}"));
                o.insert("error".into(), format!("{err}{reason}").into());
            }
            if let Some(s) = detail("scope") {
                if e.error.is_none() && kind != "authorize" {
                    o.insert("scopes_granted".into(), s.as_str().into());
                }
            }
            if let Some(g) = detail("grant_type") {
                o.insert("grant_type".into(), g.as_str().into());
            }
            if let Some(t) = detail("token_id") {
                o.insert("token_id".into(), format!("jti:{t}").into());
            }
            // Keycloak's REFRESH_TOKEN consumes `refresh_token_id` and, when
            // rotating, issues `updated_refresh_token_id`.
            match (
                detail("refresh_token_id"),
                detail("updated_refresh_token_id"),
            ) {
                (Some(consumed), Some(new)) if kind == "refresh" => {
                    o.insert("parent_token_id".into(), format!("jti:{consumed}").into());
                    o.insert("refresh_token_id".into(), format!("jti:{new}").into());
                }
                (Some(consumed), None) if kind == "refresh" => {
                    o.insert("parent_token_id".into(), format!("jti:{consumed}").into());
                    o.insert("refresh_token_id".into(), format!("jti:{consumed}").into());
                }
                (Some(r), _) => {
                    o.insert("refresh_token_id".into(), format!("jti:{r}").into());
                }
                _ => {}
            }
            v.to_string()
        }
        Record::Call(c) => serde_json::json!({
            "stream": "access", "ts": c.ts_ms, "tenant": c.tenant, "token": &*c.jwt,
            "method": c.method, "path": c.target, "status": c.status, "bytes": c.bytes,
            "latency_ms": c.latency_ms, "ip": c.ip, "user_agent": c.user_agent,
        })
        .to_string(),
    }
}

/// What a gateway writes for a request, whatever its format.
pub struct GatewayLine<'a> {
    pub ts_ms: i64,
    pub method: &'a str,
    pub target: &'a str,
    pub host: &'a str,
    pub status: u16,
    pub bytes: u64,
    pub latency_ms: f64,
    pub ip: &'a str,
    pub user_agent: &'a str,
    pub authorization: Option<&'a str>,
    pub request_id: &'a str,
}

/// nginx `log_format ... escape=json` with the variables' own names.
pub fn nginx_json(g: &GatewayLine<'_>) -> String {
    let mut v = serde_json::json!({
        "time_iso8601": rfc3339(g.ts_ms), "remote_addr": g.ip, "request_method": g.method,
        "request_uri": g.target, "status": g.status, "body_bytes_sent": g.bytes,
        "request_time": (g.latency_ms / 1000.0), "http_user_agent": g.user_agent,
        "host": g.host, "request_id": g.request_id,
    });
    if let Some(a) = g.authorization {
        v["http_authorization"] = format!("Bearer {a}").into();
    }
    v.to_string()
}

/// Kong's file-log plugin JSON (3.4+ shape, the fields scopewatch reads
/// and a few it does not).
pub fn kong(g: &GatewayLine<'_>) -> String {
    let mut headers = serde_json::json!({
        "host": g.host, "user-agent": g.user_agent, "x-request-id": g.request_id,
        "accept": "application/fhir+json",
    });
    if let Some(a) = g.authorization {
        headers["authorization"] = format!("Bearer {a}").into();
    }
    let latency = g.latency_ms.round() as u64;
    serde_json::json!({
        "request": {
            "method": g.method, "uri": g.target, "url": format!("https://{}{}", g.host, g.target),
            "size": 180, "querystring": {}, "headers": headers,
        },
        "response": {"status": g.status, "size": g.bytes, "headers": {"content-type": "application/fhir+json"}},
        "latencies": {"request": latency, "kong": 1, "proxy": latency.saturating_sub(1)},
        "client_ip": g.ip, "started_at": g.ts_ms, "upstream_uri": g.target,
        "service": {"name": "fhir", "protocol": "https"},
        "route": {"name": "fhir-api"},
        "tries": [{"balancer_latency": 0, "port": 8080, "ip": "10.9.0.10"}],
    })
    .to_string()
}

/// Envoy JSON access log with the usual keys (and the Authorization header,
/// which some sites log).
pub fn envoy_json(g: &GatewayLine<'_>) -> String {
    let mut v = serde_json::json!({
        "start_time": rfc3339(g.ts_ms), "method": g.method, "path": g.target,
        "protocol": "HTTP/1.1", "response_code": g.status, "response_flags": "-",
        "bytes_received": 0, "bytes_sent": g.bytes, "duration": g.latency_ms.round() as u64,
        "x_forwarded_for": g.ip, "user_agent": g.user_agent, "request_id": g.request_id,
        "authority": g.host, "upstream_host": "10.9.0.11:8080",
    });
    if let Some(a) = g.authorization {
        v["authorization"] = format!("Bearer {a}").into();
    }
    v.to_string()
}

/// A FHIR R4 AuditEvent following IHE BALP: the client in an agent's
/// `who.identifier`, the user as the requestor, the token's `jti` in
/// `agent.policy`, the HTTP request base64 in `entity.query`.
pub fn audit_event(c: &Call, source: &str) -> String {
    let outcome = match c.status {
        200..=399 => ("0", None),
        401 | 403 => ("4", Some(format!("{} Forbidden", c.status))),
        _ => ("8", Some(format!("{} Server error", c.status))),
    };
    let request = format!("{} {} HTTP/1.1", c.method, c.target);
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut agents = vec![serde_json::json!({
        "type": {"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110150", "display": "Application"}]},
        "who": {"identifier": {"system": "urn:oauth:client_id", "value": c.client_id}},
        "requestor": c.user.is_none(),
        "policy": [c.jti],
        "network": {"address": c.ip, "type": "2"},
    })];
    if let Some(u) = &c.user {
        agents.push(serde_json::json!({
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP", "display": "information recipient"}]},
            "who": {"identifier": {"system": "urn:example:user", "value": u}},
            "requestor": true,
            "policy": [c.jti],
        }));
    }
    let mut entities = Vec::new();
    if let Some(what) = &c.what {
        entities.push(serde_json::json!({
            "what": {"reference": what},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1"},
        }));
    }
    entities.push(serde_json::json!({
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2"},
        "query": b64.encode(request),
    }));
    entities.push(serde_json::json!({
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "4"},
        "what": {"identifier": {"system": "urn:x-request-id", "value": c.request_id}},
    }));
    let mut v = serde_json::json!({
        "resourceType": "AuditEvent",
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest", "display": "RESTful Operation"},
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": c.interaction_code}],
        "action": if c.method == "GET" { "R" } else if c.method == "POST" { "C" } else { "U" },
        "recorded": rfc3339(c.ts_ms),
        "outcome": outcome.0,
        "agent": agents,
        "source": {"observer": {"display": source}},
        "entity": entities,
    });
    if let Some(desc) = outcome.1 {
        v["outcomeDesc"] = desc.into();
    }
    v.to_string()
}
