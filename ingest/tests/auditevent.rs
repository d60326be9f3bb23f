//! The `fhir-auditevent` format: the official HL7 R4/R5 AuditEvent examples
//! (each file passed whole, as one record), IHE BALP-style events, Bundles and
//! NDJSON lines; ids pseudonymised, tokens reduced to ids, errors that never
//! quote a value.

use base64::Engine;
use scopewatch_ingest::adapter::{Adapter, LineContext, ParseError, Parsed};
use scopewatch_ingest::formats::auditevent::AuditEvent;
use scopewatch_ingest::privacy::{IdKind, Pseudonymiser};
use scopewatch_model::config::SourceOptions;
use scopewatch_model::events::{
    AccessEvent, AccessOutcome, AuthEvent, AuthKind, AuthOutcome, Env, Timestamp,
};
use scopewatch_model::request::{FhirBase, Interaction};

const HL7_CLIENT_OID: &str = "2.16.840.1.113883.4.2";

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/third-party/{name}",
        // Read at run time: a test binary may be reused from another
        // checkout sharing the target directory.
        std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn privacy() -> Pseudonymiser {
    Pseudonymiser::from_key([9; 32])
}

fn patient(raw: &str) -> String {
    privacy().pseudonym(IdKind::Patient, raw)
}

fn user(raw: &str) -> String {
    privacy().pseudonym(IdKind::User, raw)
}

fn ts(text: &str) -> Timestamp {
    Timestamp::parse_rfc3339(text).unwrap()
}

fn parse_with(record: &[u8], tenant: Option<&str>) -> Result<Vec<Parsed>, ParseError> {
    let p = privacy();
    let base = FhirBase::parse("/fhir/r4").unwrap();
    let opts = SourceOptions::default();
    let ctx = LineContext {
        source: "audit",
        event_id: "ev",
        source_file: Some("/var/log/fhir/audit.ndjson"),
        offset: Some(512),
        tenant,
        env: Env::Prod,
        privacy: &p,
        fhir_base: &base,
        options: &opts,
    };
    let mut out = Vec::new();
    AuditEvent.parse_line(record, &ctx, &mut out)?;
    Ok(out)
}

fn parse(record: &str) -> Result<Vec<Parsed>, ParseError> {
    parse_with(record.as_bytes(), Some("north"))
}

fn one_access(record: &str) -> AccessEvent {
    let events = parse(record).unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    match events.into_iter().next() {
        Some(Parsed::Access(e)) => e,
        other => panic!("expected an access event, got {other:?}"),
    }
}

fn one_auth(record: &str) -> AuthEvent {
    let events = parse(record).unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    match events.into_iter().next() {
        Some(Parsed::Auth(e)) => e,
        other => panic!("expected an auth event, got {other:?}"),
    }
}

