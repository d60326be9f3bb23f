//! `distinct`: at least N distinct values of a field for a group within a
//! sliding window (IPs per token, patients per app, tenants per token).

use std::collections::{BTreeSet, HashMap};

use scopewatch_model::events::Timestamp;
use scopewatch_model::registry::Registry;
use serde::{Deserialize, Serialize};

use super::{group_of, secs, values_of, Hit};
use crate::config::Rule;
use crate::event::Event;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Distinct {
    groups: HashMap<String, Values>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Values {
    /// Each value's latest event, `value -> (time, event_id)`.
    latest: HashMap<String, (Timestamp, String)>,
    /// The same, ordered by time, to drop values that left the window.
    by_time: BTreeSet<(Timestamp, String)>,
    firing: bool,
}

impl Values {
    fn drop_before(&mut self, start: i64) {
        while let Some((t, v)) = self.by_time.first().cloned() {
            if t.0 > start {
                break;
            }
            self.by_time.pop_first();
            self.latest.remove(&v);
        }
    }
}

impl Distinct {
    pub(super) fn observe(
        &mut self,
        rule: &Rule,
        field: &str,
        window_us: i64,
        threshold: u64,
        event: &Event,
        registry: Option<&Registry>,
    ) -> Option<Hit> {
        let values = values_of(event, field, registry);
        if values.is_empty() {
            return None;
        }
        let (group, key) = group_of(event, &rule.group_by, registry);
        let ts = event.ts();
        let g = self.groups.entry(key).or_default();
        for v in values {
            match g.latest.get(&v) {
                Some((t, _)) if *t >= ts => {}
                previous => {
                    if let Some((t, _)) = previous {
                        g.by_time.remove(&(*t, v.clone()));
                    }
                    g.by_time.insert((ts, v.clone()));
                    g.latest.insert(v, (ts, event.event_id().to_string()));
                }
            }
        }
        // Values whose latest use is outside the window ending here.
        let start = ts.0 - window_us;
        g.drop_before(start);
        let distinct = g.by_time.range(..=(ts, String::from('\u{10ffff}'))).count() as u64;
        if distinct < threshold {
            g.firing = false;
            return None;
        }
        let evidence = if g.firing {
            vec![(ts, event.event_id().to_string())]
        } else {
            let mut e: Vec<(Timestamp, String)> = g.latest.values().cloned().collect();
            e.sort();
            e.dedup();
            e
        };
        g.firing = true;
        Some(Hit {
            group,
            ts,
            evidence,
            detail: format!(
                "{distinct} distinct {field} within {} s (threshold {threshold})",
                secs(window_us)
            ),
        })
    }

    pub(super) fn evict(&mut self, now: Timestamp, window_us: i64) {
        let start = now.0 - window_us;
        self.groups.retain(|_, g| {
            g.drop_before(start);
            !g.latest.is_empty()
        });
    }

    pub(super) fn size(&self) -> usize {
        self.groups.values().map(|g| 1 + g.latest.len()).sum()
    }
}
