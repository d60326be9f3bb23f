//! `scopewatch sql`: the analyst's own questions, in SQL, over the same
//! DuckDB views as the rest of scopewatch (`auth`, `access`).
//!
//! Queries come from the argument, from stdin (`;`-separated) or from an
//! interactive prompt. Nothing may write. Two layers keep it so:
//!
//! 1. Only statements that read run. The first keyword must be one of
//!    [`QUERY_KEYWORDS`] (or `EXPLAIN` of one, or a listed `PRAGMA`), and
//!    DuckDB's own parser must read the statement as exactly one SELECT
//!    (`json_serialize_sql`), which catches `WITH ... INSERT` and the like.
//! 2. Once its views exist, the connection is confined to the lake
//!    ([`Lake::restrict_to_lake`]): no file outside `<data>/lake/`, no
//!    extension, no further `SET`.
//!
//! What this does not protect against: a query that runs long or uses all
//! threads (only DuckDB's memory limit and thread count bound it; Ctrl-C
//! ends the program), reading anything inside the lake (that is the point),
//! and a person who can run `scopewatch` can read the data directory with
//! their own file permissions anyway. The guard is against SQL text doing
//! more than reading, e.g. a query pasted from elsewhere.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Context as _, Result};
use scopewatch_analytics::arrow::array::{Array, AsArray, RecordBatch};
use scopewatch_analytics::arrow::datatypes::{
    DataType, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type,
    SchemaRef, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use scopewatch_analytics::arrow::util::display::{ArrayFormatter, FormatOptions};
use scopewatch_analytics::{AnalyticsError, EngineLimits, Lake, STREAMS};
use scopewatch_model::config::Config;

use crate::cli::{SqlArgs, SqlFormat};

/// First keywords of statements that only read.
const QUERY_KEYWORDS: &[&str] = &[
    "SELECT",
    "WITH",
    "FROM",
    "VALUES",
    "TABLE",
    "DESCRIBE",
    "DESC",
    "SHOW",
    "SUMMARIZE",
    "PIVOT",
    "UNPIVOT",
];

/// `PRAGMA`s that only read (DuckDB rewrites them into queries).
const READ_PRAGMAS: &[&str] = &["table_info", "show", "show_tables", "version"];

/// Longest cell of a table before it is cut (json and csv are never cut).
const TABLE_CELL_CHARS: usize = 80;

/// What a view holds, for `.tables`.
fn view_description(view: &str) -> &'static str {
    match view {
        "auth" => "one row per authorization-server event (authorize, token, refresh, revoke, ...)",
        "access" => "one row per FHIR API call, with the permission it needed and whether the token covered it",
        _ => "",
    }
}

const DATE_DESCRIPTION: &str =
    "UTC day of `ts`: the lake's partition (folder date=YYYY-MM-DD); filter on it to read fewer files.";

pub fn run(config: &Config, args: SqlArgs) -> Result<ExitCode> {
    let format = args.format.unwrap_or(if std::io::stdout().is_terminal() {
        SqlFormat::Table
    } else {
        SqlFormat::Json
    });
    let max_rows = match args.max_rows {
        Some(0) => None,
        Some(n) => Some(n),
        None => (format == SqlFormat::Table).then_some(1000),
    };
    let limits = EngineLimits {
        memory_limit_mib: config.analysis_limits.memory_limit_mib,
        threads: config.analysis_limits.threads,
    };
    let lake = Lake::open(&config.data_dir, &limits)
        .with_context(|| format!("cannot open the lake under {}", config.data_dir.display()))?;
    lake.restrict_to_lake()?;
    let lake_dir = scopewatch_model::lake::lake_dir(&config.data_dir);
    if !lake_dir.is_dir() {
        eprintln!(
            "scopewatch: note: no lake under {} yet (nothing ingested): the views are empty",
            config.data_dir.display()
        );
    }
    let mut session = Session {
        lake,
        format,
        max_rows,
        refresh: false,
    };
    match args.query {
        Some(text) => session.run_script(std::io::Cursor::new(text)),
        None if std::io::stdin().is_terminal() => {
            session.refresh = true;
            session.interactive()
        }
        None => session.run_script(std::io::stdin().lock()),
    }
}

/// One unit of input: a statement (with the line it starts on) or a
/// meta-command such as `.schema access`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Statement { sql: String, line: usize },
    Meta(String),
}

/// Cuts input, line by line, into statements (at `;` outside quotes and
/// comments) and meta-commands (a line starting with `.` between
/// statements).
#[derive(Debug, Default)]
struct Splitter {
    buf: String,
    /// Line number (1-based) of the first line in `buf`.
    buf_line: usize,
    /// Lines fed so far.
    lines: usize,
}

