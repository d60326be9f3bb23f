//! `scopewatch sql` run as an analyst runs it, over the bundled samples
//! ingested into a fresh data directory: answers that agree with ingest,
//! the output formats, queries on stdin, and statements that must not run.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use scopewatch_analytics::{EngineLimits, Lake};
use serde_json::Value;

mod common;
use common::{bin, ingest, samples_config, stderr};

/// `scopewatch --data DATA sql ARGS...`, with `stdin` piped in (or empty).
fn sql(data: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = bin()
        .args(["--data", data.to_str().unwrap(), "sql"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// The JSON lines of a command that must have succeeded.
fn json_lines(out: &Output) -> Vec<Value> {
    assert!(out.status.success(), "failed: {}", stderr(out));
    common::json_lines(&stdout(out))
}

/// Every file under `dir` with its size.
fn files(dir: &Path) -> BTreeMap<PathBuf, u64> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.insert(p.clone(), e.metadata().unwrap().len());
        }
    }
    out
}

#[test]
fn counts_agree_with_the_ingest_summary() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let summary = ingest(&samples_config(), &data);
    let access = summary["events"]["access"].as_u64().unwrap();
    let auth = summary["events"]["auth"].as_u64().unwrap();
    assert!(access > 1000 && auth > 100, "{summary}");

    let out = sql(
        &data,
        &["SELECT (SELECT count(*) FROM access) AS access, (SELECT count(*) FROM auth) AS auth"],
        "",
    );
    let rows = json_lines(&out);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["access"], access, "{}", rows[0]);
    assert_eq!(rows[0]["auth"], auth);

    // sum() is a HUGEINT in DuckDB: still a JSON number.
    let out = sql(
        &data,
        &["SELECT sum(1) AS n, count(DISTINCT tenant) AS tenants FROM access"],
        "",
    );
    let rows = json_lines(&out);
    assert_eq!(rows[0]["n"], access);
    assert_eq!(rows[0]["tenants"], 3);
}

#[test]
fn json_rows_keep_column_order_rfc3339_times_and_lists() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    ingest(&samples_config(), &data);
    let out = sql(
        &data,
        &[
            "--format",
            "json",
            "SELECT ts, scopes_granted, client_id, date FROM auth \
             WHERE scopes_granted IS NOT NULL AND len(scopes_granted) > 1 ORDER BY ts LIMIT 5",
        ],
        "",
    );
    let text = stdout(&out);
    let rows = json_lines(&out);
    assert_eq!(rows.len(), 5);
    for line in text.lines() {
        assert!(line.starts_with("{\"ts\":\""), "columns in order: {line}");
    }
    for row in &rows {
        let ts = row["ts"].as_str().unwrap();
        let parsed =
            time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|e| panic!("{ts} is not RFC 3339: {e}"));
        assert!(ts.ends_with('Z'), "{ts}");
        // The partition column is the UTC day of ts.
        assert_eq!(row["date"], parsed.date().to_string(), "{row}");
        let scopes = row["scopes_granted"].as_array().unwrap();
        assert!(
            scopes.len() > 1 && scopes.iter().all(Value::is_string),
            "{row}"
        );
        assert!(row["client_id"].is_string());
    }
}

#[test]
fn csv_has_a_header_and_quotes_commas_and_quotes() {
    let dir = tempfile::tempdir().unwrap();
    let out = sql(
        dir.path(),
        &[
            "--format",
            "csv",
            r#"SELECT 'a,b' AS comma, 'say "hi"' AS quote, NULL AS nothing, '' AS empty, 2 AS n, ['x', 'y'] AS list"#,
        ],
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "comma,quote,nothing,empty,n,list\r\n\"a,b\",\"say \"\"hi\"\"\",,\"\",2,\"[\"\"x\"\",\"\"y\"\"]\"\r\n"
    );

    // JSON of the same: typed values, null for NULL.
    let out = sql(
        dir.path(),
        &[
            r#"SELECT 'a,b' AS comma, 'say "hi"' AS quote, NULL AS nothing, 2 AS n, 1.5::DOUBLE AS x, true AS yes"#,
        ],
        "",
    );
    assert_eq!(
        stdout(&out),
        "{\"comma\":\"a,b\",\"quote\":\"say \\\"hi\\\"\",\"nothing\":null,\"n\":2,\"x\":1.5,\"yes\":true}\n"
    );
}

