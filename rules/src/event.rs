//! One event of either stream as rules see it: every column by name, plus
//! the fields derived from the app registry (`app_status`,
//! `unapproved_scopes`). Rules never name a column the model does not have:
//! the rule file is checked against [`FIELDS`] when it is loaded.

use std::borrow::Cow;

use scopewatch_model::events::{AccessEvent, AuthEvent, Timestamp};
use scopewatch_model::registry::Registry;
use scopewatch_model::scope::Scope;
use serde::{Deserialize, Serialize};

/// An event of the lake, of either stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "stream", rename_all = "lowercase")]
pub enum Event {
    Auth(AuthEvent),
    Access(AccessEvent),
}

/// A field's value on one event.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Missing,
    Text(Cow<'a, str>),
    /// A list column (scopes); matches when any element matches.
    List(Vec<Cow<'a, str>>),
    Time(Timestamp),
}

impl Value<'_> {
    /// The values a `distinct` or `new_value` rule counts: each element of a
    /// list, the text of anything else, nothing when missing.
    pub fn items(&self) -> Vec<String> {
        match self {
            Value::Missing => Vec::new(),
            Value::Text(t) => vec![t.to_string()],
            Value::List(l) => l.iter().map(|s| s.to_string()).collect(),
            Value::Time(t) => vec![t.to_string()],
        }
    }

    /// One text for a group key: a list joins its elements with spaces.
    pub fn as_key(&self) -> Option<String> {
        match self {
            Value::Missing => None,
            Value::Text(t) => Some(t.to_string()),
            Value::List(l) => Some(l.join(" ")),
            Value::Time(t) => Some(t.to_string()),
        }
    }
}

/// Fields a rule may name, with the streams that have them. Derived fields
/// need the app registry (without one they are missing).
pub const FIELDS: &[(&str, &str)] = &[
    ("stream", "both: `auth` or `access`"),
    ("event_id", "both"),
    ("ts", "both"),
    ("tenant", "both"),
    ("env", "both"),
    ("client_id", "both"),
    ("app_version", "both"),
    ("user", "both (pseudonym)"),
    ("patient", "both (pseudonym)"),
    ("token_id", "both"),
    ("expires_at", "both: expiry of `token_id`"),
    ("ip", "both"),
    ("user_agent", "both"),
    ("outcome", "both"),
    ("source", "both"),
    ("kind", "auth"),
    ("error", "auth"),
    ("session_id", "auth"),
    ("encounter", "auth (pseudonym)"),
    ("scopes_requested", "auth (list)"),
    ("scopes_granted", "auth (list)"),
    ("grant_type", "auth"),
    ("refresh_token_id", "auth"),
    ("parent_token_id", "auth"),
    ("token_tenant", "access: tenant that issued the token"),
    ("method", "access"),
    ("path", "access (pseudonymised)"),
    ("interaction", "access"),
    ("resource_type", "access"),
    ("compartment", "access"),
    ("required", "access"),
    ("granted_covered", "access"),
    ("status", "access"),
    (
        "app_status",
        "derived: the registry status of `client_id` on the event's day: active, suspended, revoked or unregistered",
    ),
    (
        "unapproved_scopes",
        "derived (auth, list): granted scopes the registry does not approve for the app and tenant",
    ),
];

/// Whether `name` is a field rules may use.
pub fn is_field(name: &str) -> bool {
    FIELDS.iter().any(|(f, _)| *f == name)
}

fn text<'a>(v: &'a Option<String>) -> Value<'a> {
    match v {
        Some(s) => Value::Text(Cow::Borrowed(s)),
        None => Value::Missing,
    }
}

fn list<'a>(v: &'a Option<Vec<String>>) -> Value<'a> {
    match v {
        Some(l) => Value::List(l.iter().map(|s| Cow::Borrowed(s.as_str())).collect()),
        None => Value::Missing,
    }
}

fn owned<'a>(s: impl ToString) -> Value<'a> {
    Value::Text(Cow::Owned(s.to_string()))
}

/// A borrowed text: no allocation on the path every rule takes per event.
fn borrowed(s: &str) -> Value<'_> {
    Value::Text(Cow::Borrowed(s))
}

impl Event {
    pub fn ts(&self) -> Timestamp {
        match self {
            Event::Auth(e) => e.ts,
            Event::Access(e) => e.ts,
        }
    }

    pub fn event_id(&self) -> &str {
        match self {
            Event::Auth(e) => &e.event_id,
            Event::Access(e) => &e.event_id,
        }
    }

    pub fn source(&self) -> &str {
        match self {
            Event::Auth(e) => &e.source,
            Event::Access(e) => &e.source,
        }
    }

