//! The admin API's command-line client: `sluice deploy FILE...`, `sluice undeploy NAME`,
//! `sluice status [NAME]`, `sluice udf push MODULE`, `sluice udf rollback NAME` and
//! `sluice tap PIPELINE.COMPONENT`, talking to `sluice serve` at `--admin URL`.
//!
//! The token comes from `--token`, else `SLUICE_ADMIN_TOKEN`, else the `admin-token` file in
//! the state directory (what `sluice serve` generated on this machine).
//! Exit status: 0 done, 1 the host refused (the reason is printed), 2 the host could not be
//! reached or the arguments are unusable.

use super::default_state_dir;
use super::serve::DEFAULT_LISTEN;
use serde::de::DeserializeOwned;
use sluice::api::{
    DeployAnswer, ErrorBody, PipelineDetail, PipelineList, PipelineState, PipelineStatus,
    RollbackAnswer, UdfList, UdfPushed, UdfView, UndeployAnswer,
};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Where the admin API is and how to authenticate.
#[derive(clap::Args, Clone)]
pub struct AdminArgs {
    /// The admin API [default: $SLUICE_ADMIN_URL, else http://127.0.0.1:7878].
    #[arg(long, value_name = "URL")]
    admin: Option<String>,
    /// The bearer token [default: $SLUICE_ADMIN_TOKEN, else STATE_DIR/admin-token].
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
    /// The state directory whose `admin-token` to use [default: as `sluice serve`].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// A CA certificate (PEM) to trust for an `https://` admin URL, besides the system's
    /// [default: $SLUICE_ADMIN_CA].
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
}

/// Arguments of `sluice deploy`.
#[derive(clap::Args)]
pub struct DeployArgs {
    /// Pipeline files, TOML or SQL (`.sql`, compiled by the host); each is deployed (or
    /// replaces the pipeline of the same name).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    #[command(flatten)]
    sql: super::SqlArgs,
    #[command(flatten)]
    admin: AdminArgs,
}

/// Arguments of `sluice undeploy`.
#[derive(clap::Args)]
pub struct UndeployArgs {
    /// The pipeline to drain and stop.
    name: String,
    #[command(flatten)]
    admin: AdminArgs,
}

/// Arguments of `sluice status`.
#[derive(clap::Args)]
pub struct StatusArgs {
    /// One pipeline (default: every pipeline and UDF).
    name: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    admin: AdminArgs,
}

/// Arguments of `sluice udf push`.
#[derive(clap::Args)]
pub struct UdfPushArgs {
    /// The `.wasm` file to upload.
    module: PathBuf,
    /// The UDF name [default: the file name without `.wasm`].
    #[arg(long)]
    name: Option<String>,
    /// Run it as the shadow of the live version (given every live batch, compared record by
    /// record, never delivered) instead of making it live; see `sluice udf shadow NAME`.
    #[arg(long)]
    shadow: bool,
    /// With --shadow: promote it when this CEL rule over its figures holds, e.g.
    /// "records >= 10000 && alerts_shadow_only == 0 && p99_rel_delta < 0.01".
    #[arg(long, value_name = "RULE", requires = "shadow")]
    promote_when: Option<String>,
    /// With --shadow: drop it when this CEL rule holds, e.g. "shadow_errors > 0".
    #[arg(long, value_name = "RULE", requires = "shadow")]
    drop_when: Option<String>,
    /// With --shadow: drop it when it falls this many records behind [default: 10000].
    #[arg(long, value_name = "RECORDS", requires = "shadow")]
    max_lag: Option<u64>,
    #[command(flatten)]
    admin: AdminArgs,
}

/// Arguments of `sluice udf rollback`.
#[derive(clap::Args)]
pub struct UdfRollbackArgs {
    /// The UDF to put back to its previous version.
    name: String,
    #[command(flatten)]
    admin: AdminArgs,
}

/// Arguments of `sluice tap`.
#[derive(clap::Args)]
pub struct TapArgs {
    /// `PIPELINE.COMPONENT`: what leaves a source or transform, or enters a sink. Or a push
    /// query on a stream of a SQL pipeline, `"SELECT cols FROM STREAM [WHERE cond] EMIT
    /// CHANGES"`: one JSON row per record.
    target: String,
    /// With a push query: the pipeline whose stream it reads [default: the one that has it].
    #[arg(long)]
    pipeline: Option<String>,
    /// Stop after this many messages.
    #[arg(long)]
    limit: Option<u64>,
    /// Show this fraction of the messages, evenly spread (0 < RATE <= 1).
    #[arg(long, value_name = "RATE")]
    sample: Option<f64>,
    #[command(flatten)]
    admin: AdminArgs,
}

