//! The shipped `dagy` command: the CLI over the example handlers.

fn main() -> std::process::ExitCode {
    dagy_cli::main(dagy_handlers::registry())
}
