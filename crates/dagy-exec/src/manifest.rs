//! The handler manifest: the `exec:` handlers an image declares, read from TOML.
//!
//! ```toml
//! # /etc/dagy/handlers.toml
//! [handlers.py-stats]
//! argv = ["python3", "/opt/dagy/stats.py"]   # the program and its arguments; no shell
//! cwd = "/opt/dagy"                          # optional: the working directory
//! timeout_seconds = 300                      # optional: see ExecEntry::timeout_seconds
//!
//! [handlers.py-stats.env]                    # optional: added to the worker's environment
//! PYTHONUNBUFFERED = "1"
//! ```
//!
//! Parsing is pure: [`ExecManifest::parse`] takes the text and returns the entries, or every
//! problem at once, each naming its entry and field and saying what to change.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use dagy_core::TaskDefaults;
use dagy_core::validate::MAX_SECONDS;

use crate::error::{ExecError, ManifestProblem};

/// The prefix of a task handler that names a manifest entry: `exec:<name>`.
pub const HANDLER_PREFIX: &str = "exec:";
/// Where the worker looks for the manifest when [`MANIFEST_VAR`] is not set.
pub const DEFAULT_MANIFEST_PATH: &str = "/etc/dagy/handlers.toml";
/// The variable naming another manifest file.
pub const MANIFEST_VAR: &str = "DAGY_HANDLERS_FILE";
/// The variable naming the file a process may write its output to instead of stdout.
pub const OUTPUT_VAR: &str = "DAGY_OUTPUT";
/// The longest entry name.
pub const MAX_NAME_LEN: usize = 64;

/// Variables Dagy sets for every process, which an entry's `env` may not set.
pub const RESERVED_VARS: [&str; 4] = [OUTPUT_VAR, "DAGY_RUN_ID", "DAGY_TASK_ID", "DAGY_ATTEMPT"];

const FIELDS: [&str; 4] = ["argv", "cwd", "env", "timeout_seconds"];

/// One command handler: what `exec:<name>` runs.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecEntry {
    /// The entry's name; the task handler is `exec:<name>`.
    pub name: String,
    /// The program (an absolute path, or a name looked up on `PATH`) and its arguments,
    /// started without a shell.
    pub argv: Vec<String>,
    /// The working directory (absolute); the worker's when absent.
    pub cwd: Option<PathBuf>,
    /// Variables added to the worker's environment for the process.
    pub env: BTreeMap<String, String>,
    /// The attempt's limit in seconds when the attempt has no deadline of its own (no
    /// `timeout_seconds` on the task, no tier budget): the process group is killed after it.
    pub timeout_seconds: Option<f64>,
}

impl ExecEntry {
    /// The task handler name: `exec:<name>`.
    pub fn handler_name(&self) -> String {
        format!("{HANDLER_PREFIX}{}", self.name)
    }

    /// The handler's declared options (its timeout), for catalogs and `FlowBuilder::task_of`.
    pub fn defaults(&self) -> TaskDefaults {
        TaskDefaults {
            timeout_seconds: self.timeout_seconds,
            ..TaskDefaults::named(self.handler_name())
        }
    }
}

/// The entries of a handler manifest, by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecManifest {
    entries: Vec<ExecEntry>,
    origin: Option<PathBuf>,
}

impl ExecManifest {
    /// A manifest of these entries (they are not validated: [`ExecManifest::parse`] is the
    /// checked way in).
    pub fn from_entries(mut entries: Vec<ExecEntry>) -> Self {
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        ExecManifest {
            entries,
            origin: None,
        }
    }

    /// Parses and validates manifest text.
    ///
    /// ```
    /// let manifest = dagy_exec::ExecManifest::parse(r#"
    ///     [handlers.hello]
    ///     argv = ["/bin/echo", "{}"]
    /// "#)?;
    /// assert_eq!(manifest.entries()[0].handler_name(), "exec:hello");
    ///
    /// let err = dagy_exec::ExecManifest::parse("[handlers.hello]\nargs = []").unwrap_err();
    /// assert!(err.to_string().contains("handlers.hello.args: unknown field"), "{err}");
    /// # Ok::<(), dagy_exec::ExecError>(())
    /// ```
    pub fn parse(text: &str) -> Result<Self, ExecError> {
        parse(text, "(text)")
    }

