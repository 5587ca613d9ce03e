//! The shipped `dagy-worker`, over the example handlers (see the `dagy_worker` library).

fn main() -> std::process::ExitCode {
    dagy_worker::run(dagy_handlers::registry())
}
