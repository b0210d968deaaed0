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

/// The running filter: a compiled CEL program.
pub struct Filter {
    program: cel::Program,
}

impl Filter {
    /// Compiles the condition.
    pub fn build(config: &FilterConfig) -> Result<Self, String> {
        cel::Program::compile(&config.condition)
            .map(|program| Filter { program })
            .map_err(|err| format!("not a valid CEL expression: {err}"))
    }

    /// Whether `value` (a JSON document) satisfies the condition; `Err` says why it cannot tell.
    pub fn keep(&self, value: &[u8]) -> Result<bool, String> {
        let doc: serde_json::Value =
            serde_json::from_slice(value).map_err(|e| format!("filter: value is not JSON: {e}"))?;
        let context = super::cel_row::context(doc).map_err(|e| format!("filter: {e}"))?;
        match self.program.execute(&context) {
            Ok(cel::Value::Bool(keep)) => Ok(keep),
            Ok(other) => Err(format!("filter: the condition gave {other:?}, not a bool")),
            Err(err) => Err(format!("filter: {err}")),
        }
    }

    /// Filters records until the input closes.
    pub fn run(
        self,
        mut input: tokio::sync::mpsc::Receiver<crate::flow::Record>,
        outputs: crate::flow::Outputs,
        ctx: crate::flow::ComponentContext,
    ) -> crate::flow::ComponentTask {
        Box::pin(async move {
            while let Some(record) = input.recv().await {
                match self.keep(&record.msg.value) {
                    Ok(true) => outputs.send(record).await,
                    Ok(false) => record.ack.done(),
                    Err(reason) => ctx.dead_letters.send(record, &ctx.metrics, &reason).await,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(condition: &str) -> Filter {
        Filter::build(&FilterConfig {
            condition: condition.into(),
        })
        .unwrap()
    }

    #[test]
    fn keeps_what_matches() {
        let f = filter("anomaly_val > 1.5");
        assert_eq!(
            f.keep(br#"{"eventid":4,"anomaly_val":1.6046904253398355}"#),
            Ok(true)
        );
        assert_eq!(
            f.keep(br#"{"eventid":1,"anomaly_val":1.2104138026620321}"#),
            Ok(false)
        );
        assert_eq!(
            filter("value.eventid == 4").keep(br#"{"eventid":4}"#),
            Ok(true)
        );
    }

    #[test]
    fn says_why_it_cannot_decide() {
        let f = filter("anomaly_val > 1.5");
        assert!(f.keep(b"not json").unwrap_err().contains("not JSON"));
        assert!(
            f.keep(br#"{"other":1}"#).is_err(),
            "an unknown variable is an error, not a silent false"
        );
        assert!(filter("anomaly_val")
            .keep(br#"{"anomaly_val":2.0}"#)
            .unwrap_err()
            .contains("not a bool"));
        assert!(Filter::build(&FilterConfig {
            condition: "x >".into()
        })
        .is_err());
    }
}
