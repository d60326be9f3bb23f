//! The engine: every enabled rule's evaluator, fed events in event-time
//! order, folding hits into an [`AlertStore`]. Streaming and backtest both
//! drive this one type, so they give the same alerts on the same events.
//!
//! Old state is evicted as event time passes whole hours (event time, not
//! the clock: the same data evicts at the same points in both modes).

use std::collections::BTreeMap;
use std::sync::Arc;

use scopewatch_model::events::Timestamp;
use scopewatch_model::registry::Registry;
use serde::{Deserialize, Serialize};

use crate::config::Rules;
use crate::eval::{Evaluator, Hit};
use crate::event::Event;
use crate::store::{AlertStore, Folded};

const HOUR_US: i64 = 3_600_000_000;

/// Version of the saved engine state.
const SNAPSHOT_VERSION: u32 = 1;

#[derive(Debug)]
pub struct Engine {
    rules: Arc<Rules>,
    registry: Option<Arc<Registry>>,
    evaluators: Vec<Evaluator>,
    /// The last event judged, in `(time, event_id)` order.
    watermark: Option<(Timestamp, String)>,
    evicted_hour: i64,
    /// Events judged, and those that came after a later one was judged.
    pub judged: u64,
    pub late: u64,
}

/// The engine's state as saved between runs.
#[derive(Debug, Serialize, Deserialize)]
pub struct Snapshot {
    version: u32,
    watermark: Option<(Timestamp, String)>,
    evicted_hour: i64,
    /// Rule id -> (definition fingerprint, state).
    rules: BTreeMap<String, (String, Evaluator)>,
}

impl Engine {
    pub fn new(rules: Arc<Rules>, registry: Option<Arc<Registry>>) -> Engine {
        let evaluators = rules.rules.iter().map(Evaluator::new).collect();
        Engine {
            rules,
            registry,
            evaluators,
            watermark: None,
            evicted_hour: i64::MIN,
            judged: 0,
            late: 0,
        }
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// The last event judged.
    pub fn watermark(&self) -> Option<&(Timestamp, String)> {
        self.watermark.as_ref()
    }

    /// Judges `events` (in `(time, event_id)` order) and returns every hit
    /// with the index of its rule.
    pub fn judge(&mut self, events: &[Event]) -> Vec<(usize, Hit)> {
        let registry = self.registry.as_deref();
        let mut hits = Vec::new();
        for event in events {
            let key = event.order_key();
            match &self.watermark {
                Some((t, id)) if key <= (*t, id.as_str()) => self.late += 1,
                _ => self.watermark = Some((key.0, key.1.to_string())),
            }
            self.judged += 1;
            let hour = event.ts().0.div_euclid(HOUR_US);
            if hour > self.evicted_hour {
                if self.evicted_hour != i64::MIN {
                    let now = Timestamp(hour * HOUR_US);
                    for (rule, eval) in self.rules.rules.iter().zip(&mut self.evaluators) {
                        eval.evict(rule, now);
                    }
                }
                self.evicted_hour = hour;
            }
            for (i, (rule, eval)) in self
                .rules
                .rules
                .iter()
                .zip(&mut self.evaluators)
                .enumerate()
            {
                for hit in eval.observe(rule, event, registry) {
                    hits.push((i, hit));
                }
            }
        }
        hits
    }

    /// Judges `events` and folds the hits into `store`; returns the ids of
    /// the alerts raised (to notify).
    pub fn judge_into(&mut self, events: &[Event], store: &mut AlertStore) -> Vec<String> {
        let mut raised = Vec::new();
        for (i, hit) in self.judge(events) {
            let rule = &self.rules.rules[i];
            if let Folded::Raised(id) = store.fold(rule, hit) {
                raised.push(id);
            }
        }
        raised
    }

    /// Entries held by all evaluators (see [`Evaluator::size`]).
    pub fn state_size(&self) -> usize {
        self.evaluators.iter().map(Evaluator::size).sum()
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            version: SNAPSHOT_VERSION,
            watermark: self.watermark.clone(),
            evicted_hour: self.evicted_hour,
            rules: self
                .rules
                .rules
                .iter()
                .zip(&self.evaluators)
                .map(|(r, e)| (r.id.clone(), (r.fingerprint.clone(), e.clone())))
                .collect(),
        }
    }

    /// Takes up saved state: each rule whose definition is unchanged gets
    /// its state back; a changed or new rule starts empty. Returns the ids
    /// of rules that started empty.
    pub fn restore(&mut self, snapshot: Snapshot) -> Vec<String> {
        let mut fresh = Vec::new();
        if snapshot.version != SNAPSHOT_VERSION {
            return self.rules.rules.iter().map(|r| r.id.clone()).collect();
        }
        let mut saved = snapshot.rules;
        for (rule, eval) in self.rules.rules.iter().zip(&mut self.evaluators) {
            match saved.remove(&rule.id) {
                Some((fp, state)) if fp == rule.fingerprint && state.fits(rule) => *eval = state,
                _ => fresh.push(rule.id.clone()),
            }
        }
        self.watermark = snapshot.watermark;
        self.evicted_hour = snapshot.evicted_hour;
        fresh
    }
}
