//! The scope matrix: for every app and tenant over a window, each scope
//! with what the registry approved, what the app requested and was granted,
//! what its calls used, and a classification; the least-privilege
//! suggestion; drift across versions; staleness; and the scope-creep score.
//!
//! The lake gives the facts (named SQL in `analytics/sql/`, every user
//! filter bound as a parameter); which granted scope covers which call is
//! decided here with `model`'s scope algebra, so it is the same judgement as
//! everywhere else in scopewatch.

use std::collections::{BTreeMap, BTreeSet};

use duckdb::params;
use serde::Serialize;
use time::{Date, OffsetDateTime};

use scopewatch_model::registry::{scope_approved, Registry};
use scopewatch_model::scope::{covers, minimise, Required, Scope};

use crate::{duck, AnalyticsError, Lake};

const GRANTS_SQL: &str = include_str!("../sql/grants.sql");
const USAGE_SQL: &str = include_str!("../sql/usage.sql");
const ACTIVITY_SQL: &str = include_str!("../sql/activity.sql");
const SCOPE_USAGE_SQL: &str = include_str!("../sql/scope_usage.sql");
const WINDOW_CALLS_SQL: &str = include_str!("../sql/window_calls.sql");
const WINDOW_KEYS_SQL: &str = include_str!("../sql/window_keys.sql");
const WINDOW_PATIENTS_SQL: &str = include_str!("../sql/window_patients.sql");
const WINDOW_AUTH_SQL: &str = include_str!("../sql/window_auth.sql");

/// What to compute the matrix over.
#[derive(Debug, Clone)]
pub struct MatrixQuery {
    /// First day of the window (inclusive, UTC).
    pub from: Date,
    /// Last day of the window (inclusive, UTC).
    pub to: Date,
    pub tenant: Option<String>,
    pub app: Option<String>,
    /// An app with no call and no grant for this many days before the end
    /// of the window is stale.
    pub stale_after_days: u32,
}

/// How a scope stands, most serious first when several apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScopeClass {
    /// Requested or granted, but the registry does not approve it.
    Unapproved,
    /// Calls needed it and were refused, and no grant holds it.
    Denied,
    /// Granted and used by calls in the window.
    Used,
    /// Granted and not used in the window.
    Unused,
    /// Approved only: the logs show neither a grant nor a use. For an app
    /// younger than the window, or when the source does not record grants,
    /// the logs cannot tell.
    NotGranted,
    /// The logs cannot tell (e.g. no source records what this app requests).
    Unknown,
}

/// One scope of one app in one tenant.
#[derive(Debug, Clone, Serialize)]
pub struct ScopeRow {
    /// The scope as written (normalised to v2 where it is a resource scope).
    pub scope: String,
    pub class: ScopeClass,
    pub approved: bool,
    /// `None`: no source records what this app requests.
    pub requested: Option<bool>,
    pub granted: bool,
    /// Allowed calls whose required permission this scope covers.
    pub calls: u64,
    /// Distinct patients (pseudonyms) of those calls.
    pub patients: u64,
    pub first_used: Option<String>,
    pub last_used: Option<String>,
    /// For a wildcard scope, the resource types its calls used.
    pub types_used: Vec<String>,
    /// The permission letters its calls used (`rs`, `r`, ...).
    pub letters_used: String,
    /// The required permissions (as the lake stores them) this scope covers.
    #[serde(skip)]
    covered: Vec<String>,
}

/// The smallest scope set covering what was used, and how it differs.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Suggestion {
    /// Ready to paste into the registry's `approved_scopes`.
    pub scopes: Vec<String>,
    /// Approved scopes the suggestion drops.
    pub remove_from_approved: Vec<String>,
    /// Suggested scopes the registry does not approve (the app used them).
    pub add_to_approved: Vec<String>,
    /// Granted scopes the suggestion drops.
    pub remove_from_granted: Vec<String>,
}

/// One app version's requests and use.
#[derive(Debug, Clone, Serialize)]
pub struct VersionRow {
    pub version: String,
    pub calls: u64,
    pub requested: Vec<String>,
    /// Requested by this version and not by the one before (scope creep).
    pub new_scopes: Vec<String>,
    pub approved_version: Option<bool>,
}

/// The score and its band.
#[derive(Debug, Clone, Serialize)]
pub struct CreepScore {
    pub score: u8,
    pub band: &'static str,
}

