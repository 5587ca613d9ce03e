//! The shipped router function, over the example handlers' names (see `dagy_functions::entry`).

fn main() -> Result<(), lambda_runtime::Error> {
    dagy_functions::entry::run_router(dagy_handlers::registry().catalog())
}
