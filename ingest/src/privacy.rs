//! Nothing raw of PHI or credentials reaches disk: patient, user, encounter
//! and other resource ids become keyed pseudonyms, bearer tokens become ids,
//! and text that could not be parsed is scrubbed before it is kept.
//!
//! - [`Pseudonymiser::pseudonym`]: `HMAC-SHA-256(key, kind || 0x00 || raw)`,
//!   truncated to 64 bits, hex, with a prefix per kind (`p_` patient, `u_`
//!   user, `e_` encounter, `r_` any other resource id). The key comes from
//!   the configuration or from `<data>/state/pseudonym.key` (created on first
//!   run, mode 0600), so pseudonyms are stable across restarts and distinct
//!   patients can still be counted.
//! - [`Pseudonymiser::token_id`]: a JWT's `jti` (`jti:<jti>`), else a hash of
//!   the token (`h:<32 hex>`). Never the token.
//! - [`Pseudonymiser::redact_path`]: ids in a FHIR request path and query.
//! - [`Pseudonymiser::redact_text`]: free text (dead letters, error messages).
//! - [`jwt_claims`]: a JWT's claims, read without verifying the signature.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use hmac::{Hmac, Mac};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use scopewatch_model::config::SourceOptions;
use scopewatch_model::events::Timestamp;
use scopewatch_model::request::patient_reference;
use scopewatch_model::resource_types::is_r4_resource_type;
use scopewatch_model::scope::{parse_scope_list, Scope};

use crate::adapter::Loose;

/// The key file below the data directory.
pub const KEY_FILE: &str = "state/pseudonym.key";

/// The smallest key accepted, in bytes.
pub const MIN_KEY_BYTES: usize = 32;

/// A JWT's `jti` is kept as the token id only when it is at most this long
/// and made of `[A-Za-z0-9._:-]`; otherwise it is hashed.
pub const MAX_JTI_CHARS: usize = 128;

/// What an id identifies; each kind has its own pseudonym prefix and its own
/// HMAC domain, so the same raw id never gives the same pseudonym for two kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdKind {
    /// `p_`
    Patient,
    /// `u_`
    User,
    /// `e_`
    Encounter,
    /// `r_`: ids of any other resource, and opaque values in paths and text.
    Resource,
}

impl IdKind {
    /// The pseudonym prefix.
    pub fn prefix(self) -> &'static str {
        match self {
            IdKind::Patient => "p_",
            IdKind::User => "u_",
            IdKind::Encounter => "e_",
            IdKind::Resource => "r_",
        }
    }

    /// The domain tag hashed before the id.
    fn tag(self) -> &'static [u8] {
        match self {
            IdKind::Patient => b"patient",
            IdKind::User => b"user",
            IdKind::Encounter => b"encounter",
            IdKind::Resource => b"resource",
        }
    }

    /// The kind of the ids of an R4 resource type (`Patient` -> patient, ...).
    pub fn of_resource_type(resource_type: &str) -> IdKind {
        match resource_type {
            "Patient" => IdKind::Patient,
            "Encounter" => IdKind::Encounter,
            _ => IdKind::Resource,
        }
    }
}

/// Loading or creating the pseudonym key failed. Messages never carry key
/// material.
#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    #[error("the configured pseudonym key is not usable: {0}")]
    BadConfiguredKey(&'static str),
    #[error("pseudonym key file {}: {reason}", path.display())]
    BadKeyFile { path: PathBuf, reason: &'static str },
    #[error(
        "pseudonym key file {} is accessible by group or others (mode {mode:04o}); \
         it must be readable by its owner only (chmod 600 {})",
        path.display(),
        path.display()
    )]
    InsecureKeyFile { path: PathBuf, mode: u32 },
    #[error("pseudonym key file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> PrivacyError + '_ {
    move |source| PrivacyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Replaces ids by keyed pseudonyms and tokens by ids. Cheap to clone and
/// `Send + Sync`: share one per process.
#[derive(Clone)]
pub struct Pseudonymiser {
    /// HMAC state with the key already absorbed; cloned per pseudonym.
    mac: Hmac<Sha256>,
    /// Tells instances apart in the per-thread token cache (clones share it:
    /// same key, same results).
    instance: u64,
}

impl fmt::Debug for Pseudonymiser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pseudonymiser { key: <hidden> }")
    }
}

/// base64url, padding optional: JWT segments.
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// standard base64, padding optional: configured keys.
const B64STD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Reads a key written as hex or base64 (standard or URL-safe).
fn parse_key_text(text: &str) -> Result<Vec<u8>, &'static str> {
    let text = text.trim();
    if text.is_empty() {
        return Err("it is empty");
    }
    let key = if text.len().is_multiple_of(2) && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(text).map_err(|_| "it is not valid hex")?
    } else {
        B64STD
            .decode(text)
            .or_else(|_| B64URL.decode(text))
            .map_err(|_| "it is neither hex nor base64")?
    };
    if key.len() < MIN_KEY_BYTES {
        return Err("it is shorter than 32 bytes");
    }
    Ok(key)
}