fn assert_no_raw<T: serde::Serialize + std::fmt::Debug>(event: &T, raws: &[&str]) {
    let json = serde_json::to_string(event).unwrap();
    for raw in raws {
        assert!(!json.contains(raw), "{raw} leaked into {json}");
    }
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn jwt(claims: &str) -> String {
    let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!(
        "{}.{}.c2lnbmF0dXJl",
        enc(r#"{"alg":"RS256","typ":"JWT"}"#),
        enc(claims)
    )
}

// ---------------------------------------------------------------------------
// The HL7 examples, each file whole

#[test]
fn r5_rest_vread_example() {
    let e = one_access(&fixture("hl7_r5_AuditEvent-example-rest.json"));
    let p = patient("example");
    assert_eq!(e.event_id, "ev");
    assert_eq!(e.ts, ts("2013-06-20T23:42:24Z"));
    assert_eq!(e.tenant, "north");
    assert_eq!(e.env, Env::Prod);
    assert_eq!(e.method, "GET");
    assert_eq!(e.path, format!("Patient/{p}/_history/1"));
    assert_eq!(e.interaction, Some(Interaction::Vread));
    assert_eq!(e.resource_type.as_deref(), Some("Patient"));
    // Only compartment searches have a compartment.
    assert_eq!(e.compartment, None);
    assert_eq!(e.patient, Some(p));
    assert_eq!(e.required.as_deref(), Some("patient/Patient.r"));
    assert_eq!(e.granted_covered, None);
    // The non-requestor agent with an identifier (DICOM Source Role ID).
    assert_eq!(e.client_id.as_deref(), Some(HL7_CLIENT_OID));
    assert_eq!(e.user, Some(user("95")));
    assert_eq!(e.token_id, None);
    assert_eq!(e.expires_at, None);
    assert_eq!(e.token_tenant, None);
    assert_eq!(e.outcome, AccessOutcome::Allowed);
    assert_eq!(e.status, None);
    // Its only network address is a machine name, not an IP.
    assert_eq!(e.ip, None);
    assert_eq!(e.source, "audit");
    assert_eq!(e.source_file.as_deref(), Some("/var/log/fhir/audit.ndjson"));
    assert_eq!(e.source_offset, Some(512));
    assert_no_raw(&e, &["Patient/example", "\"95\""]);
}

#[test]
fn r5_search_example_decodes_its_query() {
    // entity.query is base64 of
    // http://fhir-dev.healthintersections.com.au/open/Encounter?participant=13
    let e = one_access(&fixture("hl7_r5_AuditEvent-example-search.json"));
    assert_eq!(e.ts, ts("2015-08-22T23:42:24Z"));
    assert_eq!(e.method, "GET");
    assert!(
        e.path
            .starts_with("http://fhir-dev.healthintersections.com.au/open/Encounter?participant="),
        "{}",
        e.path
    );
    assert!(!e.path.contains("participant=13"), "{}", e.path);
    assert_eq!(e.interaction, Some(Interaction::Search));
    assert_eq!(e.resource_type.as_deref(), Some("Encounter"));
    assert_eq!(e.required.as_deref(), Some("user/Encounter.s"));
    assert_eq!(e.patient, None);
    assert_eq!(e.user, Some(user("95")));
    assert_eq!(e.client_id.as_deref(), Some(HL7_CLIENT_OID));
    assert_eq!(e.outcome, AccessOutcome::Allowed);
}

#[test]
fn r5_create_example_synthesises_a_post() {
    let e = one_access(&fixture(
        "hl7_r5_AuditEvent-example-rest-create-traceID.json",
    ));
    let p = patient("example");
    assert_eq!(e.ts, ts("2019-12-04T11:59:28.646Z"));
    assert_eq!(e.method, "POST");
    assert_eq!(e.path, "Patient");
    assert_eq!(e.interaction, Some(Interaction::Create));
    assert_eq!(e.resource_type.as_deref(), Some("Patient"));
    // The model's rule: a create names no patient in its path, so with no
    // granted scopes known the permission is a user one.
    assert_eq!(e.required.as_deref(), Some("user/Patient.c"));
    assert_eq!(e.patient, Some(p));
    assert_eq!(e.user, Some(user("95")));
    assert_eq!(e.outcome, AccessOutcome::Allowed);
    assert_no_raw(&e, &["Patient/example", "6b507ee2d716780372c255df69ece653"]);
}

#[test]
fn r5_error_example_is_an_errored_create() {
    // A create whose only entity is a contained OperationOutcome: the
    // resource type is unknown, the interaction is the event's own.
    let e = one_access(&fixture("hl7_r5_AuditEvent-example-error.json"));
    assert_eq!(e.ts, ts("2017-09-07T23:42:24Z"));
    assert_eq!(e.method, "POST");
    assert_eq!(e.path, "");
    assert_eq!(e.interaction, Some(Interaction::Create));
    assert_eq!(e.resource_type, None);
    assert_eq!(e.required, None);
    assert_eq!(e.outcome, AccessOutcome::Error);
    assert_eq!(e.status, None);
    assert_eq!(e.user, Some(user("95")));
    assert_eq!(e.client_id.as_deref(), Some(HL7_CLIENT_OID));
}

#[test]
fn r5_login_example() {
    let e = one_auth(&fixture("hl7_r5_AuditEvent-example-login.json"));
    assert_eq!(e.event_id, "ev");
    assert_eq!(e.ts, ts("2013-06-20T23:41:23Z"));
    assert_eq!(e.tenant, "north");
    assert_eq!(e.kind, AuthKind::Authorize);
    assert_eq!(e.outcome, AuthOutcome::Success);
    assert_eq!(e.error, None);
    assert_eq!(e.user, Some(user("95")));
    assert_eq!(e.client_id.as_deref(), Some(HL7_CLIENT_OID));
    assert_eq!(e.token_id, None);
    assert_eq!(e.ip, None);
    assert_eq!(e.scopes_requested, None);
    assert_eq!(e.source_offset, Some(512));
    assert_no_raw(&e, &["\"95\"", "Grahame"]);
}

#[test]
fn r5_logout_example() {
    let e = one_auth(&fixture("hl7_r5_AuditEvent-example-logout.json"));
    assert_eq!(e.ts, ts("2013-06-20T23:46:41Z"));
    assert_eq!(e.kind, AuthKind::Logout);
    assert_eq!(e.outcome, AuthOutcome::Success);
    assert_eq!(e.user, Some(user("95")));
    // The client's address is a machine name; the user's is an IP.
    assert_eq!(e.ip.as_deref(), Some("127.0.0.1"));
}

#[test]
fn r5_breakglass_and_r4_application_start_are_skipped() {
    for name in [
        "hl7_r5_AuditEvent-example-breakglass-start.json",
        "hl7_r4_auditevent-example.json",
    ] {
        assert_eq!(parse(&fixture(name)).unwrap(), vec![], "{name}");
    }
}

#[test]
fn an_ndjson_line_gives_the_same_event_as_the_pretty_file() {
    let pretty = fixture("hl7_r5_AuditEvent-example-search.json");
    let value: serde_json::Value = serde_json::from_str(&pretty).unwrap();
    let line = serde_json::to_string(&value).unwrap();
    assert!(!line.contains('\n'));
    assert_eq!(one_access(&line), one_access(&pretty));
}

// ---------------------------------------------------------------------------
// Bundles

#[test]
fn a_bundle_gives_one_event_per_audit_event() {
    let rest: serde_json::Value =
        serde_json::from_str(&fixture("hl7_r5_AuditEvent-example-rest.json")).unwrap();
    let login: serde_json::Value =
        serde_json::from_str(&fixture("hl7_r5_AuditEvent-example-login.json")).unwrap();
    let bundle = serde_json::json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {"resource": rest, "search": {"mode": "match"}},
            {"resource": {"resourceType": "Patient", "id": "pat-included"}, "search": {"mode": "include"}},
            {"resource": login}
        ]
    });
    let events = parse(&serde_json::to_string_pretty(&bundle).unwrap()).unwrap();
    assert_eq!(events.len(), 2, "{events:?}");
    let Parsed::Access(a) = &events[0] else {
        panic!("{events:?}")
    };
    let Parsed::Auth(b) = &events[1] else {
        panic!("{events:?}")
    };
    assert_eq!(a.event_id, "ev");
    assert_eq!(a.interaction, Some(Interaction::Vread));
    assert_eq!(b.event_id, "ev-1");
    assert_eq!(b.kind, AuthKind::Authorize);
}

