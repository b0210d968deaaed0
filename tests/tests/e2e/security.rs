//! Hostile operators and hostile input against a running `sluice serve`, through the real admin
//! API: what someone holding (or guessing at) the admin token can and cannot make the host do.
//! Each test here failed before its fix.

use sluice_harness::serve::{http, Serve, TOKEN};
use std::io::{Read, Write};

/// The status code of a request whose answer may never end (an event stream): only the head
/// is read.
fn status_only(port: u16, path: &str) -> u16 {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(sluice_harness::WAIT))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code")
}

/// The token in a URL ends up in proxy logs, browser history and `Referer` headers: it is
/// accepted only in the `Authorization` header, except for the dashboard's event stream
/// (browsers' `EventSource` cannot set headers).
#[test]
fn the_token_is_accepted_in_a_url_only_for_the_event_stream() {
    let state = tempfile::tempdir().expect("state");
    let serve = Serve::start(state.path(), &[]);
    for path in ["/pipelines", "/metrics", "/udfs"] {
        let answer = http(
            serve.port,
            "GET",
            &format!("{path}?access_token={TOKEN}"),
            None,
            None,
        );
        assert_eq!(answer.status, 401, "{path} with the token in the URL");
    }
    let put = http(
        serve.port,
        "PUT",
        &format!("/pipelines/p?access_token={TOKEN}"),
        None,
        Some(b"[sources.a]\ntype = \"mqtt\"\n"),
    );
    assert_eq!(put.status, 401, "a change with the token in the URL");
    assert_eq!(
        status_only(serve.port, &format!("/events?access_token={TOKEN}")),
        200,
        "the event stream takes it"
    );
    assert_eq!(status_only(serve.port, "/events"), 401);
}

fn udf_pipeline(module: &str) -> String {
    format!(
        r#"
[sources.input]
type = "mqtt"
broker.url = "mqtt://127.0.0.1:1"
topics = ["in"]

[transforms.work]
type = "udf"
inputs = ["input"]
module = "{module}"

[sinks.out]
type = "console"
inputs = ["work"]
"#
    )
}

/// Over the API a UDF is named by its registered name (or `NAME@SHA8`), never a host path: a
/// path would read any file the host can (and `/dev/zero` would never end).
#[test]
fn a_deployed_pipeline_cannot_name_a_host_file_as_its_udf() {
    let state = tempfile::tempdir().expect("state");
    let serve = Serve::start(state.path(), &[]);
    let secret = state.path().join("secret.wasm");
    std::fs::write(&secret, "root:TOPSECRET:19000:0:99999:7:::\n").expect("write");
    for module in [
        "/dev/zero",
        "/etc/shadow",
        &secret.display().to_string(),
        "../udfs/anomaly.wasm",
    ] {
        let answer = serve.call(
            "PUT",
            "/pipelines/sneaky",
            Some(udf_pipeline(module).as_bytes()),
        );
        assert_eq!(answer.status, 400, "module = {module:?}: {}", answer.body);
        let body = answer.json();
        assert_eq!(
            body["errors"][0]["field"], "transforms.work.module",
            "{body}"
        );
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("registered name")),
            "{body}"
        );
        assert!(!answer.body.contains("TOPSECRET"), "{}", answer.body);
    }
    assert_eq!(serve.call("GET", "/pipelines/sneaky", None).status, 404);
}

