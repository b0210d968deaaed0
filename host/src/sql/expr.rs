//! SQL expressions into CEL, with their SQL types: column references, literals, arithmetic,
//! comparisons, AND/OR/NOT, IS [NOT] NULL, BETWEEN, IN, LIKE, CASE, CAST, and function calls.
//! A call of a function that is not built in is a call of a UDF's scalar export: it becomes a
//! `udf` step before the expression, whose result field the expression then reads.

use super::SqlError;
use sqlparser::ast::{
    BinaryOperator, CastKind, DataType, Expr, FunctionArg, FunctionArgExpr, FunctionArguments,
    Ident, InTarget, ObjectNamePart, Spanned, UnaryOperator, Value,
};
use sqlparser::tokenizer::Location;
use std::collections::BTreeMap;

/// A SQL type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    /// INTEGER, INT.
    Integer,
    /// BIGINT.
    Bigint,
    /// DOUBLE.
    Double,
    /// VARCHAR, STRING.
    Varchar,
    /// BOOLEAN.
    Boolean,
    /// Known only when the record arrives (a UDF's result, NULL).
    Any,
}

impl SqlType {
    /// The type a column declaration names.
    pub fn of(data_type: &DataType) -> Result<SqlType, String> {
        let text = data_type.to_string().to_ascii_uppercase();
        let base = text.split(['(', ' ']).next().unwrap_or("");
        match base {
            "INT" | "INTEGER" => Ok(SqlType::Integer),
            "BIGINT" => Ok(SqlType::Bigint),
            "DOUBLE" | "FLOAT" | "REAL" => Ok(SqlType::Double),
            "VARCHAR" | "STRING" | "TEXT" => Ok(SqlType::Varchar),
            "BOOLEAN" | "BOOL" => Ok(SqlType::Boolean),
            _ => Err(format!(
                "type {text} is not supported (INTEGER, BIGINT, DOUBLE, VARCHAR/STRING, BOOLEAN)"
            )),
        }
    }

    /// The SQL name.
    pub fn name(self) -> &'static str {
        match self {
            SqlType::Integer => "INTEGER",
            SqlType::Bigint => "BIGINT",
            SqlType::Double => "DOUBLE",
            SqlType::Varchar => "VARCHAR",
            SqlType::Boolean => "BOOLEAN",
            SqlType::Any => "ANY",
        }
    }

    /// The codec's field type for a declared column.
    pub fn field_type(self) -> &'static str {
        match self {
            SqlType::Integer => "integer",
            SqlType::Bigint => "bigint",
            SqlType::Double => "double",
            SqlType::Varchar => "string",
            SqlType::Boolean => "boolean",
            SqlType::Any => "any",
        }
    }

    fn numeric(self) -> bool {
        matches!(self, SqlType::Integer | SqlType::Bigint | SqlType::Double)
    }
}

/// A compiled expression.
#[derive(Debug, Clone)]
pub struct Typed {
    /// CEL text.
    pub cel: String,
    /// Its SQL type.
    pub ty: SqlType,
}

/// A UDF call the expression needs first: a `udf` transform in scalar mode.
#[derive(Debug, Clone)]
pub struct CallStep {
    /// The module (registry name).
    pub module: String,
    /// The function name, upper-cased.
    pub function: String,
    /// The arguments as CEL.
    pub args: Vec<String>,
    /// The field its result is written to.
    pub output: String,
}

/// What expressions are compiled against: the input columns, the stream's names, the
/// function-to-module mapping, and the UDF steps found so far.
pub struct Scope<'a> {
    /// The input columns and their types, in order.
    pub columns: &'a [(String, SqlType)],
    /// Names the columns may be qualified with (the stream and its alias).
    pub qualifiers: Vec<String>,
    /// `FUNCTION` → module, from `-- sluice: function.NAME = module` or `--function`.
    pub functions: &'a BTreeMap<String, String>,
    /// UDF steps needed, in order.
    pub steps: Vec<CallStep>,
    /// Numbers the steps' output fields across the statement.
    pub counter: &'a mut usize,
    /// Columns are not known (a push query): any name is a column of unknown type.
    pub open: bool,
}

/// The canonical name of an identifier: quoted as written, else upper-cased.
pub fn canonical(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_ascii_uppercase(),
    }
}