/// A failed command: what to print and the exit status.
pub(super) struct Failure(pub(super) u8, pub(super) String);

pub(super) fn finish(result: Result<(), Failure>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(code, message)) => {
            eprintln!("error: {message}");
            ExitCode::from(code)
        }
    }
}

/// A connection to the admin API.
pub(super) struct Admin {
    base: String,
    token: String,
    http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

impl Admin {
    pub(super) fn connect(args: &AdminArgs) -> Result<Admin, Failure> {
        let base = args
            .admin
            .clone()
            .or_else(|| std::env::var("SLUICE_ADMIN_URL").ok())
            .unwrap_or_else(|| format!("http://{DEFAULT_LISTEN}"));
        let token = match args
            .token
            .clone()
            .or_else(|| std::env::var("SLUICE_ADMIN_TOKEN").ok())
        {
            Some(token) => token,
            None => {
                let file = args
                    .state_dir
                    .clone()
                    .unwrap_or_else(default_state_dir)
                    .join("admin-token");
                std::fs::read_to_string(&file).map_err(|err| {
                    Failure(
                        2,
                        format!(
                            "no admin token: pass --token, set SLUICE_ADMIN_TOKEN, or run where \
                             `sluice serve` keeps {} ({err})",
                            file.display()
                        ),
                    )
                })?
            }
        };
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder();
        let ca_file = args
            .ca_file
            .clone()
            .or_else(|| std::env::var_os("SLUICE_ADMIN_CA").map(PathBuf::from));
        if let Some(file) = ca_file {
            let pem = std::fs::read(&file)
                .map_err(|e| Failure(2, format!("--ca-file {}: {e}", file.display())))?;
            let ca = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| Failure(2, format!("--ca-file {}: {e}", file.display())))?;
            builder = builder.add_root_certificate(ca);
        }
        let http = builder
            .build()
            .map_err(|e| Failure(2, format!("cannot create an HTTP client: {e}")))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Failure(2, format!("cannot start the async runtime: {e}")))?;
        Ok(Admin {
            base: base.trim_end_matches('/').to_string(),
            token: token.trim().to_string(),
            http,
            runtime,
        })
    }

    /// Sends a request; returns the body of a 2xx answer as `T`, or the API's error message.
    pub(super) fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
        content_type: &str,
    ) -> Result<T, Failure> {
        let url = format!("{}{path}", self.base);
        self.runtime.block_on(async {
            let mut request = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(&self.token);
            if let Some(body) = body {
                request = request
                    .header(reqwest::header::CONTENT_TYPE, content_type)
                    .body(body);
            }
            let response = request
                .send()
                .await
                .map_err(|e| Failure(2, format!("cannot reach the admin API at {url}: {e}")))?;
            let status = response.status();
            let bytes = response
                .bytes()
                .await
                .map_err(|e| Failure(2, format!("{method} {url}: {e}")))?;
            if status.is_success() {
                serde_json::from_slice(&bytes).map_err(|e| {
                    Failure(
                        2,
                        format!(
                            "{method} {path}: the answer is not what this client expects ({e}); \
                             is the host a different version?"
                        ),
                    )
                })
            } else {
                Err(Failure(
                    1,
                    format!("{method} {path}: {status}: {}", error_text(&bytes)),
                ))
            }
        })
    }
}

/// An error answer as text: the API's message and every validation error, or the body as it
/// came when it is not the API's (a proxy's page).
fn error_text(body: &[u8]) -> String {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(error) => error.describe(),
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    }
}