#[test]
fn queries_and_meta_commands_come_from_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let summary = ingest(&samples_config(), &data);
    let out = sql(
        &data,
        &[],
        "-- two queries and a meta-command\n\
         SELECT count(*) AS n FROM auth;\n\
         SELECT tenant\n  FROM access GROUP BY tenant ORDER BY tenant;\n\
         .schema access\n\
         SELECT 'a;b' AS semicolon",
    );
    let rows = json_lines(&out);
    assert_eq!(rows[0]["n"], summary["events"]["auth"]);
    let tenants: Vec<&str> = rows[1..4]
        .iter()
        .map(|r| r["tenant"].as_str().unwrap())
        .collect();
    assert_eq!(tenants, ["east", "north", "south"]);
    let required = rows
        .iter()
        .find(|r| r["view"] == "access" && r["column"] == "required")
        .expect(".schema lists the column");
    assert!(
        required["description"]
            .as_str()
            .unwrap()
            .contains("SMART v2 scope"),
        "{required}"
    );
    assert_eq!(required["type"], "VARCHAR");
    assert!(rows.iter().any(|r| r["column"] == "date"));
    assert_eq!(rows.last().unwrap()["semicolon"], "a;b");
}

#[test]
fn table_output_is_cut_at_max_rows_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    ingest(&samples_config(), &data);
    let out = sql(
        &data,
        &[
            "--format",
            "table",
            "--max-rows",
            "3",
            "SELECT event_id, status FROM access",
        ],
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("event_id") && text.contains("status"),
        "{text}"
    );
    assert!(text.contains("(3 rows shown, more cut)"), "{text}");
    assert!(stderr(&out).contains("cut at 3 rows"), "{}", stderr(&out));

    // json is not cut unless asked; exactly at the limit nothing is noted.
    let out = sql(
        &data,
        &["--max-rows", "2", "SELECT 1 AS a UNION ALL SELECT 2"],
        "",
    );
    assert_eq!(json_lines(&out).len(), 2);
    assert!(!stderr(&out).contains("cut"), "{}", stderr(&out));
    let out = sql(&data, &["SELECT * FROM access"], "");
    assert!(json_lines(&out).len() > 1000);
}

#[test]
fn statements_that_write_are_refused_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    ingest(&samples_config(), &data);
    let before = files(dir.path());
    let target = dir.path().join("x.csv");
    let t = target.to_str().unwrap();
    let statements = [
        format!("COPY access TO '{t}'"),
        format!("COPY (SELECT * FROM access) TO '{t}' (FORMAT csv)"),
        "CREATE TABLE t AS SELECT 1".to_string(),
        "create view v as select 1".to_string(),
        "INSERT INTO t VALUES (1)".to_string(),
        "WITH x AS (SELECT 1 AS a) INSERT INTO t SELECT a FROM x".to_string(),
        format!("EXPLAIN ANALYZE COPY (SELECT 1) TO '{t}'"),
        format!(
            "ATTACH '{}' AS other",
            dir.path().join("other.db").display()
        ),
        "INSTALL httpfs".to_string(),
        "LOAD json".to_string(),
        "SET threads = 1".to_string(),
        "PRAGMA threads = 1".to_string(),
        "CALL pragma_version()".to_string(),
        "DROP VIEW access".to_string(),
        "/* SELECT */ DELETE FROM access".to_string(),
    ];
    for statement in &statements {
        let out = sql(&data, &[statement], "");
        assert_eq!(out.status.code(), Some(2), "{statement}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("refused"),
            "{statement}: {}",
            stderr(&out)
        );
        assert!(out.stdout.is_empty(), "{statement}");
    }
    // A write after a query on stdin: the query runs, the write does not.
    let out = sql(
        &data,
        &[],
        &format!("SELECT 1 AS one;\nCOPY access TO '{t}';\nSELECT 2 AS two;"),
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stdout(&out), "{\"one\":1}\n");
    assert!(
        stderr(&out).contains("statement 2 (line 2)"),
        "{}",
        stderr(&out)
    );
    assert!(!target.exists());
    assert_eq!(files(dir.path()), before, "nothing was written");

    // DuckDB opens no file outside the lake, even in a query.
    let key = data.join("state/pseudonym.key");
    assert!(key.exists());
    let lake = data.join("lake");
    for statement in [
        format!("SELECT * FROM read_text('{}')", key.display()),
        format!(
            "SELECT * FROM read_text('{}/../state/pseudonym.key')",
            lake.display()
        ),
        "SELECT * FROM read_csv('/etc/passwd')".to_string(),
    ] {
        let out = sql(&data, &[&statement], "");
        assert_eq!(out.status.code(), Some(2), "{statement}: {}", stdout(&out));
        assert!(
            stderr(&out).contains("Permission Error"),
            "{statement}: {}",
            stderr(&out)
        );
    }
    // ... but the lake itself may be read directly.
    let out = sql(
        &data,
        &[&format!(
            "SELECT count(*) AS n FROM read_parquet('{}/access/*/*.parquet')",
            lake.display()
        )],
        "",
    );
    assert!(json_lines(&out)[0]["n"].as_u64().unwrap() > 1000);
}