impl Pseudonymiser {
    /// Uses `configured` (hex or base64 of at least 32 bytes) if given, else
    /// `<data_dir>/state/pseudonym.key`, creating it on first run with 32
    /// random bytes from `/dev/urandom` (written as hex, mode 0600, written
    /// aside, fsynced, then linked into place so two processes starting at
    /// once agree on one key). A key file accessible by group or others is
    /// refused.
    pub fn load_or_create(
        data_dir: &Path,
        configured: Option<&str>,
    ) -> Result<Pseudonymiser, PrivacyError> {
        if let Some(text) = configured {
            let key = parse_key_text(text).map_err(PrivacyError::BadConfiguredKey)?;
            return Ok(Pseudonymiser::from_key_bytes(&key));
        }
        let path = data_dir.join(KEY_FILE);
        match read_key_file(&path) {
            Ok(key) => return Ok(Pseudonymiser::from_key_bytes(&key)),
            Err(PrivacyError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        create_key_file(&path)?;
        let key = read_key_file(&path)?;
        Ok(Pseudonymiser::from_key_bytes(&key))
    }

    /// A pseudonymiser with a fixed key (tests, tools).
    pub fn from_key(key: [u8; 32]) -> Pseudonymiser {
        Pseudonymiser::from_key_bytes(&key)
    }

    fn from_key_bytes(key: &[u8]) -> Pseudonymiser {
        static INSTANCES: AtomicU64 = AtomicU64::new(0);
        Pseudonymiser {
            mac: <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length"),
            instance: INSTANCES.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The keyed pseudonym of `raw`: `HMAC-SHA-256(key, kind || 0x00 || raw)`
    /// truncated to 64 bits, as 16 hex digits after the kind's prefix
    /// (`p_3f0c...`).
    pub fn pseudonym(&self, kind: IdKind, raw: &str) -> String {
        let mut out = String::with_capacity(18);
        self.pseudonym_into(kind, raw, &mut out);
        out
    }

    /// [`Pseudonymiser::pseudonym`], appended to `out`.
    ///
    /// One line usually names the same id several times (the `patient`
    /// field, the path, the compartment), so the last result is kept per
    /// thread (in memory only) and reused for the same pseudonymiser, kind
    /// and id.
    pub fn pseudonym_into(&self, kind: IdKind, raw: &str, out: &mut String) {
        let memo = raw.len() <= LAST_PSEUDONYM_MAX_ID;
        let hit = memo
            && LAST_PSEUDONYM.with(|last| {
                let last = last.borrow();
                if last.instance == self.instance && last.kind == Some(kind) && last.raw == raw {
                    out.push_str(kind.prefix());
                    push_hex(out, &last.tag);
                    true
                } else {
                    false
                }
            });
        if hit {
            return;
        }
        let mut mac = self.mac.clone();
        mac.update(kind.tag());
        mac.update(&[0]);
        mac.update(raw.as_bytes());
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; 8];
        tag.copy_from_slice(&full[..8]);
        out.push_str(kind.prefix());
        push_hex(out, &tag);
        if memo {
            LAST_PSEUDONYM.with(|last| {
                let mut last = last.borrow_mut();
                last.instance = self.instance;
                last.kind = Some(kind);
                last.raw.clear();
                last.raw.push_str(raw);
                last.tag = tag;
            });
        }
    }

    /// A bearer token reduced to an id: `jti:<jti>` when it is a JWT with a
    /// `jti` claim (a `jti` longer than 128 characters or with characters
    /// outside `[A-Za-z0-9._:-]` is hashed: `jti-h:<32 hex>`), else
    /// `h:<first 32 hex digits of SHA-256(token)>`. A leading `Bearer ` is
    /// ignored, so the header value and the bare token give the same id.
    pub fn token_id(&self, token: &str) -> String {
        let token = strip_scheme(token);
        match jwt_jti(token) {
            Some(jti) => jti_id(&jti),
            None => hashed_id("h:", token.as_bytes()),
        }
    }

    /// [`Pseudonymiser::token_id`] and [`jwt_claims`] at once, decoding the
    /// JWT a single time.
    pub fn token_id_and_claims(&self, token: &str) -> (String, Option<JwtClaims>) {
        let bare = strip_scheme(token);
        match jwt_claims(bare) {
            Some(claims) => {
                let id = match claims.jti.as_deref() {
                    Some(jti) => jti_id(jti),
                    None => hashed_id("h:", bare.as_bytes()),
                };
                (id, Some(claims))
            }
            None => (hashed_id("h:", bare.as_bytes()), None),
        }
    }

    /// What a bearer token tells, reduced: its id, and from its JWT claims
    /// the client, the scopes (parsed), and the user (`sub`) and patient as
    /// pseudonyms. Tokens repeat across many calls, so the result is kept in
    /// a small per-thread cache (in memory only; the cache holds the token
    /// text as its key and is bounded to a few thousand entries).
    pub fn token_info(&self, token: &str) -> Arc<TokenInfo> {
        let bare = strip_scheme(token);
        let cached = TOKEN_CACHE.with(|c| {
            c.borrow()
                .get(&self.instance)
                .and_then(|m| m.get(bare))
                .cloned()
        });
        if let Some(info) = cached {
            return info;
        }
        let (id, claims) = self.token_id_and_claims(bare);
        let claims = claims.unwrap_or_default();
        let info = Arc::new(TokenInfo {
            id,
            client_id: claims.client_id,
            scopes: claims.scope.as_deref().map(parse_scope_list),
            scope: claims.scope,
            user: claims.sub.map(|s| self.pseudonym(IdKind::User, &s)),
            patient: claims.patient.map(|s| self.pseudonym(IdKind::Patient, &s)),
            iss: claims.iss,
            aud: claims.aud,
            exp: claims.exp,
            iat: claims.iat,
        });
        TOKEN_CACHE.with(|c| {
            let mut c = c.borrow_mut();
            if c.len() > 8 {
                // Instances come and go in tests; do not grow without bound.
                c.clear();
            }
            let map = c.entry(self.instance).or_default();
            if map.len() >= TOKEN_CACHE_ENTRIES {
                map.clear();
            }
            map.insert(bare.into(), Arc::clone(&info));
        });
        info
    }

    /// Pseudonymises the ids in a request path and query, keeping the rest
    /// as written:
    /// - the segment after an R4 resource type is an id (`Patient/123` ->
    ///   `Patient/p_..`, `Encounter/9` -> `Encounter/e_..`, any other type
    ///   `r_..`), unless it is a marker (`_history`, `_search`, `$op`, `*`);
    ///   a version id after `_history` is kept;
    /// - outside those places, segments that look like ids anyway (4+
    ///   digits, a UUID, or 24+ characters mixing letters and digits) become
    ///   `r_..`;
    /// - query values are kept for parameters that identify nobody (`_count`,
    ///   `_sort`, `category`, `code`, `status`, ...: see [`SAFE_PARAMS`]);
    ///   `patient=`, `subject=Patient/..` and `_id` on Patient become patient
    ///   pseudonyms, equal to the `patient` column's; references `Type/id`
    ///   keep their type; every other value (each item of a comma list)
    ///   becomes `r_..`;
    /// - a URL's user info and fragment are dropped.
    pub fn redact_path(&self, path_and_query: &str) -> String {
        let mut out = String::with_capacity(path_and_query.len() + 40);
        let (target, fragment) = match path_and_query.split_once('#') {
            Some((t, f)) => (t, Some(f)),
            None => (path_and_query, None),
        };
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        let path = push_origin(&mut out, path);
        let last_type = self.redact_segments(path, &mut out);
        if let Some(query) = query {
            out.push('?');
            self.redact_query(query, last_type, &mut out);
        }
        if fragment.is_some_and(|f| !f.is_empty()) {
            out.push_str("#<redacted>");
        }
        out
    }

    /// Writes the redacted path; returns the last resource type when the
    /// path ends at type level (`.../Patient` or `.../Patient/_search`),
    /// which tells what `_id` names.
    fn redact_segments<'p>(&self, path: &'p str, out: &mut String) -> Option<Cow<'p, str>> {
        // The kind of id the next segment is, when it follows a type.
        let mut expect_id: Option<IdKind> = None;
        let mut after_history = false;
        let mut type_level: Option<Cow<'p, str>> = None;
        for (i, seg) in path.split('/').enumerate() {
            if i > 0 {
                out.push('/');
            }
            if seg.is_empty() {
                continue;
            }
            let decoded = if seg.contains('%') {
                percent_decode_str(seg).decode_utf8_lossy()
            } else {
                Cow::Borrowed(seg)
            };
            if after_history {
                after_history = false;
                out.push_str(seg);
                continue;
            }
            if decoded == "_history" {
                after_history = true;
                expect_id = None;
                type_level = None;
                out.push_str(seg);
                continue;
            }
            if is_r4_resource_type(&decoded) {
                expect_id = Some(IdKind::of_resource_type(&decoded));
                type_level = Some(decoded);
                out.push_str(seg);
                continue;
            }
            if let Some(kind) = expect_id.take() {
                if decoded.starts_with(['_', '$']) || decoded == "*" {
                    if decoded != "_search" {
                        type_level = None;
                    }
                    out.push_str(seg);
                } else {
                    type_level = None;
                    self.pseudonym_into(kind, &decoded, out);
                }
                continue;
            }
            if decoded != "_search" {
                type_level = None;
            }
            if looks_like_id(&decoded) {
                self.pseudonym_into(IdKind::Resource, &decoded, out);
            } else {
                out.push_str(seg);
            }
        }
        type_level
    }

    fn redact_query(&self, query: &str, type_level: Option<Cow<'_, str>>, out: &mut String) {
        for (i, item) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            if item.is_empty() {
                continue;
            }
            let (key, value) = match item.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (item, None),
            };
            let name = form_decode(key);
            let (base, modifier) = match name.split_once(':') {
                Some((b, m)) => (b, Some(m)),
                None => (&*name, None),
            };
            let Some(value) = value else {
                // A bare word: a flag such as `_pretty`, or a value in disguise.
                if base.starts_with('_') || SAFE_PARAMS.contains(&base) {
                    out.push_str(item);
                } else {
                    self.pseudonym_into(IdKind::Resource, &name, out);
                }
                continue;
            };
            out.push_str(key);
            out.push('=');
            if SAFE_PARAMS.contains(&base) {
                out.push_str(value);
                continue;
            }
            // As in model::request: `patient` targets Patient, so a bare id
            // is one; `subject` must say Patient; `_id` names the type searched.
            let bare_kind = match (base, modifier) {
                ("patient", None | Some("Patient")) | ("subject", Some("Patient")) => {
                    Some(IdKind::Patient)
                }
                ("encounter", None | Some("Encounter")) | ("context", Some("Encounter")) => {
                    Some(IdKind::Encounter)
                }
                ("_id", None) => type_level.as_deref().map(IdKind::of_resource_type),
                _ => None,
            };
            let decoded = form_decode(value);
            for (j, alt) in decoded.split(',').enumerate() {
                if j > 0 {
                    out.push(',');
                }
                self.redact_value(alt, bare_kind, out);
            }
        }
    }

    /// One query value (one item of a comma list), already decoded.
    fn redact_value(&self, alt: &str, bare_kind: Option<IdKind>, out: &mut String) {
        if alt.is_empty() {
            return;
        }
        let patient_bare = bare_kind == Some(IdKind::Patient);
        if let Some(id) = patient_reference(alt, patient_bare) {
            return self.replace_within(alt, id, IdKind::Patient, out);
        }
        if let Some((ty, id)) = last_reference(alt) {
            return self.replace_within(alt, id, IdKind::of_resource_type(ty), out);
        }
        match bare_kind {
            Some(kind) if !alt.contains('/') => self.pseudonym_into(kind, alt, out),
            _ => self.pseudonym_into(IdKind::Resource, alt, out),
        }
    }

    /// Writes `whole` (re-encoded) with its sub-slice `id` replaced by a pseudonym.
    fn replace_within(&self, whole: &str, id: &str, kind: IdKind, out: &mut String) {
        let start = id.as_ptr() as usize - whole.as_ptr() as usize;
        let end = start + id.len();
        out.extend(utf8_percent_encode(&whole[..start], QUERY_VALUE));
        self.pseudonym_into(kind, id, out);
        out.extend(utf8_percent_encode(&whole[end..], QUERY_VALUE));
    }

    /// Scrubs free text (a line that could not be parsed, an error message).
    /// Conservative: it would rather over-redact. Replaces:
    /// - JWTs (`ey...` three or five base64url segments) by their token id;
    /// - `Bearer <token>` by `Bearer <token id>`, `Basic <creds>` by `Basic <redacted>`;
    /// - `Patient/<id>`, `Encounter/<id>` (and `Type/<id>` of any R4 type) by pseudonyms;
    /// - the values of credential keys (`token`, `access_token`,
    ///   `refresh_token`, `id_token`, `authorization`: token ids; `password`,
    ///   `secret`, `client_secret`, `code`, `code_verifier`, `cookie`, ...:
    ///   `<redacted>`) and of identity keys (`patient`, `subject`: patient
    ///   pseudonyms; `user`, `userId`, `username`, `sub`: user pseudonyms;
    ///   `encounter`; `mrn`, `name`, `birthdate`, `email`, `phone`, ...: `r_`
    ///   pseudonyms), in the forms `"key":"value"`, `"key":123`, `key=value`,
    ///   `key="value"` and `key: value`;
    /// - e-mail addresses by user pseudonyms;
    /// - any other run of 20+ characters mixing letters and digits (opaque
    ///   tokens, UUIDs) by a hash id `h:..`.
    pub fn redact_text(&self, text: &str) -> String {
        self.redact_text_with(text, true)
    }

    /// [`Pseudonymiser::redact_text`] for text whose shape is ours (error
    /// reasons): the same rules, except that an unquoted key followed by a
    /// colon is not taken as a key ("field `code`: expected ..." names a
    /// field; it is not an OAuth code).
    pub fn redact_reason(&self, text: &str) -> String {
        self.redact_text_with(text, false)
    }

    /// `bare_colon`: whether `key: value` (unquoted key) counts as a key.
    fn redact_text_with(&self, text: &str, bare_colon: bool) -> String {
        let b = text.as_bytes();
        let mut out = String::with_capacity(text.len() + 16);
        let mut copied = 0;
        let mut i = 0;
        while i < b.len() {
            if !is_word_byte(b[i]) {
                i += 1;
                continue;
            }
            let start = i;
            let mut end = i;
            while end < b.len() && is_word_byte(b[end]) {
                end += 1;
            }
            match self.text_rule(text, start, end, bare_colon) {
                Action::Replace {
                    from,
                    to,
                    with: replacement,
                } => {
                    out.push_str(&text[copied..from]);
                    out.push_str(&replacement);
                    copied = to;
                    i = to;
                }
                Action::ResumeAt(at) => i = at,
            }
        }
        out.push_str(&text[copied..]);
        out
    }

    /// What to do with the word `text[start..end]`.
    fn text_rule(&self, text: &str, start: usize, end: usize, bare_colon: bool) -> Action {
        let b = text.as_bytes();
        let word = &text[start..end];
        let trimmed = word.trim_end_matches('.');
        let trimmed_end = start + trimmed.len();

        // `Bearer <token>`, `Basic <credentials>`
        let bearer = trimmed.eq_ignore_ascii_case("bearer");
        if (bearer || trimmed.eq_ignore_ascii_case("basic")) && trimmed_end == end {
            let mut j = end;
            while j < b.len() && matches!(b[j], b' ' | b'\t') {
                j += 1;
            }
            if j > end {
                let cred_end = j + b[j..]
                    .iter()
                    .position(|c| {
                        c.is_ascii_whitespace()
                            || matches!(c, b'"' | b'\'' | b',' | b';' | b'<' | b'>' | b'\\')
                    })
                    .unwrap_or(b.len() - j);
                let cred = &text[j..cred_end];
                if cred.len() >= 8 || cred.bytes().any(|c| c.is_ascii_digit()) {
                    let with = if bearer {
                        self.token_id(cred)
                    } else {
                        REDACTED.to_string()
                    };
                    return Action::Replace {
                        from: j,
                        to: cred_end,
                        with,
                    };
                }
            }
        }

        // A JWT (or JWE).
        if looks_like_jwt(trimmed) {
            return Action::Replace {
                from: start,
                to: trimmed_end,
                with: self.token_id(trimmed),
            };
        }

        // `Type/<id>`
        if is_r4_resource_type(word) {
            let rest = &b[end..];
            let sep = [&b"/"[..], b"%2F", b"%2f", b"\\/"]
                .iter()
                .find(|s| rest.starts_with(s))
                .map(|s| s.len());
            if let Some(sep) = sep {
                let id_start = end + sep;
                let id_len = b[id_start..]
                    .iter()
                    .position(|c| !(c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.')))
                    .unwrap_or(b.len() - id_start);
                if id_len > 0 {
                    let id = &text[id_start..id_start + id_len];
                    return Action::Replace {
                        from: id_start,
                        to: id_start + id_len,
                        with: self.pseudonym(IdKind::of_resource_type(word), id),
                    };
                }
            }
        }

        // `key=value`, `"key":"value"`, ...
        if let Some(class) = classify_key(word) {
            if let Some(action) = self.key_value(text, start, end, class, bare_colon) {
                return action;
            }
        }

        // `someone@example.org`
        if b.get(end) == Some(&b'@') {
            let dom_start = end + 1;
            let dom_len = b[dom_start..]
                .iter()
                .position(|c| !is_word_byte(*c))
                .unwrap_or(b.len() - dom_start);
            let domain = text[dom_start..dom_start + dom_len].trim_end_matches('.');
            if domain.contains('.') && !domain.starts_with('.') {
                let to = dom_start + domain.len();
                return Action::Replace {
                    from: start,
                    to,
                    with: self.pseudonym(IdKind::User, &text[start..to]),
                };
            }
        }

        // Opaque values: long runs mixing letters and digits.
        if trimmed.len() >= 20
            && trimmed.bytes().any(|c| c.is_ascii_digit())
            && trimmed.bytes().any(|c| c.is_ascii_alphabetic())
            && !is_reduced_id(text, start)
        {
            return Action::Replace {
                from: start,
                to: trimmed_end,
                with: self.token_id(trimmed),
            };
        }
        Action::ResumeAt(end)
    }

    /// The value after a sensitive key at `text[start..end]`, if one follows.
    fn key_value(
        &self,
        text: &str,
        start: usize,
        end: usize,
        class: KeyClass,
        bare_colon: bool,
    ) -> Option<Action> {
        let b = text.as_bytes();
        let mut j = end;
        // A closing quote matching the opening one, possibly JSON-escaped.
        let quote = start
            .checked_sub(1)
            .map(|k| b[k])
            .filter(|q| matches!(q, b'"' | b'\''));
        if let Some(q) = quote {
            if b.get(j) == Some(&q) {
                j += 1;
            } else if b.get(j) == Some(&b'\\') && b.get(j + 1) == Some(&q) {
                j += 2;
            }
        }
        while j < b.len() && matches!(b[j], b' ' | b'\t') {
            j += 1;
        }
        match b.get(j) {
            Some(b'=') => {}
            Some(b':') if bare_colon || quote.is_some() => {}
            _ => return None,
        }
        j += 1;
        while j < b.len() && matches!(b[j], b' ' | b'\t') {
            j += 1;
        }
        let (from, to) = match b.get(j)? {
            q @ (b'"' | b'\'') => {
                let from = j + 1;
                (from, closing_quote(b, from, *q, false))
            }
            b'\\' if matches!(b.get(j + 1), Some(b'"' | b'\'')) => {
                let from = j + 2;
                (from, closing_quote(b, from, b[j + 1], true))
            }
            b'{' | b'[' => return Some(Action::ResumeAt(j)),
            _ => {
                let len = b[j..]
                    .iter()
                    .position(|c| {
                        c.is_ascii_whitespace()
                            || matches!(
                                c,
                                b',' | b';'
                                    | b'&'
                                    | b'"'
                                    | b'\''
                                    | b')'
                                    | b'}'
                                    | b']'
                                    | b'>'
                                    | b'<'
                                    | b'\\'
                                    | b'|'
                            )
                    })
                    .unwrap_or(b.len() - j);
                (j, j + len)
            }
        };
        let value = &text[from..to];
        if value.is_empty() || value == "null" || value == "true" || value == "false" {
            return Some(Action::ResumeAt(to));
        }
        if value.eq_ignore_ascii_case("bearer") || value.eq_ignore_ascii_case("basic") {
            // The next word is the credential: the Bearer rule takes it.
            return Some(Action::ResumeAt(from));
        }
        let with = match class {
            KeyClass::Token => self.token_id(value),
            KeyClass::Secret => REDACTED.to_string(),
            KeyClass::Patient => match patient_reference(value, true) {
                Some(id) => {
                    let off = id.as_ptr() as usize - value.as_ptr() as usize;
                    let mut s = String::with_capacity(value.len() + 18);
                    s.push_str(&value[..off]);
                    self.pseudonym_into(IdKind::Patient, id, &mut s);
                    s.push_str(&value[off + id.len()..]);
                    s
                }
                None => self.pseudonym(IdKind::Patient, value),
            },
            KeyClass::Id(kind) => self.pseudonym(kind, value),
        };
        Some(Action::Replace { from, to, with })
    }
}

const REDACTED: &str = "<redacted>";

/// What the text scanner does at a word.
enum Action {
    Replace {
        from: usize,
        to: usize,
        with: String,
    },
    ResumeAt(usize),
}

/// What the value of a key is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyClass {
    /// A bearer credential: replaced by its token id.
    Token,
    /// Any other secret: `<redacted>`.
    Secret,
    /// A patient id or reference.
    Patient,
    /// An id of this kind.
    Id(IdKind),
}

