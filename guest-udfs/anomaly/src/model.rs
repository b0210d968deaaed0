//! The H2O autoencoder's forward pass and reconstruction error, in H2O's exact arithmetic.
//!
//! Follows the generated POJO step by step (see `model/README.md` and the shared reference's
//! README): float64 throughout, float32 weights widened before they multiply (widened once, exactly,
//! at build time), each dot product
//! summed in eight interleaved partial sums combined as `((p0+p1)+p2)+p3` then `((p4+p5)+p6)+p7`,
//! then the tail columns, then the bias; `tanh` written as `1 - 2 / (1 + exp(2z))`.
//!
//! `exp` is the crate's own ([`crate::exp`]), so the native build and the Wasm guest compute the
//! same bits by construction, on any platform. It rounds like the JVM's `Math.exp` on these rows
//! (as glibc's and wasi-libc's do; the `libm` crate's older fdlibm `exp` drifts the scores by
//! 1-3 ulps). The parity tests (native here, Wasm in the host) pin this down against H2O's own
//! scores.

mod weights {
    include!(concat!(env!("OUT_DIR"), "/model.rs"));
}

pub use weights::MODEL_NAME;

/// Number of readings in one ECG event (the model's input width).
pub const INPUTS: usize = weights::LAYERS[0];

/// Neurons of the hidden and output layers: one `exp` each per event.
pub const NEURONS: usize = {
    let mut neurons = 0;
    let mut i = 1;
    while i < weights::LAYERS.len() {
        neurons += weights::LAYERS[i];
        i += 1;
    }
    neurons
};

const _: () = assert!(
    weights::LAYERS.len() == 5,
    "the forward pass below is written out for four dense layers"
);

/// The reconstruction mean squared error of one event, in the original (denormalised) units.
///
/// A NaN reading is treated as H2O treats a missing value (normalised input 0); the payload
/// parser never produces one.
pub fn reconstruction_mse(readings: &[f64; INPUTS]) -> f64 {
    let mut input = [0.0f64; INPUTS];
    for (i, (&v, x)) in readings.iter().zip(input.iter_mut()).enumerate() {
        *x = if v.is_nan() {
            0.0
        } else {
            (v - weights::INPUT_SUB[i]) * weights::INPUT_MUL[i]
        };
    }
    let hidden = dense_tanh(&weights::WEIGHTS_0, &weights::BIASES_0, &input);
    let hidden = dense_tanh(&weights::WEIGHTS_1, &weights::BIASES_1, &hidden);
    let hidden = dense_tanh(&weights::WEIGHTS_2, &weights::BIASES_2, &hidden);
    let output: [f64; INPUTS] = dense_tanh(&weights::WEIGHTS_3, &weights::BIASES_3, &hidden);

    // Summed in reading order; unrolled by eight so that the running sum stays in a register.
    let squared_error = |k: usize| {
        let recon = output[k] / weights::INPUT_MUL[k] + weights::INPUT_SUB[k];
        let diff = readings[k] - recon;
        diff * diff
    };
    let blocked = INPUTS - INPUTS % 8;
    let mut sum = 0.0f64;
    for base in (0..blocked).step_by(8) {
        unrolled!(8, |j| sum += squared_error(base + j));
    }
    unrolled!(INPUTS % 8, |j| sum += squared_error(blocked + j));
    sum / INPUTS as f64
}

/// `out[r] = tanh(sum_c w[r][c] * x[c] + b[r])` with H2O's summation order.
///
/// In Wasm, two rows at a time ([`dot2`]): twice the independent additions in flight, and each
/// block of inputs loaded once for both rows; the guest gets about 5% faster. Natively, one row
/// at a time: there the pair spills registers, and the native build is about 9% slower paired.
/// Either way every row gets exactly the same arithmetic.
#[inline(always)]
fn dense_tanh<const IN: usize, const OUT: usize>(
    weights: &[[f64; IN]; OUT],
    biases: &[f64; OUT],
    x: &[f64; IN],
) -> [f64; OUT] {
    if PAIRED_ROWS {
        dense_tanh_paired(weights, biases, x)
    } else {
        dense_tanh_single(weights, biases, x)
    }
}

#[inline(always)]
fn dense_tanh_single<const IN: usize, const OUT: usize>(
    weights: &[[f64; IN]; OUT],
    biases: &[f64; OUT],
    x: &[f64; IN],
) -> [f64; OUT] {
    let mut out = [0.0f64; OUT];
    for ((y, row), bias) in out.iter_mut().zip(weights).zip(biases) {
        *y = tanh(dot(row, x) + bias);
    }
    out
}

