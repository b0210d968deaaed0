//! What `sluice serve` can be asked to change, whoever asks (the admin API, the pipelines
//! directory watch, the state restored at start): deploy a pipeline from TOML, undeploy it,
//! push or roll back a UDF, and the status views of both. Changes that came through the API
//! are saved in the state directory so a restarted host comes back the same.

use crate::pipeline::{parse_pipeline, ConfigError, PipelineSpec, TransformConfig};
use crate::state_dir::{is_valid_name, write_atomically, StateDir, StateError};
use crate::topology::supervisor::{Deployed, PipelineState, PipelineView};
use crate::topology::{BuildError, Topology};
use crate::udf_registry::{ModuleRef, RegistryError, UdfRegistry, UdfStatus};
use std::path::Path;
use std::sync::Arc;

/// Resolves `${VAR}` in pipeline TOML.
pub type Env = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Where a pipeline deployment came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The admin API (saved in the state directory).
    Api,
    /// A file in the watched pipelines directory (the file is its own record).
    PipelinesDir,
    /// Restored from the state directory at start.
    Restored,
}

/// Why a change was not made. Nothing changed in every case.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// The TOML is invalid: every error found.
    #[error("invalid pipeline: {}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<ConfigError>),
    /// The name is not usable (it becomes a file name).
    #[error("invalid name `{0}`: use letters, digits, `-`, `_` and `.` (not first)")]
    BadName(String),
    /// The pipeline name in the TOML differs from the one asked for.
    #[error("the pipeline in the body is named `{found}`, not `{expected}`")]
    NameMismatch {
        /// The name in the request.
        expected: String,
        /// The name in `[pipeline] name`.
        found: String,
    },
    /// A component could not be built (e.g. a UDF that does not load).
    #[error(transparent)]
    Build(#[from] BuildError),
    /// No such pipeline or UDF.
    #[error("{0} not found")]
    NotFound(String),
    /// The UDF was refused (does not compile, wrong world, `init` failed) or cannot roll back.
    #[error(transparent)]
    Udf(#[from] RegistryError),
    /// The state directory could not be written.
    #[error(transparent)]
    State(#[from] StateError),
}

/// Status of one pipeline, as the API shows it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PipelineStatus {
    /// Its name.
    pub name: String,
    /// Running, restarting (with the reason) or stopping.
    pub status: PipelineState,
    /// Seconds since the Unix epoch when it was deployed.
    pub deployed_at_unix: u64,
    /// Its components with their inputs and counters.
    pub components: Vec<ComponentStatus>,
    /// The UDF versions it runs, by transform.
    pub udfs: Vec<PipelineUdf>,
    /// The dead-letter sink, if any.
    pub dead_letter: Option<String>,
}

/// One component in [`PipelineStatus`].
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ComponentStatus {
    /// Upstream components.
    pub inputs: Vec<String>,
    /// Counters, connection state and last error.
    #[serde(flatten)]
    pub counters: crate::metrics::ComponentSnapshot,
}

/// The UDF version one transform runs.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PipelineUdf {
    /// The transform.
    pub transform: String,
    /// The module as written in the pipeline.
    pub module: String,
    /// `NAME@SHA8` live now (for a path module: the path).
    pub version: String,
}

/// UDF status as the API shows it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct UdfView {
    /// The module name.
    pub name: String,
    /// The live version, `NAME@SHA8`.
    pub version: String,
    /// What built the live version: `compiled` (Rust and the like), `python` or `javascript`.
    #[serde(default)]
    pub language: String,
    /// Earlier versions, newest first (rollback targets).
    pub previous: Vec<String>,
    /// Why the last new version was refused, if it was.
    pub last_refusal: Option<String>,
    /// The shadow version running beside the live one (`udf push --shadow`), if any.
    #[serde(default)]
    pub shadow: Option<String>,
}

impl From<UdfStatus> for UdfView {
    fn from(s: UdfStatus) -> Self {
        UdfView {
            name: s.name,
            version: s.version,
            language: s.language.to_string(),
            previous: s.previous,
            last_refusal: s.last_refusal,
            shadow: s.shadow,
        }
    }
}

/// What a UDF push did.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct UdfPushed {
    /// The module name.
    pub name: String,
    /// The version now in the UDF directory, `NAME@SHA8`.
    pub version: String,
    /// True when running pipelines switched to it now (false: unchanged, or not in use yet).
    pub swapped: bool,
    /// True when it runs as the shadow of the live version (`--shadow`), not live.
    #[serde(default)]
    pub shadow: bool,
}

