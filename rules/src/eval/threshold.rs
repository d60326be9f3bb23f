//! `threshold`: at least N matching events of a group within a sliding
//! window that ends at each event (not clock-aligned buckets).

use std::collections::{HashMap, VecDeque};

use scopewatch_model::events::Timestamp;
use scopewatch_model::registry::Registry;
use serde::{Deserialize, Serialize};

use super::{group_of, secs, Hit};
use crate::config::Rule;
use crate::event::Event;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Threshold {
    groups: HashMap<String, Window>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Window {
    /// The newest matching events, `(time, event_id)` in time order; never
    /// more than the threshold (that many in the window is all it asks).
    recent: VecDeque<(Timestamp, String)>,
    /// Whether the last event found the group over the threshold.
    firing: bool,
}

impl Threshold {
    pub(super) fn observe(
        &mut self,
        rule: &Rule,
        window_us: i64,
        threshold: u64,
        event: &Event,
        registry: Option<&Registry>,
    ) -> Option<Hit> {
        let (group, key) = group_of(event, &rule.group_by, registry);
        let ts = event.ts();
        let w = self.groups.entry(key).or_default();
        // Insert in time order: a late event lands where it belongs.
        let pos = w
            .recent
            .partition_point(|(t, id)| (*t, id.as_str()) <= event.order_key());
        w.recent.insert(pos, (ts, event.event_id().to_string()));
        while w.recent.len() as u64 > threshold {
            w.recent.pop_front();
        }
        let start = ts.0 - window_us;
        let in_window = w
            .recent
            .iter()
            .filter(|(t, _)| t.0 > start && *t <= ts)
            .count() as u64;
        if in_window < threshold {
            w.firing = false;
            return None;
        }
        let evidence = if w.firing {
            vec![(ts, event.event_id().to_string())]
        } else {
            w.recent.iter().cloned().collect()
        };
        w.firing = true;
        Some(Hit {
            group,
            ts,
            evidence,
            detail: format!(
                "{threshold} or more matching events within {} s",
                secs(window_us)
            ),
        })
    }

    pub(super) fn evict(&mut self, now: Timestamp, window_us: i64) {
        self.groups.retain(|_, w| {
            w.recent
                .back()
                .is_some_and(|(t, _)| t.0 > now.0 - window_us)
        });
    }

    pub(super) fn size(&self) -> usize {
        self.groups.values().map(|w| 1 + w.recent.len()).sum()
    }
}
