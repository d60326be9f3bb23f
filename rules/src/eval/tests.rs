//! Each rule type on hand-made events: what fires, window edges, late
//! events, and state that stays bounded as groups come and go.

use std::sync::Arc;

use proptest::prelude::*;
use scopewatch_model::events::{
    AccessEvent, AccessOutcome, AuthEvent, AuthKind, AuthOutcome, Env, Timestamp,
};

use crate::config::Rules;
use crate::engine::Engine;
use crate::event::Event;
use crate::store::AlertStore;

const S: i64 = 1_000_000;
/// 2026-11-02 00:00:00 UTC, a Monday.
const T0: i64 = 1_793_577_600 * S;

fn at(secs: i64) -> Timestamp {
    Timestamp(T0 + secs * S)
}

fn call(id: &str, secs: i64, client: &str, token: &str) -> AccessEvent {
    AccessEvent {
        event_id: id.into(),
        ts: at(secs),
        tenant: "north".into(),
        env: Env::Prod,
        client_id: Some(client.into()),
        app_version: None,
        user: Some("u_1".into()),
        token_id: Some(token.into()),
        expires_at: None,
        token_tenant: None,
        method: "GET".into(),
        path: "/fhir/Observation".into(),
        interaction: None,
        resource_type: Some("Observation".into()),
        compartment: None,
        patient: Some("p_1".into()),
        required: None,
        granted_covered: None,
        status: Some(200),
        outcome: AccessOutcome::Allowed,
        bytes: None,
        latency_ms: None,
        ip: Some("10.0.0.1".into()),
        user_agent: Some("app/1".into()),
        source: "gw".into(),
        source_file: None,
        source_offset: None,
    }
}

fn auth(id: &str, secs: i64, kind: AuthKind, client: &str) -> AuthEvent {
    AuthEvent {
        event_id: id.into(),
        ts: at(secs),
        tenant: "north".into(),
        env: Env::Prod,
        kind,
        outcome: AuthOutcome::Success,
        error: None,
        client_id: Some(client.into()),
        app_version: None,
        user: Some("u_1".into()),
        session_id: None,
        patient: None,
        encounter: None,
        scopes_requested: None,
        scopes_granted: None,
        grant_type: None,
        token_id: None,
        refresh_token_id: None,
        parent_token_id: None,
        expires_at: None,
        ip: Some("10.0.0.1".into()),
        user_agent: None,
        source: "idp".into(),
        source_file: None,
        source_offset: None,
    }
}

fn rules(toml: &str) -> Arc<Rules> {
    Arc::new(Rules::from_toml_str(&format!("version = 1\n{toml}"), "test").unwrap())
}

/// Judges `events` in order; returns each alert as (rule, count, evidence).
fn run(rules: &Arc<Rules>, events: &[Event]) -> Vec<(String, u64, Vec<String>)> {
    let mut engine = Engine::new(Arc::clone(rules), None);
    let mut store = AlertStore::in_memory();
    engine.judge_into(events, &mut store);
    let mut out: Vec<_> = store
        .alerts()
        .map(|a| (a.rule.clone(), a.count, a.evidence.clone()))
        .collect();
    out.sort();
    out
}

const THRESHOLD: &str = r#"
[[rule]]
id = "burst"
title = "burst"
type = "threshold"
severity = "medium"
where = { stream = "access", outcome = "denied" }
window_secs = 60
threshold = 3
group_by = ["client_id"]
dedup_secs = 600
"#;

fn denied(id: &str, secs: i64, client: &str) -> Event {
    let mut c = call(id, secs, client, "t");
    c.outcome = AccessOutcome::Denied;
    c.status = Some(403);
    Event::Access(c)
}

#[test]
fn threshold_fires_at_the_count_within_a_sliding_window() {
    let r = rules(THRESHOLD);
    // Three within 60 s, but not within a clock-aligned minute.
    let events = vec![
        denied("a", 50, "x"),
        denied("b", 70, "x"),
        denied("c", 109, "x"),
    ];
    assert_eq!(
        run(&r, &events),
        vec![("burst".into(), 3, vec!["a".into(), "b".into(), "c".into()])]
    );
}