    /// Reads and validates the manifest file at `path`.
    pub fn load(path: &Path) -> Result<Self, ExecError> {
        let text = std::fs::read_to_string(path).map_err(|source| ExecError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut manifest = parse(&text, &path.display().to_string())?;
        manifest.origin = Some(path.to_path_buf());
        Ok(manifest)
    }

    /// The entries, by name.
    pub fn entries(&self) -> &[ExecEntry] {
        &self.entries
    }

    /// The entry of this name (without the `exec:` prefix).
    pub fn get(&self, name: &str) -> Option<&ExecEntry> {
        self.entries
            .binary_search_by(|e| e.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.entries[i])
    }

    /// The file it was read from, when it came from one.
    pub fn origin(&self) -> Option<&Path> {
        self.origin.as_deref()
    }

    /// Every entry's declared options, for a catalog ([`dagy_core::Catalog::insert`]): what a
    /// router that never runs tasks checks flows against.
    pub fn task_defaults(&self) -> impl Iterator<Item = TaskDefaults> + '_ {
        self.entries.iter().map(ExecEntry::defaults)
    }

    /// The manifest as TOML text that [`ExecManifest::parse`] reads back equal.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        for entry in &self.entries {
            out.push_str(&format!("[handlers.{}]\n", toml_string(&entry.name)));
            let argv: Vec<String> = entry.argv.iter().map(|a| toml_string(a)).collect();
            out.push_str(&format!("argv = [{}]\n", argv.join(", ")));
            if let Some(cwd) = &entry.cwd {
                out.push_str(&format!("cwd = {}\n", toml_string(&cwd.to_string_lossy())));
            }
            if let Some(t) = entry.timeout_seconds {
                out.push_str(&format!("timeout_seconds = {t:?}\n"));
            }
            if !entry.env.is_empty() {
                out.push_str(&format!("[handlers.{}.env]\n", toml_string(&entry.name)));
                for (k, v) in &entry.env {
                    out.push_str(&format!("{} = {}\n", toml_string(k), toml_string(v)));
                }
            }
            out.push('\n');
        }
        out
    }
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn parse(text: &str, origin: &str) -> Result<ExecManifest, ExecError> {
    let table: toml::Table = toml::from_str(text).map_err(|e| ExecError::Syntax {
        origin: origin.to_string(),
        message: e.to_string().trim_end().to_string(),
    })?;
    let mut problems = Vec::new();
    let mut entries = Vec::new();
    for (key, value) in &table {
        if key != "handlers" {
            problems.push(ManifestProblem::new(
                quote_key(key),
                "unknown top-level key; the manifest holds only [handlers.<name>] tables",
            ));
            continue;
        }
        let Some(handlers) = value.as_table() else {
            problems.push(ManifestProblem::new(
                "handlers",
                "must be a table of entries, one [handlers.<name>] table each",
            ));
            continue;
        };
        for (name, entry) in handlers {
            if let Some(entry) = read_entry(name, entry, &mut problems) {
                entries.push(entry);
            }
        }
    }
    if problems.is_empty() {
        Ok(ExecManifest::from_entries(entries))
    } else {
        Err(ExecError::Invalid {
            origin: origin.to_string(),
            problems,
        })
    }
}

/// `key`, quoted when TOML needs it (so paths in messages can be pasted back).
fn quote_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if bare {
        key.to_string()
    } else {
        toml_string(key)
    }
}

/// Why `name` cannot name an entry, if it cannot.
fn name_problem(name: &str) -> Option<String> {
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    let starts_well = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    (!(valid_chars && starts_well && name.len() <= MAX_NAME_LEN)).then(|| {
        format!(
            "the entry's name must be 1 to {MAX_NAME_LEN} letters, digits, '-', '_' or '.', \
             starting with a letter or digit (the task handler is exec:<name>); rename it"
        )
    })
}

fn read_entry(
    name: &str,
    value: &toml::Value,
    problems: &mut Vec<ManifestProblem>,
) -> Option<ExecEntry> {
    let at = format!("handlers.{}", quote_key(name));
    let before = problems.len();
    if let Some(message) = name_problem(name) {
        problems.push(ManifestProblem::new(&at, message));
    }
    let Some(table) = value.as_table() else {
        problems.push(ManifestProblem::new(
            &at,
            format!("must be a table: [{at}] with argv = [\"program\", \"arg\", ...]"),
        ));
        return None;
    };
    for key in table.keys() {
        if !FIELDS.contains(&key.as_str()) {
            problems.push(ManifestProblem::new(
                format!("{at}.{}", quote_key(key)),
                format!(
                    "unknown field{}; an entry has argv, cwd, env and timeout_seconds",
                    suggestion(key)
                ),
            ));
        }
    }
    let argv = read_argv(&at, table.get("argv"), problems);
    let cwd = read_cwd(&at, table.get("cwd"), problems);
    let env = read_env(&at, table.get("env"), problems);
    let timeout_seconds = read_timeout(&at, table.get("timeout_seconds"), problems);
    (problems.len() == before).then(|| ExecEntry {
        name: name.to_string(),
        argv,
        cwd,
        env,
        timeout_seconds,
    })
}