/// Keys are compared lower-cased, without `_`, `-` and `.`.
fn classify_key(word: &str) -> Option<KeyClass> {
    if word.len() > 40 || !word.bytes().next().is_some_and(|c| c.is_ascii_alphabetic()) {
        return None;
    }
    let mut buf = [0u8; 40];
    let mut n = 0;
    for c in word.bytes() {
        if !matches!(c, b'_' | b'-' | b'.') {
            buf[n] = c.to_ascii_lowercase();
            n += 1;
        }
    }
    let key = std::str::from_utf8(&buf[..n]).ok()?;
    let ends = |suffixes: &[&str]| suffixes.iter().any(|s| key.ends_with(s));
    if ends(&["token", "authorization", "jwt"]) || key == "bearer" {
        return Some(KeyClass::Token);
    }
    if ends(&[
        "password",
        "passwd",
        "secret",
        "apikey",
        "assertion",
        "cookie",
        "verifier",
        "credential",
        "credentials",
    ]) || matches!(
        key,
        "code" | "pwd" | "pass" | "authcode" | "authorizationcode"
    ) {
        return Some(KeyClass::Secret);
    }
    if ends(&["patientid"])
        || matches!(
            key,
            "patient" | "subject" | "patientreference" | "beneficiary"
        )
    {
        return Some(KeyClass::Patient);
    }
    if matches!(
        key,
        "user"
            | "userid"
            | "username"
            | "sub"
            | "login"
            | "preferredusername"
            | "fhiruser"
            | "principal"
            | "actor"
    ) {
        return Some(KeyClass::Id(IdKind::User));
    }
    if matches!(key, "encounter" | "encounterid") {
        return Some(KeyClass::Id(IdKind::Encounter));
    }
    if matches!(
        key,
        "mrn"
            | "name"
            | "fullname"
            | "firstname"
            | "lastname"
            | "givenname"
            | "familyname"
            | "given"
            | "family"
            | "birthdate"
            | "dob"
            | "dateofbirth"
            | "email"
            | "phone"
            | "telecom"
            | "ssn"
            | "address"
            | "identifier"
    ) {
        return Some(KeyClass::Id(IdKind::Resource));
    }
    None
}