#[test]
fn threshold_window_edge_is_exclusive() {
    let r = rules(THRESHOLD);
    // The first event is exactly 60 s before the third: outside.
    let events = vec![
        denied("a", 0, "x"),
        denied("b", 30, "x"),
        denied("c", 60, "x"),
    ];
    assert!(run(&r, &events).is_empty());
    let events = vec![
        denied("a", 1, "x"),
        denied("b", 30, "x"),
        denied("c", 60, "x"),
    ];
    assert_eq!(run(&r, &events).len(), 1);
}

#[test]
fn threshold_counts_groups_apart_and_ignores_unmatched() {
    let r = rules(THRESHOLD);
    let mut ok = call("ok", 10, "x", "t");
    ok.outcome = AccessOutcome::Allowed;
    let events = vec![
        denied("a", 1, "x"),
        denied("b", 2, "y"),
        Event::Access(ok),
        denied("c", 3, "x"),
        denied("d", 4, "y"),
    ];
    assert!(run(&r, &events).is_empty());
}

#[test]
fn repeats_fold_into_the_open_alert_until_the_dedup_window_passes() {
    let r = rules(THRESHOLD);
    let mut events: Vec<Event> = (0..6).map(|i| denied(&format!("e{i}"), i, "x")).collect();
    // Within dedup (600 s after the last evidence): folds.
    events.extend((0..3).map(|i| denied(&format!("f{i}"), 300 + i, "x")));
    // Long after: a new alert.
    events.extend((0..3).map(|i| denied(&format!("g{i}"), 5000 + i, "x")));
    let alerts = run(&r, &events);
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    assert_eq!(alerts.iter().map(|a| a.1).sum::<u64>(), 12);
    assert!(alerts
        .iter()
        .any(|a| a.1 == 9 && a.2.contains(&"f2".to_string())));
}

const DISTINCT: &str = r#"
[[rule]]
id = "ips"
title = "ips"
type = "distinct"
severity = "high"
where = { stream = "access" }
present = ["token_id"]
field = "ip"
window_secs = 600
threshold = 3
group_by = ["token_id"]
"#;

fn from_ip(id: &str, secs: i64, token: &str, ip: &str) -> Event {
    let mut c = call(id, secs, "x", token);
    c.ip = Some(ip.into());
    Event::Access(c)
}

#[test]
fn distinct_counts_values_not_events() {
    let r = rules(DISTINCT);
    let same: Vec<Event> = (0..10)
        .map(|i| from_ip(&format!("s{i}"), i, "t1", "1.1.1.1"))
        .collect();
    assert!(run(&r, &same).is_empty());
    let events = vec![
        from_ip("a", 0, "t1", "1.1.1.1"),
        from_ip("b", 10, "t1", "2.2.2.2"),
        from_ip("c", 20, "t2", "3.3.3.3"),
        from_ip("d", 30, "t1", "3.3.3.3"),
    ];
    let alerts = run(&r, &events);
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].2, vec!["a", "b", "d"]);
}

#[test]
fn distinct_forgets_values_that_left_the_window() {
    let r = rules(DISTINCT);
    let events = vec![
        from_ip("a", 0, "t1", "1.1.1.1"),
        from_ip("b", 100, "t1", "2.2.2.2"),
        from_ip("c", 700, "t1", "3.3.3.3"),
    ];
    assert!(run(&r, &events).is_empty());
    // ... unless used again inside it.
    let events = vec![
        from_ip("a", 0, "t1", "1.1.1.1"),
        from_ip("b", 150, "t1", "2.2.2.2"),
        from_ip("a2", 650, "t1", "1.1.1.1"),
        from_ip("c", 700, "t1", "3.3.3.3"),
    ];
    assert_eq!(run(&r, &events).len(), 1);
}