#[inline(always)]
fn dense_tanh_paired<const IN: usize, const OUT: usize>(
    weights: &[[f64; IN]; OUT],
    biases: &[f64; OUT],
    x: &[f64; IN],
) -> [f64; OUT] {
    let mut out = [0.0f64; OUT];
    let (row_pairs, last_row) = weights.as_chunks::<2>();
    let out_pairs = out.as_chunks_mut::<2>().0;
    let bias_pairs = biases.as_chunks::<2>().0;
    for ((y, [row_a, row_b]), b) in out_pairs.iter_mut().zip(row_pairs).zip(bias_pairs) {
        let (a, c) = dot2(row_a, row_b, x);
        *y = [tanh(a + b[0]), tanh(c + b[1])];
    }
    if let [row] = last_row {
        out[OUT - 1] = tanh(dot(row, x) + biases[OUT - 1]);
    }
    out
}

/// Whether [`dense_tanh`] computes two rows at a time.
const PAIRED_ROWS: bool = cfg!(target_arch = "wasm32");

/// H2O's `tanh`: `1 - 2 / (1 + exp(2z))` (exactly; see [`crate::exp::exp_clamped`]).
#[inline(always)]
fn tanh(z: f64) -> f64 {
    1.0 - 2.0 / (1.0 + crate::exp::exp_clamped(2.0 * z))
}

/// One neuron's weighted sum in H2O's order: eight partial sums over blocks of eight columns
/// (`multiple = (cols/8)*8 - 1`, loop `col < multiple` step 8), combined as
/// `((p0+p1)+p2)+p3` then `((p4+p5)+p6)+p7`, then the tail columns one by one.
///
/// Straight-line code for the row's width: no loop back-edge while the partial sums are live.
/// In Wasm every back-edge carries the deadline (epoch) check, whose out-of-line call made the
/// register allocator keep loop-carried sums on the stack; unrolled, they stay in registers.
/// Every two blocks the sums are anchored (see `Sums::anchor`), so the Wasm build computes them
/// as it goes instead of loading the whole row first.
#[inline(always)]
fn dot<const IN: usize>(w: &[f64; IN], x: &[f64; IN]) -> f64 {
    const {
        assert!(
            IN / 8 <= MAX_UNROLL,
            "a row wider than the unrolled dot product"
        )
    };
    let (w_blocks, w_tail) = w.as_chunks::<8>();
    let (x_blocks, x_tail) = x.as_chunks::<8>();
    let mut lanes = lanes::Sums::ZERO;
    unrolled!(IN / 8, |b| {
        lanes = lanes.add_block(&w_blocks[b], &x_blocks[b]);
        if b % 2 == 1 {
            lanes.anchor(); // two blocks' weights (8 registers) live at a time
        }
    });
    finish::<IN>(lanes, w_tail, x_tail)
}

/// [`dot`] for two rows at once: the same operations on each row, interleaved block by block.
#[inline(always)]
fn dot2<const IN: usize>(w_a: &[f64; IN], w_b: &[f64; IN], x: &[f64; IN]) -> (f64, f64) {
    let (a_blocks, a_tail) = w_a.as_chunks::<8>();
    let (b_blocks, b_tail) = w_b.as_chunks::<8>();
    let (x_blocks, x_tail) = x.as_chunks::<8>();
    let mut lanes_a = lanes::Sums::ZERO;
    let mut lanes_b = lanes::Sums::ZERO;
    unrolled!(IN / 8, |b| {
        lanes_a = lanes_a.add_block(&a_blocks[b], &x_blocks[b]);
        lanes_b = lanes_b.add_block(&b_blocks[b], &x_blocks[b]);
        if b % 2 == 1 {
            lanes_a.anchor();
            lanes_b.anchor();
        }
    });
    (
        finish::<IN>(lanes_a, a_tail, x_tail),
        finish::<IN>(lanes_b, b_tail, x_tail),
    )
}

