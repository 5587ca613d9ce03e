//! Golden files: the Step Functions definition of every example flow, byte for byte.
//! After an intended change, regenerate them with `DAGY_BLESS=1 cargo test --test golden`
//! and review the diff.

use std::path::PathBuf;

use dagy_core::Flow;

const ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:dagy-task-executor";

#[test]
fn every_example_flow_translates_to_its_golden_definition() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let examples = root.join("../../examples/flows");
    let golden = root.join("tests/golden");
    let bless = std::env::var_os("DAGY_BLESS").is_some();
    let mut checked = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&examples)
        .expect("examples")
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let text = std::fs::read_to_string(&path).expect("read example");
        let flow = Flow::from_json(&text, None).expect("examples are valid");
        let mut definition =
            serde_json::to_string_pretty(&dagy_core::asl::translate(&flow, ARN)).expect("JSON");
        definition.push('\n');
        let file = golden.join(path.file_name().expect("file name"));
        if bless {
            std::fs::write(&file, &definition).expect("write golden");
        }
        let expected = std::fs::read_to_string(&file).unwrap_or_else(|_| {
            panic!(
                "{} has no golden file; run with DAGY_BLESS=1 to write it",
                path.display()
            )
        });
        assert_eq!(definition, expected, "{} changed its ASL", path.display());
        checked += 1;
    }
    assert!(checked >= 9, "only {checked} examples");
}