#[test]
fn a_bad_entry_fails_the_bundle_and_is_named() {
    let bundle = r#"{"resourceType":"Bundle","entry":[
        {"resource":{"resourceType":"AuditEvent","type":{"code":"rest"},"subtype":[{"code":"read"}],"recorded":"2026-01-01T00:00:00Z","entity":[{"what":{"reference":"Patient/pat-1"}}]}},
        {"resource":{"resourceType":"AuditEvent","type":{"code":"rest"},"subtype":[{"code":"read"}],"entity":[{"what":{"reference":"Patient/pat-2"}}]}}
    ]}"#;
    let err = parse(bundle).unwrap_err();
    assert_eq!(
        err,
        ParseError::MissingField("entry[1].resource.recorded".into())
    );
}

// ---------------------------------------------------------------------------
// IHE BALP

/// An R4 BALP read/search event: the OAuth client in `who.identifier`, the
/// user as the requestor with the token's jti in `policy`, the request in
/// `entity.query`, the X-Request-Id in a transaction entity.
fn balp_event(query: &str) -> String {
    serde_json::json!({
        "resourceType": "AuditEvent",
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": "search-type"}],
        "action": "E",
        "recorded": "2026-11-23T10:01:00.250Z",
        "outcome": "0",
        "agent": [
            {
                "type": {"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110150", "display": "Application"}]},
                "who": {"identifier": {"value": "cardio-app"}},
                "requestor": false,
                "network": {"address": "10.1.2.3", "type": "2"}
            },
            {
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
                "who": {"identifier": {"system": "https://auth.example.org", "value": "kc-user-42"}},
                "requestor": true,
                "policy": ["urn:ietf:params:oauth:jti:at-7f3a9c"]
            },
            {
                "type": {"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110152"}]},
                "who": {"reference": "Device/fhir-server"},
                "requestor": false,
                "network": {"address": "10.9.9.9", "type": "2"}
            }
        ],
        "source": {"observer": {"display": "fhir.example.org"}},
        "entity": [
            {
                "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1"},
                "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1"},
                "what": {"reference": "Patient/pat-1"}
            },
            {
                "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2"},
                "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "24"},
                "query": b64(query)
            },
            {
                "type": {"system": "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType", "code": "XrequestId"},
                "what": {"identifier": {"value": "req-5c1d"}}
            }
        ]
    })
    .to_string()
}

