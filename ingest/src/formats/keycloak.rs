//! The `keycloak` format: Keycloak's user events, as its JBoss logging event
//! listener writes them into the server log (log category
//! `org.keycloak.events`), or as its REST API returns them (one JSON object
//! per line).
//!
//! # Accepted lines
//!
//! - The logging listener, pre-26 unquoted form (values containing a space
//!   are single-quoted, values end at `, ` followed by the next `key=`):
//!
//!   ```text
//!   11:36:09,965 WARN  [org.keycloak.events] (default task-51) type=LOGIN_ERROR, realmId=master, clientId=myapp, userId=19aeb848-..., ipAddress=127.0.0.1, error=invalid_user_credentials, auth_method=openid-connect, username=admin
//!   ```
//!
//! - The logging listener, Keycloak 26.x quoted form (`"` by default, `'`
//!   when so configured; a quote inside a value is escaped as `\"`):
//!
//!   ```text
//!   2026-11-23 10:00:00,123 DEBUG [org.keycloak.events] (executor-thread-1) type="CODE_TO_TOKEN", realmId="4f2c...", realmName="north", clientId="cardio-app", userId="...", sessionId="...", ipAddress="10.1.2.3", token_id="...", refresh_token_id="...", scope="openid launch/patient"
//!   ```
//!
//!   The timestamp in front is `HH:MM:SS,mmm` (Keycloak's old default),
//!   `YYYY-MM-DD HH:MM:SS,mmm` (Keycloak 26's default) or ISO 8601
//!   (`2026-11-23T10:00:00.123Z`, any offset); `.` or `,` before the
//!   fraction. A timestamp without an offset is taken as UTC (run Keycloak
//!   with a UTC clock or log an offset). A time-only timestamp has no date:
//!   it is given **the current UTC date** when the line is read, which is
//!   wrong for lines read on a later day (and around midnight), so prefer a
//!   log format with a date. The log level and the `(thread)` after the
//!   category are optional; the category may be abbreviated `[o.k.events]`.
//! - Quarkus JSON console logs (`--log-console-output=json`): an object with
//!   `loggerName` `org.keycloak.events`, a `message` in either form above and
//!   an ISO 8601 `timestamp`.
//! - REST event JSON: `id`, `time` (epoch milliseconds), `type`, `realmId`,
//!   `clientId`, `userId`, `sessionId`, `ipAddress`, `error`, and `details`
//!   (an object of strings).
//!
//! Skipped without error (`Ok`, nothing appended): blank lines, lines of any
//! other log category (a Keycloak server log mixes them), stack-trace lines,
//! admin events (`operationType=...` under the same category, or JSON with
//! `operationType`), other JSON objects without `type`, and events of types
//! that are not OAuth events (`UPDATE_PASSWORD`, `REGISTER`, ...). A line
//! that is an event line but malformed (no `type`, an unterminated quote, a
//! bad timestamp, invalid JSON) is a [`ParseError`], which never quotes a
//! value from the line.
//!
//! # Mapping
//!
//! | Keycloak `type` (and its `_ERROR` twin) | `kind` |
//! |---|---|
//! | `LOGIN` | `authorize` |
//! | `CODE_TO_TOKEN` | `token` |
//! | `REFRESH_TOKEN` | `refresh` |
//! | `INTROSPECT_TOKEN` | `introspect` |
//! | `REVOKE_GRANT` | `revoke` |
//! | `CLIENT_LOGIN` | `client_credentials` |
//! | `LOGOUT` | `logout` |
//! | `TOKEN_EXCHANGE` | `token_exchange` |
//!
//! - `outcome`: `failure` when the type ends with `_ERROR`, else `success`;
//! - `error`: `error` and, when the event failed, the `reason` detail, as
//!   `<error>: <reason>`; the event's own `userId` and `username` are
//!   replaced by user pseudonyms in it, then it is scrubbed with
//!   [`Pseudonymiser::redact_reason`] (plain words such as "Maximum allowed refresh token reuse exceeded"
//!   stay readable);
//! - `tenant`: by the source's `tenant_from`: absent or `realm` (the
//!   default) gives the realm: `tenant_map[realmName]`, else
//!   `tenant_map[realmId]`, else `realmName`, else `realmId`; `fixed` (and
//!   any setting that means nothing here: `host`, `path:N`, `claim:..`)
//!   gives nothing from the line. Whatever gives nothing falls back to the
//!   source's `tenant`; with neither, the line is an error (`tenant`);
//! - `user`: keyed pseudonym of `userId`. `username` (and every other
//!   detail not listed here) is never stored;
//! - `client_id` = `clientId`, `session_id` = `sessionId`, `ip` =
//!   `ipAddress`, `grant_type` = the `grant_type` detail;
//! - `scope` detail (space-separated): `scopes_requested` for `LOGIN` and
//!   `LOGIN_ERROR`; `scopes_granted` for a successful `CODE_TO_TOKEN`,
//!   `REFRESH_TOKEN`, `CLIENT_LOGIN` or `TOKEN_EXCHANGE`, and
//!   `scopes_requested` when those failed; ignored for other types. An
//!   empty `scope` means "none";
//! - token ids: Keycloak logs ids (`jti`s), never tokens, so `token_id`,
//!   `refresh_token_id` and `updated_refresh_token_id` become `jti:<id>`
//!   ([`crate::privacy::jti_id`]), the id a gateway derives from the same
//!   token's JWT, so calls join their grants; a value shaped like a JWT
//!   (three base64url parts) is reduced with [`Pseudonymiser::token_id`];
//! - refresh (`REFRESH_TOKEN` and `REFRESH_TOKEN_ERROR`): the event's
//!   `refresh_token_id` is the refresh token **consumed**, so it becomes
//!   `parent_token_id`; `refresh_token_id` is `updated_refresh_token_id`
//!   (the new refresh token) when the server rotates refresh tokens, else
//!   the consumed id again. Without rotation two refreshes consuming the
//!   same token therefore show the same `parent_token_id` twice, which is
//!   how a replay is seen. For the other types `refresh_token_id` is the
//!   refresh token issued (or acted on) and `parent_token_id` is empty;
//! - the literal value `null` (what Keycloak writes for a missing id) counts
//!   as absent; `env`, `event_id` and the lineage columns are the
//!   pipeline's.

