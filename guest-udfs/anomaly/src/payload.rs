//! The ECG wire format: parse `EVENTID,v1#v2#...#v210` and print `{"eventid":N,"anomaly_val":X}`.
//!
//! Whitespace around any number is allowed (the original demo publishes `"106, 9.88# 9.13# ..."`).
//! Anything else that is off is a [`PayloadError`] naming the event (when known) and the reason:
//! never a panic, never a silent zero.

use crate::model::INPUTS;
use crate::short_decimal;
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

#[cold]
#[inline(never)]
fn wrong_count(event_id: Option<i64>, count: usize) -> PayloadError {
    error(
        event_id,
        format!("expected {INPUTS} readings separated by '#', found {count}"),
    )
}

/// Parses `EVENTID,v1#v2#...#v210`.
///
/// Works on bytes: short plain decimals (the wire format in practice) eight bytes at a time
/// ([`short_decimal`]), longer plain decimals in one pass, and any other field through
/// `str::trim` and `str::parse`, so the accepted language is exactly that of
/// `str::parse::<f64>` with surrounding whitespace allowed.
pub fn parse_event(payload: &[u8]) -> Result<EcgEvent, PayloadError> {
    let mut readings = [0.0f64; INPUTS];
    let event_id = parse_into(payload, &mut readings)?;
    Ok(EcgEvent { event_id, readings })
}

/// [`parse_event`] into `readings`, answering the event id. What the UDF calls: the readings
/// are written where the model reads them. (Returning an [`EcgEvent`] moved them once more, a
/// `memory.copy` that in Wasm is a call out of the compiled code.)
#[inline(always)]
pub fn parse_into(payload: &[u8], readings: &mut [f64; INPUTS]) -> Result<i64, PayloadError> {
    if payload.trim_ascii().is_empty() {
        return Err(error(None, "empty payload".into()));
    }
    let comma = payload.iter().position(|&b| b == b',').ok_or_else(|| {
        error(
            None,
            format!("missing EVENTID: expected `EVENTID,v1#v2#...#v{INPUTS}`, found no comma"),
        )
    })?;
    let id_text = std::str::from_utf8(&payload[..comma])
        .map_err(|err| error(None, format!("payload is not UTF-8 text: {err}")))?
        .trim();
    if id_text.is_empty() {
        return Err(error(None, "missing EVENTID before the comma".into()));
    }
    let event_id: i64 = id_text
        .parse()
        .map_err(|_| error(None, format!("EVENTID {id_text:?} is not an integer")))?;
    parse_readings(&payload[comma + 1..], Some(event_id), readings)?;
    Ok(event_id)
}

/// The readings part, `v1#v2#...#v210`, into `readings`; errors name `here`, the event id
/// when known. What the SQL function `ANOMALY(SENSORINPUT)` parses.
#[inline(always)]
pub fn parse_readings(
    fields: &[u8],
    here: Option<i64>,
    readings: &mut [f64; INPUTS],
) -> Result<(), PayloadError> {
    let mut i = 0; // the reading being parsed
    let mut at = 0; // where its field starts
    while i < INPUTS {
        // The fast steps: four fields at a time, each a short decimal with its `#` in the next
        // eight bytes, never the last reading. The first field that is not stops them. No
        // calls in this loop, and a back-edge only every four fields (in Wasm, each back-edge
        // carries the deadline check, and a call in the loop put its state on the stack).
        'fast: while i + 4 < INPUTS {
            // Written out four times (a `for` loop here stays a loop in the Wasm build).
            macro_rules! step {
                () => {
                    let Some(eight) = fields.get(at..).and_then(<[u8]>::first_chunk::<8>) else {
                        break 'fast;
                    };
                    let Some((value, len)) = short_decimal::parse_hashed(eight) else {
                        break 'fast;
                    };
                    readings[i] = value;
                    at += len + 1; // the field and its `#`
                    i += 1;
                };
            }
            step!();
            step!();
            step!();
            step!();
        }
        // One field whatever it holds, with the checks on what follows it.
        let rest = &fields[at..];
        let (value, len) = match short_decimal::parse_field(rest) {
            Some(short) => short,
            None => long_field(rest, here, i)?,
        };
        readings[i] = value;
        at += len;
        let last = i + 1 == INPUTS;
        match fields.get(at) {
            Some(_) if last => {
                // `fields[at]` is the `#` after the last expected reading: count the extras.
                let extra = fields[at..].iter().filter(|&&b| b == b'#').count();
                return Err(wrong_count(here, INPUTS + extra));
            }
            Some(_) => at += 1, // the `#`
            None if last => {}
            None => return Err(wrong_count(here, i + 1)),
        }
        i += 1;
    }
    Ok(())
}