/// What the host keeps (token, pipelines, UDFs, journals, dead letters) is its own: no file or
/// directory under the state directory is open to other users.
#[cfg(unix)]
#[test]
fn the_state_directory_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().expect("parent");
    let state = parent.path().join("state");
    let serve = Serve::start(&state, &[]);
    let created = serve.call(
        "PUT",
        "/pipelines/kept",
        Some(
            udf_pipeline("anomaly")
                .replace("module = \"anomaly\"", "module = \"tagger\"")
                .as_bytes(),
        ),
    );
    // The UDF is not registered yet: refused; push it and deploy again.
    assert_eq!(created.status, 422, "{}", created.body);
    let wasm = std::fs::read(sluice_harness::fixture("tagger")).expect("tagger.wasm");
    let pushed = serve.call("PUT", "/udfs/tagger", Some(&wasm));
    assert_eq!(pushed.status, 200, "{}", pushed.body);
    let created = serve.call(
        "PUT",
        "/pipelines/kept",
        Some(udf_pipeline("tagger").as_bytes()),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let mut open = Vec::new();
    let mut stack = vec![state.clone()];
    while let Some(dir) = stack.pop() {
        let mode = std::fs::metadata(&dir).expect("stat").permissions().mode();
        if mode & 0o077 != 0 {
            open.push(format!("{} {:o}", dir.display(), mode & 0o777));
        }
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("stat");
            if meta.is_dir() {
                stack.push(path);
            } else if meta.permissions().mode() & 0o077 != 0 {
                open.push(format!(
                    "{} {:o}",
                    path.display(),
                    meta.permissions().mode() & 0o777
                ));
            }
        }
    }
    assert!(open.is_empty(), "open to other users: {open:#?}");
}

fn topic_pipeline(topic: &str) -> String {
    format!(
        r#"
[sources.input]
type = "mqtt"
broker.url = "mqtt://127.0.0.1:1"
topics = ["{topic}"]

[sinks.out]
type = "console"
inputs = ["input"]
"#
    )
}

/// `${VAR}` in a pipeline sent over the API reads the host's environment: only variables with
/// the operator's prefix (`SLUICE_VAR_` by default) expand, and no error echoes a value that
/// came from a variable.
#[test]
fn a_deployed_pipeline_reads_only_prefixed_variables_and_errors_never_echo_them() {
    let state = tempfile::tempdir().expect("state");
    let serve = Serve::start_with_env(
        state.path(),
        &[],
        &[
            ("AWS_SECRET_ACCESS_KEY", "a/#/leaked-aws-key"),
            ("SLUICE_VAR_TOPIC", "a/#/hushhush-topic"),
            ("SLUICE_VAR_GOOD", "sensors/in"),
        ],
    );
    // Not prefixed: as if unset, and the error says why.
    let answer = serve.call(
        "PUT",
        "/pipelines/env",
        Some(topic_pipeline("${AWS_SECRET_ACCESS_KEY}").as_bytes()),
    );
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(!answer.body.contains("leaked-aws-key"), "{}", answer.body);
    assert!(answer.body.contains("SLUICE_VAR_"), "{}", answer.body);
    // Prefixed, but the value is invalid: the error does not repeat it.
    let answer = serve.call(
        "PUT",
        "/pipelines/env",
        Some(topic_pipeline("${SLUICE_VAR_TOPIC}").as_bytes()),
    );
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(!answer.body.contains("hushhush"), "{}", answer.body);
    assert_eq!(answer.json()["errors"][0]["field"], "sources.input.topics");
    // Prefixed and valid: it expands.
    let answer = serve.call(
        "PUT",
        "/pipelines/env",
        Some(topic_pipeline("${SLUICE_VAR_GOOD}").as_bytes()),
    );
    assert_eq!(answer.status, 201, "{}", answer.body);
}

fn kafka_pipeline(options: &str) -> String {
    format!(
        r#"
[sources.input]
type = "mqtt"
broker.url = "mqtt://127.0.0.1:1"
topics = ["in"]

[sinks.out]
type = "kafka"
inputs = ["input"]
brokers = "127.0.0.1:1"
topic = "out"
options = {{ {options} }}
"#
    )
}