impl Splitter {
    fn feed(&mut self, line: &str) -> Vec<Item> {
        self.lines += 1;
        if is_blank(&self.buf) {
            self.buf.clear();
            self.buf_line = self.lines;
            let trimmed = line.trim();
            if trimmed.starts_with('.') {
                return vec![Item::Meta(trimmed.trim_end_matches(';').trim().to_string())];
            }
        }
        self.buf.push_str(line);
        self.buf.push('\n');
        let mut items = Vec::new();
        loop {
            let Some(end) = statement_end(&self.buf) else {
                break;
            };
            let rest = self.buf.split_off(end + 1);
            let mut sql = std::mem::replace(&mut self.buf, rest);
            sql.pop(); // the `;`
            let line = self.buf_line + leading_newlines(&sql);
            self.buf_line += sql.matches('\n').count();
            if !is_blank(&sql) {
                items.push(Item::Statement {
                    sql: sql.trim().to_string(),
                    line,
                });
            }
        }
        items
    }

    /// Whether a statement is under way (for the prompt).
    fn pending(&self) -> bool {
        !is_blank(&self.buf)
    }

    /// The last statement, when the input ends without `;`.
    fn finish(&mut self) -> Option<Item> {
        let sql = std::mem::take(&mut self.buf);
        (!is_blank(&sql)).then(|| Item::Statement {
            sql: sql.trim().to_string(),
            line: self.buf_line + leading_newlines(&sql),
        })
    }
}

fn leading_newlines(sql: &str) -> usize {
    let skipped = sql.len() - sql.trim_start().len();
    sql[..skipped].matches('\n').count()
}

