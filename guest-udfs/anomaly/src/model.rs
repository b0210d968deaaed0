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
        // Eight independent partial sums, psum0..psum7 (the compiler keeps them in f64x2 lanes).
        let mut p = [0.0f64; 8];
        for (w8, x8) in row[..blocked]
            .chunks_exact(8)
            .zip(x[..blocked].chunks_exact(8))
        {
            for j in 0..8 {
                p[j] += f64::from(w8[j]) * x8[j];
            }
        }
        let mut acc = 0.0 + (((p[0] + p[1]) + p[2]) + p[3]);
        acc += ((p[4] + p[5]) + p[6]) + p[7];
        for c in blocked..cols {
            acc += f64::from(row[c]) * x[c];
        }
        acc += layer.biases[r];
        *y = 1.0 - 2.0 / (1.0 + (2.0 * acc).exp());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