/// What pipelines deployed on a host may use (`sluice serve` flags).
#[derive(Debug, Clone, Default)]
pub struct DeployPolicy {
    /// `${VAR}` expands only names starting with this (`--var-prefix`; empty: every name);
    /// others count as unset, and the error for one says so.
    pub var_prefix: String,
    /// Where librdkafka's file options may point (`--allow-path`).
    pub allowed_dirs: Vec<std::path::PathBuf>,
}

/// The host's pipelines and UDFs, changed from any origin.
pub struct ControlPlane {
    /// The running pipelines.
    pub topology: Arc<Topology>,
    /// The UDF modules.
    pub udfs: Arc<UdfRegistry>,
    /// Where API changes are saved.
    pub state: StateDir,
    env: Env,
    /// `${VAR}` resolves only names starting with this (`serve --var-prefix`).
    var_prefix: String,
    /// Where deployed pipelines may point librdkafka's file options (`serve --allow-path`).
    allowed_dirs: Vec<std::path::PathBuf>,
}

impl ControlPlane {
    /// A control plane over `topology`, saving to `state`; `env` resolves `${VAR}` in deployed
    /// pipelines, within `policy`.
    pub fn new(
        topology: Arc<Topology>,
        state: StateDir,
        env: Env,
        policy: DeployPolicy,
    ) -> Arc<Self> {
        let udfs = topology.context().udfs.clone();
        // A promoted shadow is the version a restart loads, as a push is.
        let dir = udfs.dir().to_path_buf();
        udfs.on_promote(Box::new(move |name, version| {
            let archived = crate::udf_registry::archived_file(&dir, version);
            let saved = std::fs::read(&archived).and_then(|bytes| {
                write_atomically(&dir.join(format!("{name}.wasm")), &bytes, None)
            });
            if let Err(err) = saved {
                tracing::warn!(
                    udf = name,
                    "promoted {version}, but cannot save it from {} ({err}); a restart loads the older file",
                    archived.display()
                );
            }
        }));
        Arc::new(ControlPlane {
            topology,
            udfs,
            state,
            env,
            var_prefix: policy.var_prefix,
            allowed_dirs: policy.allowed_dirs,
        })
    }

    /// The prefix of the environment variables a deployed pipeline may read.
    pub fn var_prefix(&self) -> &str {
        &self.var_prefix
    }

    /// Parses `toml` (errors name `file`), checks its name against `expected` when given, and
    /// deploys it; an API deployment is then saved in the state directory.
    pub async fn deploy_toml(
        &self,
        file: &Path,
        toml: &str,
        expected: Option<&str>,
        origin: Origin,
    ) -> Result<(PipelineSpec, Deployed), ChangeError> {
        // Every value substituted is kept, so that no error can echo it back (a variable may
        // hold a secret, and errors go to whoever sent the pipeline).
        let substituted: std::sync::Mutex<Vec<String>> = Default::default();
        let lookup = |name: &str| {
            if !name.starts_with(&self.var_prefix) {
                return None; // counts as unset
            }
            let value = (self.env)(name)?;
            substituted
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(value.clone());
            Some(value)
        };
        let spec = parse_pipeline(file, toml, &lookup).map_err(|errors| {
            let values = substituted.lock().unwrap_or_else(|p| p.into_inner());
            ChangeError::Invalid(self.explain_and_redact(errors.0, &values))
        })?;
        if origin != Origin::PipelinesDir {
            let mut refused = host_paths(&spec, file, toml);
            refused.extend(crate::kafka_common::pipeline_option_problems(
                &spec,
                file,
                toml,
                &self.allowed_dirs,
            ));
            if !refused.is_empty() {
                refused.sort_by_key(|e| (e.line, e.column));
                return Err(ChangeError::Invalid(refused));
            }
        }
        if !is_valid_name(&spec.name) {
            return Err(ChangeError::BadName(spec.name));
        }
        if let Some(expected) = expected {
            if spec.name != expected {
                return Err(ChangeError::NameMismatch {
                    expected: expected.to_string(),
                    found: spec.name,
                });
            }
        }
        let name = spec.name.clone();
        let deployed = self
            .topology
            .deploy(spec.clone(), Some(toml.to_string()))
            .await?;
        if origin == Origin::Api {
            self.state.save_pipeline(&name, toml)?;
        }
        Ok((spec, deployed))
    }

    /// Drains and stops `name` and forgets it in the state directory.
    pub async fn undeploy(&self, name: &str) -> Result<(), ChangeError> {
        if self.topology.undeploy(name).await.is_none() {
            return Err(ChangeError::NotFound(format!("pipeline `{name}`")));
        }
        if is_valid_name(name) {
            self.state.remove_pipeline(name)?;
        }
        Ok(())
    }

