//! The `kong` format: the JSON record Kong's log plugins (`file-log`,
//! `http-log`, `tcp-log`, ...) write for each proxied request, one object
//! per line (a pretty-printed record, as Kong's documentation shows it, is
//! read too when handed over whole).
//!
//! Read: `started_at` (epoch milliseconds), `request.method`, `request.uri`
//! (path and query; else `request.url`), `request.headers` (`host`,
//! `user-agent`, `authorization`, `x-request-id`; a header logged as an
//! array gives its first value; the host falls back to `request.url`'s),
//! `request.id`, `response.status`, `response.size`, `latencies.request`
//! (milliseconds), `client_ip`, and as the client when the bearer token does
//! not name one: `consumer.username`, else `consumer.custom_id`, else
//! `consumer.id`, else `authenticated_entity.client_id` or `.id`.
//!
//! Kong's stock serializer replaces the `authorization` header with
//! `REDACTED`; a site whose serializer keeps it (custom fields, an older
//! or patched plugin) gets token ids, users, patients and scope coverage
//! from the JWT. The token itself is never stored. Everything else of the
//! record (`service`, `route`, `tries`, response headers, ...) is ignored.
//! Source settings: see [`super::gateway`].

use std::borrow::Cow;

use crate::adapter::{line_text, Adapter, LineContext, ParseError, Parsed};
use crate::formats::gateway::{
    as_bytes, as_latency_ms, as_status, gateway_event, get, header, number, object,
    parse_json_object, split_absolute, text_of, timestamp_json, Epoch, GatewayRequest, Member,
};

/// The `kong` adapter.
#[derive(Debug, Clone, Default)]
pub struct Kong;

impl Kong {
    pub const NAME: &'static str = "kong";
}

impl Adapter for Kong {
    fn name(&self) -> &'static str {
        Kong::NAME
    }

    fn parse_line(
        &self,
        line: &[u8],
        ctx: &LineContext<'_>,
        out: &mut Vec<Parsed>,
    ) -> Result<(), ParseError> {
        let text = line_text(line)?;
        if text.trim().is_empty() {
            return Ok(());
        }
        let obj = parse_json_object(text)?;
        let req = request(&obj)?;
        out.push(gateway_event(&req, ctx)?);
        Ok(())
    }
}

/// The first of `keys` in `obj` with a text value.
fn first_text<'v>(
    field: &'static str,
    obj: Option<&'v [Member<'v>]>,
    keys: &[&str],
) -> Result<Option<Cow<'v, str>>, ParseError> {
    let Some(obj) = obj else { return Ok(None) };
    for k in keys {
        if let Some(v) = text_of(field, get(obj, k))? {
            return Ok(Some(v));
        }
    }
    Ok(None)
}

fn request<'v>(obj: &'v [Member<'v>]) -> Result<GatewayRequest<'v>, ParseError> {
    let ts = timestamp_json("started_at", get(obj, "started_at"), Epoch::Millis)?
        .ok_or(ParseError::MissingField("started_at".into()))?;
    let request = object("request", get(obj, "request"))?
        .ok_or(ParseError::MissingField("request".into()))?;
    let method = text_of("request.method", get(request, "method"))?
        .ok_or(ParseError::MissingField("request.method".into()))?;
    let url = text_of("request.url", get(request, "url"))?;
    let target = match text_of("request.uri", get(request, "uri"))? {
        Some(uri) => uri,
        None => url
            .clone()
            .ok_or(ParseError::MissingEither("request.uri", "request.url"))?,
    };
    let headers = object("request.headers", get(request, "headers"))?;
    let response = object("response", get(obj, "response"))?;
    let latencies = object("latencies", get(obj, "latencies"))?;

    let mut req = GatewayRequest::new(ts, method, target);
    req.host = header(headers, "host").map(Cow::Borrowed).or_else(|| {
        url.as_deref()
            .and_then(|u| split_absolute(u).0)
            .map(|h| Cow::Owned(h.to_string()))
    });
    req.user_agent = header(headers, "user-agent").map(Cow::Borrowed);
    req.authorization = header(headers, "authorization").map(Cow::Borrowed);
    req.request_id = match header(headers, "x-request-id") {
        Some(id) => Some(Cow::Borrowed(id)),
        None => text_of("request.id", get(request, "id"))?,
    };
    req.status = as_status(
        "response.status",
        number("response.status", response.and_then(|r| get(r, "status")))?,
    )?;
    req.bytes = as_bytes(
        "response.size",
        number("response.size", response.and_then(|r| get(r, "size")))?,
    )?;
    req.latency_ms = as_latency_ms(
        "latencies.request",
        number(
            "latencies.request",
            latencies.and_then(|l| get(l, "request")),
        )?,
        1.0,
    )?;
    req.ip = text_of("client_ip", get(obj, "client_ip"))?;
    req.client_id = match first_text(
        "consumer",
        object("consumer", get(obj, "consumer"))?,
        &["username", "custom_id", "id"],
    )? {
        Some(c) => Some(c),
        None => first_text(
            "authenticated_entity",
            object("authenticated_entity", get(obj, "authenticated_entity"))?,
            &["client_id", "id"],
        )?,
    };
    if req.status.is_none() {
        return Err(ParseError::MissingField("response.status".into()));
    }
    Ok(req)
}