const NEW_VALUE: &str = r#"
[[rule]]
id = "new-scope"
title = "new scope"
type = "new_value"
severity = "medium"
where = { stream = "auth" }
field = "scopes_requested"
history_secs = 86400
learn_secs = 3600
group_by = ["client_id"]
"#;

fn asks(id: &str, secs: i64, client: &str, scopes: &[&str]) -> Event {
    let mut a = auth(id, secs, AuthKind::Authorize, client);
    a.scopes_requested = Some(scopes.iter().map(|s| s.to_string()).collect());
    Event::Auth(a)
}

#[test]
fn new_value_learns_then_alerts_on_values_never_seen() {
    let r = rules(NEW_VALUE);
    let events = vec![
        asks("a", 0, "x", &["openid", "patient/Observation.rs"]),
        // Still learning: remembered, not alerted.
        asks("b", 1800, "x", &["openid", "launch"]),
        asks(
            "c",
            7200,
            "x",
            &["openid", "launch", "patient/Observation.rs"],
        ),
        asks("d", 7300, "x", &["openid", "patient/Condition.rs"]),
        asks("e", 7400, "x", &["patient/Condition.rs"]),
    ];
    let alerts = run(&r, &events);
    assert_eq!(alerts, vec![("new-scope".into(), 1, vec!["d".into()])]);
}

#[test]
fn new_value_is_new_again_after_the_history_window() {
    let r = rules(NEW_VALUE);
    let events = vec![
        asks("a", 0, "x", &["openid"]),
        asks("b", 4000, "x", &["openid"]),
        asks("c", 4000 + 86_400, "x", &["openid"]),
    ];
    // `openid` last seen at 4000; 86 400 s later it counts as new.
    assert_eq!(run(&r, &events).len(), 1);
    let events = vec![
        asks("a", 0, "x", &["openid"]),
        asks("b", 4000, "x", &["openid"]),
        asks("c", 4000 + 86_399, "x", &["openid"]),
    ];
    assert!(run(&r, &events).is_empty());
}

const SPIKE: &str = r#"
[[rule]]
id = "spike"
title = "spike"
type = "spike"
severity = "medium"
where = { stream = "access" }
window_secs = 3600
seasonality = "day"
baseline_periods = 3
min_volume = 50
factor = 5.0
group_by = ["client_id"]
"#;

/// `per_hour` calls in each hour of `days` days, evenly spread.
fn traffic(days: i64, per_hour: impl Fn(i64, i64) -> i64) -> Vec<Event> {
    let mut out = Vec::new();
    for d in 0..days {
        for h in 0..24 {
            let n = per_hour(d, h);
            for k in 0..n {
                let t = d * 86_400 + h * 3600 + k * 3600 / n.max(1);
                out.push(Event::Access(call(
                    &format!("c{d}-{h}-{k:05}"),
                    t,
                    "x",
                    "t",
                )));
            }
        }
    }
    out
}

#[test]
fn spike_ignores_a_daily_rhythm_but_catches_a_burst() {
    let r = rules(SPIKE);
    // Busy mornings (200/h at 9-11) every day: seasonal, not a spike once
    // past days exist... and 20/h otherwise.
    let rhythm = |_d: i64, h: i64| if (9..12).contains(&h) { 200 } else { 20 };
    let events = traffic(5, rhythm);
    let alerts = run(&r, &events);
    // Only the first mornings (no past day to compare with yet) may fire.
    assert!(
        alerts.len() <= 1,
        "a daily rhythm is not a spike after the first day: {alerts:?}"
    );
    let burst = traffic(5, |d, h| if d == 4 && h == 15 { 300 } else { rhythm(d, h) });
    let with_burst = run(&r, &burst);
    assert_eq!(with_burst.len(), alerts.len() + 1, "{with_burst:?}");
}

#[test]
fn spike_needs_the_minimum_volume() {
    let r = rules(SPIKE);
    // From 1/h to 40/h is 40x, but under min_volume 50.
    let events = traffic(4, |d, h| if d == 3 && h == 10 { 40 } else { 1 });
    assert!(run(&r, &events).is_empty());
}

