//! The shipped `dagy` command: the CLI over the example handlers.

/// mimalloc: a run allocates and frees small values for every task, and glibc's per-thread
/// arenas grow a page at a time (`mprotect`) under that load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    dagy_cli::main(dagy_handlers::registry())
}