/// A minimal SQL lexer: where each byte is code (not inside a string,
/// quoted identifier or comment). Calls `code(i, byte)` for code bytes and
/// stops when it returns `false`.
fn scan_code(sql: &str, mut code: impl FnMut(usize, u8) -> bool) {
    let b = sql.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        match c {
            b'\'' | b'"' => {
                // E'...' strings take backslash escapes.
                let backslash = c == b'\''
                    && i > 0
                    && matches!(b[i - 1], b'e' | b'E')
                    && (i < 2 || !(b[i - 2].is_ascii_alphanumeric() || b[i - 2] == b'_'));
                i += 1;
                while i < b.len() {
                    if backslash && b[i] == b'\\' {
                        i += 2;
                        continue;
                    }
                    if b[i] == c {
                        if b.get(i + 1) == Some(&c) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'-' if next == Some(b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if next == Some(b'*') => {
                let mut depth = 0usize;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'$' if dollar_tag(&sql[i..]).is_some() => {
                let tag = dollar_tag(&sql[i..]).unwrap_or_default();
                let body = i + tag.len();
                i = match sql[body..].find(tag) {
                    Some(end) => body + end + tag.len(),
                    None => b.len(),
                };
            }
            _ => {
                if !code(i, c) {
                    return;
                }
                i += 1;
            }
        }
    }
}

/// `$tag$` (or `$$`) at the start of `s`, when it opens a dollar-quoted string.
fn dollar_tag(s: &str) -> Option<&str> {
    let rest = &s[1..];
    let end = rest.find('$')?;
    let tag = &rest[..end];
    let valid = tag.is_empty()
        || (tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !tag.starts_with(|c: char| c.is_ascii_digit()));
    valid.then(|| &s[..end + 2])
}

/// Byte offset of the first `;` that ends a statement.
fn statement_end(sql: &str) -> Option<usize> {
    let mut end = None;
    scan_code(sql, |i, c| {
        if c == b';' {
            end = Some(i);
            false
        } else {
            true
        }
    });
    end
}

/// Only whitespace and comments.
fn is_blank(sql: &str) -> bool {
    let mut blank = true;
    scan_code(sql, |_, c| {
        blank = c.is_ascii_whitespace();
        blank
    });
    blank
}

/// The statement's code (comments replaced by spaces), for reading keywords.
fn code_only(sql: &str) -> String {
    let mut out = vec![b' '; sql.len()];
    scan_code(sql, |i, c| {
        out[i] = c;
        true
    });
    // Strings and identifiers become spaces too: keywords are what is left.
    String::from_utf8_lossy(&out).into_owned()
}

/// Why a statement was not run.
#[derive(Debug)]
enum Failure {
    /// Not a statement that only reads.
    Refused(String),
    /// DuckDB's message.
    Duckdb(String),
    /// Writing the output failed (a closed pipe stops quietly).
    Output(std::io::Error),
    Other(anyhow::Error),
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Output(e)
    }
}

const READS: &str =
    "SELECT, WITH, FROM, VALUES, TABLE, DESCRIBE, SHOW, SUMMARIZE, PIVOT, EXPLAIN, PRAGMA table_info";

/// The first word of `code` after `(`s and whitespace, and where it ends.
fn first_word(code: &str) -> (String, usize) {
    let start = code
        .find(|c: char| !(c.is_whitespace() || c == '('))
        .unwrap_or(code.len());
    let len = code[start..]
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(code.len() - start);
    (code[start..start + len].to_ascii_uppercase(), start + len)
}

/// Which statements run. `Ok` means: this statement only reads.
fn check_read_only(lake: &Lake, sql: &str) -> Result<(), Failure> {
    let code = code_only(sql);
    let (word, end) = first_word(&code);
    if QUERY_KEYWORDS.contains(&word.as_str()) {
        return parser_says_query(lake, sql);
    }
    match word.as_str() {
        "EXPLAIN" => {
            // EXPLAIN [ANALYZE] [(options)] <query>: the query must read
            // (EXPLAIN ANALYZE runs it).
            let mut at = end;
            loop {
                let rest = &code[at..];
                let skipped = rest.len() - rest.trim_start().len();
                let rest = rest.trim_start();
                if rest.starts_with('(') {
                    let mut depth = 0;
                    let close = rest.char_indices().find_map(|(i, c)| {
                        match c {
                            '(' => depth += 1,
                            ')' => depth -= 1,
                            _ => {}
                        }
                        (depth == 0).then_some(i)
                    });
                    match close {
                        Some(i) => at += skipped + i + 1,
                        None => break,
                    }
                    continue;
                }
                let (w, e) = first_word(rest);
                if w == "ANALYZE" || w == "ANALYSE" {
                    at += skipped + e;
                    continue;
                }
                break;
            }
            let inner = &sql[at..];
            let (inner_word, _) = first_word(&code[at..]);
            if !QUERY_KEYWORDS.contains(&inner_word.as_str()) {
                return Err(refusal(&format!("EXPLAIN {inner_word}")));
            }
            parser_says_query(lake, inner)
        }
        "PRAGMA" => {
            let rest = code[end..].trim();
            let name_len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let (name, args) = rest.split_at(name_len);
            let args = args.trim();
            let call = args.is_empty() || (args.starts_with('(') && args.ends_with(')'));
            if READ_PRAGMAS.contains(&name.to_ascii_lowercase().as_str()) && call {
                Ok(())
            } else {
                Err(Failure::Refused(format!(
                    "refused: `PRAGMA {name}` is not run: scopewatch sql only reads \
                     (of the PRAGMAs: {}; or SELECT from duckdb_settings())",
                    READ_PRAGMAS.join(", ")
                )))
            }
        }
        "" => Err(Failure::Refused(
            "refused: not a query: scopewatch sql runs statements that start with one of \
             SELECT, WITH, FROM, ..."
                .into(),
        )),
        // A typo (`SELEC`) gets DuckDB's syntax error, not a refusal.
        other => match parse(lake, sql)? {
            Parsed::SyntaxError => Ok(()),
            _ => Err(refusal(other)),
        },
    }
}

fn refusal(word: &str) -> Failure {
    Failure::Refused(format!(
        "refused: `{word}` statements are not run: scopewatch sql only reads the lake ({READS})"
    ))
}

/// How DuckDB's own parser reads a statement.
#[derive(Debug)]
enum Parsed {
    /// One SELECT (DESCRIBE, SHOW, SUMMARIZE, FROM-first and VALUES are
    /// SELECTs to it).
    OneQuery,
    /// Several statements (a PIVOT without `IN (...)` creates a type first).
    Several(usize),
    /// A statement that is not a SELECT.
    NotQuery,
    /// Not SQL: left for DuckDB to report when the statement is prepared,
    /// which runs nothing.
    SyntaxError,
    /// Anything else (a SELECT DuckDB cannot serialise): not confirmed.
    Unconfirmed(String),
}

fn parse(lake: &Lake, sql: &str) -> Result<Parsed, Failure> {
    let text: String = lake
        .connection()
        .query_row("SELECT json_serialize_sql(?::VARCHAR)", [sql], |r| r.get(0))
        .map_err(|e| Failure::Other(anyhow!("cannot check the statement with DuckDB: {e}")))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Failure::Other(anyhow!("json_serialize_sql gave no JSON: {e}")))?;
    if v["error"] == false {
        let n = v["statements"].as_array().map_or(0, Vec::len);
        return Ok(if n == 1 {
            Parsed::OneQuery
        } else {
            Parsed::Several(n)
        });
    }
    let message = v["error_message"].as_str().unwrap_or("").to_string();
    Ok(match v["error_type"].as_str() {
        Some("parser") => Parsed::SyntaxError,
        _ if message.contains("Only SELECT") => Parsed::NotQuery,
        _ => Parsed::Unconfirmed(message),
    })
}

/// A statement whose first keyword says it reads must be one SELECT to
/// DuckDB too (this catches `WITH ... INSERT`).
fn parser_says_query(lake: &Lake, sql: &str) -> Result<(), Failure> {
    let pivot = matches!(first_word(&code_only(sql)).0.as_str(), "PIVOT" | "UNPIVOT");
    match parse(lake, sql)? {
        Parsed::OneQuery | Parsed::SyntaxError => Ok(()),
        Parsed::NotQuery | Parsed::Several(_) if pivot => Err(Failure::Refused(
            "refused: a PIVOT without `IN (...)` makes DuckDB create a type first; \
             name the values: PIVOT access ON tenant IN ('north', 'south') USING count(*)"
                .into(),
        )),
        Parsed::Several(n) => Err(Failure::Refused(format!(
            "refused: DuckDB reads this as {n} statements; give one query at a time"
        ))),
        Parsed::NotQuery => Err(Failure::Refused(format!(
            "refused: DuckDB reads this as a statement that is not a query: scopewatch sql \
             only reads the lake ({READS})"
        ))),
        Parsed::Unconfirmed(message) => Err(Failure::Refused(format!(
            "refused: DuckDB could not confirm that this statement only reads: {message}"
        ))),
    }
}

/// A value of a result, typed enough for JSON, in column order.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    Text(String),
    List(Vec<Cell>),
    Object(Vec<(String, Cell)>),
}

impl Cell {
    fn float(x: f64) -> Cell {
        serde_json::Number::from_f64(x)
            .map(Cell::Number)
            .unwrap_or_else(|| Cell::Text(x.to_string()))
    }

    fn write_json(&self, out: &mut String) {
        match self {
            Cell::Null => out.push_str("null"),
            Cell::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Cell::Number(n) => out.push_str(&n.to_string()),
            Cell::Text(s) => out.push_str(&json_string(s)),
            Cell::List(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write_json(out);
                }
                out.push(']');
            }
            Cell::Object(fields) => write_object(out, fields.iter().map(|(k, v)| (k.as_str(), v))),
        }
    }

    /// The text of a table or CSV cell; `None` for NULL. Lists and structs
    /// are written as JSON.
    fn text(&self) -> Option<String> {
        match self {
            Cell::Null => None,
            Cell::Bool(b) => Some(b.to_string()),
            Cell::Number(n) => Some(n.to_string()),
            Cell::Text(s) => Some(s.clone()),
            Cell::List(_) | Cell::Object(_) => {
                let mut s = String::new();
                self.write_json(&mut s);
                Some(s)
            }
        }
    }
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

fn write_object<'a>(out: &mut String, fields: impl Iterator<Item = (&'a str, &'a Cell)>) {
    out.push('{');
    for (i, (k, v)) in fields.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&json_string(k));
        out.push(':');
        v.write_json(out);
    }
    out.push('}');
}

