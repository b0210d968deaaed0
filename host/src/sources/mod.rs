//! Sources: where records come from. One file per kind; each has a config struct (parsed by
//! the pipeline model, validated without I/O) and the running component.

pub mod journaled;
pub mod kafka;
pub mod mqtt;
