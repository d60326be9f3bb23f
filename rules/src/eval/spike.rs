//! `spike`: a group's event count in a sliding window against its own
//! baseline: the busiest the same window was in the past
//! `baseline_periods` seasons (day or week), so a daily or weekly rhythm,
//! and an app that is bursty by nature, are not spikes. A group with no
//! than three past seasons is judged only against an absolute bar (`factor`
//! x `min_volume`), so new apps do not alert on their first busy hours;
//! `min_volume` keeps quiet groups from alerting on a handful of calls.

use std::collections::{BTreeMap, HashMap};

use scopewatch_model::events::Timestamp;
use scopewatch_model::registry::Registry;
use serde::{Deserialize, Serialize};

use super::{group_of, secs, Hit};
use crate::config::{Rule, RuleKind};
use crate::event::Event;

/// Past seasons needed before the seasonal baseline is trusted.
const MIN_PAST_SEASONS: usize = 3;

/// Windows are counted in this many buckets (the window slides by one).
const BUCKETS_PER_WINDOW: i64 = 12;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Spike {
    groups: HashMap<String, Counts>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Counts {
    since: Timestamp,
    last: Timestamp,
    /// Events per bucket (bucket index = time / bucket length).
    buckets: BTreeMap<i64, u64>,
    /// Evidence of the current window: the newest events, at most `cap`.
    recent: Vec<(Timestamp, String)>,
    firing: bool,
}

struct Params {
    window_us: i64,
    period_us: i64,
    baseline_periods: u32,
    min_volume: u64,
    factor: f64,
}

fn params(kind: &RuleKind) -> Params {
    match kind {
        RuleKind::Spike {
            window_us,
            period_us,
            baseline_periods,
            min_volume,
            factor,
        } => Params {
            window_us: *window_us,
            period_us: *period_us,
            baseline_periods: *baseline_periods,
            min_volume: *min_volume,
            factor: *factor,
        },
        _ => unreachable!("spike evaluator for a spike rule"),
    }
}

fn bucket_us(window_us: i64) -> i64 {
    (window_us / BUCKETS_PER_WINDOW).max(1)
}

impl Counts {
    /// Events in the window ending in bucket `end` (inclusive).
    fn window(&self, end: i64) -> u64 {
        self.buckets
            .range(end - BUCKETS_PER_WINDOW + 1..=end)
            .map(|(_, n)| n)
            .sum()
    }
}

impl Spike {
    pub(super) fn observe(
        &mut self,
        rule: &Rule,
        kind: &RuleKind,
        event: &Event,
        registry: Option<&Registry>,
    ) -> Option<Hit> {
        let p = params(kind);
        let (group, key) = group_of(event, &rule.group_by, registry);
        let ts = event.ts();
        let b = bucket_us(p.window_us);
        let c = self.groups.entry(key).or_insert_with(|| Counts {
            since: ts,
            last: ts,
            buckets: BTreeMap::new(),
            recent: Vec::new(),
            firing: false,
        });
        c.since = c.since.min(ts);
        c.last = c.last.max(ts);
        let bucket = ts.0.div_euclid(b);
        *c.buckets.entry(bucket).or_default() += 1;
        let cap = (p.min_volume as usize).clamp(1, crate::alert::MAX_EVIDENCE);
        c.recent.push((ts, event.event_id().to_string()));
        c.recent.retain(|(t, _)| t.0 > ts.0 - p.window_us);
        if c.recent.len() > cap {
            let extra = c.recent.len() - cap;
            c.recent.drain(..extra);
        }

        let now = c.window(bucket);
        // The same window in past seasons the group existed in.
        let per_season = p.period_us / b;
        let past: Vec<u64> = (1..=i64::from(p.baseline_periods))
            .filter(|k| ts.0 - k * p.period_us - p.window_us >= c.since.0)
            .map(|k| c.window(bucket - k * per_season))
            .collect();
        // Fewer than three past seasons (e.g. only a weekend before a
        // Monday) is too little history: then only an absolute bar.
        let enough = past.len() >= (p.baseline_periods as usize).min(MIN_PAST_SEASONS);
        let (baseline, basis) = match past.iter().copied().max() {
            Some(peak) if enough => (peak as f64, "the busiest same window of past seasons"),
            _ => (
                p.min_volume as f64,
                "too little history: the minimum volume",
            ),
        };
        let spiking = now >= p.min_volume && now as f64 >= p.factor * baseline.max(1.0);
        if !spiking {
            c.firing = false;
            return None;
        }
        let evidence = if c.firing {
            vec![(ts, event.event_id().to_string())]
        } else {
            c.recent.clone()
        };
        c.firing = true;
        Some(Hit {
            group,
            ts,
            evidence,
            detail: format!(
                "{now} events within {} s against a baseline of {baseline:.1} ({basis})",
                secs(p.window_us)
            ),
        })
    }

    pub(super) fn evict(&mut self, now: Timestamp, kind: &RuleKind) {
        let p = params(kind);
        let b = bucket_us(p.window_us);
        // Buckets older than the oldest baseline window can never be read.
        let keep_from =
            (now.0 - i64::from(p.baseline_periods) * p.period_us - p.window_us).div_euclid(b);
        self.groups.retain(|_, c| {
            c.buckets = c.buckets.split_off(&keep_from);
            c.recent.retain(|(t, _)| t.0 > now.0 - p.window_us);
            !c.buckets.is_empty()
        });
    }

    pub(super) fn size(&self) -> usize {
        self.groups
            .values()
            .map(|c| 1 + c.buckets.len() + c.recent.len())
            .sum()
    }
}