use std::borrow::Cow;

use scopewatch_model::config::{SourceOptions, TenantFrom};
use scopewatch_model::events::{AuthEvent, AuthKind, AuthOutcome, Timestamp};

use crate::adapter::{line_text, Adapter, LineContext, Loose, ParseError, Parsed};
use crate::privacy::{IdKind, Pseudonymiser};

/// The `keycloak` adapter.
#[derive(Debug, Clone, Default)]
pub struct Keycloak;

impl Keycloak {
    pub const NAME: &'static str = "keycloak";
}

/// The log category of Keycloak's event listener, full and abbreviated.
const CATEGORIES: [&str; 2] = ["[org.keycloak.events]", "[o.k.events]"];

impl Adapter for Keycloak {
    fn name(&self) -> &'static str {
        Keycloak::NAME
    }

    fn parse_line(
        &self,
        line: &[u8],
        ctx: &LineContext<'_>,
        out: &mut Vec<Parsed>,
    ) -> Result<(), ParseError> {
        let text = line_text(line)?;
        let text = text.trim();
        if text.is_empty() {
            return Ok(());
        }
        let event = if text.starts_with('{') {
            json_event(text)?
        } else {
            log_event(text)?
        };
        if let Some(event) = event {
            if let Some(auth) = build(&event, ctx)? {
                out.push(Parsed::Auth(auth));
            }
        }
        Ok(())
    }
}

/// One event's timestamp and its `key`/value pairs: the top-level fields
/// first, then the details (lookups take the first match).
struct RawEvent<'a> {
    ts: Timestamp,
    pairs: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

impl RawEvent<'_> {
    /// A value, absent when missing or written as `null`.
    fn get_raw(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_ref())
            .filter(|v| *v != "null")
    }

    /// A value, absent when missing, `null` or empty.
    fn get(&self, key: &str) -> Option<&str> {
        self.get_raw(key).filter(|v| !v.is_empty())
    }
}

// ---------------------------------------------------------------------------
// The log form

