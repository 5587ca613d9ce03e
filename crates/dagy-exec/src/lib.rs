//! Command handlers for any language, without arbitrary commands.
//!
//! A task whose handler is `exec:<name>` runs the program that entry `<name>` of a **handler
//! manifest** declares. The manifest is a TOML file baked into the worker's image
//! (`/etc/dagy/handlers.toml`, or the file named by `DAGY_HANDLERS_FILE`): a flow or an API
//! request names an entry, never a command, so "may deploy a flow" does not become "may run
//! anything with the task role". Every entry is registered as a handler
//! ([`ExecManifest::register`], [`load_exec_handlers`]), so flow validation refuses an `exec:`
//! name the manifest does not declare, like any unregistered handler.
//!
//! ```toml
//! [handlers.py-stats]
//! argv = ["python3", "/opt/dagy/stats.py"]  # no shell: the program and its arguments
//! cwd = "/opt/dagy"                         # optional working directory (absolute)
//! timeout_seconds = 300                     # optional: when the attempt has no deadline
//! [handlers.py-stats.env]                   # optional: added to the worker's environment
//! PYTHONUNBUFFERED = "1"
//! ```
//!
//! The contract of a process (see [`run`]):
//!
//! - **Input**: `{"parameters": ..., "upstream": {"<task id>": <output>}, "args": ...}` as JSON
//!   on stdin, then end of file. `DAGY_RUN_ID`, `DAGY_TASK_ID`, `DAGY_ATTEMPT` and
//!   `DAGY_OUTPUT` are set.
//! - **Output**: JSON on stdout; or, when the process wrote the file named by `DAGY_OUTPUT`,
//!   that file's JSON (stdout is then ignored: print what you like). Output that is not JSON
//!   fails the task for good (`InvalidOutput`).
//! - **Logs**: each stderr line goes to the run's log (a `tracing` event with the run, task and
//!   handler); a task error carries the last 2 KiB of stderr.
//! - **Exit**: 0 succeeds. 65 (`EX_DATAERR`) fails the task for good (`ExecFailedPermanently`).
//!   75 (`EX_TEMPFAIL`) is retried (`ExecTempFail`), and so is any other code (`ExecFailed`)
//!   or a kill by a signal (`ExecKilled`), as far as the task's `retries` allow.
//! - **Stopping**: the process runs in its own process group. A timeout (the task's, or the
//!   entry's `timeout_seconds` when the attempt has none) kills the group; a cancel sends the
//!   group SIGTERM, then SIGKILL after [`run::term_grace`] (the engine's cancel grace less half
//!   a second). Children left behind when the process exits are killed too.

mod error;
pub mod manifest;
pub mod run;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use dagy_core::{HandlerCatalog, HasDefaults, TaskDefaults};
use dagy_engine::{HandlerRegistry, Task};

pub use error::{ExecError, ManifestProblem};
pub use manifest::{
    DEFAULT_MANIFEST_PATH, ExecEntry, ExecManifest, HANDLER_PREFIX, MANIFEST_VAR, OUTPUT_VAR,
};

/// Where the handler manifest is, from the environment: the one place that reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestLocation {
    /// The file.
    pub path: PathBuf,
    /// Named by `DAGY_HANDLERS_FILE`: then a missing file is an error. The default path may be
    /// absent (an image without command handlers).
    pub required: bool,
}

impl ManifestLocation {
    /// From `lookup` (an environment): `DAGY_HANDLERS_FILE` when set and not empty, else
    /// [`DEFAULT_MANIFEST_PATH`].
    ///
    /// ```
    /// use dagy_exec::ManifestLocation;
    /// let default = ManifestLocation::from_lookup(|_| None);
    /// assert_eq!(default.path, std::path::Path::new("/etc/dagy/handlers.toml"));
    /// assert!(!default.required);
    /// let named = ManifestLocation::from_lookup(|k| (k == "DAGY_HANDLERS_FILE").then(|| "/x.toml".into()));
    /// assert!(named.required);
    /// ```
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        match lookup(MANIFEST_VAR).filter(|v| !v.trim().is_empty()) {
            Some(path) => ManifestLocation {
                path: PathBuf::from(path),
                required: true,
            },
            None => ManifestLocation {
                path: PathBuf::from(DEFAULT_MANIFEST_PATH),
                required: false,
            },
        }
    }

    /// From the process's environment.
    pub fn from_env() -> Self {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads the manifest: `None` when the default file does not exist.
    pub fn load(&self) -> Result<Option<ExecManifest>, ExecError> {
        if !self.required && !self.path.exists() {
            return Ok(None);
        }
        ExecManifest::load(&self.path).map(Some)
    }
}