#[test]
fn a_balp_search_event() {
    let e = one_access(&balp_event(
        "GET /fhir/r4/Observation?patient=pat-1&category=laboratory HTTP/1.1",
    ));
    let p = patient("pat-1");
    assert_eq!(e.ts, ts("2026-11-23T10:01:00.250Z"));
    assert_eq!(e.method, "GET");
    assert_eq!(
        e.path,
        format!("/fhir/r4/Observation?patient={p}&category=laboratory")
    );
    assert_eq!(e.interaction, Some(Interaction::Search));
    assert_eq!(e.resource_type.as_deref(), Some("Observation"));
    assert_eq!(e.patient, Some(p));
    assert_eq!(e.required.as_deref(), Some("patient/Observation.s"));
    // No scopes are known from an AuditEvent without the token itself.
    assert_eq!(e.granted_covered, None);
    assert_eq!(e.client_id.as_deref(), Some("cardio-app"));
    assert_eq!(e.user, Some(user("kc-user-42")));
    assert_eq!(e.token_id.as_deref(), Some("jti:at-7f3a9c"));
    // A jti alone tells neither the token's expiry nor its issuer.
    assert_eq!(e.expires_at, None);
    assert_eq!(e.token_tenant, None);
    assert_eq!(e.ip.as_deref(), Some("10.1.2.3"));
    assert_eq!(e.outcome, AccessOutcome::Allowed);
    assert_eq!(e.status, None);
    assert_no_raw(&e, &["pat-1", "kc-user-42", "req-5c1d"]);
}

#[test]
fn a_logged_bearer_token_gives_its_id_and_scopes() {
    let token = jwt(
        r#"{"jti":"at-99","client_id":"cardio-app","sub":"kc-user-42","scope":"launch/patient patient/Observation.rs","patient":"pat-1"}"#,
    );
    let e = one_access(&balp_event(&format!(
        "GET /fhir/r4/Observation?patient=pat-1 HTTP/1.1\r\nHost: fhir.example.org\r\nAuthorization: Bearer {token}\r\nUser-Agent: CardioApp/2.4.1\r\n\r\n"
    )));
    // The token's own id wins over the policy's jti.
    assert_eq!(e.token_id.as_deref(), Some("jti:at-99"));
    assert_eq!(e.required.as_deref(), Some("patient/Observation.s"));
    assert_eq!(e.granted_covered, Some(true));
    assert_eq!(e.user_agent.as_deref(), Some("CardioApp/2.4.1"));
    // No `exp`, no `iss`.
    assert_eq!(e.expires_at, None);
    assert_eq!(e.token_tenant, None);
    assert_no_raw(&e, &[&token, "pat-1"]);

    // A logged token with `exp` and `iss` gives its expiry and issuing tenant.
    let token = jwt(
        r#"{"jti":"at-100","client_id":"cardio-app","scope":"patient/Observation.rs","iss":"https://auth.example.org/realms/south","exp":1795431600}"#,
    );
    let e = one_access(&balp_event(&format!(
        "GET /fhir/r4/Observation?patient=pat-1 HTTP/1.1\r\nAuthorization: Bearer {token}\r\n\r\n"
    )));
    assert_eq!(e.token_id.as_deref(), Some("jti:at-100"));
    assert_eq!(e.expires_at, Some(ts("2026-11-23T11:00:00Z")));
    assert_eq!(e.token_tenant.as_deref(), Some("south"));
    assert_eq!(e.tenant, "north");
    assert_no_raw(&e, &[&token]);
}

