//! `[delivery]` of the rule file in the project's two steps: [`DeliveryFile`]
//! is what serde reads (unknown keys refused, units in names) and
//! [`Delivery`] the validated runtime form. Validation does no IO but read
//! the environment variables the file names (secrets are best kept there).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use lettre::message::Mailbox;
use serde::Deserialize;

use crate::alert::Severity;

/// `[delivery]` as written. The empty default delivers nothing.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryFile {
    /// Base URL of the dashboard, e.g. `http://127.0.0.1:8080`; messages link
    /// to `<dashboard_url>/alerts/<id>`. Absent: messages carry no link.
    pub dashboard_url: Option<String>,
    /// `[delivery.smtp]`: the mail server email destinations send through.
    /// Required as soon as one destination has `type = "email"`.
    pub smtp: Option<SmtpFile>,
    /// `[[delivery.destination]]`: named email recipients and webhooks.
    #[serde(default, rename = "destination")]
    pub destinations: Vec<DestinationFile>,
    /// `[[delivery.route]]`: destinations by severity and rule, in addition
    /// to a rule's own `destinations`.
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteFile>,
    /// `[delivery.digest]`: alerts below a severity are grouped into one
    /// message per destination and interval. Absent: every alert is sent
    /// on its own.
    pub digest: Option<DigestFile>,
    /// `[delivery.retry]`: how failed sends are retried.
    #[serde(default)]
    pub retry: RetryFile,
}

/// `[delivery.smtp]` as written.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpFile {
    /// Host name or IP address of the SMTP server. With TLS its certificate
    /// must be valid for this name (checked against the Mozilla roots).
    pub host: String,
    /// TCP port. Default: 587 for `starttls`, 465 for `tls`, 25 for `none`.
    pub port: Option<u16>,
    /// `starttls` (default: plain connection upgraded, refused if the server
    /// cannot), `tls` (implicit TLS, "SMTPS") or `none` (no encryption: only
    /// for a relay on loopback; credentials are refused with it elsewhere).
    pub security: Option<String>,
    /// User name to log in with. Needs a password (`password_env` or
    /// `password`). Absent: no login.
    pub username: Option<String>,
    /// Name of the environment variable holding the password, e.g.
    /// `SCOPEWATCH_SMTP_PASSWORD`. Preferred over `password`: it keeps the
    /// secret out of a file that is likely under version control.
    pub password_env: Option<String>,
    /// The password itself. Use `password_env` instead where you can; a file
    /// holding it must be readable by scopewatch only.
    pub password: Option<String>,
    /// The sender, `Name <address>` or `address`, e.g.
    /// `scopewatch <alerts@example.org>`.
    pub from: String,
    /// Timeout for connecting and for each SMTP command, in seconds.
    /// Default 10.
    pub timeout_secs: Option<u64>,
}

// By hand: the password must not reach a log through `{:?}`.
impl std::fmt::Debug for SmtpFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpFile")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.username)
            .field("password_env", &self.password_env)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("from", &self.from)
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

/// One `[[delivery.destination]]` as written.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationFile {
    /// Unique name that rules and routes refer to: letters, digits, `-`,
    /// `_` and `.`, at most 64.
    pub name: String,
    /// `email` or `webhook`.
    #[serde(rename = "type")]
    pub kind: String,
    /// email: the recipients, `address` or `Name <address>`.
    #[serde(default)]
    pub to: Vec<String>,
    /// webhook: the URL to POST to (http or https). `env:NAME` reads it from
    /// the environment variable NAME, for URLs that embed a secret.
    pub url: Option<String>,
    /// webhook: extra request headers, e.g. `Authorization`. A value
    /// `env:NAME` is read from the environment variable NAME at load.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// webhook: timeout for the whole request, in seconds. Default 10.
    pub timeout_secs: Option<u64>,
}

// By hand: webhook URLs and header values are often secrets.
impl std::fmt::Debug for DestinationFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DestinationFile")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("to", &self.to)
            .field("url", &self.url.as_deref().map(url_origin))
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

/// One `[[delivery.route]]` as written: alerts of at least `min_severity`
/// from the listed rules also go to `destinations`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    /// low, medium, high or critical. Default low (every alert).
    pub min_severity: Option<String>,
    /// Rule ids, or `"*"` for every rule. Default `["*"]`.
    pub rules: Option<Vec<String>>,
    /// Names of `[[delivery.destination]]` entries.
    pub destinations: Vec<String>,
}

