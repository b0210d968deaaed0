//! Example UDF (map): `{"celsius": 21.5, ...}` becomes `{"fahrenheit": 70.7, ...}`.
//! Config: `field` (default `celsius`) names the input field.

use serde_json::{Map, Value};
use sluice_udf::{export_udf, Config, Message, Udf, UdfError};

pub struct UnitConvert {
    field: String,
}

impl Udf for UnitConvert {
    fn init(config: &Config) -> Result<Self, UdfError> {
        let field = config.get("field").unwrap_or("celsius").to_string();
        Ok(UnitConvert { field })
    }

    fn process(&mut self, msg: Message) -> Result<Vec<Message>, UdfError> {
        let mut doc: Map<String, Value> = msg.json()?;
        let celsius = doc
            .remove(&self.field)
            .and_then(|v| v.as_f64())
            .ok_or_else(|| {
                UdfError::invalid_input(format!("no number in field `{}`", self.field))
            })?;
        let fahrenheit = (celsius * 9.0 / 5.0 + 32.0) * 100.0;
        doc.insert("fahrenheit".into(), Value::from(fahrenheit.round() / 100.0));
        Ok(vec![msg.with_json(&doc)?])
    }
}

export_udf!(UnitConvert);
