//! The `keycloak` format (being written; see issue 5).

use crate::adapter::{Adapter, LineContext, ParseError, Parsed};

/// The `keycloak` adapter.
#[derive(Debug, Clone, Default)]
pub struct Keycloak;

impl Keycloak {
    pub const NAME: &'static str = "keycloak";
}

impl Adapter for Keycloak {
    fn name(&self) -> &'static str {
        Keycloak::NAME
    }

    fn parse_line(
        &self,
        _line: &[u8],
        _ctx: &LineContext<'_>,
        _out: &mut Vec<Parsed>,
    ) -> Result<(), ParseError> {
        Err(ParseError::MissingField("keycloak adapter".into()))
    }
}
