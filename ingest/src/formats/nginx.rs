//! The `nginx` format (being written; see issue 5).

use crate::adapter::{Adapter, LineContext, ParseError, Parsed};

/// The `nginx` adapter.
#[derive(Debug, Clone, Default)]
pub struct Nginx;

impl Nginx {
    pub const NAME: &'static str = "nginx";
}

impl Adapter for Nginx {
    fn name(&self) -> &'static str {
        Nginx::NAME
    }

    fn parse_line(
        &self,
        _line: &[u8],
        _ctx: &LineContext<'_>,
        _out: &mut Vec<Parsed>,
    ) -> Result<(), ParseError> {
        Err(ParseError::MissingField("nginx adapter".into()))
    }
}
