//! The `fhir-auditevent` format (being written; see issue 5).

use crate::adapter::{Adapter, LineContext, ParseError, Parsed};

/// The `fhir-auditevent` adapter.
#[derive(Debug, Clone, Default)]
pub struct AuditEvent;

impl AuditEvent {
    pub const NAME: &'static str = "fhir-auditevent";
}

impl Adapter for AuditEvent {
    fn name(&self) -> &'static str {
        AuditEvent::NAME
    }

    fn parse_line(
        &self,
        _line: &[u8],
        _ctx: &LineContext<'_>,
        _out: &mut Vec<Parsed>,
    ) -> Result<(), ParseError> {
        Err(ParseError::MissingField("fhir-auditevent adapter".into()))
    }
}