/// A field [`short_decimal`] declines (eight bytes or longer, or not a plain decimal): its value
/// and length, or what is wrong with reading `i`. Kept out of line, and called only from the
/// general step (in Wasm, every call in a loop made the register allocator keep the loop's
/// state on the stack).
#[cold]
#[inline(never)]
fn long_field(rest: &[u8], here: Option<i64>, i: usize) -> Result<(f64, usize), PayloadError> {
    let len = rest.iter().position(|&b| b == b'#').unwrap_or(rest.len());
    let field = &rest[..len];
    let value = match parse_reading(field.trim_ascii()) {
        Some(value) => value,
        None => parse_reading_slow(field)
            .map_err(|reason| error(here, format!("reading {} of {INPUTS} {reason}", i + 1)))?,
    };
    Ok((value, len))
}

/// Any field the fast path declines: Unicode whitespace, exponents, long mantissas, junk.
fn parse_reading_slow(field: &[u8]) -> Result<f64, String> {
    let text = String::from_utf8_lossy(field);
    let text = text.trim();
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(value),
        Ok(_) => Err(format!("is not finite: {text:?}")),
        Err(_) => Err(format!("is not a number: {text:?}")),
    }
}

/// Powers of ten that are exact in f64.
const EXACT_POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Clinger's fast path for plain decimals such as `-12.034`: at most 15 digits (an exact integer
/// mantissa) over an exact power of ten is one correctly rounded division, so the result is
/// bit-identical to `str::parse`. `None` means "not that simple": the caller uses `str::parse`.
/// (Worth it in Wasm, which has no 64x64->128-bit multiply for the general algorithm.)
fn parse_reading(field: &[u8]) -> Option<f64> {
    let (negative, digits) = match field {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        all => (false, all),
    };
    let (mut mantissa, mut count, mut fraction, mut dot) = (0i64, 0usize, 0usize, false);
    for &b in digits {
        match b {
            b'0'..=b'9' => {
                mantissa = mantissa * 10 + i64::from(b - b'0');
                count += 1;
                fraction += usize::from(dot);
                if count > 15 {
                    return None;
                }
            }
            b'.' if !dot => dot = true,
            _ => return None,
        }
    }
    if count == 0 {
        return None;
    }
    // At most 15 digits: exact as f64. Signed on purpose: Wasm's unsigned i64->f64 conversion
    // is a branchy sequence on x86, the signed one a single instruction.
    let value = mantissa as f64 / EXACT_POW10[fraction];
    Some(if negative { -value } else { value })
}

/// `{"eventid":N,"anomaly_val":X}` with `N` the event id as [`decimal`] writes it and `X` in
/// shortest round-trip form.
pub fn score_json(event_id: &str, mse: f64) -> String {
    use std::fmt::Write as _;
    let mut json = String::with_capacity(64);
    json.push_str("{\"eventid\":");
    json.push_str(event_id);
    json.push_str(",\"anomaly_val\":");
    // `{:?}` on f64 is Rust's shortest representation that round-trips (like serde_json's ryu
    // output, but without a dependency); `score_payload` turns a non-finite score into an error
    // first. Writing to a `String` cannot fail.
    let _ = write!(json, "{mse:?}");
    json.push('}');
    json
}