#[test]
fn a_bare_query_string_takes_the_target_type() {
    let mut v: serde_json::Value =
        serde_json::from_str(&balp_event("patient=pat-1&code=1234-5")).unwrap();
    // The data entity names the type searched.
    v["entity"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"what": {"reference": "Observation/obs-1"}}));
    let e = one_access(&v.to_string());
    assert_eq!(e.method, "GET");
    assert_eq!(
        e.path,
        format!("Observation?patient={}&code=1234-5", patient("pat-1"))
    );
    assert_eq!(e.interaction, Some(Interaction::Search));
    assert_eq!(e.resource_type.as_deref(), Some("Observation"));
}

#[test]
fn a_post_search_reads_its_form_body() {
    let e = one_access(&balp_event(
        "POST /r4/Observation/_search HTTP/1.1\nHost: test.fhir.org\nContent-Type: application/x-www-form-urlencoded\n\npatient=pat-1&_count=10\n",
    ));
    assert_eq!(e.method, "POST");
    assert_eq!(e.interaction, Some(Interaction::Search));
    assert_eq!(e.resource_type.as_deref(), Some("Observation"));
    assert_eq!(e.patient, Some(patient("pat-1")));
    assert!(
        e.path.starts_with("/r4/Observation/_search?patient=p_"),
        "{}",
        e.path
    );
    assert_no_raw(&e, &["pat-1"]);
}

#[test]
fn policy_jtis_take_the_privacy_modules_token_id_form() {
    // The same id `Pseudonymiser::token_id` gives a JWT with that jti, plain
    // or hashed, so the access event joins the token's grant.
    let long = "x".repeat(200);
    for jti in ["at-7f3a9c", "odd jti/with spaces", long.as_str()] {
        let mut v: serde_json::Value = serde_json::from_str(&balp_event(
            "GET /fhir/r4/Observation?patient=pat-1 HTTP/1.1",
        ))
        .unwrap();
        v["agent"][1]["policy"] = serde_json::json!([format!("urn:ietf:params:oauth:jti:{jti}")]);
        let e = one_access(&v.to_string());
        let expected = privacy().token_id(&jwt(&serde_json::json!({ "jti": jti }).to_string()));
        assert_eq!(e.token_id, Some(expected), "{jti}");
    }
    // A policy URI that is not a jti is not a token.
    let mut v: serde_json::Value =
        serde_json::from_str(&balp_event("GET /fhir/r4/Observation HTTP/1.1")).unwrap();
    v["agent"][1]["policy"] = serde_json::json!(["http://policy.example.org/consent/7"]);
    assert_eq!(one_access(&v.to_string()).token_id, None);
}

// ---------------------------------------------------------------------------
// R4 outcomes and other shapes