/// `[delivery.digest]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestFile {
    /// Alerts below this severity (medium, high or critical) wait for the
    /// digest instead of being sent one by one.
    pub below_severity: String,
    /// Length of a digest period, in seconds; periods are aligned to the
    /// Unix epoch (3600: on the hour, UTC). A digest goes out when its
    /// period ends. Default 3600.
    pub interval_secs: Option<u64>,
}

/// `[delivery.retry]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryFile {
    /// Wait after the first failed attempt, in seconds; doubled after each
    /// further failure. Default 1.
    #[serde(default = "default_initial_backoff_secs")]
    pub initial_backoff_secs: u64,
    /// The wait never grows beyond this, in seconds. Default 300.
    #[serde(default = "default_max_backoff_secs")]
    pub max_backoff_secs: u64,
    /// Give up after this many failed attempts (the message moves to the
    /// outbox's `failed/` folder); 0 retries forever. Default 0.
    #[serde(default)]
    pub max_attempts: u32,
}

impl Default for RetryFile {
    fn default() -> RetryFile {
        RetryFile {
            initial_backoff_secs: default_initial_backoff_secs(),
            max_backoff_secs: default_max_backoff_secs(),
            max_attempts: 0,
        }
    }
}

fn default_initial_backoff_secs() -> u64 {
    1
}

fn default_max_backoff_secs() -> u64 {
    300
}

const DEFAULT_TIMEOUT_SECS: u64 = 10;
const DEFAULT_DIGEST_INTERVAL_SECS: u64 = 3600;

/// `[delivery]` is not usable: which field, and what to do. Never holds a
/// secret's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct DeliveryConfigError {
    /// The field, as a path inside `[delivery]`, e.g. `smtp.password_env`
    /// or `destination[chat].url`.
    pub field: String,
    pub message: String,
}

fn bad(field: impl Into<String>, message: impl Into<String>) -> DeliveryConfigError {
    DeliveryConfigError {
        field: field.into(),
        message: message.into(),
    }
}

/// Secrets (password, header values, webhook URL) are the config's own
/// type: `{:?}` never shows them.
pub use scopewatch_model::config::Secret;

/// Validated `[delivery]`. The default has no destination: nothing is sent.
#[derive(Debug, Clone, Default)]
pub struct Delivery {
    /// Without a trailing `/`.
    pub dashboard_url: Option<String>,
    pub smtp: Option<SmtpSettings>,
    /// By name.
    pub destinations: BTreeMap<String, Destination>,
    pub routes: Vec<Route>,
    pub digest: Option<DigestSettings>,
    pub retry: RetryPolicy,
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    StartTls,
    Tls,
    None,
}

impl SmtpSecurity {
    pub fn default_port(self) -> u16 {
        match self {
            SmtpSecurity::StartTls => 587,
            SmtpSecurity::Tls => 465,
            SmtpSecurity::None => 25,
        }
    }
}

/// Validated `[delivery.smtp]`.
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    /// User name and password.
    pub credentials: Option<(String, Secret)>,
    pub from: Mailbox,
    pub timeout: Duration,
}

/// A validated destination.
#[derive(Debug, Clone)]
pub enum Destination {
    Email { to: Vec<Mailbox> },
    Webhook(WebhookTarget),
}

impl Destination {
    pub fn kind(&self) -> &'static str {
        match self {
            Destination::Email { .. } => "email",
            Destination::Webhook(_) => "webhook",
        }
    }
}

/// Where and how a webhook is called.
#[derive(Debug, Clone)]
pub struct WebhookTarget {
    pub url: Secret,
    /// `scheme://host[:port]` of `url`: what logs and errors show, since the
    /// path often embeds a token.
    pub origin: String,
    /// Name and value, checked to be valid HTTP.
    pub headers: Vec<(String, Secret)>,
    pub timeout: Duration,
}

/// A validated route.
#[derive(Debug, Clone)]
pub struct Route {
    pub min_severity: Severity,
    /// None: every rule.
    pub rules: Option<Vec<String>>,
    pub destinations: Vec<String>,
}

impl Route {
    pub fn matches(&self, rule: &str, severity: Severity) -> bool {
        severity >= self.min_severity
            && self
                .rules
                .as_ref()
                .is_none_or(|ids| ids.iter().any(|id| id == rule))
    }
}

/// Validated `[delivery.digest]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigestSettings {
    /// Alerts of a lower severity go to the digest.
    pub below_severity: Severity,
    /// At least 1.
    pub interval_secs: u64,
}

/// Validated `[delivery.retry]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// 0: forever.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            initial_backoff: Duration::from_secs(default_initial_backoff_secs()),
            max_backoff: Duration::from_secs(default_max_backoff_secs()),
            max_attempts: 0,
        }
    }
}

