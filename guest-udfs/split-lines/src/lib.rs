//! Example UDF (flat-map): `a;b;c` becomes three messages `a`, `b`, `c`, each keyed by its
//! position. Config: `separator` (default `;`). Empty parts are skipped.

use sluice_udf::{export_udf, Config, Message, Udf, UdfError};

pub struct SplitLines {
    separator: String,
}

impl Udf for SplitLines {
    fn init(config: &Config) -> Result<Self, UdfError> {
        let separator = config.get("separator").unwrap_or(";").to_string();
        if separator.is_empty() {
            return Err(UdfError::invalid_input("`separator` cannot be empty"));
        }
        Ok(SplitLines { separator })
    }

    fn process(&mut self, msg: Message) -> Result<Vec<Message>, UdfError> {
        let parts = msg.value_str()?.split(self.separator.as_str());
        let parts = parts.map(str::trim).filter(|p| !p.is_empty());
        let out = parts.enumerate().map(|(i, part)| {
            let message = msg.clone().with_value(part);
            message.with_key(i.to_string())
        });
        Ok(out.collect())
    }
}

export_udf!(SplitLines);
