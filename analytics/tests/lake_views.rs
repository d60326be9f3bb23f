//! The model's event schema written as real Parquet in the lake layout, read
//! back by the bundled DuckDB through the lake views.

use std::fs::File;
use std::path::Path;

use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use scopewatch_analytics::{EngineLimits, Lake};
use scopewatch_model::events::{
    AccessBatchBuilder, AccessEvent, AccessOutcome, AuthBatchBuilder, AuthEvent, AuthKind,
    AuthOutcome, Env, Timestamp,
};
use scopewatch_model::request::Interaction;

fn auth(id: &str, ts: &str, kind: AuthKind) -> AuthEvent {
    AuthEvent {
        event_id: id.into(),
        ts: Timestamp::parse_rfc3339(ts).unwrap(),
        tenant: "north".into(),
        env: Env::Prod,
        kind,
        outcome: AuthOutcome::Success,
        error: None,
        client_id: Some("cardio-insight".into()),
        app_version: Some("2.4.1".into()),
        user: Some("u_5e1f".into()),
        session_id: None,
        patient: Some("p_77aa".into()),
        encounter: None,
        scopes_requested: Some(vec!["launch".into(), "patient/Observation.rs".into()]),
        scopes_granted: Some(vec!["launch".into(), "patient/Observation.rs".into()]),
        grant_type: Some("authorization_code".into()),
        token_id: Some(format!("tok-{id}")),
        refresh_token_id: None,
        parent_token_id: None,
        expires_at: None,
        ip: Some("10.1.2.3".into()),
        user_agent: None,
        source: "test".into(),
        source_file: Some("auth.log".into()),
        source_offset: Some(0),
    }
}

fn write_parquet(path: &Path, batch: &arrow_array::RecordBatch) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut w =
        ArrowWriter::try_new(File::create(path).unwrap(), batch.schema(), Some(props)).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
}

fn describe(lake: &Lake, view: &str) -> Vec<(String, String)> {
    let mut stmt = lake
        .connection()
        .prepare(&format!(
            "SELECT column_name, column_type FROM (DESCRIBE {view})"
        ))
        .unwrap();
    stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn duckdb_reads_the_lake_with_the_model_schema() {
    let dir = tempfile::tempdir().unwrap();
    let empty = Lake::open(dir.path(), &EngineLimits::default()).unwrap();
    assert_eq!(empty.row_count("auth").unwrap(), 0);
    assert_eq!(empty.row_count("access").unwrap(), 0);
    let empty_auth = describe(&empty, "auth");
    let empty_access = describe(&empty, "access");

    let mut b = AuthBatchBuilder::default();
    b.push(&auth("a1", "2026-11-22T23:59:59.999999Z", AuthKind::Token));
    b.push(&auth("a2", "2026-11-22T10:00:00Z", AuthKind::Refresh));
    write_parquet(
        &dir.path().join("lake/auth/date=2026-11-22/part-0.parquet"),
        &b.finish(),
    );
    b.push(&auth("a3", "2026-11-23T00:00:00Z", AuthKind::Revoke));
    write_parquet(
        &dir.path().join("lake/auth/date=2026-11-23/part-0.parquet"),
        &b.finish(),
    );

    let mut a = AccessBatchBuilder::default();
    a.push(&AccessEvent {
        event_id: "c1".into(),
        ts: Timestamp::parse_rfc3339("2026-11-23T00:00:01Z").unwrap(),
        tenant: "north".into(),
        env: Env::Prod,
        client_id: Some("cardio-insight".into()),
        app_version: None,
        user: None,
        token_id: Some("tok-a1".into()),
        expires_at: None,
        token_tenant: None,
        method: "GET".into(),
        path: "/fhir/Observation?patient=p_77aa".into(),
        interaction: Some(Interaction::Search),
        resource_type: Some("Observation".into()),
        compartment: None,
        patient: Some("p_77aa".into()),
        required: Some("patient/Observation.s".into()),
        granted_covered: Some(true),
        status: Some(200),
        outcome: AccessOutcome::Allowed,
        bytes: Some(5120),
        latency_ms: Some(12.5),
        ip: None,
        user_agent: None,
        source: "test".into(),
        source_file: None,
        source_offset: None,
    });
    write_parquet(
        &dir.path()
            .join("lake/access/date=2026-11-23/part-0.parquet"),
        &a.finish(),
    );

    let lake = Lake::open(
        dir.path(),
        &EngineLimits {
            memory_limit_mib: 256,
            threads: 1,
        },
    )
    .unwrap();
    assert_eq!(lake.row_count("auth").unwrap(), 3);
    assert_eq!(lake.row_count("access").unwrap(), 1);

    // the empty views promise exactly the columns and types real files give
    assert_eq!(describe(&lake, "auth"), empty_auth);
    assert_eq!(describe(&lake, "access"), empty_access);
    let names: Vec<String> = empty_auth.iter().map(|(n, _)| n.clone()).collect();
    let mut expected: Vec<String> = AuthEvent::COLUMNS.iter().map(|s| s.to_string()).collect();
    expected.push("date".into());
    assert_eq!(names, expected);

    // partitions, microsecond timestamps, lists and enums survive the trip
    let conn = lake.connection();
    let per_day: Vec<(String, i64)> = conn
        .prepare("SELECT CAST(date AS VARCHAR), count(*) FROM auth GROUP BY ALL ORDER BY 1")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        per_day,
        vec![("2026-11-22".into(), 2), ("2026-11-23".into(), 1)]
    );
    let (micros, scopes, kind): (i64, String, String) = conn
        .query_row(
            "SELECT epoch_us(ts), array_to_string(scopes_granted, ' '), kind FROM auth WHERE event_id = ?",
            ["a1"],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(
        micros,
        Timestamp::parse_rfc3339("2026-11-22T23:59:59.999999Z")
            .unwrap()
            .0
    );
    assert_eq!(scopes, "launch patient/Observation.rs");
    assert_eq!(kind, "token");
    // a call joins to the token's grant
    let joined: String = conn
        .query_row(
            "SELECT a.grant_type FROM access c JOIN auth a ON a.token_id = c.token_id WHERE c.event_id = ?",
            ["c1"],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(joined, "authorization_code");
}