impl RetryPolicy {
    /// The wait after `failures` failed attempts (1 = after the first):
    /// initial x 2^(failures-1), at most `max_backoff`.
    pub fn backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.initial_backoff
            .checked_mul(1u32 << doublings)
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff)
    }

    /// Whether a message that failed `failures` times is given up.
    pub fn gives_up_after(&self, failures: u32) -> bool {
        self.max_attempts != 0 && failures >= self.max_attempts
    }
}

impl Delivery {
    /// The names of every destination, for checking rules' `destinations`.
    pub fn destination_names(&self) -> Vec<String> {
        self.destinations.keys().cloned().collect()
    }

    pub fn has_destination(&self, name: &str) -> bool {
        self.destinations.contains_key(name)
    }

    /// False when nothing would ever be sent.
    pub fn is_enabled(&self) -> bool {
        !self.destinations.is_empty()
    }

    /// Where an alert of `rule` and `severity` goes: the rule's own
    /// destinations, then those of every matching route, each once, in that
    /// order. Names not defined are left out (rule validation refuses them).
    pub fn destinations_for(
        &self,
        rule: &str,
        severity: Severity,
        rule_destinations: &[String],
    ) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let routed = self
            .routes
            .iter()
            .filter(|r| r.matches(rule, severity))
            .flat_map(|r| r.destinations.iter());
        for name in rule_destinations.iter().chain(routed) {
            if !self.has_destination(name) {
                tracing::warn!(rule, destination = %name, "alert destination is not defined; skipped");
                continue;
            }
            if !out.contains(name) {
                out.push(name.clone());
            }
        }
        out
    }

    /// Whether alerts of this severity wait for the digest.
    pub fn goes_to_digest(&self, severity: Severity) -> bool {
        self.digest.is_some_and(|d| severity < d.below_severity)
    }

    /// Every secret value, so error texts can be scrubbed of them.
    pub(crate) fn secrets(&self) -> Vec<&str> {
        let mut out = Vec::new();
        if let Some((_, p)) = self.smtp.as_ref().and_then(|s| s.credentials.as_ref()) {
            out.push(p.expose());
        }
        for d in self.destinations.values() {
            if let Destination::Webhook(w) = d {
                out.push(w.url.expose());
                out.extend(w.headers.iter().map(|(_, v)| v.expose()));
            }
        }
        out.retain(|s| !s.is_empty());
        // Longest first: a secret that contains another is replaced whole.
        out.sort_by_key(|s| std::cmp::Reverse(s.len()));
        out
    }
}

impl DeliveryFile {
    /// Checks the section and reads the environment variables it names.
    pub fn validate(&self) -> Result<Delivery, DeliveryConfigError> {
        let dashboard_url = match self.dashboard_url.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(u) => {
                if !(u.starts_with("http://") || u.starts_with("https://")) || u.contains(' ') {
                    return Err(bad(
                        "dashboard_url",
                        format!(
                            "`{u}` is not an http(s) URL: write the dashboard's base URL, e.g. `https://scopewatch.example.org`"
                        ),
                    ));
                }
                Some(u.trim_end_matches('/').to_string())
            }
        };

        let smtp = self.smtp.as_ref().map(validate_smtp).transpose()?;

        let mut destinations = BTreeMap::new();
        for d in &self.destinations {
            let field = format!("destination[{}]", d.name);
            check_name(&d.name, &field)?;
            if destinations.contains_key(&d.name) {
                return Err(bad(
                    field,
                    "the name is used twice: give each [[delivery.destination]] its own name",
                ));
            }
            let dest = match d.kind.as_str() {
                "email" => validate_email_destination(d, &field, smtp.is_some())?,
                "webhook" => validate_webhook(d, &field)?,
                other => {
                    return Err(bad(
                        format!("{field}.type"),
                        format!("`{other}` is not a destination type: use `email` or `webhook`"),
                    ))
                }
            };
            destinations.insert(d.name.clone(), dest);
        }

        let mut routes = Vec::new();
        for (i, r) in self.routes.iter().enumerate() {
            let field = format!("route[{}]", i + 1);
            let min_severity = match &r.min_severity {
                None => Severity::Low,
                Some(s) => parse_severity(s, &format!("{field}.min_severity"))?,
            };
            if r.destinations.is_empty() {
                return Err(bad(
                    format!("{field}.destinations"),
                    "is empty: name at least one destination, or remove the route",
                ));
            }
            for name in &r.destinations {
                if !destinations.contains_key(name) {
                    return Err(bad(
                        format!("{field}.destinations"),
                        format!(
                            "destination `{name}` is not defined: add a [[delivery.destination]] named `{name}`, or fix the name"
                        ),
                    ));
                }
            }
            let rules = match &r.rules {
                None => None,
                Some(ids) if ids.iter().any(|id| id == "*") => None,
                Some(ids) if ids.is_empty() => {
                    return Err(bad(
                        format!("{field}.rules"),
                        "is empty, so the route matches nothing: list rule ids or `\"*\"` for every rule",
                    ))
                }
                Some(ids) => Some(ids.clone()),
            };
            routes.push(Route {
                min_severity,
                rules,
                destinations: r.destinations.clone(),
            });
        }

