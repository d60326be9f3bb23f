//! The rule file: TOML as written (serde, unknown fields refused), validated
//! into [`Rules`] before anything runs. The built-in rules ship as
//! [`DEFAULT_RULES`]; a site copies and tunes it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::alert::Severity;
use crate::event::is_field;
use crate::matcher::{Matcher, WhereTable};

/// The built-in rules (`rules/default-rules.toml`), used when no rule file
/// is configured.
pub const DEFAULT_RULES: &str = include_str!("../default-rules.toml");

/// The current format version of rule files.
pub const FORMAT_VERSION: u32 = 1;

/// A rule file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("{file}: cannot read the rule file: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: not a valid rule file: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: rule `{rule}`: {message}")]
    Rule {
        file: String,
        rule: String,
        message: String,
    },
    #[error("{file}: {message}")]
    File { file: String, message: String },
}

/// A rule file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    /// Format version; must be 1.
    pub version: u32,
    /// The rules, as `[[rule]]` tables.
    #[serde(default)]
    pub rule: Vec<RuleEntry>,
    /// Where alerts go (email, webhooks, routes, digest).
    #[serde(default)]
    pub delivery: crate::deliver::DeliveryFile,
}

/// One `[[rule]]` as written. Which parameters apply depends on `type`; a
/// parameter of another type is refused.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleEntry {
    /// Unique id, e.g. `refresh-token-replay`; alerts name it.
    pub id: String,
    /// One line, shown as the alert's title.
    pub title: String,
    /// What it catches and how to tune it.
    pub description: Option<String>,
    /// threshold, distinct, new_value, spike or sequence.
    #[serde(rename = "type")]
    pub kind: String,
    /// low, medium, high or critical.
    pub severity: String,
    /// false turns the rule off without deleting it. Default true.
    pub enabled: Option<bool>,
    /// Only events whose fields equal these values (a list: any of them).
    #[serde(default, rename = "where")]
    pub where_all: WhereTable,
    /// ... and whose fields equal none of these.
    #[serde(default)]
    pub where_not: WhereTable,
    /// ... and that have a value in these fields.
    #[serde(default)]
    pub present: Vec<String>,
    /// Fields whose values form the group an alert is about.
    #[serde(default)]
    pub group_by: Vec<String>,
    /// Sliding window (threshold, distinct, spike), in seconds.
    pub window_secs: Option<u64>,
    /// Fires when the count (threshold) or the number of distinct values
    /// (distinct) in the window reaches this.
    pub threshold: Option<u64>,
    /// The field whose values are counted (distinct) or remembered (new_value).
    pub field: Option<String>,
    /// new_value: a value not seen for this long is new again.
    pub history_secs: Option<u64>,
    /// new_value: a group seen for less than this is still learning (its
    /// values are remembered, not alerted). 0 alerts from the first event.
    pub learn_secs: Option<u64>,
    /// spike: the baseline is the same time of `day` or of `week` in past periods.
    pub seasonality: Option<String>,
    /// spike: how many past periods make the baseline.
    pub baseline_periods: Option<u32>,
    /// spike: no alert below this many events in the window.
    pub min_volume: Option<u64>,
    /// spike: fires when the window's count reaches `factor` x the baseline.
    pub factor: Option<f64>,
    /// sequence: the events that make a later one forbidden (any of them).
    #[serde(default)]
    pub first: Vec<StepEntry>,
    /// sequence: the event that must not follow.
    pub then: Option<StepEntry>,
    /// sequence: how long a `first` event is remembered, in seconds.
    pub within_secs: Option<u64>,
    /// sequence: `then` must come at least this long after the anchor time.
    pub grace_secs: Option<u64>,
    /// sequence: pairs `[remembered, field]` (a name from the first
    /// event's `remember`, a field of the `then` event); when given, fires
    /// only if at least one pair has both values and they differ.
    #[serde(default)]
    pub differ: Vec<[String; 2]>,
    /// Repeats for the same group within this many seconds of the alert's
    /// last evidence fold into it. Default 3600.
    pub dedup_secs: Option<u64>,
    /// Destinations (names from `[[delivery.destination]]`) besides routes.
    #[serde(default)]
    pub destinations: Vec<String>,
}

