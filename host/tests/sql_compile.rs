//! Snapshot tests of the SQL compiler:
//! - `pipelines/ecg-anomaly.sql` (the original demo's three statements) compiles to
//!   `tests/sql_specs/ecg-anomaly.toml`, which is a valid pipeline;
//! - every refused construct of the table below fails with the errors in
//!   `tests/sql_specs/refused.txt` (line:column and the construct's name), and a file with
//!   several problems reports all of them at once.
//!
//! `SLUICE_BLESS=1` rewrites the snapshots.

use sluice::sql::{compile, push_query, SqlOptions};
use std::path::Path;

fn specs() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sql_specs")
}

fn check_snapshot(file: &Path, actual: &str) {
    if std::env::var_os("SLUICE_BLESS").is_some() {
        std::fs::write(file, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("{}: {e} (SLUICE_BLESS=1 writes it)", file.display()));
    assert_eq!(
        actual,
        expected,
        "{} differs (SLUICE_BLESS=1 rewrites it)",
        file.display()
    );
}

#[test]
fn the_demo_statements_compile_to_the_snapshot_and_a_valid_pipeline() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join("pipelines/ecg-anomaly.sql")).unwrap();
    let shown = Path::new("pipelines/ecg-anomaly.sql");
    let toml = compile(shown, &text, &SqlOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    check_snapshot(&specs().join("ecg-anomaly.toml"), &toml);
    let env = |_: &str| None;
    let spec = sluice::pipeline::parse_pipeline(shown, &toml, &env).unwrap();
    assert_eq!(spec.name, "ecg-anomaly");
    assert_eq!(spec.sources.len(), 1);
    // Identifiers are case-insensitive: the same statements in lower case compile alike.
    let lower = text
        .lines()
        .filter(|l| !l.starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
        .to_lowercase();
    let lowered = compile(shown, &lower, &SqlOptions::default()).unwrap();
    let body = |toml: &str| toml[toml.find("[pipeline]").unwrap_or(0)..].to_string();
    assert_eq!(
        body(&lowered),
        body(&toml),
        "lower-case identifiers must mean the same streams and columns"
    );
}

#[test]
fn flags_and_comments_set_brokers_functions_and_topics() {
    let text = "-- sluice: function.SCORE = anomaly-v2\n-- sluice: name = scoring\n\
        CREATE STREAM S (ID INT, R VARCHAR) WITH (KAFKA_TOPIC='in', VALUE_FORMAT='JSON');\n\
        CREATE STREAM D WITH (KAFKA_TOPIC='out', VALUE_FORMAT='DELIMITED', PARTITIONS=3) AS \
        SELECT ID, SCORE(R) * 2 AS S2, ID + 0.5 AS HALF FROM S WHERE R LIKE '1%' EMIT CHANGES;";
    let options = SqlOptions {
        kafka_brokers: Some("kafka:9092".into()),
        ..Default::default()
    };
    let toml = compile(Path::new("x.sql"), text, &options).unwrap_or_else(|e| panic!("{e}"));
    check_snapshot(&specs().join("options.toml"), &toml);
}

#[test]
fn the_kafka_format_reads_and_writes_one_column_as_kafka_serializes_it() {
    let text = "CREATE STREAM NAMES (NAME VARCHAR) WITH (KAFKA_TOPIC='names', VALUE_FORMAT='KAFKA');\n\
        CREATE STREAM LENGTHS AS SELECT CAST(LEN(NAME) AS BIGINT) AS N FROM NAMES;\n\
        CREATE STREAM AS_JSON WITH (VALUE_FORMAT='JSON') AS SELECT NAME, LEN(NAME) AS N FROM NAMES;";
    let toml =
        compile(Path::new("k.sql"), text, &SqlOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    check_snapshot(&specs().join("kafka-format.toml"), &toml);
    let env = |_: &str| None;
    sluice::pipeline::parse_pipeline(Path::new("k.sql"), &toml, &env)
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn nothing_from_the_sql_is_read_as_a_variable_or_breaks_out_of_a_comment() {
    let text = "CREATE STREAM `A\nB` (X VARCHAR) WITH (KAFKA_TOPIC='t${HOME}\n[x]', VALUE_FORMAT='JSON');\n\
        CREATE STREAM D AS SELECT X FROM `A\nB` WHERE X = '${HOME}' AND X <> '\u{1}';";
    let toml = compile(Path::new("x.sql"), text, &SqlOptions::default()).unwrap();
    let env = |name: &str| (name == "HOME").then(|| "SECRET".to_string());
    let spec = sluice::pipeline::parse_pipeline(Path::new("x.sql"), &toml, &env)
        .unwrap_or_else(|e| panic!("{e}\n{toml}"));
    let shown = format!("{spec:?}");
    assert!(!shown.contains("SECRET"), "{shown}");
    assert!(shown.contains("t${HOME}\\n[x]"), "{shown}");
    assert!(shown.contains("X == \\\"${HOME}\\\""), "{shown}");
}

/// Each case: a name and a SQL file that must be refused.
const REFUSED: &[(&str, &str)] = &[
    ("join", "CREATE STREAM A (X INT) WITH (KAFKA_TOPIC='a', VALUE_FORMAT='JSON');\nCREATE STREAM B (X INT) WITH (KAFKA_TOPIC='b', VALUE_FORMAT='JSON');\nCREATE STREAM C AS SELECT A.X FROM A JOIN B WITHIN 1 HOUR ON A.X = B.X;"),
    ("join_sqlparser_form", "CREATE STREAM A (X INT) WITH (KAFKA_TOPIC='a', VALUE_FORMAT='JSON');\nCREATE STREAM C AS SELECT A.X FROM A JOIN A AS B ON A.X = B.X;"),
    ("window", "CREATE STREAM A (X INT) WITH (KAFKA_TOPIC='a', VALUE_FORMAT='JSON');\nCREATE STREAM C AS SELECT X, COUNT(*) FROM A WINDOW TUMBLING (SIZE 1 HOUR) GROUP BY X;"),
    ("group_by", "CREATE STREAM A (X INT) WITH (KAFKA_TOPIC='a', VALUE_FORMAT='JSON');\nCREATE STREAM C AS SELECT X FROM A GROUP BY X;"),
    ("aggregate", "CREATE STREAM A (X INT) WITH (KAFKA_TOPIC='a', VALUE_FORMAT='JSON');\nCREATE STREAM C AS SELECT SUM(X) AS S FROM A;"),
    ("table", "CREATE TABLE T (X INT PRIMARY KEY) WITH (KAFKA_TOPIC='t', VALUE_FORMAT='JSON');"),
    ("pull_query", "SELECT * FROM A WHERE X = 1;"),
    ("push_query_in_a_file", "CREATE STREAM A (X INT) WITH (KAFKA_TOPIC='a', VALUE_FORMAT='JSON');\nSELECT * FROM A EMIT CHANGES;"),
    ("insert", "INSERT INTO A SELECT * FROM B;"),
    ("partition_by", "CREATE STREAM A (X INT) WITH (KAFKA_TOPIC='a', VALUE_FORMAT='JSON');\nCREATE STREAM C AS SELECT X FROM A PARTITION BY X;"),
    ("key_column", "CREATE STREAM A (ID VARCHAR KEY, X INT) WITH (KAFKA_TOPIC='a', VALUE_FORMAT='JSON');"),
    ("subquery", "CREATE STREAM A (X INT) WITH (KAFKA_TOPIC='a', VALUE_FORMAT='JSON');\nCREATE STREAM C AS SELECT X FROM (SELECT X FROM A);"),
    ("order_and_limit", "CREATE STREAM A (X INT) WITH (KAFKA_TOPIC='a', VALUE_FORMAT='JSON');\nCREATE STREAM C AS SELECT X FROM A LIMIT 3;"),
    ("format", "CREATE STREAM A (X INT) WITH (KAFKA_TOPIC='a', VALUE_FORMAT='AVRO');"),
    ("kafka_format_columns", "CREATE STREAM A (X INT, Y INT) WITH (KAFKA_TOPIC='a', VALUE_FORMAT='KAFKA');\nCREATE STREAM B (X BOOLEAN) WITH (KAFKA_TOPIC='b', VALUE_FORMAT='KAFKA');\nCREATE STREAM C (X INT) WITH (KAFKA_TOPIC='c', VALUE_FORMAT='KAFKA');\nCREATE STREAM D AS SELECT X, X + 1 AS Y FROM C;"),
    ("unknown_names", "CREATE STREAM A (X INT) WITH (KAFKA_TOPIC='a', VALUE_FORMAT='JSON');\nCREATE STREAM C AS SELECT Y FROM A;\nCREATE STREAM D AS SELECT X FROM NOPE;"),
    ("types", "CREATE STREAM A (X INT, S VARCHAR, T TIMESTAMP) WITH (KAFKA_TOPIC='a', VALUE_FORMAT='JSON');\nCREATE STREAM B (X INT, S VARCHAR) WITH (KAFKA_TOPIC='b', VALUE_FORMAT='JSON');\nCREATE STREAM C AS SELECT X + S AS Z FROM B;\nCREATE STREAM D AS SELECT X FROM B WHERE X + 1;"),
    ("every_error_at_once", "CREATE STREAM A (X INT) WITH (KAFKA_TOPIC='a');\nCREATE STREAM B (X INT) WITH (KAFKA_TOPIC='b', VALUE_FORMAT='JSON', COLOR='red');\nDROP STREAM B;\nCREATE STREAM C AS SELECT X FROM B GROUP BY X;\n-- sluice: colour = blue\nSET 'processing.guarantee' = 'exactly_once';"),
    ("syntax", "CREATE STREAM A (X INT WITH (KAFKA_TOPIC='a');"),
    ("nothing_to_run", "CREATE STREAM A (X INT) WITH (KAFKA_TOPIC='a', VALUE_FORMAT='JSON');"),
];

#[test]
fn refused_constructs_name_the_construct_and_where_it_is() {
    let mut report = String::new();
    for (name, sql) in REFUSED {
        let errors = match compile(Path::new("q.sql"), sql, &SqlOptions::default()) {
            Ok(toml) => panic!("{name} should be refused, compiled to:\n{toml}"),
            Err(errors) => errors,
        };
        report.push_str(&format!("### {name}\n{sql}\n-->\n{errors}\n\n"));
    }
    check_snapshot(&specs().join("refused.txt"), &report);
}

#[test]
fn push_queries_name_their_stream_and_compile_their_where_and_columns() {
    let q = push_query("select eventid, anomaly_val * 2 as twice from AnomalyDetectionWithFilter where anomaly_val > 2 emit changes;", None).unwrap();
    assert_eq!(q.stream, "ANOMALYDETECTIONWITHFILTER");
    assert_eq!(q.condition.as_deref(), Some("(ANOMALY_VAL > 2)"));
    assert_eq!(
        q.columns,
        vec![
            ("EVENTID".to_string(), "EVENTID".to_string()),
            ("TWICE".to_string(), "(ANOMALY_VAL * 2)".to_string())
        ]
    );
    let all = push_query("SELECT * FROM S EMIT CHANGES", None).unwrap();
    assert!(all.columns.is_empty() && all.condition.is_none());
    assert!(push_query("SELECT * FROM S", None)
        .unwrap_err()
        .contains("pull queries"));
    // Typed against the pipeline's SQL (as `sluice tap` does with the host's copy): a double
    // column times an integer literal is double arithmetic in CEL.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let sql = std::fs::read_to_string(root.join("pipelines/ecg-anomaly.sql")).unwrap();
    let toml = compile(Path::new("ecg-anomaly.sql"), &sql, &SqlOptions::default()).unwrap();
    assert_eq!(
        sluice::sql::source_of(&toml).as_deref(),
        Some(sql.trim_end())
    );
    let typed = push_query(
        "SELECT ANOMALY_VAL * 2 AS TWICE FROM ANOMALYDETECTIONWITHFILTER EMIT CHANGES",
        Some(&sql),
    )
    .unwrap();
    assert_eq!(typed.columns[0].1, "(ANOMALY_VAL * double(2))");
    assert!(push_query(
        "SELECT NOPE FROM ANOMALYDETECTIONWITHFILTER EMIT CHANGES",
        Some(&sql)
    )
    .unwrap_err()
    .contains("unknown column NOPE"));
    assert!(push_query("SELECT F(X) FROM S EMIT CHANGES", None)
        .unwrap_err()
        .contains("function calls"));
}