        let digest = match &self.digest {
            None => None,
            Some(d) => {
                let below_severity = parse_severity(&d.below_severity, "digest.below_severity")?;
                if below_severity == Severity::Low {
                    return Err(bad(
                        "digest.below_severity",
                        "no severity is below `low`, so the digest would stay empty: use medium, high or critical, or remove [delivery.digest]",
                    ));
                }
                let interval_secs = d.interval_secs.unwrap_or(DEFAULT_DIGEST_INTERVAL_SECS);
                if interval_secs == 0 {
                    return Err(bad(
                        "digest.interval_secs",
                        "must be at least 1 (3600 sends an hourly digest)",
                    ));
                }
                Some(DigestSettings {
                    below_severity,
                    interval_secs,
                })
            }
        };

        let r = &self.retry;
        if r.initial_backoff_secs == 0 {
            return Err(bad(
                "retry.initial_backoff_secs",
                "must be at least 1: a zero wait would hammer a server that is down",
            ));
        }
        if r.max_backoff_secs < r.initial_backoff_secs {
            return Err(bad(
                "retry.max_backoff_secs",
                format!(
                    "{} is below initial_backoff_secs ({}): raise it",
                    r.max_backoff_secs, r.initial_backoff_secs
                ),
            ));
        }
        let retry = RetryPolicy {
            initial_backoff: Duration::from_secs(r.initial_backoff_secs),
            max_backoff: Duration::from_secs(r.max_backoff_secs),
            max_attempts: r.max_attempts,
        };

        Ok(Delivery {
            dashboard_url,
            smtp,
            destinations,
            routes,
            digest,
            retry,
        })
    }
}

fn parse_severity(s: &str, field: &str) -> Result<Severity, DeliveryConfigError> {
    Severity::parse(s).ok_or_else(|| {
        bad(
            field,
            format!("`{s}` is not a severity: use low, medium, high or critical"),
        )
    })
}

fn check_name(name: &str, field: &str) -> Result<(), DeliveryConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(bad(
            format!("{field}.name"),
            "use 1 to 64 letters, digits, `-`, `_` or `.` (not first), e.g. `secops-email`",
        ))
    }
}

fn timeout(secs: Option<u64>, field: &str) -> Result<Duration, DeliveryConfigError> {
    match secs.unwrap_or(DEFAULT_TIMEOUT_SECS) {
        0 => Err(bad(field, "must be at least 1 second (default 10)")),
        s => Ok(Duration::from_secs(s)),
    }
}

/// The value of environment variable `name`, named by `field`.
fn read_env(name: &str, field: &str) -> Result<String, DeliveryConfigError> {
    if name.is_empty() {
        return Err(bad(field, "names no environment variable"));
    }
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Ok(v),
        Ok(_) => Err(bad(
            field,
            format!(
                "the environment variable `{name}` is empty: set it before starting scopewatch"
            ),
        )),
        Err(std::env::VarError::NotPresent) => Err(bad(
            field,
            format!(
                "the environment variable `{name}` is not set: set it before starting scopewatch"
            ),
        )),
        Err(std::env::VarError::NotUnicode(_)) => Err(bad(
            field,
            format!("the environment variable `{name}` is not valid UTF-8"),
        )),
    }
}

fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost") || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn validate_smtp(s: &SmtpFile) -> Result<SmtpSettings, DeliveryConfigError> {
    let host = s.host.trim();
    if host.is_empty()
        || (host.contains(|c: char| c.is_whitespace() || c == '/' || c == ':')
            && host.parse::<IpAddr>().is_err())
    {
        return Err(bad(
            "smtp.host",
            format!("`{}` is not a host name: write only the name or IP, e.g. `smtp.example.org`, and the port in `port`", s.host),
        ));
    }
    let security = match s.security.as_deref().unwrap_or("starttls") {
        "starttls" => SmtpSecurity::StartTls,
        "tls" => SmtpSecurity::Tls,
        "none" => SmtpSecurity::None,
        other => {
            return Err(bad(
                "smtp.security",
                format!("`{other}` is not one of starttls, tls, none"),
            ))
        }
    };
    let port = match s.port {
        Some(0) => {
            return Err(bad(
                "smtp.port",
                "0 is not a port (587 for starttls, 465 for tls)",
            ))
        }
        Some(p) => p,
        None => security.default_port(),
    };
    let password = match (&s.password_env, &s.password) {
        (Some(_), Some(_)) => {
            return Err(bad(
                "smtp.password",
                "both `password` and `password_env` are given: keep only `password_env`",
            ))
        }
        (Some(var), None) => Some(Secret::new(read_env(var, "smtp.password_env")?)),
        (None, Some(p)) if p.is_empty() => {
            return Err(bad(
                "smtp.password",
                "is empty: remove it, or use `password_env`",
            ))
        }
        (None, Some(p)) => Some(Secret::new(p.clone())),
        (None, None) => None,
    };
    let credentials = match (s.username.as_deref().filter(|u| !u.is_empty()), password) {
        (Some(u), Some(p)) => Some((u.to_string(), p)),
        (None, None) => None,
        (Some(_), None) => {
            return Err(bad(
                "smtp.username",
                "is given without a password: add `password_env = \"SCOPEWATCH_SMTP_PASSWORD\"` (and set that variable), or remove `username`",
            ))
        }
        (None, Some(_)) => {
            return Err(bad(
                "smtp.username",
                "is missing: a password is given, so add the user name to log in with",
            ))
        }
    };
    if security == SmtpSecurity::None && !is_loopback(host) {
        if credentials.is_some() {
            return Err(bad(
                "smtp.security",
                format!("`none` would send the password in clear text to `{host}`: use `starttls` or `tls`"),
            ));
        }
        tracing::warn!(
            host,
            "smtp.security = none: alert emails go to a non-loopback server unencrypted"
        );
    }
    let from: Mailbox = s.from.parse().map_err(|e| {
        bad(
            "smtp.from",
            format!("`{}` is not an email address ({e}): write `alerts@example.org` or `scopewatch <alerts@example.org>`", s.from),
        )
    })?;
    Ok(SmtpSettings {
        host: host.to_string(),
        port,
        security,
        credentials,
        from,
        timeout: timeout(s.timeout_secs, "smtp.timeout_secs")?,
    })
}

fn validate_email_destination(
    d: &DestinationFile,
    field: &str,
    have_smtp: bool,
) -> Result<Destination, DeliveryConfigError> {
    if let Some(extra) = [
        ("url", d.url.is_some()),
        ("headers", !d.headers.is_empty()),
        ("timeout_secs", d.timeout_secs.is_some()),
    ]
    .iter()
    .find(|(_, set)| *set)
    {
        return Err(bad(
            format!("{field}.{}", extra.0),
            "applies to webhooks only; an email destination takes `to` (the SMTP settings are in [delivery.smtp])",
        ));
    }
    if !have_smtp {
        return Err(bad(
            field,
            "is an email destination but there is no [delivery.smtp]: add one (host, port, security, from) or remove the destination",
        ));
    }
    if d.to.is_empty() {
        return Err(bad(
            format!("{field}.to"),
            "is empty: list at least one recipient, e.g. `to = [\"secops@example.org\"]`",
        ));
    }
    let mut to = Vec::new();
    for addr in &d.to {
        let m: Mailbox = addr.parse().map_err(|e| {
            bad(
                format!("{field}.to"),
                format!("`{addr}` is not an email address ({e})"),
            )
        })?;
        to.push(m);
    }
    Ok(Destination::Email { to })
}

