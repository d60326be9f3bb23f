//! The gateway adapters (kong, nginx, envoy): every field read, bearer
//! tokens reduced to ids and pseudonyms, authorize calls as auth events,
//! every tenant and version setting, and errors that quote no raw value.

use std::collections::BTreeMap;

use base64::Engine;
use scopewatch_ingest::adapter::{Adapter, LineContext, ParseError, Parsed};
use scopewatch_ingest::formats::envoy::Envoy;
use scopewatch_ingest::formats::kong::Kong;
use scopewatch_ingest::formats::nginx::Nginx;
use scopewatch_ingest::privacy::{jwt_claims, IdKind, Pseudonymiser};
use scopewatch_model::config::{SourceOptions, TenantFrom, VersionFrom};
use scopewatch_model::events::{
    AccessEvent, AccessOutcome, AuthEvent, AuthKind, AuthOutcome, Env, Timestamp,
};
use scopewatch_model::request::{FhirBase, Interaction};

const RAW_PATIENT: &str = "pat-98765";
const RAW_USER: &str = "kc-user-4242";
const SIGNATURE: &str = "c2lnbmF0dXJlLXNpZ25hdHVyZS1zaWduYXR1cmU";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

/// A real-looking access token: RS256 header, SMART claims, fake signature.
fn jwt() -> String {
    format!(
        "{}.{}.{SIGNATURE}",
        b64(r#"{"alg":"RS256","typ":"JWT","kid":"k-2026"}"#),
        b64(&format!(
            r#"{{"jti":"at-91c2e7","client_id":"cardio-app","scope":"launch/patient openid patient/Observation.rs","sub":"{RAW_USER}","patient":"{RAW_PATIENT}","iss":"https://auth.example.org/realms/north","aud":"https://fhir.example.org/r4","exp":1795431600,"iat":1795428000,"software_version":"3.1.4","tenant":"south"}}"#
        ))
    )
}

fn privacy() -> Pseudonymiser {
    Pseudonymiser::from_key([9; 32])
}

fn run(
    adapter: &dyn Adapter,
    line: &[u8],
    opts: &SourceOptions,
    tenant: Option<&str>,
) -> Result<Vec<Parsed>, ParseError> {
    let p = privacy();
    let base = FhirBase::parse("/fhir/r4").unwrap();
    let ctx = LineContext {
        source: "gw",
        event_id: "ev-7",
        source_file: Some("/var/log/gw/access.log"),
        offset: Some(512),
        tenant,
        env: Env::Prod,
        privacy: &p,
        fhir_base: &base,
        options: opts,
    };
    let mut out = Vec::new();
    adapter.parse_line(line, &ctx, &mut out)?;
    Ok(out)
}

fn parse(adapter: &dyn Adapter, line: &str) -> Vec<Parsed> {
    run(
        adapter,
        line.as_bytes(),
        &SourceOptions::default(),
        Some("t0"),
    )
    .unwrap_or_else(|e| panic!("{e}: {line}"))
}

fn access(events: &[Parsed]) -> &AccessEvent {
    assert_eq!(events.len(), 1, "{events:?}");
    match &events[0] {
        Parsed::Access(e) => e,
        other => panic!("expected an access event, got {other:?}"),
    }
}

fn auth(events: &[Parsed]) -> &AuthEvent {
    assert_eq!(events.len(), 1, "{events:?}");
    match &events[0] {
        Parsed::Auth(e) => e,
        other => panic!("expected an auth event, got {other:?}"),
    }
}

/// Neither the Debug nor the serialised form of the events holds any of `raws`.
fn assert_no_raw(events: &[Parsed], raws: &[&str]) {
    let debug = format!("{events:?}");
    let json = serde_json::to_string(events).unwrap();
    for raw in raws {
        assert!(!debug.contains(raw), "{raw} leaked into {debug}");
        assert!(!json.contains(raw), "{raw} leaked into {json}");
    }
}

fn secrets(token: &str) -> Vec<&str> {
    vec![token, SIGNATURE, RAW_PATIENT, RAW_USER, "eyJ"]
}

/// What the test JWT must give an access event.
fn assert_token_reduced(e: &AccessEvent) {
    let p = privacy();
    assert_eq!(e.token_id.as_deref(), Some("jti:at-91c2e7"));
    assert_eq!(e.client_id.as_deref(), Some("cardio-app"));
    assert_eq!(e.user, Some(p.pseudonym(IdKind::User, RAW_USER)));
    assert_eq!(e.patient, Some(p.pseudonym(IdKind::Patient, RAW_PATIENT)));
    // `exp` 1795431600 is 2026-11-23T11:00:00Z; `iss` is Keycloak's realm north.
    assert_eq!(
        e.expires_at,
        Timestamp::parse_rfc3339("2026-11-23T11:00:00Z")
    );
    assert_eq!(e.token_tenant.as_deref(), Some("north"));
}

fn kong_line(auth_header: &str, uri: &str, status: u16) -> String {
    format!(
        r#"{{"request":{{"method":"GET","uri":"{uri}","url":"https://fhir.north.example.org:8443{uri}","size":310,"querystring":{{}},"headers":{{"host":"fhir.north.example.org:8443","user-agent":"CardioApp/2.4.1 (iOS 18.1)","authorization":{auth_header},"x-request-id":"req-1"}}}},"response":{{"status":{status},"size":2048,"headers":{{}}}},"latencies":{{"request":37,"kong":2,"proxy":35}},"client_ip":"203.0.113.7","consumer":{{"username":"gw-consumer-cardio","id":"ae974d6c"}},"started_at":1795428060250}}"#
    )
}

fn opts_with(f: impl FnOnce(&mut SourceOptions)) -> SourceOptions {
    let mut o = SourceOptions::default();
    f(&mut o);
    o
}

#[test]
fn kong_real_fixture_whole_file() {
    let bytes = std::fs::read(format!(
        "{}/tests/fixtures/third-party/kong_file-log_example_3.4.json",
        std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let events = run(&Kong, &bytes, &SourceOptions::default(), Some("t0")).unwrap();
    let e = access(&events);
    assert_eq!(e.event_id, "ev-7");
    assert_eq!(e.ts, Timestamp(1_614_232_668_342_000));
    assert_eq!(e.tenant, "t0");
    assert_eq!(e.env, Env::Prod);
    assert_eq!(e.client_id.as_deref(), Some("foo"), "consumer.username");
    assert_eq!(e.app_version, None);
    assert_eq!(e.user, None);
    assert_eq!(e.token_id, None);
    assert_eq!(e.expires_at, None);
    assert_eq!(e.token_tenant, None);
    assert_eq!(e.method, "GET");
    assert_eq!(e.path, "/log");
    assert_eq!(e.interaction, None, "not a FHIR request");
    assert_eq!(e.resource_type, None);
    assert_eq!(e.compartment, None);
    assert_eq!(e.patient, None);
    assert_eq!(e.required, None);
    assert_eq!(e.granted_covered, None);
    assert_eq!(e.status, Some(200));
    assert_eq!(e.outcome, AccessOutcome::Allowed);
    assert_eq!(e.bytes, Some(827));
    assert_eq!(e.latency_ms, Some(515.0));
    assert_eq!(e.ip.as_deref(), Some("192.168.144.1"));
    assert_eq!(e.user_agent.as_deref(), Some("HTTPie/2.4.0"));
    assert_eq!(e.source, "gw");
    assert_eq!(e.source_file.as_deref(), Some("/var/log/gw/access.log"));
    assert_eq!(e.source_offset, Some(512));

    // The Host header gives the tenant when asked: `localhost:8000`.
    let opts = opts_with(|o| o.tenant_from = Some(TenantFrom::Host));
    let events = run(&Kong, &bytes, &opts, None).unwrap();
    assert_eq!(access(&events).tenant, "localhost");
}

#[test]
fn kong_line_with_a_jwt() {
    let token = jwt();
    let line = kong_line(
        &format!(r#""Bearer {token}""#),
        &format!("/fhir/r4/Observation?patient={RAW_PATIENT}&category=vital-signs"),
        200,
    );
    let events = parse(&Kong, &line);
    let e = access(&events);
    assert_token_reduced(e);
    assert_eq!(e.ts, Timestamp(1_795_428_060_250_000));
    assert_eq!(e.interaction, Some(Interaction::Search));
    assert_eq!(e.resource_type.as_deref(), Some("Observation"));
    assert_eq!(e.required.as_deref(), Some("patient/Observation.s"));
    assert_eq!(e.granted_covered, Some(true));
    assert_eq!(e.status, Some(200));
    assert_eq!(e.bytes, Some(2048));
    assert_eq!(e.latency_ms, Some(37.0));
    assert_eq!(e.ip.as_deref(), Some("203.0.113.7"));
    assert!(
        e.path.starts_with("/fhir/r4/Observation?patient=p_"),
        "{}",
        e.path
    );
    assert_no_raw(&events, &secrets(&token));

    // A header logged as an array; a call the scopes do not cover; a 403.
    let line = kong_line(
        &format!(r#"["Bearer {token}"]"#),
        "/fhir/r4/MedicationRequest/med-1",
        403,
    );
    let events = parse(&Kong, &line);
    let e = access(&events);
    assert_token_reduced(e);
    assert_eq!(e.required.as_deref(), Some("patient/MedicationRequest.r"));
    assert_eq!(e.granted_covered, Some(false));
    assert_eq!(e.outcome, AccessOutcome::Denied);
    assert_no_raw(&events, &secrets(&token));

    // Kong's stock serializer masks the header: no token, the consumer is the client.
    let events = parse(
        &Kong,
        &kong_line(r#""REDACTED""#, "/fhir/r4/Observation/o-1", 200),
    );
    let e = access(&events);
    assert_eq!(e.token_id, None);
    assert_eq!(e.expires_at, None);
    assert_eq!(e.token_tenant, None);
    assert_eq!(e.user, None);
    assert_eq!(e.client_id.as_deref(), Some("gw-consumer-cardio"));
    assert_eq!(e.granted_covered, None, "scopes unknown");
}

#[test]
fn nginx_combined_with_bearer_and_request_time() {
    let token = jwt();
    let line = format!(
        r#"203.0.113.7 - - [23/Nov/2026:11:01:00 +0100] "GET /fhir/r4/Observation/obs-1 HTTP/1.1" 200 1534 "https://app.example/?patient={RAW_PATIENT}" "CardioApp/2.4.1 (iOS 18.1)" "Bearer {token}" rt=0.042"#
    );
    let events = parse(&Nginx, &line);
    let e = access(&events);
    assert_token_reduced(e);
    assert_eq!(
        e.ts,
        Timestamp::parse_rfc3339("2026-11-23T10:01:00Z").unwrap()
    );
    assert_eq!(e.method, "GET");
    assert_eq!(e.interaction, Some(Interaction::Read));
    assert_eq!(e.required.as_deref(), Some("patient/Observation.r"));
    assert_eq!(e.granted_covered, Some(true));
    assert_eq!(e.status, Some(200));
    assert_eq!(e.bytes, Some(1534));
    assert_eq!(e.latency_ms, Some(42.0));
    assert_eq!(e.ip.as_deref(), Some("203.0.113.7"));
    assert_eq!(e.user_agent.as_deref(), Some("CardioApp/2.4.1 (iOS 18.1)"));
    assert!(!e.path.contains("obs-1"), "{}", e.path);
    assert_no_raw(&events, &secrets(&token));

    // The `main` format's trailing X-Forwarded-For and a bare $request_time;
    // an escaped quote in the User-Agent; a Basic credential is no token.
    let line = r#"10.0.0.2 - alice [23/Nov/2026:10:01:00 +0000] "GET /fhir/r4/metadata HTTP/1.1" 304 0 "-" "Probe \x22x\x22/1.0" "198.51.100.1" 0.005 "Basic YWxpY2U6c2VjcmV0cGFzc3dvcmQ=""#;
    let events = parse(&Nginx, line);
    let e = access(&events);
    assert_eq!(e.interaction, Some(Interaction::Capabilities));
    assert_eq!(e.required, None);
    assert_eq!(e.status, Some(304));
    assert_eq!(e.outcome, AccessOutcome::Allowed);
    assert_eq!(e.latency_ms, Some(5.0));
    assert_eq!(e.user_agent.as_deref(), Some(r#"Probe "x"/1.0"#));
    assert_eq!(e.token_id, None);
    assert_no_raw(&events, &["alice", "YWxpY2U6c2VjcmV0cGFzc3dvcmQ"]);

    // The `common` format (no referer, no User-Agent).
    let e = parse(
        &Nginx,
        r#"10.0.0.2 - - [23/Nov/2026:10:01:00 +0000] "DELETE /fhir/r4/Observation/o-9 HTTP/1.1" 204 -"#,
    );
    let e = access(&e);
    assert_eq!(e.interaction, Some(Interaction::Delete));
    assert_eq!(e.bytes, None);
    assert_eq!(e.user_agent, None);
}

#[test]
fn envoy_text_with_bearer_and_json() {
    let token = jwt();
    let line = format!(
        r#"[2026-11-23T10:01:00.250Z] "POST /fhir/r4/Observation HTTP/2" 201 - 812 96 18 17 "203.0.113.7,10.0.0.1" "CardioApp/2.4.1 (Android 15)" "7c1f-req" "fhir.north.example.org" "10.0.3.4:8080" "Bearer {token}""#
    );
    let events = parse(&Envoy, &line);
    let e = access(&events);
    assert_token_reduced(e);
    assert_eq!(
        e.ts,
        Timestamp::parse_rfc3339("2026-11-23T10:01:00.250Z").unwrap()
    );
    assert_eq!(e.method, "POST");
    assert_eq!(e.interaction, Some(Interaction::Create));
    assert_eq!(e.required.as_deref(), Some("patient/Observation.c"));
    assert_eq!(e.granted_covered, Some(false), "rs does not cover create");
    assert_eq!(e.status, Some(201));
    assert_eq!(e.bytes, Some(96));
    assert_eq!(e.latency_ms, Some(18.0));
    assert_eq!(e.ip.as_deref(), Some("203.0.113.7"));
    assert_eq!(
        e.user_agent.as_deref(),
        Some("CardioApp/2.4.1 (Android 15)")
    );
    assert_no_raw(&events, &secrets(&token));

    // JSON: typed values, a null X-Forwarded-For, an address with a port.
    let line = format!(
        r#"{{"start_time":"2026-11-23T10:01:00.250Z","method":"GET","path":"/fhir/r4/Observation?patient={RAW_PATIENT}","protocol":"HTTP/1.1","response_code":200,"response_flags":"-","bytes_received":0,"bytes_sent":4096,"duration":23,"x_forwarded_for":null,"downstream_remote_address":"198.51.100.4:53012","user_agent":"CardioApp/2.4.1","request_id":"r-1","authority":"fhir.north.example.org","authorization":"Bearer {token}"}}"#
    );
    let events = parse(&Envoy, &line);
    let e = access(&events);
    assert_token_reduced(e);
    assert_eq!(e.interaction, Some(Interaction::Search));
    assert_eq!(e.granted_covered, Some(true));
    assert_eq!(e.bytes, Some(4096));
    assert_eq!(e.latency_ms, Some(23.0));
    assert_eq!(e.ip.as_deref(), Some("198.51.100.4"));
    assert_no_raw(&events, &secrets(&token));
}

#[test]
fn envoy_dash_fields_are_absent() {
    let line = r#"[2026-11-23T10:01:00.000Z] "GET /fhir/r4/metadata HTTP/1.1" 200 - 0 4123 12 - "-" "-" "-" "-" "-""#;
    let events = parse(&Envoy, line);
    let e = access(&events);
    assert_eq!(e.interaction, Some(Interaction::Capabilities));
    assert_eq!(e.ip, None);
    assert_eq!(e.user_agent, None);
    assert_eq!(e.token_id, None);
    assert_eq!(e.client_id, None);
    assert_eq!(e.latency_ms, Some(12.0));
    // No host to take a tenant from: the source's tenant.
    let opts = opts_with(|o| o.tenant_from = Some(TenantFrom::Host));
    let events = run(&Envoy, line.as_bytes(), &opts, Some("fallback")).unwrap();
    assert_eq!(access(&events).tenant, "fallback");

    // Downstream disconnected before a response: code 0 is an error.
    let line = r#"[2026-11-23T10:01:00.000Z] "GET /fhir/r4/Patient HTTP/1.1" 0 DC 0 0 3 - "-" "-" "-" "-" "-""#;
    let e = parse(&Envoy, line);
    let e = access(&e);
    assert_eq!(e.status, Some(0));
    assert_eq!(e.outcome, AccessOutcome::Error);
    assert_eq!(e.bytes, Some(0));

    // A TCP proxy line has no HTTP request.
    let err = run(
        &Envoy,
        br#"[2026-11-23T10:01:00.000Z] "- - -" 0 - 10 20 5 - "-" "-" "-" "-" "10.0.0.9:5432""#,
        &SourceOptions::default(),
        Some("t"),
    )
    .unwrap_err();
    assert!(matches!(err, ParseError::Format(_)), "{err}");
}

fn authorize_target() -> String {
    "/realms/north/protocol/openid-connect/auth?response_type=code&client_id=cardio-app&redirect_uri=https%3A%2F%2Fapp.example%2Fcallback%3Fsid%3DSID-secret-77&launch=LAUNCH-ctx-5a&scope=launch%2Fpatient+openid+fhirUser+patient%2FObservation.rs&state=STATE-af31bc9e&aud=https%3A%2F%2Ffhir.example.org%2Fr4&code_challenge=CHALLENGE-E9Melhoa2Owv&code_challenge_method=S256&login_hint=jane%40example.org".to_string()
}

const AUTHORIZE_SECRETS: &[&str] = &[
    "STATE-af31bc9e",
    "app.example",
    "SID-secret-77",
    "CHALLENGE-E9Melhoa2Owv",
    "LAUNCH-ctx-5a",
    "jane",
];

fn assert_authorize(e: &AuthEvent) {
    assert_eq!(e.kind, AuthKind::Authorize);
    assert_eq!(e.client_id.as_deref(), Some("cardio-app"));
    assert_eq!(
        e.scopes_requested,
        Some(vec![
            "launch/patient".to_string(),
            "openid".into(),
            "fhirUser".into(),
            "patient/Observation.rs".into()
        ])
    );
    assert_eq!(e.scopes_granted, None);
    assert_eq!(e.token_id, None);
    assert_eq!(e.user, None);
}

#[test]
fn authorize_requests_become_auth_events() {
    let realm = opts_with(|o| o.tenant_from = Some(TenantFrom::Realm));
    let target = authorize_target();

    let line = format!(
        r#"198.51.100.20 - - [23/Nov/2026:10:00:00 +0000] "GET {target} HTTP/1.1" 302 0 "-" "Mozilla/5.0 CardioApp/2.4.1""#
    );
    let events = run(&Nginx, line.as_bytes(), &realm, None).unwrap();
    let e = auth(&events);
    assert_authorize(e);
    assert_eq!(e.outcome, AuthOutcome::Success, "a 302 redirect is success");
    assert_eq!(e.error, None);
    assert_eq!(e.tenant, "north", "realm from the path");
    assert_eq!(
        e.ts,
        Timestamp::parse_rfc3339("2026-11-23T10:00:00Z").unwrap()
    );
    assert_eq!(e.ip.as_deref(), Some("198.51.100.20"));
    assert_eq!(e.user_agent.as_deref(), Some("Mozilla/5.0 CardioApp/2.4.1"));
    assert_eq!(e.source_offset, Some(512));
    assert_no_raw(&events, AUTHORIZE_SECRETS);
    for word in ["state", "redirect_uri", "code_challenge", "login_hint"] {
        assert!(
            !format!("{events:?}").contains(word),
            "{word} in {events:?}"
        );
    }

    // Through envoy, on a generic /oauth2/authorize, refused with a 400.
    let target = target.replace(
        "/realms/north/protocol/openid-connect/auth",
        "/oauth2/authorize",
    );
    let line = format!(
        r#"[2026-11-23T10:00:00.000Z] "GET {target} HTTP/1.1" 400 - 0 120 4 3 "198.51.100.20" "CardioApp/2.4.1" "r-9" "auth.example.org" "10.0.0.5:8080""#
    );
    let events = parse(&Envoy, &line);
    let e = auth(&events);
    assert_authorize(e);
    assert_eq!(e.outcome, AuthOutcome::Failure);
    assert_eq!(e.error.as_deref(), Some("HTTP 400"));
    assert_eq!(e.tenant, "t0");
    assert_no_raw(&events, AUTHORIZE_SECRETS);
    for word in ["state", "redirect_uri", "code_challenge", "login_hint"] {
        assert!(
            !format!("{events:?}").contains(word),
            "{word} in {events:?}"
        );
    }

    // A site's own authorize path; without a scope parameter nothing is known.
    let opts = opts_with(|o| o.authorize_paths = vec!["/smart/launch-auth".into()]);
    let line = r#"{"time_iso8601":"2026-11-23T10:00:00+00:00","request_method":"GET","request_uri":"/smart/launch-auth?client_id=x-app","status":"302"}"#;
    let events = run(&Nginx, line.as_bytes(), &opts, Some("t")).unwrap();
    let e = auth(&events);
    assert_eq!(e.client_id.as_deref(), Some("x-app"));
    assert_eq!(e.scopes_requested, None);
    // ... and the defaults no longer apply.
    let line = r#"{"time_iso8601":"2026-11-23T10:00:00+00:00","request_method":"GET","request_uri":"/oauth2/authorize?scope=openid","status":"302"}"#;
    let events = run(&Nginx, line.as_bytes(), &opts, Some("t")).unwrap();
    assert!(matches!(events[0], Parsed::Access(_)));
}

/// The tenant an nginx JSON line gets under `opts`.
fn tenant_of(
    line: &str,
    opts: &SourceOptions,
    fallback: Option<&str>,
) -> Result<String, ParseError> {
    let events = run(&Nginx, line.as_bytes(), opts, fallback)?;
    Ok(match &events[0] {
        Parsed::Access(e) => e.tenant.clone(),
        Parsed::Auth(e) => e.tenant.clone(),
    })
}

#[test]
fn every_tenant_source() {
    let token = jwt();
    let line = |host: &str, uri: &str| {
        format!(
            r#"{{"time_iso8601":"2026-11-23T10:00:00+00:00","request_method":"GET","request_uri":"{uri}","status":"200","host":"{host}","http_authorization":"Bearer {token}"}}"#
        )
    };
    let fhir = line(
        "FHIR.North.example.org:443",
        "/north-fhir/fhir/r4/Observation/o-1",
    );
    let from = |t: TenantFrom| opts_with(|o| o.tenant_from = Some(t));

    // None and fixed: the source's tenant, else an error.
    assert_eq!(
        tenant_of(&fhir, &SourceOptions::default(), Some("t0")).unwrap(),
        "t0"
    );
    assert_eq!(
        tenant_of(&fhir, &from(TenantFrom::Fixed), Some("t0")).unwrap(),
        "t0"
    );
    let err = tenant_of(&fhir, &from(TenantFrom::Fixed), None).unwrap_err();
    assert_eq!(err, ParseError::MissingField("tenant".into()));

    // host: without port, lower case; then through tenant_map.
    assert_eq!(
        tenant_of(&fhir, &from(TenantFrom::Host), None).unwrap(),
        "fhir.north.example.org"
    );
    let mapped = opts_with(|o| {
        o.tenant_from = Some(TenantFrom::Host);
        o.tenant_map = BTreeMap::from([("fhir.north.example.org".into(), "north".into())]);
    });
    assert_eq!(tenant_of(&fhir, &mapped, None).unwrap(), "north");

    // path:N, 1-based.
    assert_eq!(
        tenant_of(&fhir, &from(TenantFrom::PathSegment(1)), None).unwrap(),
        "north-fhir"
    );
    assert_eq!(
        tenant_of(&fhir, &from(TenantFrom::PathSegment(3)), None).unwrap(),
        "r4"
    );
    // Beyond the path's end: the fallback.
    assert_eq!(
        tenant_of(&fhir, &from(TenantFrom::PathSegment(9)), Some("t0")).unwrap(),
        "t0"
    );

    // realm: from the path, else from the token's issuer.
    let kc = line(
        "auth.example.org",
        "/realms/south/protocol/openid-connect/token",
    );
    assert_eq!(
        tenant_of(&kc, &from(TenantFrom::Realm), None).unwrap(),
        "south"
    );
    assert_eq!(
        tenant_of(&fhir, &from(TenantFrom::Realm), None).unwrap(),
        "north"
    );

    // claim:iss (a URL: its last segment), claim:aud (mapped), any claim.
    assert_eq!(
        tenant_of(&fhir, &from(TenantFrom::Claim("iss".into())), None).unwrap(),
        "north"
    );
    let aud = opts_with(|o| {
        o.tenant_from = Some(TenantFrom::Claim("aud".into()));
        o.tenant_map =
            BTreeMap::from([("https://fhir.example.org/r4".into(), "fhir-north".into())]);
    });
    assert_eq!(tenant_of(&fhir, &aud, None).unwrap(), "fhir-north");
    assert_eq!(
        tenant_of(&fhir, &from(TenantFrom::Claim("tenant".into())), None).unwrap(),
        "south"
    );
    // A missing claim, or an identity claim, falls back; never the raw sub.
    assert_eq!(
        tenant_of(&fhir, &from(TenantFrom::Claim("org".into())), Some("t0")).unwrap(),
        "t0"
    );
    assert_eq!(
        tenant_of(&fhir, &from(TenantFrom::Claim("sub".into())), Some("t0")).unwrap(),
        "t0"
    );
    // No token at all.
    let bare = r#"{"time_iso8601":"2026-11-23T10:00:00+00:00","request_method":"GET","request_uri":"/fhir/r4/Patient","status":"200"}"#;
    let err = tenant_of(bare, &from(TenantFrom::Claim("iss".into())), None).unwrap_err();
    assert_eq!(err, ParseError::MissingField("tenant".into()));
}

#[test]
fn app_version_from_claim_and_user_agent() {
    let token = jwt();
    let line = format!(
        r#"203.0.113.7 - - [23/Nov/2026:10:01:00 +0000] "GET /fhir/r4/Observation/o-1 HTTP/1.1" 200 10 "-" "CardioApp/2.4.1 (iOS 18.1)" "Bearer {token}""#
    );
    let claim =
        opts_with(|o| o.app_version_from = Some(VersionFrom::Claim("software_version".into())));
    let events = run(&Nginx, line.as_bytes(), &claim, Some("t")).unwrap();
    assert_eq!(access(&events).app_version.as_deref(), Some("3.1.4"));

    let ua = opts_with(|o| {
        o.app_version_from = Some(VersionFrom::parse("user_agent:CardioApp/([0-9.]+)").unwrap())
    });
    let events = run(&Nginx, line.as_bytes(), &ua, Some("t")).unwrap();
    assert_eq!(access(&events).app_version.as_deref(), Some("2.4.1"));

    // Kong and envoy too; a User-Agent that does not match gives nothing.
    let events = run(
        &Kong,
        kong_line(&format!(r#""Bearer {token}""#), "/fhir/r4/Patient", 200).as_bytes(),
        &ua,
        Some("t"),
    )
    .unwrap();
    assert_eq!(access(&events).app_version.as_deref(), Some("2.4.1"));
    let line = r#"[2026-11-23T10:01:00.000Z] "GET /fhir/r4/metadata HTTP/1.1" 200 - 0 1 1 - "-" "curl/8.5.0" "-" "-" "-""#;
    let events = run(&Envoy, line.as_bytes(), &ua, Some("t")).unwrap();
    assert_eq!(access(&events).app_version, None);
    // The claim setting without a token gives nothing either.
    let events = run(&Envoy, line.as_bytes(), &claim, Some("t")).unwrap();
    assert_eq!(access(&events).app_version, None);
}

/// A bearer token's expiry and issuing tenant, for rules to spot a call made
/// with an expired token or with a token another tenant issued.
#[test]
fn token_expiry_and_issuing_tenant() {
    let nginx = |token: &str| {
        format!(
            r#"203.0.113.7 - - [23/Nov/2026:11:30:00 +0000] "GET /fhir/r4/Observation/obs-1 HTTP/1.1" 200 1534 "-" "CardioApp/2.4.1" "Bearer {token}" rt=0.042"#
        )
    };
    let token = jwt();
    let line = nginx(&token);

    // The call is the source's tenant `t0`; the token is realm north's, and
    // expired at 11:00, half an hour before the call.
    let events = parse(&Nginx, &line);
    let e = access(&events);
    assert_eq!(e.tenant, "t0");
    assert_eq!(e.token_tenant.as_deref(), Some("north"));
    let expires = e.expires_at.expect("exp read");
    assert_eq!(expires, Timestamp(1_795_431_600 * 1_000_000));
    assert!(e.ts > expires, "the call came after the token expired");
    assert_no_raw(&events, &secrets(&token));

    // The issuer is named the way the source names tenants: `tenant_map`
    // names the issuer, or the realm a `realm` source reads ...
    let by_issuer = opts_with(|o| {
        o.tenant_map = BTreeMap::from([(
            "https://auth.example.org/realms/north".into(),
            "hospital-north".into(),
        )]);
    });
    let by_realm = opts_with(|o| {
        o.tenant_from = Some(TenantFrom::Realm);
        o.tenant_map = BTreeMap::from([("north".into(), "hospital-north".into())]);
    });
    for opts in [&by_issuer, &by_realm] {
        let events = run(&Nginx, line.as_bytes(), opts, Some("t0")).unwrap();
        assert_eq!(
            access(&events).token_tenant.as_deref(),
            Some("hospital-north")
        );
    }
    // ... so a `realm` source's own tenant and the token's agree.
    let events = run(&Nginx, line.as_bytes(), &by_realm, None).unwrap();
    assert_eq!(access(&events).tenant, "hospital-north");
    // `tenant_from` does not change what the token says.
    let events = run(
        &Nginx,
        line.as_bytes(),
        &opts_with(|o| o.tenant_from = Some(TenantFrom::Claim("tenant".into()))),
        None,
    )
    .unwrap();
    assert_eq!(access(&events).tenant, "south", "the `tenant` claim");
    assert_eq!(access(&events).token_tenant.as_deref(), Some("north"));

    // A JWT without `exp` or `iss`: both null, the token still identified.
    let bare = format!(
        "{}.{}.{SIGNATURE}",
        b64(r#"{"alg":"RS256","typ":"JWT"}"#),
        b64(r#"{"jti":"at-noexp","client_id":"cardio-app","scope":"patient/Observation.rs"}"#)
    );
    let e = parse(&Nginx, &nginx(&bare));
    let e = access(&e);
    assert_eq!(e.token_id.as_deref(), Some("jti:at-noexp"));
    assert_eq!(e.expires_at, None);
    assert_eq!(e.token_tenant, None);

    // An opaque token says neither.
    let e = parse(&Nginx, &nginx("8xLOxBtZp8QZ3m7s0cVq2yW4kR9dE1fJ"));
    let e = access(&e);
    assert!(e.token_id.as_deref().unwrap().starts_with("h:"));
    assert_eq!(e.expires_at, None);
    assert_eq!(e.token_tenant, None);

    // Kong and envoy read the same token the same way.
    let kong = parse(
        &Kong,
        &kong_line(&format!(r#""Bearer {token}""#), "/fhir/r4/Patient", 200),
    );
    assert_eq!(access(&kong).token_tenant.as_deref(), Some("north"));
    assert_eq!(access(&kong).expires_at, Some(expires));
    let envoy = parse(
        &Envoy,
        &format!(
            r#"{{"start_time":"2026-11-23T10:01:00.250Z","method":"GET","path":"/fhir/r4/Patient","response_code":200,"authorization":"Bearer {token}"}}"#
        ),
    );
    assert_eq!(access(&envoy).token_tenant.as_deref(), Some("north"));
    assert_eq!(access(&envoy).expires_at, Some(expires));
}

#[test]
fn jwt_claims_read_any_other_claim() {
    let c = jwt_claims(&jwt()).unwrap();
    assert_eq!(
        c.extra.get("software_version").map(String::as_str),
        Some("3.1.4")
    );
    assert_eq!(c.claim("tenant").as_deref(), Some("south"));
    assert_eq!(
        c.claim("iss").as_deref(),
        Some("https://auth.example.org/realms/north")
    );
    assert_eq!(c.claim("azp").as_deref(), Some("cardio-app"));
    assert_eq!(c.claim("exp").as_deref(), Some("1795431600"));
    assert!(
        !c.extra.contains_key("jti"),
        "named claims stay in their fields"
    );
    assert_eq!(c.claim("nope"), None);
}

#[test]
fn nginx_json_with_a_field_mapping() {
    let token = jwt();
    let opts = opts_with(|o| {
        o.tenant_from = Some(TenantFrom::Host);
        o.fields = BTreeMap::from(
            [
                ("ts", "t"),
                ("method", "verb"),
                ("path", "u"),
                ("query", "q"),
                ("status", "code"),
                ("bytes", "sz"),
                ("latency_ms", "rt"),
                ("ip", "client"),
                ("user_agent", "ua"),
                ("host", "vhost"),
                ("authorization", "authz"),
                ("request_id", "req.id"),
            ]
            .map(|(a, b)| (a.to_string(), b.to_string())),
        );
    });
    let line = format!(
        r#"{{"t":"2026-11-23T11:01:00+01:00","verb":"get","u":"/fhir/r4/Observation","q":"patient={RAW_PATIENT}&_count=10","code":"200","sz":"512","rt":"0.012","client":"10.0.0.7","ua":"CardioApp/2.4.1","vhost":"fhir.north.example.org","authz":"Bearer {token}","req":{{"id":"rq-1"}},"status":"999","request_method":"DELETE"}}"#
    );
    let events = run(&Nginx, line.as_bytes(), &opts, None).unwrap();
    let e = access(&events);
    assert_token_reduced(e);
    assert_eq!(
        e.ts,
        Timestamp::parse_rfc3339("2026-11-23T10:01:00Z").unwrap()
    );
    assert_eq!(
        e.method, "GET",
        "the mapped field, upper-cased; not request_method"
    );
    assert_eq!(e.status, Some(200), "the mapped field, not `status`");
    assert_eq!(e.interaction, Some(Interaction::Search));
    assert!(
        e.path.starts_with("/fhir/r4/Observation?patient=p_"),
        "{}",
        e.path
    );
    assert!(e.path.ends_with("&_count=10"), "{}", e.path);
    assert_eq!(e.granted_covered, Some(true));
    assert_eq!(e.bytes, Some(512));
    assert_eq!(e.latency_ms, Some(12.0), "nginx seconds");
    assert_eq!(e.ip.as_deref(), Some("10.0.0.7"));
    assert_eq!(e.tenant, "fhir.north.example.org");
    assert_no_raw(&events, &secrets(&token));

    // A mapped field that is absent is absent: no fallback to the defaults.
    let line = r#"{"t":"2026-11-23T10:01:00Z","verb":"GET","u":"/fhir/r4/Patient","status":"200"}"#;
    let err = run(&Nginx, line.as_bytes(), &opts, Some("t")).unwrap_err();
    assert_eq!(err, ParseError::MissingField("status".into()));

    // Unmapped: nginx's own variable names, strings throughout, `$msec` time,
    // `$uri` + `$args`.
    let line = r#"{"msec":"1795428060.250","request_method":"PUT","uri":"/fhir/r4/Observation/o-1","args":"","status":"200","body_bytes_sent":"0","request_time":"0.100","remote_addr":"10.0.0.8","http_user_agent":"-","http_authorization":""}"#;
    let events = parse(&Nginx, line);
    let e = access(&events);
    assert_eq!(e.ts, Timestamp(1_795_428_060_250_000));
    assert_eq!(e.interaction, Some(Interaction::Update));
    assert_eq!(e.latency_ms, Some(100.0));
    assert_eq!(e.user_agent, None);
    assert_eq!(e.token_id, None);
    // Only the whole `$request` line.
    let line = r#"{"time_local":"23/Nov/2026:10:01:00 +0000","request":"GET /fhir/r4/Patient/p-1 HTTP/1.1","status":200}"#;
    let e = parse(&Nginx, line);
    let e = access(&e);
    assert_eq!(e.method, "GET");
    assert_eq!(e.interaction, Some(Interaction::Read));
}

#[test]
fn bad_lines_are_errors_without_raw_values() {
    let token = jwt();
    let opts = SourceOptions::default();
    let cases: Vec<(&dyn Adapter, String, &str)> = vec![
        // Truncated JSON.
        (
            &Kong,
            format!(
                r#"{{"request":{{"method":"GET","uri":"/fhir/r4/Patient/{RAW_PATIENT}","headers":{{"authorization":"Bearer {token}"#
            ),
            "truncated",
        ),
        (
            &Nginx,
            format!(
                r#"{{"request_uri":"/fhir/r4/Patient/{RAW_PATIENT}","http_authorization":"Bearer {token}"#
            ),
            "truncated",
        ),
        (
            &Envoy,
            format!(
                r#"{{"path":"/fhir/r4/Patient/{RAW_PATIENT}","authorization":"Bearer {token}","#
            ),
            "truncated",
        ),
        // Text that is not the format.
        (
            &Nginx,
            format!("{RAW_PATIENT} said hello with Bearer {token}"),
            "nginx combined",
        ),
        (
            &Envoy,
            format!(
                r#"[2026-11-23T10:00:00Z] "GET /fhir/r4/Patient/{RAW_PATIENT} HTTP/1.1" 200 "Bearer {token}""#
            ),
            "envoy",
        ),
        (
            &Kong,
            format!("GET /fhir/r4/Patient/{RAW_PATIENT} 200"),
            "not JSON",
        ),
        // A status that is not a number.
        (
            &Nginx,
            format!(
                r#"10.0.0.1 - - [23/Nov/2026:10:00:00 +0000] "GET /fhir/r4/Patient/{RAW_PATIENT} HTTP/1.1" {RAW_PATIENT} 12 "-" "ua" "Bearer {token}""#
            ),
            "status",
        ),
        (
            &Envoy,
            format!(
                r#"[2026-11-23T10:00:00Z] "GET /fhir/r4/Patient HTTP/1.1" {RAW_PATIENT} - 0 1 1 - "-" "-" "-" "-" "-""#
            ),
            "response_code",
        ),
        (
            &Kong,
            kong_line(&format!(r#""Bearer {token}""#), "/fhir/r4/Patient", 200)
                .replace(r#""status":200"#, &format!(r#""status":"{RAW_PATIENT}""#)),
            "response.status",
        ),
        (
            &Envoy,
            format!(
                r#"{{"start_time":"2026-11-23T10:00:00Z","method":"GET","path":"/x","response_code":"{RAW_PATIENT}"}}"#
            ),
            "status",
        ),
        // Other shapes: a bad time, an object where a string belongs, a bad method.
        (
            &Nginx,
            format!(r#"10.0.0.1 - - [{RAW_PATIENT}] "GET / HTTP/1.1" 200 1 "-" "-""#),
            "time_local",
        ),
        (
            &Nginx,
            format!(
                r#"{{"time_iso8601":"2026-11-23T10:00:00Z","request_method":{{"x":"{RAW_PATIENT}"}},"request_uri":"/","status":"200"}}"#
            ),
            "method",
        ),
        (
            &Envoy,
            format!(
                r#"[2026-11-23T10:00:00Z] "G{RAW_PATIENT}! /x HTTP/1.1" 200 - 0 1 1 - "-" "-" "-" "-" "-""#
            ),
            "method",
        ),
        (&Kong, "[1,2]".to_string(), "array"),
    ];
    for (adapter, line, expect) in cases {
        let err = run(adapter, line.as_bytes(), &opts, Some("t"))
            .expect_err(&format!("{} accepted {line}", adapter.name()));
        let shown = err.to_string();
        assert!(
            shown.contains(expect),
            "{}: `{shown}` lacks `{expect}`",
            adapter.name()
        );
        for raw in [RAW_PATIENT, token.as_str(), "eyJ", "Bearer"] {
            assert!(
                !shown.contains(raw),
                "{}: `{shown}` quotes {raw}",
                adapter.name()
            );
        }
    }
    // Blank lines are skipped, not errors.
    for adapter in [&Kong as &dyn Adapter, &Nginx, &Envoy] {
        assert_eq!(run(adapter, b"  \r", &opts, Some("t")).unwrap(), vec![]);
    }
    // Invalid UTF-8 says where.
    assert_eq!(
        run(&Nginx, b"10.0.0.1 \xff", &opts, Some("t")).unwrap_err(),
        ParseError::InvalidUtf8(9)
    );
}
