//! Fuzz target: arbitrary bytes as a handler manifest (TOML).
//!
//! Feeds the input (when it is UTF-8) to `ExecManifest::parse`. Parsing must never panic; an
//! accepted manifest's entries are runnable as declared (a program, a valid name, an absolute
//! working directory, a timeout within a year) and read back equal from their TOML; a refused
//! one has located problems, and its error renders.

#![no_main]

use dagy_exec::{ExecError, ExecManifest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match ExecManifest::parse(text) {
        Ok(manifest) => {
            for entry in manifest.entries() {
                assert!(!entry.argv.is_empty() && !entry.argv[0].is_empty());
                assert!(
                    !entry.name.is_empty() && entry.name.len() <= dagy_exec::manifest::MAX_NAME_LEN
                );
                assert!(entry.cwd.as_ref().is_none_or(|d| d.is_absolute()));
                assert!(
                    entry
                        .timeout_seconds
                        .is_none_or(|t| t > 0.0 && t <= dagy_core::validate::MAX_SECONDS)
                );
            }
            let again = ExecManifest::parse(&manifest.to_toml()).expect("rendered TOML reads back");
            assert_eq!(again, manifest);
        }
        Err(err) => {
            if let ExecError::Invalid { problems, .. } = &err {
                assert!(!problems.is_empty(), "an invalid manifest without problems");
            }
            let _ = err.to_string();
        }
    }
});
