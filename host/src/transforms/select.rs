//! The `select` transform: SQL's projection. Each record's JSON value becomes a new JSON object
//! of named columns, in order, each a CEL expression over the record's fields (as in `filter`),
//! e.g. `{ name = "ANOMALY_VAL", expr = "double(_ANOMALY_1)" }`. `sluice run FILE.sql` compiles
//! a `SELECT` list into one.

use serde::Deserialize;

/// `[transforms.NAME] type = "select"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectConfig {
    /// The output columns, in order.
    pub columns: Vec<SelectColumn>,
}

/// One output column.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectColumn {
    /// The column's name in the output JSON object.
    pub name: String,
    /// A CEL expression over the input record's fields.
    pub expr: String,
}

impl SelectConfig {
    /// Problems as `(field, message)`: at least one column, unique names, expressions that parse.
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if self.columns.is_empty() {
            problems.push(("columns", "name at least one column".into()));
        }
        for (i, column) in self.columns.iter().enumerate() {
            if column.name.is_empty() {
                problems.push(("columns", format!("column {} has no name", i + 1)));
            }
            if self.columns[..i].iter().any(|c| c.name == column.name) {
                problems.push((
                    "columns",
                    format!("column `{}` is named twice", column.name),
                ));
            }
            if let Err(err) = cel::Program::compile(&column.expr) {
                problems.push((
                    "columns",
                    format!(
                        "column `{}`: not a valid CEL expression: {err}",
                        column.name
                    ),
                ));
            }
        }
        problems
    }
}

/// The running projection: one compiled program per column.
pub struct Select {
    columns: Vec<(String, cel::Program)>,
}

impl Select {
    /// Compiles the columns.
    pub fn build(config: &SelectConfig) -> Result<Self, String> {
        let columns = config
            .columns
            .iter()
            .map(|column| {
                cel::Program::compile(&column.expr)
                    .map(|program| (column.name.clone(), program))
                    .map_err(|err| {
                        format!(
                            "column `{}`: not a valid CEL expression: {err}",
                            column.name
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Select { columns })
    }

    /// The projected JSON object of `value`, or why it cannot be made (naming the column).
    pub fn project(&self, value: &[u8]) -> Result<Vec<u8>, String> {
        let doc: serde_json::Value =
            serde_json::from_slice(value).map_err(|e| format!("select: value is not JSON: {e}"))?;
        let context = super::cel_row::context(doc).map_err(|e| format!("select: {e}"))?;
        let mut row = serde_json::Map::new();
        for (name, program) in &self.columns {
            let value = program
                .execute(&context)
                .map_err(|e| e.to_string())
                .and_then(super::cel_row::to_json)
                .map_err(|e| format!("select: column `{name}`: {e}"))?;
            row.insert(name.clone(), value);
        }
        serde_json::to_vec(&row).map_err(|e| format!("select: {e}"))
    }

    /// Projects records until the input closes; a record that cannot be projected goes to dead
    /// letters with the reason.
    pub fn run(
        self,
        mut input: tokio::sync::mpsc::Receiver<crate::flow::Record>,
        outputs: crate::flow::Outputs,
        ctx: crate::flow::ComponentContext,
    ) -> crate::flow::ComponentTask {
        Box::pin(async move {
            while let Some(mut record) = input.recv().await {
                match self.project(&record.msg.value) {
                    Ok(value) => {
                        record.msg.value = value;
                        outputs.send(record).await
                    }
                    Err(reason) => ctx.dead_letters.send(record, &ctx.metrics, &reason).await,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn select(columns: &[(&str, &str)]) -> Select {
        Select::build(&SelectConfig {
            columns: columns
                .iter()
                .map(|(name, expr)| SelectColumn {
                    name: name.to_string(),
                    expr: expr.to_string(),
                })
                .collect(),
        })
        .unwrap()
    }

    #[test]
    fn projects_named_columns_in_order() {
        let s = select(&[("EVENTID", "EVENTID"), ("ANOMALY_VAL", "double(_F1)")]);
        assert_eq!(
            s.project(br#"{"SENSORINPUT":"x","EVENTID":106,"_F1":2.2022320685879437}"#)
                .unwrap(),
            br#"{"EVENTID":106,"ANOMALY_VAL":2.2022320685879437}"#
        );
        let s = select(&[("X", "A * 2 + 1"), ("S", "string(A)"), ("B", "A > 1")]);
        assert_eq!(
            s.project(br#"{"A":3}"#).unwrap(),
            br#"{"X":7,"S":"3","B":true}"#
        );
    }

    #[test]
    fn a_null_check_before_a_cast_lets_values_through_and_keeps_null() {
        let s = select(&[("V", "(_F == null ? null : double(_F))")]);
        assert_eq!(s.project(br#"{"_F":2.5}"#).unwrap(), br#"{"V":2.5}"#);
        assert_eq!(s.project(br#"{"_F":"2.5"}"#).unwrap(), br#"{"V":2.5}"#);
        assert_eq!(s.project(br#"{"_F":null}"#).unwrap(), br#"{"V":null}"#);
        let mixed = select(&[("B", "double(A) > 1.5"), ("C", "(A + 1)")]);
        assert_eq!(
            mixed.project(br#"{"A":2}"#).unwrap(),
            br#"{"B":true,"C":3}"#
        );
    }

    #[test]
    fn says_which_column_failed() {
        let s = select(&[("X", "MISSING + 1")]);
        let err = s.project(br#"{"A":1}"#).unwrap_err();
        assert!(err.starts_with("select: column `X`: "), "{err}");
        assert!(s.project(b"nope").unwrap_err().contains("not JSON"));
        let config = SelectConfig {
            columns: vec![
                SelectColumn {
                    name: "A".into(),
                    expr: "1 +".into(),
                },
                SelectColumn {
                    name: "A".into(),
                    expr: "1".into(),
                },
            ],
        };
        let problems = config.validate();
        assert_eq!(problems.len(), 2, "{problems:?}");
    }
}
