//! Shared types of scopewatch, with no IO: the event schema of the lake, the
//! SMART scope algebra, what a FHIR request needs, the app registry and the
//! configuration types.

pub mod config;
pub mod events;
pub mod lake;
pub mod perms;
pub mod registry;
pub mod request;
pub mod resource_types;
pub mod scope;

pub use perms::{Context, Perms};
