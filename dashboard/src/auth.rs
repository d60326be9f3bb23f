//! Who may do what: permissions, the role table, the logged-in user as an
//! extractor, server-side sessions and the login rate limiter.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::users::{Role, User};

/// Everything a handler may need to check. Pages check one permission,
/// then filter what they show with [`CurrentUser::sees_tenant`] and
/// [`CurrentUser::sees_app`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Overview, apps, tenants, scope matrices (read only, within tenant limits).
    ViewData,
    ViewAlerts,
    /// Acknowledge, resolve, mark false positive.
    ManageAlerts,
    ViewIncidents,
    ManageIncidents,
    /// Read and download reports.
    ViewReports,
    ViewRecertification,
    /// Record keep / narrow / revoke decisions and run campaigns.
    Recertify,
    /// Propose changes to apps one owns (narrow scopes).
    ManageOwnApps,
    ManageUsers,
    ViewAudit,
    ViewMetrics,
}

/// THE role table: which permissions each role grants. A user with several
/// roles has the union. Product owners see only apps they own
/// ([`CurrentUser::sees_app`]); tenant limits apply to every role.
///
/// | permission          | admin | security | compliance | product_owner | viewer |
/// |---------------------|:-----:|:--------:|:----------:|:-------------:|:------:|
/// | ViewData            |   x   |    x     |     x      |  x (own apps) |   x    |
/// | ViewAlerts          |   x   |    x     |     x      |               |   x    |
/// | ManageAlerts        |   x   |    x     |            |               |        |
/// | ViewIncidents       |   x   |    x     |            |               |   x    |
/// | ManageIncidents     |   x   |    x     |            |               |        |
/// | ViewReports         |   x   |          |     x      |               |   x    |
/// | ViewRecertification |   x   |          |     x      |               |   x    |
/// | Recertify           |   x   |          |     x      |               |        |
/// | ManageOwnApps       |   x   |          |            |       x       |        |
/// | ManageUsers         |   x   |          |            |               |        |
/// | ViewAudit           |   x   |          |            |               |        |
/// | ViewMetrics         |   x   |          |            |               |        |
pub fn role_grants(role: Role, permission: Permission) -> bool {
    use Permission::*;
    match role {
        Role::Admin => true,
        Role::Security => matches!(
            permission,
            ViewData | ViewAlerts | ManageAlerts | ViewIncidents | ManageIncidents
        ),
        Role::Compliance => matches!(
            permission,
            ViewData | ViewAlerts | ViewReports | ViewRecertification | Recertify
        ),
        Role::ProductOwner => matches!(permission, ViewData | ManageOwnApps),
        Role::Viewer => matches!(
            permission,
            ViewData | ViewAlerts | ViewIncidents | ViewReports | ViewRecertification
        ),
    }
}

/// How the request proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    Session,
    Token,
}

/// The logged-in user of this request, built fresh from the users file on
/// every request (so disabling or a role change takes effect at once).
/// Take it as a handler argument; it answers 401 when nobody is logged in
/// (the auth middleware has already redirected browsers to /login).
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub username: String,
    pub roles: Vec<Role>,
    tenants: Vec<String>,
    owned_apps: Vec<String>,
    pub method: AuthMethod,
    /// The session's CSRF token, for forms; `None` for API tokens.
    pub csrf: Option<String>,
    pub must_change_password: bool,
    /// The client address, for the audit trail.
    pub ip: String,
}

impl CurrentUser {
    pub(crate) fn from_user(
        user: &User,
        method: AuthMethod,
        csrf: Option<String>,
        ip: String,
    ) -> Self {
        Self {
            username: user.username.clone(),
            roles: user.roles.clone(),
            tenants: user.tenants.clone(),
            owned_apps: user.owned_apps.clone(),
            method,
            csrf,
            must_change_password: user.must_change_password,
            ip,
        }
    }

    pub fn can(&self, permission: Permission) -> bool {
        self.roles.iter().any(|r| role_grants(*r, permission))
    }

    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Whether anything of `tenant` may be shown to this user.
    pub fn sees_tenant(&self, tenant: &str) -> bool {
        self.tenants.is_empty() || self.tenants.iter().any(|t| t == tenant)
    }