/// RFC 3339 in UTC, from nanoseconds since the epoch.
fn rfc3339(nanos: i128) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// The values of one column. Timestamps (with or without a time zone: the
/// lake's are all UTC) become RFC 3339 strings, lists arrays, structs and
/// maps objects; types JSON has no form for are written as DuckDB/Arrow
/// display them.
fn column_cells(array: &dyn Array) -> Vec<Cell> {
    // Logical nulls: a column of NULL literals (Arrow's Null type) has no
    // null buffer, yet every value is null.
    let nulls = array.logical_nulls();
    let is_null = |i: usize| nulls.as_ref().is_some_and(|n| n.is_null(i));
    let n = array.len();
    let each = |f: &dyn Fn(usize) -> Cell| -> Vec<Cell> {
        (0..n)
            .map(|i| if is_null(i) { Cell::Null } else { f(i) })
            .collect()
    };
    macro_rules! integer {
        ($t:ty) => {{
            let a = array.as_primitive::<$t>();
            each(&|i| Cell::Number(a.value(i).into()))
        }};
    }
    macro_rules! timestamp {
        ($t:ty, $nanos:expr) => {{
            let a = array.as_primitive::<$t>();
            each(&|i| {
                let v = a.value(i) as i128 * $nanos;
                rfc3339(v).map_or_else(|| Cell::Text(format!("{v}ns")), Cell::Text)
            })
        }};
    }
    match array.data_type() {
        DataType::Boolean => {
            let a = array.as_boolean();
            each(&|i| Cell::Bool(a.value(i)))
        }
        DataType::Int8 => integer!(Int8Type),
        DataType::Int16 => integer!(Int16Type),
        DataType::Int32 => integer!(Int32Type),
        DataType::Int64 => integer!(Int64Type),
        DataType::UInt8 => integer!(UInt8Type),
        DataType::UInt16 => integer!(UInt16Type),
        DataType::UInt32 => integer!(UInt32Type),
        DataType::UInt64 => integer!(UInt64Type),
        DataType::Float32 => {
            let a = array.as_primitive::<Float32Type>();
            each(&|i| Cell::float(a.value(i) as f64))
        }
        DataType::Float64 => {
            let a = array.as_primitive::<Float64Type>();
            each(&|i| Cell::float(a.value(i)))
        }
        DataType::Utf8 => {
            let a = array.as_string::<i32>();
            each(&|i| Cell::Text(a.value(i).to_string()))
        }
        DataType::LargeUtf8 => {
            let a = array.as_string::<i64>();
            each(&|i| Cell::Text(a.value(i).to_string()))
        }
        DataType::Utf8View => {
            let a = array.as_string_view();
            each(&|i| Cell::Text(a.value(i).to_string()))
        }
        DataType::Timestamp(TimeUnit::Second, _) => timestamp!(TimestampSecondType, 1_000_000_000),
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            timestamp!(TimestampMillisecondType, 1_000_000)
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            timestamp!(TimestampMicrosecondType, 1_000)
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => timestamp!(TimestampNanosecondType, 1),
        DataType::Decimal128(_, scale) => {
            // count(*) is BIGINT, but sum() gives HUGEINT, which reaches
            // Arrow as DECIMAL(38,0): keep such integers numbers.
            let a = array.as_primitive::<Decimal128Type>();
            let scale = *scale;
            let text = display_cells(array);
            each(&|i| {
                let v = a.value(i);
                if scale == 0 {
                    if let Ok(v) = i64::try_from(v) {
                        return Cell::Number(v.into());
                    }
                    if let Ok(v) = u64::try_from(v) {
                        return Cell::Number(v.into());
                    }
                }
                match &text[i] {
                    Cell::Text(t) if scale > 0 => t
                        .parse::<f64>()
                        .ok()
                        .and_then(serde_json::Number::from_f64)
                        .map_or_else(|| Cell::Text(t.clone()), Cell::Number),
                    other => other.clone(),
                }
            })
        }
        DataType::List(_) => {
            let a = array.as_list::<i32>();
            each(&|i| Cell::List(column_cells(a.value(i).as_ref())))
        }
        DataType::LargeList(_) => {
            let a = array.as_list::<i64>();
            each(&|i| Cell::List(column_cells(a.value(i).as_ref())))
        }
        DataType::FixedSizeList(_, _) => {
            let a = array.as_fixed_size_list();
            each(&|i| Cell::List(column_cells(a.value(i).as_ref())))
        }
        DataType::Struct(fields) => {
            let a = array.as_struct();
            let columns: Vec<Vec<Cell>> = a
                .columns()
                .iter()
                .map(|c| column_cells(c.as_ref()))
                .collect();
            each(&|i| {
                Cell::Object(
                    fields
                        .iter()
                        .zip(&columns)
                        .map(|(f, c)| (f.name().clone(), c[i].clone()))
                        .collect(),
                )
            })
        }
        DataType::Map(_, _) => {
            let a = array.as_map();
            each(&|i| {
                let entries = a.value(i);
                let keys = column_cells(entries.column(0).as_ref());
                let values = column_cells(entries.column(1).as_ref());
                Cell::Object(
                    keys.iter()
                        .zip(values)
                        .map(|(k, v)| (k.text().unwrap_or_else(|| "null".into()), v))
                        .collect(),
                )
            })
        }
        _ => display_cells(array),
    }
}

