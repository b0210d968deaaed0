//! Typed lookup in a UDF's `config` table, with errors that name the key and the value.

use crate::UdfError;
use std::str::FromStr;

/// The `config` table a pipeline gives a UDF (`[transforms.NAME.config]`), as ordered pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    entries: Vec<(String, String)>,
}

impl Config {
    /// Wraps the pairs the host passed to `init`.
    pub fn new(entries: Vec<(String, String)>) -> Self {
        Config { entries }
    }

    /// The raw value of `key` (the last one wins when a key repeats).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The raw value of `key`, or an `invalid-input` error saying it is missing.
    pub fn require(&self, key: &str) -> Result<&str, UdfError> {
        self.get(key)
            .ok_or_else(|| UdfError::invalid_input(format!("config: missing required key `{key}`")))
    }

    /// `key` parsed as `T`, or `default` when absent; a value that does not parse is an error
    /// naming the key, the value and the reason.
    pub fn parse_or<T>(&self, key: &str, default: T) -> Result<T, UdfError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        match self.get(key) {
            None => Ok(default),
            Some(raw) => parse_value(key, raw),
        }
    }

    /// `key` parsed as `T`; missing or unparsable is an error naming the key.
    pub fn parse<T>(&self, key: &str) -> Result<T, UdfError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        parse_value(key, self.require(key)?)
    }

    /// Every pair, in the order the pipeline wrote them.
    pub fn entries(&self) -> &[(String, String)] {
        &self.entries
    }
}

fn parse_value<T>(key: &str, raw: &str) -> Result<T, UdfError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    raw.trim().parse::<T>().map_err(|err| {
        UdfError::invalid_input(format!("config: key `{key}` = {raw:?} is not valid: {err}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Config {
        Config::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn typed_lookup_and_defaults() {
        let cfg = config(&[("threshold", " 1.5 "), ("mode", "a"), ("mode", "b")]);
        assert_eq!(cfg.parse::<f64>("threshold").unwrap(), 1.5);
        assert_eq!(cfg.parse_or::<u32>("batch", 7).unwrap(), 7);
        assert_eq!(cfg.get("mode"), Some("b"));
    }

    #[test]
    fn errors_name_the_key_and_value() {
        let cfg = config(&[("threshold", "high")]);
        let err = cfg.parse::<f64>("threshold").unwrap_err();
        assert!(matches!(err, UdfError::InvalidInput(_)), "{err:?}");
        assert_eq!(
            err.reason(),
            "config: key `threshold` = \"high\" is not valid: invalid float literal"
        );
        let err = cfg.require("missing").unwrap_err();
        assert_eq!(err.reason(), "config: missing required key `missing`");
    }
}
