-- The original demo's three KSQL statements, exactly as it wrote them, run by Sluice:
--
--   sluice run pipelines/ecg-anomaly.sql          (Kafka from KAFKA_BROKERS or --kafka-brokers)
--   sluice sql explain pipelines/ecg-anomaly.sql  (the pipeline TOML it compiles to)
--
-- ANOMALY is the scalar function of the `anomaly` UDF module (guest-udfs/anomaly): the H2O
-- autoencoder in Wasm, taking the readings string and returning the reconstruction error.
-- The topics carry the same bytes as pipelines/ecg-detect.toml writes.

CREATE STREAM TEMPERATURE_ANOMALY (eventid integer, sensorinput varchar)
  WITH (kafka_topic='electric-temperature', value_format='DELIMITED');
CREATE STREAM TEMPERATURE_ANOMALY_DETECTION AS
  SELECT EVENTID, CAST (ANOMALY(SENSORINPUT) AS DOUBLE) AS ANOMALY_VAL FROM TEMPERATURE_ANOMALY;
CREATE STREAM ANOMALYDETECTIONWITHFILTER AS
  SELECT EVENTID, ANOMALY_VAL FROM TEMPERATURE_ANOMALY_DETECTION WHERE ANOMALY_VAL > 1.5;
