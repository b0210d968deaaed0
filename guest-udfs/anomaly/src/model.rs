//! The H2O autoencoder's forward pass and reconstruction error, in H2O's exact arithmetic.
//!
//! Follows the generated POJO step by step (see `model/README.md` and the shared reference's
//! README): float64 throughout, float32 weights widened before they multiply, each dot product
//! summed in eight interleaved partial sums combined as `((p0+p1)+p2)+p3` then `((p4+p5)+p6)+p7`,
//! then the tail columns, then the bias; `tanh` written as `1 - 2 / (1 + exp(2z))`.
//!
//! `exp` is the platform's (`f64::exp`): glibc natively, wasi-libc in the Wasm guest. Both use the
//! ARM optimized-routines algorithm, which rounds like the JVM's `Math.exp` on these rows; the
//! `libm` crate's older fdlibm `exp` drifts by 1-3 ulps. The parity tests (native here, Wasm in
//! the host) pin this down against H2O's own scores.

mod weights {
    include!(concat!(env!("OUT_DIR"), "/model.rs"));
}

pub use weights::MODEL_NAME;

/// Number of readings in one ECG event (the model's input width).
pub const INPUTS: usize = weights::LAYERS[0];

/// The widest layer; activations of every layer fit in a buffer this long.
const WIDEST: usize = {
    let mut widest = 0;
    let mut i = 0;
    while i < weights::LAYERS.len() {
        if weights::LAYERS[i] > widest {
            widest = weights::LAYERS[i];
        }
        i += 1;
    }
    widest
};

/// One dense layer: `out` rows of `inp` float32 weights, and one float64 bias per row.
struct Layer {
    weights: &'static [f32],
    biases: &'static [f64],
}

static LAYERS: [Layer; 4] = [
    Layer {
        weights: &weights::WEIGHTS_0,
        biases: &weights::BIASES_0,
    },
    Layer {
        weights: &weights::WEIGHTS_1,
        biases: &weights::BIASES_1,
    },
    Layer {
        weights: &weights::WEIGHTS_2,
        biases: &weights::BIASES_2,
    },
    Layer {
        weights: &weights::WEIGHTS_3,
        biases: &weights::BIASES_3,
    },
];

/// The reconstruction mean squared error of one event, in the original (denormalised) units.
///
/// A NaN reading is treated as H2O treats a missing value (normalised input 0); the payload
/// parser never produces one.
pub fn reconstruction_mse(readings: &[f64; INPUTS]) -> f64 {
    let mut current = [0.0f64; WIDEST];
    let mut next = [0.0f64; WIDEST];
    for (i, (&v, x)) in readings.iter().zip(current.iter_mut()).enumerate() {
        *x = if v.is_nan() {
            0.0
        } else {
            (v - weights::INPUT_SUB[i]) * weights::INPUT_MUL[i]
        };
    }
    let mut width = INPUTS;
    for layer in &LAYERS {
        let rows = layer.biases.len();
        dense_tanh(layer, &current[..width], &mut next[..rows]);
        std::mem::swap(&mut current, &mut next);
        width = rows;
    }
    let mut sum = 0.0f64;
    for (k, &v) in readings.iter().enumerate() {
        let recon = current[k] / weights::INPUT_MUL[k] + weights::INPUT_SUB[k];
        let diff = v - recon;
        sum += diff * diff;
    }
    sum / INPUTS as f64
}

/// `out[r] = tanh(sum_c w[r][c] * x[c] + b[r])` with H2O's summation order.
fn dense_tanh(layer: &Layer, x: &[f64], out: &mut [f64]) {
    let cols = x.len();
    // H2O: `multiple = (cols/8)*8 - 1`, loop `col < multiple` step 8; tail from `cols - cols%8`.
    let blocked = cols - cols % 8;
    for (r, y) in out.iter_mut().enumerate() {
        let row = &layer.weights[r * cols..(r + 1) * cols];
        let p = lanes::partial_sums(&row[..blocked], &x[..blocked]);
        let mut acc = 0.0 + (((p[0] + p[1]) + p[2]) + p[3]);
        acc += ((p[4] + p[5]) + p[6]) + p[7];
        for c in blocked..cols {
            acc += f64::from(row[c]) * x[c];
        }
        acc += layer.biases[r];
        *y = 1.0 - 2.0 / (1.0 + (2.0 * acc).exp());
    }
}

/// H2O's eight partial sums `psum0..psum7` over blocks of eight columns.
///
/// Each sum is an independent chain of `widen(w) * x` products added in column order, so
/// computing two of them per f64x2 register (pairs (0,1), (2,3), (4,5), (6,7)) gives exactly
/// the scalar bits: no reassociation, no fused multiply-add. One implementation per target,
/// the same arithmetic in each; the scalar one is the reference.
mod lanes {
    /// `w.len() == x.len()`, a multiple of 8.
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    pub(super) fn partial_sums(w: &[f32], x: &[f64]) -> [f64; 8] {
        use core::arch::wasm32::*;
        let mut acc = [f64x2_splat(0.0); 4];
        for (w8, x8) in w.chunks_exact(8).zip(x.chunks_exact(8)) {
            // SAFETY: `chunks_exact(8)` gives 8 f32 (32 bytes) and 8 f64 (64 bytes); every load
            // below reads 16 bytes inside them, and Wasm loads need no alignment.
            let (w03, w47, xs) = unsafe {
                let w = w8.as_ptr() as *const v128;
                let x = x8.as_ptr() as *const v128;
                (
                    v128_load(w),
                    v128_load(w.add(1)),
                    [
                        v128_load(x),
                        v128_load(x.add(1)),
                        v128_load(x.add(2)),
                        v128_load(x.add(3)),
                    ],
                )
            };
            let ws = [
                f64x2_promote_low_f32x4(w03),
                f64x2_promote_low_f32x4(i64x2_shuffle::<1, 1>(w03, w03)),
                f64x2_promote_low_f32x4(w47),
                f64x2_promote_low_f32x4(i64x2_shuffle::<1, 1>(w47, w47)),
            ];
            for k in 0..4 {
                acc[k] = f64x2_add(acc[k], f64x2_mul(ws[k], xs[k]));
            }
        }
        let mut p = [0.0; 8];
        for (k, a) in acc.iter().enumerate() {
            p[2 * k] = f64x2_extract_lane::<0>(*a);
            p[2 * k + 1] = f64x2_extract_lane::<1>(*a);
        }
        p
    }

