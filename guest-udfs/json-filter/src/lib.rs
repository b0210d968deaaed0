//! Example UDF (filter): keeps a JSON message when its `field` equals `equals` (both from the
//! config), drops it otherwise.

use serde_json::{Map, Value};
use sluice_udf::{export_udf, Config, Message, Udf, UdfError};

pub struct JsonFilter {
    field: String,
    equals: String,
}

impl Udf for JsonFilter {
    fn init(config: &Config) -> Result<Self, UdfError> {
        Ok(JsonFilter {
            field: config.require("field")?.to_string(),
            equals: config.require("equals")?.to_string(),
        })
    }

    fn process(&mut self, msg: Message) -> Result<Vec<Message>, UdfError> {
        let doc: Map<String, Value> = msg.json()?;
        let keep = match doc.get(&self.field) {
            Some(Value::String(text)) => *text == self.equals,
            Some(number_or_bool) => {
                self.equals.parse::<Value>().ok().as_ref() == Some(number_or_bool)
            }
            None => false,
        };
        Ok(if keep { vec![msg] } else { vec![] })
    }
}

export_udf!(JsonFilter);