/// ` (did you mean "argv"?)` for a near miss, or nothing.
fn suggestion(key: &str) -> String {
    let lower = key.to_ascii_lowercase();
    let guess = match lower.as_str() {
        "args" | "arguments" | "command" | "cmd" | "exec" | "program" | "argv0" => Some("argv"),
        "dir" | "workdir" | "working_dir" | "working_directory" | "directory" | "cd" => Some("cwd"),
        "environment" | "vars" | "variables" => Some("env"),
        "timeout" | "timeout_secs" | "timeout_s" | "timeoutseconds" => Some("timeout_seconds"),
        _ => None,
    };
    guess.map_or_else(String::new, |g| format!(" (did you mean \"{g}\"?)"))
}

fn read_argv(
    at: &str,
    value: Option<&toml::Value>,
    problems: &mut Vec<ManifestProblem>,
) -> Vec<String> {
    let field = format!("{at}.argv");
    let example = "e.g. argv = [\"python3\", \"/opt/tasks/stats.py\"]";
    let Some(value) = value else {
        problems.push(ManifestProblem::new(
            &field,
            format!("is missing: give the program and its arguments, {example}"),
        ));
        return Vec::new();
    };
    let Some(items) = value.as_array() else {
        problems.push(ManifestProblem::new(
            &field,
            format!("must be an array of strings (no shell parses a command line), {example}"),
        ));
        return Vec::new();
    };
    if items.is_empty() {
        problems.push(ManifestProblem::new(
            &field,
            format!("is empty: it must name the program to run, {example}"),
        ));
    }
    let mut argv = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Some(arg) = item.as_str() else {
            problems.push(ManifestProblem::new(
                format!("{field}[{i}]"),
                format!("must be a string, got {}", item.type_str()),
            ));
            continue;
        };
        if arg.contains('\0') {
            problems.push(ManifestProblem::new(
                format!("{field}[{i}]"),
                "contains a NUL character, which no argument can hold; remove it",
            ));
        } else if i == 0 && (arg.is_empty() || (arg.contains('/') && !arg.starts_with('/'))) {
            problems.push(ManifestProblem::new(
                format!("{field}[0]"),
                format!(
                    "{arg:?} must be an absolute path (/usr/bin/python3) or a program name found \
                     on PATH (python3), not a relative path"
                ),
            ));
        }
        argv.push(arg.to_string());
    }
    argv
}

fn read_cwd(
    at: &str,
    value: Option<&toml::Value>,
    problems: &mut Vec<ManifestProblem>,
) -> Option<PathBuf> {
    let field = format!("{at}.cwd");
    let value = value?;
    match value.as_str() {
        Some(dir) if dir.starts_with('/') && !dir.contains('\0') => Some(PathBuf::from(dir)),
        Some(dir) => {
            problems.push(ManifestProblem::new(
                field,
                format!(
                    "{dir:?} must be an absolute path without NUL characters, e.g. \"/opt/tasks\""
                ),
            ));
            None
        }
        None => {
            problems.push(ManifestProblem::new(
                field,
                format!(
                    "must be a string (an absolute path), got {}",
                    value.type_str()
                ),
            ));
            None
        }
    }
}

fn read_env(
    at: &str,
    value: Option<&toml::Value>,
    problems: &mut Vec<ManifestProblem>,
) -> BTreeMap<String, String> {
    let field = format!("{at}.env");
    let mut env = BTreeMap::new();
    let Some(value) = value else {
        return env;
    };
    let Some(table) = value.as_table() else {
        problems.push(ManifestProblem::new(
            field,
            format!(
                "must be a table of strings ([{at}.env] with NAME = \"value\" lines), got {}",
                value.type_str()
            ),
        ));
        return env;
    };
    for (key, value) in table {
        let var = format!("{field}.{}", quote_key(key));
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            problems.push(ManifestProblem::new(
                &var,
                "a variable's name cannot be empty or hold '=' or NUL; rename it",
            ));
        } else if RESERVED_VARS.contains(&key.as_str()) {
            problems.push(ManifestProblem::new(
                &var,
                format!(
                    "Dagy sets {key} for every process ({}); remove it",
                    RESERVED_VARS.join(", ")
                ),
            ));
        }
        match value.as_str() {
            Some(v) if !v.contains('\0') => {
                env.insert(key.clone(), v.to_string());
            }
            Some(_) => problems.push(ManifestProblem::new(
                &var,
                "contains a NUL character, which no variable can hold; remove it",
            )),
            None => problems.push(ManifestProblem::new(
                &var,
                format!(
                    "must be a string, got {} (quote it: {} = \"...\")",
                    value.type_str(),
                    quote_key(key)
                ),
            )),
        }
    }
    env
}