/// One side of a sequence rule as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepEntry {
    #[serde(default, rename = "where")]
    pub where_all: WhereTable,
    #[serde(default)]
    pub where_not: WhereTable,
    #[serde(default)]
    pub present: Vec<String>,
    /// The field joining first and then (e.g. `token_id`).
    pub key: String,
    /// first only: the field holding the time from which `then` is
    /// forbidden (e.g. `expires_at`); default the event's own time. When
    /// set, an event may also be its own `then`.
    pub at: Option<String>,
    /// first only: values to keep for `differ`, as `{ name = "field" }`.
    #[serde(default)]
    pub remember: BTreeMap<String, String>,
}

/// A validated rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub title: String,
    pub description: String,
    pub severity: Severity,
    pub matcher: Matcher,
    pub group_by: Vec<String>,
    /// Microseconds.
    pub dedup_us: i64,
    pub destinations: Vec<String>,
    pub kind: RuleKind,
    /// A digest of the definition: evaluator state saved for another
    /// definition of the rule is dropped at load.
    pub fingerprint: String,
}

/// What a rule measures. Durations in microseconds.
#[derive(Debug, Clone)]
pub enum RuleKind {
    Threshold {
        window_us: i64,
        threshold: u64,
    },
    Distinct {
        field: String,
        window_us: i64,
        threshold: u64,
    },
    NewValue {
        field: String,
        history_us: i64,
        learn_us: i64,
    },
    Spike {
        window_us: i64,
        /// Length of one season: a day or a week.
        period_us: i64,
        baseline_periods: u32,
        min_volume: u64,
        factor: f64,
    },
    Sequence {
        first: Vec<Step>,
        then: Step,
        within_us: i64,
        grace_us: i64,
        differ: Vec<(String, String)>,
    },
}

impl RuleKind {
    pub fn name(&self) -> &'static str {
        match self {
            RuleKind::Threshold { .. } => "threshold",
            RuleKind::Distinct { .. } => "distinct",
            RuleKind::NewValue { .. } => "new_value",
            RuleKind::Spike { .. } => "spike",
            RuleKind::Sequence { .. } => "sequence",
        }
    }
}

/// One validated side of a sequence.
#[derive(Debug, Clone)]
pub struct Step {
    pub matcher: Matcher,
    pub key: String,
    pub at: Option<String>,
    pub remember: Vec<(String, String)>,
}

/// A validated rule file.
#[derive(Debug, Clone)]
pub struct Rules {
    pub rules: Vec<Rule>,
    pub delivery: crate::deliver::Delivery,
    /// Where the rules came from (a path, or `built-in`).
    pub origin: String,
}

const US: i64 = 1_000_000;

impl Rules {
    /// The built-in rules.
    pub fn builtin() -> Rules {
        Rules::from_toml_str(DEFAULT_RULES, "built-in").expect("the built-in rules are valid")
    }

    pub fn load(path: &Path) -> Result<Rules, RulesError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| RulesError::Read {
            file: file.clone(),
            source,
        })?;
        Rules::from_toml_str(&text, &file)
    }

    pub fn from_toml_str(text: &str, file: &str) -> Result<Rules, RulesError> {
        let parsed: RuleFile = toml::from_str(text).map_err(|e| RulesError::Parse {
            file: file.to_string(),
            message: e.to_string(),
        })?;
        parsed.validate(file)
    }

    pub fn rule(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == id)
    }
}