/// The pipeline name a file deploys as: `[pipeline] name`, else the file stem.
fn pipeline_name(file: &Path, text: &str) -> String {
    text.parse::<toml::Table>()
        .ok()
        .and_then(|t| t.get("pipeline")?.get("name")?.as_str().map(str::to_string))
        .unwrap_or_else(|| {
            file.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
}

/// The name of a SQL pipeline: its `-- sluice: name = ...` comment, else the file stem.
fn sql_pipeline_name(file: &Path, text: &str) -> String {
    text.lines()
        .filter_map(|line| {
            line.trim()
                .strip_prefix("--")?
                .trim()
                .strip_prefix("sluice:")
        })
        .filter_map(|rest| rest.split_once('='))
        .find(|(key, _)| key.trim().eq_ignore_ascii_case("name"))
        .map(|(_, value)| value.trim().to_string())
        .unwrap_or_else(|| {
            file.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
}

/// `sluice deploy FILE...`
pub fn deploy(args: DeployArgs) -> ExitCode {
    finish((|| {
        let admin = Admin::connect(&args.admin)?;
        let mut failed = None;
        for file in &args.files {
            let text = std::fs::read_to_string(file)
                .map_err(|e| Failure(2, format!("{}: cannot read: {e}", file.display())))?;
            let (path, content_type) = if sluice::sql::is_sql(file) {
                let mut query = Vec::new();
                if let Some(brokers) = &args.sql.kafka_brokers {
                    query.push(format!(
                        "kafka_brokers={}",
                        super::udf_shadow::url_encode(brokers)
                    ));
                }
                if !args.sql.functions.is_empty() {
                    let pairs: Vec<String> = args
                        .sql
                        .functions
                        .iter()
                        .map(|(f, m)| format!("{f}={m}"))
                        .collect();
                    query.push(format!(
                        "function={}",
                        super::udf_shadow::url_encode(&pairs.join(","))
                    ));
                }
                let name = sql_pipeline_name(file, &text);
                (
                    format!("/pipelines/{name}?{}", query.join("&")),
                    "application/sql",
                )
            } else {
                let name = pipeline_name(file, &text);
                (format!("/pipelines/{name}"), "application/toml")
            };
            match admin.call::<DeployAnswer>(
                reqwest::Method::PUT,
                &path,
                Some(text.into_bytes()),
                content_type,
            ) {
                Ok(answer) => println!("{}: {}", answer.name, deployed_word(answer.deployed)),
                Err(Failure(code, message)) => {
                    eprintln!("{}: {message}", file.display());
                    failed = Some(Failure(code, format!("{} not deployed", file.display())));
                }
            }
        }
        failed.map_or(Ok(()), Err)
    })())
}

/// `sluice undeploy NAME`
pub fn undeploy(args: UndeployArgs) -> ExitCode {
    finish((|| {
        let admin = Admin::connect(&args.admin)?;
        admin.call::<UndeployAnswer>(
            reqwest::Method::DELETE,
            &format!("/pipelines/{}", args.name),
            None,
            "",
        )?;
        println!("{}: undeployed (drained)", args.name);
        Ok(())
    })())
}

/// `sluice status [NAME]`
pub fn status(args: StatusArgs) -> ExitCode {
    finish((|| {
        let admin = Admin::connect(&args.admin)?;
        let (pipelines, udfs, host_id) = match &args.name {
            Some(name) => {
                let one: PipelineDetail = admin.call(
                    reqwest::Method::GET,
                    &format!("/pipelines/{name}"),
                    None,
                    "",
                )?;
                if args.json {
                    // With the TOML it was deployed from.
                    print_json(&serde_json::json!({ "pipelines": [one], "udfs": null }));
                    return Ok(());
                }
                (vec![one.status], None, None)
            }
            None => {
                let all: PipelineList = admin.call(reqwest::Method::GET, "/pipelines", None, "")?;
                let udfs: UdfList = admin.call(reqwest::Method::GET, "/udfs", None, "")?;
                (all.pipelines, Some(udfs.udfs), Some(all.host_id))
            }
        };
        if args.json {
            print_json(
                &serde_json::json!({ "host_id": host_id, "pipelines": pipelines, "udfs": udfs }),
            );
            return Ok(());
        }
        if let Some(host_id) = host_id.filter(|id| !id.is_empty()) {
            println!("host {host_id}");
        }
        // The shadows' figures, one line each under their UDF.
        let shadows: Vec<sluice::api::ShadowReport> = udfs
            .iter()
            .flatten()
            .filter(|u| u.shadow.is_some())
            .filter_map(|u| {
                admin
                    .call(
                        reqwest::Method::GET,
                        &format!("/udfs/{}/shadow", u.name),
                        None,
                        "",
                    )
                    .ok()
            })
            .collect();
        print!("{}", status_table(&pipelines, udfs.as_deref(), &shadows));
        Ok(())
    })())
}

fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

/// What a deploy did, as the CLI says it.
fn deployed_word(deployed: sluice::api::Deployed) -> &'static str {
    match deployed {
        sluice::api::Deployed::Created => "created",
        sluice::api::Deployed::Replaced => "replaced",
        sluice::api::Deployed::Unchanged => "unchanged",
    }
}

/// Pipelines with their components and counters, then UDF versions, as text.
fn status_table(
    pipelines: &[PipelineStatus],
    udfs: Option<&[UdfView]>,
    shadows: &[sluice::api::ShadowReport],
) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if pipelines.is_empty() {
        out.push_str("no pipelines deployed\n");
    }
    for p in pipelines {
        let _ = write!(out, "pipeline {}: ", p.name);
        match &p.status {
            PipelineState::Running => out.push_str("running"),
            PipelineState::Stopping => out.push_str("stopping"),
            PipelineState::Restarting { reason, .. } => {
                let _ = write!(out, "restarting ({reason})");
            }
        }
        out.push('\n');
        let _ = writeln!(
            out,
            "  {:<22} {:<10} {:<14} {:>10} {:>10} {:>8} {:>16} {:>9}  last error",
            "component", "role", "kind", "in", "out", "errors", "unacked (oldest)", "journal"
        );
        for c in &p.components {
            let c = &c.counters;
            let last = c.last_error.as_ref().map_or("", |e| e.message.as_str());
            // Sources: records not acknowledged to the broker yet, and the oldest one's age.
            let unacked = match (c.unacked, c.oldest_unacked_secs) {
                (Some(count), Some(age)) => format!("{count} ({age:.1}s)"),
                _ => "-".to_string(),
            };
            // Sources: journaled and not delivered everywhere; sinks: buffered, not taken yet.
            let journal = c
                .journal_records
                .map_or_else(|| "-".to_string(), |n| n.to_string());
            let _ = writeln!(
                out,
                "  {:<22} {:<10} {:<14} {:>10} {:>10} {:>8} {:>16} {:>9}  {last}",
                c.name,
                c.role.as_str(),
                c.kind,
                c.records_in,
                c.records_out,
                c.errors,
                unacked,
                journal,
            );
        }
        for c in &p.components {
            if let Some(owned) = &c.counters.owned {
                let owned = if owned.is_empty() {
                    "nothing (rebalancing)"
                } else {
                    owned
                };
                let _ = writeln!(out, "  {} owns {owned}", c.counters.name);
            }
        }
        for u in &p.udfs {
            let _ = writeln!(out, "  udf {}: {}", u.transform, u.version);
        }
    }
    for u in udfs.into_iter().flatten() {
        let _ = write!(out, "udf {}: live {}", u.name, u.version);
        if !u.language.is_empty() {
            let _ = write!(out, " ({})", u.language);
        }
        if let Some(refusal) = &u.last_refusal {
            let _ = write!(out, " (last refused: {refusal})");
        }
        out.push('\n');
        if let Some(shadow) = shadows.iter().find(|r| r.name == u.name) {
            let _ = writeln!(out, "  {}", super::udf_shadow::summary(shadow));
        }
    }
    out
}

/// `sluice udf push MODULE`
pub fn udf_push(args: UdfPushArgs) -> ExitCode {
    finish((|| {
        let admin = Admin::connect(&args.admin)?;
        let name = match &args.name {
            Some(name) => name.clone(),
            None => args
                .module
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .ok_or_else(|| Failure(2, format!("{}: no file name", args.module.display())))?,
        };
        let wasm = std::fs::read(&args.module)
            .map_err(|e| Failure(2, format!("{}: cannot read: {e}", args.module.display())))?;
        let mut query = Vec::new();
        if args.shadow {
            query.push("shadow=true".to_string());
        }
        for (key, value) in [
            ("promote_when", args.promote_when.clone()),
            ("drop_when", args.drop_when.clone()),
            ("max_lag", args.max_lag.map(|n| n.to_string())),
        ] {
            if let Some(value) = value {
                query.push(format!("{key}={}", super::udf_shadow::url_encode(&value)));
            }
        }
        let path = if query.is_empty() {
            format!("/udfs/{name}")
        } else {
            format!("/udfs/{name}?{}", query.join("&"))
        };
        let answer: UdfPushed =
            admin.call(reqwest::Method::PUT, &path, Some(wasm), "application/wasm")?;
        println!(
            "{}: {}",
            answer.version,
            if answer.shadow {
                "shadow (runs beside the live version; see `sluice udf shadow NAME`)"
            } else if answer.swapped {
                "live (running pipelines switched between batches)"
            } else {
                "stored (already live, or no pipeline uses it yet)"
            }
        );
        Ok(())
    })())
}

/// `sluice udf rollback NAME`
pub fn udf_rollback(args: UdfRollbackArgs) -> ExitCode {
    finish((|| {
        let admin = Admin::connect(&args.admin)?;
        let answer: RollbackAnswer = admin.call(
            reqwest::Method::POST,
            &format!("/udfs/{}/rollback", args.name),
            None,
            "",
        )?;
        println!("{}: rolled back to {}", answer.name, answer.version);
        Ok(())
    })())
}

/// `sluice tap PIPELINE.COMPONENT`: prints each message's JSON line as it arrives. With a push
/// query, each record of the stream that passes its WHERE, as a JSON row of its columns.
pub fn tap(args: TapArgs) -> ExitCode {
    finish((|| {
        let admin = Admin::connect(&args.admin)?;
        let push = args
            .target
            .trim_start()
            .get(..6)
            .is_some_and(|w| w.eq_ignore_ascii_case("select"));
        let (pipeline, component, mut rows) = if push {
            // Untyped first, to learn the stream; then typed against the pipeline's own SQL.
            let stream = sluice::sql::push_query(&args.target, None)
                .map_err(|e| Failure(2, format!("push query: {e}")))?
                .stream;
            let component = sluice::sql::component_name(&stream);
            let pipeline = match &args.pipeline {
                Some(pipeline) => pipeline.clone(),
                None => pipeline_with(&admin, &component, &stream)?,
            };
            let detail: sluice::api::PipelineDetail = admin.call(
                reqwest::Method::GET,
                &format!("/pipelines/{pipeline}"),
                None,
                "",
            )?;
            let sql = detail.toml.as_deref().and_then(sluice::sql::source_of);
            let query = PushRows::new(&args.target, sql.as_deref())?;
            (pipeline, component, Some(query))
        } else {
            let (pipeline, component) = args.target.split_once('.').ok_or_else(|| {
                Failure(
                    2,
                    format!("expected PIPELINE.COMPONENT, found {:?}", args.target),
                )
            })?;
            (pipeline.to_string(), component.to_string(), None)
        };
        let mut query = Vec::new();
        match (&mut rows, args.limit) {
            (Some(rows), limit) => rows.limit = limit,
            (None, Some(limit)) => query.push(format!("limit={limit}")),
            (None, None) => {}
        }
        if let Some(sample) = args.sample {
            query.push(format!("sample={sample}"));
        }
        let url = format!(
            "{}/pipelines/{pipeline}/tap/{component}?{}",
            admin.base,
            query.join("&")
        );
        admin.runtime.block_on(async {
            let mut response = admin
                .http
                .get(&url)
                .bearer_auth(&admin.token)
                .send()
                .await
                .map_err(|e| Failure(2, format!("cannot reach the admin API at {url}: {e}")))?;
            if !response.status().is_success() {
                let status = response.status();
                let body = response.bytes().await.unwrap_or_default();
                return Err(Failure(
                    1,
                    format!("tap {}: {status}: {}", args.target, error_text(&body)),
                ));
            }
            use std::io::Write;
            let mut stdout = std::io::stdout();
            let mut pending = Vec::new();
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|e| Failure(2, format!("tap {}: {e}", args.target)))?
            {
                let out = match &mut rows {
                    None => chunk.to_vec(),
                    Some(rows) => {
                        pending.extend_from_slice(&chunk);
                        rows.lines(&mut pending)
                    }
                };
                if stdout.write_all(&out).and_then(|_| stdout.flush()).is_err() {
                    break; // stdout closed (e.g. piped into head)
                }
                if rows.as_ref().is_some_and(PushRows::done) {
                    break;
                }
            }
            Ok(())
        })
    })())
}

/// The pipeline that has a component named `component` (a SQL stream), or why none or which.
fn pipeline_with(admin: &Admin, component: &str, stream: &str) -> Result<String, Failure> {
    let list: sluice::api::PipelineList =
        admin.call(reqwest::Method::GET, "/pipelines", None, "")?;
    let found: Vec<String> = list
        .pipelines
        .iter()
        .filter(|p| p.components.iter().any(|c| c.counters.name == component))
        .map(|p| p.name.clone())
        .collect();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(Failure(
            1,
            format!("no deployed pipeline has the stream {stream} (component `{component}`)"),
        )),
        several => Err(Failure(
            2,
            format!(
                "the stream {stream} is in several pipelines ({}): choose one with --pipeline",
                several.join(", ")
            ),
        )),
    }
}

