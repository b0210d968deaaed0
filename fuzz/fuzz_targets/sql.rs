//! SQL pipelines as an operator or the admin API sends them (`PUT /pipelines/{name}` with
//! `Content-Type: application/sql`), and push queries as `sluice tap` reads them: compiled
//! into a pipeline or into errors that render, never a panic; and what compiles is a pipeline
//! the ordinary parser accepts (the compiler never writes a TOML it would refuse).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::sql::{compile, push_query, SqlOptions};
use std::path::Path;

fuzz_target!(|text: &str| {
    let file = Path::new("fuzz.sql");
    match compile(file, text, &SqlOptions::default()) {
        Ok(toml) => {
            let env = |_: &str| None;
            if let Err(errors) = sluice::pipeline::parse_pipeline(file, &toml, &env) {
                panic!("compiled SQL is not a valid pipeline:\n{errors}\n{toml}");
            }
        }
        Err(errors) => assert!(!errors.to_string().is_empty(), "an error with no text"),
    }
    let _ = push_query(text, None);
    let _ = push_query(text, Some(text));
});
