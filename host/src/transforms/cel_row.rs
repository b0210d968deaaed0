//! A record's JSON document as CEL sees it, shared by `filter`, `select` and SQL function
//! arguments: each top-level field a variable, the whole document `value`; and CEL's answers
//! back into JSON.

/// The evaluation context of `doc`.
pub fn context(doc: serde_json::Value) -> Result<cel::Context<'static, 'static>, String> {
    let mut context = cel::Context::default();
    if let serde_json::Value::Object(fields) = &doc {
        for (name, field) in fields {
            match scalar(field) {
                Some(value) => {
                    context.add_variable_from_value(name.as_str(), value);
                }
                None => context
                    .add_variable(name.as_str(), field.clone())
                    .map_err(|e| format!("field `{name}`: {e}"))?,
            }
        }
    }
    context
        .add_variable("value", doc)
        .map_err(|e| e.to_string())?;
    Ok(context)
}

/// A JSON scalar as CEL sees it in SQL: a whole number is an `int` (CEL's own conversion makes a
/// positive one a `uint`, which CEL will not add to or compare with an `int` literal).
fn scalar(json: &serde_json::Value) -> Option<cel::Value> {
    match json {
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Some(cel::Value::Int(i)),
            (None, Some(u), _) => Some(cel::Value::UInt(u)),
            (_, _, Some(f)) => Some(cel::Value::Float(f)),
            _ => None,
        },
        _ => None,
    }
}

/// A CEL result as a JSON value: numbers, text, booleans and null (a SQL value), or why not.
pub fn to_json(value: cel::Value) -> Result<serde_json::Value, String> {
    use serde_json::Value as Json;
    match value {
        cel::Value::Null => Ok(Json::Null),
        cel::Value::Bool(b) => Ok(Json::Bool(b)),
        cel::Value::Int(i) => Ok(Json::from(i)),
        cel::Value::UInt(u) => Ok(Json::from(u)),
        cel::Value::Float(f) => serde_json::Number::from_f64(f)
            .map(Json::Number)
            .ok_or_else(|| format!("{f} has no JSON form")),
        cel::Value::String(s) => Ok(Json::String(s.as_ref().clone())),
        other => Err(format!("{other:?} is not a SQL value")),
    }
}
