//! Transforms: the Wasm `udf` transform and the built-in `filter`. One file per kind.

pub mod filter;
pub mod udf;
