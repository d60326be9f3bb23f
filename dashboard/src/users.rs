//! Dashboard users: `<data>/dashboard/users.json`, argon2id password
//! hashes, roles, tenant limits and API tokens (stored as SHA-256 only).
//!
//! The file is the truth: every change re-reads it, applies the change and
//! writes it whole (aside, fsynced, renamed, mode 0600), so `scopewatch user
//! ...` run beside a live server is seen by the server on its next request.

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use argon2::password_hash::{PasswordHash, SaltString};
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::audit::now_rfc3339;
use crate::error::{DashboardError, Result};

/// What a user is for; permissions follow from roles (see `auth::role_grants`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Security,
    Compliance,
    ProductOwner,
    Viewer,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Security,
        Role::Compliance,
        Role::ProductOwner,
        Role::Viewer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Security => "security",
            Role::Compliance => "compliance",
            Role::ProductOwner => "product_owner",
            Role::Viewer => "viewer",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = DashboardError;
    fn from_str(s: &str) -> Result<Self> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s || (s == "product-owner" && *r == Role::ProductOwner))
            .ok_or_else(|| {
                DashboardError::InvalidUser(format!(
                    "role {s:?}: use admin, security, compliance, product_owner or viewer"
                ))
            })
    }
}

/// An API token as stored: its hash, never the token.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    /// Short public id, for listing and revoking.
    pub id: String,
    pub label: String,
    /// Hex SHA-256 of the whole token. A fast hash is enough: the token is
    /// 256 random bits, not a human password.
    pub sha256: String,
    pub created: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub username: String,
    /// PHC string of an argon2id hash.
    pub password_hash: String,
    pub roles: Vec<Role>,
    /// Tenants this user may see; empty = all tenants.
    #[serde(default)]
    pub tenants: Vec<String>,
    /// client_ids a product owner owns.
    #[serde(default)]
    pub owned_apps: Vec<String>,
    #[serde(default)]
    pub disabled: bool,
    #[serde(default)]
    pub must_change_password: bool,
    #[serde(default)]
    pub api_tokens: Vec<ApiToken>,
    pub created: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    version: u32,
    users: Vec<User>,
}

/// A new user, before validation.
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    pub username: String,
    pub roles: Vec<Role>,
    pub tenants: Vec<String>,
    pub owned_apps: Vec<String>,
}

/// The admin the first run created, with its one-time password to print.
#[derive(Debug, Clone)]
pub struct InitialAdmin {
    pub username: String,
    pub password: String,
}

pub const MIN_PASSWORD_CHARS: usize = 12;
const MAX_PASSWORD_BYTES: usize = 1024;
/// Prefix of API tokens, so a leaked one is recognisable in a secret scan.
pub const TOKEN_PREFIX: &str = "swt_";

pub fn validate_username(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-@".contains(c));
    if ok {
        Ok(())
    } else {
        Err(DashboardError::InvalidUser(format!(
            "username {name:?}: 1-64 characters of a-z 0-9 . _ - @, starting with a letter or digit"
        )))
    }
}

/// The password policy: length, not the username. Returns a message for
/// the user when it fails.
pub fn check_password_policy(username: &str, password: &str) -> std::result::Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!(
            "The password must have at least {MIN_PASSWORD_CHARS} characters."
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err("The password is too long.".into());
    }
    if password.eq_ignore_ascii_case(username) {
        return Err("The password must not be the username.".into());
    }
    Ok(())
}

fn validate_names(what: &str, names: &[String]) -> Result<()> {
    for n in names {
        if n.trim().is_empty() || n.len() > 200 || n.chars().any(char::is_control) {
            return Err(DashboardError::InvalidUser(format!(
                "{what} {n:?} is not a valid name"
            )));
        }
    }
    Ok(())
}

/// Argon2id with the crate's defaults (19 MiB, 2 passes): OWASP's
/// recommended minimum, ~20-50 ms here. Blocking: call off async threads.
pub fn hash_password(password: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| DashboardError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| DashboardError::Hash(e.to_string()))
}

/// Blocking, like [`hash_password`]. A malformed stored hash verifies nothing.
pub fn verify_password(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A one-time password: 20 characters without look-alikes (~115 bits).
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..20)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

pub fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// (mtime, length) of the users file when last read.
type Stamp = Option<(SystemTime, u64)>;

#[derive(Debug)]
struct Cache {
    users: Vec<User>,
    /// To notice changes made by the CLI.
    stamp: Stamp,
    checked: Instant,
}

