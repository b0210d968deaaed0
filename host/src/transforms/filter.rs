//! The `filter` transform: keeps records whose JSON value satisfies a CEL condition
//! (Common Expression Language, via the `cel` crate), e.g. `anomaly_val > 1.5`.
//! The value's top-level JSON fields are variables; the whole document is `value`.

use serde::Deserialize;

/// `[transforms.NAME] type = "filter"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// A CEL expression over the record's JSON fields that yields a bool.
    pub condition: String,
}

impl FilterConfig {
    /// Problems as `(field, message)`: the condition must parse as CEL.
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        match cel::Program::compile(&self.condition) {
            Ok(_) => Vec::new(),
            Err(err) => vec![("condition", format!("not a valid CEL expression: {err}"))],
        }
    }
}