impl RuleFile {
    pub fn validate(&self, file: &str) -> Result<Rules, RulesError> {
        let file_err = |message: String| RulesError::File {
            file: file.to_string(),
            message,
        };
        if self.version != FORMAT_VERSION {
            return Err(file_err(format!(
                "version {} is not supported: this scopewatch reads rule files of version {FORMAT_VERSION}",
                self.version
            )));
        }
        let delivery = self
            .delivery
            .validate()
            .map_err(|e| file_err(format!("[delivery]: {e}")))?;
        let destinations = delivery.destination_names();
        let mut rules = Vec::new();
        for entry in &self.rule {
            let err = |message: String| RulesError::Rule {
                file: file.to_string(),
                rule: entry.id.clone(),
                message,
            };
            if rules.iter().any(|r: &Rule| r.id == entry.id) {
                return Err(err("the id is used twice".into()));
            }
            let rule = entry.validate().map_err(err)?;
            for d in &rule.destinations {
                if !destinations.iter().any(|n| n == d) {
                    return Err(err(format!(
                        "destination `{d}` is not defined: add a [[delivery.destination]] named `{d}`"
                    )));
                }
            }
            if entry.enabled != Some(false) {
                rules.push(rule);
            }
        }
        // Routes naming a rule that does not exist would never fire.
        for (i, route) in delivery.routes.iter().enumerate() {
            for id in route.rules.iter().flatten() {
                if !self.rule.iter().any(|r| &r.id == id) {
                    return Err(file_err(format!(
                        "[delivery] route[{i}].rules: no rule has the id `{id}`"
                    )));
                }
            }
        }
        Ok(Rules {
            rules,
            delivery,
            origin: file.to_string(),
        })
    }
}

fn check_field(name: &str, what: &str) -> Result<(), String> {
    if is_field(name) {
        Ok(())
    } else {
        Err(format!(
            "`{what}` names `{name}`, which is not a field (see the README's list of rule fields)"
        ))
    }
}

