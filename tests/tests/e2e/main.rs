//! Every end-to-end test of the `sluice` binary, in one test binary (one link of rdkafka and
//! the rest, instead of one per file): each module is one area, against real servers
//! (Mosquitto, tansu, librdkafka's mock cluster, the Elasticsearch stand-in, headless Chromium).
//! Run one area with `cargo xtask test --test e2e -- faults::`.

mod admin_api;
mod admin_kafka_handover;
mod dashboard;
mod dead_letter_file;
mod demo;
mod ecg_demo;
mod ecg_mqtt;
mod elasticsearch_sink;
mod faults;
mod kafka_restart;
mod kafka_security_options;
mod mqtt_redelivery;
mod mqtt_v5_tls;
mod scale_out;
mod security;
mod sql_pipeline;
mod udf_hot_reload;
mod udf_languages;
mod udf_shadow;
mod udf_tutorial;
