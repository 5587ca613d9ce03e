//! Reading a flow from a file or standard input.

use std::io::Read;
use std::path::Path;

use anyhow::Context;

/// The text of a FlowSpec file; `-` reads standard input.
pub fn read_flow_text(path: &Path) -> anyhow::Result<String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the flow from standard input")?;
        return Ok(text);
    }
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}