/// Everything about one app in one tenant.
#[derive(Debug, Clone, Serialize)]
pub struct AppTenant {
    pub client_id: String,
    pub tenant: String,
    /// Registered name, `None` for an app the registry does not know.
    pub name: Option<String>,
    pub registered: bool,
    pub status: Option<String>,
    /// Registered after the window started: unused scopes are not judged.
    pub too_new_to_judge: bool,
    pub calls: u64,
    pub denied_calls: u64,
    pub patients: u64,
    pub grants: u64,
    pub refreshes: u64,
    pub last_call: Option<String>,
    pub last_grant: Option<String>,
    /// No call and no grant for `stale_after_days` before the window's end.
    pub stale: bool,
    /// Granted `offline_access` in the window and never refreshed.
    pub offline_without_refresh: bool,
    /// Holds grants in the window and made no call.
    pub grants_without_calls: bool,
    /// Whether a source records this app's requested scopes.
    pub requested_known: bool,
    pub scopes: Vec<ScopeRow>,
    pub suggestion: Suggestion,
    pub versions: Vec<VersionRow>,
    pub creep: CreepScore,
}

/// The matrix over a window.
#[derive(Debug, Clone, Serialize)]
pub struct ScopeMatrix {
    pub from: String,
    pub to: String,
    pub stale_after_days: u32,
    pub apps: Vec<AppTenant>,
}

#[derive(Default)]
struct Facts {
    requested: BTreeSet<String>,
    granted: BTreeSet<String>,
    /// version -> requested scopes
    requested_by_version: BTreeMap<String, BTreeSet<String>>,
    /// version -> allowed calls
    calls_by_version: BTreeMap<String, u64>,
    /// required -> (allowed calls, denied calls)
    used: BTreeMap<String, (u64, u64)>,
    /// Required permissions whose context ingest had to guess.
    context_guessed: BTreeSet<String>,
    activity: Option<Activity>,
}

#[derive(Default, Clone)]
struct Activity {
    calls: u64,
    denied: u64,
    patients: u64,
    last_call_us: Option<i64>,
    grants: u64,
    last_grant_us: Option<i64>,
    refreshes: u64,
    offline_granted: bool,
    authorize_with_scopes: u64,
}

type Key = (String, String);

impl Lake {
    /// The scope matrix over `q`'s window for every app and tenant seen in
    /// the logs or listed in the registry.
    pub fn scope_matrix(
        &self,
        registry: &Registry,
        q: &MatrixQuery,
    ) -> Result<ScopeMatrix, AnalyticsError> {
        let _guard = self.read_guard()?;
        let staged = self.stage_window(q)?;
        self.matrix_of(&staged, registry, q)
    }