const REPLAY: &str = r#"
[[rule]]
id = "replay"
title = "replay"
type = "sequence"
severity = "critical"
within_secs = 86400
group_by = ["parent_token_id"]
[[rule.first]]
where = { stream = "auth", kind = "refresh", outcome = "success" }
key = "parent_token_id"
[rule.then]
where = { stream = "auth", kind = "refresh" }
key = "parent_token_id"
"#;

fn refresh(id: &str, secs: i64, consumed: &str, ok: bool) -> Event {
    let mut a = auth(id, secs, AuthKind::Refresh, "x");
    a.parent_token_id = Some(consumed.into());
    if !ok {
        a.outcome = AuthOutcome::Failure;
    }
    Event::Auth(a)
}

#[test]
fn sequence_catches_a_refresh_token_used_twice() {
    let r = rules(REPLAY);
    // A rotating client: each refresh consumes the previous one's token.
    let normal = vec![
        refresh("a", 0, "r1", true),
        refresh("b", 3600, "r2", true),
        refresh("c", 7200, "r3", true),
    ];
    assert!(run(&r, &normal).is_empty());
    let replay = vec![refresh("a", 0, "r1", true), refresh("b", 60, "r1", false)];
    assert_eq!(
        run(&r, &replay),
        vec![("replay".into(), 2, vec!["a".into(), "b".into()])]
    );
    // Too late to remember.
    let late = vec![
        refresh("a", 0, "r1", true),
        refresh("b", 86_401, "r1", true),
    ];
    assert!(run(&r, &late).is_empty());
}

const EXPIRY: &str = r#"
[[rule]]
id = "expiry"
title = "expiry"
type = "sequence"
severity = "medium"
within_secs = 86400
grace_secs = 600
group_by = ["token_id"]
[[rule.first]]
where = { stream = "access" }
present = ["expires_at"]
key = "token_id"
at = "expires_at"
[rule.then]
where = { stream = "access" }
key = "token_id"
"#;

#[test]
fn sequence_anchored_on_a_field_lets_an_event_follow_its_own_expiry() {
    let r = rules(EXPIRY);
    let with_exp = |id: &str, secs: i64, exp: i64| {
        let mut c = call(id, secs, "x", "t1");
        c.expires_at = Some(at(exp));
        Event::Access(c)
    };
    // Used within its life, then within the grace: nothing.
    assert!(run(&r, &[with_exp("a", 0, 3600), with_exp("b", 4000, 3600)]).is_empty());
    // Presented two hours after expiry, as the very first call we see.
    let alerts = run(&r, &[with_exp("a", 3600 + 7200, 3600)]);
    assert_eq!(alerts, vec![("expiry".into(), 1, vec!["a".into()])]);
}

const CROSS: &str = r#"
[[rule]]
id = "cross"
title = "cross"
type = "sequence"
severity = "high"
within_secs = 86400
group_by = ["token_id"]
differ = [["issued_in", "tenant"], ["issued_env", "env"]]
[[rule.first]]
where = { stream = "auth", outcome = "success" }
present = ["token_id"]
key = "token_id"
remember = { issued_in = "tenant", issued_env = "env" }
[rule.then]
where = { stream = "access" }
key = "token_id"
"#;

#[test]
fn sequence_differ_needs_a_remembered_value_that_differs() {
    let r = rules(CROSS);
    let mut grant = auth("g", 0, AuthKind::Token, "x");
    grant.token_id = Some("t1".into());
    let home = Event::Access(call("a", 10, "x", "t1"));
    let mut away = call("b", 20, "x", "t1");
    away.tenant = "south".into();
    let mut sandbox = call("c", 30, "x", "t1");
    sandbox.env = Env::Sandbox;
    let alerts = run(&r, &[Event::Auth(grant.clone()), home.clone()]);
    assert!(alerts.is_empty());
    let alerts = run(
        &r,
        &[
            Event::Auth(grant),
            home,
            Event::Access(away),
            Event::Access(sandbox),
        ],
    );
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].2, vec!["g", "b", "c"]);
}