/// A push query applied to tapped lines: its WHERE as a filter and its columns as a select.
struct PushRows {
    filter: Option<sluice::transforms::filter::Filter>,
    select: Option<sluice::transforms::select::Select>,
    limit: Option<u64>,
    printed: u64,
}

impl PushRows {
    fn new(text: &str, pipeline_sql: Option<&str>) -> Result<Self, Failure> {
        let query = sluice::sql::push_query(text, pipeline_sql)
            .map_err(|e| Failure(2, format!("push query: {e}")))?;
        let filter = query
            .condition
            .map(|condition| {
                sluice::transforms::filter::Filter::build(
                    &sluice::transforms::filter::FilterConfig { condition },
                )
            })
            .transpose()
            .map_err(|e| Failure(2, format!("push query: WHERE: {e}")))?;
        let select = (!query.columns.is_empty())
            .then(|| {
                sluice::transforms::select::Select::build(
                    &sluice::transforms::select::SelectConfig {
                        columns: query
                            .columns
                            .into_iter()
                            .map(|(name, expr)| sluice::transforms::select::SelectColumn {
                                name,
                                expr,
                            })
                            .collect(),
                    },
                )
            })
            .transpose()
            .map_err(|e| Failure(2, format!("push query: {e}")))?;
        Ok(PushRows {
            filter,
            select,
            limit: None,
            printed: 0,
        })
    }