/// How CEL reads field `name`: the bare name when it is a plain identifier, else `value["..."]`.
pub fn field(name: &str) -> String {
    const RESERVED: &[&str] = &[
        "as",
        "break",
        "const",
        "continue",
        "else",
        "false",
        "for",
        "function",
        "if",
        "import",
        "in",
        "let",
        "loop",
        "package",
        "namespace",
        "null",
        "return",
        "true",
        "var",
        "void",
        "while",
        "value",
    ];
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain && !RESERVED.contains(&name) {
        name.to_string()
    } else {
        format!("value[{}]", string_literal(name))
    }
}

fn string_literal(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

const AGGREGATES: &[&str] = &[
    "COUNT",
    "SUM",
    "AVG",
    "MIN",
    "MAX",
    "COLLECT_LIST",
    "COLLECT_SET",
    "TOPK",
    "TOPKDISTINCT",
    "HISTOGRAM",
    "EARLIEST_BY_OFFSET",
    "LATEST_BY_OFFSET",
    "COUNT_DISTINCT",
    "STDDEV_SAMPLE",
    "CORRELATION",
];

impl Scope<'_> {
    /// `expr` as CEL with its type, or the first thing in it that is wrong or refused.
    pub fn compile(&mut self, expr: &Expr) -> Result<Typed, SqlError> {
        let at = expr.span().start;
        let refuse = |what: &str| Err(SqlError::at(at, format!("{what} is not supported")));
        match expr {
            Expr::Identifier(ident) => self.column(ident),
            Expr::CompoundIdentifier(parts) => match parts.as_slice() {
                [qualifier, column] if self.qualifiers.contains(&canonical(qualifier)) => {
                    self.column(column)
                }
                [qualifier, _] => Err(SqlError::at(
                    qualifier.span.start,
                    format!(
                        "unknown qualifier {} (the FROM stream is {})",
                        canonical(qualifier),
                        self.qualifiers.join(" or ")
                    ),
                )),
                _ => refuse("struct field access (a.b.c)"),
            },
            Expr::Value(value) => literal(&value.value, at),
            Expr::Nested(inner) => {
                let inner = self.compile(inner)?;
                Ok(Typed {
                    cel: format!("({})", inner.cel),
                    ty: inner.ty,
                })
            }
            Expr::UnaryOp { op, expr: inner } => {
                let operand = self.compile(inner)?;
                match op {
                    UnaryOperator::Not => {
                        expect(&operand, SqlType::Boolean, "NOT", at)?;
                        Ok(Typed {
                            cel: format!("!({})", operand.cel),
                            ty: SqlType::Boolean,
                        })
                    }
                    UnaryOperator::Minus if operand.ty.numeric() || operand.ty == SqlType::Any => {
                        Ok(Typed {
                            cel: format!("-({})", operand.cel),
                            ty: operand.ty,
                        })
                    }
                    UnaryOperator::Plus => Ok(operand),
                    other => Err(SqlError::at(
                        at,
                        format!("{other} on {} is not supported", operand.ty.name()),
                    )),
                }
            }
            Expr::BinaryOp { left, op, right } => self.binary(left, op, right, at),
            Expr::IsNull(inner) => Ok(self.null_test(inner, "==")?),
            Expr::IsNotNull(inner) => Ok(self.null_test(inner, "!=")?),
            Expr::Between {
                expr: inner,
                negated,
                low,
                high,
            } => {
                let ge = self.binary(inner, &BinaryOperator::GtEq, low, at)?;
                let le = self.binary(inner, &BinaryOperator::LtEq, high, at)?;
                let both = format!("({} && {})", ge.cel, le.cel);
                Ok(Typed {
                    cel: if *negated { format!("!{both}") } else { both },
                    ty: SqlType::Boolean,
                })
            }
            Expr::In {
                expr: inner,
                target: InTarget::List(list),
                negated,
                ..
            } => {
                let mut tests = Vec::new();
                for item in list {
                    tests.push(self.binary(inner, &BinaryOperator::Eq, item, at)?.cel);
                }
                let any = format!("({})", tests.join(" || "));
                Ok(Typed {
                    cel: if *negated { format!("!{any}") } else { any },
                    ty: SqlType::Boolean,
                })
            }
            Expr::Like {
                negated,
                any: false,
                expr: inner,
                pattern,
                escape_char: None,
            } => {
                let subject = self.compile(inner)?;
                expect(&subject, SqlType::Varchar, "LIKE", at)?;
                let Expr::Value(value) = pattern.as_ref() else {
                    return refuse("LIKE with a pattern that is not a string literal");
                };
                let Value::SingleQuotedString(pattern) = &value.value else {
                    return refuse("LIKE with a pattern that is not a string literal");
                };
                let mut regex = String::from("^");
                for c in pattern.chars() {
                    match c {
                        '%' => regex.push_str(".*"),
                        '_' => regex.push('.'),
                        c if c.is_ascii_alphanumeric() || c == ' ' => regex.push(c),
                        c => {
                            regex.push('\\');
                            regex.push(c);
                        }
                    }
                }
                regex.push('$');
                let test = format!("{}.matches({})", subject.cel, string_literal(&regex));
                Ok(Typed {
                    cel: if *negated { format!("!({test})") } else { test },
                    ty: SqlType::Boolean,
                })
            }
            Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                let mut branches = Vec::new();
                let mut ty: Option<SqlType> = None;
                for when in conditions {
                    let condition = match operand {
                        Some(operand) => {
                            self.binary(operand, &BinaryOperator::Eq, &when.condition, at)?
                        }
                        None => {
                            let c = self.compile(&when.condition)?;
                            expect(&c, SqlType::Boolean, "CASE WHEN", at)?;
                            c
                        }
                    };
                    let result = self.compile(&when.result)?;
                    ty = Some(unify(ty, result.ty));
                    branches.push((condition.cel, result.cel));
                }
                let mut cel = match else_result {
                    Some(other) => {
                        let other = self.compile(other)?;
                        ty = Some(unify(ty, other.ty));
                        other.cel
                    }
                    None => "null".into(),
                };
                for (condition, result) in branches.into_iter().rev() {
                    cel = format!("({condition} ? {result} : {cel})");
                }
                Ok(Typed {
                    cel,
                    ty: ty.unwrap_or(SqlType::Any),
                })
            }
            Expr::Cast {
                kind,
                expr: inner,
                data_type,
                ..
            } => {
                if !matches!(kind, CastKind::Cast) {
                    return refuse("this form of CAST (use CAST(x AS type))");
                }
                let target = SqlType::of(data_type).map_err(|e| SqlError::at(at, e))?;
                let operand = self.compile(inner)?;
                cast(operand, target, at)
            }
            Expr::Function(function) => self.function(function, at),
            Expr::Subquery(_) | Expr::Exists { .. } | Expr::In { .. } => refuse("a subquery"),
            other => Err(SqlError::at(
                at,
                format!("the expression `{other}` is not supported"),
            )),
        }
    }

    fn column(&self, ident: &Ident) -> Result<Typed, SqlError> {
        let name = canonical(ident);
        match self.columns.iter().find(|(c, _)| *c == name) {
            Some((name, ty)) => Ok(Typed {
                cel: field(name),
                ty: *ty,
            }),
            None if self.open => Ok(Typed {
                cel: field(&name),
                ty: SqlType::Any,
            }),
            None => {
                let known: Vec<&str> = self
                    .columns
                    .iter()
                    .map(|(c, _)| c.as_str())
                    .filter(|c| !c.starts_with('_'))
                    .collect();
                Err(SqlError::at(
                    ident.span.start,
                    format!(
                        "unknown column {name} (the columns are {})",
                        known.join(", ")
                    ),
                ))
            }
        }
    }

    fn null_test(&mut self, inner: &Expr, op: &str) -> Result<Typed, SqlError> {
        let operand = self.compile(inner)?;
        Ok(Typed {
            cel: format!("({} {op} null)", operand.cel),
            ty: SqlType::Boolean,
        })
    }

    fn binary(
        &mut self,
        left: &Expr,
        op: &BinaryOperator,
        right: &Expr,
        at: Location,
    ) -> Result<Typed, SqlError> {
        use BinaryOperator as B;
        let l = self.compile(left)?;
        let r = self.compile(right)?;
        let mismatch = || {
            SqlError::at(
                at,
                format!("cannot apply {op} to {} and {}", l.ty.name(), r.ty.name()),
            )
        };
        match op {
            B::And | B::Or => {
                expect(&l, SqlType::Boolean, &op.to_string(), at)?;
                expect(&r, SqlType::Boolean, &op.to_string(), at)?;
                let cel_op = if matches!(op, B::And) { "&&" } else { "||" };
                Ok(Typed {
                    cel: format!("({} {cel_op} {})", l.cel, r.cel),
                    ty: SqlType::Boolean,
                })
            }
            B::Plus | B::Minus | B::Multiply | B::Divide | B::Modulo | B::StringConcat => {
                let cel_op = match op {
                    B::Plus | B::StringConcat => "+",
                    B::Minus => "-",
                    B::Multiply => "*",
                    B::Divide => "/",
                    _ => "%",
                };
                if matches!(op, B::StringConcat)
                    || (l.ty == SqlType::Varchar
                        && r.ty == SqlType::Varchar
                        && matches!(op, B::Plus))
                {
                    let as_text = |t: &Typed| match t.ty {
                        SqlType::Varchar => t.cel.clone(),
                        _ => format!("string({})", t.cel),
                    };
                    return Ok(Typed {
                        cel: format!("({} + {})", as_text(&l), as_text(&r)),
                        ty: SqlType::Varchar,
                    });
                }
                let (lc, rc, ty) = numeric_pair(&l, &r).ok_or_else(mismatch)?;
                Ok(Typed {
                    cel: format!("({lc} {cel_op} {rc})"),
                    ty,
                })
            }
            B::Eq | B::NotEq | B::Lt | B::LtEq | B::Gt | B::GtEq => {
                let cel_op = match op {
                    B::Eq => "==",
                    B::NotEq => "!=",
                    B::Lt => "<",
                    B::LtEq => "<=",
                    B::Gt => ">",
                    _ => ">=",
                };
                let (lc, rc) = if l.ty == r.ty || l.ty == SqlType::Any || r.ty == SqlType::Any {
                    (l.cel.clone(), r.cel.clone())
                } else {
                    match numeric_pair(&l, &r) {
                        Some((lc, rc, _)) => (lc, rc),
                        None => return Err(mismatch()),
                    }
                };
                Ok(Typed {
                    cel: format!("({lc} {cel_op} {rc})"),
                    ty: SqlType::Boolean,
                })
            }
            other => Err(SqlError::at(
                at,
                format!("the operator {other} is not supported"),
            )),
        }
    }

    fn function(
        &mut self,
        function: &sqlparser::ast::Function,
        at: Location,
    ) -> Result<Typed, SqlError> {
        let name = match function.name.0.as_slice() {
            [ObjectNamePart::Identifier(ident)] => canonical(ident),
            _ => {
                return Err(SqlError::at(
                    at,
                    format!("the function name {} is not supported", function.name),
                ))
            }
        };
        if AGGREGATES.contains(&name.as_str()) {
            return Err(SqlError::at(
                at,
                format!(
                    "aggregate functions ({name}) are not supported: Sluice SQL has no GROUP BY"
                ),
            ));
        }
        if function.over.is_some() || function.filter.is_some() || !function.within_group.is_empty()
        {
            return Err(SqlError::at(
                at,
                format!("{name} with OVER, FILTER or WITHIN GROUP is not supported"),
            ));
        }
        let args: Vec<&Expr> = match &function.args {
            FunctionArguments::None => Vec::new(),
            FunctionArguments::List(list) => {
                if list.duplicate_treatment.is_some() || !list.clauses.is_empty() {
                    return Err(SqlError::at(
                        at,
                        format!("{name}(DISTINCT ...) and clauses in a call are not supported"),
                    ));
                }
                let mut args = Vec::new();
                for arg in &list.args {
                    match arg {
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(expr)) => args.push(expr),
                        _ => {
                            return Err(SqlError::at(
                                at,
                                format!("{name}: only plain arguments are supported (no *, no named arguments)"),
                            ))
                        }
                    }
                }
                args
            }
            FunctionArguments::Subquery(_) => {
                return Err(SqlError::at(at, "subqueries are not supported"))
            }
        };
        let mut compiled = Vec::new();
        for arg in &args {
            compiled.push(self.compile(arg)?);
        }
        if let ("LEN" | "LENGTH", [text]) = (name.as_str(), compiled.as_slice()) {
            expect(text, SqlType::Varchar, &name, at)?;
            return Ok(Typed {
                cel: format!("size({})", text.cel),
                ty: SqlType::Integer,
            });
        }
        *self.counter += 1;
        let output = format!(
            "_{}_{}",
            name.replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
            self.counter
        );
        let module = self
            .functions
            .get(&name)
            .cloned()
            .unwrap_or_else(|| name.to_ascii_lowercase());
        self.steps.push(CallStep {
            module,
            function: name,
            args: compiled.into_iter().map(|t| t.cel).collect(),
            output: output.clone(),
        });
        Ok(Typed {
            cel: field(&output),
            ty: SqlType::Any,
        })
    }
}