#[test]
fn a_rule_file_with_mistakes_is_refused_with_the_reason() {
    let bad = [
        ("[[rule]]\nid='x'\ntitle='t'\ntype='threshold'\nseverity='high'\nwindow_secs=1\n", "need `threshold`"),
        ("[[rule]]\nid='x'\ntitle='t'\ntype='threshold'\nseverity='high'\nwindow_secs=1\nthreshold=1\nfield='ip'\n", "`field` is not a parameter of threshold"),
        ("[[rule]]\nid='x'\ntitle='t'\ntype='threshold'\nseverity='urgent'\nwindow_secs=1\nthreshold=1\n", "severity `urgent`"),
        ("[[rule]]\nid='x'\ntitle='t'\ntype='threshold'\nseverity='high'\nwindow_secs=1\nthreshold=1\ngroup_by=['app']\n", "`app`, which is not a field"),
        ("[[rule]]\nid='x'\ntitle='t'\ntype='threshold'\nseverity='high'\nwindow_secs=1\nthreshold=1\nwhere={ ip = [] }\n", "non-empty list"),
        ("[[rule]]\nid='x'\ntitle='t'\ntype='threshold'\nseverity='high'\nwindow_secs=1\nthreshold=1\nwindow=3\n", "unknown field `window`"),
        ("[[rule]]\nid='x'\ntitle='t'\ntype='threshold'\nseverity='high'\nwindow_secs=1\nthreshold=1\ndestinations=['pager']\n", "destination `pager` is not defined"),
    ];
    for (text, expected) in bad {
        let err = Rules::from_toml_str(&format!("version = 1\n{text}"), "r.toml").unwrap_err();
        assert!(
            err.to_string().contains(expected),
            "{err} should say {expected}"
        );
    }
    assert!(Rules::from_toml_str("version = 2\n", "r.toml")
        .unwrap_err()
        .to_string()
        .contains("version 2"));
}

#[test]
fn the_builtin_rules_load() {
    let r = Rules::builtin();
    assert!(r.rules.len() >= 10);
    for kind in ["threshold", "distinct", "new_value", "spike", "sequence"] {
        assert!(r.rules.iter().any(|x| x.kind.name() == kind), "{kind}");
    }
}

#[test]
fn every_type_of_state_survives_a_snapshot() {
    let r = rules(&format!("{THRESHOLD}{DISTINCT}{NEW_VALUE}{SPIKE}{EXPIRY}"));
    let mut engine = Engine::new(Arc::clone(&r), None);
    let mut store = AlertStore::in_memory();
    let events = traffic(2, |_, h| if h == 9 { 30 } else { 2 });
    engine.judge_into(&events, &mut store);
    engine.judge_into(
        &[
            denied("d", 3 * 86_400, "x"),
            asks("a", 3 * 86_400, "x", &["openid"]),
        ],
        &mut store,
    );
    let saved = serde_json::to_string(&engine.snapshot()).unwrap();
    let mut resumed = Engine::new(Arc::clone(&r), None);
    assert!(resumed
        .restore(serde_json::from_str(&saved).unwrap())
        .is_empty());
    assert_eq!(resumed.state_size(), engine.state_size());
    assert_eq!(
        serde_json::to_string(&resumed.snapshot()).unwrap().len(),
        saved.len()
    );
}

#[test]
fn state_survives_a_snapshot() {
    let r = rules(REPLAY);
    let mut engine = Engine::new(Arc::clone(&r), None);
    let mut store = AlertStore::in_memory();
    engine.judge_into(&[refresh("a", 0, "r1", true)], &mut store);
    let saved = serde_json::to_string(&engine.snapshot()).unwrap();
    let mut resumed = Engine::new(Arc::clone(&r), None);
    assert!(resumed
        .restore(serde_json::from_str(&saved).unwrap())
        .is_empty());
    resumed.judge_into(&[refresh("b", 60, "r1", true)], &mut store);
    assert_eq!(store.len(), 1);
}