    /// Scans the lake once per stream over `q`'s window (filters applied)
    /// into small temporary tables that the matrix, the sources and the
    /// daily calls are all read from. Hold the lake's read guard around it
    /// and around those reads.
    pub(crate) fn stage_window(&self, q: &MatrixQuery) -> Result<StagedWindow<'_>, AnalyticsError> {
        let (from, to) = window(q);
        let staged = StagedWindow {
            lake: self,
            from,
            to,
        };
        let conn = self.connection();
        conn.execute(
            WINDOW_CALLS_SQL,
            params![staged.from, staged.to, q.tenant, q.app],
        )
        .map_err(duck("running window_calls.sql"))?;
        conn.execute(WINDOW_KEYS_SQL, [])
            .map_err(duck("running window_keys.sql"))?;
        conn.execute(
            WINDOW_PATIENTS_SQL,
            params![staged.from, staged.to, q.tenant, q.app],
        )
        .map_err(duck("running window_patients.sql"))?;
        conn.execute(
            WINDOW_AUTH_SQL,
            params![staged.from, staged.to, q.tenant, q.app],
        )
        .map_err(duck("running window_auth.sql"))?;
        Ok(staged)
    }

    /// The matrix from a staged window.
    pub(crate) fn matrix_of(
        &self,
        staged: &StagedWindow<'_>,
        registry: &Registry,
        q: &MatrixQuery,
    ) -> Result<ScopeMatrix, AnalyticsError> {
        let from = &staged.from;
        let mut facts: BTreeMap<Key, Facts> = BTreeMap::new();
        let conn = self.connection();
        let err = |doing: &str| {
            let doing = doing.to_string();
            move |source| AnalyticsError::Duckdb { doing, source }
        };

        let mut stmt = conn
            .prepare(GRANTS_SQL)
            .map_err(err("preparing grants.sql"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })
            .map_err(err("running grants.sql"))?;
        for row in rows {
            let (tenant, client, version, what, scope) = row.map_err(err("reading grants.sql"))?;
            let f = facts.entry((client, tenant)).or_default();
            if what == "requested" {
                f.requested.insert(scope.clone());
                if let Some(v) = version {
                    f.requested_by_version.entry(v).or_default().insert(scope);
                }
            } else {
                f.granted.insert(scope);
            }
        }

        let mut stmt = conn
            .prepare(USAGE_SQL)
            .map_err(err("preparing usage.sql"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, bool>(5)?,
                    r.get::<_, i64>(6)?,
                ))
            })
            .map_err(err("running usage.sql"))?;
        for row in rows {
            let (tenant, client, version, required, outcome, guessed, calls) =
                row.map_err(err("reading usage.sql"))?;
            let f = facts.entry((client, tenant)).or_default();
            if guessed {
                f.context_guessed.insert(required.clone());
            }
            let e = f.used.entry(required).or_default();
            let calls = calls as u64;
            if outcome == "allowed" {
                e.0 += calls;
                if let Some(v) = version {
                    *f.calls_by_version.entry(v).or_default() += calls;
                }
            } else if outcome == "denied" {
                e.1 += calls;
            }
        }

        let mut stmt = conn
            .prepare(ACTIVITY_SQL)
            .map_err(err("preparing activity.sql"))?;
        let rows = stmt
            .query_map(params![from, q.tenant, q.app], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    Activity {
                        calls: r.get::<_, i64>(2)? as u64,
                        denied: r.get::<_, i64>(3)? as u64,
                        patients: r.get::<_, i64>(4)? as u64,
                        last_call_us: r.get(5)?,
                        grants: r.get::<_, i64>(6)? as u64,
                        last_grant_us: r.get(7)?,
                        refreshes: r.get::<_, i64>(8)? as u64,
                        offline_granted: r.get(9)?,
                        authorize_with_scopes: r.get::<_, i64>(10)? as u64,
                    },
                ))
            })
            .map_err(err("running activity.sql"))?;
        for row in rows {
            let (tenant, client, a) = row.map_err(err("reading activity.sql"))?;
            facts.entry((client, tenant)).or_default().activity = Some(a);
        }

        // Registered apps with no events still get a row (stale, or never
        // used), in each tenant they are deployed in.
        let tenants: BTreeSet<String> = registry
            .tenants()
            .into_iter()
            .map(str::to_string)
            .chain(facts.keys().map(|(_, t)| t.clone()))
            .collect();
        for app in &registry.apps {
            if q.app.as_ref().is_some_and(|a| *a != app.client_id) {
                continue;
            }
            for t in &tenants {
                if q.tenant.as_ref().is_some_and(|qt| qt != t) || !app.deployed_in(t) {
                    continue;
                }
                facts.entry((app.client_id.clone(), t.clone())).or_default();
            }
        }

        let mut apps: Vec<AppTenant> = facts
            .iter()
            .map(|((client, tenant), f)| build(registry, q, client, tenant, f))
            .collect();
        self.fill_scope_usage(&mut apps)?;
        for a in &mut apps {
            a.creep = creep_score(a);
        }
        Ok(ScopeMatrix {
            from: q.from.to_string(),
            to: q.to.to_string(),
            stale_after_days: q.stale_after_days,
            apps,
        })
    }

    /// Calls, patients and first/last use per scope, counted in DuckDB
    /// through a table of which permission each scope covers.
    fn fill_scope_usage(&self, apps: &mut [AppTenant]) -> Result<(), AnalyticsError> {
        let conn = self.connection();
        let err = |doing: &'static str| {
            move |source| AnalyticsError::Duckdb {
                doing: doing.to_string(),
                source,
            }
        };
        conn.execute_batch(
            "CREATE OR REPLACE TEMP TABLE scope_map (tenant VARCHAR, client_id VARCHAR, scope VARCHAR, required VARCHAR)",
        )
        .map_err(err("creating scope_map"))?;
        {
            let mut app = conn
                .appender("scope_map")
                .map_err(err("filling scope_map"))?;
            for a in apps.iter() {
                for row in &a.scopes {
                    for required in &row.covered {
                        app.append_row(params![a.tenant, a.client_id, row.scope, required])
                            .map_err(err("filling scope_map"))?;
                    }
                }
            }
        }
        let mut stmt = conn
            .prepare(SCOPE_USAGE_SQL)
            .map_err(err("preparing scope_usage.sql"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, Option<i64>>(5)?,
                    r.get::<_, Option<i64>>(6)?,
                ))
            })
            .map_err(err("running scope_usage.sql"))?;
        let mut usage: BTreeMap<(String, String, String), (u64, u64, Option<i64>, Option<i64>)> =
            BTreeMap::new();
        for row in rows {
            let (tenant, client, scope, calls, patients, first, last) =
                row.map_err(err("reading scope_usage.sql"))?;
            usage.insert(
                (client, tenant, scope),
                (calls as u64, patients as u64, first, last),
            );
        }
        for a in apps.iter_mut() {
            for row in &mut a.scopes {
                if let Some((calls, patients, first, last)) =
                    usage.get(&(a.client_id.clone(), a.tenant.clone(), row.scope.clone()))
                {
                    row.calls = *calls;
                    row.patients = *patients;
                    row.first_used = first.map(iso);
                    row.last_used = last.map(iso);
                }
            }
        }
        Ok(())
    }
}