/// The end of a quoted value starting at `from` (the end of the text when
/// unterminated: a truncated line still gets the value redacted).
fn closing_quote(b: &[u8], from: usize, q: u8, escaped: bool) -> usize {
    let mut k = from;
    while k < b.len() {
        match b[k] {
            b'\\' if escaped && b.get(k + 1) == Some(&q) => return k,
            b'\\' => k += 2,
            c if c == q && !escaped => return k,
            _ => k += 1,
        }
    }
    b.len()
}

/// Values we produced ourselves (`h:..`, `jti:..`, pseudonyms) are ids already.
fn is_reduced_id(text: &str, start: usize) -> bool {
    let before = &text[..start];
    before.ends_with("h:") || before.ends_with("jti:")
}

fn is_word_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.')
}

/// `ey...` base64url segments: 3 (JWS) or 5 (JWE), the first two non-empty.
fn looks_like_jwt(s: &str) -> bool {
    if s.len() < 20 || !s.starts_with("ey") {
        return false;
    }
    let mut parts = 0;
    for (i, part) in s.split('.').enumerate() {
        parts += 1;
        if i < 2 && part.is_empty() {
            return false;
        }
        if !part
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        {
            return false;
        }
    }
    parts == 3 || parts == 5
}

/// A path segment that is an id even where no resource type announces it.
fn looks_like_id(seg: &str) -> bool {
    let b = seg.as_bytes();
    if b.len() >= 4 && b.iter().all(u8::is_ascii_digit) {
        return true;
    }
    let uuid = b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        });
    uuid || (b.len() >= 24
        && b.iter().any(u8::is_ascii_digit)
        && b.iter().any(u8::is_ascii_alphabetic))
}

