//! Shared types of scopewatch, with no IO: the event schema of the lake, the
//! SMART scope algebra, what a FHIR request needs, the app registry and the
//! configuration types.

pub mod perms;
pub mod resource_types;

pub use perms::{Context, Perms};