    fn done(&self) -> bool {
        self.limit.is_some_and(|limit| self.printed >= limit)
    }

    /// The rows of the complete lines in `pending` (taken out of it), one JSON row per line;
    /// a record the query cannot evaluate is shown with the reason.
    fn lines(&mut self, pending: &mut Vec<u8>) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            if self.done() {
                continue;
            }
            let Ok(tapped) = serde_json::from_slice::<serde_json::Value>(&line) else {
                continue;
            };
            let Some(value) = tapped.get("value").and_then(|v| v.as_str()) else {
                continue; // a note such as {"skipped": N}
            };
            let row = match &self.filter {
                Some(filter) => match filter.keep(value.as_bytes()) {
                    Ok(true) => self.row(value),
                    Ok(false) => continue,
                    Err(reason) => Err(reason),
                },
                None => self.row(value),
            };
            match row {
                Ok(row) => out.extend_from_slice(&row),
                Err(reason) => out.extend_from_slice(
                    serde_json::json!({ "error": reason, "value": value })
                        .to_string()
                        .as_bytes(),
                ),
            }
            out.push(b'\n');
            self.printed += 1;
        }
        out
    }

    fn row(&self, value: &str) -> Result<Vec<u8>, String> {
        match &self.select {
            Some(select) => select.project(value.as_bytes()),
            None => Ok(value.as_bytes().to_vec()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipeline_names_come_from_the_toml_or_the_file() {
        let file = Path::new("dir/ecg.toml");
        assert_eq!(pipeline_name(file, "[pipeline]\nname = \"x\"\n"), "x");
        assert_eq!(pipeline_name(file, "[sources.a]\ntype = \"mqtt\"\n"), "ecg");
        assert_eq!(pipeline_name(file, "not toml ["), "ecg");
    }

    #[test]
    fn error_answers_are_described() {
        let body = br#"{"error":"invalid pipeline","errors":[{"line":3,"column":1,"field":"sinks.x.inputs","message":"unknown component","text":"p.toml:3:1: sinks.x.inputs: unknown component"}]}"#;
        assert_eq!(
            error_text(body),
            "invalid pipeline\n  p.toml:3:1: sinks.x.inputs: unknown component"
        );
        assert_eq!(
            error_text(b"<html>bad gateway</html>"),
            "<html>bad gateway</html>"
        );
    }
}