fn validate_webhook(d: &DestinationFile, field: &str) -> Result<Destination, DeliveryConfigError> {
    if !d.to.is_empty() {
        return Err(bad(
            format!("{field}.to"),
            "applies to email destinations only; a webhook takes `url`",
        ));
    }
    let Some(raw) = d.url.as_deref() else {
        return Err(bad(
            format!("{field}.url"),
            "is missing: a webhook needs the URL to POST to",
        ));
    };
    let url_field = format!("{field}.url");
    let url = match raw.strip_prefix("env:") {
        Some(var) => read_env(var, &url_field)?,
        None => raw.to_string(),
    };
    // Never echo the URL itself: it may hold a token.
    let parsed: ureq::http::Uri = url.parse().map_err(|_| {
        bad(
            &url_field,
            "is not a valid URL: write the full URL, e.g. `https://chat.example.org/hooks/...`",
        )
    })?;
    match parsed.scheme_str() {
        Some("https") => {}
        Some("http") => {
            let host = parsed.host().unwrap_or("");
            if !is_loopback(host) {
                tracing::warn!(destination = %d.name, origin = %url_origin(&url), "webhook over plain http: alerts and headers travel unencrypted");
            }
        }
        _ => return Err(bad(&url_field, "must start with `https://` (or `http://`)")),
    }
    if parsed.host().is_none_or(str::is_empty) {
        return Err(bad(&url_field, "has no host"));
    }
    let mut headers = Vec::new();
    for (name, value) in &d.headers {
        let hfield = format!("{field}.headers.{name}");
        ureq::http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| bad(&hfield, "is not a valid HTTP header name"))?;
        let value = match value.strip_prefix("env:") {
            Some(var) => read_env(var, &hfield)?,
            None => value.clone(),
        };
        ureq::http::HeaderValue::from_str(&value).map_err(|_| {
            bad(
                &hfield,
                "the value is not a valid HTTP header value (no line breaks or control characters)",
            )
        })?;
        let lower = name.to_ascii_lowercase();
        if matches!(
            lower.as_str(),
            "content-type" | "content-length" | "idempotency-key" | "host"
        ) {
            return Err(bad(&hfield, "is set by scopewatch itself: remove it"));
        }
        headers.push((name.clone(), Secret::new(value)));
    }
    Ok(Destination::Webhook(WebhookTarget {
        origin: url_origin(&url),
        url: Secret::new(url),
        headers,
        timeout: timeout(d.timeout_secs, &format!("{field}.timeout_secs"))?,
    }))
}