#[test]
fn an_r4_forbidden_read_on_one_ndjson_line() {
    let line = r#"{"resourceType":"AuditEvent","type":{"system":"http://terminology.hl7.org/CodeSystem/audit-event-type","code":"rest"},"subtype":[{"system":"http://hl7.org/fhir/restful-interaction","code":"read"}],"action":"R","recorded":"2026-11-23T10:02:00+01:00","outcome":"8","outcomeDesc":"HTTP 403 Forbidden: scope does not cover Observation","agent":[{"who":{"reference":"Practitioner/prac-7"},"requestor":true,"network":{"address":"192.0.2.10","type":"2"}},{"type":{"coding":[{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"110150"}]},"who":{"identifier":{"value":"lab-viewer"}},"requestor":false}],"entity":[{"what":{"reference":"Patient/pat-1"},"role":{"system":"http://terminology.hl7.org/CodeSystem/object-role","code":"1"}},{"what":{"reference":"Observation/obs-77"}}]}"#;
    let e = one_access(line);
    assert_eq!(e.ts, ts("2026-11-23T09:02:00Z"));
    assert_eq!(e.method, "GET");
    assert!(e.path.starts_with("Observation/r_"), "{}", e.path);
    assert_eq!(e.interaction, Some(Interaction::Read));
    assert_eq!(e.resource_type.as_deref(), Some("Observation"));
    assert_eq!(e.patient, Some(patient("pat-1")));
    assert_eq!(e.status, Some(403));
    assert_eq!(e.outcome, AccessOutcome::Denied);
    assert_eq!(e.client_id.as_deref(), Some("lab-viewer"));
    assert_eq!(e.user, Some(user("Practitioner/prac-7")));
    assert_eq!(e.ip.as_deref(), Some("192.0.2.10"));
    assert_no_raw(&e, &["pat-1", "obs-77", "prac-7"]);
}

#[test]
fn an_r4_serious_failure_without_status_is_an_error() {
    let line = r#"{"resourceType":"AuditEvent","type":{"code":"rest"},"subtype":[{"code":"delete"}],"recorded":"2026-11-23T10:03:00Z","outcome":"8","outcomeDesc":"database unavailable","entity":[{"what":{"reference":"Observation/obs-77"}}]}"#;
    let e = one_access(line);
    assert_eq!(e.method, "DELETE");
    assert_eq!(e.interaction, Some(Interaction::Delete));
    assert_eq!(e.outcome, AccessOutcome::Error);
    assert_eq!(e.status, None);
}

#[test]
fn an_iua_token_event() {
    let request = "POST /oauth2/token HTTP/1.1\nHost: auth.example.org\nContent-Type: application/x-www-form-urlencoded\n\ngrant_type=refresh_token&refresh_token=rt-s3cr3t-value&scope=patient%2FObservation.rs+offline_access&client_secret=cs-s3cr3t\n";
    let record = serde_json::json!({
        "resourceType": "AuditEvent",
        "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110114"},
        "subtype": [{"system": "urn:ihe:event-type-code", "code": "ITI-71"}],
        "action": "E",
        "recorded": "2026-11-23T10:04:00Z",
        "outcome": "0",
        "agent": [
            {"type": {"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110150"}]},
             "who": {"identifier": {"value": "cardio-app"}}, "network": {"address": "10.1.2.3"}},
            {"type": {"coding": [{"code": "AuthzOauthService"}]}, "who": {"identifier": {"value": "auth.example.org"}}},
            {"who": {"identifier": {"value": "kc-user-42"}}, "requestor": true}
        ],
        "entity": [
            {"role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "24"}, "query": b64(request)},
            {"role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "13"},
             "what": {"identifier": {"value": "urn:ietf:params:oauth:jti:at-new-1"}},
             "detail": [{"type": "scope", "valueString": "patient/Observation.rs offline_access"}]}
        ]
    })
    .to_string();
    let e = one_auth(&record);
    assert_eq!(e.kind, AuthKind::Refresh);
    assert_eq!(e.outcome, AuthOutcome::Success);
    assert_eq!(e.grant_type.as_deref(), Some("refresh_token"));
    assert_eq!(e.client_id.as_deref(), Some("cardio-app"));
    assert_eq!(e.user, Some(user("kc-user-42")));
    assert_eq!(e.token_id.as_deref(), Some("jti:at-new-1"));
    assert_eq!(
        e.scopes_requested,
        Some(vec![
            "patient/Observation.rs".to_string(),
            "offline_access".to_string()
        ])
    );
    assert_eq!(e.scopes_granted, e.scopes_requested);
    assert_eq!(e.ip.as_deref(), Some("10.1.2.3"));
    assert_no_raw(&e, &["s3cr3t", "kc-user-42"]);
}