fn literal(value: &Value, at: Location) -> Result<Typed, SqlError> {
    match value {
        Value::Number(text, _) => {
            let text = text.to_string();
            if let Ok(n) = text.parse::<i64>() {
                let ty = if i32::try_from(n).is_ok() {
                    SqlType::Integer
                } else {
                    SqlType::Bigint
                };
                return Ok(Typed {
                    cel: n.to_string(),
                    ty,
                });
            }
            match text.parse::<f64>() {
                Ok(d) if d.is_finite() => Ok(Typed {
                    cel: format!("{d:?}"),
                    ty: SqlType::Double,
                }),
                _ => Err(SqlError::at(
                    at,
                    format!("the number {text} does not fit a BIGINT or DOUBLE"),
                )),
            }
        }
        Value::SingleQuotedString(text) => Ok(Typed {
            cel: string_literal(text),
            ty: SqlType::Varchar,
        }),
        Value::Boolean(b) => Ok(Typed {
            cel: b.to_string(),
            ty: SqlType::Boolean,
        }),
        Value::Null => Ok(Typed {
            cel: "null".into(),
            ty: SqlType::Any,
        }),
        other => Err(SqlError::at(
            at,
            format!("the literal {other} is not supported"),
        )),
    }
}

fn expect(t: &Typed, want: SqlType, what: &str, at: Location) -> Result<(), SqlError> {
    if t.ty == want || t.ty == SqlType::Any {
        Ok(())
    } else {
        Err(SqlError::at(
            at,
            format!("{what} needs {}, not {}", want.name(), t.ty.name()),
        ))
    }
}