/// Registers every entry of the manifest the environment names ([`ManifestLocation::from_env`])
/// as handler `exec:<name>` in `registry`, and returns their handler names (none when there is
/// no manifest). What the worker does at start; the CLI and the router can call it too, so
/// flows are checked against the same names.
pub fn load_exec_handlers(registry: &mut HandlerRegistry) -> Result<Vec<String>, ExecError> {
    match ManifestLocation::from_env().load()? {
        Some(manifest) => {
            manifest.register(registry);
            Ok(manifest
                .entries()
                .iter()
                .map(ExecEntry::handler_name)
                .collect())
        }
        None => Ok(Vec::new()),
    }
}

/// Adds the `exec:` handlers of the manifest the environment names, when there is one, to
/// `catalog`: what a router that never runs tasks checks flows against (the functions' entry
/// points call it).
pub fn with_exec_handlers<C: HandlerCatalog>(catalog: C) -> Result<WithExecHandlers<C>, ExecError> {
    let manifest = ManifestLocation::from_env().load()?;
    Ok(match manifest {
        Some(manifest) => manifest.add_to(catalog),
        None => WithExecHandlers {
            catalog,
            exec: BTreeSet::new(),
        },
    })
}

/// A catalog and the `exec:` handlers of a manifest ([`ExecManifest::add_to`]).
#[derive(Debug, Clone)]
pub struct WithExecHandlers<C> {
    catalog: C,
    exec: BTreeSet<String>,
}

impl<C: HandlerCatalog> HandlerCatalog for WithExecHandlers<C> {
    fn has_handler(&self, name: &str) -> bool {
        self.exec.contains(name) || self.catalog.has_handler(name)
    }
    fn handler_names(&self) -> Vec<String> {
        let mut names = self.catalog.handler_names();
        names.extend(self.exec.iter().cloned());
        names
    }
}

impl ExecManifest {
    /// `catalog` with this manifest's handlers added.
    ///
    /// ```
    /// use dagy_core::{Catalog, HandlerCatalog};
    /// let manifest = dagy_exec::ExecManifest::parse("[handlers.hello]\nargv = [\"/bin/cat\"]")?;
    /// let catalog = manifest.add_to(Catalog::from_names(["echo"]));
    /// assert!(catalog.has_handler("exec:hello") && catalog.has_handler("echo"));
    /// assert!(!catalog.has_handler("exec:other"));
    /// # Ok::<(), dagy_exec::ExecError>(())
    /// ```
    pub fn add_to<C: HandlerCatalog>(&self, catalog: C) -> WithExecHandlers<C> {
        WithExecHandlers {
            catalog,
            exec: self.entries().iter().map(ExecEntry::handler_name).collect(),
        }
    }

    /// Registers each entry as handler `exec:<name>`, with its declared timeout as the
    /// handler's default.
    ///
    /// ```
    /// use dagy_core::{Flow, HandlerCatalog};
    /// let manifest = dagy_exec::ExecManifest::parse("[handlers.hello]\nargv = [\"/bin/cat\"]")?;
    /// let mut registry = dagy_engine::HandlerRegistry::new();
    /// manifest.register(&mut registry);
    /// assert!(registry.has_handler("exec:hello"));
    /// let flow = r#"{"spec_version": 1, "name": "f", "tasks": [{"id": "t", "handler": "exec:other"}]}"#;
    /// assert!(Flow::from_json(flow, Some(&registry)).is_err(), "not in the manifest");
    /// # Ok::<(), dagy_exec::ExecError>(())
    /// ```
    pub fn register(&self, registry: &mut HandlerRegistry) {
        for entry in self.entries() {
            registry.add(ExecTask(Arc::new(entry.clone())));
        }
    }
}

/// One entry as a registrable handler.
struct ExecTask(Arc<ExecEntry>);

impl HasDefaults for ExecTask {
    fn defaults(&self) -> TaskDefaults {
        self.0.defaults()
    }
}

impl Task for ExecTask {
    fn register(self, registry: &mut HandlerRegistry) {
        let entry = self.0;
        registry.register(entry.handler_name(), move |ctx, input| {
            let entry = entry.clone();
            async move { run::run_entry(&entry, ctx, input).await }
        });
    }
}