/// The end of a dot product: `((p0+p1)+p2)+p3`, then `((p4+p5)+p6)+p7`, then the tail columns.
#[inline(always)]
fn finish<const IN: usize>(lanes: lanes::Sums, w_tail: &[f64], x_tail: &[f64]) -> f64 {
    let p = lanes.to_array();
    let mut acc = 0.0 + (((p[0] + p[1]) + p[2]) + p[3]);
    acc += ((p[4] + p[5]) + p[6]) + p[7];
    unrolled!(IN % 8, |c| acc += w_tail[c] * x_tail[c]);
    acc
}

/// The most blocks of eight columns [`unrolled!`] writes out.
const MAX_UNROLL: usize = 32;

/// `unrolled!(N, |i| BODY)` runs BODY for `i` in `0..N`, written out as straight-line code.
/// `N` must be a constant (at most [`MAX_UNROLL`]): every `if` below folds away at compile time.
macro_rules! unrolled {
    ($n:expr, |$i:ident| $body:expr) => {
        unrolled!(@each $n, $i, $body;
            0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31)
    };
    (@each $n:expr, $i:ident, $body:expr; $($k:literal)*) => {
        $(
            if $k < $n {
                let $i: usize = $k;
                $body;
            }
        )*
    };
}
use unrolled;

/// H2O's eight partial sums `psum0..psum7` over blocks of eight columns.
///
/// Each sum is an independent chain of `widen(w) * x` products added in column order, so
/// computing two of them per f64x2 register (pairs (0,1), (2,3), (4,5), (6,7)) gives exactly
/// the scalar bits: no reassociation, no fused multiply-add. One implementation per target,
/// the same arithmetic in each; the scalar one ([`scalar_partial_sums`]) is the reference.
mod lanes {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    mod imp {
        use core::arch::wasm32::*;

        /// Partial sums (0,1), (2,3), (4,5), (6,7), one f64x2 each.
        #[derive(Clone, Copy)]
        pub struct Sums([v128; 4]);

        /// Where [`Sums::anchor`] writes; never read.
        static mut ANCHOR_SINK: [v128; 4] = [f64x2(0.0, 0.0); 4];

        impl Sums {
            pub const ZERO: Sums = Sums([f64x2(0.0, 0.0); 4]);

            #[inline(always)]
            pub fn add_block(self, w: &[f64; 8], x: &[f64; 8]) -> Sums {
                // SAFETY: `w` and `x` are 64 bytes each; every load below reads 16 bytes inside
                // them, and Wasm loads need no alignment.
                let (ws, xs) = unsafe {
                    let w = w.as_ptr() as *const v128;
                    let x = x.as_ptr() as *const v128;
                    (
                        [
                            v128_load(w),
                            v128_load(w.add(1)),
                            v128_load(w.add(2)),
                            v128_load(w.add(3)),
                        ],
                        [
                            v128_load(x),
                            v128_load(x.add(1)),
                            v128_load(x.add(2)),
                            v128_load(x.add(3)),
                        ],
                    )
                };
                let a = self.0;
                let sums = [
                    f64x2_add(a[0], f64x2_mul(ws[0], xs[0])),
                    f64x2_add(a[1], f64x2_mul(ws[1], xs[1])),
                    f64x2_add(a[2], f64x2_mul(ws[2], xs[2])),
                    f64x2_add(a[3], f64x2_mul(ws[3], xs[3])),
                ];
                Sums(sums)
            }

            /// Makes the sums computed here, not later. Cranelift (which compiles the module in
            /// the host) places pure arithmetic at its first use; a row's sums are first used
            /// after its last block, so all the multiplies and adds sank below all the loads,
            /// and the loaded weights spilled to the stack and came back. A (volatile) store is
            /// a use that cannot move, so the arithmetic up to it happens in place.
            #[inline(always)]
            pub fn anchor(self) {
                // SAFETY: the guest is single-threaded and nothing reads the sink; each write is
                // 16 bytes inside the 64-byte static.
                unsafe {
                    let sink = core::ptr::addr_of_mut!(ANCHOR_SINK) as *mut v128;
                    for (k, sum) in self.0.into_iter().enumerate() {
                        core::ptr::write_volatile(sink.add(k), sum);
                    }
                }
            }

            #[inline(always)]
            pub fn to_array(self) -> [f64; 8] {
                let a = self.0;
                [
                    f64x2_extract_lane::<0>(a[0]),
                    f64x2_extract_lane::<1>(a[0]),
                    f64x2_extract_lane::<0>(a[1]),
                    f64x2_extract_lane::<1>(a[1]),
                    f64x2_extract_lane::<0>(a[2]),
                    f64x2_extract_lane::<1>(a[2]),
                    f64x2_extract_lane::<0>(a[3]),
                    f64x2_extract_lane::<1>(a[3]),
                ]
            }
        }
    }