/// Both sides as CEL numbers of one kind (integers widened to double when the other is a
/// double: CEL does not mix them), and the result type; `None` when one is not a number.
fn numeric_pair(l: &Typed, r: &Typed) -> Option<(String, String, SqlType)> {
    use SqlType::*;
    match (l.ty, r.ty) {
        (Any, _) | (_, Any) => Some((l.cel.clone(), r.cel.clone(), Any)),
        (Double, Double) => Some((l.cel.clone(), r.cel.clone(), Double)),
        (Double, Integer | Bigint) => Some((l.cel.clone(), format!("double({})", r.cel), Double)),
        (Integer | Bigint, Double) => Some((format!("double({})", l.cel), r.cel.clone(), Double)),
        (Integer, Integer) => Some((l.cel.clone(), r.cel.clone(), Integer)),
        (Integer | Bigint, Integer | Bigint) => Some((l.cel.clone(), r.cel.clone(), Bigint)),
        _ => None,
    }
}

fn unify(so_far: Option<SqlType>, next: SqlType) -> SqlType {
    match so_far {
        None => next,
        Some(t) if t == next => t,
        Some(_) => SqlType::Any,
    }
}

/// `CAST(operand AS target)`; NULL stays NULL when the operand's type is only known at run time.
fn cast(operand: Typed, target: SqlType, at: Location) -> Result<Typed, SqlError> {
    use SqlType::*;
    let convert = match target {
        Integer | Bigint => "int",
        Double => "double",
        Varchar => "string",
        Boolean => {
            if matches!(operand.ty, Boolean | Any) {
                return Ok(Typed {
                    cel: operand.cel,
                    ty: Boolean,
                });
            }
            return Err(SqlError::at(
                at,
                format!(
                    "CAST from {} to BOOLEAN is not supported",
                    operand.ty.name()
                ),
            ));
        }
        Any => unreachable_any(),
    };
    if operand.ty == target
        || (matches!(operand.ty, Integer | Bigint) && matches!(target, Integer | Bigint))
    {
        return Ok(Typed {
            cel: operand.cel,
            ty: target,
        });
    }
    if operand.ty == Boolean && target != Varchar {
        return Err(SqlError::at(
            at,
            format!("CAST from BOOLEAN to {} is not supported", target.name()),
        ));
    }
    let cel = if operand.ty == Any {
        format!("({0} == null ? null : {convert}({0}))", operand.cel)
    } else {
        format!("{convert}({})", operand.cel)
    };
    Ok(Typed { cel, ty: target })
}

/// `SqlType::of` never answers `Any`.
fn unreachable_any() -> &'static str {
    "dyn"
}
