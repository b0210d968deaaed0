//! Sinks: where records go. One file per kind; each has a config struct and the running component.

pub mod console;
pub mod elasticsearch;
pub mod kafka;
pub mod mqtt;
