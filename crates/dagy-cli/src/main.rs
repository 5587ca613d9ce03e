//! The `dagy` command.

fn main() {}