    /// Deploys every pipeline saved in the state directory; a broken one is logged and skipped.
    pub async fn restore(&self) -> Vec<String> {
        let saved = match self.state.saved_pipelines() {
            Ok(saved) => saved,
            Err(err) => {
                tracing::error!("cannot restore pipelines: {err}");
                return Vec::new();
            }
        };
        let mut restored = Vec::new();
        for (file, toml) in saved {
            match self.deploy_toml(&file, &toml, None, Origin::Restored).await {
                Ok((spec, _)) => restored.push(spec.name),
                Err(err) => {
                    tracing::error!(file = %file.display(), "cannot restore pipeline: {err}")
                }
            }
        }
        restored
    }

    /// Makes `wasm` the live version of UDF `name` (refused if it does not compile, fit the
    /// world or `init` for every pipeline using it), and saves it as `<udf-dir>/NAME.wasm`.
    pub fn push_udf(&self, name: &str, wasm: &[u8]) -> Result<UdfPushed, ChangeError> {
        if !is_valid_name(name) {
            return Err(ChangeError::BadName(name.to_string()));
        }
        // Compiled first, outside the change's lock: a module slow to compile (bounded by the
        // runtime's compile budget) does not hold up pipeline builds or other uploads.
        self.udfs.prepare(name, wasm)?;
        // One change across the deployment and the file, so the directory watcher cannot read
        // the previous file in between and put the previous version back.
        let change = self.udfs.change();
        let swapped = change.deploy(name, wasm)?;
        // Accepted: it is the version a restart (or a pipeline deployed later) loads.
        self.save_current(name, wasm)?;
        drop(change);
        let version = format!("{name}@{}", &crate::udf_runtime::sha256_hex(wasm)[..8]);
        Ok(UdfPushed {
            name: name.to_string(),
            version,
            swapped: swapped.is_some(),
            shadow: false,
        })
    }

    /// Puts the previous version of `name` live again, and saves it as the current file.
    pub fn rollback_udf(&self, name: &str) -> Result<String, ChangeError> {
        if !is_valid_name(name) {
            return Err(ChangeError::BadName(name.to_string()));
        }
        let change = self.udfs.change(); // as in `push_udf`
        let version = change.rollback(name)?;
        let archived = self.udfs.archived_path(&version);
        match std::fs::read(&archived) {
            Ok(bytes) => self.save_current(name, &bytes)?,
            Err(err) => tracing::warn!(
                udf = name,
                "rolled back, but {} is unreadable ({err}); a restart loads the newer file",
                archived.display()
            ),
        }
        drop(change);
        Ok(version)
    }

    /// Runs `wasm` as the shadow of UDF `name`, beside its live version (refused if it does not
    /// compile, fit the world or `init` for every pipeline using it, or is the live version).
    /// The live file is unchanged; the shadow is archived, for pinning.
    pub fn shadow_udf(
        &self,
        name: &str,
        wasm: &[u8],
        options: crate::udf_shadow::ShadowOptions,
    ) -> Result<UdfPushed, ChangeError> {
        if !is_valid_name(name) {
            return Err(ChangeError::BadName(name.to_string()));
        }
        self.udfs.prepare(name, wasm)?;
        let version = self.udfs.change().shadow(name, wasm, options)?;
        Ok(UdfPushed {
            name: name.to_string(),
            version,
            swapped: false,
            shadow: true,
        })
    }

    /// Makes the shadow of `name` live (saved as the current file) and ends it.
    pub fn promote_udf(&self, name: &str) -> Result<String, ChangeError> {
        if !is_valid_name(name) {
            return Err(ChangeError::BadName(name.to_string()));
        }
        Ok(self
            .udfs
            .change()
            .promote(name, "promoted by the operator")?)
    }

    /// Stops the shadow of `name`; its final report.
    pub fn unshadow_udf(&self, name: &str) -> Result<crate::udf_shadow::ShadowReport, ChangeError> {
        if !is_valid_name(name) {
            return Err(ChangeError::BadName(name.to_string()));
        }
        Ok(self.udfs.unshadow(name, "dropped by the operator")?)
    }

    /// The report of the shadow of `name` (running, else the last ended).
    pub fn shadow_report(
        &self,
        name: &str,
    ) -> Result<crate::udf_shadow::ShadowReport, ChangeError> {
        if !is_valid_name(name) {
            return Err(ChangeError::BadName(name.to_string()));
        }
        Ok(self.udfs.shadow_report(name)?)
    }

