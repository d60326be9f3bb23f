//! A plain HTTP/1.1 client for the tests, one request per connection: what
//! a browser, an API client or a log shipper sends, and the answer read
//! back byte for byte (chunked bodies decoded on bytes, so a multibyte
//! character split across chunks or offsets cannot break it).

use std::fmt;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::find_bytes;

/// An answer: the status, the head (status line and headers, as sent) and
/// the body, de-chunked.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Response {
    /// The body as JSON; fails showing the answer when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }
}

/// A GET of `path` on 127.0.0.1:`port` with `headers`.
pub fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> Response {
    request(("127.0.0.1", port), "GET", path, headers, b"")
}

/// A GET with `Authorization: Bearer <token>`.
pub fn get_with_token(port: u16, path: &str, token: &str) -> Response {
    get(port, path, &[("Authorization", &format!("Bearer {token}"))])
}

/// One request on its own connection (`Connection: close`). A body (or any
/// method but GET) is sent with its `Content-Length`. The answer is read to
/// the end of the connection: a server that refuses early may close before
/// reading everything, so write and read errors only cut the exchange
/// short; an answer with no head fails the test.
pub fn request(
    addr: impl ToSocketAddrs + fmt::Debug,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut s = TcpStream::connect(&addr).unwrap_or_else(|e| panic!("connect to {addr:?}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let host = s.peer_addr().unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    if method != "GET" || !body.is_empty() {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    let _ = s.write_all(&bytes);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_response(&raw)
}

/// Status, head and body of a raw answer.
pub fn parse_response(raw: &[u8]) -> Response {
    let split = find_bytes(raw, b"\r\n\r\n").unwrap_or_else(|| {
        panic!("no HTTP answer: {:?}", String::from_utf8_lossy(raw));
    });
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = &raw[split + 4..];
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head:?}"));
    let chunked = head.lines().skip(1).any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("transfer-encoding")
                && value.to_ascii_lowercase().contains("chunked")
        })
    });
    let body = if chunked {
        dechunk(body).unwrap_or_else(|e| {
            panic!(
                "bad chunked body ({e}): {head}\n\n{:?}",
                String::from_utf8_lossy(body)
            )
        })
    } else {
        body.to_vec()
    };
    Response {
        status,
        head,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// The data of a chunked body (RFC 9112 section 7.1), on bytes; trailers are
/// ignored.
fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = find_bytes(rest, b"\r\n").ok_or("a chunk size line without its end")?;
        let line = std::str::from_utf8(&rest[..eol]).map_err(|e| e.to_string())?;
        // A size may carry extensions: `1a;name=value`.
        let size = line.split(';').next().unwrap_or("").trim();
        let n = usize::from_str_radix(size, 16).map_err(|e| format!("chunk size {line:?}: {e}"))?;
        rest = &rest[eol + 2..];
        if n == 0 {
            return Ok(out);
        }
        if rest.len() < n + 2 || &rest[n..n + 2] != b"\r\n" {
            return Err(format!("a chunk of {n} bytes is cut short"));
        }
        out.extend_from_slice(&rest[..n]);
        rest = &rest[n + 2..];
    }
}
