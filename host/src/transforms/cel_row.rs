//! A record's JSON document as CEL sees it, shared by `filter`, `select` and SQL function
//! arguments: each top-level field a variable, the whole document `value`; and CEL's answers
//! back into JSON.

/// The evaluation context of `doc`.
pub fn context(doc: serde_json::Value) -> Result<cel::Context<'static, 'static>, String> {
    let mut context = cel::Context::default();
    if let serde_json::Value::Object(fields) = &doc {
        for (name, field) in fields {
            context
                .add_variable(name.as_str(), field.clone())
                .map_err(|e| format!("field `{name}`: {e}"))?;
        }
    }
    context
        .add_variable("value", doc)
        .map_err(|e| e.to_string())?;
    Ok(context)
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
