//! The `keycloak` format: the documented JBoss-logging example, Keycloak
//! 26.x quoted lines for every OAuth event type, the REST JSON form, tenant
//! settings, lines that are skipped, and errors that never quote a value.

use scopewatch_ingest::adapter::{Adapter, LineContext, ParseError, Parsed};
use scopewatch_ingest::formats::keycloak::Keycloak;
use scopewatch_ingest::privacy::{IdKind, Pseudonymiser};
use scopewatch_model::config::{SourceOptions, TenantFrom};
use scopewatch_model::events::{AuthEvent, AuthKind, AuthOutcome, Env, Timestamp};
use scopewatch_model::request::FhirBase;

const FIXTURE: &str = include_str!("fixtures/third-party/keycloak_jboss_logging_event_example.log");
const FIXTURE_USER: &str = "19aeb848-96fc-44f6-b0a3-59a17570d374";

const RAW_USER: &str = "0b1c7e52-3f9a-4d8e-a1b2-c3d4e5f60718";
const RAW_USERNAME: &str = "jdoe.private";
const SESSION: &str = "6f1c2d0e-5b7a-4c1e-9d3f-2a8b7c6d5e4f";

fn privacy() -> Pseudonymiser {
    Pseudonymiser::from_key([7; 32])
}

fn parse_opts(
    line: &str,
    tenant: Option<&str>,
    opts: &SourceOptions,
) -> Result<Vec<Parsed>, ParseError> {
    let p = privacy();
    let base = FhirBase::auto();
    let ctx = LineContext {
        source: "kc",
        event_id: "ev-7",
        source_file: Some("/var/log/keycloak/server.log"),
        offset: Some(1234),
        tenant,
        env: Env::Prod,
        privacy: &p,
        fhir_base: &base,
        options: opts,
    };
    let mut out = Vec::new();
    Keycloak.parse_line(line.as_bytes(), &ctx, &mut out)?;
    Ok(out)
}

fn parse(line: &str) -> Result<Vec<Parsed>, ParseError> {
    parse_opts(line, Some("fallback"), &SourceOptions::default())
}