#[test]
fn a_failed_login_keeps_a_scrubbed_reason() {
    let mut v: serde_json::Value =
        serde_json::from_str(&fixture("hl7_r5_AuditEvent-example-login.json")).unwrap();
    v["outcome"] = serde_json::json!({
        "code": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-outcome", "code": "4"},
        "detail": [{"text": "invalid password for jane.doe@example.org"}]
    });
    let e = one_auth(&v.to_string());
    assert_eq!(e.kind, AuthKind::Authorize);
    assert_eq!(e.outcome, AuthOutcome::Failure);
    let error = e.error.unwrap();
    assert!(error.starts_with("invalid password for "), "{error}");
    assert!(!error.contains("jane.doe"), "{error}");
}

#[test]
fn r5_occurred_date_time_wins_over_recorded() {
    let mut v: serde_json::Value =
        serde_json::from_str(&fixture("hl7_r5_AuditEvent-example-rest.json")).unwrap();
    v["occurredDateTime"] = serde_json::json!("2013-06-20T23:40:00Z");
    assert_eq!(one_access(&v.to_string()).ts, ts("2013-06-20T23:40:00Z"));
}

// ---------------------------------------------------------------------------
// Errors

#[test]
fn errors_are_specific() {
    assert!(matches!(
        parse("hello"),
        Err(ParseError::NotAnObject("text that is not JSON"))
    ));
    assert!(matches!(
        parse(r#"{"resourceType":"AuditEvent","#),
        Err(ParseError::TruncatedJson(_))
    ));
    assert_eq!(parse("   "), Ok(vec![]));
    let err = parse(r#"{"resourceType":"Patient","id":"pat-1"}"#).unwrap_err();
    assert!(matches!(err, ParseError::Format(_)), "{err:?}");
    assert!(err.to_string().contains("`Patient`"), "{err}");
    assert_eq!(
        parse(r#"{"id":"x"}"#),
        Err(ParseError::MissingField("resourceType".into()))
    );
    let no_recorded = r#"{"resourceType":"AuditEvent","type":{"code":"rest"},"subtype":[{"code":"read"}],"entity":[{"what":{"reference":"Patient/pat-1"}}]}"#;
    assert_eq!(
        parse(no_recorded),
        Err(ParseError::MissingField("recorded".into()))
    );
    let rest = fixture("hl7_r5_AuditEvent-example-rest.json");
    assert_eq!(
        parse_with(rest.as_bytes(), None),
        Err(ParseError::MissingField("tenant".into()))
    );
}

#[test]
fn no_error_quotes_a_raw_value() {
    const RAW: &str = "pat-4711-secret";
    let records = [
        format!(r#"{{"resourceType":"{RAW}"}}"#),
        format!(r#"{{"resourceType":"Patient","id":"{RAW}"}}"#),
        format!(
            r#"{{"resourceType":"AuditEvent","recorded":"{RAW}","entity":[{{"what":{{"reference":"Patient/{RAW}"}}}}]}}"#
        ),
        format!(r#"{{"resourceType":"AuditEvent","recorded":["{RAW}"]}}"#),
        format!(
            r#"{{"resourceType":"AuditEvent","recorded":"2026-01-01T00:00:00Z","outcome":["{RAW}"]}}"#
        ),
        format!(
            r#"{{"resourceType":"AuditEvent","recorded":"2026-01-01T00:00:00Z","agent":"{RAW}"}}"#
        ),
        format!(
            r#"{{"resourceType":"Bundle","entry":[{{"resource":{{"resourceType":"AuditEvent","type":{{"code":"rest"}},"entity":[{{"what":{{"reference":"Patient/{RAW}"}}}}]}}}}]}}"#
        ),
        format!(r#"{{"resourceType":"AuditEvent","id":"{RAW}""#),
        format!(r#"{{"resourceType":"AuditEvent" "{RAW}"}}"#),
        format!(r#"["{RAW}"]"#),
    ];
    for record in &records {
        let err = parse(record).unwrap_err();
        let shown = err.to_string();
        assert!(!shown.contains(RAW), "{shown} (from {record})");
        assert!(!shown.contains("4711"), "{shown} (from {record})");
    }
}