/// Values as Arrow displays them (dates, intervals, blobs, enums...).
fn display_cells(array: &dyn Array) -> Vec<Cell> {
    let options = FormatOptions::default();
    let nulls = array.logical_nulls();
    match ArrayFormatter::try_new(array, &options) {
        Ok(f) => (0..array.len())
            .map(|i| {
                if nulls.as_ref().is_some_and(|n| n.is_null(i)) {
                    Cell::Null
                } else {
                    Cell::Text(f.value(i).to_string())
                }
            })
            .collect(),
        Err(_) => vec![Cell::Text(format!("<{}>", array.data_type())); array.len()],
    }
}

/// Writes results in the chosen format, at most `max_rows` rows each.
#[derive(Debug)]
struct Session {
    lake: Lake,
    format: SqlFormat,
    max_rows: Option<u64>,
    /// Re-create the views before each statement (the prompt).
    refresh: bool,
}

/// A result being printed.
struct Printer<'a> {
    format: SqlFormat,
    max_rows: Option<u64>,
    out: &'a mut dyn Write,
    columns: Vec<String>,
    numeric: Vec<bool>,
    started: bool,
    rows: u64,
    cut: bool,
    /// Table mode: long cells are cut to [`TABLE_CELL_CHARS`].
    cut_cells: bool,
    /// Table mode: rows held until the end, to size the columns.
    held: Vec<Vec<Option<String>>>,
}

impl<'a> Printer<'a> {
    fn new(format: SqlFormat, max_rows: Option<u64>, out: &'a mut dyn Write) -> Self {
        Printer {
            format,
            max_rows,
            out,
            columns: Vec::new(),
            numeric: Vec::new(),
            started: false,
            rows: 0,
            cut: false,
            cut_cells: true,
            held: Vec::new(),
        }
    }

    fn start(&mut self, schema: &SchemaRef) -> std::io::Result<()> {
        let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        let numeric = schema
            .fields()
            .iter()
            .map(|f| f.data_type().is_numeric())
            .collect();
        self.start_with(names, numeric)
    }

    fn start_with(&mut self, names: Vec<String>, numeric: Vec<bool>) -> std::io::Result<()> {
        if self.started {
            return Ok(());
        }
        self.started = true;
        self.numeric = numeric;
        self.columns = match self.format {
            // JSON keys must differ: a repeated name gets `_2`, `_3`...
            SqlFormat::Json => {
                let mut seen: Vec<String> = Vec::new();
                for name in names {
                    let mut key = name.clone();
                    let mut n = 1;
                    while seen.contains(&key) {
                        n += 1;
                        key = format!("{name}_{n}");
                    }
                    seen.push(key);
                }
                seen
            }
            _ => names,
        };
        if self.format == SqlFormat::Csv {
            let header: Vec<Option<String>> = self.columns.iter().cloned().map(Some).collect();
            write_csv_row(self.out, &header)?;
        }
        Ok(())
    }