fn build(registry: &Registry, q: &MatrixQuery, client: &str, tenant: &str, f: &Facts) -> AppTenant {
    let app = registry.app(client);
    let approved: Vec<Scope> = app
        .map(|a| a.approved_scopes_for(tenant).to_vec())
        .unwrap_or_default();
    let approved_norm: BTreeSet<String> = approved.iter().map(Scope::normalised).collect();
    let activity = f.activity.clone().unwrap_or_default();
    let requested_known = activity.authorize_with_scopes > 0;
    let norm = |s: &str| Scope::parse(s).normalised();
    let requested: BTreeSet<String> = f.requested.iter().map(|s| norm(s)).collect();
    let granted: BTreeSet<String> = f.granted.iter().map(|s| norm(s)).collect();

    // Every scope any side names.
    let mut all: BTreeSet<String> = approved_norm.clone();
    all.extend(requested.iter().cloned());
    all.extend(granted.iter().cloned());

    // Which granted (or, when nothing is granted in the logs, approved)
    // scope covers each permission the calls needed.
    let basis: Vec<Scope> = all.iter().map(|s| Scope::parse(s)).collect();
    let mut covered: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut denied_needs: BTreeSet<String> = BTreeSet::new();
    let mut used_permissions: Vec<Scope> = Vec::new();
    for (required, (allowed, denied)) in &f.used {
        let Ok(req) = Required::parse(required) else {
            continue;
        };
        // A guessed context is not held against the call: any context's
        // scope of the same type and letters covers it.
        let contexts: Vec<scopewatch_model::Context> = if f.context_guessed.contains(required) {
            scopewatch_model::Context::ALL.to_vec()
        } else {
            vec![req.context]
        };
        let holders: Vec<&Scope> = basis
            .iter()
            .filter(|s| {
                contexts.iter().any(|&context| {
                    let req = Required {
                        context,
                        ..req.clone()
                    };
                    covers(std::slice::from_ref(*s), &req, None).as_bool() != Some(false)
                })
            })
            .collect();
        if *allowed > 0 {
            for s in &holders {
                covered
                    .entry(s.normalised())
                    .or_default()
                    .push(required.clone());
            }
            // For the suggestion, a guessed context takes the context of the
            // grant that covered the call (granted scopes first).
            let context = if f.context_guessed.contains(required) {
                holders
                    .iter()
                    .filter_map(|s| {
                        s.resource()
                            .map(|r| (granted.contains(&s.normalised()), r.context))
                    })
                    .max_by_key(|(g, _)| *g)
                    .map_or(req.context, |(_, c)| c)
            } else {
                req.context
            };
            let used = Required {
                context,
                ..req.clone()
            };
            used_permissions.push(Scope::parse(&used.to_string()));
        }
        let held = holders.iter().any(|s| granted.contains(&s.normalised()));
        if *denied > 0 && !held {
            denied_needs.insert(req.to_string());
        }
    }

    let too_new = app.and_then(|a| a.registered).is_some_and(|r| r > q.from);
    let approved_covers = |s: &str| scope_approved(&approved, &Scope::parse(s));
    let mut rows = Vec::new();
    for s in &all {
        let is_approved = approved_covers(s);
        let is_granted = granted.contains(s);
        let is_requested = requested_known.then(|| requested.contains(s));
        let uses = covered.get(s).cloned().unwrap_or_default();
        let scope = Scope::parse(s);
        // Launch and identity scopes are used by the launch itself;
        // offline_access by refreshing.
        let used = is_granted
            && match scope.resource() {
                Some(_) => !uses.is_empty(),
                None if scope.is_offline_access() => activity.refreshes > 0,
                None => activity.grants > 0,
            };
        let class = if !is_approved && (is_granted || is_requested == Some(true)) {
            ScopeClass::Unapproved
        } else if used {
            ScopeClass::Used
        } else if is_granted {
            if too_new {
                ScopeClass::Unknown
            } else {
                ScopeClass::Unused
            }
        } else if f.activity.is_none() {
            ScopeClass::Unknown
        } else {
            ScopeClass::NotGranted
        };
        let mut types = BTreeSet::new();
        let mut letters = scopewatch_model::Perms::default();
        for r in &uses {
            if let Ok(req) = Required::parse(r) {
                if let Some(t) = &req.resource {
                    types.insert(t.clone());
                }
                letters = letters.union(req.perms);
            }
        }
        rows.push(ScopeRow {
            scope: s.clone(),
            class,
            approved: is_approved,
            requested: is_requested,
            granted: is_granted,
            calls: 0,
            patients: 0,
            first_used: None,
            last_used: None,
            types_used: if scope.is_wildcard() {
                types.into_iter().collect()
            } else {
                Vec::new()
            },
            letters_used: letters.to_string(),
            covered: uses,
        });
    }
    for need in &denied_needs {
        rows.push(ScopeRow {
            scope: need.clone(),
            class: ScopeClass::Denied,
            approved: approved_covers(need),
            requested: requested_known.then(|| requested.contains(need)),
            granted: false,
            calls: 0,
            patients: 0,
            first_used: None,
            last_used: None,
            types_used: Vec::new(),
            letters_used: String::new(),
            covered: Vec::new(),
        });
    }
    rows.sort_by(|a, b| a.class.cmp(&b.class).then(a.scope.cmp(&b.scope)));

    // Least privilege: what was used, plus the non-resource scopes the app
    // was granted and needs to work (launch, identity, refresh when used).
    let mut uses = used_permissions;
    for s in granted.iter().chain(approved_norm.iter()) {
        let scope = Scope::parse(s);
        if scope.resource().is_none()
            && scope.is_valid()
            && (!scope.is_offline_access() || activity.refreshes > 0)
        {
            uses.push(scope);
        }
    }
    let min = minimise(uses.iter());
    let suggested: BTreeSet<String> = min.scopes.iter().map(Scope::normalised).collect();
    let suggestion = Suggestion {
        scopes: suggested.iter().cloned().collect(),
        remove_from_approved: approved_norm.difference(&suggested).cloned().collect(),
        add_to_approved: suggested
            .iter()
            .filter(|s| !approved_covers(s))
            .cloned()
            .collect(),
        remove_from_granted: granted.difference(&suggested).cloned().collect(),
    };

    // Versions: requested scopes in version order; what each adds.
    let mut versions: Vec<String> = f
        .requested_by_version
        .keys()
        .chain(f.calls_by_version.keys())
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    versions.sort_by(|a, b| version_key(a).cmp(&version_key(b)));
    let mut previous: Option<BTreeSet<String>> = None;
    let mut version_rows = Vec::new();
    for v in versions {
        let req: BTreeSet<String> = f
            .requested_by_version
            .get(&v)
            .map(|s| s.iter().map(|x| norm(x)).collect())
            .unwrap_or_default();
        let new_scopes = match &previous {
            Some(p) if !req.is_empty() => req.difference(p).cloned().collect(),
            _ => Vec::new(),
        };
        if !req.is_empty() {
            previous = Some(req.clone());
        }
        version_rows.push(VersionRow {
            calls: f.calls_by_version.get(&v).copied().unwrap_or(0),
            requested: req.into_iter().collect(),
            new_scopes,
            approved_version: app.map(|a| a.version_approved(&v)),
            version: v,
        });
    }

    let end_us = day_start_us(q.to.next_day().unwrap_or(q.to));
    let stale_before = end_us - i64::from(q.stale_after_days) * 86_400_000_000;
    let last_activity = activity.last_call_us.max(activity.last_grant_us);
    AppTenant {
        client_id: client.to_string(),
        tenant: tenant.to_string(),
        name: app.map(|a| a.name.clone()),
        registered: app.is_some(),
        status: app.map(|a| a.status.as_str().to_string()),
        too_new_to_judge: too_new,
        calls: activity.calls,
        denied_calls: activity.denied,
        patients: activity.patients,
        grants: activity.grants,
        refreshes: activity.refreshes,
        last_call: activity.last_call_us.map(iso),
        last_grant: activity.last_grant_us.map(iso),
        stale: last_activity.is_none_or(|t| t < stale_before),
        offline_without_refresh: activity.offline_granted && activity.refreshes == 0,
        grants_without_calls: activity.grants > 0 && activity.calls == 0,
        requested_known,
        scopes: rows,
        suggestion,
        versions: version_rows,
        creep: CreepScore {
            score: 0,
            band: "low",
        },
    }
}

