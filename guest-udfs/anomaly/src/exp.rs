//! `exp` for the forward pass, in plain Rust so that the Wasm guest and the native build run the
//! same arithmetic, and so that it inlines into the layer loop (in Wasm, wasi-libc's `exp` is an
//! out-of-line call, and every live value crosses it on the stack).
//!
//! Table-driven (Tang's method): `x = k ln2/N + r` with `|r| <= ln2/(2N)`, so
//! `exp(x) = 2^(k/N) * exp(r)`, with `2^(k/N)` from a table of `N` double-double values and
//! `exp(r) - 1` from its Taylor polynomial. The only error that reaches the result is the last
//! rounding plus at most about 2^-10 ulp (N = 1024), so it rounds like the JVM's `Math.exp`
//! (and glibc's) except in rare near-halfway cases; the parity tests check the effect on H2O's
//! scores. Arguments are clamped to `±FAST_LIMIT` (short of overflow, underflow and
//! subnormals), which changes no `tanh` the model computes.

mod constants {
    include!(concat!(env!("OUT_DIR"), "/exp_table.rs"));
}
use constants::{INV_LN2_N, LN2_HI_N, LN2_LO_N, LOG2_N, TABLE};

/// Arguments are clamped to `±FAST_LIMIT` (the model's are far smaller; see [`exp_clamped`]).
const FAST_LIMIT: f64 = 512.0;
/// Adding `1.5 * 2^52` rounds a small f64 to an integer held in its low mantissa bits.
const SHIFT: f64 = 6755399441055744.0;
const N_MASK: i64 = (1 << LOG2_N) - 1;

/// `e^x` with `x` first clamped to `±FAST_LIMIT` (NaN stays NaN): all that H2O's
/// `tanh(z) = 1 - 2 / (1 + exp(2z))` needs, since beyond the limit `tanh` is exactly `±1`
/// either way. No fallback call for large arguments: in a Wasm loop, even a cold call made
/// Cranelift keep the loop's floating-point values on the stack.
#[inline(always)]
pub fn exp_clamped(x: f64) -> f64 {
    exp_table(x.clamp(-FAST_LIMIT, FAST_LIMIT))
}

/// `e^x` for `|x| <= FAST_LIMIT` (any other `x` gives a meaningless value, NaN gives NaN).
#[inline(always)]
fn exp_table(x: f64) -> f64 {
    let shifted = x * INV_LN2_N + SHIFT;
    // |k| < 2^17 here: its bits are those of `shifted` less those of `SHIFT`.
    let k = (shifted.to_bits() as i64).wrapping_sub(SHIFT.to_bits() as i64);
    let kd = shifted - SHIFT;
    // `kd * LN2_HI_N` is exact and close to `x`, so the first subtraction is exact too.
    let r = (x - kd * LN2_HI_N) - kd * LN2_LO_N;
    let (hi, lo) = TABLE[(k & N_MASK) as usize];
    let scale = f64::from_bits(((k >> LOG2_N).wrapping_add(1023) as u64) << 52);
    let r2 = r * r;
    let p = r + r2 * (C2 + r * C3) + (r2 * r2) * (C4 + r * C5);
    (hi + (lo + hi * p)) * scale
}

const C2: f64 = 1.0 / 2.0;
const C3: f64 = 1.0 / 6.0;
const C4: f64 = 1.0 / 24.0;
const C5: f64 = 1.0 / 120.0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_holds_powers_of_two() {
        let n = TABLE.len();
        assert_eq!(n, 1 << LOG2_N);
        assert_eq!(TABLE[0], (1.0, 0.0));
        assert_eq!(TABLE[n / 2].0, std::f64::consts::SQRT_2);
        for (i, &(hi, lo)) in TABLE.iter().enumerate() {
            let approx = (i as f64 / n as f64).exp2();
            assert!((hi - approx).abs() <= f64::EPSILON * 2.0, "entry {i}");
            assert!(
                lo.abs() <= hi * f64::EPSILON / 2.0,
                "entry {i}: tail too large"
            );
        }
        // ln2/N split so that k * LN2_HI_N is exact for every k the fast path meets.
        assert_eq!(LN2_HI_N.to_bits() & ((1 << 21) - 1), 0);
        assert!(((LN2_HI_N + LN2_LO_N) * n as f64 - std::f64::consts::LN_2).abs() < 1e-16);
    }

    #[test]
    fn exact_values() {
        assert_eq!(exp_clamped(0.0), 1.0);
        assert_eq!(exp_clamped(-0.0), 1.0);
        assert_eq!(exp_clamped(1.0), std::f64::consts::E);
        assert_eq!(exp_clamped(std::f64::consts::LN_2), 2.0);
        // At the limit, within an ulp of the platform's.
        for x in [FAST_LIMIT, -FAST_LIMIT] {
            let (a, b) = (exp_clamped(x), x.exp());
            assert!(
                (a.to_bits() as i64 - b.to_bits() as i64).abs() <= 1,
                "exp({x})"
            );
        }
    }

    #[test]
    fn clamping_changes_no_tanh() {
        let tanh = |e: f64| 1.0 - 2.0 / (1.0 + e);
        for x in [
            0.0,
            1.5,
            -7.25,
            511.0,
            -511.0,
            512.0,
            -512.0,
            513.0,
            -513.0,
            709.0,
            710.0,
            -745.0,
            -746.0,
            1e10,
            -1e10,
            1e308,
            -1e308,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            let (clamped, full) = (tanh(exp_clamped(x)), tanh(x.exp()));
            assert_eq!(clamped.to_bits(), full.to_bits(), "x = {x}");
        }
        assert!(exp_clamped(f64::NAN).is_nan());
        assert_eq!(exp_clamped(1000.0), exp_clamped(FAST_LIMIT));
    }

    /// Against the platform's `exp` (glibc here) on two million arguments in the model's range:
    /// never more than 1 ulp apart, and the same bits almost always. (Checked with 60-digit
    /// arithmetic, this `exp` is the correctly rounded one in most of the rare differences.)
    #[test]
    fn agrees_with_the_platform() {
        let mut seed = 0x1234_5678_9abc_def0u64;
        let (mut differ, total) = (0u32, 2_000_000u32);
        for _ in 0..total {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let x = (seed >> 11) as f64 / (1u64 << 53) as f64 * 80.0 - 40.0;
            let (a, b) = (exp_clamped(x), x.exp());
            if a != b {
                let ulps = (a.to_bits() as i64 - b.to_bits() as i64).abs();
                assert_eq!(ulps, 1, "exp({x:e}) = {a:e}, platform {b:e}");
                differ += 1;
            }
        }
        assert!(differ < total / 1000, "{differ} of {total} differ");
    }
}
