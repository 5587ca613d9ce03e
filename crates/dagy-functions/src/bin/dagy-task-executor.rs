//! The shipped task-executor function, over the example handlers (see `dagy_functions::entry`).

fn main() -> Result<(), lambda_runtime::Error> {
    dagy_functions::entry::run_task_executor(dagy_handlers::registry())
}
