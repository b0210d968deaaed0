//! The ECG wire format: parse `EVENTID,v1#v2#...#v210` and print `{"eventid":N,"anomaly_val":X}`.
//!
//! Whitespace around any number is allowed (the original demo publishes `"106, 9.88# 9.13# ..."`).
//! Anything else that is off is a [`PayloadError`] naming the event (when known) and the reason:
//! never a panic, never a silent zero.

use crate::model::INPUTS;
use std::fmt;

/// One parsed ECG event.
#[derive(Debug, Clone, PartialEq)]
pub struct EcgEvent {
    /// The sensor's event id (the original stream's `EVENTID INTEGER`).
    pub event_id: i64,
    /// The 210 readings, in order.
    pub readings: [f64; INPUTS],
}

/// Why a payload is not a valid ECG event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadError {
    /// The event id, when the payload got that far.
    pub event_id: Option<i64>,
    /// What was wrong.
    pub reason: String,
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.event_id {
            Some(id) => write!(f, "event {id}: {}", self.reason),
            None => write!(f, "{}", self.reason),
        }
    }
}

impl std::error::Error for PayloadError {}

fn error(event_id: Option<i64>, reason: String) -> PayloadError {
    PayloadError { event_id, reason }
}

/// Parses `EVENTID,v1#v2#...#v210`.
pub fn parse_event(payload: &[u8]) -> Result<EcgEvent, PayloadError> {
    let text = std::str::from_utf8(payload)
        .map_err(|err| error(None, format!("payload is not UTF-8 text: {err}")))?;
    if text.trim().is_empty() {
        return Err(error(None, "empty payload".into()));
    }
    let (id_text, readings_text) = text.split_once(',').ok_or_else(|| {
        error(
            None,
            format!("missing EVENTID: expected `EVENTID,v1#v2#...#v{INPUTS}`, found no comma"),
        )
    })?;
    let id_text = id_text.trim();
    if id_text.is_empty() {
        return Err(error(None, "missing EVENTID before the comma".into()));
    }
    let event_id: i64 = id_text
        .parse()
        .map_err(|_| error(None, format!("EVENTID {id_text:?} is not an integer")))?;
    let here = Some(event_id);

    let mut readings = [0.0f64; INPUTS];
    let mut count = 0usize;
    for (i, field) in readings_text.split('#').enumerate() {
        let field = field.trim();
        if i >= INPUTS {
            count = i + 1;
            continue; // keep counting for the error message
        }
        let value: f64 = field.parse().map_err(|_| {
            error(
                here,
                format!("reading {} of {INPUTS} is not a number: {field:?}", i + 1),
            )
        })?;
        if !value.is_finite() {
            return Err(error(
                here,
                format!("reading {} of {INPUTS} is not finite: {field:?}", i + 1),
            ));
        }
        readings[i] = value;
        count = i + 1;
    }
    if count != INPUTS {
        return Err(error(
            here,
            format!("expected {INPUTS} readings separated by '#', found {count}"),
        ));
    }
    Ok(EcgEvent { event_id, readings })
}

/// `{"eventid":N,"anomaly_val":X}` with `X` in shortest round-trip form.
pub fn score_json(event_id: i64, mse: f64) -> String {
    // `{:?}` on f64 is Rust's shortest representation that round-trips (like serde_json's ryu
    // output, but without a dependency); non-finite scores cannot occur for finite readings.
    format!("{{\"eventid\":{event_id},\"anomaly_val\":{mse:?}}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(id: &str, readings: &[&str]) -> String {
        format!("{id},{}", readings.join("#"))
    }

    fn fives(n: usize) -> Vec<&'static str> {
        vec!["5.0"; n]
    }

    #[test]
    fn accepts_whitespace_around_numbers() {
        let mut r = fives(INPUTS);
        r[0] = " 9.88";
        r[1] = " 9.13 ";
        let event = parse_event(payload("106 ", &r).as_bytes()).unwrap();
        assert_eq!(event.event_id, 106);
        assert_eq!(event.readings[0], 9.88);
        assert_eq!(event.readings[1], 9.13);
        assert_eq!(event.readings[209], 5.0);
    }

    #[test]
    fn wrong_count_names_event_and_count() {
        let err = parse_event(payload("7", &fives(209)).as_bytes()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "event 7: expected 210 readings separated by '#', found 209"
        );
        let err = parse_event(payload("7", &fives(211)).as_bytes()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "event 7: expected 210 readings separated by '#', found 211"
        );
    }

    #[test]
    fn non_number_names_the_reading() {
        let mut r = fives(INPUTS);
        r[16] = "abc";
        let err = parse_event(payload("8", &r).as_bytes()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "event 8: reading 17 of 210 is not a number: \"abc\""
        );
        r[16] = "";
        let err = parse_event(payload("8", &r).as_bytes()).unwrap_err();
        assert!(
            err.to_string()
                .contains("reading 17 of 210 is not a number: \"\""),
            "{err}"
        );
        r[16] = "inf";
        let err = parse_event(payload("8", &r).as_bytes()).unwrap_err();
        assert!(err.to_string().contains("not finite"), "{err}");
    }

    #[test]
    fn empty_and_missing_event_id() {
        assert_eq!(parse_event(b"").unwrap_err().to_string(), "empty payload");
        assert_eq!(
            parse_event(b"  \n").unwrap_err().to_string(),
            "empty payload"
        );
        let err = parse_event(b"1.0#2.0").unwrap_err().to_string();
        assert!(err.starts_with("missing EVENTID"), "{err}");
        let err = parse_event(b" ,1.0#2.0").unwrap_err().to_string();
        assert_eq!(err, "missing EVENTID before the comma");
        let err = parse_event(b"abc,1.0").unwrap_err().to_string();
        assert_eq!(err, "EVENTID \"abc\" is not an integer");
        assert!(parse_event(&[0xff, b','])
            .unwrap_err()
            .to_string()
            .contains("UTF-8"));
    }

    #[test]
    fn score_json_is_shortest_round_trip() {
        assert_eq!(
            score_json(106, 2.2022320685879437),
            r#"{"eventid":106,"anomaly_val":2.2022320685879437}"#
        );
        assert_eq!(score_json(1, 2.0), r#"{"eventid":1,"anomaly_val":2.0}"#);
    }
}
