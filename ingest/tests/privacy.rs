//! Pseudonyms, token ids and redaction: nothing raw of PHI or credentials
//! survives, and the same id always gives the same pseudonym.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use base64::Engine;
use scopewatch_ingest::privacy::{jwt_claims, IdKind, PrivacyError, Pseudonymiser};

fn b64(json: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

fn jwt(payload: &str) -> String {
    format!(
        "{}.{}.{}",
        b64(r#"{"alg":"RS256","typ":"JWT","kid":"k1"}"#),
        b64(payload),
        "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
    )
}

fn p() -> Pseudonymiser {
    Pseudonymiser::from_key([42; 32])
}

#[test]
fn pseudonyms_are_stable_across_loads_and_the_key_is_created_once() {
    let dir = tempfile::tempdir().unwrap();
    let a = Pseudonymiser::load_or_create(dir.path(), None).unwrap();
    let key_path = dir.path().join("state/pseudonym.key");
    let meta = fs::metadata(&key_path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let first_key = fs::read(&key_path).unwrap();
    let modified = meta.modified().unwrap();

    let b = Pseudonymiser::load_or_create(dir.path(), None).unwrap();
    assert_eq!(fs::read(&key_path).unwrap(), first_key, "key rewritten");
    assert_eq!(
        fs::metadata(&key_path).unwrap().modified().unwrap(),
        modified
    );
    for kind in [
        IdKind::Patient,
        IdKind::User,
        IdKind::Encounter,
        IdKind::Resource,
    ] {
        assert_eq!(a.pseudonym(kind, "123"), b.pseudonym(kind, "123"));
    }
    // No temporary files left behind.
    let names: Vec<_> = fs::read_dir(dir.path().join("state"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec!["pseudonym.key"]);

    // Another data directory: another key, other pseudonyms.
    let other = tempfile::tempdir().unwrap();
    let c = Pseudonymiser::load_or_create(other.path(), None).unwrap();
    assert_ne!(
        a.pseudonym(IdKind::Patient, "123"),
        c.pseudonym(IdKind::Patient, "123")
    );
}

#[test]
fn a_configured_key_wins_and_is_validated() {
    let dir = tempfile::tempdir().unwrap();
    let hex_key = "0f".repeat(32);
    let a = Pseudonymiser::load_or_create(dir.path(), Some(&hex_key)).unwrap();
    assert!(!dir.path().join("state/pseudonym.key").exists());
    assert_eq!(
        a.pseudonym(IdKind::Patient, "1"),
        Pseudonymiser::from_key([0x0f; 32]).pseudonym(IdKind::Patient, "1")
    );
    let b64_key = base64::engine::general_purpose::STANDARD.encode([0x0f; 32]);
    let b = Pseudonymiser::load_or_create(dir.path(), Some(&b64_key)).unwrap();
    assert_eq!(
        a.pseudonym(IdKind::User, "x"),
        b.pseudonym(IdKind::User, "x")
    );
    let err = Pseudonymiser::load_or_create(dir.path(), Some("c2hvcnQ=")).unwrap_err();
    assert!(matches!(err, PrivacyError::BadConfiguredKey(_)), "{err}");
    assert!(err.to_string().contains("32 bytes"), "{err}");
    assert!(!err.to_string().contains("c2hvcnQ"), "{err}");
}

#[test]
fn a_key_file_readable_by_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    Pseudonymiser::load_or_create(dir.path(), None).unwrap();
    let key_path = dir.path().join("state/pseudonym.key");
    let key = fs::read(&key_path).unwrap();
    fs::set_permissions(&key_path, fs::Permissions::from_mode(0o640)).unwrap();
    let err = Pseudonymiser::load_or_create(dir.path(), None).unwrap_err();
    assert!(
        matches!(err, PrivacyError::InsecureKeyFile { mode: 0o640, .. }),
        "{err}"
    );
    let message = err.to_string();
    assert!(message.contains("chmod 600"), "{message}");
    assert!(message.contains("0640"), "{message}");
    // Refused, not replaced.
    assert_eq!(fs::read(&key_path).unwrap(), key);
    fs::set_permissions(&key_path, fs::Permissions::from_mode(0o604)).unwrap();
    assert!(Pseudonymiser::load_or_create(dir.path(), None).is_err());
    fs::set_permissions(&key_path, fs::Permissions::from_mode(0o400)).unwrap();
    assert!(Pseudonymiser::load_or_create(dir.path(), None).is_ok());
}

#[test]
fn a_broken_key_file_is_an_error_not_a_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    fs::create_dir_all(&state).unwrap();
    let path = state.join("pseudonym.key");
    fs::write(&path, "abcd\n").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    let err = Pseudonymiser::load_or_create(dir.path(), None).unwrap_err();
    assert!(matches!(err, PrivacyError::BadKeyFile { .. }), "{err}");
    assert_eq!(fs::read_to_string(&path).unwrap(), "abcd\n");
}

#[test]
fn kinds_and_ids_do_not_collide() {
    let p = p();
    let kinds = [
        IdKind::Patient,
        IdKind::User,
        IdKind::Encounter,
        IdKind::Resource,
    ];
    let all: Vec<String> = kinds.iter().map(|k| p.pseudonym(*k, "42")).collect();
    assert_eq!(all[0].get(..2), Some("p_"));
    assert_eq!(all[1].get(..2), Some("u_"));
    assert_eq!(all[2].get(..2), Some("e_"));
    assert_eq!(all[3].get(..2), Some("r_"));
    let digests: std::collections::HashSet<&str> = all.iter().map(|s| &s[2..]).collect();
    assert_eq!(digests.len(), 4, "{all:?}");
    assert_ne!(
        p.pseudonym(IdKind::Patient, "42"),
        p.pseudonym(IdKind::Patient, "43")
    );
    assert_ne!(
        p.pseudonym(IdKind::Patient, "42"),
        Pseudonymiser::from_key([1; 32]).pseudonym(IdKind::Patient, "42")
    );
}

#[test]
fn token_ids() {
    let p = p();
    let token = jwt(
        r#"{"jti":"4d6c1a7e-2b3f-4e5a-9c8d-7f6e5d4c3b2a","client_id":"cardio","sub":"u-1","scope":"launch patient/*.rs","patient":"pat-9","exp":1795431600}"#,
    );
    let id = p.token_id(&token);
    assert_eq!(id, "jti:4d6c1a7e-2b3f-4e5a-9c8d-7f6e5d4c3b2a");
    assert_eq!(p.token_id(&format!("Bearer {token}")), id);
    assert_eq!(p.token_id(&format!("bearer  {token} ")), id);

    // An odd jti is hashed.
    let long = jwt(&format!(r#"{{"jti":"{}"}}"#, "x".repeat(200)));
    let id = p.token_id(&long);
    assert!(id.starts_with("jti-h:") && id.len() == 6 + 32, "{id}");
    let spaced = jwt(r#"{"jti":"a b <script>"}"#);
    assert!(p.token_id(&spaced).starts_with("jti-h:"));

    // A JWT without jti, and opaque tokens, are hashed.
    let no_jti = jwt(r#"{"sub":"u-1"}"#);
    let id = p.token_id(&no_jti);
    assert!(id.starts_with("h:") && id.len() == 34, "{id}");
    let opaque = "2YotnFZFEjr1zCsicMWpAA-opaque-access-token";
    let id = p.token_id(opaque);
    assert!(id.starts_with("h:") && id.len() == 34, "{id}");
    assert!(!id.contains(opaque) && !id.contains("2YotnFZFEjr1zCsicMWpAA"));
    assert_eq!(id, p.token_id(&format!("Bearer {opaque}")));
    assert_eq!(
        id,
        Pseudonymiser::from_key([9; 32]).token_id(opaque),
        "token ids do not depend on the key"
    );
    assert_ne!(id, p.token_id("another-opaque-token"));
    // Three dots but not JSON: opaque.
    assert!(p.token_id("abc.def.ghi").starts_with("h:"));
}

#[test]
fn token_id_and_claims_agree_with_the_separate_calls() {
    let p = p();
    for token in [
        jwt(r#"{"jti":"j-1","scope":"openid"}"#),
        jwt(r#"{"sub":"x"}"#),
        "opaque-token-value".to_string(),
    ] {
        let (id, claims) = p.token_id_and_claims(&token);
        assert_eq!(id, p.token_id(&token));
        assert_eq!(claims, jwt_claims(&token));
    }
}

#[test]
fn claims_are_read_without_verification() {
    let token = jwt(
        r#"{"jti":"j-1","azp":"cardio","scp":["patient/Observation.rs","launch"],"sub":"kc-42","launch_context":{"patient":"pat-7"},"iss":"https://idp","aud":["fhir","other"],"exp":1795431600,"iat":1795428000.5}"#,
    );
    let c = jwt_claims(&token).unwrap();
    assert_eq!(c.jti.as_deref(), Some("j-1"));
    assert_eq!(c.client_id.as_deref(), Some("cardio"));
    assert_eq!(c.scope.as_deref(), Some("patient/Observation.rs launch"));
    assert_eq!(c.sub.as_deref(), Some("kc-42"));
    assert_eq!(c.patient.as_deref(), Some("pat-7"));
    assert_eq!(c.iss.as_deref(), Some("https://idp"));
    assert_eq!(c.aud.as_deref(), Some("fhir other"));
    assert_eq!(c.exp, Some(1_795_431_600));
    assert_eq!(c.iat, Some(1_795_428_000));

    let c = jwt_claims(&jwt(
        r#"{"client_id":"a","azp":"b","scope":"x y","patient":"p1"}"#,
    ))
    .unwrap();
    assert_eq!(c.client_id.as_deref(), Some("a"));
    assert_eq!(c.scope.as_deref(), Some("x y"));
    assert_eq!(c.patient.as_deref(), Some("p1"));
    assert_eq!(c.jti, None);

    assert!(jwt_claims("opaque").is_none());
    assert!(jwt_claims("a.b.c").is_none());
    assert!(jwt_claims(&format!("{}.{}.", b64("{}"), b64("[1]"))).is_none());
    // Unsigned (alg none) tokens have an empty signature: still readable.
    assert!(jwt_claims(&format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64("{}"))).is_some());
}

#[test]
fn redact_path_pseudonymises_ids_and_keeps_the_rest() {
    let p = p();
    let pat = |id: &str| p.pseudonym(IdKind::Patient, id);
    let enc = |id: &str| p.pseudonym(IdKind::Encounter, id);
    let res = |id: &str| p.pseudonym(IdKind::Resource, id);
    let cases: Vec<(&str, String)> = vec![
        (
            "/fhir/r4/Patient/123",
            format!("/fhir/r4/Patient/{}", pat("123")),
        ),
        (
            "/fhir/r4/Observation/abc",
            format!("/fhir/r4/Observation/{}", res("abc")),
        ),
        ("/fhir/Encounter/9", format!("/fhir/Encounter/{}", enc("9"))),
        (
            "/fhir/r4/Patient/123/_history/3",
            format!("/fhir/r4/Patient/{}/_history/3", pat("123")),
        ),
        (
            "/fhir/r4/Patient/123/Observation?code=8867-4&_count=50",
            format!(
                "/fhir/r4/Patient/{}/Observation?code=8867-4&_count=50",
                pat("123")
            ),
        ),
        (
            "/fhir/r4/Patient/123/$everything",
            format!("/fhir/r4/Patient/{}/$everything", pat("123")),
        ),
        (
            "/fhir/r4/Observation?patient=123&category=vital-signs&_sort=-date",
            format!(
                "/fhir/r4/Observation?patient={}&category=vital-signs&_sort=-date",
                pat("123")
            ),
        ),
        (
            "/fhir/r4/Observation?subject=Patient/123&status=final",
            format!(
                "/fhir/r4/Observation?subject=Patient/{}&status=final",
                pat("123")
            ),
        ),
        (
            "/fhir/r4/Observation?subject=Patient%2F123",
            format!("/fhir/r4/Observation?subject=Patient/{}", pat("123")),
        ),
        (
            "/fhir/r4/Patient?_id=123,456&_summary=count",
            format!(
                "/fhir/r4/Patient?_id={},{}&_summary=count",
                pat("123"),
                pat("456")
            ),
        ),
        (
            "/fhir/r4/Patient?name=Smith&birthdate=1970-01-01",
            format!(
                "/fhir/r4/Patient?name={}&birthdate={}",
                res("Smith"),
                res("1970-01-01")
            ),
        ),
        (
            "/fhir/r4/Observation?encounter=Encounter/9&_include=Observation:patient",
            format!(
                "/fhir/r4/Observation?encounter=Encounter/{}&_include=Observation:patient",
                enc("9")
            ),
        ),
        (
            "/fhir/r4/Observation?subject=Group/7",
            format!("/fhir/r4/Observation?subject=Group/{}", res("7")),
        ),
        (
            "/fhir/r4/Observation?_id=obs-1",
            format!("/fhir/r4/Observation?_id={}", res("obs-1")),
        ),
        ("/fhir/r4/metadata", "/fhir/r4/metadata".to_string()),
        (
            "/fhir/r4/.well-known/smart-configuration",
            "/fhir/r4/.well-known/smart-configuration".to_string(),
        ),
        (
            "/fhir/r4/Observation/_search",
            "/fhir/r4/Observation/_search".to_string(),
        ),
        (
            "https://user:pw@fhir.example.org/r4/Patient/123?_format=json",
            format!(
                "https://<redacted>@fhir.example.org/r4/Patient/{}?_format=json",
                pat("123")
            ),
        ),
        (
            "/api/users/3f2504e0-4f89-11d3-9a0c-0305e82c3301/profile",
            format!(
                "/api/users/{}/profile",
                res("3f2504e0-4f89-11d3-9a0c-0305e82c3301")
            ),
        ),
        (
            "/fhir/r4/Patient/123#frag",
            format!("/fhir/r4/Patient/{}#<redacted>", pat("123")),
        ),
    ];
    for (raw, want) in cases {
        assert_eq!(p.redact_path(raw), want, "{raw}");
    }
}

#[test]
fn redacted_paths_never_keep_raw_ids() {
    let p = p();
    for (raw, secrets) in [
        (
            "/fhir/Patient/pat-98765/Observation?code=x",
            &["pat-98765"][..],
        ),
        (
            "/fhir/Observation?patient=pat-98765&date=ge2020-01-01",
            &["pat-98765", "2020"],
        ),
        ("/fhir/Patient?identifier=MRN|00442211", &["00442211"]),
        (
            "/fhir/Observation?subject:Patient=pat-98765,pat-11111",
            &["pat-98765", "pat-11111"],
        ),
        ("/fhir/Patient//pat-98765", &["pat-98765"]),
        ("/fhir/Patient/pat%2D98765", &["98765"]),
        (
            "/fhir/DocumentReference/doc-55?x=Smith+John",
            &["doc-55", "Smith"],
        ),
    ] {
        let red = p.redact_path(raw);
        for s in secrets {
            assert!(!red.contains(s), "{raw} -> {red} still has {s}");
        }
    }
}

#[test]
fn redact_text_removes_tokens_and_ids() {
    let p = p();
    let token = jwt(r#"{"jti":"jwt-id-1","sub":"kc-user-42","patient":"pat-98765"}"#);
    let pat = p.pseudonym(IdKind::Patient, "pat-98765");
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            format!("request failed: invalid token {token} for client cardio"),
            vec![token.as_str(), "eyJ"],
        ),
        (
            "Authorization: Bearer 2YotnFZFEjr1zCsicMWpAA".into(),
            vec!["2YotnFZFEjr1zCsicMWpAA"],
        ),
        (
            r#"{"headers":{"authorization":"Bearer 2YotnFZFEjr1zCsicMWpAA"}}"#.into(),
            vec!["2YotnFZFEjr1zCsicMWpAA"],
        ),
        (
            "Authorization: Basic YWxhZGRpbjpvcGVuc2VzYW1l".into(),
            vec!["YWxhZGRpbjpvcGVuc2VzYW1l"],
        ),
        (
            r#"{"patient":"pat-98765","userId":"kc-user-42","access_token":"tok123456","client_secret":"s3cr3t"}"#
                .into(),
            vec!["pat-98765", "kc-user-42", "tok123456", "s3cr3t"],
        ),
        (
            r#"{"patient" : 98765, "sub": "kc-user-42"}"#.into(),
            vec!["98765", "kc-user-42"],
        ),
        (
            "grant_type=authorization_code&code=SplxlOBeZQQYbYS6WxSbIA&patient=pat-98765&password=hunter2"
                .into(),
            vec!["SplxlOBeZQQYbYS6WxSbIA", "pat-98765", "hunter2"],
        ),
        (
            r#"user="Jane Doe" mrn='00442211' birthdate=1970-01-01 encounter=enc-55"#.into(),
            vec!["Jane Doe", "00442211", "1970-01-01", "enc-55"],
        ),
        (
            r#"{"entity":{"what":{"reference":"Patient/pat-98765"}},"context":"Encounter/enc-55"}"#
                .into(),
            vec!["pat-98765", "enc-55"],
        ),
        (
            r#"{\"patient\":\"pat-98765\",\"refresh_token\":\"rt-abcdef\"}"#.into(),
            vec!["pat-98765", "rt-abcdef"],
        ),
        (
            "GET /fhir/Observation?patient=pat-98765&_count=10 HTTP/1.1".into(),
            vec!["pat-98765"],
        ),
        (
            "session 6f1c2d0e-5b7a-4c1e-9d3f-2a8b7c6d5e4f by jane.doe@example.org".into(),
            vec!["6f1c2d0e-5b7a-4c1e-9d3f-2a8b7c6d5e4f", "jane.doe"],
        ),
        (
            // Truncated in the middle of a value.
            r#"{"stream":"access","patient":"pat-98765"#.into(),
            vec!["pat-98765"],
        ),
    ];
    for (text, secrets) in &cases {
        let red = p.redact_text(text);
        for s in secrets {
            assert!(!red.contains(s), "{text}\n -> {red}\n still has {s}");
        }
    }
    // The replacements are the ids the events carry, so they can be joined.
    let red = p.redact_text(&format!(r#"{{"token":"{token}","patient":"pat-98765"}}"#));
    assert!(red.contains("jti:jwt-id-1"), "{red}");
    assert!(red.contains(&pat), "{red}");
    let red = p.redact_text("see Patient/pat-98765");
    assert_eq!(red, format!("see Patient/{pat}"));
    // Structure survives.
    let red = p.redact_text(r#"{"stream":"access","status":"200","method":"GET"}"#);
    assert_eq!(red, r#"{"stream":"access","status":"200","method":"GET"}"#);
}

#[test]
fn redact_reason_keeps_field_names_but_not_values() {
    let p = p();
    let reason = "field `code`: expected a string, found number";
    assert_eq!(p.redact_reason(reason), reason);
    let leaky = "bad request patient=pat-98765 with Bearer 2YotnFZFEjr1zCsicMWpAA";
    let red = p.redact_reason(leaky);
    assert!(!red.contains("pat-98765"), "{red}");
    assert!(!red.contains("2YotnFZFEjr1zCsicMWpAA"), "{red}");
    // redact_text takes `key: value` as a key, to be safe.
    assert!(!p
        .redact_text("code: SplxlOBeZQQYbYS6")
        .contains("SplxlOBeZQQYbYS6"));
}

#[test]
fn token_info_is_reduced_and_cached_per_key() {
    let token = jwt(
        r#"{"jti":"j-9","azp":"cardio","sub":"kc-42","patient":"pat-7","scope":"launch patient/Observation.rs","exp":1795431600}"#,
    );
    let a = p();
    let first = a.token_info(&token);
    let again = a.token_info(&format!("Bearer {token}"));
    assert!(std::sync::Arc::ptr_eq(&first, &again), "cached");
    assert_eq!(first.id, "jti:j-9");
    assert_eq!(first.client_id.as_deref(), Some("cardio"));
    assert_eq!(first.user, Some(a.pseudonym(IdKind::User, "kc-42")));
    assert_eq!(first.patient, Some(a.pseudonym(IdKind::Patient, "pat-7")));
    assert_eq!(
        first.scope.as_deref(),
        Some("launch patient/Observation.rs")
    );
    assert_eq!(first.scopes.as_ref().map(Vec::len), Some(2));
    assert_eq!(first.exp, Some(1_795_431_600));
    // Another key: other pseudonyms, not the cached ones.
    let b = Pseudonymiser::from_key([1; 32]);
    let other = b.token_info(&token);
    assert_eq!(other.user, Some(b.pseudonym(IdKind::User, "kc-42")));
    assert_ne!(other.user, first.user);
    let opaque = a.token_info("opaque-token-value-1234");
    assert!(opaque.id.starts_with("h:"));
    assert_eq!(opaque.user, None);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Wherever a patient id sits in a FHIR path or a text, it is gone,
        /// and the path's patient pseudonym is the one the `patient` column gets.
        #[test]
        fn raw_patient_ids_never_survive(id in "id-[A-Za-z0-9.-]{6,30}") {
            let p = p();
            let pat = p.pseudonym(IdKind::Patient, &id);
            for path in [
                format!("/fhir/Patient/{id}"),
                format!("/fhir/Patient/{id}/_history/2"),
                format!("/fhir/Observation?patient={id}&_count=10"),
                format!("/fhir/Patient/{id}/Observation?subject=Patient/{id}"),
                format!("/fhir/Patient?_id={id}"),
                format!("https://h/fhir/Condition?subject:Patient={id},other-1"),
            ] {
                let red = p.redact_path(&path);
                prop_assert!(!red.contains(&id), "{} -> {}", path, red);
                prop_assert!(red.contains(&pat), "{} -> {}", path, red);
            }
            for text in [
                format!(r#"{{"patient":"{id}"}}"#),
                format!("patient={id}&x=1"),
                format!("patient=\"{id}\""),
                format!("ref Patient/{id} failed"),
                format!(r#"{{"subject":{{"reference":"Patient/{id}"}}}}"#),
            ] {
                let red = p.redact_text(&text);
                prop_assert!(!red.contains(&id), "{} -> {}", text, red);
            }
        }

        /// Any text, any path: no panic (char boundaries, truncation, escapes).
        #[test]
        fn redaction_never_panics(
            text in r#"(\PC|[\\"'=:/ ]|Patient/|Bearer |eyJ|patient|%2F|@)*"#
        ) {
            let p = p();
            p.redact_text(&text);
            p.redact_reason(&text);
            p.redact_path(&text);
            p.token_id(&text);
            let _ = jwt_claims(&text);
        }

        /// Bearer tokens never survive redaction, whatever they look like.
        #[test]
        fn bearer_tokens_never_survive(tok in "[A-Za-z0-9._~+/-]{16,80}") {
            let p = p();
            let red = p.redact_text(&format!("Authorization: Bearer {tok}"));
            prop_assert!(!red.contains(&tok), "{}", red);
            let id = p.token_id(&tok);
            prop_assert!(!id.contains(&tok));
        }
    }
}
