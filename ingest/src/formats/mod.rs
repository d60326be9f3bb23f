//! Log format adapters, one module per format. Each implements
//! [`crate::adapter::Adapter`] and calls [`crate::adapter::enrich_access`]
//! for access lines.

pub mod canonical;

use crate::adapter::Adapter;

/// The adapter for a configured format name, if there is one.
pub fn by_name(name: &str) -> Option<Box<dyn Adapter>> {
    match name {
        // "canonical" is the format's description, accepted as an alias.
        canonical::Canonical::NAME | "canonical" => Some(Box::new(canonical::Canonical)),
        _ => None,
    }
}

/// The format names [`by_name`] knows, for error messages.
pub const NAMES: &[&str] = &[canonical::Canonical::NAME];
