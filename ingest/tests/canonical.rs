//! The canonical NDJSON format: every field read, raw secrets and ids
//! reduced on the way in, and specific errors that never quote a value.

use base64::Engine;
use scopewatch_ingest::adapter::{Adapter, LineContext, ParseError, Parsed};
use scopewatch_ingest::formats::canonical::Canonical;
use scopewatch_ingest::privacy::{IdKind, Pseudonymiser};
use scopewatch_model::events::{AccessOutcome, AuthKind, AuthOutcome, Env, Timestamp};
use scopewatch_model::request::{FhirBase, Interaction};

const RAW_PATIENT: &str = "pat-98765";
const RAW_USER: &str = "kc-user-4242";
const RAW_REFRESH: &str = "8xLOxBtZp8QZ3m7s0cVq2yW4kR9dE1fJ";
const RAW_PARENT: &str = "old-refresh-Zp8QZ3m7s0cVq2yW";

fn jwt() -> String {
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!(
        "{}.{}.{}",
        b64(r#"{"alg":"RS256","typ":"JWT"}"#),
        b64(&format!(
            r#"{{"jti":"at-7f3a9c","client_id":"cardio-app","sub":"{RAW_USER}","scope":"launch/patient openid patient/Observation.rs","patient":"{RAW_PATIENT}","exp":1795431600,"iat":1795428000}}"#
        )),
        "c2lnbmF0dXJlLXNpZ25hdHVyZQ"
    )
}

fn privacy() -> Pseudonymiser {
    Pseudonymiser::from_key([5; 32])
}

fn parse_with(line: &[u8], tenant: Option<&str>) -> Result<Vec<Parsed>, ParseError> {
    let p = privacy();
    let base = FhirBase::parse("/fhir/r4").unwrap();
    let opts = scopewatch_model::config::SourceOptions::default();
    let ctx = LineContext {
        source: "push",
        event_id: "ev-1",
        source_file: Some("/var/log/sw.ndjson"),
        offset: Some(4096),
        tenant,
        env: Env::Sandbox,
        privacy: &p,
        fhir_base: &base,
        options: &opts,
    };
    let mut out = Vec::new();
    Canonical.parse_line(line, &ctx, &mut out)?;
    Ok(out)
}

fn parse(line: &str) -> Result<Vec<Parsed>, ParseError> {
    parse_with(line.as_bytes(), Some("default-tenant"))
}

fn assert_no_raw(events: &[Parsed], raws: &[&str]) {
    let json = serde_json::to_string(events).unwrap();
    for raw in raws {
        assert!(!json.contains(raw), "{raw} leaked into {json}");
    }
}

#[test]
fn a_full_auth_line() {
    let token = jwt();
    let line = format!(
        r#"{{"stream":"auth","ts":"2026-11-23T10:00:00.123Z","tenant":"north","env":"prod","kind":"refresh","outcome":"success","client_id":"cardio-app","app_version":"2.4.1","user":"{RAW_USER}","session_id":"6f1c2d0e","patient":"{RAW_PATIENT}","encounter":"enc-9","scopes_requested":"launch/patient openid patient/Observation.rs","scopes_granted":["launch/patient","patient/Observation.rs"],"grant_type":"refresh_token","token":"{token}","refresh_token":"{RAW_REFRESH}","parent_refresh_token":"{RAW_PARENT}","expires_at":"2026-11-23T11:00:00Z","ip":"10.1.2.3","user_agent":"CardioApp/2.4.1","extra_field":{{"ignored":true}}}}"#
    );
    let events = parse(&line).unwrap();
    assert_eq!(events.len(), 1);
    let Parsed::Auth(e) = &events[0] else {
        panic!("{events:?}")
    };
    let p = privacy();
    assert_eq!(e.event_id, "ev-1");
    assert_eq!(
        e.ts,
        Timestamp::parse_rfc3339("2026-11-23T10:00:00.123Z").unwrap()
    );
    assert_eq!(e.tenant, "north");
    assert_eq!(e.env, Env::Prod);
    assert_eq!(e.kind, AuthKind::Refresh);
    assert_eq!(e.outcome, AuthOutcome::Success);
    assert_eq!(e.error, None);
    assert_eq!(e.client_id.as_deref(), Some("cardio-app"));
    assert_eq!(e.app_version.as_deref(), Some("2.4.1"));
    assert_eq!(e.user, Some(p.pseudonym(IdKind::User, RAW_USER)));
    assert_eq!(e.session_id.as_deref(), Some("6f1c2d0e"));
    assert_eq!(e.patient, Some(p.pseudonym(IdKind::Patient, RAW_PATIENT)));
    assert_eq!(e.encounter, Some(p.pseudonym(IdKind::Encounter, "enc-9")));
    assert_eq!(
        e.scopes_requested,
        Some(vec![
            "launch/patient".to_string(),
            "openid".into(),
            "patient/Observation.rs".into()
        ])
    );
    assert_eq!(
        e.scopes_granted,
        Some(vec![
            "launch/patient".to_string(),
            "patient/Observation.rs".into()
        ])
    );
    assert_eq!(e.grant_type.as_deref(), Some("refresh_token"));
    assert_eq!(e.token_id.as_deref(), Some("jti:at-7f3a9c"));
    assert_eq!(e.refresh_token_id, Some(p.token_id(RAW_REFRESH)));
    assert!(e.refresh_token_id.as_deref().unwrap().starts_with("h:"));
    assert_eq!(e.parent_token_id, Some(p.token_id(RAW_PARENT)));
    assert_eq!(
        e.expires_at,
        Timestamp::parse_rfc3339("2026-11-23T11:00:00Z")
    );
    assert_eq!(e.ip.as_deref(), Some("10.1.2.3"));
    assert_eq!(e.user_agent.as_deref(), Some("CardioApp/2.4.1"));
    assert_eq!(e.source, "push");
    assert_eq!(e.source_file.as_deref(), Some("/var/log/sw.ndjson"));
    assert_eq!(e.source_offset, Some(4096));
    assert_no_raw(
        &events,
        &[
            &token,
            RAW_PATIENT,
            RAW_USER,
            RAW_REFRESH,
            RAW_PARENT,
            "enc-9",
            "eyJ",
        ],
    );
    let json = serde_json::to_value(&events[0]).unwrap();
    assert_eq!(json["stream"], "auth");
}

#[test]
fn jwt_claims_fill_what_the_auth_line_leaves_out() {
    let token = jwt();
    let line = format!(
        r#"{{"stream":"auth","ts":1795428000000,"kind":"token","token":"{token}","error":"slow_down"}}"#
    );
    let events = parse(&line).unwrap();
    let Parsed::Auth(e) = &events[0] else {
        panic!()
    };
    let p = privacy();
    assert_eq!(e.tenant, "default-tenant");
    assert_eq!(e.env, Env::Sandbox);
    assert_eq!(e.ts, Timestamp(1_795_428_000_000_000));
    assert_eq!(e.outcome, AuthOutcome::Failure, "an error means failure");
    assert_eq!(e.error.as_deref(), Some("slow_down"));
    assert_eq!(e.client_id.as_deref(), Some("cardio-app"));
    assert_eq!(e.user, Some(p.pseudonym(IdKind::User, RAW_USER)));
    assert_eq!(e.patient, Some(p.pseudonym(IdKind::Patient, RAW_PATIENT)));
    assert_eq!(
        e.scopes_granted,
        Some(vec![
            "launch/patient".to_string(),
            "openid".into(),
            "patient/Observation.rs".into()
        ])
    );
    assert_eq!(e.scopes_requested, None, "absent means not recorded");
    assert_eq!(e.expires_at, Some(Timestamp(1_795_431_600_000_000)));
    assert_no_raw(&events, &[&token, RAW_PATIENT, RAW_USER]);

    // Already reduced ids pass through; empty scopes are an empty list.
    let line = r#"{"stream":"auth","ts":"2026-11-23T10:00:00Z","kind":"revoke","token_id":"jti:abc","refresh_token_id":"h:0123","parent_token_id":"h:4567","scopes_granted":""}"#;
    let Parsed::Auth(e) = &parse(line).unwrap()[0] else {
        panic!()
    };
    assert_eq!(e.token_id.as_deref(), Some("jti:abc"));
    assert_eq!(e.refresh_token_id.as_deref(), Some("h:0123"));
    assert_eq!(e.parent_token_id.as_deref(), Some("h:4567"));
    assert_eq!(e.scopes_granted, Some(vec![]));
    assert_eq!(e.outcome, AuthOutcome::Success);
}

#[test]
fn an_error_text_is_scrubbed() {
    let token = jwt();
    let line = format!(
        r#"{{"stream":"auth","ts":1795428000000,"kind":"error","error":"invalid token {token} for patient={RAW_PATIENT}"}}"#
    );
    let events = parse(&line).unwrap();
    let Parsed::Auth(e) = &events[0] else {
        panic!()
    };
    let error = e.error.as_deref().unwrap();
    assert!(
        error.starts_with("invalid token jti:at-7f3a9c for patient=p_"),
        "{error}"
    );
    assert_no_raw(&events, &[&token, RAW_PATIENT]);
}

#[test]
fn a_full_access_line() {
    let token = jwt();
    let line = format!(
        r#"{{"stream":"access","ts":1795428060250,"tenant":"north","env":"test","client_id":"cardio-app","user":"{RAW_USER}","token":"Bearer {token}","method":"get","path":"/fhir/r4/Observation?patient={RAW_PATIENT}&category=vital-signs&_count=50","status":200,"bytes":5120,"latency_ms":42.5,"scopes":"launch/patient patient/Observation.rs","ip":"10.1.2.3","user_agent":"CardioApp/2.4.1"}}"#
    );
    let events = parse(&line).unwrap();
    assert_eq!(events.len(), 1);
    let Parsed::Access(e) = &events[0] else {
        panic!("{events:?}")
    };
    let p = privacy();
    let pat = p.pseudonym(IdKind::Patient, RAW_PATIENT);
    assert_eq!(e.event_id, "ev-1");
    assert_eq!(e.ts, Timestamp(1_795_428_060_250_000));
    assert_eq!(e.tenant, "north");
    assert_eq!(e.env, Env::Test);
    assert_eq!(e.client_id.as_deref(), Some("cardio-app"));
    assert_eq!(e.user, Some(p.pseudonym(IdKind::User, RAW_USER)));
    assert_eq!(e.token_id.as_deref(), Some("jti:at-7f3a9c"));
    assert_eq!(e.method, "GET");
    assert_eq!(
        e.path,
        format!("/fhir/r4/Observation?patient={pat}&category=vital-signs&_count=50")
    );
    assert_eq!(e.interaction, Some(Interaction::Search));
    assert_eq!(e.resource_type.as_deref(), Some("Observation"));
    assert_eq!(e.compartment, None);
    assert_eq!(e.patient, Some(pat.clone()));
    assert_eq!(e.required.as_deref(), Some("patient/Observation.s"));
    assert_eq!(e.granted_covered, Some(true));
    assert_eq!(e.status, Some(200));
    assert_eq!(e.outcome, AccessOutcome::Allowed);
    assert_eq!(e.bytes, Some(5120));
    assert_eq!(e.latency_ms, Some(42.5));
    assert_eq!(e.ip.as_deref(), Some("10.1.2.3"));
    assert_eq!(e.user_agent.as_deref(), Some("CardioApp/2.4.1"));
    assert_eq!(e.source, "push");
    assert_eq!(e.source_file.as_deref(), Some("/var/log/sw.ndjson"));
    assert_eq!(e.source_offset, Some(4096));
    assert_no_raw(&events, &[&token, RAW_PATIENT, RAW_USER, "eyJ"]);
    let json = serde_json::to_value(&events[0]).unwrap();
    assert_eq!(json["stream"], "access");
}

#[test]
fn access_enrichment_from_the_path_and_the_token() {
    let token = jwt();
    let p = privacy();
    let pat = p.pseudonym(IdKind::Patient, RAW_PATIENT);
    // Compartment search; scopes from the JWT; outcome from status.
    let line = format!(
        r#"{{"stream":"access","ts":"2026-11-23T10:01:00Z","token":"{token}","method":"GET","path":"/fhir/r4/Patient/{RAW_PATIENT}/Condition","status":403}}"#
    );
    let events = parse(&line).unwrap();
    let Parsed::Access(e) = &events[0] else {
        panic!()
    };
    assert_eq!(e.compartment, Some(format!("Patient/{pat}")));
    assert_eq!(e.patient, Some(pat.clone()));
    assert_eq!(e.path, format!("/fhir/r4/Patient/{pat}/Condition"));
    assert_eq!(e.required.as_deref(), Some("patient/Condition.s"));
    assert_eq!(e.granted_covered, Some(false));
    assert_eq!(e.outcome, AccessOutcome::Denied);
    assert_eq!(e.client_id.as_deref(), Some("cardio-app"));
    assert_no_raw(&events, &[&token, RAW_PATIENT, RAW_USER]);

    // No scopes anywhere: coverage unknown; patient from the launch context.
    let line = r#"{"stream":"access","ts":"2026-11-23T10:01:00Z","token":"opaque-token-123456","method":"GET","path":"/fhir/r4/Observation/obs-1","outcome":"allowed"}"#;
    let Parsed::Access(e) = &parse(line).unwrap()[0] else {
        panic!()
    };
    assert_eq!(e.interaction, Some(Interaction::Read));
    assert_eq!(e.required.as_deref(), Some("user/Observation.r"));
    assert_eq!(e.granted_covered, None);
    assert_eq!(e.status, None);
    assert!(e.token_id.as_deref().unwrap().starts_with("h:"));
    assert!(!e.path.contains("obs-1"));

    // Not a FHIR path: still redacted, no interaction.
    let line = r#"{"stream":"access","ts":"2026-11-23T10:01:00Z","method":"GET","path":"/health/12345","status":200}"#;
    let Parsed::Access(e) = &parse(line).unwrap()[0] else {
        panic!()
    };
    assert_eq!(e.interaction, None);
    assert_eq!(e.required, None);
    assert!(!e.path.contains("12345"), "{}", e.path);

    // Explicit patient wins; empty scopes cover nothing.
    let line = r#"{"stream":"access","ts":"2026-11-23T10:01:00Z","method":"GET","path":"/fhir/r4/Observation?code=1","status":200,"patient":12345,"scopes":[]}"#;
    let Parsed::Access(e) = &parse(line).unwrap()[0] else {
        panic!()
    };
    assert_eq!(e.patient, Some(p.pseudonym(IdKind::Patient, "12345")));
    assert_eq!(e.granted_covered, Some(false));
}

fn one_access(line: &str) -> scopewatch_model::events::AccessEvent {
    let mut events = parse(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(events.len(), 1);
    match events.pop().unwrap() {
        Parsed::Access(e) => e,
        other => panic!("{other:?}"),
    }
}

#[test]
fn access_token_expiry_and_tenant() {
    // Explicit fields, with an already reduced token id.
    let e = one_access(
        r#"{"stream":"access","ts":"2026-11-23T11:30:00Z","tenant":"north","token_id":"jti:at-1","expires_at":"2026-11-23T11:00:00Z","token_tenant":"south","method":"GET","path":"/fhir/r4/Patient","status":200}"#,
    );
    assert_eq!(e.token_id.as_deref(), Some("jti:at-1"));
    assert_eq!(
        e.expires_at,
        Timestamp::parse_rfc3339("2026-11-23T11:00:00Z")
    );
    assert!(e.ts > e.expires_at.unwrap(), "an expired token");
    assert_eq!(e.token_tenant.as_deref(), Some("south"));
    assert_eq!(e.tenant, "north");
    // `expires_at` as epoch milliseconds, like `ts`.
    let e = one_access(
        r#"{"stream":"access","ts":1795428060250,"expires_at":1795431600000,"method":"GET","path":"/fhir/r4/Patient","status":200}"#,
    );
    assert_eq!(e.expires_at, Some(Timestamp(1_795_431_600_000_000)));
    assert_eq!(e.token_tenant, None);

    // A JWT's claims fill them when the line does not: `exp`, and `iss`
    // as a tenant name (Keycloak's realm).
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let with_iss = format!(
        "{}.{}.c2lnbmF0dXJl",
        b64(r#"{"alg":"RS256","typ":"JWT"}"#),
        b64(
            r#"{"jti":"at-iss","client_id":"cardio-app","iss":"https://auth.example.org/realms/east","exp":1795431600}"#
        )
    );
    let e = one_access(&format!(
        r#"{{"stream":"access","ts":1795428060250,"token":"Bearer {with_iss}","method":"GET","path":"/fhir/r4/Patient","status":200}}"#
    ));
    assert_eq!(e.token_id.as_deref(), Some("jti:at-iss"));
    assert_eq!(e.expires_at, Some(Timestamp(1_795_431_600_000_000)));
    assert_eq!(e.token_tenant.as_deref(), Some("east"));
    assert_eq!(e.tenant, "default-tenant");
    // The line's own fields win over the claims.
    let e = one_access(&format!(
        r#"{{"stream":"access","ts":1795428060250,"token":"{with_iss}","expires_at":"2026-11-23T12:00:00Z","token_tenant":"west","method":"GET","path":"/fhir/r4/Patient","status":200}}"#
    ));
    assert_eq!(
        e.expires_at,
        Timestamp::parse_rfc3339("2026-11-23T12:00:00Z")
    );
    assert_eq!(e.token_tenant.as_deref(), Some("west"));
    // The module's own access example names realm north, exp 11:00.
    let doc = include_str!("../src/formats/canonical.rs");
    let example = doc
        .lines()
        .filter_map(|l| l.strip_prefix("//! "))
        .find(|l| l.starts_with(r#"{"stream":"access""#))
        .unwrap();
    let e = one_access(example);
    assert_eq!(e.token_tenant.as_deref(), Some("north"));
    assert_eq!(
        e.expires_at,
        Timestamp::parse_rfc3339("2026-11-23T11:00:00Z")
    );

    // A token without `iss`: no tenant; without `exp` either: nothing.
    let e = one_access(&format!(
        r#"{{"stream":"access","ts":1795428060250,"token":"{}","method":"GET","path":"/fhir/r4/Patient","status":200}}"#,
        jwt()
    ));
    assert_eq!(e.expires_at, Some(Timestamp(1_795_431_600_000_000)));
    assert_eq!(e.token_tenant, None);
    let bare = format!(
        "{}.{}.c2lnbmF0dXJl",
        b64(r#"{"alg":"none"}"#),
        b64(r#"{"jti":"at-bare","scope":"patient/*.rs"}"#)
    );
    let e = one_access(&format!(
        r#"{{"stream":"access","ts":1795428060250,"token":"{bare}","method":"GET","path":"/fhir/r4/Patient","status":200}}"#
    ));
    assert_eq!(e.token_id.as_deref(), Some("jti:at-bare"));
    assert_eq!(e.expires_at, None);
    assert_eq!(e.token_tenant, None);
    // An opaque token, or none: nothing; an empty `token_tenant` is absent.
    for extra in [
        r#""token":"8xLOxBtZp8QZ3m7s0cVq2yW4kR9dE1fJ","#,
        r#""token_tenant":"","#,
        "",
    ] {
        let e = one_access(&format!(
            r#"{{"stream":"access","ts":1795428060250,{extra}"method":"GET","path":"/fhir/r4/Patient","status":200}}"#
        ));
        assert_eq!(e.expires_at, None, "{extra}");
        assert_eq!(e.token_tenant, None, "{extra}");
    }

    // Wrong values are errors that name the field.
    let err = parse(
        r#"{"stream":"access","ts":1,"expires_at":"tomorrow","method":"GET","path":"/fhir/r4/Patient","status":200}"#,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "field `expires_at`: not an RFC 3339 timestamp"
    );
    let err = parse(
        r#"{"stream":"access","ts":1,"token_tenant":7,"method":"GET","path":"/fhir/r4/Patient","status":200}"#,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("field `token_tenant`: expected a string"),
        "{err}"
    );
}

#[test]
fn blank_lines_are_skipped() {
    assert!(parse("").unwrap().is_empty());
    assert!(parse("   \r").unwrap().is_empty());
}

/// Each bad line gives its specific reason, and the reason never quotes
/// the raw values of the line.
#[test]
fn bad_lines_give_specific_reasons() {
    let secret = "pat-SECRET-4711";
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            b"{\"stream\":\"auth\",\"user\":\"\xff\xfe\"}".to_vec(),
            "invalid UTF-8 at byte 25",
        ),
        (
            format!(r#"{{"stream":"access","patient":"{secret}","ts":"2026-11-2"#).into_bytes(),
            "truncated JSON at column",
        ),
        (
            format!(r#"{{"stream":"metrics","ts":1,"user":"{secret}"}}"#).into_bytes(),
            "unknown stream `metrics`",
        ),
        (
            format!(r#"{{"stream":"{secret}","ts":1}}"#).into_bytes(),
            "unknown stream (a value of 15 characters, not shown)",
        ),
        (
            format!(r#"{{"stream":"auth","ts":1,"kind":"foo","user":"{secret}"}}"#).into_bytes(),
            "unknown auth kind `foo`",
        ),
        (
            format!(r#"{{"stream":"auth","ts":1,"kind":"{secret}"}}"#).into_bytes(),
            "unknown auth kind (a value of 15 characters, not shown)",
        ),
        (
            format!(r#"{{"stream":"access","ts":1,"method":"GET","path":"/fhir/r4/Patient/{secret}","status":"200"}}"#)
                .into_bytes(),
            "field `status`: expected a number, found string",
        ),
        (
            br#"{"stream":"access","ts":1,"method":"GET","path":"/x","status":70000}"#.to_vec(),
            "field `status`: out of range",
        ),
        (
            format!(r#"{{"stream":"auth","kind":"token","user":"{secret}"}}"#).into_bytes(),
            "missing field `ts`",
        ),
        (
            format!(r#"{{"stream":"auth","ts":"{secret}","kind":"token"}}"#).into_bytes(),
            "field `ts`: not an RFC 3339 timestamp",
        ),
        (
            br#"{"stream":"auth","ts":true,"kind":"token"}"#.to_vec(),
            "field `ts`: expected an RFC 3339 string or epoch milliseconds, found boolean",
        ),
        (
            format!(r#"{{"ts":1,"user":"{secret}"}}"#).into_bytes(),
            "missing field `stream`",
        ),
        (
            format!(r#"{{"stream":"access","ts":1,"path":"/x/{secret}","status":200}}"#).into_bytes(),
            "missing field `method`",
        ),
        (
            br#"{"stream":"access","ts":1,"method":"GET","path":"/x"}"#.to_vec(),
            "missing field `status` (or `outcome`)",
        ),
        (
            format!(r#"{{"stream":"auth","ts":1,"kind":"token","user":{{"id":"{secret}"}}}}"#)
                .into_bytes(),
            "field `user`: expected a string, found object",
        ),
        (
            format!(r#"{{"stream":"auth","ts":1,"kind":"token","env":"{secret}"}}"#).into_bytes(),
            "field `env`: expected `prod`, `sandbox` or `test`",
        ),
        (
            format!(r#"{{"stream":"auth","ts":1,"kind":"token","scopes_granted":[1,"{secret}"]}}"#)
                .into_bytes(),
            "field `scopes_granted`: expected a string or an array of strings, found number",
        ),
        (
            format!(r#"["auth","{secret}"]"#).into_bytes(),
            "expected a JSON object, found array",
        ),
        (
            format!(r#"{secret} GET /fhir/Patient"#).into_bytes(),
            "expected a JSON object, found text that is not JSON",
        ),
        (
            format!(r#"{{"stream":"auth","ts":1,"kind":"token","user":"{secret}"}} trailing"#)
                .into_bytes(),
            "invalid JSON at column",
        ),
        (
            format!(r#"{{"stream":"auth","stream":"auth","user":"{secret}"}}"#).into_bytes(),
            "duplicate field `stream`",
        ),
    ];
    for (line, want) in cases {
        let err = match parse_with(&line, Some("t")) {
            Ok(events) => panic!("{} parsed: {events:?}", String::from_utf8_lossy(&line)),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains(want),
            "{}\n gave `{err}`, expected `{want}`",
            String::from_utf8_lossy(&line)
        );
        assert!(!err.contains(secret), "`{err}` quotes the raw value");
        assert!(!err.contains("SECRET"), "`{err}` quotes the raw value");
    }
}

#[test]
fn the_tenant_must_come_from_somewhere() {
    let line = br#"{"stream":"auth","ts":1,"kind":"token"}"#;
    let err = parse_with(line, None).unwrap_err();
    assert_eq!(err, ParseError::MissingField("tenant".into()));
    assert_eq!(err.to_string(), "missing field `tenant`");
    let ok = parse_with(line, Some("fallback")).unwrap();
    let Parsed::Auth(e) = &ok[0] else { panic!() };
    assert_eq!(e.tenant, "fallback");
}

#[test]
fn the_module_doc_examples_parse() {
    let doc = include_str!("../src/formats/canonical.rs");
    let examples: Vec<&str> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("//! {"))
        .collect();
    assert_eq!(examples.len(), 2);
    for example in examples {
        let line = format!("{{{example}");
        let events = parse(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(events.len(), 1);
        assert_no_raw(
            &events,
            &["pat-123", "kc-user-42", "8xLOxBtZp8QZ3m7s0cVq2yW4kR9dE1fJ"],
        );
    }
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Arbitrary lines never panic, and an error never quotes a value
        /// of the line (values with digits: a plain word such as a stream
        /// name may be shown, see `ValueHint`).
        #[test]
        fn any_line_parses_or_fails_cleanly(
            fields in proptest::collection::vec(
                (
                    prop_oneof![
                        Just("stream"), Just("ts"), Just("kind"), Just("status"),
                        Just("method"), Just("path"), Just("scopes"), Just("user"),
                        Just("token"), Just("expires_at"), Just("env"), Just("bytes"),
                    ],
                    prop_oneof![
                        Just("\"auth\"".to_string()),
                        Just("\"access\"".to_string()),
                        Just("\"token\"".to_string()),
                        Just("1795428000000".to_string()),
                        Just("-1e300".to_string()),
                        Just("[\"SECRET42VALUE\",2]".to_string()),
                        Just("{\"a\":\"SECRET42VALUE\"}".to_string()),
                        Just("\"SECRET42VALUE\"".to_string()),
                        Just("\"/fhir/r4/Patient/SECRET42VALUE\"".to_string()),
                        Just("null".to_string()),
                        Just("true".to_string()),
                    ],
                ),
                0..8,
            ),
            cut in 0usize..400,
        ) {
            let body: Vec<String> =
                fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            let line = format!("{{{}}}", body.join(","));
            let line = &line.as_bytes()[..cut.min(line.len())];
            match parse_with(line, Some("t")) {
                Ok(events) => {
                    let json = serde_json::to_string(&events).unwrap();
                    prop_assert!(!json.contains("SECRET42VALUE"), "{}", json);
                }
                Err(e) => {
                    let msg = e.to_string();
                    prop_assert!(!msg.contains("SECRET"), "{}", msg);
                }
            }
        }
    }
}