/// A server-log line: `None` when it is not of the events category.
fn log_event(text: &str) -> Result<Option<RawEvent<'_>>, ParseError> {
    // The category is the line's first bracket; the prefix holds no `[`.
    let Some(open) = text.find('[') else {
        return Ok(None);
    };
    let Some(category) = CATEGORIES.iter().find(|c| text[open..].starts_with(**c)) else {
        return Ok(None);
    };
    let ts = prefix_timestamp(&text[..open])?;
    let mut message = text[open + category.len()..].trim_start();
    if message.starts_with('(') {
        message = skip_thread(message)?;
    }
    let pairs = scan_pairs(message.trim())?;
    Ok(Some(RawEvent {
        ts,
        pairs: pairs
            .into_iter()
            .map(|(k, v)| (Cow::Borrowed(k), v))
            .collect(),
    }))
}

/// The message after a `(thread name)`, which may itself hold parentheses.
fn skip_thread(s: &str) -> Result<&str, ParseError> {
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Ok(s[i + 1..].trim_start());
                }
            }
            _ => {}
        }
    }
    Err(ParseError::Format("unterminated thread name".into()))
}

const TS_FORMATS: &str =
    "expected `HH:MM:SS,mmm`, `YYYY-MM-DD HH:MM:SS,mmm` or ISO 8601 before the log category";

/// The timestamp (and optional level) in front of the category.
fn prefix_timestamp(prefix: &str) -> Result<Timestamp, ParseError> {
    let mut tokens: Vec<&str> = prefix.split_whitespace().collect();
    if tokens.last().is_some_and(|t| is_level(t)) {
        tokens.pop();
    }
    let bad = || ParseError::bad_value("ts", TS_FORMATS);
    let (date, clock) = match tokens.as_slice() {
        [one] => match one.split_once('T') {
            Some((d, t)) => (Some(parse_date(d).ok_or_else(bad)?), t),
            None => (None, *one),
        },
        [d, t] => (Some(parse_date(d).ok_or_else(bad)?), *t),
        [] => return Err(ParseError::MissingField("ts".into())),
        _ => return Err(bad()),
    };
    let (time, offset) = parse_clock(clock).ok_or_else(bad)?;
    // Time-only logs carry no date: today's (UTC) is the best guess.
    let date = date.unwrap_or_else(|| time::OffsetDateTime::now_utc().date());
    Ok(Timestamp::from_offset_datetime(
        time::PrimitiveDateTime::new(date, time).assume_offset(offset),
    ))
}

fn is_level(t: &str) -> bool {
    const LEVELS: [&str; 12] = [
        "TRACE", "DEBUG", "INFO", "WARN", "WARNING", "ERROR", "FATAL", "SEVERE", "CONFIG", "FINE",
        "FINER", "FINEST",
    ];
    LEVELS.iter().any(|l| l.eq_ignore_ascii_case(t))
}