    /// `w.len() == x.len()`, a multiple of 8. SSE2 is part of the x86_64 baseline.
    #[cfg(target_arch = "x86_64")]
    pub(super) fn partial_sums(w: &[f32], x: &[f64]) -> [f64; 8] {
        use core::arch::x86_64::*;
        // SAFETY: SSE2 is always available on x86_64. `chunks_exact(8)` gives 8 f32 (32 bytes)
        // and 8 f64 (64 bytes); every unaligned load below reads 16 bytes inside them.
        unsafe {
            let mut acc = [_mm_setzero_pd(); 4];
            for (w8, x8) in w.chunks_exact(8).zip(x.chunks_exact(8)) {
                let w03 = _mm_loadu_ps(w8.as_ptr());
                let w47 = _mm_loadu_ps(w8.as_ptr().add(4));
                let ws = [
                    _mm_cvtps_pd(w03),
                    _mm_cvtps_pd(_mm_movehl_ps(w03, w03)),
                    _mm_cvtps_pd(w47),
                    _mm_cvtps_pd(_mm_movehl_ps(w47, w47)),
                ];
                let x = x8.as_ptr();
                let xs = [
                    _mm_loadu_pd(x),
                    _mm_loadu_pd(x.add(2)),
                    _mm_loadu_pd(x.add(4)),
                    _mm_loadu_pd(x.add(6)),
                ];
                for k in 0..4 {
                    acc[k] = _mm_add_pd(acc[k], _mm_mul_pd(ws[k], xs[k]));
                }
            }
            let mut p = [0.0; 8];
            for (k, a) in acc.iter().enumerate() {
                _mm_storeu_pd(p[2 * k..].as_mut_ptr(), *a);
            }
            p
        }
    }

    /// `w.len() == x.len()`, a multiple of 8.
    #[cfg(not(any(
        all(target_arch = "wasm32", target_feature = "simd128"),
        target_arch = "x86_64"
    )))]
    pub(super) fn partial_sums(w: &[f32], x: &[f64]) -> [f64; 8] {
        super::scalar_partial_sums(w, x)
    }
}

/// The reference: H2O's `psum0 += a[off] * x[col]; ... psum7 += a[off+7] * x[col+7]`.
#[allow(dead_code)] // used on targets without f64x2 lanes, and by the tests
fn scalar_partial_sums(w: &[f32], x: &[f64]) -> [f64; 8] {
    let mut p = [0.0f64; 8];
    for (w8, x8) in w.chunks_exact(8).zip(x.chunks_exact(8)) {
        for j in 0..8 {
            p[j] += f64::from(w8[j]) * x8[j];
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_give_the_scalar_bits() {
        let w = &weights::WEIGHTS_0[..208];
        let x: Vec<f64> = (0..208)
            .map(|i| ((i * 37 % 101) as f64 - 50.0) / 7.0)
            .collect();
        let lanes = lanes::partial_sums(w, &x);
        let scalar = scalar_partial_sums(w, &x);
        assert_eq!(lanes.map(f64::to_bits), scalar.map(f64::to_bits));
    }

    #[test]
    fn layer_shapes_match_the_model() {
        assert_eq!(weights::LAYERS, [210, 50, 20, 50, 210]);
        let mut inp = INPUTS;
        for layer in &LAYERS {
            assert_eq!(layer.weights.len(), inp * layer.biases.len());
            inp = layer.biases.len();
        }
        assert_eq!(inp, INPUTS, "an autoencoder reconstructs its input");
    }

    #[test]
    fn weights_are_exact_float32_parses_of_the_model_text() {
        // First weight of the model file is written `-0.03864945`.
        assert_eq!(weights::WEIGHTS_0[0], "-0.03864945".parse::<f32>().unwrap());
        assert_eq!(weights::INPUT_MUL[0], 0.20920502092050208);
    }

    #[test]
    fn missing_readings_are_normalised_to_zero_not_propagated_into_layers() {
        let mut readings = [5.0f64; INPUTS];
        readings[3] = f64::NAN;
        // The squared error at the NaN reading is NaN, as in H2O: the layers themselves stay finite,
        // which we check by scoring the same event with the mean value in that slot.
        let mut filled = readings;
        filled[3] = weights::INPUT_SUB[3];
        assert!(reconstruction_mse(&filled).is_finite());
        assert!(reconstruction_mse(&readings).is_nan());
    }
}