fn read_timeout(
    at: &str,
    value: Option<&toml::Value>,
    problems: &mut Vec<ManifestProblem>,
) -> Option<f64> {
    let field = format!("{at}.timeout_seconds");
    let value = value?;
    let seconds = match value {
        toml::Value::Integer(i) => *i as f64,
        toml::Value::Float(f) => *f,
        other => {
            problems.push(ManifestProblem::new(
                field,
                format!("must be a number of seconds, got {}", other.type_str()),
            ));
            return None;
        }
    };
    if seconds.is_finite() && seconds > 0.0 && seconds <= MAX_SECONDS {
        Some(seconds)
    } else {
        problems.push(ManifestProblem::new(
            field,
            format!("must be more than 0 and at most {MAX_SECONDS} (a year), got {seconds}"),
        ));
        None
    }
}

impl fmt::Display for ExecEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {:?}", self.handler_name(), self.argv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        match ExecManifest::parse(text) {
            Err(ExecError::Invalid { problems, .. }) => {
                problems.iter().map(ToString::to_string).collect()
            }
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn a_full_entry_is_read() {
        let manifest = ExecManifest::parse(
            r#"
            [handlers.py-stats]
            argv = ["python3", "/opt/dagy/stats.py", "--fast"]
            cwd = "/opt/dagy"
            timeout_seconds = 30
            [handlers.py-stats.env]
            PYTHONUNBUFFERED = "1"

            [handlers.report]
            argv = ["/usr/bin/report"]
            "#,
        )
        .expect("valid");
        let names: Vec<_> = manifest
            .entries()
            .iter()
            .map(|e| e.handler_name())
            .collect();
        assert_eq!(names, ["exec:py-stats", "exec:report"]);
        let stats = manifest.get("py-stats").expect("entry");
        assert_eq!(stats.argv, ["python3", "/opt/dagy/stats.py", "--fast"]);
        assert_eq!(stats.cwd.as_deref(), Some(Path::new("/opt/dagy")));
        assert_eq!(stats.env["PYTHONUNBUFFERED"], "1");
        assert_eq!(stats.timeout_seconds, Some(30.0));
        assert_eq!(stats.defaults().timeout_seconds, Some(30.0));
        assert_eq!(manifest.get("report").expect("entry").timeout_seconds, None);
        assert!(manifest.get("nope").is_none());
    }

    #[test]
    fn an_empty_manifest_declares_nothing() {
        assert!(ExecManifest::parse("").expect("empty").entries().is_empty());
        assert!(
            ExecManifest::parse("[handlers]")
                .expect("empty")
                .entries()
                .is_empty()
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_entry_and_field() {
        let found = problems(
            r#"
            version = 2
            [handlers.a]
            argv = []
            timeout = 5
            [handlers.b]
            argv = ["bin/run", 3]
            cwd = "relative"
            timeout_seconds = -1
            [handlers.b.env]
            DAGY_OUTPUT = "/tmp/x"
            N = 1
            [handlers."bad name"]
            argv = ["/bin/true"]
            [handlers.c]
            cwd = "/tmp"
            "#,
        );
        let expect = [
            "version: unknown top-level key",
            "handlers.a.timeout: unknown field (did you mean \"timeout_seconds\"?)",
            "handlers.a.argv: is empty",
            "handlers.b.argv[0]: \"bin/run\" must be an absolute path",
            "handlers.b.argv[1]: must be a string, got integer",
            "handlers.b.cwd: \"relative\" must be an absolute path",
            "handlers.b.env.DAGY_OUTPUT: Dagy sets DAGY_OUTPUT",
            "handlers.b.env.N: must be a string, got integer",
            "handlers.b.timeout_seconds: must be more than 0",
            "handlers.\"bad name\": the entry's name must be",
            "handlers.c.argv: is missing",
        ];
        for want in expect {
            assert!(
                found.iter().any(|p| p.starts_with(want)),
                "no problem starting {want:?} in {found:#?}"
            );
        }
        assert_eq!(found.len(), expect.len(), "{found:#?}");
    }

    #[test]
    fn a_syntax_error_says_where() {
        let err = ExecManifest::parse("[handlers.a\nargv = 1").expect_err("syntax");
        let text = err.to_string();
        assert!(matches!(err, ExecError::Syntax { .. }), "{err:?}");
        assert!(text.contains("line 1"), "{text}");
    }

    #[test]
    fn the_rendered_toml_reads_back_equal() {
        let manifest = ExecManifest::parse(
            r#"
            [handlers."x.y"]
            argv = ["/bin/sh", "-c", "echo \"quoted\" 'and' \\ back"]
            timeout_seconds = 1.5
            [handlers."x.y".env]
            "WITH SPACE" = "tab\there"
            "#,
        )
        .expect("valid");
        let again = ExecManifest::parse(&manifest.to_toml()).expect("reads back");
        assert_eq!(again, manifest);
    }
}