    /// The tenants to restrict every query and export to; `None` = all.
    pub fn tenant_filter(&self) -> Option<&[String]> {
        if self.tenants.is_empty() {
            None
        } else {
            Some(&self.tenants)
        }
    }

    /// Whether the app may be shown: everyone but a pure product owner sees
    /// every app (within tenant limits); a product owner sees their own.
    pub fn sees_app(&self, client_id: &str) -> bool {
        self.sees_every_app() || self.owned_apps.iter().any(|a| a == client_id)
    }

    /// Whether this user sees every app (has a role besides product owner).
    pub fn sees_every_app(&self) -> bool {
        self.roles.iter().any(|r| *r != Role::ProductOwner)
    }

    pub fn owned_apps(&self) -> &[String] {
        &self.owned_apps
    }

    /// `Ok` when allowed, else [`Forbidden`] (a 403); in a handler
    /// returning `Result<_, AppError>`, write `user.require(p)?`.
    pub fn require(&self, permission: Permission) -> Result<(), Forbidden> {
        if self.can(permission) {
            Ok(())
        } else {
            Err(Forbidden)
        }
    }
}

/// The user lacks a permission: answered with 403.
#[derive(Debug, Clone, Copy)]
pub struct Forbidden;

impl IntoResponse for Forbidden {
    fn into_response(self) -> Response {
        (
            StatusCode::FORBIDDEN,
            "Forbidden: your role does not allow this.\n",
        )
            .into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CurrentUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<CurrentUser>()
            .cloned()
            .ok_or_else(|| (StatusCode::UNAUTHORIZED, "Login required.\n").into_response())
    }
}

/// Constant-time comparison, for CSRF tokens.
pub(crate) fn ct_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Debug, Clone)]
struct Session {
    username: String,
    csrf: String,
    created: Instant,
    last_seen: Instant,
}

/// Server-side sessions keyed by a random 256-bit id (the cookie value).
/// In memory: a restart logs everyone out, which is acceptable here.
#[derive(Debug)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    idle: Duration,
    absolute: Duration,
}

impl Sessions {
    pub fn new(idle: Duration, absolute: Duration) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            idle,
            absolute,
        }
    }

    fn live(&self, s: &Session, now: Instant) -> bool {
        now.duration_since(s.last_seen) < self.idle && now.duration_since(s.created) < self.absolute
    }

    /// A new session; returns (session id, CSRF token).
    pub fn create(&self, username: &str) -> (String, String) {
        let id = crate::users::random_hex(32);
        let csrf = crate::users::random_hex(32);
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, s| self.live(s, now));
        map.insert(
            id.clone(),
            Session {
                username: username.to_string(),
                csrf: csrf.clone(),
                created: now,
                last_seen: now,
            },
        );
        (id, csrf)
    }

    /// The (username, CSRF token) of a live session, marking it used.
    pub fn touch(&self, id: &str) -> Option<(String, String)> {
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let session = map.get_mut(id)?;
        if !self.live(session, now) {
            map.remove(id);
            return None;
        }
        session.last_seen = now;
        Some((session.username.clone(), session.csrf.clone()))
    }

    pub fn remove(&self, id: &str) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// Ends the user's sessions, except `keep` (after a password change).
    pub fn remove_user(&self, username: &str, keep: Option<&str>) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|id, s| s.username != username || Some(id.as_str()) == keep);
    }

    #[cfg(test)]
    fn age(&self, id: &str, by: Duration) {
        let mut map = self.map.lock().unwrap();
        let s = map.get_mut(id).unwrap();
        s.last_seen -= by;
        s.created -= by;
    }
}