/// librdkafka's options could load native code (`plugin.library.paths`), run a command
/// (`sasl.kerberos.kinit.cmd`), read any file (`ssl.*.location`) or switch TLS verification
/// off: a deployed pipeline gets an allowlist, and files only under `--allow-path`.
#[test]
fn a_deployed_pipeline_cannot_load_code_or_read_files_through_kafka_options() {
    let state = tempfile::tempdir().expect("state");
    let certs = tempfile::tempdir().expect("certs");
    std::fs::write(certs.path().join("ca.pem"), "not really a certificate").expect("write");
    let allow = certs.path().display().to_string();
    let serve = Serve::start(state.path(), &["--allow-path", &allow]);
    let hostile = kafka_pipeline(
        r#""plugin.library.paths" = "/tmp/evil.so", "sasl.kerberos.kinit.cmd" = "touch /tmp/pwned", "ssl.ca.location" = "/etc/passwd", "enable.ssl.certificate.verification" = "false""#,
    );
    let answer = serve.call("PUT", "/pipelines/k", Some(hostile.as_bytes()));
    assert_eq!(answer.status, 400, "{}", answer.body);
    let body = answer.json();
    let mut fields: Vec<&str> = body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            r#"sinks.out.options."enable.ssl.certificate.verification""#,
            r#"sinks.out.options."plugin.library.paths""#,
            r#"sinks.out.options."sasl.kerberos.kinit.cmd""#,
            r#"sinks.out.options."ssl.ca.location""#,
        ],
        "{body}"
    );
    assert!(
        !answer.body.contains("/etc/passwd"),
        "values are not repeated"
    );
    assert!(!std::path::Path::new("/tmp/pwned").exists());
    // Tuning, and a file under the allowed directory, are fine.
    let fine = kafka_pipeline(&format!(
        r#""linger.ms" = "5", "ssl.ca.location" = "{allow}/ca.pem""#
    ));
    let answer = serve.call("PUT", "/pipelines/k", Some(fine.as_bytes()));
    assert_eq!(answer.status, 201, "{}", answer.body);
}