/// `n` in decimal, as `i64`'s `Display` writes it, without the formatting machinery (whose
/// indirect calls cost more in Wasm than natively).
pub fn decimal(n: i64) -> String {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    let mut text = String::with_capacity(21 - at);
    if n < 0 {
        text.push('-');
    }
    text.extend(digits[at..].iter().map(|&d| char::from(d)));
    text
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
        r[16] = "\u{a0}1.5\u{2003}"; // Unicode whitespace is whitespace too
        assert_eq!(
            parse_event(payload("8", &r).as_bytes()).unwrap().readings[16],
            1.5
        );
        r[16] = "1.5e1";
        assert_eq!(
            parse_event(payload("8", &r).as_bytes()).unwrap().readings[16],
            15.0
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
    fn fast_reading_parse_is_bit_identical_to_str_parse() {
        let mut cases: Vec<String> = [
            "0",
            "-0.0",
            "+1.5",
            "2.10",
            ".5",
            "5.",
            "123456789012345",
            "0.000000000000001",
            "9.999999999999999",
            "1e3",
            "1234567890123456",
            ".",
            "-",
            "",
            "1.2.3",
            "nan",
            "4,2",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let int = seed % 100_000;
            let frac_digits = (seed >> 20) % 12;
            let frac = (seed >> 32) % 10u64.pow(frac_digits as u32).max(1);
            cases.push(format!(
                "{int}.{frac:0width$}",
                width = frac_digits as usize
            ));
        }
        for case in &cases {
            let fast = parse_reading(case.as_bytes());
            let slow = case.parse::<f64>().ok();
            if let Some(fast) = fast {
                assert_eq!(Some(fast.to_bits()), slow.map(f64::to_bits), "{case:?}");
            }
        }
        assert_eq!(parse_reading(b"1e3"), None, "exponents take the slow path");
    }

    /// Whole payloads of mixed fields (short, spaced, long, exponents, junk, empty) and counts
    /// around 210: `parse_event` accepts exactly what splitting on `#`, trimming and
    /// `str::parse` accepts, with the same bits. Exercises the switch between the four-field
    /// fast steps and the one-field general step at every position.
    #[test]
    fn agrees_with_split_trim_parse_on_random_payloads() {
        fn reference(fields: &str) -> Option<Vec<u64>> {
            let values: Vec<u64> = fields
                .split('#')
                .map(|f| {
                    f.trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|v| v.is_finite())
                        .map(f64::to_bits)
                })
                .collect::<Option<_>>()?;
            (values.len() == INPUTS).then_some(values)
        }
        let shapes = [
            "5.0",
            " 9.88",
            "-0.97 ",
            "12",
            "1234.5678",
            "0.000123456",
            "1e2",
            "x",
            "",
            " ",
            "+.5",
        ];
        let mut seed = 0x5851_f42d_4c95_7f2du64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let (mut accepted, mut rejected) = (0, 0);
        for _ in 0..3_000 {
            let count = INPUTS - 2 + next(5) as usize;
            let odd = next(4); // how often a field is not a plain short decimal
            let fields: Vec<&str> = (0..count)
                .map(|_| {
                    if next(100) < odd {
                        shapes[4 + next(shapes.len() as u64 - 4) as usize]
                    } else {
                        shapes[next(4) as usize]
                    }
                })
                .collect();
            let fields = fields.join("#");
            let parsed = parse_event(format!("1,{fields}").as_bytes());
            let expected = reference(&fields);
            match (&parsed, &expected) {
                (Ok(event), Some(values)) => {
                    assert_eq!(
                        &event.readings.map(f64::to_bits)[..],
                        &values[..],
                        "{fields:?}"
                    );
                    accepted += 1;
                }
                (Err(_), None) => rejected += 1,
                _ => panic!("{fields:?}: parsed {parsed:?}, expected {expected:?}"),
            }
        }
        assert!(
            accepted > 100 && rejected > 100,
            "{accepted} accepted, {rejected} rejected"
        );
    }

    #[test]
    fn decimal_writes_what_display_writes() {
        let mut cases = vec![0, 1, -1, 9, 10, -10, 106, i64::MAX, i64::MIN, i64::MIN + 1];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..10_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            // Every magnitude, both signs.
            cases.push((seed as i64) >> (seed % 64));
        }
        for n in cases {
            assert_eq!(decimal(n), n.to_string());
        }
    }

    #[test]
    fn score_json_is_shortest_round_trip() {
        assert_eq!(
            score_json("106", 2.2022320685879437),
            r#"{"eventid":106,"anomaly_val":2.2022320685879437}"#
        );
        assert_eq!(score_json("1", 2.0), r#"{"eventid":1,"anomaly_val":2.0}"#);
    }
}
