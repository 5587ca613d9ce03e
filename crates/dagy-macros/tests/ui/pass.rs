//! Every supported form compiles.
use std::collections::HashMap;

use dagy::{Input, Parameters, State, TaskContext, TaskError, Upstream};

#[derive(serde::Deserialize)]
struct Args {
    x: f64,
}

#[dagy::task]
async fn bare() -> Result<(), TaskError> {
    Ok(())
}

#[dagy::task(
    name = "renamed",
    runtime_tier = "xlarge",
    retries = 3,
    retry_delay_seconds = [1, 2.5],
    retry_jitter_factor = 0.5,
    timeout_seconds = 60,
    memory_mb = 4096
)]
pub async fn everything(
    args: Args,
    ctx: TaskContext,
    Parameters(p): Parameters<HashMap<String, String>>,
    Upstream(u): Upstream<HashMap<String, f64>>,
    State(client): State<String>,
    Input(whole): Input,
) -> Result<Vec<String>, std::io::Error> {
    let _ = (args.x, ctx.attempt, p.len(), u.len(), client.len(), whole);
    Ok(vec![])
}

#[dagy::task(retry_delay_seconds = 2)]
fn blocking(args: Args) -> Result<f64, TaskError> {
    Ok(args.x)
}

fn main() {
    let mut registry = dagy::HandlerRegistry::new();
    registry.add(bare).add(everything).add(blocking);
    registry.state(String::from("client"));
    let _ = dagy::FlowBuilder::new("f").task_of("t", &everything, |t| t);
}
