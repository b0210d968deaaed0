//! Embeds `model/ecg_autoencoder.json` as Rust constants, each number parsed from its exact
//! decimal text into its own type (weights f32, widened exactly to f64; the rest f64): no double
//! rounding, no file access at run time. Also writes the constants of `src/exp.rs`
//! (`build/exp_table.rs`).

use serde::Deserialize;
use serde_json::value::RawValue;
use std::fmt::Write as _;
use std::path::PathBuf;

#[path = "build/exp_table.rs"]
mod exp_table;

#[derive(Deserialize)]
struct Model<'a> {
    name: String,
    layers: Vec<usize>,
    activation: String,
    #[serde(borrow)]
    input_sub: Vec<&'a RawValue>,
    #[serde(borrow)]
    input_mul: Vec<&'a RawValue>,
    #[serde(borrow)]
    biases: Vec<Vec<&'a RawValue>>,
    #[serde(borrow)]
    weights: Vec<Vec<&'a RawValue>>,
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let path = manifest.join("model/ecg_autoencoder.json");
    println!("cargo:rerun-if-changed={}", path.display());
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
    let model: Model = serde_json::from_str(&text)
        .unwrap_or_else(|err| panic!("{} is not the expected model JSON: {err}", path.display()));

    assert_eq!(
        model.activation, "tanh",
        "only tanh autoencoders are supported"
    );
    let layers = &model.layers;
    assert_eq!(model.input_sub.len(), layers[0], "input_sub length");
    assert_eq!(model.input_mul.len(), layers[0], "input_mul length");
    assert_eq!(
        model.weights.len(),
        layers.len() - 1,
        "one weight matrix per layer"
    );
    assert_eq!(
        model.biases.len(),
        layers.len() - 1,
        "one bias vector per layer"
    );

    let mut out = String::new();
    writeln!(
        out,
        "/// H2O model id.\npub const MODEL_NAME: &str = {:?};",
        model.name
    )
    .unwrap();
    writeln!(
        out,
        "/// Neurons per layer, input first.\npub const LAYERS: [usize; {}] = {:?};",
        layers.len(),
        layers
    )
    .unwrap();
    emit_f64(&mut out, "INPUT_SUB", &model.input_sub);
    emit_f64(&mut out, "INPUT_MUL", &model.input_mul);
    for (l, (w, b)) in model.weights.iter().zip(&model.biases).enumerate() {
        assert_eq!(w.len(), layers[l] * layers[l + 1], "weights[{l}] length");
        assert_eq!(b.len(), layers[l + 1], "biases[{l}] length");
        emit_weight_rows(&mut out, &format!("WEIGHTS_{l}"), w, layers[l]);
        emit_f64(&mut out, &format!("BIASES_{l}"), b);
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    write(&out_dir.join("model.rs"), &out);
    println!("cargo:rerun-if-changed=build/exp_table.rs");
    write(&out_dir.join("exp_table.rs"), &exp_table::source());
}

fn write(dest: &std::path::Path, text: &str) {
    std::fs::write(dest, text)
        .unwrap_or_else(|err| panic!("cannot write {}: {err}", dest.display()));
}

fn emit_f64(out: &mut String, name: &str, values: &[&RawValue]) {
    writeln!(out, "pub static {name}: [f64; {}] = [", values.len()).unwrap();
    for raw in values {
        let v: f64 = parse_number(name, raw);
        writeln!(out, "{},", bits(v)).unwrap();
    }
    out.push_str("];\n");
}

/// A weight matrix as `[[f64; COLS]; ROWS]`, one row of input weights per output neuron. Each
/// weight is parsed as the float32 H2O stores, then widened to f64: H2O widens every weight
/// before it multiplies, and widening is exact, so doing it once here gives the same products.
fn emit_weight_rows(out: &mut String, name: &str, values: &[&RawValue], cols: usize) {
    let rows = values.len() / cols;
    writeln!(out, "pub static {name}: [[f64; {cols}]; {rows}] = [").unwrap();
    for row in values.chunks(cols) {
        out.push('[');
        for raw in row {
            let v: f32 = parse_number(name, raw);
            write!(out, "{},", bits(f64::from(v))).unwrap();
        }
        out.push_str("],\n");
    }
    out.push_str("];\n");
}

/// One number of array `name`, parsed from its exact decimal text as `T` (no double rounding).
fn parse_number<T: std::str::FromStr>(name: &str, raw: &RawValue) -> T
where
    T::Err: std::fmt::Display,
{
    raw.get()
        .trim()
        .parse()
        .unwrap_or_else(|err| panic!("{name}: {}: {err}", raw.get()))
}

/// `value` as an exact Rust expression (its bits, so no decimal round trip).
fn bits(value: f64) -> String {
    format!("f64::from_bits({:#018x})", value.to_bits())
}