/// The last `Type/id` in a reference value (`Observation/1`,
/// `https://x/fhir/Encounter/9/_history/2`), `Type` an R4 type.
fn last_reference(value: &str) -> Option<(&str, &str)> {
    if !value.contains('/') {
        return None;
    }
    let path = value.split(['?', '#']).next().unwrap_or(value);
    let segs: Vec<&str> = path.split('/').collect();
    let (ty, id) = match segs.as_slice() {
        [.., ty, id, "_history", _] => (*ty, *id),
        [.., ty, id] => (*ty, *id),
        _ => return None,
    };
    (is_r4_resource_type(ty) && !id.is_empty() && !id.starts_with(['_', '$'])).then_some((ty, id))
}

/// Characters encoded when a decoded query value is written back.
const QUERY_VALUE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'&')
    .add(b'+')
    .add(b',')
    .add(b'<')
    .add(b'=')
    .add(b'>')
    .add(b'`');

/// Query parameters whose values identify nobody; kept as written.
pub const SAFE_PARAMS: &[&str] = &[
    "_count",
    "_sort",
    "_include",
    "_revinclude",
    "_summary",
    "_elements",
    "_format",
    "_type",
    "_since",
    "_outputFormat",
    "_pretty",
    "_total",
    "_contained",
    "_containedType",
    "category",
    "code",
    "status",
    "_lastUpdated",
    "intent",
];

/// Form decoding (`+` is a space), borrowing when nothing is encoded.
fn form_decode(s: &str) -> Cow<'_, str> {
    if !s.contains(['+', '%']) {
        return Cow::Borrowed(s);
    }
    let spaced = s.replace('+', " ");
    Cow::Owned(percent_decode_str(&spaced).decode_utf8_lossy().into_owned())
}

/// Writes `scheme://authority` of an absolute URL (without user info) and
/// returns the path that follows; a path is returned as it is.
fn push_origin<'a>(out: &mut String, target: &'a str) -> &'a str {
    let Some(i) = target.find("://") else {
        return target;
    };
    let scheme = &target[..i];
    if scheme.is_empty()
        || !scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return target;
    }
    let rest = &target[i + 3..];
    let end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..end];
    out.push_str(scheme);
    out.push_str("://");
    match authority.rsplit_once('@') {
        Some((_, host)) => {
            out.push_str("<redacted>@");
            out.push_str(host);
        }
        None => out.push_str(authority),
    }
    &rest[end..]
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn push_hex(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
}