/// Every change asked of the host is in its log with what, the outcome and from where, refused
/// ones too.
#[test]
fn changes_are_audited_with_what_and_from_where() {
    let state = tempfile::tempdir().expect("state");
    let serve = Serve::start(state.path(), &[]);
    let refused = http(
        serve.port,
        "DELETE",
        "/pipelines/someone-elses",
        Some("guessed-token"),
        None,
    );
    assert_eq!(refused.status, 401);
    let line = serve.wait_for_log("path=/pipelines/someone-elses");
    assert!(line.contains("admin change"), "{line}");
    assert!(line.contains("method=DELETE"), "{line}");
    assert!(line.contains("status=401"), "{line}");
    assert!(line.contains("remote=127.0.0.1:"), "{line}");
    let created = serve.call(
        "PUT",
        "/pipelines/audited",
        Some(topic_pipeline("in").as_bytes()),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let line = serve.wait_for_log("path=/pipelines/audited");
    assert!(line.contains("method=PUT"), "{line}");
    assert!(line.contains("status=201"), "{line}");
    assert!(line.contains("sluice::audit"), "{line}");
}

/// The admin API against its own OpenAPI document, with schemathesis (installed by `cargo xtask
/// test`): generated and mutated requests (bad names, wrong types, random TOML and Wasm bodies,
/// sequences of calls) get no 5xx, and every answer matches the document (status codes,
/// content types, body schemas). Left out: the two streaming endpoints, which never end, and
/// the check that every schema-valid request is accepted (a TOML or Wasm body can be a valid
/// string and still not a pipeline or a module).
#[test]
fn the_admin_api_keeps_to_its_openapi_document_under_schemathesis() {
    let schemathesis = std::env::var_os("SLUICE_TEST_SCHEMATHESIS")
        .expect("SLUICE_TEST_SCHEMATHESIS: `cargo xtask test` installs schemathesis and sets it");
    let state = tempfile::tempdir().expect("state");
    let serve = Serve::start(state.path(), &[]);
    let work = tempfile::tempdir().expect("schemathesis's working directory");
    let seed = std::env::var("SLUICE_SCHEMATHESIS_SEED").unwrap_or_else(|_| "20261202".into());
    let hooks = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemathesis");
    // To a file, not a pipe: a long report would fill the pipe while nobody reads it.
    let report_path = work.path().join("report.txt");
    let report_file = std::fs::File::create(&report_path).expect("report file");
    let mut child = std::process::Command::new(schemathesis)
        .arg("run")
        .arg(format!("http://127.0.0.1:{}/openapi.json", serve.port))
        .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
        .args([
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
        ])
        .args(["--exclude-path", "/events"])
        .args(["--exclude-path", "/pipelines/{name}/tap/{component}"])
        .args(["--max-examples", "60", "--seed", &seed, "--no-color"])
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .env("PYTHONPATH", &hooks)
        .current_dir(work.path())
        .stdout(report_file.try_clone().expect("report file"))
        .stderr(report_file)
        .spawn()
        .expect("run schemathesis");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("schemathesis ran for more than 10 minutes");
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let report = std::fs::read_to_string(&report_path).expect("read the report");
    assert!(
        status.success(),
        "schemathesis found problems (seed {seed}):\n{report}\nhost log:\n{}",
        serve.log_so_far()
    );
    assert!(report.contains("Test cases:"), "{report}");
    // The host is still up and answering.
    assert_eq!(http(serve.port, "GET", "/health", None, None).status, 200);
}

/// A module that takes long to compile is refused once the compile budget is spent (its
/// compiling process killed), or once it needs more memory than its budget, with a reason, and
/// the host keeps answering meanwhile; and compiling happens outside the lock that
/// UDF changes and pipeline builds take, so a pipeline using another UDF deploys while a slow
/// upload is still compiling.
#[test]
fn a_module_slow_to_compile_is_refused_past_the_budget_and_blocks_nothing() {
    // About 16 MB of code: seconds of compiling and hundreds of MiB while at it, where a
    // deploy takes a tenth of a second.
    let slow = sluice_harness::wasm::slow_to_compile_component(16, 1 << 20);
    let tagger = std::fs::read(sluice_harness::fixture("tagger")).expect("tagger fixture");

    // A budget far below what the module needs.
    let state = tempfile::tempdir().expect("state");
    // A compiled-module cache of the test's own, not the user's.
    let cache = state.path().join("cache");
    let env = [("SLUICE_CACHE_DIR", cache.to_str().expect("a UTF-8 path"))];
    let serve = Serve::start_with_env(state.path(), &["--udf-compile-timeout", "100ms"], &env);
    let answer = serve.call("PUT", "/udfs/slow", Some(&slow));
    assert_eq!(answer.status, 422, "{}", answer.body);
    assert!(
        answer.body.contains("compile budget"),
        "the reason names the budget: {}",
        answer.body
    );
    assert_eq!(serve.call("GET", "/udfs", None).status, 200);
    drop(serve);

    // A memory budget far below what compiling it takes: the compiling process runs out and
    // the module is refused, the host unharmed.
    let state = tempfile::tempdir().expect("state");
    let cache = state.path().join("cache");
    let env = [("SLUICE_CACHE_DIR", cache.to_str().expect("a UTF-8 path"))];
    let serve = Serve::start_with_env(state.path(), &["--udf-compile-memory-mib", "128"], &env);
    let answer = serve.call("PUT", "/udfs/slow", Some(&slow));
    assert_eq!(answer.status, 422, "{}", answer.body);
    assert!(
        answer.body.contains("compile memory budget"),
        "the reason names the memory budget: {}",
        answer.body
    );
    // A real UDF compiles within that budget.
    let pushed = serve.call("PUT", "/udfs/tagger", Some(&tagger));
    assert_eq!(pushed.status, 200, "{}", pushed.body);
    drop(serve);

    // The default budget: the module compiles for a while (then fits no world). Meanwhile a
    // pipeline using the tagger UDF deploys: nothing waits for the slow compilation.
    let state = tempfile::tempdir().expect("state");
    let cache = state.path().join("cache");
    let env = [("SLUICE_CACHE_DIR", cache.to_str().expect("a UTF-8 path"))];
    let serve = Serve::start_with_env(state.path(), &[], &env);
    let pushed = serve.call("PUT", "/udfs/tagger", Some(&tagger));
    assert_eq!(pushed.status, 200, "{}", pushed.body);
    let port = serve.port;
    let started = std::time::Instant::now();
    let upload = std::thread::spawn(move || {
        let answer = http(port, "PUT", "/udfs/slow", Some(TOKEN), Some(&slow));
        (answer, started.elapsed())
    });
    serve.wait_for_log("compiling UDF module");
    serve.create_pipeline("tagged", &udf_pipeline("tagger"));
    let deployed_after = started.elapsed();
    assert!(
        !upload.is_finished(),
        "the pipeline deployed ({deployed_after:?}) while the slow module was still compiling"
    );
    let (answer, compiled_after) = upload.join().expect("upload");
    assert_eq!(answer.status, 422, "{}", answer.body);
    assert!(answer.body.contains("world"), "{}", answer.body);
    eprintln!(
        "deployed after {deployed_after:?}; the slow module was refused after {compiled_after:?}"
    );
}

/// `serve --tls-cert/--tls-key`: the admin API speaks HTTPS only. The CLI client trusts a
/// private CA given with `SLUICE_ADMIN_CA` and refuses the host without it; plain HTTP gets no
/// answer; the audit log still sees the peer's address.
#[test]
fn the_admin_api_serves_https_with_the_operators_certificate() {
    let certs = sluice_harness::tls::TestCerts::generate();
    let path = |p: &std::path::Path| p.to_str().expect("a UTF-8 path").to_string();
    let (ca, cert, key) = (path(&certs.ca), path(&certs.cert), path(&certs.key));

    let state = tempfile::tempdir().expect("state");
    let serve = Serve::start(state.path(), &["--tls-cert", &cert, "--tls-key", &key]);
    let client = |args: &[&str], ca: Option<&str>| {
        let mut cmd = std::process::Command::new(sluice_harness::sluice_bin());
        cmd.args(args)
            .env(
                "SLUICE_ADMIN_URL",
                format!("https://localhost:{}", serve.port),
            )
            .env("SLUICE_ADMIN_TOKEN", TOKEN)
            .env_remove("SLUICE_ADMIN_CA");
        if let Some(ca) = ca {
            cmd.env("SLUICE_ADMIN_CA", ca);
        }
        cmd.output().expect("run the sluice client")
    };
    let trusted = client(&["status"], Some(&ca));
    assert!(trusted.status.success(), "{trusted:?}");
    let untrusted = client(&["status"], None);
    assert_eq!(untrusted.status.code(), Some(2), "{untrusted:?}");
    assert!(
        String::from_utf8_lossy(&untrusted.stderr).contains("certificate"),
        "the refusal names the certificate: {untrusted:?}"
    );
    // Plain HTTP on the TLS port is not answered.
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", serve.port)).expect("connect");
    stream
        .set_read_timeout(Some(sluice_harness::WAIT))
        .expect("timeout");
    write!(
        stream,
        "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    assert!(
        !answer.starts_with(b"HTTP/1.1 200"),
        "plain HTTP answered: {}",
        String::from_utf8_lossy(&answer)
    );
    // A change over TLS is audited with the peer's address.
    let refused = client(&["undeploy", "nothing-here"], Some(&ca));
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let audit = serve.wait_for_log("path=/pipelines/nothing-here");
    assert!(audit.contains("remote=127.0.0.1:"), "{audit}");
}

/// The memory cap (`memory_mib`, default 64) is the instance's, over all its linear memories:
/// a module with one extra 40 MiB memory fits beside its own, one with two does not, though
/// each alone is under the cap (before, the cap held per memory, and two passed).
#[test]
fn a_module_with_several_memories_does_not_get_the_cap_several_times() {
    let tagger = std::fs::read(sluice_harness::fixture("tagger")).expect("tagger fixture");
    const PAGES_40_MIB: usize = 640;
    let one = sluice_harness::wasm::with_extra_memories(&tagger, 1, PAGES_40_MIB);
    let two = sluice_harness::wasm::with_extra_memories(&tagger, 2, PAGES_40_MIB);
    let state = tempfile::tempdir().expect("state");
    let serve = Serve::start(state.path(), &[]);
    let pushed = serve.call("PUT", "/udfs/one-more", Some(&one));
    assert_eq!(pushed.status, 200, "{}", pushed.body);
    serve.create_pipeline("one-more", &udf_pipeline("one-more"));

    let pushed = serve.call("PUT", "/udfs/two-more", Some(&two));
    assert_eq!(pushed.status, 200, "{}", pushed.body);
    let refused = serve.call(
        "PUT",
        "/pipelines/two-more",
        Some(udf_pipeline("two-more").as_bytes()),
    );
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(
        refused.body.contains("memory-limit"),
        "the reason is the memory cap: {}",
        refused.body
    );
}
