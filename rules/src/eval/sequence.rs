//! `sequence`: an event that follows another it must not follow: a refresh
//! token consumed again, a token used after its revocation or its expiry,
//! a token used in another tenant than the one that issued it.
//!
//! A `first` event leaves an anchor under its `key` value: the time from
//! which `then` is forbidden (its own time, or the time in its `at` field)
//! and the values it `remember`s. A later `then` event with the same key
//! value at or after the anchor time (plus `grace`) fires; with `differ`,
//! only when at least one pair has both values and they differ. An event is never its own
//! `then`, unless the anchor time comes from an `at` field (a call made
//! after the expiry its own token carries is after that expiry).

use std::collections::{BTreeSet, HashMap};

use scopewatch_model::events::Timestamp;
use scopewatch_model::registry::Registry;
use serde::{Deserialize, Serialize};

use super::{group_of, secs, Hit};
use crate::config::{Rule, RuleKind, Step};
use crate::event::{Event, Value};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Sequence {
    anchors: HashMap<String, Anchor>,
    /// `(time the anchor was set, key)`, to forget anchors after `within`.
    by_time: BTreeSet<(Timestamp, String)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Anchor {
    set_at: Timestamp,
    from: Timestamp,
    event_id: String,
    event_ts: Timestamp,
    /// Whether `from` came from an `at` field.
    from_field: bool,
    remembered: Vec<(String, Option<String>)>,
}

fn key_of(event: &Event, step: &Step, registry: Option<&Registry>) -> Option<String> {
    event.field(&step.key, registry).as_key()
}

impl Sequence {
    pub(super) fn observe(
        &mut self,
        rule: &Rule,
        kind: &RuleKind,
        event: &Event,
        registry: Option<&Registry>,
    ) -> Option<Hit> {
        let RuleKind::Sequence {
            first,
            then,
            grace_us,
            differ,
            within_us,
        } = kind
        else {
            unreachable!("sequence evaluator for a sequence rule")
        };
        let ts = event.ts();
        // First the anchors this event sets (the first that matches; an
        // existing anchor is kept: the earliest one decides).
        for step in first {
            if !step.matcher.matches(event, registry) {
                continue;
            }
            let Some(key) = key_of(event, step, registry) else {
                continue;
            };
            let from = match &step.at {
                Some(field) => match event.field(field, registry) {
                    Value::Time(t) => t,
                    _ => continue,
                },
                None => ts,
            };
            if !self.anchors.contains_key(&key) {
                self.by_time.insert((ts, key.clone()));
                self.anchors.insert(
                    key,
                    Anchor {
                        set_at: ts,
                        from,
                        event_id: event.event_id().to_string(),
                        event_ts: ts,
                        from_field: step.at.is_some(),
                        remembered: step
                            .remember
                            .iter()
                            .map(|(name, field)| {
                                (name.clone(), event.field(field, registry).as_key())
                            })
                            .collect(),
                    },
                );
            }
            break;
        }
        if !then.matcher.matches(event, registry) {
            return None;
        }
        let key = key_of(event, then, registry)?;
        let anchor = self.anchors.get(&key)?;
        if anchor.event_id == event.event_id() && !anchor.from_field {
            return None;
        }
        if anchor.set_at.0 < ts.0 - within_us || ts.0 < anchor.from.0 + grace_us {
            return None;
        }
        let mut differences = Vec::new();
        for (remembered, field) in differ {
            let was = anchor
                .remembered
                .iter()
                .find(|(n, _)| n == remembered)
                .and_then(|(_, v)| v.clone());
            let now = event.field(field, registry).as_key();
            if let (Some(a), Some(b)) = (was, now) {
                if a != b {
                    differences.push(format!("{remembered} {a}, {field} {b}"));
                }
            }
        }
        if !differ.is_empty() && differences.is_empty() {
            return None;
        }
        let (group, _) = group_of(event, &rule.group_by, registry);
        let mut evidence = vec![(ts, event.event_id().to_string())];
        if anchor.event_id != event.event_id() {
            evidence.insert(0, (anchor.event_ts, anchor.event_id.clone()));
        }
        let late = secs(ts.0 - anchor.from.0);
        let detail = if differences.is_empty() {
            format!("{} {} s after the event it must not follow", then.key, late)
        } else {
            format!("{} used with {}", then.key, differences.join("; "))
        };
        Some(Hit {
            group,
            ts,
            evidence,
            detail,
        })
    }

    pub(super) fn evict(&mut self, now: Timestamp, within_us: i64) {
        while let Some((t, key)) = self.by_time.first().cloned() {
            if t.0 >= now.0 - within_us {
                break;
            }
            self.by_time.pop_first();
            self.anchors.remove(&key);
        }
    }

    pub(super) fn size(&self) -> usize {
        self.anchors.len()
    }
}
