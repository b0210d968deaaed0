//! `${VAR}` and `${VAR:-default}` in pipeline string values; `$$` is a literal `$`.
//!
//! Pure: the environment is passed in as a lookup function, so validation does no I/O and
//! tests need not touch the process environment.

/// Replaces every `${VAR}` / `${VAR:-default}` in `text`. An unset `VAR` without a default,
/// or a malformed reference, is an error naming it.
pub fn interpolate(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    if !text.contains('$') {
        return Ok(text.to_string());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        let Some(body_and_tail) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let end = body_and_tail
            .find('}')
            .ok_or_else(|| format!("unclosed `${{` in {text:?}"))?;
        let body = &body_and_tail[..end];
        let (name, default) = match body.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (body, None),
        };
        let valid = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            return Err(format!("`${{{body}}}` is not a valid variable reference (use ${{NAME}} or ${{NAME:-default}})"));
        }
        match (env(name), default) {
            (Some(value), _) => out.push_str(&value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => {
                return Err(format!(
                    "environment variable {name} is not set (give a default with ${{{name}:-...}})"
                ))
            }
        }
        rest = &body_and_tail[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "HOST").then(|| "broker".to_string())
    }

    #[test]
    fn substitutes_with_and_without_defaults() {
        assert_eq!(
            interpolate("mqtt://${HOST}:1883", &env).unwrap(),
            "mqtt://broker:1883"
        );
        assert_eq!(interpolate("${PORT:-1883}", &env).unwrap(), "1883");
        assert_eq!(
            interpolate("${HOST:-x}/${PORT:-}", &env).unwrap(),
            "broker/"
        );
        assert_eq!(interpolate("cost $$5 $x", &env).unwrap(), "cost $5 $x");
    }

    #[test]
    fn unset_and_malformed_references_are_errors() {
        let err = interpolate("${NOPE}", &env).unwrap_err();
        assert!(err.contains("NOPE is not set"), "{err}");
        assert!(interpolate("${HOST", &env)
            .unwrap_err()
            .contains("unclosed"));
        assert!(interpolate("${1X}", &env)
            .unwrap_err()
            .contains("not a valid variable"));
    }
}