/// Failed logins per key (`user:NAME`, `ip:ADDR`) in a sliding window.
#[derive(Debug)]
pub struct LoginLimiter {
    max: u32,
    window: Duration,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

/// Past this many keys, stale ones are dropped before adding another, so a
/// spray of made-up usernames cannot grow memory without bound.
const MAX_KEYS: usize = 100_000;

impl LoginLimiter {
    pub fn new(max: u32, window: Duration) -> Self {
        Self {
            max,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Whether any of the keys has had `max` failures within the window.
    pub fn blocked(&self, keys: &[String]) -> bool {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        keys.iter().any(|k| match map.get_mut(k) {
            Some(q) => {
                while q
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= self.window)
                {
                    q.pop_front();
                }
                q.len() >= self.max as usize
            }
            None => false,
        })
    }

    pub fn fail(&self, keys: &[String]) {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_KEYS {
            map.retain(|_, q| {
                q.back()
                    .is_some_and(|t| now.duration_since(*t) < self.window)
            });
        }
        for k in keys {
            let q = map.entry(k.clone()).or_default();
            q.push_back(now);
            // Only the newest `max` matter.
            while q.len() > self.max as usize {
                q.pop_front();
            }
        }
    }

    pub fn clear(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(roles: Vec<Role>, tenants: Vec<&str>, apps: Vec<&str>) -> CurrentUser {
        CurrentUser {
            username: "u".into(),
            roles,
            tenants: tenants.into_iter().map(String::from).collect(),
            owned_apps: apps.into_iter().map(String::from).collect(),
            method: AuthMethod::Session,
            csrf: None,
            must_change_password: false,
            ip: "-".into(),
        }
    }

    #[test]
    fn role_table() {
        let viewer = user(vec![Role::Viewer], vec![], vec![]);
        assert!(viewer.can(Permission::ViewData));
        assert!(!viewer.can(Permission::ManageAlerts));
        assert!(!viewer.can(Permission::Recertify));
        assert!(!viewer.can(Permission::ManageUsers));
        let sec = user(vec![Role::Security], vec![], vec![]);
        assert!(sec.can(Permission::ManageAlerts) && !sec.can(Permission::Recertify));
        let comp = user(vec![Role::Compliance], vec![], vec![]);
        assert!(comp.can(Permission::Recertify) && !comp.can(Permission::ManageAlerts));
        let admin = user(vec![Role::Admin], vec![], vec![]);
        assert!(admin.can(Permission::ManageUsers) && admin.can(Permission::ViewAudit));
        let both = user(vec![Role::Security, Role::Compliance], vec![], vec![]);
        assert!(both.can(Permission::ManageAlerts) && both.can(Permission::Recertify));
    }

    #[test]
    fn tenant_and_app_limits() {
        let all = user(vec![Role::Viewer], vec![], vec![]);
        assert!(all.sees_tenant("x") && all.tenant_filter().is_none());
        let one = user(vec![Role::Viewer], vec!["north"], vec![]);
        assert!(one.sees_tenant("north") && !one.sees_tenant("south"));
        assert_eq!(one.tenant_filter().unwrap(), ["north".to_string()]);
        let po = user(vec![Role::ProductOwner], vec![], vec!["app-a"]);
        assert!(po.sees_app("app-a") && !po.sees_app("app-b"));
        assert!(all.sees_app("app-b"));
    }

    #[test]
    fn sessions_expire_when_idle() {
        let s = Sessions::new(Duration::from_secs(60), Duration::from_secs(600));
        let (id, csrf) = s.create("alice");
        assert_eq!(s.touch(&id), Some(("alice".into(), csrf)));
        s.age(&id, Duration::from_secs(61));
        assert_eq!(s.touch(&id), None);
        assert_eq!(s.touch("nope"), None);
    }

    #[test]
    fn limiter_blocks_after_max_failures() {
        let l = LoginLimiter::new(3, Duration::from_secs(60));
        let keys = vec!["user:a".to_string(), "ip:1".to_string()];
        for _ in 0..3 {
            assert!(!l.blocked(&keys));
            l.fail(&keys);
        }
        assert!(l.blocked(&keys));
        assert!(l.blocked(&["ip:1".to_string()]));
        l.clear("user:a");
        assert!(!l.blocked(&["user:a".to_string()]));
    }

    #[test]
    fn constant_time_eq() {
        assert!(ct_eq("abc", "abc"));
        assert!(!ct_eq("abc", "abd"));
        assert!(!ct_eq("abc", "ab"));
    }
}
