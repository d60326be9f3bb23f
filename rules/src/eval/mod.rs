//! The evaluators: one per rule type, each a pure function of the events
//! it is given (in event-time order) and its explicit state, so each is
//! tested without IO. They report [`Hit`]s; folding hits into alerts is the
//! alert store's job.

mod distinct;
mod new_value;
mod sequence;
mod spike;
mod threshold;

use scopewatch_model::events::Timestamp;
use scopewatch_model::registry::Registry;
use serde::{Deserialize, Serialize};

use crate::config::{Rule, RuleKind};
use crate::event::{Event, Value};

pub use distinct::Distinct;
pub use new_value::NewValue;
pub use sequence::Sequence;
pub use spike::Spike;
pub use threshold::Threshold;

/// A rule fired on an event.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The rule's `group_by` fields and their values on the event.
    pub group: Vec<(String, String)>,
    /// The time of the event that made it fire.
    pub ts: Timestamp,
    /// The events that are its evidence, `(time, event_id)`, oldest first.
    pub evidence: Vec<(Timestamp, String)>,
    /// What was measured, without PHI.
    pub detail: String,
}

/// Shown for a group field the event has no value in.
pub const NO_VALUE: &str = "-";

/// Group values separated by a character no log value contains.
const SEP: char = '\u{1f}';

/// The group of `event` under `fields`: its values, and one string key.
pub fn group_of(
    event: &Event,
    fields: &[String],
    registry: Option<&Registry>,
) -> (Vec<(String, String)>, String) {
    let mut key = String::new();
    let mut group = Vec::with_capacity(fields.len());
    for (i, f) in fields.iter().enumerate() {
        let v = event
            .field(f, registry)
            .as_key()
            .unwrap_or_else(|| NO_VALUE.to_string());
        if i > 0 {
            key.push(SEP);
        }
        key.push_str(&v);
        group.push((f.clone(), v));
    }
    (group, key)
}

/// The values of `field` on `event` (each element of a list).
pub fn values_of(event: &Event, field: &str, registry: Option<&Registry>) -> Vec<String> {
    match event.field(field, registry) {
        Value::Missing => Vec::new(),
        v => v.items(),
    }
}

/// Seconds, for details.
fn secs(us: i64) -> i64 {
    us / 1_000_000
}

/// One rule's evaluator and its state.
// Externally tagged: an internally tagged enum cannot read back maps with
// integer keys (the spike's buckets).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Evaluator {
    Threshold(Threshold),
    Distinct(Distinct),
    NewValue(NewValue),
    Spike(Spike),
    Sequence(Sequence),
}

impl Evaluator {
    /// A fresh evaluator for `rule`.
    pub fn new(rule: &Rule) -> Evaluator {
        match &rule.kind {
            RuleKind::Threshold { .. } => Evaluator::Threshold(Threshold::default()),
            RuleKind::Distinct { .. } => Evaluator::Distinct(Distinct::default()),
            RuleKind::NewValue { .. } => Evaluator::NewValue(NewValue::default()),
            RuleKind::Spike { .. } => Evaluator::Spike(Spike::default()),
            RuleKind::Sequence { .. } => Evaluator::Sequence(Sequence::default()),
        }
    }

    /// Whether this state belongs to a rule of `rule`'s type.
    pub fn fits(&self, rule: &Rule) -> bool {
        matches!(
            (self, &rule.kind),
            (Evaluator::Threshold(_), RuleKind::Threshold { .. })
                | (Evaluator::Distinct(_), RuleKind::Distinct { .. })
                | (Evaluator::NewValue(_), RuleKind::NewValue { .. })
                | (Evaluator::Spike(_), RuleKind::Spike { .. })
                | (Evaluator::Sequence(_), RuleKind::Sequence { .. })
        )
    }

    /// Judges one event (the rule's `where` is checked here; sequence steps
    /// check their own).
    pub fn observe(&mut self, rule: &Rule, event: &Event, registry: Option<&Registry>) -> Vec<Hit> {
        if !rule.matcher.matches(event, registry) {
            return Vec::new();
        }
        match (self, &rule.kind) {
            (
                Evaluator::Threshold(s),
                RuleKind::Threshold {
                    window_us,
                    threshold,
                },
            ) => s
                .observe(rule, *window_us, *threshold, event, registry)
                .into_iter()
                .collect(),
            (
                Evaluator::Distinct(s),
                RuleKind::Distinct {
                    field,
                    window_us,
                    threshold,
                },
            ) => s
                .observe(rule, field, *window_us, *threshold, event, registry)
                .into_iter()
                .collect(),
            (
                Evaluator::NewValue(s),
                RuleKind::NewValue {
                    field,
                    history_us,
                    learn_us,
                },
            ) => s.observe(rule, field, *history_us, *learn_us, event, registry),
            (Evaluator::Spike(s), kind @ RuleKind::Spike { .. }) => {
                s.observe(rule, kind, event, registry).into_iter().collect()
            }
            (Evaluator::Sequence(s), kind @ RuleKind::Sequence { .. }) => {
                s.observe(rule, kind, event, registry).into_iter().collect()
            }
            _ => panic!("evaluator state does not fit rule {}", rule.id),
        }
    }

    /// Drops state that can no longer change a result once events up to
    /// `now` have been judged. Never changes what fires.
    pub fn evict(&mut self, rule: &Rule, now: Timestamp) {
        match (self, &rule.kind) {
            (Evaluator::Threshold(s), RuleKind::Threshold { window_us, .. }) => {
                s.evict(now, *window_us)
            }
            (Evaluator::Distinct(s), RuleKind::Distinct { window_us, .. }) => {
                s.evict(now, *window_us)
            }
            (Evaluator::NewValue(s), RuleKind::NewValue { history_us, .. }) => {
                s.evict(now, *history_us)
            }
            (Evaluator::Spike(s), kind @ RuleKind::Spike { .. }) => s.evict(now, kind),
            (Evaluator::Sequence(s), RuleKind::Sequence { within_us, .. }) => {
                s.evict(now, *within_us)
            }
            _ => {}
        }
    }

    /// How many entries the state holds (groups, values, anchors): what
    /// must stay bounded as groups come and go.
    pub fn size(&self) -> usize {
        match self {
            Evaluator::Threshold(s) => s.size(),
            Evaluator::Distinct(s) => s.size(),
            Evaluator::NewValue(s) => s.size(),
            Evaluator::Spike(s) => s.size(),
            Evaluator::Sequence(s) => s.size(),
        }
    }
}

#[cfg(test)]
mod tests;
