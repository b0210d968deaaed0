//! Build-time constants of the guest's `exp` (`src/exp.rs`), computed here from first principles
//! in double-double arithmetic (about 104 bits): `ln 2` from its series, `2^(i/N)` from the
//! Taylor series of `exp`. Nothing is copied from a libm; every constant can be re-derived by
//! running this.

use crate::bits;
use std::fmt::Write as _;

/// Table size: `exp` reduces its argument to `|r| <= ln2 / (2N)`.
pub const LOG2_N: u32 = 10;

/// An unevaluated sum `hi + lo` with `|lo| <= ulp(hi) / 2`.
#[derive(Clone, Copy, Debug)]
struct Dd(f64, f64);

fn two_sum(a: f64, b: f64) -> Dd {
    let s = a + b;
    let bb = s - a;
    Dd(s, (a - (s - bb)) + (b - bb))
}

fn quick_two_sum(a: f64, b: f64) -> Dd {
    let s = a + b;
    Dd(s, b - (s - a))
}

fn add(x: Dd, y: Dd) -> Dd {
    let s = two_sum(x.0, y.0);
    let t = two_sum(x.1, y.1);
    let s = quick_two_sum(s.0, s.1 + t.0);
    quick_two_sum(s.0, s.1 + t.1)
}

fn mul(x: Dd, y: Dd) -> Dd {
    let p = x.0 * y.0;
    let e = x.0.mul_add(y.0, -p); // exact low part of the product (fma)
    quick_two_sum(p, e + (x.0 * y.1 + x.1 * y.0))
}

/// `x / d` for a small integer `d`.
fn div_int(x: Dd, d: f64) -> Dd {
    let q1 = x.0 / d;
    let p = q1 * d;
    let pe = q1.mul_add(d, -p);
    let rem = ((x.0 - p) - pe) + x.1;
    quick_two_sum(q1, rem / d)
}

/// `ln 2 = sum_{k>=1} 1 / (k 2^k)`, summed smallest term first.
fn ln2() -> Dd {
    let mut sum = Dd(0.0, 0.0);
    for k in (1..=120).rev() {
        let term = div_int(Dd(0.5f64.powi(k), 0.0), f64::from(k));
        sum = add(sum, term);
    }
    sum
}

/// `exp(y)` for `0 <= y < 1` by its Taylor series.
fn exp_small(y: Dd) -> Dd {
    let mut sum = Dd(1.0, 0.0);
    let mut term = Dd(1.0, 0.0);
    for n in 1..=40 {
        term = div_int(mul(term, y), f64::from(n));
        sum = add(sum, term);
    }
    sum
}

/// Rust source for `src/exp.rs`: `LOG2_N`, `LN2_HI_N`/`LN2_LO_N`, `INV_LN2_N` and `TABLE`.
pub fn source() -> String {
    let n = 1u32 << LOG2_N;
    let ln2 = ln2();
    let ln2_n = div_int(ln2, f64::from(n));
    // The high part keeps 32 significant bits, so `k * LN2_HI_N` is exact for |k| < 2^21.
    let hi = f64::from_bits(ln2_n.0.to_bits() & !((1u64 << 21) - 1));
    let lo = add(ln2_n, Dd(-hi, 0.0)).0;
    let inv = f64::from(n) / ln2.0;
    let mut out = String::new();
    writeln!(
        out,
        "/// `log2` of the table size.\npub const LOG2_N: u32 = {LOG2_N};"
    )
    .unwrap();
    let mut constant = |doc: &str, name: &str, value: f64| {
        writeln!(out, "/// {doc}\npub const {name}: f64 = {};", bits(value)).unwrap();
    };
    constant(
        "`ln2 / N`, high part (32 significant bits).",
        "LN2_HI_N",
        hi,
    );
    constant("`ln2 / N - LN2_HI_N`.", "LN2_LO_N", lo);
    constant("`N / ln2`.", "INV_LN2_N", inv);
    writeln!(
        out,
        "/// `2^(i/N) = TABLE[i].0 + TABLE[i].1`.\npub static TABLE: [(f64, f64); {n}] = ["
    )
    .unwrap();
    for i in 0..n {
        let t = exp_small(mul(ln2, Dd(f64::from(i) / f64::from(n), 0.0)));
        writeln!(out, "({}, {}),", bits(t.0), bits(t.1)).unwrap();
    }
    out.push_str("];\n");
    out
}