    /// SSE2 is part of the x86_64 baseline.
    #[cfg(target_arch = "x86_64")]
    mod imp {
        use core::arch::x86_64::*;

        /// Partial sums (0,1), (2,3), (4,5), (6,7), one f64x2 each.
        #[derive(Clone, Copy)]
        pub struct Sums([__m128d; 4]);

        impl Sums {
            // SAFETY: an all-zero bit pattern is 0.0 in every lane.
            pub const ZERO: Sums =
                Sums(unsafe { core::mem::transmute::<[f64; 8], [__m128d; 4]>([0.0; 8]) });

            #[inline(always)]
            pub fn add_block(self, w: &[f64; 8], x: &[f64; 8]) -> Sums {
                // SAFETY: SSE2 is always available on x86_64. `w` and `x` are 64 bytes each;
                // every unaligned load below reads 16 bytes inside them.
                unsafe {
                    let w = w.as_ptr();
                    let ws = [
                        _mm_loadu_pd(w),
                        _mm_loadu_pd(w.add(2)),
                        _mm_loadu_pd(w.add(4)),
                        _mm_loadu_pd(w.add(6)),
                    ];
                    let x = x.as_ptr();
                    let xs = [
                        _mm_loadu_pd(x),
                        _mm_loadu_pd(x.add(2)),
                        _mm_loadu_pd(x.add(4)),
                        _mm_loadu_pd(x.add(6)),
                    ];
                    let a = self.0;
                    Sums([
                        _mm_add_pd(a[0], _mm_mul_pd(ws[0], xs[0])),
                        _mm_add_pd(a[1], _mm_mul_pd(ws[1], xs[1])),
                        _mm_add_pd(a[2], _mm_mul_pd(ws[2], xs[2])),
                        _mm_add_pd(a[3], _mm_mul_pd(ws[3], xs[3])),
                    ])
                }
            }

            /// Only the Wasm build needs to pin where its sums are computed.
            #[inline(always)]
            pub fn anchor(self) {}

            #[inline(always)]
            pub fn to_array(self) -> [f64; 8] {
                // SAFETY: four f64x2 are eight f64, lanes in order.
                unsafe { core::mem::transmute::<[__m128d; 4], [f64; 8]>(self.0) }
            }
        }
    }

    #[cfg(not(any(
        all(target_arch = "wasm32", target_feature = "simd128"),
        target_arch = "x86_64"
    )))]
    mod imp {
        /// The eight partial sums, scalar.
        #[derive(Clone, Copy)]
        pub struct Sums([f64; 8]);

        impl Sums {
            pub const ZERO: Sums = Sums([0.0; 8]);

            #[inline(always)]
            pub fn add_block(mut self, w: &[f64; 8], x: &[f64; 8]) -> Sums {
                for j in 0..8 {
                    self.0[j] += w[j] * x[j];
                }
                self
            }

            /// Only the Wasm build needs to pin where its sums are computed.
            #[inline(always)]
            pub fn anchor(self) {}

            #[inline(always)]
            pub fn to_array(self) -> [f64; 8] {
                self.0
            }
        }
    }

    pub(super) use imp::Sums;
}

