//! The ECG anomaly UDF: scores each `EVENTID,v1#...#v210` event with the exact H2O autoencoder
//! of the original KSQL demo and emits `{"eventid":N,"anomaly_val":MSE}` keyed by EVENTID.
//!
//! The same code builds natively (an rlib, for the parity test and the Wasm-vs-native benchmark)
//! and as the `wasm32-wasip2` component `target/udfs/anomaly.wasm`. Thresholding is the
//! pipeline's job (a `filter` on `anomaly_val`), so every event's score comes out.

mod exp;
pub mod model;
pub mod payload;
mod short_decimal;
pub mod stages;

use sluice_udf::{export_udf, Config, Message, Udf, UdfError, Value};

/// Scores one payload: the event id in decimal (the record's key) and the JSON score, or what
/// was wrong with the payload.
///
/// Readings so large that the score overflows (say `1e300`) are an error, not an `inf` that
/// JSON cannot carry.
pub fn score_payload(value: &[u8]) -> Result<(String, String), payload::PayloadError> {
    let mut readings = [0.0f64; model::INPUTS];
    let event_id = payload::parse_into(value, &mut readings)?;
    let mse = score(&readings, Some(event_id))?;
    // Formatted once, for the key and the JSON.
    let key = payload::decimal(event_id);
    let json = payload::score_json(&key, mse);
    Ok((key, json))
}

/// Scores the readings alone, `v1#v2#...#v210` (the SQL column `SENSORINPUT`): the SQL
/// function `ANOMALY`. The same model and the same parsing as [`score_payload`], so the same
/// bits.
pub fn score_readings(readings_text: &[u8]) -> Result<f64, payload::PayloadError> {
    let mut readings = [0.0f64; model::INPUTS];
    payload::parse_readings(readings_text, None, &mut readings)?;
    score(&readings, None)
}

/// The reconstruction error of `readings`, or an error naming `event_id` when it is not finite.
fn score(
    readings: &[f64; model::INPUTS],
    event_id: Option<i64>,
) -> Result<f64, payload::PayloadError> {
    let mse = model::reconstruction_mse(readings);
    // The shadow tests' stand-in for a retrained model whose scores differ.
    #[cfg(feature = "double-score")]
    let mse = mse * 2.0;
    if !mse.is_finite() {
        return Err(payload::PayloadError {
            event_id,
            reason: format!("readings out of range: the reconstruction error is {mse}"),
        });
    }
    Ok(mse)
}

/// The UDF: stateless, no config.
pub struct AnomalyUdf;

impl Udf for AnomalyUdf {
    fn init(config: &Config) -> Result<Self, UdfError> {
        if let Some((key, _)) = config.entries().first() {
            return Err(UdfError::invalid_input(format!(
                "config: the anomaly UDF takes no keys, found `{key}`"
            )));
        }
        Ok(AnomalyUdf)
    }

    fn process(&mut self, msg: Message) -> Result<Vec<Message>, UdfError> {
        let (key, json) = score_payload(&msg.value).map_err(UdfError::invalid_input)?;
        Ok(vec![msg.with_key(key).with_value(json)])
    }

    /// `ANOMALY(SENSORINPUT)`: the score of one reading string, as a DOUBLE (NULL in, NULL out).
    fn call(&mut self, function: &str, args: Vec<Value>) -> Result<Value, UdfError> {
        if !function.eq_ignore_ascii_case("ANOMALY") {
            return Err(UdfError::invalid_input(format!(
                "no scalar function {function} in the anomaly UDF (it offers ANOMALY)"
            )));
        }
        match args.as_slice() {
            [Value::Text(readings)] => score_readings(readings.as_bytes())
                .map(Value::Double)
                .map_err(UdfError::invalid_input),
            [Value::Null] => Ok(Value::Null),
            [other] => Err(UdfError::invalid_input(format!(
                "ANOMALY takes the readings as VARCHAR, not {}",
                other.type_name()
            ))),
            _ => Err(UdfError::invalid_input(format!(
                "ANOMALY takes one argument (the readings), not {}",
                args.len()
            ))),
        }
    }
}

#[cfg(not(feature = "bench-stages"))]
export_udf!(AnomalyUdf);

/// The benchmark's build of this crate (`anomaly-stages.wasm`): runs the [`stages::Stage`] named by
/// the `stage` config key.
#[cfg(feature = "bench-stages")]
pub struct StagesUdf(stages::Stage);

#[cfg(feature = "bench-stages")]
impl Udf for StagesUdf {
    fn init(config: &Config) -> Result<Self, UdfError> {
        let name = config.require("stage")?;
        stages::Stage::from_name(name)
            .map(StagesUdf)
            .ok_or_else(|| {
                let known: Vec<&str> = stages::Stage::ALL.iter().map(|s| s.name()).collect();
                UdfError::invalid_input(format!(
                    "config: unknown stage `{name}` (one of {})",
                    known.join(", ")
                ))
            })
    }

    fn process(&mut self, msg: Message) -> Result<Vec<Message>, UdfError> {
        let value = stages::run(self.0, &msg.value).map_err(UdfError::invalid_input)?;
        Ok(vec![msg.with_value(value)])
    }
}

#[cfg(feature = "bench-stages")]
export_udf!(StagesUdf);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overflowing_score_is_an_error_naming_the_event() {
        let mut readings = vec!["0"; model::INPUTS];
        readings[3] = "1e300";
        let err = score_payload(format!("5,{}", readings.join("#")).as_bytes()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "event 5: readings out of range: the reconstruction error is inf"
        );
        // Large but representable: a valid JSON number.
        readings[3] = "1e150";
        let (_, json) = score_payload(format!("5,{}", readings.join("#")).as_bytes()).unwrap();
        assert!(json.ends_with("e297}"), "{json}");
    }

    #[test]
    fn the_sql_function_scores_the_readings_alone_with_the_same_bits() {
        let readings = vec!["0.25"; model::INPUTS].join("#");
        let (_, json) = score_payload(format!("7, {readings}").as_bytes()).unwrap();
        let mse = score_readings(format!(" {readings}").as_bytes()).unwrap();
        assert_eq!(json, payload::score_json("7", mse));
        let mut udf = AnomalyUdf;
        let called = udf.call("anomaly", vec![Value::Text(readings.clone())]);
        assert_eq!(called.unwrap(), Value::Double(mse));
        assert_eq!(udf.call("ANOMALY", vec![Value::Null]).unwrap(), Value::Null);
        let err = udf.call("ANOMALY", vec![Value::Integer(1)]).unwrap_err();
        assert_eq!(
            err.reason(),
            "ANOMALY takes the readings as VARCHAR, not BIGINT"
        );
        let err = udf.call("OTHER", vec![]).unwrap_err();
        assert!(err.reason().contains("no scalar function OTHER"), "{err:?}");
        let err = udf
            .call("ANOMALY", vec![Value::Text("1#2".into())])
            .unwrap_err();
        assert_eq!(
            err.reason(),
            "expected 210 readings separated by '#', found 2"
        );
    }
}
