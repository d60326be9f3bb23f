//! `new_value`: a value of a field never seen for the group within the
//! history window (a new scope granted, a new IP for an app, a new app
//! version). A group younger than the learning period only learns.

use std::collections::HashMap;

use scopewatch_model::events::Timestamp;
use scopewatch_model::registry::Registry;
use serde::{Deserialize, Serialize};

use super::{group_of, secs, values_of, Hit};
use crate::config::Rule;
use crate::event::Event;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NewValue {
    groups: HashMap<String, Known>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Known {
    /// When the group was first seen (learning ends `learn` after it).
    since: Timestamp,
    /// When the group was last seen.
    last: Timestamp,
    /// Each value and when it was last seen.
    values: HashMap<String, Timestamp>,
}

impl NewValue {
    pub(super) fn observe(
        &mut self,
        rule: &Rule,
        field: &str,
        history_us: i64,
        learn_us: i64,
        event: &Event,
        registry: Option<&Registry>,
    ) -> Vec<Hit> {
        let values = values_of(event, field, registry);
        if values.is_empty() {
            return Vec::new();
        }
        let (group, key) = group_of(event, &rule.group_by, registry);
        let ts = event.ts();
        let known = self.groups.entry(key).or_insert_with(|| Known {
            since: ts,
            last: ts,
            values: HashMap::new(),
        });
        known.since = known.since.min(ts);
        known.last = known.last.max(ts);
        let learning = ts.0 - known.since.0 < learn_us;
        let mut hits = Vec::new();
        for v in values {
            let seen = known.values.get(&v).copied();
            let new = seen.is_none_or(|t| t.0 <= ts.0 - history_us);
            if new && !learning {
                let mut g = group.clone();
                g.push((field.to_string(), v.clone()));
                hits.push(Hit {
                    group: g,
                    ts,
                    evidence: vec![(ts, event.event_id().to_string())],
                    detail: format!(
                        "{field} `{v}` not seen for this group in the past {} days",
                        secs(history_us) / 86_400
                    ),
                });
            }
            let t = known.values.entry(v).or_insert(ts);
            *t = (*t).max(ts);
        }
        hits
    }

    pub(super) fn evict(&mut self, now: Timestamp, history_us: i64) {
        let start = now.0 - history_us;
        self.groups.retain(|_, k| {
            k.values.retain(|_, t| t.0 > start);
            k.last.0 > start
        });
    }

    pub(super) fn size(&self) -> usize {
        self.groups.values().map(|k| 1 + k.values.len()).sum()
    }
}
