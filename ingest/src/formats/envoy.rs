//! The `envoy` format: Envoy (and Istio) HTTP access logs, in either of two
//! forms (a line starting with `{` is JSON, any other is text).
//!
//! **Text**: Envoy's default format
//! `[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"`,
//! where `-` is an absent value. Read: start time, method, path, response
//! code (0, no response sent, is the `error` outcome), bytes sent, duration
//! (milliseconds), the first `X-Forwarded-For` address, User-Agent, request
//! id and authority (the host). Response flags, bytes received, upstream
//! service time and upstream host are not kept. Fields a site appends are
//! read when recognisable (see [`super::gateway::read_extras`]: `key=value`
//! pairs such as `auth=`, a quoted `"%REQ(AUTHORIZATION)%"` holding a bearer
//! token).
//!
//! **JSON** (`json_format`): each of our fields is looked up under the name
//! the source's `[source.fields]` gives it, else under Envoy's usual keys:
//!
//! | ours | default names, tried in order |
//! |---|---|
//! | ts | `start_time`, `timestamp`, `@timestamp` |
//! | method | `method`, `request_method` |
//! | path | `path`, `x_envoy_original_path`, `original_path` |
//! | query | `query` (appended when the path has no `?`) |
//! | status | `response_code`, `status` |
//! | bytes | `bytes_sent` |
//! | latency_ms | `duration` (milliseconds) |
//! | ip | `x_forwarded_for`, `downstream_remote_address`, `downstream_direct_remote_address` (first address, port dropped) |
//! | user_agent | `user_agent` |
//! | host | `authority`, `host` |
//! | authorization | `authorization` |
//! | client_id | `client_id` |
//! | request_id | `request_id`, `x_request_id` |
//!
//! Values may be numbers or strings; `null`, `""` and `-` are absent. Source
//! settings: see [`super::gateway`].

use std::borrow::Cow;

use crate::adapter::{Adapter, LineContext, ParseError, Parsed};
use crate::formats::gateway::{
    as_bytes, as_latency_ms, as_status, number_text, parse_json_or_text, present, read_extras,
    request_line, split_tokens, timestamp_text, Epoch, GatewayRequest, JsonLayout, Token,
};

/// The `envoy` adapter.
#[derive(Debug, Clone, Default)]
pub struct Envoy;

impl Envoy {
    pub const NAME: &'static str = "envoy";
}

/// Where Envoy JSON access logs usually keep each field.
pub const JSON_LAYOUT: JsonLayout = JsonLayout {
    defaults: &[
        ("ts", &["start_time", "timestamp", "@timestamp"]),
        ("method", &["method", "request_method"]),
        ("path", &["path", "x_envoy_original_path", "original_path"]),
        ("query", &["query"]),
        ("status", &["response_code", "status"]),
        ("bytes", &["bytes_sent"]),
        ("latency_ms", &["duration"]),
        (
            "ip",
            &[
                "x_forwarded_for",
                "downstream_remote_address",
                "downstream_direct_remote_address",
            ],
        ),
        ("user_agent", &["user_agent"]),
        ("host", &["authority", "host"]),
        ("authorization", &["authorization"]),
        ("client_id", &["client_id"]),
        ("request_id", &["request_id", "x_request_id"]),
    ],
    request_line: &[],
    latency_ms_per_unit: 1.0,
};

/// Fields of the default text format.
const TEXT_FIELDS: usize = 13;

impl Adapter for Envoy {
    fn name(&self) -> &'static str {
        Envoy::NAME
    }

    fn parse_line(
        &self,
        line: &[u8],
        ctx: &LineContext<'_>,
        out: &mut Vec<Parsed>,
    ) -> Result<(), ParseError> {
        parse_json_or_text(line, ctx, out, &JSON_LAYOUT, default_text)
    }
}

/// A line of the default text format, with recognisable appended fields.
fn default_text(line: &str) -> Result<GatewayRequest<'_>, ParseError> {
    let t = split_tokens(line)?;
    if t.len() < TEXT_FIELDS {
        return Err(ParseError::Format(
            format!(
                "expected envoy's default access log format ({TEXT_FIELDS} fields), found {} fields",
                t.len()
            )
            .into(),
        ));
    }
    let shape_ok = matches!(t[0], Token::Bracketed(_))
        && matches!(t[1], Token::Quoted(_))
        && t[2..8].iter().all(|f| matches!(f, Token::Bare(_)))
        && t[8..13].iter().all(|f| matches!(f, Token::Quoted(_)));
    if !shape_ok {
        return Err(ParseError::Format(
            "expected envoy's default access log format: `[time] \"request\" code flags ... \"xff\" \"user agent\" \"request id\" \"authority\" \"upstream\"`".into(),
        ));
    }
    let ts = timestamp_text("start_time", t[0].text(), Epoch::Guess)?;
    let (method, target) = request_line(t[1].text())?;
    let mut req = GatewayRequest::new(ts, method, target);
    req.status = as_status("response_code", number_text("response_code", t[2].text())?)?;
    req.bytes = as_bytes("bytes_sent", number_text("bytes_sent", t[5].text())?)?;
    req.latency_ms = as_latency_ms("duration", number_text("duration", t[6].text())?, 1.0)?;
    let field = |i: usize| present(t[i].text()).map(Cow::Borrowed);
    req.ip = field(8);
    req.user_agent = field(9);
    req.request_id = field(10);
    req.host = field(11);
    read_extras(&t[TEXT_FIELDS..], &mut req, false)?;
    Ok(req)
}
