//! SQL's function calls on a `udf` transform (`function = "ANOMALY"`): each record's arguments
//! are CEL expressions over its JSON fields, the whole batch goes to the module's scalar export
//! in one call, and each result is written to the `output` field of the record, which keeps
//! the rest of its fields. Records whose arguments cannot be evaluated fail alone.

use crate::message::Message;
use crate::udf_runtime::{RecordError, RecordResult, ScalarValue, UdfWorker};

/// A compiled call: the function, its argument expressions and where the result goes.
pub struct ScalarCall {
    function: String,
    args: Vec<(String, cel::Program)>,
    output: String,
}

impl ScalarCall {
    /// The call the config asks for, `None` without `function`.
    pub fn build(config: &super::UdfTransformConfig) -> Result<Option<Self>, String> {
        let Some(function) = &config.function else {
            return Ok(None);
        };
        let args = config
            .args
            .iter()
            .map(|arg| {
                cel::Program::compile(arg)
                    .map(|program| (arg.clone(), program))
                    .map_err(|e| format!("argument {arg:?}: not a valid CEL expression: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Some(ScalarCall {
            function: function.clone(),
            args,
            output: config.output.clone().unwrap_or_default(),
        }))
    }

    /// One result per message, in order: the message with the result added, or why not.
    pub fn run(&self, worker: &mut UdfWorker, batch: &[Message]) -> Vec<RecordResult> {
        let mut docs = Vec::with_capacity(batch.len());
        let mut rows = Vec::with_capacity(batch.len());
        for message in batch {
            match self.arguments(message) {
                Ok((doc, row)) => {
                    docs.push(Ok(doc));
                    rows.push(row);
                }
                Err(err) => docs.push(Err(err)),
            }
        }
        let mut results = worker.call_scalar(&self.function, &rows).into_iter();
        batch
            .iter()
            .zip(docs)
            .map(|(message, doc)| {
                let mut doc = doc?;
                let result = results.next().unwrap_or_else(|| {
                    Err(RecordError::BadOutput {
                        reason: "no result for the row".into(),
                    })
                });
                let value = result.map_err(|err| self.name_event(err, &doc))?;
                doc.insert(self.output.clone(), json_of(value));
                let value = serde_json::to_vec(&doc).map_err(|e| RecordError::BadOutput {
                    reason: e.to_string(),
                })?;
                Ok(vec![Message {
                    value,
                    ..message.clone()
                }])
            })
            .collect()
    }

    /// The record's JSON object and its argument values.
    fn arguments(
        &self,
        message: &Message,
    ) -> Result<(serde_json::Map<String, serde_json::Value>, Vec<ScalarValue>), RecordError> {
        let doc: serde_json::Value = serde_json::from_slice(&message.value).map_err(|e| {
            RecordError::InvalidInput(format!("{}: the value is not JSON: {e}", self.function))
        })?;
        let serde_json::Value::Object(fields) = doc else {
            return Err(RecordError::InvalidInput(format!(
                "{}: the value is not a JSON object",
                self.function
            )));
        };
        let context =
            crate::transforms::cel_row::context(serde_json::Value::Object(fields.clone()))
                .map_err(|e| self.invalid(&fields, e))?;
        let mut row = Vec::with_capacity(self.args.len());
        for (i, (text, program)) in self.args.iter().enumerate() {
            let value = program
                .execute(&context)
                .map_err(|e| e.to_string())
                .and_then(scalar_of)
                .map_err(|e| self.invalid(&fields, format!("argument {} ({text}): {e}", i + 1)))?;
            row.push(value);
        }
        Ok((fields, row))
    }

    fn invalid(
        &self,
        doc: &serde_json::Map<String, serde_json::Value>,
        reason: String,
    ) -> RecordError {
        RecordError::InvalidInput(format!("{}{}: {reason}", event_prefix(doc), self.function))
    }

    /// The guest's error for a row, naming the record's event and the function.
    fn name_event(
        &self,
        err: RecordError,
        doc: &serde_json::Map<String, serde_json::Value>,
    ) -> RecordError {
        let prefix = format!("{}{}", event_prefix(doc), self.function);
        match err {
            RecordError::InvalidInput(reason) => {
                RecordError::InvalidInput(format!("{prefix}: {reason}"))
            }
            RecordError::Failed(reason) => RecordError::Failed(format!("{prefix}: {reason}")),
            other => other,
        }
    }
}

/// `event N: ` when the record has an event id.
fn event_prefix(doc: &serde_json::Map<String, serde_json::Value>) -> String {
    crate::message::event_id_in(doc)
        .map(|id| format!("event {id}: "))
        .unwrap_or_default()
}

fn scalar_of(value: cel::Value) -> Result<ScalarValue, String> {
    match value {
        cel::Value::Null => Ok(ScalarValue::Null),
        cel::Value::Bool(b) => Ok(ScalarValue::Boolean(b)),
        cel::Value::Int(i) => Ok(ScalarValue::Integer(i)),
        cel::Value::UInt(u) => i64::try_from(u)
            .map(ScalarValue::Integer)
            .map_err(|_| format!("{u} does not fit a BIGINT")),
        cel::Value::Float(f) => Ok(ScalarValue::Double(f)),
        cel::Value::String(s) => Ok(ScalarValue::Text(s.as_ref().clone())),
        other => Err(format!("{other:?} is not a SQL value")),
    }
}

fn json_of(value: ScalarValue) -> serde_json::Value {
    match value {
        ScalarValue::Null => serde_json::Value::Null,
        ScalarValue::Boolean(b) => serde_json::Value::Bool(b),
        ScalarValue::Integer(i) => serde_json::Value::from(i),
        // A non-finite double has no JSON form: null, as ksqlDB's JSON serializer does not
        // write one either.
        ScalarValue::Double(d) => serde_json::Number::from_f64(d)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        ScalarValue::Text(t) => serde_json::Value::String(t),
    }
}
