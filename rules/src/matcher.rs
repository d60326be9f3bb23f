//! Which events a rule looks at: `where` (every field equals one of the
//! given values), `where_not` (no field equals any of its values) and
//! `present` (the fields have a value). A list field matches when any of
//! its elements does.

use std::collections::BTreeMap;

use scopewatch_model::registry::Registry;

use crate::event::{is_field, Event, Value};

/// A validated event filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matcher {
    all_of: Vec<(String, Vec<String>)>,
    none_of: Vec<(String, Vec<String>)>,
    present: Vec<String>,
}

/// A `where` value as written: a string, number or boolean, or a list of them.
pub type WhereTable = BTreeMap<String, toml::Value>;

fn scalar_text(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn conditions(table: &WhereTable, what: &str) -> Result<Vec<(String, Vec<String>)>, String> {
    let mut out = Vec::new();
    for (field, value) in table {
        if !is_field(field) {
            return Err(format!(
                "`{what}` names `{field}`, which is not a field (see the README's list of rule fields)"
            ));
        }
        let values = match value {
            toml::Value::Array(items) => items
                .iter()
                .map(scalar_text)
                .collect::<Option<Vec<_>>>()
                .filter(|v| !v.is_empty()),
            other => scalar_text(other).map(|s| vec![s]),
        }
        .ok_or_else(|| {
            format!(
                "`{what}.{field}`: use a string, number or boolean, or a non-empty list of them"
            )
        })?;
        out.push((field.clone(), values));
    }
    Ok(out)
}

impl Matcher {
    pub fn new(
        where_all: &WhereTable,
        where_not: &WhereTable,
        present: &[String],
    ) -> Result<Matcher, String> {
        for f in present {
            if !is_field(f) {
                return Err(format!("`present` names `{f}`, which is not a field"));
            }
        }
        Ok(Matcher {
            all_of: conditions(where_all, "where")?,
            none_of: conditions(where_not, "where_not")?,
            present: present.to_vec(),
        })
    }

    pub fn matches(&self, event: &Event, registry: Option<&Registry>) -> bool {
        let hit = |field: &str, values: &[String]| -> bool {
            match event.field(field, registry) {
                Value::Missing => false,
                Value::List(items) => items.iter().any(|i| values.iter().any(|v| v == i)),
                other => other.as_key().is_some_and(|k| values.contains(&k)),
            }
        };
        self.all_of.iter().all(|(f, v)| hit(f, v))
            && !self.none_of.iter().any(|(f, v)| hit(f, v))
            && self.present.iter().all(|f| match event.field(f, registry) {
                Value::Missing => false,
                Value::List(items) => !items.is_empty(),
                _ => true,
            })
    }
}
