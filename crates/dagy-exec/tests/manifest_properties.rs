//! Property tests of the handler manifest parser.
//!
//! - Parsing never panics, on arbitrary text and on TOML-shaped text built from manifest
//!   pieces; every error renders, and an invalid manifest has located problems.
//! - Valid entries rendered as TOML parse back equal (`to_toml` then `parse` is the identity).
//! - One bad field in an otherwise valid manifest is reported at that entry and field, alone.
//!
//! Each property runs 256 cases by default; set `PROPTEST_CASES` to change that.

use std::collections::BTreeMap;
use std::path::PathBuf;

use dagy_exec::{ExecEntry, ExecError, ExecManifest};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngAlgorithm};

fn check_error(err: &ExecError) -> Result<(), TestCaseError> {
    match err {
        ExecError::Syntax { message, .. } => prop_assert!(!message.is_empty()),
        ExecError::Invalid { problems, .. } => {
            prop_assert!(!problems.is_empty(), "invalid without problems");
            for p in problems {
                prop_assert!(!p.path.is_empty() && !p.message.is_empty(), "{p:?}");
            }
        }
        ExecError::Read { .. } => prop_assert!(false, "parse does not read files"),
    }
    prop_assert!(!err.to_string().is_empty());
    Ok(())
}

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9][a-zA-Z0-9._-]{0,20}"
}

/// Any text without NUL (TOML strings cannot hold it raw; escapes are tested elsewhere).
fn text() -> impl Strategy<Value = String> {
    "[^\u{0}]{0,24}"
}

fn entry() -> impl Strategy<Value = ExecEntry> {
    (
        name(),
        prop_oneof!["/[a-z/]{1,20}", "[a-z0-9]{1,10}"],
        prop::collection::vec(text(), 0..4),
        prop::option::of("/[^\u{0}]{0,20}"),
        prop::collection::btree_map("[A-Z_][A-Z0-9_ ]{0,10}", text(), 0..3),
        prop::option::of(prop_oneof![
            (1u32..100_000).prop_map(f64::from),
            0.001f64..31_536_000.0
        ]),
    )
        .prop_map(|(name, program, args, cwd, env, timeout_seconds)| {
            let mut argv = vec![program];
            argv.extend(args);
            let env: BTreeMap<String, String> = env
                .into_iter()
                .filter(|(k, _)| !k.starts_with("DAGY_"))
                .collect();
            ExecEntry {
                name,
                argv,
                cwd: cwd.map(PathBuf::from),
                env,
                timeout_seconds,
            }
        })
}

fn manifest() -> impl Strategy<Value = ExecManifest> {
    prop::collection::btree_map(name(), entry(), 0..5).prop_map(|by_name| {
        ExecManifest::from_entries(
            by_name
                .into_iter()
                .map(|(name, entry)| ExecEntry { name, ..entry })
                .collect(),
        )
    })
}

/// Lines that look like a manifest, in any order and mix.
fn toml_ish() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        Just("[handlers]".to_string()),
        name().prop_map(|n| format!("[handlers.{n}]")),
        name().prop_map(|n| format!("[handlers.{n}.env]")),
        Just("argv = [\"/bin/true\"]".to_string()),
        Just("argv = []".to_string()),
        Just("argv = [1, {a = 2}, [3]]".to_string()),
        Just("cwd = \"relative\"".to_string()),
        Just("timeout_seconds = nan".to_string()),
        Just("timeout_seconds = -inf".to_string()),
        Just("timeout_seconds = 1e400".to_string()),
        Just("env = 3".to_string()),
        Just("handlers = 1".to_string()),
        Just("[[handlers.x]]".to_string()),
        "[a-z_]{1,8} = [0-9\"a-z]{0,6}",
        "[^\u{0}]{0,20}",
    ];
    prop::collection::vec(line, 0..12).prop_map(|lines| lines.join("\n"))
}

/// 256 cases unless `PROPTEST_CASES` says otherwise; xorshift (fast in a debug build) unless
/// `PROPTEST_RNG_ALGORITHM` is set, as in dagy-core's properties.
fn config() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_RNG_ALGORITHM").is_none() {
        config.rng_algorithm = RngAlgorithm::XorShift;
    }
    config.failure_persistence = None;
    config
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn parsing_arbitrary_text_never_panics(text in "\\PC{0,200}") {
        if let Err(err) = ExecManifest::parse(&text) {
            check_error(&err)?;
        }
    }

    #[test]
    fn parsing_manifest_shaped_text_never_panics(text in toml_ish()) {
        match ExecManifest::parse(&text) {
            Ok(manifest) => {
                for entry in manifest.entries() {
                    prop_assert!(!entry.argv.is_empty());
                    prop_assert!(entry.handler_name().starts_with("exec:"));
                }
            }
            Err(err) => check_error(&err)?,
        }
    }

    #[test]
    fn valid_entries_read_back_equal(manifest in manifest()) {
        let text = manifest.to_toml();
        let again = ExecManifest::parse(&text);
        prop_assert_eq!(again.as_ref().ok(), Some(&manifest), "{}\n{:?}", text, again);
    }

    #[test]
    fn one_bad_field_is_reported_at_its_entry_alone(
        manifest in manifest().prop_filter("has entries", |m| !m.entries().is_empty()),
        pick in any::<prop::sample::Index>(),
        bad in prop_oneof![
            Just(("argv", "[]")),
            Just(("argv", "\"python3 task.py\"")),
            Just(("cwd", "\"tasks\"")),
            Just(("timeout_seconds", "0")),
            Just(("timeout_seconds", "\"60\"")),
            Just(("env", "[\"A=1\"]")),
            Just(("command", "\"x\"")),
        ],
    ) {
        let victim = pick.get(manifest.entries()).name.clone();
        let mut table: toml::Table = toml::from_str(&manifest.to_toml()).expect("valid TOML");
        let value: toml::Table = toml::from_str(&format!("v = {}", bad.1)).expect("a value");
        table["handlers"][victim.as_str()]
            .as_table_mut()
            .expect("an entry table")
            .insert(bad.0.to_string(), value["v"].clone());
        let text = toml::to_string(&table).expect("TOML");
        match ExecManifest::parse(&text) {
            Err(ExecError::Invalid { problems, .. }) => {
                prop_assert_eq!(problems.len(), 1, "{:#?}\n{}", problems, text);
                let quoted = toml::Value::String(victim.clone()).to_string();
                let at_bare = format!("handlers.{victim}.{}", bad.0);
                let at_quoted = format!("handlers.{quoted}.{}", bad.0);
                prop_assert!(
                    problems[0].path == at_bare || problems[0].path == at_quoted,
                    "{:?} not at {}", problems[0], at_bare
                );
            }
            other => prop_assert!(false, "expected one problem, got {:?}\n{}", other, text),
        }
    }
}