/// The user file and an in-memory copy, refreshed when the file changes.
#[derive(Debug)]
pub struct UserStore {
    path: PathBuf,
    cache: Mutex<Cache>,
}

/// How often a lookup may stat the file to see whether the CLI changed it.
const RECHECK: Duration = Duration::from_secs(1);

impl UserStore {
    /// Opens `<dir>/users.json`; when there is none, creates it with an
    /// `admin` whose one-time password is returned (to print once).
    pub fn open(dir: &Path) -> Result<(UserStore, Option<InitialAdmin>)> {
        ensure_private_dir(dir)?;
        let path = dir.join("users.json");
        let store = UserStore {
            path: path.clone(),
            cache: Mutex::new(Cache {
                users: Vec::new(),
                stamp: None,
                checked: Instant::now(),
            }),
        };
        if path.exists() {
            store.reload()?;
            return Ok((store, None));
        }
        let password = generate_password();
        let admin = User {
            username: "admin".into(),
            password_hash: hash_password(&password)?,
            roles: vec![Role::Admin],
            tenants: Vec::new(),
            owned_apps: Vec::new(),
            disabled: false,
            must_change_password: true,
            api_tokens: Vec::new(),
            created: now_rfc3339(),
        };
        store.write(vec![admin])?;
        Ok((
            store,
            Some(InitialAdmin {
                username: "admin".into(),
                password,
            }),
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read_file(&self) -> Result<(Vec<User>, Stamp)> {
        let bytes = fs::read(&self.path).map_err(|e| DashboardError::io(&self.path, e))?;
        let file: UsersFile =
            serde_json::from_slice(&bytes).map_err(|e| DashboardError::UsersFile {
                path: self.path.clone(),
                source: e,
            })?;
        Ok((file.users, stamp(&self.path)))
    }

    fn reload(&self) -> Result<()> {
        let (users, stamp) = self.read_file()?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.users = users;
        cache.stamp = stamp;
        cache.checked = Instant::now();
        Ok(())
    }

    /// The users, re-read when the file changed (checked at most once a second).
    fn snapshot(&self) -> Vec<User> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.checked.elapsed() >= RECHECK {
            cache.checked = Instant::now();
            let now = stamp(&self.path);
            if now != cache.stamp {
                drop(cache);
                if let Err(err) = self.reload() {
                    // Keep serving the last good copy; a half-edited file
                    // must not lock everyone out.
                    tracing::error!(error = %err, "users file changed but cannot be read");
                }
                return self
                    .cache
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .users
                    .clone();
            }
        }
        cache.users.clone()
    }

    pub fn get(&self, username: &str) -> Option<User> {
        self.snapshot().into_iter().find(|u| u.username == username)
    }

    pub fn list(&self) -> Vec<User> {
        let mut users = self.snapshot();
        users.sort_by(|a, b| a.username.cmp(&b.username));
        users
    }

    /// The enabled user an API token belongs to.
    pub fn user_for_token(&self, token: &str) -> Option<User> {
        if !token.starts_with(TOKEN_PREFIX) {
            return None;
        }
        let digest = token_sha256(token);
        self.snapshot()
            .into_iter()
            .find(|u| !u.disabled && u.api_tokens.iter().any(|t| t.sha256 == digest))
    }

    /// Re-reads the file, applies `change` and writes it back whole.
    fn update<T>(&self, change: impl FnOnce(&mut Vec<User>) -> Result<T>) -> Result<T> {
        let (mut users, _) = self.read_file()?;
        let out = change(&mut users)?;
        self.write(users)?;
        Ok(out)
    }

    fn write(&self, users: Vec<User>) -> Result<()> {
        let file = UsersFile { version: 1, users };
        let mut bytes =
            serde_json::to_vec_pretty(&file).map_err(|e| DashboardError::UsersFile {
                path: self.path.clone(),
                source: e,
            })?;
        bytes.push(b'\n');
        write_private_atomic(&self.path, &bytes)?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.users = file.users;
        cache.stamp = stamp(&self.path);
        cache.checked = Instant::now();
        Ok(())
    }

    /// Adds a user with a one-time password (returned) to change at first login.
    pub fn add(&self, new: NewUser) -> Result<String> {
        validate_username(&new.username)?;
        if new.roles.is_empty() {
            return Err(DashboardError::InvalidUser("give at least one role".into()));
        }
        validate_names("tenant", &new.tenants)?;
        validate_names("app", &new.owned_apps)?;
        let password = generate_password();
        let hash = hash_password(&password)?;
        let dedup = |v: Vec<String>| -> Vec<String> {
            v.into_iter().collect::<BTreeSet<_>>().into_iter().collect()
        };
        let user = User {
            username: new.username.clone(),
            password_hash: hash,
            roles: new
                .roles
                .into_iter()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            tenants: dedup(new.tenants),
            owned_apps: dedup(new.owned_apps),
            disabled: false,
            must_change_password: true,
            api_tokens: Vec::new(),
            created: now_rfc3339(),
        };
        self.update(|users| {
            if users.iter().any(|u| u.username == user.username) {
                return Err(DashboardError::UserExists(user.username.clone()));
            }
            users.push(user);
            Ok(())
        })?;
        Ok(password)
    }

    fn modify(&self, username: &str, f: impl FnOnce(&mut User)) -> Result<()> {
        self.update(|users| {
            let user = users
                .iter_mut()
                .find(|u| u.username == username)
                .ok_or_else(|| DashboardError::NoSuchUser(username.to_string()))?;
            f(user);
            Ok(())
        })
    }

    /// A new one-time password (returned); also re-enables the user, since
    /// a reset is how an admin lets someone back in.
    pub fn reset(&self, username: &str) -> Result<String> {
        let password = generate_password();
        let hash = hash_password(&password)?;
        self.modify(username, |u| {
            u.password_hash = hash;
            u.must_change_password = true;
            u.disabled = false;
        })?;
        Ok(password)
    }

    /// Disables the user; their sessions and API tokens stop working.
    pub fn disable(&self, username: &str) -> Result<()> {
        self.modify(username, |u| u.disabled = true)
    }

    /// Sets a password the user chose (policy checked by the caller).
    pub fn set_password(&self, username: &str, password: &str, must_change: bool) -> Result<()> {
        let hash = hash_password(password)?;
        self.modify(username, |u| {
            u.password_hash = hash;
            u.must_change_password = must_change;
        })
    }

    /// A new API token for the user, returned once; only its hash is kept.
    pub fn create_token(&self, username: &str, label: &str) -> Result<(String, String)> {
        let label = label.trim();
        if label.len() > 100 || label.chars().any(char::is_control) {
            return Err(DashboardError::InvalidUser(
                "token label: at most 100 plain characters".into(),
            ));
        }
        let token = format!("{TOKEN_PREFIX}{}", random_hex(32));
        let id = random_hex(4);
        let stored = ApiToken {
            id: id.clone(),
            label: if label.is_empty() {
                "api".into()
            } else {
                label.into()
            },
            sha256: token_sha256(&token),
            created: now_rfc3339(),
        };
        self.modify(username, |u| u.api_tokens.push(stored))?;
        Ok((id, token))
    }

    pub fn revoke_token(&self, username: &str, id: &str) -> Result<()> {
        self.modify(username, |u| u.api_tokens.retain(|t| t.id != id))
    }
}

fn stamp(path: &Path) -> Stamp {
    let meta = fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Creates `dir` (mode 0700) if needed: it holds hashes and the audit trail.
pub(crate) fn ensure_private_dir(dir: &Path) -> Result<()> {
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| DashboardError::io(dir, e))?;
    }
    Ok(())
}

/// Writes `bytes` to `path` whole or not at all, readable by the owner only.
pub(crate) fn write_private_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        random_hex(6)
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        // The mode survives the rename; set it again in case umask or an
        // older file widened it.
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| DashboardError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_and_roles_are_validated() {
        assert!(validate_username("alice.smith").is_ok());
        assert!(validate_username("").is_err());
        assert!(validate_username("Alice").is_err());
        assert!(validate_username("a b").is_err());
        assert!(validate_username("<script>").is_err());
        assert_eq!("product_owner".parse::<Role>().unwrap(), Role::ProductOwner);
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn password_policy() {
        assert!(check_password_policy("bob", "short").is_err());
        assert!(check_password_policy("bobbobbobbob", "BOBBOBBOBBOB").is_err());
        assert!(check_password_policy("bob", "a long enough passphrase").is_ok());
    }

    #[test]
    fn hashes_verify_and_generated_passwords_differ() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("x", "not a hash"));
        assert_ne!(generate_password(), generate_password());
    }
}