/// The reference: H2O's `psum0 += a[off] * x[col]; ... psum7 += a[off+7] * x[col+7]`.
#[cfg(test)]
fn scalar_partial_sums(w: &[[f64; 8]], x: &[[f64; 8]]) -> [f64; 8] {
    let mut p = [0.0f64; 8];
    for (w8, x8) in w.iter().zip(x) {
        for j in 0..8 {
            p[j] += w8[j] * x8[j];
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_give_the_scalar_bits() {
        let (w, _) = weights::WEIGHTS_0[0].as_chunks::<8>();
        let x: Vec<f64> = (0..208)
            .map(|i| ((i * 37 % 101) as f64 - 50.0) / 7.0)
            .collect();
        let (x, _) = x.as_chunks::<8>();
        let mut lanes = lanes::Sums::ZERO;
        for (w8, x8) in w.iter().zip(x) {
            lanes = lanes.add_block(w8, x8);
        }
        let scalar = scalar_partial_sums(w, x);
        assert_eq!(lanes.to_array().map(f64::to_bits), scalar.map(f64::to_bits));
    }

    #[test]
    fn dot_products_follow_h2o_order() {
        // Straight from H2O's POJO: the blocked partial sums, combined, then the tail columns.
        fn h2o_dot(w: &[f64], x: &[f64]) -> f64 {
            let cols = x.len();
            let mut p = [0.0f64; 8];
            let multiple = (cols / 8) * 8 - 1;
            let mut col = 0;
            while col < multiple {
                for j in 0..8 {
                    p[j] += w[col + j] * x[col + j];
                }
                col += 8;
            }
            let mut acc = 0.0 + (((p[0] + p[1]) + p[2]) + p[3]);
            acc += ((p[4] + p[5]) + p[6]) + p[7];
            for c in cols - cols % 8..cols {
                acc += w[c] * x[c];
            }
            acc
        }
        let x: Vec<f64> = (0..INPUTS)
            .map(|i| ((i * 53 % 97) as f64 - 48.0) / 9.0)
            .collect();
        // Every row of every layer, on the first IN values of `x`.
        fn check_layer<const IN: usize, const OUT: usize>(w: &[[f64; IN]; OUT], x: &[f64]) {
            let x: &[f64; IN] = x[..IN].try_into().unwrap();
            for (r, row) in w.iter().enumerate() {
                let expected = h2o_dot(row, x).to_bits();
                assert_eq!(dot(row, x).to_bits(), expected, "row {r}");
                // `dot2` pairs the row with its neighbour, in both positions.
                let other = &w[(r + 1) % OUT];
                let (first, _) = dot2(row, other, x);
                let (_, second) = dot2(other, row, x);
                assert_eq!(first.to_bits(), expected, "row {r} paired first");
                assert_eq!(second.to_bits(), expected, "row {r} paired second");
            }
        }
        check_layer(&weights::WEIGHTS_0, &x);
        check_layer(&weights::WEIGHTS_1, &x);
        check_layer(&weights::WEIGHTS_2, &x);
        check_layer(&weights::WEIGHTS_3, &x);
    }

    #[test]
    fn paired_rows_give_the_single_row_bits() {
        let x: Vec<f64> = (0..INPUTS)
            .map(|i| ((i * 53 % 97) as f64 - 48.0) / 61.0)
            .collect();
        fn check<const IN: usize, const OUT: usize>(
            w: &[[f64; IN]; OUT],
            b: &[f64; OUT],
            x: &[f64],
        ) {
            let x: &[f64; IN] = x[..IN].try_into().unwrap();
            let single = dense_tanh_single(w, b, x).map(f64::to_bits);
            assert_eq!(dense_tanh_paired(w, b, x).map(f64::to_bits), single);
        }
        check(&weights::WEIGHTS_0, &weights::BIASES_0, &x);
        check(&weights::WEIGHTS_1, &weights::BIASES_1, &x);
        check(&weights::WEIGHTS_2, &weights::BIASES_2, &x);
        check(&weights::WEIGHTS_3, &weights::BIASES_3, &x);
        // An odd number of rows: the last one alone.
        let rows: [[f64; 50]; 7] = core::array::from_fn(|r| weights::WEIGHTS_1[r]);
        let biases: [f64; 7] = core::array::from_fn(|r| weights::BIASES_1[r]);
        check(&rows, &biases, &x);
    }

    #[test]
    fn layer_shapes_match_the_model() {
        assert_eq!(weights::LAYERS, [210, 50, 20, 50, 210]);
        assert_eq!(weights::WEIGHTS_0.len(), 50);
        assert_eq!(weights::WEIGHTS_0[0].len(), INPUTS);
        assert_eq!(
            weights::WEIGHTS_3.len(),
            INPUTS,
            "an autoencoder reconstructs its input"
        );
    }

    #[test]
    fn weights_are_exact_float32_parses_of_the_model_text() {
        // First weight of the model file is written `-0.03864945`.
        let first: f32 = "-0.03864945".parse().unwrap();
        assert_eq!(weights::WEIGHTS_0[0][0], f64::from(first));
        // Every weight is a float32 value (widened exactly), as in H2O.
        let all = [
            weights::WEIGHTS_0.as_flattened(),
            weights::WEIGHTS_1.as_flattened(),
            weights::WEIGHTS_2.as_flattened(),
            weights::WEIGHTS_3.as_flattened(),
        ];
        for w in all.concat() {
            assert_eq!(f64::from(w as f32), w);
        }
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