/// `scheme://host[:port]` of a URL, without path, query or user info; what
/// may be logged of a webhook URL.
pub(crate) fn url_origin(url: &str) -> String {
    if url.starts_with("env:") {
        return url.to_string();
    }
    match url.parse::<ureq::http::Uri>() {
        Ok(u) => match (u.scheme_str(), u.host()) {
            (Some(s), Some(h)) => match u.port_u16() {
                Some(p) => format!("{s}://{h}:{p}"),
                None => format!("{s}://{h}"),
            },
            _ => "<invalid url>".to_string(),
        },
        Err(_) => "<invalid url>".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Delivery, String> {
        let file: DeliveryFile = toml::from_str(text).map_err(|e| e.to_string())?;
        file.validate().map_err(|e| e.to_string())
    }

    const FULL: &str = r#"
dashboard_url = "http://127.0.0.1:8080/"
[smtp]
host = "smtp.example.org"
port = 587
security = "starttls"
username = "scopewatch"
password = "hunter2-secret"
from = "scopewatch <alerts@example.org>"
timeout_secs = 10
[[destination]]
name = "secops-email"
type = "email"
to = ["secops@example.org", "On Call <oncall@example.org>"]
[[destination]]
name = "chat"
type = "webhook"
url = "https://chat.example.org/hooks/abc"
headers = { "Authorization" = "Bearer xyz-secret" }
[[route]]
min_severity = "high"
rules = ["*"]
destinations = ["secops-email", "chat"]
[[route]]
rules = ["token-after-revocation"]
destinations = ["chat"]
[digest]
below_severity = "medium"
interval_secs = 3600
[retry]
initial_backoff_secs = 1
max_backoff_secs = 300
max_attempts = 0
"#;

    #[test]
    fn full_example_validates() {
        let d = parse(FULL).unwrap();
        assert_eq!(d.dashboard_url.as_deref(), Some("http://127.0.0.1:8080"));
        assert_eq!(
            d.destination_names(),
            vec!["chat".to_string(), "secops-email".to_string()]
        );
        let smtp = d.smtp.as_ref().unwrap();
        assert_eq!(smtp.port, 587);
        assert_eq!(smtp.security, SmtpSecurity::StartTls);
        assert_eq!(smtp.from.email.to_string(), "alerts@example.org");
        assert_eq!(d.digest.unwrap().below_severity, Severity::Medium);
        assert!(d.goes_to_digest(Severity::Low));
        assert!(!d.goes_to_digest(Severity::Medium));
        // Secrets stay out of Debug output.
        let dbg = format!("{d:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(!dbg.contains("xyz-secret"), "{dbg}");
        assert!(!dbg.contains("/hooks/abc"), "{dbg}");
        let file: DeliveryFile = toml::from_str(FULL).unwrap();
        let dbg = format!("{file:?}");
        assert!(
            !dbg.contains("hunter2") && !dbg.contains("xyz-secret") && !dbg.contains("/hooks/abc"),
            "{dbg}"
        );
    }

    #[test]
    fn empty_config_delivers_nothing() {
        let d = parse("").unwrap();
        assert!(!d.is_enabled());
        assert!(d
            .destinations_for("any", Severity::Critical, &[])
            .is_empty());
        assert!(!DeliveryFile::default().validate().unwrap().is_enabled());
    }

    #[test]
    fn routing_merges_rule_and_routes_once() {
        let d = parse(FULL).unwrap();
        let own = vec!["chat".to_string()];
        assert_eq!(
            d.destinations_for("refresh-token-replay", Severity::High, &own),
            vec!["chat", "secops-email"]
        );
        assert_eq!(
            d.destinations_for("x", Severity::Medium, &[]),
            Vec::<String>::new()
        );
        assert_eq!(
            d.destinations_for("token-after-revocation", Severity::Low, &[]),
            vec!["chat"]
        );
        assert_eq!(
            d.destinations_for("x", Severity::Low, &["nope".to_string()]),
            Vec::<String>::new()
        );
    }

    #[test]
    fn unknown_field_is_refused() {
        let e = parse("[smtp]\nhost = \"h\"\nfrom = \"a@b.org\"\nhostname = \"x\"\n").unwrap_err();
        assert!(e.contains("unknown field `hostname`"), "{e}");
        let e = parse("[[destination]]\nname = \"c\"\ntype = \"webhook\"\nurl = \"https://x.org\"\nsecret = 1\n")
            .unwrap_err();
        assert!(e.contains("unknown field `secret`"), "{e}");
    }

    #[test]
    fn bad_severity_names_the_field() {
        let e = parse(
            "[[destination]]\nname = \"c\"\ntype = \"webhook\"\nurl = \"https://x.org/h\"\n[[route]]\nmin_severity = \"hgh\"\ndestinations = [\"c\"]\n",
        )
        .unwrap_err();
        assert!(e.starts_with("route[1].min_severity:"), "{e}");
        assert!(e.contains("`hgh` is not a severity"), "{e}");
        let e = parse("[digest]\nbelow_severity = \"urgent\"\n").unwrap_err();
        assert!(e.starts_with("digest.below_severity:"), "{e}");
        let e = parse("[digest]\nbelow_severity = \"low\"\n").unwrap_err();
        assert!(e.contains("no severity is below `low`"), "{e}");
    }

    #[test]
    fn route_to_undefined_destination_is_refused() {
        let e = parse("[[route]]\ndestinations = [\"pager\"]\n").unwrap_err();
        assert!(e.starts_with("route[1].destinations:"), "{e}");
        assert!(e.contains("destination `pager` is not defined"), "{e}");
    }

    #[test]
    fn email_destination_needs_smtp() {
        let e = parse("[[destination]]\nname = \"mail\"\ntype = \"email\"\nto = [\"a@b.org\"]\n")
            .unwrap_err();
        assert!(e.starts_with("destination[mail]:"), "{e}");
        assert!(e.contains("no [delivery.smtp]"), "{e}");
    }

    #[test]
    fn destination_checks() {
        let smtp = "[smtp]\nhost = \"localhost\"\nsecurity = \"none\"\nfrom = \"a@b.org\"\n";
        let e = parse(&format!(
            "{smtp}[[destination]]\nname = \"m\"\ntype = \"email\"\nto = [\"not an address\"]\n"
        ))
        .unwrap_err();
        assert!(e.starts_with("destination[m].to:"), "{e}");
        let e = parse(&format!("{smtp}[[destination]]\nname = \"m\"\ntype = \"email\"\nto = [\"a@b.org\"]\nurl = \"https://x\"\n"))
            .unwrap_err();
        assert!(e.starts_with("destination[m].url:"), "{e}");
        let e = parse("[[destination]]\nname = \"w\"\ntype = \"pager\"\n").unwrap_err();
        assert!(e.starts_with("destination[w].type:"), "{e}");
        let e =
            parse("[[destination]]\nname = \"w x\"\ntype = \"webhook\"\nurl = \"https://x.org\"\n")
                .unwrap_err();
        assert!(e.starts_with("destination[w x].name:"), "{e}");
        let e = parse(
            "[[destination]]\nname = \"w\"\ntype = \"webhook\"\nurl = \"https://x.org\"\n[[destination]]\nname = \"w\"\ntype = \"webhook\"\nurl = \"https://y.org\"\n",
        )
        .unwrap_err();
        assert!(e.contains("used twice"), "{e}");
        let e = parse("[[destination]]\nname = \"w\"\ntype = \"webhook\"\nurl = \"ftp://x.org/secret-path\"\n").unwrap_err();
        assert!(
            e.starts_with("destination[w].url:") && !e.contains("secret-path"),
            "{e}"
        );
        let e = parse("[[destination]]\nname = \"w\"\ntype = \"webhook\"\n").unwrap_err();
        assert!(e.contains("is missing"), "{e}");
    }

    #[test]
    fn env_references_are_read_and_reported() {
        // Names unique to this test: tests run in parallel in one process.
        let e = parse(
            "[[destination]]\nname = \"w\"\ntype = \"webhook\"\nurl = \"https://x.org/h\"\nheaders = { \"Authorization\" = \"env:SCOPEWATCH_TEST_UNSET_TOKEN_4711\" }\n",
        )
        .unwrap_err();
        assert!(
            e.starts_with("destination[w].headers.Authorization:"),
            "{e}"
        );
        assert!(
            e.contains("`SCOPEWATCH_TEST_UNSET_TOKEN_4711` is not set"),
            "{e}"
        );
        let e = parse(
            "[smtp]\nhost = \"smtp.example.org\"\nusername = \"u\"\npassword_env = \"SCOPEWATCH_TEST_UNSET_PW_4711\"\nfrom = \"a@b.org\"\n",
        )
        .unwrap_err();
        assert!(e.starts_with("smtp.password_env:"), "{e}");
        let d = parse("[[destination]]\nname = \"w\"\ntype = \"webhook\"\nurl = \"env:PATH\"\n");
        // PATH is not a URL: refused without echoing its value.
        let e = d.unwrap_err();
        assert!(
            e.starts_with("destination[w].url:") && !e.contains("/usr"),
            "{e}"
        );
    }

    #[test]
    fn smtp_checks() {
        let e =
            parse("[smtp]\nhost = \"mail.example.org\"\nsecurity = \"ssl\"\nfrom = \"a@b.org\"\n")
                .unwrap_err();
        assert!(e.starts_with("smtp.security:"), "{e}");
        let e =
            parse("[smtp]\nhost = \"mail.example.org\"\nusername = \"u\"\nfrom = \"a@b.org\"\n")
                .unwrap_err();
        assert!(e.starts_with("smtp.username:"), "{e}");
        let e = parse(
            "[smtp]\nhost = \"mail.example.org\"\nsecurity = \"none\"\nusername = \"u\"\npassword = \"pw-123\"\nfrom = \"a@b.org\"\n",
        )
        .unwrap_err();
        assert!(
            e.starts_with("smtp.security:") && !e.contains("pw-123"),
            "{e}"
        );
        let e = parse(
            "[smtp]\nhost = \"mail.example.org\"\nusername = \"u\"\npassword = \"p\"\npassword_env = \"X\"\nfrom = \"a@b.org\"\n",
        )
        .unwrap_err();
        assert!(e.contains("keep only `password_env`"), "{e}");
        let e = parse("[smtp]\nhost = \"mail.example.org\"\nfrom = \"nobody\"\n").unwrap_err();
        assert!(e.starts_with("smtp.from:"), "{e}");
        let e = parse("[smtp]\nhost = \"mail.example.org:25\"\nfrom = \"a@b.org\"\n").unwrap_err();
        assert!(e.starts_with("smtp.host:"), "{e}");
        let d =
            parse("[smtp]\nhost = \"mail.example.org\"\nsecurity = \"tls\"\nfrom = \"a@b.org\"\n")
                .unwrap();
        assert_eq!(d.smtp.unwrap().port, 465);
    }

    #[test]
    fn retry_checks_and_backoff() {
        let e = parse("[retry]\ninitial_backoff_secs = 0\n").unwrap_err();
        assert!(e.starts_with("retry.initial_backoff_secs:"), "{e}");
        let e = parse("[retry]\ninitial_backoff_secs = 10\nmax_backoff_secs = 5\n").unwrap_err();
        assert!(e.starts_with("retry.max_backoff_secs:"), "{e}");
        let p =
            parse("[retry]\ninitial_backoff_secs = 2\nmax_backoff_secs = 30\nmax_attempts = 3\n")
                .unwrap()
                .retry;
        let secs: Vec<u64> = (1..=6).map(|n| p.backoff(n).as_secs()).collect();
        assert_eq!(secs, vec![2, 4, 8, 16, 30, 30]);
        assert_eq!(p.backoff(200).as_secs(), 30);
        assert!(!p.gives_up_after(2) && p.gives_up_after(3));
        assert!(!RetryPolicy::default().gives_up_after(u32::MAX));
    }

    #[test]
    fn origin_hides_path_and_user() {
        assert_eq!(
            url_origin("https://hooks.example.org/services/T0/B0/XXXX"),
            "https://hooks.example.org"
        );
        assert_eq!(
            url_origin("http://127.0.0.1:9000/h?token=abc"),
            "http://127.0.0.1:9000"
        );
        assert_eq!(url_origin("https://user:pw@x.org/"), "https://x.org");
    }
}