/// `jti:<jti>`, or `jti-h:<hash>` when the jti is too long or odd: the id
/// of a token whose `jti` is known (every source must give the same id, so
/// that calls join their grants).
pub fn jti_id(jti: &str) -> String {
    let plain = !jti.is_empty()
        && jti.len() <= MAX_JTI_CHARS
        && jti
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if plain {
        let mut out = String::with_capacity(4 + jti.len());
        out.push_str("jti:");
        out.push_str(jti);
        out
    } else {
        hashed_id("jti-h:", jti.as_bytes())
    }
}

/// `prefix` + the first 32 hex digits of SHA-256(data).
fn hashed_id(prefix: &str, data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    let mut out = String::with_capacity(prefix.len() + 32);
    out.push_str(prefix);
    push_hex(&mut out, &digest[..16]);
    out
}

/// Drops an HTTP auth scheme (`Bearer `, case-insensitive) and surrounding space.
fn strip_scheme(token: &str) -> &str {
    let t = token.trim();
    let b = t.as_bytes();
    if b.len() > 7 && b[..6].eq_ignore_ascii_case(b"bearer") && b[6].is_ascii_whitespace() {
        t[7..].trim_start()
    } else {
        t
    }
}

/// The payload of a compact JWS (`header.payload.signature`), decoded, when
/// the header decodes to a JSON object.
fn jwt_payload(token: &str) -> Option<Vec<u8>> {
    let mut parts = token.split('.');
    let (header, payload, _sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some()
        || header.is_empty()
        || payload.is_empty()
        || !header.starts_with("ey")
    {
        return None;
    }
    let mut buf = Vec::with_capacity(header.len() * 3 / 4 + 3);
    B64URL.decode_vec(header, &mut buf).ok()?;
    if buf.iter().find(|c| !c.is_ascii_whitespace()) != Some(&b'{') {
        return None;
    }
    buf.clear();
    B64URL.decode_vec(payload, &mut buf).ok()?;
    Some(buf)
}

/// Just the `jti` (the token-id fast path).
fn jwt_jti(token: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Jti<'a> {
        #[serde(borrow, default)]
        jti: Option<Loose<'a>>,
    }
    let payload = jwt_payload(token)?;
    let claims: Jti<'_> = serde_json::from_slice(&payload).ok()?;
    claims.jti.and_then(|v| v.into_text())
}

/// Ids longer than this are not remembered by [`Pseudonymiser::pseudonym_into`].
const LAST_PSEUDONYM_MAX_ID: usize = 256;

/// The last pseudonym computed on this thread.
struct LastPseudonym {
    instance: u64,
    /// `None` until the first pseudonym.
    kind: Option<IdKind>,
    raw: String,
    tag: [u8; 8],
}

thread_local! {
    static LAST_PSEUDONYM: RefCell<LastPseudonym> = const {
        RefCell::new(LastPseudonym {
            instance: 0,
            kind: None,
            raw: String::new(),
            tag: [0; 8],
        })
    };
}

/// Tokens remembered per thread and pseudonymiser.
const TOKEN_CACHE_ENTRIES: usize = 4096;

type TokenCache = HashMap<u64, foldhash::HashMap<Box<str>, Arc<TokenInfo>>>;

thread_local! {
    static TOKEN_CACHE: RefCell<TokenCache> = RefCell::new(HashMap::new());
}

/// A bearer token reduced to what scopewatch keeps (see
/// [`Pseudonymiser::token_info`]). Nothing in it is raw: `user` and
/// `patient` are pseudonyms.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenInfo {
    /// The token id ([`Pseudonymiser::token_id`]).
    pub id: String,
    /// `client_id`, `azp` or `cid`.
    pub client_id: Option<String>,
    /// The `scope`/`scp` claim as one space-separated string.
    pub scope: Option<String>,
    /// The same, parsed.
    pub scopes: Option<Vec<Scope>>,
    /// User pseudonym of `sub`.
    pub user: Option<String>,
    /// Patient pseudonym of the launch patient claim.
    pub patient: Option<String>,
    pub iss: Option<String>,
    pub aud: Option<String>,
    /// Seconds since the epoch.
    pub exp: Option<i64>,
    /// Seconds since the epoch.
    pub iat: Option<i64>,
}

impl TokenInfo {
    /// When the token expires: its `exp` ([`exp_timestamp`]).
    pub fn expires_at(&self) -> Option<Timestamp> {
        self.exp.and_then(exp_timestamp)
    }

    /// The tenant whose authorization server issued the token: its `iss`
    /// as a tenant name of the source ([`issuer_tenant`]).
    pub fn tenant(&self, options: &SourceOptions) -> Option<String> {
        self.iss
            .as_deref()
            .and_then(|iss| issuer_tenant(iss, options))
    }
}

/// A JWT `exp` (seconds since the epoch) as a lake timestamp; `None` when it
/// is outside the years 0000..=9999 every engine reading the lake can
/// represent (e.g. milliseconds written where seconds belong, far off).
pub fn exp_timestamp(exp: i64) -> Option<Timestamp> {
    const MIN_S: i64 = -62_167_219_200;
    const MAX_S: i64 = 253_402_300_799;
    (MIN_S..=MAX_S)
        .contains(&exp)
        .then(|| Timestamp(exp * 1_000_000))
}

/// A token issuer (`iss`) as a tenant name, the way the source names its
/// tenants: `tenant_map[iss]` when it names the issuer, else
/// [`SourceOptions::tenant_name`] (a URL's last path segment, e.g. the
/// Keycloak realm of `https://auth.example.org/realms/north`), itself
/// renamed when `tenant_map` names it (so a source that maps realm names
/// maps the issuer's realm the same way). `None` for a blank issuer.
pub fn issuer_tenant(iss: &str, options: &SourceOptions) -> Option<String> {
    if let Some(t) = options.tenant_map.get(iss) {
        return Some(t.clone());
    }
    let name = options.tenant_name(iss)?;
    Some(options.tenant_map.get(&name).cloned().unwrap_or(name))
}

/// The claims scopewatch reads from a JWT. `sub` and `patient` are raw ids:
/// pseudonymise them before they go anywhere.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JwtClaims {
    pub jti: Option<String>,
    /// `client_id`, else `azp`, else `cid`.
    pub client_id: Option<String>,
    /// `scope` or `scp`, as one space-separated string (an array is joined).
    pub scope: Option<String>,
    pub sub: Option<String>,
    /// `patient`, else `patient_id`, else `launch_context.patient` /
    /// `context.patient` (raw id).
    pub patient: Option<String>,
    pub iss: Option<String>,
    /// `aud`; several audiences are joined with spaces.
    pub aud: Option<String>,
    /// Seconds since the epoch.
    pub exp: Option<i64>,
    /// Seconds since the epoch.
    pub iat: Option<i64>,
    /// Every other top-level claim whose value is a string or a number (as
    /// text), by name: e.g. `tenant`, `software_version`. Raw values, which
    /// may identify someone: use one only where a source's configuration
    /// names it.
    pub extra: BTreeMap<String, String>,
}

