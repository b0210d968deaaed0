//! Pipeline files as an operator or the admin API sends them: parsed, interpolated and
//! validated into a spec or into errors that point into the text, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|text: &str| {
    // A fixed environment: one allowed variable with a value, the rest unset.
    let env =
        |name: &str| (name == "SLUICE_VAR_BROKER").then(|| "mqtt://127.0.0.1:1883".to_string());
    match sluice::pipeline::parse_pipeline(Path::new("fuzz.toml"), text, &env) {
        Ok(spec) => {
            let _ = spec.warnings();
        }
        Err(errors) => {
            // Every error renders (a span outside the text would panic here).
            let rendered = errors.to_string();
            assert!(!rendered.is_empty(), "an error with no text");
        }
    }
});