    /// The order both streaming and backtest process events in.
    pub fn order_key(&self) -> (Timestamp, &str) {
        (self.ts(), self.event_id())
    }

    /// The value of field `name` (see [`FIELDS`]).
    pub fn field<'a>(&'a self, name: &str, registry: Option<&Registry>) -> Value<'a> {
        match name {
            "stream" => {
                return borrowed(match self {
                    Event::Auth(_) => "auth",
                    Event::Access(_) => "access",
                })
            }
            "ts" => return Value::Time(self.ts()),
            "app_status" => return self.app_status(registry),
            "unapproved_scopes" => return self.unapproved_scopes(registry),
            _ => {}
        }
        match self {
            Event::Auth(e) => match name {
                "event_id" => borrowed(&e.event_id),
                "tenant" => Value::Text(Cow::Borrowed(&e.tenant)),
                "env" => borrowed(e.env.as_str()),
                "kind" => borrowed(e.kind.as_str()),
                "outcome" => borrowed(e.outcome.as_str()),
                "error" => text(&e.error),
                "client_id" => text(&e.client_id),
                "app_version" => text(&e.app_version),
                "user" => text(&e.user),
                "session_id" => text(&e.session_id),
                "patient" => text(&e.patient),
                "encounter" => text(&e.encounter),
                "scopes_requested" => list(&e.scopes_requested),
                "scopes_granted" => list(&e.scopes_granted),
                "grant_type" => text(&e.grant_type),
                "token_id" => text(&e.token_id),
                "refresh_token_id" => text(&e.refresh_token_id),
                "parent_token_id" => text(&e.parent_token_id),
                "expires_at" => e.expires_at.map_or(Value::Missing, Value::Time),
                "ip" => text(&e.ip),
                "user_agent" => text(&e.user_agent),
                "source" => Value::Text(Cow::Borrowed(&e.source)),
                _ => Value::Missing,
            },
            Event::Access(e) => match name {
                "event_id" => borrowed(&e.event_id),
                "tenant" => Value::Text(Cow::Borrowed(&e.tenant)),
                "env" => borrowed(e.env.as_str()),
                "client_id" => text(&e.client_id),
                "app_version" => text(&e.app_version),
                "user" => text(&e.user),
                "token_id" => text(&e.token_id),
                "expires_at" => e.expires_at.map_or(Value::Missing, Value::Time),
                "token_tenant" => text(&e.token_tenant),
                "method" => Value::Text(Cow::Borrowed(&e.method)),
                "path" => Value::Text(Cow::Borrowed(&e.path)),
                "interaction" => e
                    .interaction
                    .map_or(Value::Missing, |i| borrowed(i.as_str())),
                "resource_type" => text(&e.resource_type),
                "compartment" => text(&e.compartment),
                "patient" => text(&e.patient),
                "required" => text(&e.required),
                "granted_covered" => e.granted_covered.map_or(Value::Missing, owned),
                "status" => e.status.map_or(Value::Missing, owned),
                "outcome" => borrowed(e.outcome.as_str()),
                "ip" => text(&e.ip),
                "user_agent" => text(&e.user_agent),
                "source" => Value::Text(Cow::Borrowed(&e.source)),
                _ => Value::Missing,
            },
        }
    }

    fn client_id(&self) -> Option<&str> {
        match self {
            Event::Auth(e) => e.client_id.as_deref(),
            Event::Access(e) => e.client_id.as_deref(),
        }
    }

    fn tenant(&self) -> &str {
        match self {
            Event::Auth(e) => &e.tenant,
            Event::Access(e) => &e.tenant,
        }
    }

    fn app_status<'a>(&self, registry: Option<&Registry>) -> Value<'a> {
        let (Some(registry), Some(client)) = (registry, self.client_id()) else {
            return Value::Missing;
        };
        let Some(app) = registry.app(client) else {
            return borrowed("unregistered");
        };
        let day = self.ts().to_offset_datetime().date();
        if app.is_callable(day) {
            borrowed("active")
        } else {
            borrowed(app.status.as_str())
        }
    }

    fn unapproved_scopes<'a>(&'a self, registry: Option<&Registry>) -> Value<'a> {
        let Event::Auth(e) = self else {
            return Value::Missing;
        };
        let (Some(registry), Some(client), Some(granted)) =
            (registry, e.client_id.as_deref(), e.scopes_granted.as_ref())
        else {
            return Value::Missing;
        };
        let Some(app) = registry.app(client) else {
            return Value::Missing;
        };
        let tenant = self.tenant();
        Value::List(
            granted
                .iter()
                .filter(|s| !app.approves(tenant, &Scope::parse(s)))
                .map(|s| Cow::Borrowed(s.as_str()))
                .collect(),
        )
    }
}
