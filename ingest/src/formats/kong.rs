//! The `kong` format (being written; see issue 5).

use crate::adapter::{Adapter, LineContext, ParseError, Parsed};

/// The `kong` adapter.
#[derive(Debug, Clone, Default)]
pub struct Kong;

impl Kong {
    pub const NAME: &'static str = "kong";
}

impl Adapter for Kong {
    fn name(&self) -> &'static str {
        Kong::NAME
    }

    fn parse_line(
        &self,
        _line: &[u8],
        _ctx: &LineContext<'_>,
        _out: &mut Vec<Parsed>,
    ) -> Result<(), ParseError> {
        Err(ParseError::MissingField("kong adapter".into()))
    }
}
