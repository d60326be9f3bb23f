//! The `envoy` format (being written; see issue 5).

use crate::adapter::{Adapter, LineContext, ParseError, Parsed};

/// The `envoy` adapter.
#[derive(Debug, Clone, Default)]
pub struct Envoy;

impl Envoy {
    pub const NAME: &'static str = "envoy";
}

impl Adapter for Envoy {
    fn name(&self) -> &'static str {
        Envoy::NAME
    }

    fn parse_line(
        &self,
        _line: &[u8],
        _ctx: &LineContext<'_>,
        _out: &mut Vec<Parsed>,
    ) -> Result<(), ParseError> {
        Err(ParseError::MissingField("envoy adapter".into()))
    }
}
