//! The scoring split into stages, for the benchmark only: each runs one part of the work alone,
//! so that `cargo xtask bench` can say where Wasm and native differ (parse, model, `exp`, or the
//! component boundary) instead of one number for everything.
//!
//! Natively the benchmark calls [`run`]; in Wasm it runs the `anomaly-stages.wasm` build of this
//! crate (feature `bench-stages`), whose UDF calls the same function, picked by its `stage`
//! config key.

use crate::model::{self, INPUTS, NEURONS};
use crate::payload;

/// One part of scoring an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// All of it: what the anomaly UDF does.
    All,
    /// Parse the payload into readings.
    Parse,
    /// The forward pass and the reconstruction error, on readings derived from the payload length.
    Model,
    /// Only the `exp` calls the forward pass makes (one per neuron).
    Exp,
    /// Nothing: the value comes back as it went in. In Wasm, the cost of crossing the boundary.
    Echo,
}

impl Stage {
    /// Every stage, in the order the benchmark prints them.
    pub const ALL: [Stage; 5] = [
        Stage::All,
        Stage::Parse,
        Stage::Model,
        Stage::Exp,
        Stage::Echo,
    ];

    /// The `stage` config value.
    pub fn name(self) -> &'static str {
        match self {
            Stage::All => "all",
            Stage::Parse => "parse",
            Stage::Model => "model",
            Stage::Exp => "exp",
            Stage::Echo => "echo",
        }
    }

    /// The stage called `name`.
    pub fn from_name(name: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|stage| stage.name() == name)
    }
}

/// Runs one stage on a payload and returns a small value that depends on all of its work (so the
/// compiler cannot drop any of it); `All` returns the score JSON, `Echo` the payload.
pub fn run(stage: Stage, value: &[u8]) -> Result<Vec<u8>, payload::PayloadError> {
    Ok(match stage {
        Stage::All => crate::score_payload(value)?.1.into_bytes(),
        Stage::Parse => {
            let mut readings = [0.0f64; INPUTS];
            payload::parse_into(value, &mut readings)?;
            sum_by_eights(INPUTS, |i| readings[i])
                .to_le_bytes()
                .to_vec()
        }
        Stage::Model => {
            let mut readings = [0.0f64; INPUTS];
            for (i, r) in readings.iter_mut().enumerate() {
                *r = ((i * 37 + value.len()) % 101) as f64 / 10.0 - 5.0;
            }
            model::reconstruction_mse(&readings).to_le_bytes().to_vec()
        }
        Stage::Exp => {
            let base = value.len() as f64 * 1e-6;
            let exp = |i: usize| crate::exp::exp_clamped(base + i as f64 * 0.01 - 1.5);
            sum_by_eights(NEURONS, exp).to_le_bytes().to_vec()
        }
        Stage::Echo => value.to_vec(),
    })
}

/// `value(0) + ... + value(n - 1)`, eight at a time: what makes a stage's result depend on all
/// of its work.
///
/// A sum carried around a loop on every value is kept on the stack in Wasm (each loop back-edge
/// carries the deadline check), so summing every `exp` in the loop made the `exp` stage time
/// that store and reload as much as `exp` itself. Eight at a time, it happens once per eight
/// values; the UDF itself carries no such sum.
#[inline(always)]
fn sum_by_eights(n: usize, value: impl Fn(usize) -> f64) -> f64 {
    let blocked = n - n % 8;
    let mut sum = 0.0f64;
    for block in (0..blocked).step_by(8) {
        let mut eight = 0.0f64;
        for j in 0..8 {
            eight += value(block + j);
        }
        sum += eight;
    }
    for i in blocked..n {
        sum += value(i);
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for stage in Stage::ALL {
            assert_eq!(Stage::from_name(stage.name()), Some(stage));
        }
        assert_eq!(Stage::from_name("everything"), None);
    }

    #[test]
    fn all_is_the_udf_and_parse_rejects_bad_payloads() {
        let payload = format!("7,{}", vec!["1.5"; INPUTS].join("#"));
        let all = run(Stage::All, payload.as_bytes()).unwrap();
        assert_eq!(
            all,
            crate::score_payload(payload.as_bytes())
                .unwrap()
                .1
                .into_bytes()
        );
        let parsed = run(Stage::Parse, payload.as_bytes()).unwrap();
        assert_eq!(parsed, (1.5 * INPUTS as f64).to_le_bytes().to_vec());
        assert!(run(Stage::Parse, b"7,1#2").is_err());
        assert_eq!(run(Stage::Echo, b"abc").unwrap(), b"abc");
        let model = f64::from_le_bytes(run(Stage::Model, b"abc").unwrap().try_into().unwrap());
        assert!(model.is_finite() && model > 0.0);
    }
}