/// The one auth event a line gives.
fn one(line: &str) -> AuthEvent {
    let mut events = parse(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(events.len(), 1, "{events:?}");
    match events.pop() {
        Some(Parsed::Auth(e)) => e,
        other => panic!("{other:?}"),
    }
}

/// A Keycloak 26.x line: the default console format and quoted values.
fn kc26(level: &str, fields: &str) -> String {
    format!("2026-11-23 10:00:00,123 {level} [org.keycloak.events] (executor-thread-3) {fields}")
}

/// The common head of a quoted event.
fn head(ty: &str) -> String {
    format!(
        r#"type="{ty}", realmId="9d7a4c1e-1111-2222-3333-444455556666", realmName="north", clientId="cardio-app", userId="{RAW_USER}", sessionId="{SESSION}", ipAddress="10.1.2.3""#
    )
}

fn ts_2026() -> Timestamp {
    Timestamp::parse_rfc3339("2026-11-23T10:00:00.123Z").unwrap()
}

fn user_pseudonym() -> String {
    privacy().pseudonym(IdKind::User, RAW_USER)
}

fn strings(list: &[&str]) -> Option<Vec<String>> {
    Some(list.iter().map(|s| s.to_string()).collect())
}

#[test]
fn the_documented_example_joined_into_one_line() {
    let line = FIXTURE
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let e = one(&line);
    assert_eq!(e.kind, AuthKind::Authorize);
    assert_eq!(e.outcome, AuthOutcome::Failure);
    assert_eq!(e.tenant, "master");
    assert_eq!(e.client_id.as_deref(), Some("myapp"));
    let user = e.user.as_deref().unwrap();
    assert_eq!(user, privacy().pseudonym(IdKind::User, FIXTURE_USER));
    assert!(user.starts_with("u_") && !user.contains(FIXTURE_USER));
    assert_eq!(e.ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(e.error.as_deref(), Some("invalid_user_credentials"));
    // Time only: 11:36:09,965 on the day the line is read.
    const DAY_US: i64 = 86_400_000_000;
    let time_of_day = e.ts.0.rem_euclid(DAY_US);
    assert_eq!(time_of_day, ((11 * 60 + 36) * 60 + 9) * 1_000_000 + 965_000);
    let today = time::OffsetDateTime::now_utc().date();
    let date = e.ts.to_offset_datetime().date();
    assert!(date == today || date.next_day() == Some(today), "{date}");
    assert_eq!(e.env, Env::Prod);
    assert_eq!(e.event_id, "ev-7");
    assert_eq!(e.source, "kc");
    assert_eq!(
        e.source_file.as_deref(),
        Some("/var/log/keycloak/server.log")
    );
    assert_eq!(e.source_offset, Some(1234));
    assert_eq!(e.session_id, None);
    assert_eq!(e.scopes_requested, None);
    assert_eq!(e.token_id, None);
    let debug = format!("{e:?}");
    assert!(!debug.contains(FIXTURE_USER), "{debug}");
    assert!(!debug.contains("admin"), "{debug}");
}

#[test]
fn code_to_token_with_scope_and_token_ids() {
    let e = one(&kc26(
        "DEBUG",
        &format!(
            r#"{}, token_id="onrtac:1f2e3d4c-aaaa-bbbb-cccc-ddddeeeeffff", grant_type="authorization_code", refresh_token_type="Refresh", scope="openid launch/patient patient/Observation.rs offline_access", refresh_token_id="onrtrt:77aa88bb-1234-5678-9abc-def012345678", code_id="{SESSION}", client_auth_method="client-secret""#,
            head("CODE_TO_TOKEN")
        ),
    ));
    assert_eq!(e.kind, AuthKind::Token);
    assert_eq!(e.outcome, AuthOutcome::Success);
    assert_eq!(e.ts, ts_2026());
    assert_eq!(e.tenant, "north");
    assert_eq!(e.client_id.as_deref(), Some("cardio-app"));
    assert_eq!(e.user.as_deref(), Some(user_pseudonym().as_str()));
    assert_eq!(e.session_id.as_deref(), Some(SESSION));
    assert_eq!(e.ip.as_deref(), Some("10.1.2.3"));
    assert_eq!(e.error, None);
    assert_eq!(
        e.scopes_granted,
        strings(&[
            "openid",
            "launch/patient",
            "patient/Observation.rs",
            "offline_access"
        ])
    );
    assert_eq!(e.scopes_requested, None);
    assert_eq!(e.grant_type.as_deref(), Some("authorization_code"));
    assert_eq!(
        e.token_id.as_deref(),
        Some("jti:onrtac:1f2e3d4c-aaaa-bbbb-cccc-ddddeeeeffff")
    );
    assert_eq!(
        e.refresh_token_id.as_deref(),
        Some("jti:onrtrt:77aa88bb-1234-5678-9abc-def012345678")
    );
    assert_eq!(e.parent_token_id, None);
}

#[test]
fn refresh_with_rotation_links_new_to_consumed() {
    let e = one(&kc26(
        "DEBUG",
        &format!(
            r#"{}, token_id="at-2", grant_type="refresh_token", refresh_token_id="rt-1", updated_refresh_token_id="rt-2", scope="openid patient/Observation.rs", refresh_token_type="Refresh""#,
            head("REFRESH_TOKEN")
        ),
    ));
    assert_eq!(e.kind, AuthKind::Refresh);
    assert_eq!(e.outcome, AuthOutcome::Success);
    assert_eq!(e.token_id.as_deref(), Some("jti:at-2"));
    assert_eq!(e.parent_token_id.as_deref(), Some("jti:rt-1"));
    assert_eq!(e.refresh_token_id.as_deref(), Some("jti:rt-2"));
    assert_eq!(
        e.scopes_granted,
        strings(&["openid", "patient/Observation.rs"])
    );
    assert_eq!(e.grant_type.as_deref(), Some("refresh_token"));
}

#[test]
fn refresh_without_rotation_repeats_the_consumed_id() {
    let line = |token: &str| {
        kc26(
            "DEBUG",
            &format!(
                r#"{}, token_id="{token}", grant_type="refresh_token", refresh_token_id="rt-1", scope="openid""#,
                head("REFRESH_TOKEN")
            ),
        )
    };
    let first = one(&line("at-2"));
    let second = one(&line("at-3"));
    for e in [&first, &second] {
        assert_eq!(e.kind, AuthKind::Refresh);
        assert_eq!(e.parent_token_id.as_deref(), Some("jti:rt-1"));
        assert_eq!(e.refresh_token_id.as_deref(), Some("jti:rt-1"));
    }
    assert_eq!(first.token_id.as_deref(), Some("jti:at-2"));
    assert_eq!(second.token_id.as_deref(), Some("jti:at-3"));
}

#[test]
fn refresh_token_reuse_error_keeps_its_reason() {
    let e = one(&kc26(
        "WARN ",
        &format!(
            r#"{}, error="invalid_token", grant_type="refresh_token", refresh_token_id="rt-1", reason="Maximum allowed refresh token reuse exceeded""#,
            head("REFRESH_TOKEN_ERROR")
        ),
    ));
    assert_eq!(e.kind, AuthKind::Refresh);
    assert_eq!(e.outcome, AuthOutcome::Failure);
    assert_eq!(
        e.error.as_deref(),
        Some("invalid_token: Maximum allowed refresh token reuse exceeded")
    );
    assert_eq!(e.parent_token_id.as_deref(), Some("jti:rt-1"));
    assert_eq!(e.scopes_granted, None);
}

#[test]
fn client_login_is_client_credentials() {
    let e = one(&kc26(
        "DEBUG",
        r#"type="CLIENT_LOGIN", realmId="r-1", realmName="north", clientId="bulk-export", userId="null", ipAddress="10.9.8.7", token_id="at-cc-1", grant_type="client_credentials", scope="system/Patient.rs system/Observation.rs", client_auth_method="client-jwt", username="service-account-bulk-export""#,
    ));
    assert_eq!(e.kind, AuthKind::ClientCredentials);
    assert_eq!(e.outcome, AuthOutcome::Success);
    assert_eq!(e.client_id.as_deref(), Some("bulk-export"));
    assert_eq!(e.user, None, "`null` is no user");
    assert_eq!(e.session_id, None);
    assert_eq!(e.grant_type.as_deref(), Some("client_credentials"));
    assert_eq!(
        e.scopes_granted,
        strings(&["system/Patient.rs", "system/Observation.rs"])
    );
    assert!(!format!("{e:?}").contains("service-account"));
}

#[test]
fn client_login_error_scopes_are_requested_not_granted() {
    let e = one(&kc26(
        "WARN ",
        r#"type="CLIENT_LOGIN_ERROR", realmId="r-1", realmName="north", clientId="bulk-export", userId="null", ipAddress="10.9.8.7", error="invalid_client_credentials", grant_type="client_credentials", scope="system/*.cruds""#,
    ));
    assert_eq!(e.kind, AuthKind::ClientCredentials);
    assert_eq!(e.outcome, AuthOutcome::Failure);
    assert_eq!(e.error.as_deref(), Some("invalid_client_credentials"));
    assert_eq!(e.scopes_granted, None);
    assert_eq!(e.scopes_requested, strings(&["system/*.cruds"]));
}

#[test]
fn the_other_event_types_and_their_kinds() {
    let cases = [
        (
            "REVOKE_GRANT",
            r#", token_id="at-9", refresh_token_id="rt-9""#,
            AuthKind::Revoke,
        ),
        (
            "LOGOUT",
            r#", redirect_uri="https://app.example.org/""#,
            AuthKind::Logout,
        ),
        (
            "INTROSPECT_TOKEN",
            r#", token_id="at-9", scope="ignored.here""#,
            AuthKind::Introspect,
        ),
        (
            "TOKEN_EXCHANGE",
            r#", token_id="at-x", grant_type="urn:ietf:params:oauth:grant-type:token-exchange", scope="openid patient/*.rs", subject_token_client_id="portal""#,
            AuthKind::TokenExchange,
        ),
        ("LOGIN", r#", scope="openid launch""#, AuthKind::Authorize),
    ];
    for (ty, details, kind) in cases {
        let e = one(&kc26("DEBUG", &format!("{}{details}", head(ty))));
        assert_eq!(e.kind, kind, "{ty}");
        assert_eq!(e.outcome, AuthOutcome::Success, "{ty}");
        assert_eq!(e.tenant, "north", "{ty}");
        assert_eq!(e.error, None, "{ty}");
        match kind {
            AuthKind::Revoke => {
                assert_eq!(e.token_id.as_deref(), Some("jti:at-9"));
                assert_eq!(e.refresh_token_id.as_deref(), Some("jti:rt-9"));
                assert_eq!(e.parent_token_id, None);
            }
            AuthKind::Introspect => {
                assert_eq!(e.token_id.as_deref(), Some("jti:at-9"));
                assert_eq!((&e.scopes_granted, &e.scopes_requested), (&None, &None));
            }
            AuthKind::TokenExchange => {
                assert_eq!(e.scopes_granted, strings(&["openid", "patient/*.rs"]));
                assert_eq!(
                    e.grant_type.as_deref(),
                    Some("urn:ietf:params:oauth:grant-type:token-exchange")
                );
            }
            AuthKind::Authorize => {
                assert_eq!(e.scopes_requested, strings(&["openid", "launch"]));
                assert_eq!(e.scopes_granted, None);
            }
            _ => {}
        }
        // Every `_ERROR` twin is the same kind, failed.
        let failed = one(&kc26(
            "WARN ",
            &format!(
                r#"{}, error="invalid_request"{details}"#,
                head(&format!("{ty}_ERROR"))
            ),
        ));
        assert_eq!(failed.kind, kind, "{ty}_ERROR");
        assert_eq!(failed.outcome, AuthOutcome::Failure, "{ty}_ERROR");
        assert_eq!(failed.error.as_deref(), Some("invalid_request"));
    }
}

#[test]
fn quoted_values_may_hold_commas_and_escaped_quotes() {
    let e = one(&kc26(
        "WARN ",
        &format!(
            r#"{}, error="invalid_request", reason="bad \"scope\", try again, please", scope="openid, fhirUser""#,
            head("LOGIN_ERROR")
        ),
    ));
    assert_eq!(
        e.error.as_deref(),
        Some(r#"invalid_request: bad "scope", try again, please"#)
    );
    assert_eq!(e.scopes_requested, strings(&["openid,", "fhirUser"]));
    assert_eq!(e.ip.as_deref(), Some("10.1.2.3"));
}

#[test]
fn old_form_single_quotes_values_with_spaces() {
    let e = one(&format!(
        "2026-11-23 10:00:00,123 WARN  [org.keycloak.events] (default task-7) type=REFRESH_TOKEN_ERROR, realmId=north, clientId=cardio-app, userId={RAW_USER}, ipAddress=10.1.2.3, error=invalid_token, grant_type=refresh_token, refresh_token_id=rt-1, reason='Maximum allowed refresh token reuse exceeded', username={RAW_USERNAME}"
    ));
    assert_eq!(e.kind, AuthKind::Refresh);
    assert_eq!(e.tenant, "north");
    assert_eq!(
        e.error.as_deref(),
        Some("invalid_token: Maximum allowed refresh token reuse exceeded")
    );
    assert_eq!(e.ts, ts_2026());
}

#[test]
fn timestamps_with_a_date() {
    let fields = head("LOGOUT");
    for (prefix, expected) in [
        ("2026-11-23 10:00:00,123 INFO ", "2026-11-23T10:00:00.123Z"),
        ("2026-11-23T10:00:00.123Z DEBUG", "2026-11-23T10:00:00.123Z"),
        (
            "2026-11-23T12:00:00.123+02:00 DEBUG",
            "2026-11-23T10:00:00.123Z",
        ),
        ("2026-11-23 10:00:00.5", "2026-11-23T10:00:00.5Z"),
    ] {
        let e = one(&format!("{prefix} [org.keycloak.events] (t) {fields}"));
        assert_eq!(
            e.ts,
            Timestamp::parse_rfc3339(expected).unwrap(),
            "{prefix}"
        );
    }
}

#[test]
fn rest_json_events() {
    let line = format!(
        r#"{{"id":"0a1b2c3d","time":1795428000123,"type":"CODE_TO_TOKEN","realmId":"north-id","clientId":"cardio-app","userId":"{RAW_USER}","sessionId":"{SESSION}","ipAddress":"10.1.2.3","details":{{"token_id":"at-1","refresh_token_id":"rt-1","grant_type":"authorization_code","scope":"openid patient/Observation.rs","username":"{RAW_USERNAME}","code_id":"{SESSION}"}}}}"#
    );
    let e = one(&line);
    assert_eq!(e.kind, AuthKind::Token);
    assert_eq!(e.outcome, AuthOutcome::Success);
    assert_eq!(e.ts, ts_2026());
    assert_eq!(e.tenant, "north-id");
    assert_eq!(e.client_id.as_deref(), Some("cardio-app"));
    assert_eq!(e.user.as_deref(), Some(user_pseudonym().as_str()));
    assert_eq!(e.session_id.as_deref(), Some(SESSION));
    assert_eq!(e.ip.as_deref(), Some("10.1.2.3"));
    assert_eq!(e.token_id.as_deref(), Some("jti:at-1"));
    assert_eq!(e.refresh_token_id.as_deref(), Some("jti:rt-1"));
    assert_eq!(
        e.scopes_granted,
        strings(&["openid", "patient/Observation.rs"])
    );
    let debug = format!("{e:?}");
    assert!(!debug.contains(RAW_USER) && !debug.contains(RAW_USERNAME));

    let failed = one(&format!(
        r#"{{"time":1795428000123,"type":"REFRESH_TOKEN_ERROR","realmId":"north-id","clientId":"cardio-app","userId":"{RAW_USER}","ipAddress":"10.1.2.3","error":"invalid_token","details":{{"reason":"Maximum allowed refresh token reuse exceeded","refresh_token_id":"rt-1"}}}}"#
    ));
    assert_eq!(failed.kind, AuthKind::Refresh);
    assert_eq!(failed.outcome, AuthOutcome::Failure);
    assert_eq!(
        failed.error.as_deref(),
        Some("invalid_token: Maximum allowed refresh token reuse exceeded")
    );
    assert_eq!(failed.parent_token_id.as_deref(), Some("jti:rt-1"));
}

#[test]
fn quarkus_json_log_records() {
    let line = format!(
        r#"{{"timestamp":"2026-11-23T12:00:00.123+02:00","sequence":9,"loggerClassName":"org.jboss.logging.Logger","loggerName":"org.keycloak.events","level":"DEBUG","message":"type=\"LOGOUT\", realmId=\"r\", realmName=\"north\", clientId=\"cardio-app\", userId=\"{RAW_USER}\", sessionId=\"{SESSION}\", ipAddress=\"10.1.2.3\"","threadName":"executor-thread-1"}}"#
    );
    let e = one(&line);
    assert_eq!(e.kind, AuthKind::Logout);
    assert_eq!(e.ts, ts_2026());
    assert_eq!(e.tenant, "north");
    assert_eq!(e.user.as_deref(), Some(user_pseudonym().as_str()));
    let other = r#"{"timestamp":"2026-11-23T10:00:00.123Z","loggerName":"org.keycloak.services","level":"INFO","message":"KC-SERVICES0050: Initializing master realm"}"#;
    assert!(parse(other).unwrap().is_empty());
}

#[test]
fn tenant_map_renames_the_realm() {
    let mut opts = SourceOptions::default();
    opts.tenant_map
        .insert("north".into(), "north-clinic".into());
    opts.tenant_map
        .insert("south-id".into(), "south-clinic".into());
    let only =
        |line: &str, opts: &SourceOptions| match parse_opts(line, None, opts).unwrap().as_slice() {
            [Parsed::Auth(e)] => e.tenant.clone(),
            other => panic!("{other:?}"),
        };
    assert_eq!(only(&kc26("DEBUG", &head("LOGOUT")), &opts), "north-clinic");
    // Mapped by id when the name is not mapped (and the old form has no name).
    let by_id = "2026-11-23 10:00:00,123 DEBUG [org.keycloak.events] (t) type=LOGOUT, realmId=south-id, clientId=a, userId=null, ipAddress=10.0.0.1";
    assert_eq!(only(by_id, &opts), "south-clinic");
    // `realm` said explicitly is the default.
    opts.tenant_from = Some(TenantFrom::Realm);
    assert_eq!(only(&kc26("DEBUG", &head("LOGOUT")), &opts), "north-clinic");
}

#[test]
fn tenant_from_fixed_uses_the_source_tenant() {
    let opts = SourceOptions {
        tenant_from: Some(TenantFrom::Fixed),
        ..SourceOptions::default()
    };
    let line = kc26("DEBUG", &head("LOGOUT"));
    match parse_opts(&line, Some("east"), &opts).unwrap().as_slice() {
        [Parsed::Auth(e)] => assert_eq!(e.tenant, "east"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        parse_opts(&line, None, &opts).unwrap_err(),
        ParseError::MissingField("tenant".into())
    );
    // A line without a realm falls back to the source's tenant.
    let no_realm = r#"{"time":1795428000123,"type":"LOGOUT","clientId":"a"}"#;
    match parse_opts(no_realm, Some("west"), &SourceOptions::default())
        .unwrap()
        .as_slice()
    {
        [Parsed::Auth(e)] => assert_eq!(e.tenant, "west"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn lines_that_are_not_oauth_events_are_skipped() {
    let lines = [
        String::new(),
        "   ".into(),
        "2026-11-23 10:00:00,123 INFO  [org.keycloak.services] (main) KC-SERVICES0050: Initializing master realm".into(),
        "2026-11-23 10:00:00,123 ERROR [org.keycloak.services.error.KeycloakErrorHandler] (executor-thread-1) Uncaught server error: java.lang.NullPointerException".into(),
        "\tat org.keycloak.services.resources.RealmsResource.getLoginActionsService(RealmsResource.java:184)".into(),
        "Caused by: java.lang.IllegalStateException: boom".into(),
        kc26("DEBUG", &format!("{}, username=\"{RAW_USERNAME}\"", head("UPDATE_PASSWORD"))),
        kc26("DEBUG", &head("REGISTER")),
        kc26("WARN ", &format!("{}, error=\"invalid_user_credentials\"", head("UPDATE_PROFILE_ERROR"))),
        kc26("DEBUG", r#"operationType="CREATE", realmId="r", realmName="north", clientId="admin-cli", userId="u", ipAddress="10.0.0.1", resourceType="USER", resourcePath="users/abc""#),
        r#"{"time":1795428000123,"realmId":"r","operationType":"UPDATE","resourcePath":"clients/x"}"#.into(),
        r#"{"time":1795428000123,"type":"UPDATE_PASSWORD","realmId":"r","userId":"u"}"#.into(),
    ];
    for line in &lines {
        assert_eq!(parse(line).unwrap(), vec![], "{line}");
    }
}

#[test]
fn malformed_event_lines_are_errors_that_quote_nothing() {
    let cases: Vec<(String, ParseError)> = vec![
        (
            kc26("DEBUG", &format!(r#"type="LOGIN", realmId="r", userId="{RAW_USER}"#)),
            ParseError::bad_value("userId", "unterminated quoted value"),
        ),
        (
            kc26(
                "DEBUG",
                &format!(r#"realmId="r", clientId="a", userId="{RAW_USER}", ipAddress="1.2.3.4""#),
            ),
            ParseError::MissingField("type".into()),
        ),
        (
            format!(
                "2026-11-31 10:00:00,123 DEBUG [org.keycloak.events] (t) type=LOGIN, userId={RAW_USER}"
            ),
            ParseError::bad_value("ts", ""),
        ),
        (
            format!("yesterday DEBUG [org.keycloak.events] (t) type=LOGIN, userId={RAW_USER}"),
            ParseError::bad_value("ts", ""),
        ),
        (
            format!("2026-11-23 10:00:00,123 DEBUG [org.keycloak.events] (t) {RAW_USER} logged in"),
            ParseError::Format("".into()),
        ),
        (
            format!(r#"{{"type":"LOGIN","userId":"{RAW_USER}"}}"#),
            ParseError::MissingField("time".into()),
        ),
        (
            format!(r#"{{"type":"LOGIN","time":"soon","userId":"{RAW_USER}"}}"#),
            ParseError::bad_value("time", "expected epoch milliseconds"),
        ),
        (
            format!(r#"{{"type":"LOGIN","time":1795428000123,"userId":"{RAW_USER}""#),
            ParseError::TruncatedJson(0),
        ),
    ];
    for (line, expected) in cases {
        let err = parse(&line).expect_err(&line);
        // Same variant and field; the wording of a reason may evolve.
        match (&err, &expected) {
            (
                ParseError::BadValue { field, .. },
                ParseError::BadValue {
                    field: expected_field,
                    reason,
                },
            ) => {
                assert_eq!(field, expected_field, "{line}");
                if !reason.is_empty() {
                    assert_eq!(err, expected, "{line}");
                }
            }
            (ParseError::Format(_), ParseError::Format(_))
            | (ParseError::TruncatedJson(_), ParseError::TruncatedJson(_)) => {}
            _ => assert_eq!(err, expected, "{line}"),
        }
        let shown = err.to_string();
        assert!(!shown.contains(RAW_USER), "{shown}");
        assert!(!shown.contains("19aeb848"), "{shown}");
    }
}

#[test]
fn jwt_shaped_token_ids_are_reduced() {
    let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJqdGkiOiJhdC03ZjNhOWMiLCJzdWIiOiJ4In0.c2lnbmF0dXJl";
    let e = one(&kc26(
        "DEBUG",
        &format!(
            r#"{}, token_id="{jwt}", refresh_token_id="rt-1""#,
            head("CODE_TO_TOKEN")
        ),
    ));
    assert_eq!(e.token_id.as_deref(), Some("jti:at-7f3a9c"));
    assert_eq!(e.token_id, Some(privacy().token_id(jwt)));
    assert_eq!(e.refresh_token_id.as_deref(), Some("jti:rt-1"));
}

#[test]
fn no_raw_user_id_or_username_in_any_event() {
    let lines = [
        kc26(
            "WARN ",
            &format!(
                r#"{}, error="invalid_user_credentials", auth_method="openid-connect", username="{RAW_USERNAME}", reason="user {RAW_USERNAME} not allowed""#,
                head("LOGIN_ERROR")
            ),
        ),
        kc26(
            "DEBUG",
            &format!(
                r#"{}, token_id="at-1", username="{RAW_USERNAME}", scope="openid""#,
                head("CODE_TO_TOKEN")
            ),
        ),
        format!(
            r#"{{"time":1795428000123,"type":"LOGIN","realmId":"r","userId":"{RAW_USER}","details":{{"username":"{RAW_USERNAME}"}}}}"#
        ),
    ];
    for line in &lines {
        let events = parse(line).unwrap();
        assert_eq!(events.len(), 1);
        let debug = format!("{events:?}");
        assert!(!debug.contains(RAW_USER), "{debug}");
        assert!(!debug.contains(RAW_USERNAME), "{debug}");
        let json = serde_json::to_string(&events).unwrap();
        assert!(!json.contains(RAW_USER) && !json.contains(RAW_USERNAME));
    }
}