impl JwtClaims {
    /// A claim by name: the ones read into the fields above (`azp` and
    /// `cid` give `client_id`, `scp` gives `scope`, `patient_id` gives
    /// `patient`; `exp` and `iat` as decimal seconds), else [`Self::extra`].
    pub fn claim(&self, name: &str) -> Option<Cow<'_, str>> {
        let field = match name {
            "jti" => &self.jti,
            "client_id" | "azp" | "cid" => &self.client_id,
            "scope" | "scp" => &self.scope,
            "sub" => &self.sub,
            "patient" | "patient_id" => &self.patient,
            "iss" => &self.iss,
            "aud" => &self.aud,
            "exp" => return self.exp.map(|s| Cow::Owned(s.to_string())),
            "iat" => return self.iat.map(|s| Cow::Owned(s.to_string())),
            _ => return self.extra.get(name).map(|v| Cow::Borrowed(v.as_str())),
        };
        field.as_deref().map(Cow::Borrowed)
    }
}

/// Reads a JWT's claims without verifying its signature (scopewatch only
/// describes the token; it does not trust it for anything). A leading
/// `Bearer ` is accepted. `None` when `token` is not a compact JWS whose
/// header and payload are JSON objects.
pub fn jwt_claims(token: &str) -> Option<JwtClaims> {
    #[derive(Deserialize)]
    struct Raw<'a> {
        #[serde(borrow, default)]
        jti: Option<Loose<'a>>,
        #[serde(borrow, default)]
        client_id: Option<Loose<'a>>,
        #[serde(borrow, default)]
        azp: Option<Loose<'a>>,
        #[serde(borrow, default)]
        cid: Option<Loose<'a>>,
        #[serde(borrow, default)]
        scope: Option<Loose<'a>>,
        #[serde(borrow, default)]
        scp: Option<Loose<'a>>,
        #[serde(borrow, default)]
        sub: Option<Loose<'a>>,
        #[serde(borrow, default)]
        patient: Option<Loose<'a>>,
        #[serde(borrow, default)]
        patient_id: Option<Loose<'a>>,
        #[serde(borrow, default)]
        launch_context: Option<Loose<'a>>,
        #[serde(borrow, default)]
        context: Option<Loose<'a>>,
        #[serde(borrow, default)]
        iss: Option<Loose<'a>>,
        #[serde(borrow, default)]
        aud: Option<Loose<'a>>,
        #[serde(borrow, default)]
        exp: Option<Loose<'a>>,
        #[serde(borrow, default)]
        iat: Option<Loose<'a>>,
        #[serde(borrow, flatten)]
        extra: BTreeMap<String, Loose<'a>>,
    }
    let payload = jwt_payload(strip_scheme(token))?;
    let raw: Raw<'_> = serde_json::from_slice(&payload).ok()?;
    let text = |v: Option<Loose<'_>>| v.and_then(Loose::into_text);
    let joined = |v: Option<Loose<'_>>| match v? {
        Loose::Array(items) => {
            let items: Vec<String> = items.into_iter().filter_map(Loose::into_text).collect();
            (!items.is_empty()).then(|| items.join(" "))
        }
        other => other.into_text(),
    };
    let nested_patient = |v: Option<Loose<'_>>| match v? {
        Loose::Object(fields) => fields
            .into_iter()
            .find(|(k, _)| k == "patient")
            .and_then(|(_, v)| v.into_text()),
        _ => None,
    };
    Some(JwtClaims {
        jti: text(raw.jti),
        client_id: text(raw.client_id)
            .or_else(|| text(raw.azp))
            .or_else(|| text(raw.cid)),
        scope: joined(raw.scope).or_else(|| joined(raw.scp)),
        sub: text(raw.sub),
        patient: text(raw.patient)
            .or_else(|| text(raw.patient_id))
            .or_else(|| nested_patient(raw.launch_context))
            .or_else(|| nested_patient(raw.context)),
        iss: text(raw.iss),
        aud: joined(raw.aud),
        exp: raw.exp.and_then(|v| v.as_i64()),
        iat: raw.iat.and_then(|v| v.as_i64()),
        extra: raw
            .extra
            .into_iter()
            .filter_map(|(k, v)| Some((k, v.into_text()?)))
            .collect(),
    })
}

// ---------------------------------------------------------------------------
// The key file

fn read_key_file(path: &Path) -> Result<Vec<u8>, PrivacyError> {
    let file = fs::File::open(path).map_err(io_err(path))?;
    let meta = file.metadata().map_err(io_err(path))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(PrivacyError::InsecureKeyFile {
            path: path.to_path_buf(),
            mode,
        });
    }
    if !meta.is_file() {
        return Err(PrivacyError::BadKeyFile {
            path: path.to_path_buf(),
            reason: "not a regular file",
        });
    }
    let mut bytes = Vec::with_capacity(80);
    file.take(4096)
        .read_to_end(&mut bytes)
        .map_err(io_err(path))?;
    let bad = |reason| PrivacyError::BadKeyFile {
        path: path.to_path_buf(),
        reason,
    };
    match std::str::from_utf8(&bytes) {
        Ok(text) => parse_key_text(text).map_err(bad),
        Err(_) if bytes.len() >= MIN_KEY_BYTES => Ok(bytes),
        Err(_) => Err(bad("it is shorter than 32 bytes")),
    }
}