    /// Whether more rows are wanted.
    fn wants_more(&self) -> bool {
        !self.cut
    }

    fn batch(&mut self, schema: &SchemaRef, batch: &RecordBatch) -> std::io::Result<()> {
        self.start(schema)?;
        let columns: Vec<Vec<Cell>> = batch
            .columns()
            .iter()
            .map(|c| column_cells(c.as_ref()))
            .collect();
        for row in 0..batch.num_rows() {
            let cells: Vec<&Cell> = columns.iter().map(|c| &c[row]).collect();
            if !self.row(&cells)? {
                break;
            }
        }
        Ok(())
    }

    /// Prints one row; `false` once the limit is reached.
    fn row(&mut self, cells: &[&Cell]) -> std::io::Result<bool> {
        if self.max_rows.is_some_and(|m| self.rows >= m) {
            self.cut = true;
            return Ok(false);
        }
        self.rows += 1;
        match self.format {
            SqlFormat::Json => {
                let mut line = String::new();
                write_object(
                    &mut line,
                    self.columns
                        .iter()
                        .map(String::as_str)
                        .zip(cells.iter().copied()),
                );
                line.push('\n');
                self.out.write_all(line.as_bytes())?;
            }
            SqlFormat::Csv => {
                let texts: Vec<Option<String>> = cells.iter().map(|c| c.text()).collect();
                write_csv_row(self.out, &texts)?;
            }
            SqlFormat::Table => self.held.push(cells.iter().map(|c| c.text()).collect()),
        }
        Ok(true)
    }

    /// Ends the result (after [`Printer::start`]).
    fn finish(&mut self) -> std::io::Result<()> {
        if self.format == SqlFormat::Table {
            let mut table = comfy_table::Table::new();
            table.load_style(comfy_table::presets::UTF8_FULL_CONDENSED);
            table.set_header(self.columns.clone());
            for row in &self.held {
                table.add_row(row.iter().map(|c| match c {
                    None => "NULL".to_string(),
                    Some(t) if self.cut_cells && t.chars().count() > TABLE_CELL_CHARS => {
                        let cut: String = t.chars().take(TABLE_CELL_CHARS - 1).collect();
                        format!("{cut}…")
                    }
                    Some(t) => t.clone(),
                }));
            }
            for (i, numeric) in self.numeric.iter().enumerate() {
                if *numeric {
                    if let Some(column) = table.column_mut(i) {
                        column.set_cell_alignment(comfy_table::CellAlignment::Right);
                    }
                }
            }
            let plural = if self.rows == 1 { "" } else { "s" };
            writeln!(self.out, "{table}")?;
            if self.cut {
                writeln!(self.out, "({} row{plural} shown, more cut)", self.rows)?;
            } else {
                writeln!(self.out, "({} row{plural})", self.rows)?;
            }
        }
        self.out.flush()?;
        if self.cut {
            eprintln!(
                "scopewatch: output cut at {} rows (--max-rows); add LIMIT, or --max-rows 0 for all",
                self.rows
            );
        }
        Ok(())
    }
}

/// One CSV record (RFC 4180): fields with a comma, quote or line break are
/// quoted, quotes doubled; NULL is an empty field, an empty string `""`.
fn write_csv_row(out: &mut dyn Write, fields: &[Option<String>]) -> std::io::Result<()> {
    let mut line = String::new();
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        match field {
            None => {}
            Some(f) if f.is_empty() || f.contains([',', '"', '\n', '\r']) => {
                line.push('"');
                line.push_str(&f.replace('"', "\"\""));
                line.push('"');
            }
            Some(f) => line.push_str(f),
        }
    }
    line.push_str("\r\n");
    out.write_all(line.as_bytes())
}