impl StepEntry {
    fn validate(&self, side: &str) -> Result<Step, String> {
        check_field(&self.key, &format!("{side}.key"))?;
        if let Some(at) = &self.at {
            check_field(at, &format!("{side}.at"))?;
        }
        for (name, field) in &self.remember {
            check_field(field, &format!("{side}.remember.{name}"))?;
        }
        Ok(Step {
            matcher: Matcher::new(&self.where_all, &self.where_not, &self.present)
                .map_err(|e| format!("{side}: {e}"))?,
            key: self.key.clone(),
            at: self.at.clone(),
            remember: self
                .remember
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
    }
}

impl RuleEntry {
    fn validate(&self) -> Result<Rule, String> {
        if self.id.is_empty()
            || !self
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err("the id must be letters, digits, `-` or `_`".into());
        }
        let severity = Severity::parse(&self.severity).ok_or_else(|| {
            format!(
                "severity `{}`: use low, medium, high or critical",
                self.severity
            )
        })?;
        for f in &self.group_by {
            check_field(f, "group_by")?;
        }
        let matcher = Matcher::new(&self.where_all, &self.where_not, &self.present)?;
        // Which optional parameters each type takes; any other is refused,
        // so a misplaced parameter is not silently ignored.
        let given: Vec<(&str, bool)> = vec![
            ("window_secs", self.window_secs.is_some()),
            ("threshold", self.threshold.is_some()),
            ("field", self.field.is_some()),
            ("history_secs", self.history_secs.is_some()),
            ("learn_secs", self.learn_secs.is_some()),
            ("seasonality", self.seasonality.is_some()),
            ("baseline_periods", self.baseline_periods.is_some()),
            ("min_volume", self.min_volume.is_some()),
            ("factor", self.factor.is_some()),
            ("first", !self.first.is_empty()),
            ("then", self.then.is_some()),
            ("within_secs", self.within_secs.is_some()),
            ("grace_secs", self.grace_secs.is_some()),
            ("differ", !self.differ.is_empty()),
        ];
        let allowed: &[&str] = match self.kind.as_str() {
            "threshold" => &["window_secs", "threshold"],
            "distinct" => &["window_secs", "threshold", "field"],
            "new_value" => &["field", "history_secs", "learn_secs"],
            "spike" => &[
                "window_secs",
                "seasonality",
                "baseline_periods",
                "min_volume",
                "factor",
            ],
            "sequence" => &["first", "then", "within_secs", "grace_secs", "differ"],
            other => {
                return Err(format!(
                    "type `{other}`: use threshold, distinct, new_value, spike or sequence"
                ))
            }
        };
        for (name, present) in &given {
            if *present && !allowed.contains(name) {
                return Err(format!(
                    "`{name}` is not a parameter of {} rules (they take {})",
                    self.kind,
                    allowed.join(", ")
                ));
            }
        }
        let need = |v: Option<u64>, name: &str| -> Result<u64, String> {
            match v {
                Some(0) => Err(format!("`{name}` must be more than 0")),
                Some(v) => Ok(v),
                None => Err(format!("{} rules need `{name}`", self.kind)),
            }
        };
        let field = || -> Result<String, String> {
            let f = self
                .field
                .clone()
                .ok_or_else(|| format!("{} rules need `field`", self.kind))?;
            check_field(&f, "field")?;
            Ok(f)
        };
        let kind = match self.kind.as_str() {
            "threshold" => RuleKind::Threshold {
                window_us: need(self.window_secs, "window_secs")? as i64 * US,
                threshold: need(self.threshold, "threshold")?,
            },
            "distinct" => RuleKind::Distinct {
                field: field()?,
                window_us: need(self.window_secs, "window_secs")? as i64 * US,
                threshold: need(self.threshold, "threshold")?,
            },
            "new_value" => RuleKind::NewValue {
                field: field()?,
                history_us: need(self.history_secs, "history_secs")? as i64 * US,
                learn_us: self.learn_secs.unwrap_or(0) as i64 * US,
            },
            "spike" => {
                let period_us = match self.seasonality.as_deref().unwrap_or("day") {
                    "day" => 86_400 * US,
                    "week" => 7 * 86_400 * US,
                    other => return Err(format!("seasonality `{other}`: use day or week")),
                };
                let factor = self.factor.unwrap_or(5.0);
                if !(factor > 1.0 && factor.is_finite()) {
                    return Err("`factor` must be more than 1".into());
                }
                let window_us = need(self.window_secs, "window_secs")? as i64 * US;
                if window_us > period_us {
                    return Err("`window_secs` must not be longer than the season".into());
                }
                RuleKind::Spike {
                    window_us,
                    period_us,
                    baseline_periods: self.baseline_periods.unwrap_or(4).max(1),
                    min_volume: need(self.min_volume, "min_volume")?,
                    factor,
                }
            }
            "sequence" => {
                if self.first.is_empty() {
                    return Err("sequence rules need at least one `[[rule.first]]`".into());
                }
                let then = self
                    .then
                    .as_ref()
                    .ok_or("sequence rules need `[rule.then]`")?;
                if then.at.is_some() || !then.remember.is_empty() {
                    return Err("`then` takes no `at` or `remember` (those are for `first`)".into());
                }
                let first = self
                    .first
                    .iter()
                    .enumerate()
                    .map(|(i, s)| s.validate(&format!("first[{i}]")))
                    .collect::<Result<Vec<_>, _>>()?;
                for [remembered, field] in &self.differ {
                    check_field(field, "differ")?;
                    if !first
                        .iter()
                        .any(|s| s.remember.iter().any(|(n, _)| n == remembered))
                    {
                        return Err(format!(
                            "`differ` compares `{remembered}`, which no `first` remembers"
                        ));
                    }
                }
                RuleKind::Sequence {
                    first,
                    then: then.validate("then")?,
                    within_us: need(self.within_secs, "within_secs")? as i64 * US,
                    grace_us: self.grace_secs.unwrap_or(0) as i64 * US,
                    differ: self
                        .differ
                        .iter()
                        .map(|[a, b]| (a.clone(), b.clone()))
                        .collect(),
                }
            }
            _ => unreachable!("checked above"),
        };
        let fingerprint = {
            use sha2::Digest;
            hex::encode(&sha2::Sha256::digest(format!("{self:?}").as_bytes())[..8])
        };
        Ok(Rule {
            id: self.id.clone(),
            title: self.title.clone(),
            description: self.description.clone().unwrap_or_default(),
            severity,
            matcher,
            group_by: self.group_by.clone(),
            dedup_us: self.dedup_secs.unwrap_or(3600) as i64 * US,
            destinations: self.destinations.clone(),
            kind,
            fingerprint,
        })
    }
}