#[test]
fn errors_carry_duckdbs_message_and_position() {
    let dir = tempfile::tempdir().unwrap();
    let out = sql(dir.path(), &["SELEC count(*) FROM access"], "");
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("Parser Error") && err.contains("SELEC"),
        "{err}"
    );
    assert!(!err.contains("refused"), "a typo is not a refusal: {err}");

    let out = sql(dir.path(), &["SELECT count(* FROM access"], "");
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("Parser Error"), "{err}");
    assert!(err.contains("LINE 1"), "the position: {err}");

    let out = sql(
        dir.path(),
        &[],
        "SELECT 1 AS ok;\n\nSELECT no_such_column\nFROM access;",
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("Binder Error"), "{err}");
    assert!(err.contains("no_such_column"), "{err}");
    assert!(err.contains("statement 2 (line 3)"), "{err}");
    assert_eq!(stdout(&out), "{\"ok\":1}\n");
}

#[test]
fn an_empty_data_dir_has_empty_views() {
    let dir = tempfile::tempdir().unwrap();
    let out = sql(dir.path(), &["SELECT count(*) AS n FROM access"], "");
    assert_eq!(json_lines(&out), vec![serde_json::json!({ "n": 0 })]);
    let out = sql(dir.path(), &["SELECT * FROM auth"], "");
    assert!(json_lines(&out).is_empty());
    // The header still names every column, the partition column last.
    let out = sql(dir.path(), &["--format", "csv", "SELECT * FROM access"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    let header = stdout(&out);
    assert!(header.starts_with("event_id,ts,tenant,"), "{header}");
    assert!(header.ends_with(",date\r\n"), "{header}");
    assert!(
        files(dir.path()).is_empty(),
        "opening an empty lake writes nothing"
    );
}

#[test]
fn a_lake_restricted_to_itself_still_refreshes_its_views() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let lake = Lake::open(&data, &EngineLimits::default()).unwrap();
    lake.restrict_to_lake().unwrap();
    assert_eq!(lake.row_count("access").unwrap(), 0);
    let summary = ingest(&samples_config(), &data);
    // The views were empty ones; re-created, they read the new files.
    lake.refresh_views().unwrap();
    assert_eq!(
        lake.row_count("access").unwrap(),
        summary["events"]["access"].as_u64().unwrap()
    );
    let key = data.join("state/pseudonym.key");
    let outside = lake.query_batches(
        &format!("SELECT * FROM read_text('{}')", key.display()),
        |_, _| true,
    );
    let err = outside.unwrap_err().to_string();
    assert!(err.contains("Permission Error"), "{err}");
    // No SET undoes it.
    let err = lake
        .connection()
        .execute_batch("SET enable_external_access = true")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("configuration") || err.contains("external access"),
        "{err}"
    );
}