impl Session {
    /// Runs input to its end, each statement as soon as its `;` (or the
    /// end) arrives, stopping at the first failure (exit 2).
    fn run_script(&mut self, input: impl BufRead) -> Result<ExitCode> {
        let mut splitter = Splitter::default();
        let mut lines = input.lines();
        let mut count = 0usize;
        loop {
            let items = match lines.next() {
                Some(line) => splitter.feed(&line.context("reading the queries")?),
                None => match splitter.finish() {
                    Some(last) => vec![last],
                    None => break,
                },
            };
            for item in items {
                count += 1;
                match self.run_item(&item) {
                    Ok(true) => {}
                    Ok(false) => return Ok(ExitCode::SUCCESS),
                    Err(Failure::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                        return Ok(ExitCode::SUCCESS)
                    }
                    Err(failure) => {
                        let place = match item {
                            Item::Statement { line, .. } if count > 1 || line > 1 => {
                                format!("statement {count} (line {line}): ")
                            }
                            _ => String::new(),
                        };
                        return Err(anyhow!("{place}{}", failure_text(failure)));
                    }
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }

    /// Runs one statement or meta-command; `Ok(false)` for `.quit`.
    fn run_item(&mut self, item: &Item) -> Result<bool, Failure> {
        match item {
            Item::Statement { sql, .. } => {
                self.statement(sql)?;
                Ok(true)
            }
            Item::Meta(command) => self.meta(command),
        }
    }

    fn statement(&self, sql: &str) -> Result<(), Failure> {
        check_read_only(&self.lake, sql)?;
        if self.refresh {
            // A long session sees streams that got their first files since
            // it started (new files of a stream are picked up anyway).
            let _guard = self
                .lake
                .read_guard()
                .map_err(|e| Failure::Other(e.into()))?;
            self.lake
                .refresh_views()
                .map_err(|e| Failure::Other(e.into()))?;
        }
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        let mut printer = Printer::new(self.format, self.max_rows, &mut out);
        let mut written: std::io::Result<()> = Ok(());
        let schema = self
            .lake
            .query_batches(sql, |schema, batch| {
                written = printer.batch(schema, &batch);
                written.is_ok() && printer.wants_more()
            })
            .map_err(|e| match e {
                AnalyticsError::Duckdb { source, .. } => Failure::Duckdb(source.to_string()),
                other => Failure::Other(other.into()),
            })?;
        written?;
        printer.start(&schema)?;
        printer.finish()?;
        Ok(())
    }

    fn meta(&self, command: &str) -> Result<bool, Failure> {
        let mut words = command.split_whitespace();
        let name = words.next().unwrap_or("");
        let arg = words.next();
        let views: Vec<&str> = STREAMS.iter().map(|(s, _)| *s).collect();
        match name {
            ".quit" | ".exit" | ".q" => Ok(false),
            ".help" => {
                println!(
                    "Statements end with `;`. Only queries run ({READS}).\n\
                     .tables            the views, their rows and what they hold\n\
                     .schema [VIEW]     columns of every view (or one): type, nullable, description\n\
                     .quit              leave (or Ctrl-D)"
                );
                Ok(true)
            }
            ".tables" => {
                let mut rows = Vec::new();
                for view in &views {
                    let n = self
                        .lake
                        .row_count(view)
                        .map_err(|e| Failure::Other(e.into()))?;
                    rows.push(vec![
                        Cell::Text(view.to_string()),
                        Cell::Number(n.into()),
                        Cell::Text(view_description(view).into()),
                    ]);
                }
                self.print_rows(
                    &["view", "rows", "description"],
                    &[false, true, false],
                    rows,
                )?;
                Ok(true)
            }
            ".schema" => {
                let chosen: Vec<&str> = match arg {
                    None => views.clone(),
                    Some(v) if views.contains(&v) => vec![v],
                    Some(v) => {
                        return Err(Failure::Refused(format!(
                            "no view `{v}`: the views are {}",
                            views.join(", ")
                        )))
                    }
                };
                let mut rows = Vec::new();
                for view in chosen {
                    let schema = STREAMS
                        .iter()
                        .find(|(s, _)| *s == view)
                        .map(|(_, f)| f())
                        .ok_or_else(|| Failure::Other(anyhow!("no stream {view}")))?;
                    // The view's own types, as DuckDB reads the files.
                    let described: Vec<(String, String, String)> = self
                        .lake
                        .connection()
                        .prepare(&format!("DESCRIBE {view}"))
                        .and_then(|mut s| {
                            s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                                .collect()
                        })
                        .map_err(|e| Failure::Duckdb(e.to_string()))?;
                    for (column, ty, _) in described {
                        // Nullability as the lake declares it (DuckDB says
                        // YES for every column of a view).
                        let field = schema.field_with_name(&column).ok();
                        let (null, description) = match field {
                            Some(f) => (
                                f.is_nullable(),
                                f.metadata().get("description").cloned().unwrap_or_default(),
                            ),
                            None if column == "date" => (false, DATE_DESCRIPTION.to_string()),
                            None => (true, String::new()),
                        };
                        rows.push(vec![
                            Cell::Text(view.to_string()),
                            Cell::Text(column),
                            Cell::Text(ty),
                            Cell::Bool(null),
                            Cell::Text(description),
                        ]);
                    }
                }
                self.print_rows(
                    &["view", "column", "type", "nullable", "description"],
                    &[false; 5],
                    rows,
                )?;
                Ok(true)
            }
            other => Err(Failure::Refused(format!(
                "unknown command `{other}`: try .tables, .schema [view], .help, .quit"
            ))),
        }
    }

    /// Prints rows made here (meta-commands) like a query result.
    fn print_rows(
        &self,
        columns: &[&str],
        numeric: &[bool],
        rows: Vec<Vec<Cell>>,
    ) -> Result<(), Failure> {
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        // Meta-commands are never cut: their output is small.
        let mut printer = Printer::new(self.format, None, &mut out);
        printer.cut_cells = false;
        printer.start_with(
            columns.iter().map(|c| c.to_string()).collect(),
            numeric.to_vec(),
        )?;
        for row in &rows {
            let cells: Vec<&Cell> = row.iter().collect();
            printer.row(&cells)?;
        }
        printer.finish()?;
        Ok(())
    }

    /// The prompt: history, meta-commands, errors shown and survived.
    fn interactive(&mut self) -> Result<ExitCode> {
        use rustyline::error::ReadlineError;
        let mut editor = rustyline::DefaultEditor::new().context("starting the prompt")?;
        let history = history_file();
        if let Some(path) = &history {
            let _ = editor.load_history(path);
        }
        eprintln!(
            "scopewatch sql: DuckDB over the views {}, read-only. End statements with `;`; \
             .tables, .schema [view], .help, .quit",
            STREAMS
                .iter()
                .map(|(s, _)| *s)
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut splitter = Splitter::default();
        loop {
            let prompt = if splitter.pending() {
                "   ...> "
            } else {
                "sql> "
            };
            let line = match editor.readline(prompt) {
                Ok(line) => line,
                Err(ReadlineError::Interrupted) => {
                    // Ctrl-C drops the statement being typed.
                    splitter = Splitter::default();
                    continue;
                }
                Err(ReadlineError::Eof) => break,
                Err(e) => return Err(anyhow!("reading the prompt: {e}")),
            };
            if !line.trim().is_empty() {
                let _ = editor.add_history_entry(line.as_str());
            }
            let mut quit = false;
            for item in splitter.feed(&line) {
                match self.run_item(&item) {
                    Ok(true) => {}
                    Ok(false) => quit = true,
                    Err(failure) => eprintln!("{}", failure_text(failure)),
                }
                if quit {
                    break;
                }
            }
            if quit {
                break;
            }
        }
        if let Some(path) = &history {
            if editor.save_history(path).is_ok() {
                // Queries can name pseudonyms: keep the history private.
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

fn failure_text(failure: Failure) -> String {
    match failure {
        Failure::Refused(m) | Failure::Duckdb(m) => m,
        Failure::Output(e) => format!("cannot write the output: {e}"),
        Failure::Other(e) => format!("{e:#}"),
    }
}

/// `$HOME/.scopewatch_sql_history`, when there is a home.
fn history_file() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".scopewatch_sql_history"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statements(text: &str) -> Vec<Item> {
        let mut s = Splitter::default();
        let mut items: Vec<Item> = text.lines().flat_map(|l| s.feed(l)).collect();
        items.extend(s.finish());
        items
    }

    #[test]
    fn splits_at_semicolons_outside_quotes_and_comments() {
        let items = statements(
            "SELECT 'a;b', \"x;y\" FROM t; -- c;\n\
             /* d; /* nested; */ */ SELECT $$e;$$;\n\
             .schema access\n\
             SELECT E'it\\'s;' ;;\n\
             SELECT 1",
        );
        let sqls: Vec<String> = items
            .iter()
            .map(|i| match i {
                Item::Statement { sql, line } => format!("{line}: {sql}"),
                Item::Meta(m) => format!("meta {m}"),
            })
            .collect();
        assert_eq!(
            sqls,
            vec![
                "1: SELECT 'a;b', \"x;y\" FROM t".to_string(),
                // a comment alone before the line break is dropped
                "2: /* d; /* nested; */ */ SELECT $$e;$$".to_string(),
                "meta .schema access".to_string(),
                "4: SELECT E'it\\'s;'".to_string(),
                "5: SELECT 1".to_string(),
            ]
        );
        assert!(is_blank(" -- only a comment\n /* and another */ "));
        assert!(!is_blank(" -- comment\n x"));
    }

    #[test]
    fn first_words_are_read_past_comments_and_parentheses() {
        assert_eq!(first_word(&code_only("/* x */ ((select 1))")).0, "SELECT");
        assert_eq!(first_word(&code_only("-- select\ncopy t to 'x'")).0, "COPY");
    }

    #[test]
    fn csv_quotes_what_needs_it() {
        let mut out = Vec::new();
        write_csv_row(
            &mut out,
            &[
                Some("plain".into()),
                Some("a,b".into()),
                Some("say \"hi\"".into()),
                None,
                Some(String::new()),
            ],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "plain,\"a,b\",\"say \"\"hi\"\"\",,\"\"\r\n"
        );
    }

    #[test]
    fn json_keeps_column_order() {
        let mut s = String::new();
        let (b, a) = (
            Cell::List(vec![Cell::Text("x".into()), Cell::Null]),
            Cell::Bool(true),
        );
        write_object(&mut s, [("b", &b), ("a", &a)].into_iter());
        assert_eq!(s, r#"{"b":["x",null],"a":true}"#);
        assert_eq!(
            rfc3339(1_500_000_000).as_deref(),
            Some("1970-01-01T00:00:01.5Z")
        );
    }
}