    /// Makes `wasm` the file a restart (or a pipeline deployed later) loads for `name`.
    fn save_current(&self, name: &str, wasm: &[u8]) -> Result<(), StateError> {
        let path = self.udfs.dir().join(format!("{name}.wasm"));
        write_atomically(&path, wasm, None).map_err(|source| StateError { path, source })
    }

    /// Every UDF in use.
    pub fn udf_status(&self) -> Vec<UdfView> {
        self.udfs.status().into_iter().map(UdfView::from).collect()
    }

    /// Every deployed pipeline.
    pub fn pipelines(&self) -> Vec<PipelineStatus> {
        let udfs = self.udfs.status();
        self.topology
            .pipelines()
            .iter()
            .map(|view| pipeline_status(view, &udfs))
            .collect()
    }

    /// One deployed pipeline.
    pub fn pipeline(&self, name: &str) -> Option<PipelineStatus> {
        let view = self.topology.pipeline(name)?;
        Some(pipeline_status(&view, &self.udfs.status()))
    }
}

/// What a pipeline deployed on a host may not do (checked after parsing, before building).
impl ControlPlane {
    /// `errors` with every substituted value replaced by `***`, and a word on the variable
    /// prefix where a variable was not available.
    fn explain_and_redact(&self, errors: Vec<ConfigError>, values: &[String]) -> Vec<ConfigError> {
        errors
            .into_iter()
            .map(|mut err| {
                for value in values.iter().filter(|v| v.len() >= 3) {
                    err.message = err.message.replace(value.as_str(), "***");
                }
                if !self.var_prefix.is_empty() && err.message.starts_with("environment variable ") {
                    err.message.push_str(&format!(
                        "; pipelines deployed on a host expand only variables named {}* \
                         (`sluice serve --var-prefix`)",
                        self.var_prefix
                    ));
                }
                err
            })
            .collect()
    }
}

/// The UDF modules `spec` names by a path on the host, as errors: a pipeline sent over the admin
/// API (or restored from one) names UDFs by registered name only; a path would let whoever holds
/// the token make the host read any file it can (and `/dev/zero` would never end).
fn host_paths(spec: &PipelineSpec, file: &Path, toml: &str) -> Vec<ConfigError> {
    spec.transforms
        .iter()
        .filter_map(|t| match &t.config {
            TransformConfig::Udf(udf) => {
                matches!(ModuleRef::parse(&udf.module), ModuleRef::Path(_)).then(|| {
                    crate::pipeline::error_at(
                        file,
                        toml,
                        &format!("transforms.{}.module", t.name),
                        "a pipeline deployed on a host names its UDF by registered name \
                         (`sluice udf push`) or NAME@SHA8, never a path on the host"
                            .into(),
                    )
                })
            }
            _ => None,
        })
        .collect()
}

fn pipeline_status(view: &PipelineView, udfs: &[UdfStatus]) -> PipelineStatus {
    let spec = &view.spec;
    let inputs_of = |name: &str| -> Vec<String> {
        spec.transforms
            .iter()
            .map(|c| (&c.name, &c.inputs))
            .chain(spec.sinks.iter().map(|c| (&c.name, &c.inputs)))
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, inputs)| inputs.clone())
            .unwrap_or_default()
    };
    let components = view
        .probes
        .iter()
        .map(|probe| {
            let counters = probe.metrics.snapshot();
            ComponentStatus {
                inputs: inputs_of(&counters.name),
                counters,
            }
        })
        .collect();
    let pipeline_udfs = spec
        .transforms
        .iter()
        .filter_map(|t| match &t.config {
            TransformConfig::Udf(config) => Some((t, config)),
            TransformConfig::Filter(_) | TransformConfig::Select(_) => None,
        })
        .map(|(t, config)| PipelineUdf {
            transform: t.name.clone(),
            module: config.module.clone(),
            version: match ModuleRef::parse(&config.module) {
                ModuleRef::Name(name) => udfs
                    .iter()
                    .find(|u| u.name == name)
                    .map(|u| u.version.clone())
                    .unwrap_or(name),
                ModuleRef::Pinned { name, sha } => format!("{name}@{}", &sha[..8]),
                ModuleRef::Path(path) => path.display().to_string(),
            },
        })
        .collect();
    PipelineStatus {
        name: spec.name.clone(),
        status: view.state.clone(),
        deployed_at_unix: view
            .deployed_at
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        components,
        udfs: pipeline_udfs,
        dead_letter: spec.dead_letter.clone(),
    }
}