/// Writes a new random key aside, fsyncs it and links it into place; if
/// another process got there first, its key stands.
fn create_key_file(path: &Path) -> Result<(), PrivacyError> {
    let dir = path
        .parent()
        .expect("the key file is below the data directory");
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let mut key = [0u8; 32];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .map_err(io_err(Path::new("/dev/urandom")))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let tmp = dir.join(format!(".pseudonym.key.{}.{nanos}.tmp", std::process::id()));
    let written = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        let mut text = hex::encode(key);
        text.push('\n');
        f.write_all(text.as_bytes())?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(&tmp)(e));
    }
    let placed = match fs::hard_link(&tmp, path) {
        Ok(()) => Ok(()),
        // Another process created it meanwhile: keep theirs.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        // No hard links on this file system: rename (last writer wins).
        Err(_) => fs::rename(&tmp, path),
    };
    let _ = fs::remove_file(&tmp);
    placed.map_err(io_err(path))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))?;
    tracing::info!(path = %path.display(), "created a new pseudonym key");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> Pseudonymiser {
        Pseudonymiser::from_key([7; 32])
    }

    #[test]
    fn pseudonym_shape() {
        let s = p().pseudonym(IdKind::Patient, "123");
        assert!(s.starts_with("p_") && s.len() == 18, "{s}");
        assert!(s[2..].bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(s, p().pseudonym(IdKind::Patient, "123"));
        assert_ne!(s[2..], p().pseudonym(IdKind::User, "123")[2..]);
    }

    #[test]
    fn remembered_pseudonyms_match_fresh_ones() {
        // The per-thread memo must never answer for another key, kind or id.
        let fresh = |key: u8, kind: IdKind, raw: &str| {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&[key; 32]).unwrap();
            mac.update(kind.tag());
            mac.update(&[0]);
            mac.update(raw.as_bytes());
            let mut s = kind.prefix().to_string();
            push_hex(&mut s, &mac.finalize().into_bytes()[..8]);
            s
        };
        let a = Pseudonymiser::from_key([7; 32]);
        let b = Pseudonymiser::from_key([8; 32]);
        let long = "x".repeat(LAST_PSEUDONYM_MAX_ID + 1);
        for _ in 0..2 {
            for (kind, raw) in [
                (IdKind::Patient, "123"),
                (IdKind::Patient, "123"),
                (IdKind::User, "123"),
                (IdKind::Patient, "1234"),
                (IdKind::Patient, "12"),
                (IdKind::Resource, long.as_str()),
                (IdKind::Resource, long.as_str()),
            ] {
                assert_eq!(a.pseudonym(kind, raw), fresh(7, kind, raw));
                assert_eq!(a.pseudonym(kind, raw), fresh(7, kind, raw));
                assert_eq!(b.pseudonym(kind, raw), fresh(8, kind, raw));
                let mut out = String::from("x/");
                a.pseudonym_into(kind, raw, &mut out);
                assert_eq!(out, format!("x/{}", fresh(7, kind, raw)));
            }
        }
    }

    #[test]
    fn keys_parse_as_hex_or_base64() {
        assert_eq!(parse_key_text(&"ab".repeat(32)).unwrap(), vec![0xab; 32]);
        assert_eq!(
            parse_key_text(&B64STD.encode([1u8; 40])).unwrap(),
            vec![1; 40]
        );
        assert_eq!(
            parse_key_text(&B64URL.encode([0xfbu8; 33])).unwrap(),
            vec![0xfb; 33]
        );
        assert!(parse_key_text("abcd").is_err());
        assert!(parse_key_text("").is_err());
        assert!(parse_key_text("not a key at all!").is_err());
    }

    #[test]
    fn jwt_detection() {
        assert!(looks_like_jwt("eyJhbGciOiJIUzI1NiJ9.eyJqdGkiOiIxIn0.c2ln"));
        assert!(!looks_like_jwt("api.example.com"));
        assert!(!looks_like_jwt("eyJhbGciOiJIUzI1NiJ9.eyJqdGkiOiIxIn0"));
    }

    #[test]
    fn ids_outside_fhir_positions() {
        assert!(looks_like_id("12345"));
        assert!(looks_like_id("3f2504e0-4f89-11d3-9a0c-0305e82c3301"));
        assert!(!looks_like_id("r4"));
        assert!(!looks_like_id("fhir"));
        assert!(!looks_like_id("123"));
    }

    #[test]
    fn last_references() {
        assert_eq!(last_reference("Group/7"), Some(("Group", "7")));
        assert_eq!(
            last_reference("https://x/fhir/Encounter/9/_history/2"),
            Some(("Encounter", "9"))
        );
        assert_eq!(last_reference("a/b"), None);
        assert_eq!(last_reference("plain"), None);
    }

    #[test]
    fn exp_as_timestamp() {
        assert_eq!(
            exp_timestamp(1_795_431_600),
            Some(Timestamp(1_795_431_600_000_000))
        );
        assert_eq!(exp_timestamp(0), Some(Timestamp(0)));
        // Milliseconds where seconds belong: beyond year 9999, not kept.
        assert_eq!(exp_timestamp(1_795_431_600_000), None);
        assert_eq!(exp_timestamp(i64::MAX), None);
        assert_eq!(exp_timestamp(i64::MIN), None);
    }

    #[test]
    fn issuers_as_tenants() {
        let plain = SourceOptions::default();
        let kc = "https://auth.example.org/realms/north";
        assert_eq!(issuer_tenant(kc, &plain).as_deref(), Some("north"));
        assert_eq!(
            issuer_tenant("https://auth.example.org/realms/north/", &plain).as_deref(),
            Some("north")
        );
        assert_eq!(issuer_tenant("north", &plain).as_deref(), Some("north"));
        assert_eq!(issuer_tenant("  ", &plain), None);
        // The issuer mapped as a whole ...
        let mut mapped = SourceOptions::default();
        mapped.tenant_map.insert(kc.into(), "hospital-north".into());
        assert_eq!(
            issuer_tenant(kc, &mapped).as_deref(),
            Some("hospital-north")
        );
        // ... or its realm, as a `realm` source maps it; never twice.
        let mut realms = SourceOptions::default();
        realms
            .tenant_map
            .insert("north".into(), "hospital-north".into());
        realms
            .tenant_map
            .insert("hospital-north".into(), "elsewhere".into());
        assert_eq!(
            issuer_tenant(kc, &realms).as_deref(),
            Some("hospital-north")
        );
        assert_eq!(
            issuer_tenant("https://auth.example.org/realms/south", &realms).as_deref(),
            Some("south")
        );

        let info = |iss: Option<&str>, exp: Option<i64>| TokenInfo {
            id: "jti:t".into(),
            client_id: None,
            scope: None,
            scopes: None,
            user: None,
            patient: None,
            iss: iss.map(str::to_string),
            aud: None,
            exp,
            iat: None,
        };
        let full = info(Some(kc), Some(1_795_431_600));
        assert_eq!(full.tenant(&plain).as_deref(), Some("north"));
        assert_eq!(full.expires_at(), Some(Timestamp(1_795_431_600_000_000)));
        let bare = info(None, None);
        assert_eq!(bare.tenant(&plain), None);
        assert_eq!(bare.expires_at(), None);
    }

    #[test]
    fn key_classes() {
        assert_eq!(classify_key("access_token"), Some(KeyClass::Token));
        assert_eq!(classify_key("refreshToken"), Some(KeyClass::Token));
        assert_eq!(classify_key("Authorization"), Some(KeyClass::Token));
        assert_eq!(classify_key("client_secret"), Some(KeyClass::Secret));
        assert_eq!(classify_key("code"), Some(KeyClass::Secret));
        assert_eq!(classify_key("token_type"), None);
        assert_eq!(classify_key("token_id"), None);
        assert_eq!(classify_key("patient_id"), Some(KeyClass::Patient));
        assert_eq!(classify_key("userId"), Some(KeyClass::Id(IdKind::User)));
        assert_eq!(classify_key("client_id"), None);
        assert_eq!(classify_key("scope"), None);
    }
}
