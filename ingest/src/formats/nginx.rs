//! The `nginx` format: nginx access logs, in either of two forms (a line
//! starting with `{` is JSON, any other is text).
//!
//! **Text**: the predefined `combined` format
//! `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"`
//! (or `common`, without the last two). `$remote_user` and the referer are
//! never read. nginx's `\xHH` escapes are decoded in the request line and the
//! User-Agent. Fields a site appends after those are read when recognisable
//! (see [`super::gateway::read_extras`]): `rt=`/`request_time=` (seconds),
//! `host=`, `rid=`/`request_id=`, `client_id=`, `auth=`; a quoted
//! `"$http_authorization"` holding a bearer token; and the first bare
//! decimal number, taken as `$request_time` in seconds. Other appended fields
//! (e.g. `"$http_x_forwarded_for"`) are skipped.
//!
//! **JSON** (`log_format name escape=json '{...}'`): field names are the
//! site's. Each of our fields is looked up under the name the source's
//! `[source.fields]` gives it, else under the usual variable names:
//!
//! | ours | default names, tried in order |
//! |---|---|
//! | ts | `time_iso8601`, `time_local`, `msec`, `timestamp`, `time`, `@timestamp` |
//! | method | `request_method`, `method` |
//! | path | `request_uri`, `uri`, `path` (else the `request` line) |
//! | query | `args`, `query_string` (appended when the path has no `?`) |
//! | status | `status` |
//! | bytes | `body_bytes_sent`, `bytes_sent` |
//! | latency_ms | `request_time` (in **seconds**, as nginx logs it) |
//! | ip | `remote_addr`, `realip_remote_addr` |
//! | user_agent | `http_user_agent`, `user_agent` |
//! | host | `host`, `http_host`, `server_name` |
//! | authorization | `http_authorization`, `authorization` |
//! | client_id | `client_id` |
//! | request_id | `request_id`, `http_x_request_id` |
//!
//! Values may be strings (as `escape=json` writes every variable) or
//! numbers; `""` and `-` are absent. The latency field is in seconds whatever
//! its name. Source settings (`tenant_from`, `app_version_from`,
//! `authorize_paths`): see [`super::gateway`].

use std::borrow::Cow;

use crate::adapter::{Adapter, LineContext, ParseError, Parsed};
use crate::formats::gateway::{
    as_bytes, as_status, number_text, parse_json_or_text, read_extras, request_line, split_tokens,
    timestamp_text, Epoch, GatewayRequest, JsonLayout, Token,
};

/// The `nginx` adapter.
#[derive(Debug, Clone, Default)]
pub struct Nginx;

impl Nginx {
    pub const NAME: &'static str = "nginx";
}

/// Where nginx JSON logs usually keep each field.
pub const JSON_LAYOUT: JsonLayout = JsonLayout {
    defaults: &[
        (
            "ts",
            &[
                "time_iso8601",
                "time_local",
                "msec",
                "timestamp",
                "time",
                "@timestamp",
            ],
        ),
        ("method", &["request_method", "method"]),
        ("path", &["request_uri", "uri", "path"]),
        ("query", &["args", "query_string"]),
        ("status", &["status"]),
        ("bytes", &["body_bytes_sent", "bytes_sent"]),
        ("latency_ms", &["request_time"]),
        ("ip", &["remote_addr", "realip_remote_addr"]),
        ("user_agent", &["http_user_agent", "user_agent"]),
        ("host", &["host", "http_host", "server_name"]),
        ("authorization", &["http_authorization", "authorization"]),
        ("client_id", &["client_id"]),
        ("request_id", &["request_id", "http_x_request_id"]),
    ],
    request_line: &["request"],
    latency_ms_per_unit: 1000.0,
};

impl Adapter for Nginx {
    fn name(&self) -> &'static str {
        Nginx::NAME
    }

    fn parse_line(
        &self,
        line: &[u8],
        ctx: &LineContext<'_>,
        out: &mut Vec<Parsed>,
    ) -> Result<(), ParseError> {
        parse_json_or_text(line, ctx, out, &JSON_LAYOUT, combined)
    }
}

/// A `combined` (or `common`) line, with recognisable appended fields.
fn combined(line: &str) -> Result<GatewayRequest<'_>, ParseError> {
    let tokens = split_tokens(line)?;
    let n = tokens.len();
    if n < 7 || n == 8 {
        return Err(ParseError::Format(
            format!(
                "expected the nginx combined format (9 fields, or 7 for common), found {n} fields"
            )
            .into(),
        ));
    }
    let shape_ok = matches!(tokens[0], Token::Bare(_))
        && matches!(tokens[3], Token::Bracketed(_))
        && matches!(tokens[4], Token::Quoted(_))
        && matches!(tokens[5], Token::Bare(_))
        && matches!(tokens[6], Token::Bare(_))
        && (n == 7 || matches!((tokens[7], tokens[8]), (Token::Quoted(_), Token::Quoted(_))));
    if !shape_ok {
        return Err(ParseError::Format(
            "expected the nginx combined format: `addr - user [time] \"request\" status bytes \"referer\" \"user agent\"`".into(),
        ));
    }
    let ts = timestamp_text("time_local", tokens[3].text(), Epoch::Guess)?;
    let (method, target) = match unescape(tokens[4].text()) {
        Cow::Borrowed(r) => {
            let (m, t) = request_line(r)?;
            (Cow::Borrowed(m), Cow::Borrowed(t))
        }
        Cow::Owned(r) => {
            let (m, t) = request_line(&r)?;
            (Cow::Owned(m.to_string()), Cow::Owned(t.to_string()))
        }
    };
    let mut req = GatewayRequest::new(ts, method, target);
    req.status = as_status("status", number_text("status", tokens[5].text())?)?;
    req.bytes = as_bytes("bytes", number_text("bytes", tokens[6].text())?)?;
    req.ip = Some(Cow::Borrowed(tokens[0].text()));
    if n >= 9 {
        req.user_agent = Some(unescape(tokens[8].text()));
        read_extras(&tokens[9..], &mut req, true)?;
    }
    Ok(req)
}

/// Decodes nginx's `\xHH` escapes (`"`, `\`, control and non-ASCII bytes
/// in text logs).
fn unescape(s: &str) -> Cow<'_, str> {
    if !s.contains("\\x") {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') {
            let hex = s
                .get(i + 2..i + 4)
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(byte) = hex {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_decoded() {
        assert_eq!(unescape("plain"), "plain");
        assert_eq!(unescape(r"a\x22b\x5Cc"), "a\"b\\c");
        assert_eq!(unescape(r"caf\xC3\xA9"), "café");
        assert_eq!(unescape(r"end\x2"), r"end\x2");
    }
}
