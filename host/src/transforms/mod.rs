//! Transforms: the Wasm `udf` transform, the built-in `filter` and `select` (SQL's WHERE and
//! projection), and what they share. One file per kind.

pub mod cel_row;
pub mod filter;
pub mod select;
pub mod udf;