/// `digits` exactly `n` ASCII digits, as a number.
fn digits(s: &str, n: usize) -> Option<u32> {
    (s.len() == n && s.bytes().all(|c| c.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// `YYYY-MM-DD`.
fn parse_date(s: &str) -> Option<time::Date> {
    let year = digits(s.get(0..4)?, 4)?;
    let month = digits(s.get(5..7)?, 2)?;
    let day = digits(s.get(8..10)?, 2)?;
    if s.len() != 10 || &s[4..5] != "-" || &s[7..8] != "-" {
        return None;
    }
    let month = time::Month::try_from(u8::try_from(month).ok()?).ok()?;
    time::Date::from_calendar_date(i32::try_from(year).ok()?, month, u8::try_from(day).ok()?).ok()
}

/// `HH:MM:SS`, an optional `.fff` or `,fff` (1 to 9 digits) and an optional
/// offset (`Z`, `+HH:MM`, `+HHMM`, `+HH`); no offset means UTC.
fn parse_clock(s: &str) -> Option<(time::Time, time::UtcOffset)> {
    let hour = digits(s.get(0..2)?, 2)?;
    let minute = digits(s.get(3..5)?, 2)?;
    let second = digits(s.get(6..8)?, 2)?;
    if &s[2..3] != ":" || &s[5..6] != ":" {
        return None;
    }
    let mut rest = &s[8..];
    let mut nanos = 0u32;
    if let Some(frac) = rest.strip_prefix(['.', ',']) {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if !(1..=9).contains(&n) {
            return None;
        }
        nanos = frac[..n].parse::<u32>().ok()? * 10u32.pow(9 - n as u32);
        rest = &frac[n..];
    }
    let offset = match rest {
        "" | "Z" | "z" => time::UtcOffset::UTC,
        _ => {
            let sign: i8 = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let z = &rest[1..];
            let (h, m) = match z.len() {
                2 => (digits(z, 2)?, 0),
                4 => (digits(z.get(..2)?, 2)?, digits(z.get(2..)?, 2)?),
                5 if z.get(2..3) == Some(":") => (digits(z.get(..2)?, 2)?, digits(z.get(3..)?, 2)?),
                _ => return None,
            };
            time::UtcOffset::from_hms(
                sign * i8::try_from(h).ok()?,
                sign * i8::try_from(m).ok()?,
                0,
            )
            .ok()?
        }
    };
    let time = time::Time::from_hms_nano(
        u8::try_from(hour).ok()?,
        u8::try_from(minute).ok()?,
        u8::try_from(second).ok()?,
        nanos,
    )
    .ok()?;
    Some((time, offset))
}

/// Keys we read: an error about one of them may name it.
const KNOWN_KEYS: [&str; 16] = [
    "type",
    "realmId",
    "realmName",
    "clientId",
    "userId",
    "sessionId",
    "ipAddress",
    "error",
    "reason",
    "scope",
    "grant_type",
    "token_id",
    "refresh_token_id",
    "updated_refresh_token_id",
    "username",
    "operationType",
];

fn is_key_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.')
}

/// Whether `b` starts with `key=`.
fn starts_with_key(b: &[u8]) -> bool {
    let n = b.iter().take_while(|c| is_key_byte(**c)).count();
    n > 0 && b.get(n) == Some(&b'=')
}

/// Whether a quoted value may end just before `rest`: at the end of the
/// message, or before `, key=`.
fn ends_value(rest: &[u8]) -> bool {
    rest.iter().all(u8::is_ascii_whitespace)
        || rest
            .strip_prefix(b", ")
            .is_some_and(|r| starts_with_key(r.trim_ascii_start()))
}

/// Splits `k1=v1, k2="v 2", k3='v, 3'` into pairs. A quoted value (`"` or
/// `'`) ends at the first unescaped matching quote that is followed by
/// `, key=` or the end of the message; `\"` (`\'`) inside it is a quote. An
/// unquoted value ends at `, ` followed by `key=`, or at the end.
fn scan_pairs(msg: &str) -> Result<Vec<(&str, Cow<'_, str>)>, ParseError> {
    let b = msg.as_bytes();
    let mut out = Vec::with_capacity(16);
    let mut i = 0;
    while i < b.len() {
        let key_start = i;
        while i < b.len() && is_key_byte(b[i]) {
            i += 1;
        }
        if i == key_start || b.get(i) != Some(&b'=') {
            return Err(ParseError::Format(
                "expected `key=value` pairs separated by `, ` after the log category".into(),
            ));
        }
        let key = &msg[key_start..i];
        i += 1;
        match b.get(i) {
            Some(&q @ (b'"' | b'\'')) => {
                let from = i + 1;
                let mut j = from;
                let mut escaped = false;
                let mut end = None;
                let mut saw_quote = false;
                while j < b.len() {
                    if b[j] == b'\\' && b.get(j + 1) == Some(&q) {
                        escaped = true;
                        j += 2;
                        continue;
                    }
                    if b[j] == q {
                        saw_quote = true;
                        if ends_value(&b[j + 1..]) {
                            end = Some(j);
                            break;
                        }
                    }
                    j += 1;
                }
                let Some(end) = end else {
                    let reason = if saw_quote {
                        "expected `, ` after a quoted value"
                    } else {
                        "unterminated quoted value"
                    };
                    return Err(match KNOWN_KEYS.iter().find(|k| **k == key) {
                        Some(k) => ParseError::bad_value(k, reason),
                        None => ParseError::Format(reason.into()),
                    });
                };
                let raw = &msg[from..end];
                let value = if escaped {
                    let quote = char::from(q);
                    Cow::Owned(raw.replace(&format!("\\{quote}"), &quote.to_string()))
                } else {
                    Cow::Borrowed(raw)
                };
                out.push((key, value));
                i = end + 1;
                // Past `, ` (or to the end).
                i = match msg[i..].find(',') {
                    Some(p) => i + p + 1,
                    None => b.len(),
                };
            }
            _ => {
                let from = i;
                let mut end = b.len();
                let mut next = b.len();
                let mut j = i;
                while let Some(p) = msg[j..].find(", ") {
                    let at = j + p;
                    if starts_with_key(&b[at + 2..]) {
                        end = at;
                        next = at + 2;
                        break;
                    }
                    j = at + 2;
                }
                out.push((key, Cow::Borrowed(msg[from..end].trim_end())));
                i = next;
            }
        }
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// The JSON forms

/// A JSON line: a REST event, a Quarkus JSON log record of the events
/// category, or `None` for any other object.
fn json_event(text: &str) -> Result<Option<RawEvent<'_>>, ParseError> {
    let value: Loose<'_> =
        serde_json::from_str(text).map_err(|e| ParseError::from_json(&e, text))?;
    let Loose::Object(fields) = value else {
        return Err(ParseError::NotAnObject(value.type_name()));
    };
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v);

    if let Some(logger) = field("loggerName") {
        let is_events =
            matches!(logger, Loose::Str(s) if CATEGORIES.iter().any(|c| c[1..c.len() - 1] == **s));
        if !is_events {
            return Ok(None);
        }
        let ts = match field("timestamp") {
            Some(Loose::Str(s)) => iso_timestamp(s).ok_or_else(|| {
                ParseError::bad_value("timestamp", "expected an ISO 8601 timestamp")
            })?,
            Some(other) => return Err(ParseError::wrong_type("timestamp", "a string", other)),
            None => return Err(ParseError::MissingField("timestamp".into())),
        };
        let message = match field("message") {
            Some(Loose::Str(s)) => s,
            Some(other) => return Err(ParseError::wrong_type("message", "a string", other)),
            None => return Err(ParseError::MissingField("message".into())),
        };
        let pairs = scan_pairs(message.trim())?
            .into_iter()
            .map(|(k, v)| (Cow::Owned(k.to_string()), Cow::Owned(v.into_owned())))
            .collect();
        return Ok(Some(RawEvent { ts, pairs }));
    }

    match field("type") {
        None | Some(Loose::Null) => return Ok(None),
        Some(Loose::Str(_)) => {}
        Some(other) => return Err(ParseError::wrong_type("type", "a string", other)),
    }
    let ts = match field("time") {
        None | Some(Loose::Null) => return Err(ParseError::MissingField("time".into())),
        Some(Loose::Str(s)) => s
            .trim()
            .parse::<i64>()
            .map_err(|_| ParseError::bad_value("time", "expected epoch milliseconds"))
            .and_then(|ms| epoch_millis(ms).ok_or(ParseError::bad_value("time", "out of range")))?,
        Some(v) => match v {
            Loose::Int(ms) => {
                epoch_millis(*ms).ok_or(ParseError::bad_value("time", "out of range"))?
            }
            Loose::UInt(_) => return Err(ParseError::bad_value("time", "out of range")),
            other => return Err(ParseError::wrong_type("time", "epoch milliseconds", other)),
        },
    };

    let mut pairs = Vec::with_capacity(16);
    let mut details = None;
    for (key, value) in fields {
        if key == "details" {
            details = Some(value);
            continue;
        }
        if let Some(v) = scalar_text(value) {
            pairs.push((key, v));
        }
    }
    match details {
        None | Some(Loose::Null) => {}
        Some(Loose::Object(entries)) => {
            for (key, value) in entries {
                if let Some(v) = scalar_text(value) {
                    pairs.push((key, v));
                }
            }
        }
        Some(other) => return Err(ParseError::wrong_type("details", "an object", &other)),
    }
    Ok(Some(RawEvent { ts, pairs }))
}

/// A string, or a number as text; other JSON values are not read.
fn scalar_text(v: Loose<'_>) -> Option<Cow<'_, str>> {
    match v {
        Loose::Str(s) => Some(s),
        Loose::Int(_) | Loose::UInt(_) | Loose::Float(_) => v.into_text().map(Cow::Owned),
        _ => None,
    }
}

/// Epoch milliseconds within years 0000..=9999.
fn epoch_millis(ms: i64) -> Option<Timestamp> {
    const MIN_US: i64 = -62_167_219_200_000_000;
    const MAX_US: i64 = 253_402_300_799_999_999;
    ms.checked_mul(1_000)
        .filter(|us| (MIN_US..=MAX_US).contains(us))
        .map(Timestamp)
}

/// `YYYY-MM-DDTHH:MM:SS[.fff][offset]` (or a space for the `T`).
fn iso_timestamp(s: &str) -> Option<Timestamp> {
    let s = s.trim();
    let date = parse_date(s.get(..10)?)?;
    if !matches!(s.as_bytes().get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    let (time, offset) = parse_clock(&s[11..])?;
    Some(Timestamp::from_offset_datetime(
        time::PrimitiveDateTime::new(date, time).assume_offset(offset),
    ))
}

// ---------------------------------------------------------------------------
// The event

/// The kind of an event type (without its `_ERROR`), `None` for types that
/// are not OAuth events.
fn kind_of(base: &str) -> Option<AuthKind> {
    Some(match base {
        "LOGIN" => AuthKind::Authorize,
        "CODE_TO_TOKEN" => AuthKind::Token,
        "REFRESH_TOKEN" => AuthKind::Refresh,
        "INTROSPECT_TOKEN" => AuthKind::Introspect,
        "REVOKE_GRANT" => AuthKind::Revoke,
        "CLIENT_LOGIN" => AuthKind::ClientCredentials,
        "LOGOUT" => AuthKind::Logout,
        "TOKEN_EXCHANGE" => AuthKind::TokenExchange,
        _ => return None,
    })
}

/// Kinds whose success issues tokens with scopes.
fn grants_scopes(kind: AuthKind) -> bool {
    matches!(
        kind,
        AuthKind::Token | AuthKind::Refresh | AuthKind::ClientCredentials | AuthKind::TokenExchange
    )
}

fn build(ev: &RawEvent<'_>, ctx: &LineContext<'_>) -> Result<Option<AuthEvent>, ParseError> {
    let Some(ty) = ev.get("type") else {
        if ev.get("operationType").is_some() {
            return Ok(None); // an admin event
        }
        return Err(ParseError::MissingField("type".into()));
    };
    let ty = ty.trim().to_ascii_uppercase();
    let (base, failed) = match ty.strip_suffix("_ERROR") {
        Some(base) => (base, true),
        None => (ty.as_str(), false),
    };
    let Some(kind) = kind_of(base) else {
        return Ok(None);
    };

    let tenant = match ctx.options.tenant_from {
        None | Some(TenantFrom::Realm) => realm_tenant(ev, ctx.options),
        Some(_) => None,
    }
    .or_else(|| ctx.tenant.map(str::to_string))
    .ok_or(ParseError::MissingField("tenant".into()))?;

    let privacy = ctx.privacy;
    let error = match (ev.get("error"), ev.get("reason").filter(|_| failed)) {
        (Some(e), Some(r)) => Some(format!("{e}: {r}")),
        (Some(e), None) => Some(e.to_string()),
        (None, Some(r)) => Some(r.to_string()),
        (None, None) => None,
    }
    .map(|e| scrub_error(e, ev, privacy));

    let scopes = ev
        .get_raw("scope")
        .map(|s| s.split_whitespace().map(str::to_string).collect::<Vec<_>>());
    let (scopes_requested, scopes_granted) = if kind == AuthKind::Authorize {
        (scopes, None)
    } else if grants_scopes(kind) {
        if failed {
            (scopes, None)
        } else {
            (None, scopes)
        }
    } else {
        (None, None)
    };

    let token = |key: &str| ev.get(key).map(|v| reduce_token_id(v, privacy));
    let issued_or_consumed = token("refresh_token_id");
    let (refresh_token_id, parent_token_id) = if kind == AuthKind::Refresh {
        let consumed = issued_or_consumed;
        (
            token("updated_refresh_token_id").or_else(|| consumed.clone()),
            consumed,
        )
    } else {
        (issued_or_consumed, None)
    };

    let owned = |key: &str| ev.get(key).map(str::to_string);
    Ok(Some(AuthEvent {
        event_id: ctx.event_id.to_string(),
        ts: ev.ts,
        tenant,
        env: ctx.env,
        kind,
        outcome: if failed {
            AuthOutcome::Failure
        } else {
            AuthOutcome::Success
        },
        error,
        client_id: owned("clientId"),
        app_version: None,
        user: ev.get("userId").map(|u| privacy.pseudonym(IdKind::User, u)),
        session_id: owned("sessionId"),
        patient: None,
        encounter: None,
        scopes_requested,
        scopes_granted,
        grant_type: owned("grant_type"),
        token_id: token("token_id"),
        refresh_token_id,
        parent_token_id,
        expires_at: None,
        ip: owned("ipAddress"),
        user_agent: None,
        source: ctx.source.to_string(),
        source_file: ctx.source_file.map(str::to_string),
        source_offset: ctx.offset,
    }))
}

/// The error text, scrubbed: the event's own `userId` and `username`
/// (which a reason may quote) become user pseudonyms, then the rest goes
/// through [`Pseudonymiser::redact_reason`].
fn scrub_error(mut text: String, ev: &RawEvent<'_>, privacy: &Pseudonymiser) -> String {
    for key in ["userId", "username"] {
        if let Some(raw) = ev.get(key).filter(|r| r.len() >= 3) {
            if text.contains(raw) {
                text = text.replace(raw, &privacy.pseudonym(IdKind::User, raw));
            }
        }
    }
    privacy.redact_reason(&text)
}

/// The realm as a tenant: mapped by name, then by id, else the name or id.
fn realm_tenant(ev: &RawEvent<'_>, options: &SourceOptions) -> Option<String> {
    let name = ev.get("realmName");
    let id = ev.get("realmId");
    if let Some(t) = name.and_then(|n| options.tenant_map.get(n)) {
        return Some(t.clone());
    }
    if let Some(t) = id.and_then(|i| options.tenant_map.get(i)) {
        return Some(t.clone());
    }
    options.tenant_name(name.or(id)?)
}

/// The id of a logged token id (a `jti`), as every source writes it so
/// grants, refreshes, revocations and calls join; a JWT logged by mistake
/// is reduced to its id.
fn reduce_token_id(value: &str, privacy: &Pseudonymiser) -> String {
    if looks_like_jwt(value) {
        privacy.token_id(value)
    } else {
        crate::privacy::jti_id(value)
    }
}

/// Three base64url parts, the first a JSON header (`ey...`), the first two
/// non-empty.
fn looks_like_jwt(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3
        && parts[0].starts_with("ey")
        && !parts[1].is_empty()
        && parts.iter().all(|p| {
            p.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_quoted_and_unquoted() {
        let p = scan_pairs(r#"type="A", b='x, y', c=plain value, d="q \"x\", e=1", f="""#).unwrap();
        let got: Vec<(&str, &str)> = p.iter().map(|(k, v)| (*k, v.as_ref())).collect();
        assert_eq!(
            got,
            vec![
                ("type", "A"),
                ("b", "x, y"),
                ("c", "plain value"),
                ("d", r#"q "x", e=1"#),
                ("f", ""),
            ]
        );
        assert!(scan_pairs(r#"type="A", b="open"#).is_err());
        assert!(scan_pairs("no pairs here").is_err());
    }

    #[test]
    fn clocks_and_dates() {
        let (t, o) = parse_clock("11:36:09,965").unwrap();
        assert_eq!(
            (t.hour(), t.minute(), t.second(), t.millisecond()),
            (11, 36, 9, 965)
        );
        assert_eq!(o, time::UtcOffset::UTC);
        let (_, o) = parse_clock("10:00:00.1+02:00").unwrap();
        assert_eq!(o.whole_hours(), 2);
        assert!(parse_clock("25:00:00").is_none());
        assert!(parse_clock("10:00").is_none());
        assert!(parse_date("2026-13-01").is_none());
        assert!(parse_date("2026-11-23").is_some());
        assert!(looks_like_jwt("eyJhbGciOiJIUzI1NiJ9.eyJqdGkiOiJ4In0.c2ln"));
        assert!(!looks_like_jwt("6f1c2d0e-5b7a-4c1e-9d3f-2a8b7c6d5e4f"));
    }
}