/// The scope-creep score (see README): each granted scope weighs
/// 1, plus 1 for a wildcard type, 1 for write letters, 1 for `system/`;
/// `offline_access` weighs 2. Its excess is the share of its letters no call
/// used (a wildcard counts at least half excess: it reaches types no one
/// listed); `offline_access` is all excess when the app never refreshed.
/// Score = 100 x sum(weight x excess) / sum(weight), so an app using
/// exactly what it is granted scores 0.
pub fn creep_score(a: &AppTenant) -> CreepScore {
    let mut total = 0.0;
    let mut excess = 0.0;
    for row in a.scopes.iter().filter(|r| r.granted) {
        let scope = Scope::parse(&row.scope);
        let (weight, unused) = if scope.is_offline_access() {
            (2.0, if a.refreshes > 0 { 0.0 } else { 1.0 })
        } else if let Some(r) = scope.resource() {
            let mut w = 1.0;
            if scope.is_wildcard() {
                w += 1.0;
            }
            if scope.is_write() {
                w += 1.0;
            }
            if scope.is_system() {
                w += 1.0;
            }
            let granted_letters = r.perms.iter().count().max(1) as f64;
            let used_letters = row
                .letters_used
                .chars()
                .filter(|c| r.perms.to_string().contains(*c))
                .count() as f64;
            let mut u = 1.0 - used_letters / granted_letters;
            if scope.is_wildcard() {
                u = u.max(0.5);
            }
            (w, u)
        } else {
            continue;
        };
        total += weight;
        excess += weight * unused;
    }
    let score = if total == 0.0 {
        0
    } else {
        (100.0 * excess / total).round() as u8
    };
    let band = match score {
        0..=19 => "low",
        20..=49 => "medium",
        _ => "high",
    };
    CreepScore { score, band }
}