/// Many short-lived groups over a long time: what the evaluators hold
/// stays within what their windows need.
fn state_stays_bounded(rule: &str, make: impl Fn(u64, i64) -> Event) {
    let r = rules(rule);
    let mut engine = Engine::new(Arc::clone(&r), None);
    let mut store = AlertStore::in_memory();
    let mut peak = 0;
    for hour in 0..24 * 30 {
        let events: Vec<Event> = (0..50)
            .map(|k| make(hour as u64 * 50 + k, hour * 3600 + k as i64 * 60))
            .collect();
        engine.judge_into(&events, &mut store);
        peak = peak.max(engine.state_size());
    }
    // A month of new groups every hour; a window of at most a day or two.
    assert!(
        peak < 50 * 24 * 8,
        "state grew to {peak} entries for {rule}"
    );
}

#[test]
fn state_is_bounded_for_every_rule_type() {
    let fresh_token =
        |n: u64, t: i64| from_ip(&format!("e{n}"), t, &format!("t{n}"), &format!("ip{n}"));
    state_stays_bounded(DISTINCT, fresh_token);
    state_stays_bounded(THRESHOLD, |n, t| {
        denied(&format!("e{n}"), t, &format!("c{}", n / 10))
    });
    state_stays_bounded(SPIKE, |n, t| {
        Event::Access(call(&format!("e{n}"), t, &format!("c{}", n / 10), "t"))
    });
    state_stays_bounded(REPLAY, |n, t| {
        refresh(&format!("e{n}"), t, &format!("r{n}"), true)
    });
    state_stays_bounded(&NEW_VALUE.replace("86400", "3600"), |n, t| {
        asks(&format!("e{n}"), t, &format!("c{}", n / 10), &["openid"])
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// However the events are cut into commits and shuffled within each,
    /// the detector judges them as backtest does.
    #[test]
    fn streaming_order_does_not_change_the_alerts(
        cuts in proptest::collection::vec(0usize..60, 0..6),
        caught in proptest::collection::vec(any::<bool>(), 7),
        seed in any::<u64>(),
    ) {
        use rand_like::shuffle;
        let r = rules(&format!("{THRESHOLD}{DISTINCT}{REPLAY}"));
        let mut events: Vec<Event> = Vec::new();
        for i in 0..20 {
            events.push(denied(&format!("d{i:02}"), i * 7, "x"));
            events.push(from_ip(&format!("i{i:02}"), i * 5, "tk", &format!("10.0.0.{}", i % 4)));
        }
        events.push(refresh("ra", 10, "r1", true));
        events.push(refresh("rb", 90, "r1", true));
        events.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
        let expected = run(&r, &events);

        let dir = tempfile::tempdir().unwrap();
        let mut det = crate::stream::Detector::open(dir.path(), Arc::clone(&r), None).unwrap();
        let mut cuts = cuts;
        cuts.sort();
        cuts.push(events.len());
        let mut start = 0;
        for (n, end) in cuts.into_iter().enumerate() {
            let end = end.min(events.len()).max(start);
            let mut chunk = events[start..end].to_vec();
            shuffle(&mut chunk, seed.wrapping_add(n as u64));
            // Caught up or not (a backfill's commits), and always at the end.
            let caught_up = caught[n] || end == events.len();
            det.offer(chunk, caught_up, &mut |_, _| Ok(())).unwrap();
            start = end;
        }
        let mut got: Vec<_> = det
            .store()
            .alerts()
            .map(|a| (a.rule.clone(), a.count, a.evidence.clone()))
            .collect();
        got.sort();
        prop_assert_eq!(got, expected);
    }
}

/// A small deterministic shuffle (no rand dependency for one test).
mod rand_like {
    pub fn shuffle<T>(v: &mut [T], mut seed: u64) {
        for i in (1..v.len()).rev() {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let j = (seed >> 33) as usize % (i + 1);
            v.swap(i, j);
        }
    }
}
