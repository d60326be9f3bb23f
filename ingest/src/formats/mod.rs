//! Log format adapters, one module per format. Each implements
//! [`crate::adapter::Adapter`] and calls [`crate::adapter::enrich_access`]
//! for access lines.

pub mod auditevent;
pub mod canonical;
pub mod envoy;
pub mod gateway;
pub mod keycloak;
pub mod kong;
pub mod nginx;

use crate::adapter::Adapter;

/// The adapter for a configured format name, if there is one.
pub fn by_name(name: &str) -> Option<Box<dyn Adapter>> {
    match name {
        // "canonical" is the format's description, accepted as an alias.
        canonical::Canonical::NAME | "canonical" => Some(Box::new(canonical::Canonical)),
        keycloak::Keycloak::NAME => Some(Box::new(keycloak::Keycloak)),
        auditevent::AuditEvent::NAME => Some(Box::new(auditevent::AuditEvent)),
        kong::Kong::NAME => Some(Box::new(kong::Kong)),
        nginx::Nginx::NAME => Some(Box::new(nginx::Nginx)),
        envoy::Envoy::NAME => Some(Box::new(envoy::Envoy)),
        _ => None,
    }
}

/// The format names [`by_name`] knows, for error messages.
pub const NAMES: &[&str] = &[
    canonical::Canonical::NAME,
    keycloak::Keycloak::NAME,
    auditevent::AuditEvent::NAME,
    kong::Kong::NAME,
    nginx::Nginx::NAME,
    envoy::Envoy::NAME,
];