/// Orders versions numerically where they are numbers (`1.10` after `1.9`).
fn version_key(v: &str) -> Vec<(u64, String)> {
    v.split(['.', '-', '+'])
        .map(|p| (p.parse::<u64>().unwrap_or(u64::MAX), p.to_string()))
        .collect()
}

/// Midnight UTC of `d`, as a DuckDB TIMESTAMPTZ literal for a bound parameter.
/// The temporary tables of one window (see [`Lake::stage_window`]),
/// dropped with this value so their memory is given back.
pub(crate) struct StagedWindow<'a> {
    lake: &'a Lake,
    /// The window as bound parameters: `[from, to)`.
    pub(crate) from: String,
    pub(crate) to: String,
}

impl Drop for StagedWindow<'_> {
    fn drop(&mut self) {
        let _ = self.lake.connection().execute_batch(
            "DROP TABLE IF EXISTS window_calls; DROP TABLE IF EXISTS window_keys; DROP TABLE IF EXISTS window_patients; DROP TABLE IF EXISTS window_auth;",
        );
    }
}

/// `[from, to)` of `q`'s window, as bound parameters.
pub(crate) fn window(q: &MatrixQuery) -> (String, String) {
    (
        day_start(q.from),
        day_start(q.to.next_day().unwrap_or(q.to)),
    )
}

pub(crate) fn day_start(d: Date) -> String {
    format!("{d} 00:00:00+00")
}

fn day_start_us(d: Date) -> i64 {
    d.midnight().assume_utc().unix_timestamp() * 1_000_000
}

/// Microseconds since the epoch as RFC 3339 (empty if out of range).
pub(crate) fn iso(us: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .map(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        })
        .unwrap_or_default()
}
